//! Hugging Face model directories and `--load-format dummy`.
//!
//! The HF loader is checked by a round trip on the real default model: the GGUF file is
//! exported (`rill_model::hf::export`) as an HF directory — weights dequantized to F32, q/k rows
//! un-permuted back to HF order, `tokenizer.json` from rill's own pipeline — and both are run on
//! the reference backend (f32 matmuls). Same weights, same math, except that the HF copy
//! rotates NeoX pairs of un-permuted rows where GGUF rotates adjacent pairs of permuted ones:
//! if either the permutation or the NeoX flag were wrong, the logits would be far apart.

use crate::common;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rill_backend::{DType, KvDType};
use rill_backend_cpu::CpuBackend;
use rill_engine::ForwardBatch;
use rill_model::chat_template::ChatMessage;
use rill_model::hf::export::{export_gguf, ExportOptions};
use rill_model::hf::HfError;
use rill_model::loader::{load, load_source, KvBudget, LoadError, LoadOptions, LoadedModel};
use rill_model::source::ModelSource;
use rill_model::weights::WeightsError;
use rill_model::{ModelConfig, Transformer};
use serde::Deserialize;

/// Largest |logit difference| allowed between the GGUF model and its F32 HF export, both on the
/// reference backend with an f32 KV cache. Measured: 2.1e-5 on logits of magnitude up to 34.
/// Every matmul and rotation gives the same bits in permuted order; only the order of the
/// additions in each q·k dot product differs. (With the default f16 KV cache the same runs
/// differ by up to 1.3e-2: a 1-ulp f32 difference in K sometimes rounds to a different f16,
/// a 5e-4 relative step, from the second position on. Position 0 agrees bit for bit.)
const GGUF_VS_HF_LOGIT_TOLERANCE: f32 = 1e-4;
/// Greedy tokens compared between the GGUF model and the F32 export (must all match).
const GREEDY_TOKENS: usize = 16;
/// Prompts whose first greedy tokens must match after a BF16 export (rounding the weights to
/// 8 bits of mantissa can flip near-ties).
const BF16_MIN_AGREEING_PROMPTS: usize = 3;
const BF16_COMPARED_TOKENS: usize = 4;

const PROMPTS: [&str; 4] = [
    "The capital of France is",
    "def fibonacci(n):",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, in a land far away, there lived",
];

fn options() -> LoadOptions {
    LoadOptions { kv_budget: KvBudget::Tokens(1024), ..LoadOptions::default() }
}

