//! The engine's vocabulary: what one forward step is (`ForwardBatch`). The scheduler, the KV
//! block manager and the engine thread build on it. No tensors live here.

mod batch;

pub use batch::{BatchError, ForwardBatch};
