//! What every backend shares: element types (`DType`), the quantized block layouts with their
//! plain reference dequantization (the oracle for every optimized kernel), weight bytes that
//! stay in the model file's mmap, and the `Backend` trait the forward pass is written against.

mod backend;
pub mod bytes;
pub mod conformance;
pub mod draw;
pub mod dtype;
mod error;
mod layer_ops;
pub mod quant;

pub use backend::{AttentionBatch, Backend, KvDType, KvLayout, MatrixSource, RopeParams};
pub use bytes::{ByteOwner, SharedBytes};
pub use draw::{draw_token, DrawParams, DrawScratch, BELOW_ONE};
pub use dtype::DType;
pub use error::{BackendError, BackendResult};
pub use layer_ops::{gelu_tanh, group_slots_by_expert, Activation, AttentionArithmetic, AttentionParams, ExpertRoute};