/// The reference backend (f32 matmuls) with an f32 KV cache: exact enough to compare layouts.
fn load_reference(path: &Path) -> LoadedModel<CpuBackend> {
    let opts = LoadOptions { kv_dtype: KvDType::F32, ..options() };
    load(path, CpuBackend::reference(2).expect("thread pool"), &opts, &mut |_, _| {}).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The default model exported once per test process (and kept under the target dir across
/// runs, keyed by the source model's size and the export layout).
pub fn exported(dtype: DType, shards: usize) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gguf = rill::testing::default_model_path();
    let size = std::fs::metadata(&gguf).expect("default model").len();
    let key = format!("v1-{}-{shards}-{size}", dtype.name());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hf-export").join(&key);
    let marker = dir.join("export-complete");
    if marker.is_file() {
        return dir;
    }
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    export_gguf(&gguf, &tmp, ExportOptions { dtype, shards }).expect("export the default model");
    std::fs::write(tmp.join("export-complete"), &key).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another test process finished the same export first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(marker.is_file(), "{} was not exported", dir.display());
    dir
}

/// The logits after `prompt` (one forward pass over the whole prompt).
fn last_logits(model: &mut Transformer<CpuBackend>, prompt: &[u32]) -> Vec<f32> {
    let layout = model.kv_layout();
    let blocks: Vec<u32> = (0..layout.num_blocks as u32).collect();
    let mut batch = ForwardBatch::new(layout.block_size, layout.num_blocks);
    batch.push_sequence(prompt, 0, &blocks[..prompt.len().div_ceil(layout.block_size)], true).unwrap();
    model.forward(&batch).unwrap().to_vec()
}

/// `n` greedy token ids through the engine.
fn greedy(engine: &rill_engine::Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    common::greedy_tokens(engine, prompt, n, 0).iter().map(|t| t.token).collect()
}

fn engine(model: LoadedModel<CpuBackend>) -> rill_engine::Engine {
    common::engine_of(model.transformer, model.tokenizer.eos_token_ids(), "hf-test")
}

/// Everything but the name (HF: the export's `_name_or_path`, the same) and the rotary layout.
fn same_shape(a: &ModelConfig, b: &ModelConfig) -> bool {
    let strip = |c: &ModelConfig| ModelConfig { rope_neox: false, name: String::new(), ..c.clone() };
    strip(a) == strip(b)
}

#[test]
fn f32_export_matches_gguf_logits_greedy_tokens_and_tokenizer() {
    let dir = exported(DType::F32, 1);
    assert_eq!(ModelSource::detect(&dir), ModelSource::HfDir(dir.clone()));
    let mut gguf = load_reference(&rill::testing::default_model_path());
    let mut hf = load_reference(&dir);
    let (gc, hc) = (gguf.transformer.config().clone(), hf.transformer.config().clone());
    assert!(same_shape(&gc, &hc), "{gc:?}\n{hc:?}");
    assert!(!gc.rope_neox && hc.rope_neox);

    let mut worst = 0.0f32;
    for text in PROMPTS {
        let ids = gguf.tokenizer.encode(text, true).unwrap();
        assert_eq!(hf.tokenizer.encode(text, true).unwrap(), ids, "{text:?}");
        let (a, b) = (last_logits(&mut gguf.transformer, &ids), last_logits(&mut hf.transformer, &ids));
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(a.iter().chain(&b).all(|x| x.is_finite()));
        worst = worst.max(diff);
    }
    let (gguf_engine, hf_engine) = (common::engine_of(gguf.transformer, gguf.tokenizer.eos_token_ids(), "gguf"), common::engine_of(hf.transformer, hf.tokenizer.eos_token_ids(), "hf"));
    for text in PROMPTS {
        let ids = gguf.tokenizer.encode(text, true).unwrap();
        assert_eq!(greedy(&gguf_engine, &ids, GREEDY_TOKENS), greedy(&hf_engine, &ids, GREEDY_TOKENS), "{text:?}");
    }
    eprintln!("GGUF vs HF F32 export: max |logit difference| {worst:e}");
    assert!(worst <= GGUF_VS_HF_LOGIT_TOLERANCE, "max |logit difference| {worst} > {GGUF_VS_HF_LOGIT_TOLERANCE}");

    // Tokenizer: every fixture string, with and without special-token parsing; decoding; ids.
    #[derive(Deserialize)]
    struct Case {
        text: String,
    }
    let fixture: common::Cases<Case> = common::fixture("tokenize.json");
    let (gt, ht) = (&gguf.tokenizer, &hf.tokenizer);
    for case in &fixture.cases {
        for parse_special in [true, false] {
            let ids = gt.encode_with(&case.text, true, parse_special).unwrap();
            assert_eq!(ht.encode_with(&case.text, true, parse_special).unwrap(), ids, "{:?} parse_special={parse_special}", case.text);
            assert_eq!(ht.decode(&ids, false), gt.decode(&ids, false));
            assert_eq!(ht.decode(&ids, true), gt.decode(&ids, true));
        }
    }
    assert_eq!((ht.bos_id(), ht.eos_id(), ht.adds_bos(), ht.adds_eos()), (gt.bos_id(), gt.eos_id(), gt.adds_bos(), gt.adds_eos()));
    assert_eq!(ht.eos_token_ids(), gt.eos_token_ids());
    assert_eq!(ht.vocab_size(), gt.vocab_size());
    for id in 0..gt.vocab_size() as u32 {
        assert_eq!((ht.token_type(id), ht.token_to_piece(id)), (gt.token_type(id), gt.token_to_piece(id)), "token {id}");
    }

    // Chat template: llama.cpp's fixture conversations render the same.
    #[derive(Deserialize)]
    struct Chat {
        messages: Vec<ChatMessage>,
        add_generation_prompt: bool,
    }
    let chats: common::Cases<Chat> = common::fixture("chat_template.json");
    let (gtpl, htpl) = (gguf.chat_template.as_ref().unwrap(), hf.chat_template.as_ref().unwrap());
    assert_eq!((htpl.bos_token(), htpl.eos_token()), (gtpl.bos_token(), gtpl.eos_token()));
    for chat in &chats.cases {
        let rendered = |t: &rill_model::chat_template::ChatTemplate| t.render(&chat.messages, chat.add_generation_prompt).ok();
        assert_eq!(rendered(htpl), rendered(gtpl));
    }
}

#[test]
fn sharded_bf16_export_gives_the_same_first_greedy_tokens() {
    let dir = exported(DType::BF16, 3);
    assert!(dir.join("model.safetensors.index.json").is_file() && !dir.join("model.safetensors").exists());
    let gguf_model = load_reference(&rill::testing::default_model_path());
    let gguf = common::engine_of(gguf_model.transformer, gguf_model.tokenizer.eos_token_ids(), "gguf");
    let hf = engine(load_reference(&dir));
    let mut agreeing = 0;
    for text in PROMPTS {
        let ids = gguf_model.tokenizer.encode(text, true).unwrap();
        let (a, b) = (greedy(&gguf, &ids, BF16_COMPARED_TOKENS), greedy(&hf, &ids, BF16_COMPARED_TOKENS));
        eprintln!("{text:?}: gguf {a:?} bf16 {b:?}");
        agreeing += usize::from(a == b);
    }
    assert!(agreeing >= BF16_MIN_AGREEING_PROMPTS, "{agreeing} of {} prompts agree", PROMPTS.len());
}

fn dummy(config: &str, dtype: DType, seed: u64) -> LoadedModel<CpuBackend> {
    let config = rill::testing::repo_root().join("configs/models").join(config);
    let source = ModelSource::Dummy { config, dtype, seed };
    load_source(&source, CpuBackend::new(2).expect("thread pool"), &options(), &mut |_, _| {}).expect("dummy model loads")
}

#[test]
fn dummy_tiny_llama_generates_finite_varied_deterministic_tokens_in_every_dtype() {
    // Every type dummy weights come in.
    let dtypes = rill_model::dummy::DUMMY_DTYPES;
    for dtype in dtypes {
        let mut model = dummy("tiny-llama.json", dtype, 42);
        let cfg = model.transformer.config().clone();
        assert_eq!((cfg.hidden, cfg.ffn_hidden, cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.vocab_size), (512, 1536, 4, 8, 2, 64, 512));
        assert!(model.chat_template.is_none());
        let prompt = model.tokenizer.encode("Hello, dummy world!", true).unwrap();
        assert_eq!(prompt[0], rill_model::dummy::DUMMY_BOS);
        let logits = last_logits(&mut model.transformer, &prompt);
        assert!(logits.iter().all(|x| x.is_finite()), "{dtype}: non-finite logits");
        let spread = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) - logits.iter().fold(f32::INFINITY, |m, &x| m.min(x));
        assert!(spread > 1.0, "{dtype}: flat logits ({spread})");

        let tokens = greedy(&common::engine_of(model.transformer, model.tokenizer.eos_token_ids(), "dummy"), &prompt, 32);
        assert_eq!(tokens.len(), 32);
        let distinct: std::collections::BTreeSet<u32> = tokens.iter().copied().collect();
        assert!(distinct.len() > 1, "{dtype}: one token repeated: {tokens:?}");
        let _ = model.tokenizer.decode(&tokens, false);
        // The same seed gives the same tokens; another seed other ones.
        assert_eq!(greedy(&engine(dummy("tiny-llama.json", dtype, 42)), &prompt, 32), tokens, "{dtype}");
        assert_ne!(greedy(&engine(dummy("tiny-llama.json", dtype, 43)), &prompt, 32), tokens, "{dtype}");
        eprintln!("{dtype}: {} distinct of 32: {tokens:?}", distinct.len());
    }
}

