//! Writing a GGUF model out as a Hugging Face directory (dequantized to F32, F16 or BF16):
//! `config.json`, safetensors (one file or shards + index), `tokenizer.json`,
//! `tokenizer_config.json`, `generation_config.json`.
//!
//! Its purpose is the round trip the HF loader is tested with: the default GGUF model exported
//! and loaded back must give the GGUF model's logits. That only holds if the export undoes what
//! llama.cpp's converter did to Llama q/k rows ([`unpermute_rows`]) and the loader rotates HF
//! weights with NeoX pairs; either mistake alone makes the logits disagree.
//!
//! Byte-level BPE vocabularies only (a SentencePiece GGUF vocabulary has no `tokenizer.json`
//! pipeline of its own here: rill escapes its spaces itself). Frequency-factor rope scaling
//! stored as a tensor (GGUF's `rope_freqs.weight`) has no `config.json` spelling and is refused.

use std::collections::BTreeMap;
use std::path::Path;

use rill_backend::{quant, DType};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};
use tokenizers::AddedToken;

use crate::chat_template::CHAT_TEMPLATE_KEY;
use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::gguf::GgufFile;
use crate::tokenizer::{self, TokenType, Tokenizer, Vocab, VocabKind};
use crate::weights::{LayerWeight, Weight};

use super::safetensors::{INDEX_FILE, SINGLE_FILE};
use super::tokenizer::{GENERATION_CONFIG_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
use super::CONFIG_FILE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// F32, F16 or BF16.
    pub dtype: DType,
    /// Safetensors files to split the weights over (1: `model.safetensors`; more: shards and
    /// `model.safetensors.index.json`).
    pub shards: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("exporting to a Hugging Face directory: {0}")]
pub struct ExportError(String);

fn err(e: impl std::fmt::Display) -> ExportError {
    ExportError(e.to_string())
}

/// Undoes llama.cpp's q/k row permutation for one `[heads * head_dim, cols]` matrix.
///
/// llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel.permute`) reorders each head's rows with
/// `w.reshape(n_head, 2, head_dim // 2, cols).swapaxes(1, 2).reshape(rows, cols)`. Reading the
/// indices: the HF row `s * half + j` of a head (`s` ∈ {0, 1} is the half, `j < half`) sits at
/// `[h, s, j]` before the swap and at `[h, j, s]` after it, i.e. at GGUF row `2 * j + s`. So
/// GGUF's adjacent rotary pair `(2j, 2j + 1)` is HF's pair `(j, j + half)`, the one
/// `rotate_half` rotates. The inverse: HF row `r` of a head is GGUF row
/// `2 * (r % half) + r / half`.
pub fn unpermute_rows(gguf: &[f32], heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut hf = vec![0.0; gguf.len()];
    for h in 0..heads {
        for r in 0..head_dim {
            let src = h * head_dim + 2 * (r % half) + r / half;
            let dst = h * head_dim + r;
            hf[dst * cols..(dst + 1) * cols].copy_from_slice(&gguf[src * cols..(src + 1) * cols]);
        }
    }
    hf
}

fn safetensors_dtype(d: DType) -> Result<Dtype, ExportError> {
    match d {
        DType::F32 => Ok(Dtype::F32),
        DType::F16 => Ok(Dtype::F16),
        DType::BF16 => Ok(Dtype::BF16),
        other => Err(err(format!("cannot export weights as {other} (F32, F16, BF16)"))),
    }
}

