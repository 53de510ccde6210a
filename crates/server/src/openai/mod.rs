//! The OpenAI-compatible API's pure parts: wire types (`types`), request validation into
//! `SamplingParams` (`validate`), the one error shape (`error`) and streaming stop strings
//! (`stop`). No I/O here, so every rule is unit-tested without a server or a model; the HTTP
//! layer (`routes`) parses, calls these, tokenizes and talks to the engine.

pub mod error;
pub mod stop;
pub mod tools;
pub mod types;
pub mod validate;

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod types_tests;
#[cfg(test)]
mod validate_tests;

/// Seconds since the Unix epoch, for the `created` field of responses.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
