//! Test support shared by the integration tests and the benchmarks.

pub mod testing {
    use std::path::PathBuf;

    pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

    /// The default model, fetched by `scripts/fetch-model.sh` (honours `RILL_MODELS_DIR`).
    /// Panics with the fix when it is missing: tests that need the real model must not pass
    /// silently without it.
    pub fn default_model_path() -> PathBuf {
        let dir = std::env::var_os("RILL_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("models"));
        let path = dir.join(DEFAULT_MODEL_FILE);
        assert!(
            path.is_file(),
            "{} is missing: run scripts/fetch-model.sh first (scripts/test.sh does)",
            path.display()
        );
        path
    }

    pub fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }
}
