/// A backend operation failed. On the CPU this means a bad shape or an unsupported type; on a
/// GPU it can also be a device error. The engine fails that step's requests and keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} backend does not support {what}")]
    Unsupported { backend: &'static str, what: String },
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("out of memory allocating {bytes} bytes for {what}")]
    OutOfMemory { bytes: usize, what: String },
    #[error("device error: {0}")]
    Device(String),
}

pub type BackendResult<T> = Result<T, BackendError>;