/// One exported tensor: HF name, shape and bytes in the export dtype.
struct Tensor {
    name: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Writes `gguf_path` as a Hugging Face model directory at `out` (created if needed).
pub fn export_gguf(gguf_path: &Path, out: &Path, opts: ExportOptions) -> Result<(), ExportError> {
    let st_dtype = safetensors_dtype(opts.dtype)?;
    let file = GgufFile::open(gguf_path).map_err(err)?;
    let cfg = ModelConfig::from_gguf(&file).map_err(err)?;
    let tokenizer = Tokenizer::from_gguf(&file).map_err(err)?;
    if tokenizer.kind() != VocabKind::BytePairBpe {
        return Err(err("only byte-level BPE vocabularies can be exported"));
    }
    if cfg.rope_dim != cfg.head_dim {
        return Err(err("partial rotary dimensions cannot be exported"));
    }
    std::fs::create_dir_all(out).map_err(err)?;

    let mut tensors = Vec::new();
    for w in Weight::all(&cfg) {
        let name = w.gguf_name();
        let Some(info) = file.tensor_info(&name) else {
            let optional = matches!(w, Weight::Output | Weight::Layer(_, LayerWeight::QBias | LayerWeight::KBias | LayerWeight::VBias));
            if optional {
                continue;
            }
            return Err(err(format!("GGUF lacks {name}")));
        };
        let (rows, cols) = w.dims(&cfg);
        let data = file.tensor_data(info);
        let row_bytes = info.dtype.row_bytes(cols).ok_or_else(|| err(format!("{name}: {cols} columns of {}", info.dtype)))?;
        if data.len() != row_bytes * rows {
            return Err(err(format!("{name}: {} bytes for {rows}x{cols} {}", data.len(), info.dtype)));
        }
        let mut values = vec![0.0f32; rows * cols];
        for (src, dst) in data.chunks_exact(row_bytes).zip(values.chunks_exact_mut(cols)) {
            quant::dequantize_row(info.dtype, src, dst).map_err(err)?;
        }
        if !cfg.rope_neox {
            match w {
                Weight::Layer(_, LayerWeight::Q) => values = unpermute_rows(&values, cfg.heads, cfg.head_dim, cols),
                Weight::Layer(_, LayerWeight::K) => values = unpermute_rows(&values, cfg.kv_heads, cfg.head_dim, cols),
                Weight::Layer(_, LayerWeight::QBias | LayerWeight::KBias) => {
                    return Err(err("q/k biases with GGUF's permuted rotary are not supported"));
                }
                _ => {}
            }
        }
        let mut bytes = vec![0u8; opts.dtype.row_bytes(values.len()).expect("float types have no blocks")];
        quant::quantize_row(opts.dtype, &values, &mut bytes).map_err(err)?;
        let shape = if w.is_matrix() { vec![rows, cols] } else { vec![rows] };
        tensors.push(Tensor { name: w.hf_name(cfg.block().post_norms), shape, bytes });
    }
    write_safetensors(out, &tensors, st_dtype, opts.shards.max(1))?;
    write_json(&out.join(CONFIG_FILE), &config_json(&cfg, &tokenizer, opts.dtype)?)?;
    write_tokenizer(&file, &tokenizer, out)
}

fn write_safetensors(out: &Path, tensors: &[Tensor], dtype: Dtype, shards: usize) -> Result<(), ExportError> {
    let shards = shards.min(tensors.len().max(1));
    let per_shard = tensors.len().div_ceil(shards);
    let mut weight_map = BTreeMap::new();
    let mut total_size = 0usize;
    for (i, group) in tensors.chunks(per_shard.max(1)).enumerate() {
        let file_name = if shards == 1 { SINGLE_FILE.to_string() } else { format!("model-{:05}-of-{:05}.safetensors", i + 1, shards) };
        let views = group
            .iter()
            .map(|t| Ok((t.name.clone(), TensorView::new(dtype, t.shape.clone(), &t.bytes).map_err(err)?)))
            .collect::<Result<Vec<_>, ExportError>>()?;
        safetensors::serialize_to_file(views, None, &out.join(&file_name)).map_err(err)?;
        for t in group {
            weight_map.insert(t.name.clone(), file_name.clone());
            total_size += t.bytes.len();
        }
    }
    if shards > 1 {
        write_json(&out.join(INDEX_FILE), &json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map }))?;
    }
    Ok(())
}

fn config_json(cfg: &ModelConfig, tokenizer: &Tokenizer, dtype: DType) -> Result<Value, ExportError> {
    let rope_scaling = match cfg.rope_scaling {
        RopeScaling::None => Value::Null,
        RopeScaling::Linear { factor } => json!({ "rope_type": "linear", "factor": factor }),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context } => json!({
            "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_context,
        }),
        RopeScaling::FrequencyFactors | RopeScaling::LongRope { .. } => return Err(err("rope frequency factors stored as a tensor have no config.json form")),
    };
    let (arch, model_type) = match cfg.arch {
        Architecture::Llama => ("LlamaForCausalLM", "llama"),
        Architecture::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        other => return Err(err(format!("exporting {} is not supported (llama, qwen2)", other.name()))),
    };
    Ok(json!({
        "_name_or_path": cfg.name,
        "architectures": [arch],
        "model_type": model_type,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_base,
        "rope_scaling": rope_scaling,
        "max_position_embeddings": cfg.context_length,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tied_embeddings,
        "bos_token_id": tokenizer.bos_id(),
        "eos_token_id": tokenizer.eos_id(),
        "torch_dtype": match dtype { DType::BF16 => "bfloat16", DType::F16 => "float16", _ => "float32" },
    }))
}