#[test]
fn dummy_configs_match_the_models_they_name() {
    let gguf = rill_model::gguf::GgufFile::open(&rill::testing::default_model_path()).unwrap();
    let real = ModelConfig::from_gguf(&gguf).unwrap();
    let models = rill::testing::repo_root().join("configs/models");
    let (_, smollm) = rill_model::hf::read_config(&models.join("smollm2-135m.json"), "smollm2-135m").unwrap();
    assert!(same_shape(&real, &smollm), "{real:?}\n{smollm:?}");
    let (_, llama) = rill_model::hf::read_config(&models.join("llama-3-8b.json"), "llama-3-8b").unwrap();
    assert_eq!((llama.hidden, llama.ffn_hidden, llama.layers, llama.heads, llama.kv_heads, llama.head_dim), (4096, 14336, 32, 32, 8, 128));
    assert_eq!((llama.vocab_size, llama.context_length, llama.rope_base, llama.norm_eps, llama.tied_embeddings), (128256, 8192, 500000.0, 1e-5, false));
    // SmolLM2's 576 columns are no whole k-quant super-block: a clean error, not a panic.
    let source = ModelSource::Dummy { config: models.join("smollm2-135m.json"), dtype: DType::Q4K, seed: 0 };
    let err = load_source(&source, CpuBackend::new(1).unwrap(), &options(), &mut |_, _| {}).err().expect("Q4_K cannot hold 576 columns");
    assert!(matches!(err, LoadError::Weights(WeightsError::Convert { .. })), "{err}");
}

