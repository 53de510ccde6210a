//! The per-layer parameters of the ops whose arithmetic differs between model families: how
//! attention scores are scaled, capped and windowed, and which activation gates the
//! feed-forward block. A family states them once (the model crate's `family` module); every
//! backend implements each variant.

/// How one layer's attention scores are formed and masked, as llama.cpp forms them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    /// Multiplies `q·k` (llama.cpp's `kq_scale`): `1/√head_dim`, or 1 where the family scales
    /// the query beforehand (Gemma, Phi-3).
    pub scale: f32,
    /// Gemma 2's soft cap `c`: a score `s` becomes `c · tanh(s · (scale / c))`; 0 = none.
    pub softcap: f32,
    /// A sliding window of this many keys: the query at position `p` reads positions
    /// `p + 1 - window ..= p`; 0 = every position `0..=p` (plain causal attention).
    pub window: u32,
    /// How the softmax and the weighted sum are computed (not a property of the family: the
    /// loader sets it for every layer from `--attention`).
    pub arithmetic: AttentionArithmetic,
}

/// The arithmetic of attention on the CPU backend (the CUDA backend has one, in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionArithmetic {
    /// Flash attention by tiles of keys, f32 throughout: the fastest, and the closest to exact
    /// math.
    #[default]
    Fast,
    /// llama.cpp's CPU flash attention reproduced bit for bit (per key in order, the query
    /// rounded to f16, an f16 value accumulator): rill's logprobs then equal llama.cpp's on
    /// the same model and prompt, which the golden tests check.
    Ggml,
}

impl std::str::FromStr for AttentionArithmetic {
    type Err = String;

    /// `fast` or `ggml`, as `--attention` and the config and admin API spell it.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fast" => Ok(AttentionArithmetic::Fast),
            "ggml" => Ok(AttentionArithmetic::Ggml),
            other => Err(format!("attention must be \"fast\" or \"ggml\", got {other:?}")),
        }
    }
}

impl AttentionParams {
    /// Plain causal attention scaled by `1/√head_dim`.
    pub fn causal(head_dim: usize) -> AttentionParams {
        AttentionParams { scale: 1.0 / (head_dim as f32).sqrt(), softcap: 0.0, window: 0, arithmetic: AttentionArithmetic::Fast }
    }

    /// The first position the query at `pos` reads.
    #[inline]
    pub fn first_position(&self, pos: usize) -> usize {
        match self.window {
            0 => 0,
            w => (pos + 1).saturating_sub(w as usize),
        }
    }

    /// `score` (a raw `q·k`) scaled and capped, with ggml's operations: `s · scale`, or with a
    /// cap `c · tanh(s · (scale / c))` (`scale / c` rounded once, as ggml divides its scale).
    #[inline]
    pub fn apply(&self, score: f32) -> f32 {
        if self.softcap > 0.0 {
            self.softcap * (score * (self.scale / self.softcap)).tanh()
        } else {
            score * self.scale
        }
    }
}

/// How a mixture-of-experts layer picks and weighs its experts (see `Backend::route_experts`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertRoute {
    /// Experts in the layer.
    pub experts: usize,
    /// Experts each token runs.
    pub used: usize,
    /// The chosen probabilities are divided by their sum (Mixtral, Qwen3-MoE; not Qwen2-MoE).
    pub normalize: bool,
    /// Then multiplied by this (1: unscaled).
    pub scale: f32,
}

/// The slots `0..ids.len()` grouped by the expert `ids[slot]` names (a counting sort: slot order
/// within each expert), into `slots`, and how many each of `experts` experts got, into `counts`;
/// both reused. What every backend's `matmul_experts` walks. `ids` must be below `experts`.
pub fn group_slots_by_expert(ids: &[u32], experts: usize, counts: &mut Vec<usize>, slots: &mut Vec<u32>) {
    counts.clear();
    counts.resize(experts, 0);
    ids.iter().for_each(|&e| counts[e as usize] += 1);
    // Each expert's first position, advanced as its slots are placed.
    let mut next: Vec<usize> = Vec::with_capacity(experts);
    let mut start = 0;
    for &c in counts.iter() {
        next.push(start);
        start += c;
    }
    slots.clear();
    slots.resize(ids.len(), 0);
    for (s, &e) in ids.iter().enumerate() {
        slots[next[e as usize]] = s as u32;
        next[e as usize] += 1;
    }
}

/// The activation on the gate of a gated feed-forward block: `out = act(gate) · up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// SwiGLU: `silu(x) = x / (1 + e^-x)` (Llama, Qwen, Phi-3, SmolLM).
    #[default]
    Silu,
    /// GeGLU with GELU's tanh approximation (Gemma):
    /// `0.5 x (1 + tanh(√(2/π) x (1 + 0.044715 x²)))`.
    GeluTanh,
}

/// `√(2/π)` as ggml writes it.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_COEF_A: f32 = 0.044715;

impl Activation {
    /// The activation of one value, in f32 as ggml's CUDA kernels compute it (the CPU backends'
    /// reference; see `gelu_tanh` for llama.cpp's CPU table).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluTanh => gelu_tanh(x),
        }
    }
}

/// GELU, tanh approximation: `0.5 x (1 + tanh(√(2/π) x (1 + 0.044715 x²)))`, ggml's operation
/// order.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_group_by_expert_in_slot_order() {
        let (mut counts, mut slots) = (vec![9], vec![9]);
        group_slots_by_expert(&[2, 0, 2, 1, 0], 4, &mut counts, &mut slots);
        assert_eq!(counts, [2, 1, 2, 0]);
        assert_eq!(slots, [1, 4, 3, 0, 2]);
    }

    #[test]
    fn window_bounds_the_first_position() {
        let full = AttentionParams::causal(64);
        assert_eq!((full.first_position(0), full.first_position(999)), (0, 0));
        let swa = AttentionParams { window: 4, ..full };
        // Four keys including the query's own position.
        assert_eq!([0, 3, 4, 10].map(|p| swa.first_position(p)), [0, 0, 1, 7]);
    }

    #[test]
    fn softcap_bounds_scores_and_is_identity_near_zero() {
        let p = AttentionParams { scale: 1.0, softcap: 50.0, window: 0, arithmetic: AttentionArithmetic::Fast };
        assert!((p.apply(1e4) - 50.0).abs() < 1e-4 && (p.apply(-1e4) + 50.0).abs() < 1e-4);
        assert!((p.apply(0.5) - 0.5).abs() < 1e-4);
        assert_eq!(AttentionParams::causal(4).apply(3.0), 1.5);
    }

    #[test]
    fn gelu_tanh_matches_known_values() {
        // torch.nn.functional.gelu(x, approximate="tanh") in float64, rounded.
        for (x, want) in [(-3.0, -0.003_637_392), (-1.0, -0.158_808), (0.0, 0.0), (0.5, 0.345_714), (1.0, 0.841_192), (3.0, 2.996_363)] {
            assert!((gelu_tanh(x) - want).abs() < 2e-6, "gelu({x}) = {} want {want}", gelu_tanh(x));
        }
        assert!((Activation::Silu.apply(1.0) - 0.731_058_6).abs() < 1e-6);
    }
}
