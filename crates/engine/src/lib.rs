//! The engine: continuous batching over a paged KV cache. One thread per model owns the
//! scheduler, the KV block manager and the executor; requests come in through an
//! `EngineHandle` and leave as per-request event streams. No tensors live here: the executor
//! (the model crate) sees only the flat `ForwardBatch` of each step.

mod batch;
mod constraint;
mod engine;
mod error;
mod executor;
pub mod metrics;
mod request;
pub mod scheduler;
pub mod kv;
mod sampling_params;
pub mod speculation;

pub use batch::{BatchError, ForwardBatch};
pub use constraint::{Constraint, ConstraintState, TokenConstraint};
pub use engine::{Collected, Engine, EngineHandle, EngineStats, RequestStream};
pub use error::{EngineError, ExecuteError};
pub use executor::Executor;
pub use request::{FinishReason, GenerateRequest, RequestId, SampledToken, StreamEvent, Tenant, Usage};
pub use scheduler::{AdmissionError, Schedule, ScheduledSeq, Scheduler, SchedulerConfig};
pub use speculation::SpeculationConfig;
pub use sampling_params::{
    choice_seed, SamplingError, SamplingParams, GREEDY_TEMPERATURE, MAX_LOGIT_BIAS, MAX_LOGPROBS, MAX_N, MAX_PENALTY,
};