/// A safetensors image written by hand: `header` JSON, then `data_len` zero bytes.
fn raw_safetensors(header: &str, data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.resize(b.len() + data_len, 0);
    b
}

#[test]
fn malformed_hf_directories_are_clean_errors() {
    let good = exported(DType::F32, 1);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hf-malformed-{}", std::process::id()));
    let case = |name: &str, weights: Option<Vec<u8>>, config: Option<&str>| -> LoadError {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["tokenizer.json", "tokenizer_config.json", "config.json"] {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        if let Some(c) = config {
            std::fs::write(dir.join("config.json"), c).unwrap();
        }
        if let Some(w) = weights {
            std::fs::write(dir.join("model.safetensors"), w).unwrap();
        }
        match load(&dir, CpuBackend::new(1).unwrap(), &options(), &mut |_, _| {}) {
            Ok(_) => panic!("{name}: malformed directory loaded"),
            Err(e) => {
                eprintln!("{name}: {e}");
                e
            }
        }
    };
    let real = std::fs::read(good.join("model.safetensors")).unwrap();
    let e = case("truncated-header", Some(real[..real.len().min(1000)].to_vec()), None);
    assert!(matches!(e, LoadError::Hf(HfError::Safetensors { .. })), "{e}");
    let e = case("truncated-data", Some(real[..real.len() - 4].to_vec()), None);
    assert!(matches!(e, LoadError::Hf(HfError::Safetensors { .. })), "{e}");
    let e = case("bad-dtype", Some(raw_safetensors(r#"{"model.embed_tokens.weight":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, 16)), None);
    assert!(matches!(&e, LoadError::Weights(WeightsError::DType { name, .. }) if name == "model.embed_tokens.weight"), "{e}");
    let e = case("unknown-dtype", Some(raw_safetensors(r#"{"model.embed_tokens.weight":{"dtype":"Q4","shape":[2],"data_offsets":[0,16]}}"#, 16)), None);
    assert!(matches!(e, LoadError::Hf(HfError::Safetensors { .. })), "{e}");
    let e = case("wrong-shape", Some(raw_safetensors(r#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[4,2],"data_offsets":[0,32]}}"#, 32)), None);
    match &e {
        LoadError::Weights(WeightsError::Shape { name, found, expected }) => {
            assert_eq!((name.as_str(), found.as_slice(), expected.as_slice()), ("model.embed_tokens.weight", &[4u64, 2][..], &[49152u64, 576][..]));
        }
        other => panic!("{other}"),
    }
    let e = case("no-weights", None, None);
    assert!(matches!(e, LoadError::Hf(HfError::NoWeights { .. })), "{e}");
    let e = case("unknown-arch", None, Some(r#"{"architectures": ["MambaForCausalLM"], "hidden_size": 8}"#));
    assert!(e.to_string().contains("MambaForCausalLM"), "{e}");
    let e = case("bad-config", None, Some("{ not json"));
    assert!(matches!(e, LoadError::Hf(HfError::Config { .. })), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

