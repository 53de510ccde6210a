//! The engine's one error type: why a submission was refused or a request failed. It crosses
//! into the server typed (the HTTP layer maps each kind to its status in one place), and an
//! executor's failure keeps its source error.

use std::sync::Arc;

use crate::scheduler::AdmissionError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("the engine has shut down")]
    ShutDown,
    #[error("prompt of {prompt} tokens reaches the context length {max_model_len}")]
    PromptTooLong { prompt: usize, max_model_len: usize },
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error("execution failed: {0}")]
    Execution(#[from] ExecuteError),
    /// The request's deadline passed before it finished (its stream is dropped: the engine
    /// frees its KV blocks at the next step).
    #[error("the request did not finish within its deadline of {seconds:.3} s")]
    DeadlineExceeded { seconds: f64 },
}

/// A failed step of an `Executor`: the model's or the backend's own error, shared by every
/// request of that step.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct ExecuteError(Arc<dyn std::error::Error + Send + Sync>);

impl ExecuteError {
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> ExecuteError {
        ExecuteError(Arc::new(source))
    }

    /// A failure with no error value behind it (a broken executor contract, a test's injection).
    pub fn message(message: impl Into<String>) -> ExecuteError {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Message(String);
        ExecuteError::new(Message(message.into()))
    }
}

/// Two failures are equal when they are the same error or report the same thing (errors from a
/// backend have no equality of their own).
impl PartialEq for ExecuteError {
    fn eq(&self, other: &ExecuteError) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}
