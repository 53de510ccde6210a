//! The rill server: the OpenAI-compatible HTTP layer (`app`, `routes`, `openai`), the choice
//! text pipeline (`choices`), and the commands of the `rill` binary (`serve`, `generate`, `bench`).

pub mod admin;
pub mod app;
pub mod bench_engine;
pub mod check;
pub mod choices;
pub mod config_file;
pub mod device;
pub mod generate;
pub mod openai;
pub mod options;
pub mod routes;
pub mod serve;
