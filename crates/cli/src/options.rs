//! Command-line options shared by the commands that load a model, and the `LoadSettings`
//! they stand for (KV pool sizing included).

use clap::{Args, ValueEnum};
use rill_backend::{AttentionArithmetic, DType, KvDType};
use rill_engine::SpeculationConfig;
use rill_server::device::Device;
use rill_server::LoadSettings;

use rill_model::forward::StepCapacity;
use rill_model::loader::{KvBudget, LoadOptions};
use rill_model::source::LoadFormat;

/// Engine and loading options shared by every command that runs a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Where the model runs: cpu, cuda (GPU 0) or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// CPU worker threads, the calling thread included (0: one per physical core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// KV cache size in tokens (default: sized from available memory).
    #[arg(long, conflicts_with = "kv_cache_bytes")]
    pub kv_cache_tokens: Option<usize>,
    /// KV cache size in bytes (default: sized from available memory).
    #[arg(long)]
    pub kv_cache_bytes: Option<usize>,
    /// KV cache element type.
    #[arg(long, value_enum, default_value_t = KvDTypeArg::F16)]
    pub kv_dtype: KvDTypeArg,
    /// Most tokens computed in one engine step.
    #[arg(long, default_value_t = 512)]
    pub max_num_batched_tokens: usize,
    /// Most sequences in one engine step.
    #[arg(long, default_value_t = 64)]
    pub max_num_seqs: usize,
    /// How to read the model path: auto (a directory with config.json is a Hugging Face
    /// model, anything else GGUF), gguf, hf, or dummy (the path is a config.json-style file;
    /// weights are seeded random, the tokenizer byte-level).
    #[arg(long, value_parser = <LoadFormat as std::str::FromStr>::from_str, default_value = "auto")]
    pub load_format: LoadFormat,
    /// Element type of a dummy model's matrices: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl,
    /// q2_k, q3_k, q4_k, q6_k or iq4_xs.
    #[arg(long, value_parser = rill_model::dummy::parse_dtype, default_value = "bf16")]
    pub dummy_dtype: DType,
    /// Seed of a dummy model's weights.
    #[arg(long, default_value_t = 0)]
    pub dummy_seed: u64,
    /// A Jinja chat template file to use instead of the model's own (by default the file's
    /// template, else the family's known format).
    #[arg(long, value_name = "FILE", value_parser = read_template)]
    pub chat_template: Option<String>,
    /// Speculative decoding for requests that do not choose (a request's `"speculative"` field
    /// overrides): off, or ngram (tokens that followed the same words earlier in the prompt or
    /// output are proposed and verified in one pass; the output is the same, repetitive output
    /// such as edits and summaries comes faster). It steps aside when the batch is busy.
    #[arg(long, value_enum, default_value_t = SpeculationArg::Off)]
    pub speculation: SpeculationArg,
    /// Most tokens proposed per step when speculating (1-16).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub num_speculative_tokens: u16,
    /// Attention arithmetic on the CPU: fast (tiles of keys, f32 throughout: faster on long
    /// contexts and closer to exact math), or ggml (llama.cpp's CPU flash attention bit for bit,
    /// so logprobs equal llama.cpp's on the same model: for comparisons).
    #[arg(long, value_parser = <AttentionArithmetic as std::str::FromStr>::from_str, default_value = "fast")]
    pub attention: AttentionArithmetic,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeculationArg {
    Off,
    Ngram,
}

/// The text of a `--chat-template` file.
fn read_template(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

impl Default for ModelArgs {
    /// The command-line defaults.
    fn default() -> ModelArgs {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: ModelArgs,
        }
        <Defaults as clap::Parser>::parse_from(["rill"]).args
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDTypeArg {
    F16,
    F32,
}

impl ModelArgs {
    /// The settings these flags stand for.
    pub fn settings(&self) -> LoadSettings {
        let kv_budget = match (self.kv_cache_tokens, self.kv_cache_bytes) {
            (Some(t), _) => KvBudget::Tokens(t),
            (None, Some(b)) => KvBudget::Bytes(b),
            (None, None) => KvBudget::Auto,
        };
        let options = LoadOptions {
            kv_budget,
            kv_dtype: match self.kv_dtype {
                KvDTypeArg::F16 => KvDType::F16,
                KvDTypeArg::F32 => KvDType::F32,
            },
            capacity: StepCapacity { max_tokens: self.max_num_batched_tokens, max_seqs: self.max_num_seqs },
            chat_template: self.chat_template.clone(),
            attention: self.attention,
            speculation: SpeculationConfig {
                default_on: self.speculation == SpeculationArg::Ngram,
                num_tokens: usize::from(self.num_speculative_tokens),
                ..SpeculationConfig::default()
            },
            ..LoadOptions::default()
        };
        LoadSettings { device: self.device, threads: self.threads, options, load_format: self.load_format, dummy_dtype: self.dummy_dtype, dummy_seed: self.dummy_seed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_defaults_are_the_settings_defaults() {
        assert_eq!(format!("{:?}", ModelArgs::default().settings()), format!("{:?}", LoadSettings::default()));
    }
}
