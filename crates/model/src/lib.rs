//! The model: reading GGUF files and Hugging Face directories (or making up dummy weights), the
//! model config, tokenizer and chat template, and the transformer forward pass written once
//! over `rill_backend::Backend`.

pub mod chat_template;
pub mod config;
pub mod dummy;
pub mod family;
pub mod forward;
pub mod grammar;
pub mod gguf;
pub mod hf;
pub mod loader;
pub mod runner;
pub mod sampler;
pub mod source;
pub mod tokenizer;
pub mod weights;

pub use config::{ConfigError, ModelConfig};
pub use family::{Architecture, Block};
pub use source::{LoadFormat, ModelSource};
pub use forward::{ForwardError, StepCapacity, Transformer};
pub use weights::{ModelWeights, TensorSource, Weight, WeightsError};
