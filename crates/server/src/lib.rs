//! The rill server as a library: the OpenAI-compatible HTTP layer (`routes`, `openai`), the
//! choice text pipeline (`choices`), the served models (`app`), the admin API (`admin`), the
//! Prometheus export (`prometheus`), and loading a model on a device (`load`, `device`), which
//! the admin API and the `rill` command line share.

pub mod admin;
pub mod anthropic;
pub mod app;
pub mod auth;
pub mod batch;
pub mod choices;
pub mod assistant_output;
pub mod reasoning;
pub mod responses;
pub mod tool_calls;
pub mod device;
pub mod engine_slot;
pub mod key_limits;
pub mod listener;
pub mod load;
pub mod openai;
pub mod openapi;
pub mod prometheus;
pub mod registry;
pub mod routes;

pub use load::LoadSettings;