/// `tokenizer.json` is rill's own `tokenizers` pipeline with the control and user-defined
/// tokens registered as added tokens (and GPT-2's byte-level decoder, for other readers).
fn write_tokenizer(file: &GgufFile, tokenizer: &Tokenizer, out: &Path) -> Result<(), ExportError> {
    let mut hf = tokenizer::hf_byte_level_pipeline(&Vocab::from_gguf(file).map_err(err)?).map_err(err)?;
    let added: Vec<AddedToken> = (0..tokenizer.vocab_size() as u32)
        .filter_map(|id| {
            let special = match tokenizer.token_type(id)? {
                TokenType::Control | TokenType::Unknown => true,
                TokenType::UserDefined => false,
                _ => return None,
            };
            let text = tokenizer.token_str(id)?;
            (!text.is_empty()).then(|| AddedToken::from(text.to_string(), special))
        })
        .collect();
    hf.add_special_tokens(added).map_err(err)?;
    hf.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    hf.save(out.join(TOKENIZER_FILE), false).map_err(err)?;

    let text = |id: Option<u32>| id.and_then(|id| tokenizer.token_str(id)).map(str::to_string);
    let mut tc = json!({
        "bos_token": text(tokenizer.bos_id()),
        "eos_token": text(tokenizer.eos_id()),
        "add_bos_token": tokenizer.adds_bos(),
        "add_eos_token": tokenizer.adds_eos(),
    });
    if let Some(template) = file.get_str(CHAT_TEMPLATE_KEY).map_err(err)? {
        tc["chat_template"] = json!(template);
    }
    write_json(&out.join(TOKENIZER_CONFIG_FILE), &tc)?;
    write_json(&out.join(GENERATION_CONFIG_FILE), &json!({ "bos_token_id": tokenizer.bos_id(), "eos_token_id": tokenizer.eos_token_ids() }))
}

fn write_json(path: &Path, v: &Value) -> Result<(), ExportError> {
    let text = serde_json::to_string_pretty(v).map_err(err)?;
    std::fs::write(path, text).map_err(|e| err(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_backend::{Backend, RopeParams};
    use rill_backend_cpu::CpuBackend;

    /// llama.cpp's `permute`, transcribed index by index from the numpy reshape/swapaxes.
    fn permute_like_llama_cpp(hf: &[f32], heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
        let half = head_dim / 2;
        let mut out = vec![0.0; hf.len()];
        for h in 0..heads {
            for s in 0..2 {
                for j in 0..half {
                    // [h, s, j, :] of the reshaped source lands at [h, j, s, :].
                    let src = (h * 2 + s) * half + j;
                    let dst = (h * half + j) * 2 + s;
                    out[dst * cols..(dst + 1) * cols].copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_llama_cpp_and_turns_normal_rope_into_neox() {
        let (heads, head_dim, cols) = (3, 8, 5);
        let rows = heads * head_dim;
        let hf: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let gguf = permute_like_llama_cpp(&hf, heads, head_dim, cols);
        assert_ne!(gguf, hf);
        assert_eq!(unpermute_rows(&gguf, heads, head_dim, cols), hf);

        // Project one input through both forms, rotate the GGUF rows with adjacent pairs and
        // the HF rows with NeoX pairs: the same vectors, only in permuted order.
        let x: Vec<f32> = (0..cols).map(|i| 1.0 - i as f32 * 0.3).collect();
        let project = |w: &[f32]| -> Vec<f32> { w.chunks(cols).map(|r| r.iter().zip(&x).map(|(a, b)| a * b).sum()).collect() };
        let cpu = CpuBackend::new(1).unwrap();
        let rope = |v: Vec<f32>, neox: bool| {
            let params = RopeParams::new(head_dim, 10_000.0, neox);
            let (mut buf, mut pos) = (cpu.alloc(v.len()).unwrap(), cpu.alloc_indices(1).unwrap());
            cpu.write(&mut buf, &v).unwrap();
            cpu.write_indices(&mut pos, &[7]).unwrap();
            cpu.rope(&mut buf, &pos, 1, heads, head_dim, &params).unwrap();
            let mut out = vec![0.0; v.len()];
            cpu.read(&buf, &mut out).unwrap();
            out
        };
        let gguf_rotated = rope(project(&gguf), false);
        let hf_rotated = rope(project(&hf), true);
        let back = unpermute_rows(&gguf_rotated, heads, head_dim, 1);
        for (a, b) in back.iter().zip(&hf_rotated) {
            assert!((a - b).abs() < 1e-5, "{back:?} vs {hf_rotated:?}");
        }
    }
}
