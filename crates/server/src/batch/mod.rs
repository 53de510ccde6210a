//! OpenAI's Batch API inside the server: `/v1/files` holds JSONL inputs and outputs, and
//! `/v1/batches` runs each input line through the same routes a client would call, at a lower
//! priority than interactive requests. Everything lives under `--data-dir` and survives a
//! crash: a batch's state is one JSON file rewritten atomically, its output and error files are
//! appended a synced line at a time, and on restart a batch still running resumes with the lines
//! that have no output yet — none lost, none run twice into the output.

pub mod files;
pub mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use serde_json::Value;

use files::{write_atomically, FileStore};

/// The endpoints a batch may target.
pub const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/responses"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// OpenAI's batch object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Batch {
    pub id: String,
    pub object: String,
    pub endpoint: String,
    pub errors: Option<Value>,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: u64,
    pub in_progress_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub expired_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub request_counts: RequestCounts,
    pub metadata: Option<Value>,
}

/// A batch as kept on disk: the object, and what only the server needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredBatch {
    pub batch: Batch,
    /// The key that created it: its lines run (and are counted) as that key.
    pub owner: Option<String>,
    /// Files its results are appended to, named before they are announced.
    pub output_file: String,
    pub error_file: String,
}

impl StoredBatch {
    pub fn is_finished(&self) -> bool {
        matches!(self.batch.status.as_str(), "completed" | "failed" | "cancelled" | "expired")
    }
}

/// The files and batches of one server.
pub struct BatchApi {
    pub files: FileStore,
    dir: PathBuf,
    batches: Mutex<BTreeMap<String, StoredBatch>>,
    /// The API router, which runs each line as a request (set once the router exists).
    router: OnceLock<axum::Router>,
    /// Largest upload accepted.
    pub max_file_bytes: usize,
    /// Lines of one batch running at once.
    pub concurrency: usize,
}

impl BatchApi {
    /// Opens (or creates) `data_dir`, reading the batches kept there.
    pub fn open(data_dir: &Path, max_file_bytes: usize, concurrency: usize) -> std::io::Result<BatchApi> {
        let files = FileStore::open(data_dir)?;
        let dir = data_dir.join("batches");
        std::fs::create_dir_all(&dir)?;
        let mut batches = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json") {
                match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<StoredBatch>(&b).ok()) {
                    Some(stored) => {
                        batches.insert(stored.batch.id.clone(), stored);
                    }
                    None => tracing::warn!(path = %path.display(), "unreadable batch state, skipped"),
                }
            }
        }
        Ok(BatchApi { files, dir, batches: Mutex::new(batches), router: OnceLock::new(), max_file_bytes, concurrency: concurrency.max(1) })
    }

    pub fn set_router(&self, router: axum::Router) {
        let _ = self.router.set(router);
    }

    pub fn router(&self) -> Option<axum::Router> {
        self.router.get().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredBatch>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<StoredBatch> {
        self.lock().get(id).cloned()
    }

    /// `owner`'s batches, newest first.
    pub fn list(&self, owner: Option<&str>) -> Vec<Batch> {
        let mut all: Vec<Batch> = self.lock().values().filter(|s| s.owner.as_deref() == owner).map(|s| s.batch.clone()).collect();
        all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        all
    }

    /// Batches a previous run left unfinished.
    pub fn unfinished(&self) -> Vec<String> {
        self.lock().values().filter(|s| !s.is_finished()).map(|s| s.batch.id.clone()).collect()
    }

    /// Changes a batch and writes it to disk before anyone sees the change.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut StoredBatch)) -> Option<StoredBatch> {
        let mut all = self.lock();
        let stored = all.get_mut(id)?;
        change(stored);
        if let Err(e) = self.persist(stored) {
            tracing::error!(batch = %id, error = %e, "cannot write the batch's state");
        }
        Some(stored.clone())
    }

    pub fn insert(&self, stored: StoredBatch) -> std::io::Result<()> {
        self.persist(&stored)?;
        self.lock().insert(stored.batch.id.clone(), stored);
        Ok(())
    }

    fn persist(&self, stored: &StoredBatch) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?;
        write_atomically(&self.dir.join(format!("{}.json", stored.batch.id)), &json)
    }
}

/// Marks an in-process request as one line of a batch: it runs as the batch's owner (checked
/// when the batch was created) and at batch priority. Only the server can attach it.
#[derive(Debug, Clone)]
pub struct BatchLine {
    pub owner: Option<String>,
}

/// The engine priority of batch lines (interactive requests are 0; lower runs first).
pub const BATCH_PRIORITY: i32 = 1;

pub type SharedBatchApi = Arc<BatchApi>;
