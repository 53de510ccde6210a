//! Integration tests: one binary, on the real default model where it matters.

mod chat_template;
mod tokenizer;
mod tokenizer_vocabs;
mod common;
mod batching;
mod golden;
mod families;
mod sliding_window;
mod hf_models;
mod server;
mod admin;
mod lifecycle;
mod auth;
mod fake;
mod http;
mod bench;
mod padded_decode;
mod seeded_sampling;
mod speculation;
mod structured_outputs;
mod prompt_lists;
