//! The model: reading GGUF files, the model config, tokenizer and chat template, and the
//! transformer forward pass written once over `rill_backend::Backend`.

pub mod gguf;
