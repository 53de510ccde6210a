//! `/v1/files`' storage: each file is `DATA_DIR/files/{id}` (its bytes) beside `{id}.json` (its
//! OpenAI file object and the key that owns it). Batch output and error files live here too,
//! appended line by line. A file is visible only to the key that uploaded it (or whose batch made
//! it); on a server without keys, to everyone.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// OpenAI's file object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileObject {
    pub id: String,
    pub object: String,
    pub bytes: u64,
    pub created_at: u64,
    pub filename: String,
    pub purpose: String,
    pub status: String,
}

/// A file object as kept on disk, with its owner.
#[derive(Serialize, Deserialize)]
struct StoredFile {
    #[serde(flatten)]
    file: FileObject,
    owner: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

/// An id is ours only if it looks like one we made: no path can be smuggled in.
pub fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.len() <= 64 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl FileStore {
    pub fn open(data_dir: &Path) -> std::io::Result<FileStore> {
        let dir = data_dir.join("files");
        std::fs::create_dir_all(&dir)?;
        Ok(FileStore { dir })
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Stores `bytes` as a new file of `owner`'s.
    pub fn create(&self, filename: &str, purpose: &str, bytes: &[u8], owner: Option<&str>) -> std::io::Result<FileObject> {
        let id = crate::routes::generation::item_id("file").replace('_', "-");
        write_atomically(&self.path(&id), bytes)?;
        let file = FileObject { id, object: "file".into(), bytes: bytes.len() as u64, created_at: crate::openai::unix_time(), filename: filename.into(), purpose: purpose.into(), status: "processed".into() };
        self.save(&file, owner)?;
        Ok(file)
    }

    /// An empty file that a batch appends to (see [`Appender`]); listed once `save`d.
    pub fn reserve(&self, filename: &str, purpose: &str) -> FileObject {
        let id = crate::routes::generation::item_id("file").replace('_', "-");
        FileObject { id, object: "file".into(), bytes: 0, created_at: crate::openai::unix_time(), filename: filename.into(), purpose: purpose.into(), status: "processed".into() }
    }

    pub fn save(&self, file: &FileObject, owner: Option<&str>) -> std::io::Result<()> {
        let json = serde_json::to_vec(&StoredFile { file: file.clone(), owner: owner.map(str::to_string) }).map_err(std::io::Error::other)?;
        write_atomically(&self.meta_path(&file.id), &json)
    }

    /// File `id`, if `caller` (the requesting key, `None` on an open server) owns it.
    pub fn get(&self, id: &str, caller: Option<&str>) -> Option<FileObject> {
        if !valid_id(id, "file-") {
            return None;
        }
        let text = std::fs::read(self.meta_path(id)).ok()?;
        let stored: StoredFile = serde_json::from_slice(&text).ok()?;
        (stored.owner.as_deref() == caller).then_some(stored.file)
    }

    pub fn content(&self, id: &str, caller: Option<&str>) -> Option<Vec<u8>> {
        self.get(id, caller)?;
        std::fs::read(self.path(id)).ok()
    }

    /// `caller`'s files, newest first.
    pub fn list(&self, caller: Option<&str>) -> Vec<FileObject> {
        let mut files: Vec<FileObject> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string)).filter_map(|id| self.get(&id, caller)).collect())
            .unwrap_or_default();
        files.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        files
    }

    pub fn delete(&self, id: &str, caller: Option<&str>) -> bool {
        if self.get(id, caller).is_none() {
            return false;
        }
        let _ = std::fs::remove_file(self.path(id));
        std::fs::remove_file(self.meta_path(id)).is_ok()
    }
}

/// Writes through a temporary file and a rename, so a crash leaves the old content or the new.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Appends whole lines to a file, each synced before it counts: after a crash the file holds
/// every line written before it, and at most a torn last line, which [`Appender::open`] cuts.
pub struct Appender {
    file: std::fs::File,
}

impl Appender {
    /// Opens `path` for appending, cutting a torn last line; returns the complete lines in it.
    pub fn open(path: &Path) -> std::io::Result<(Appender, Vec<String>)> {
        let existing = std::fs::read(path).unwrap_or_default();
        let whole = existing.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        file.set_len(whole as u64)?;
        let lines = String::from_utf8_lossy(&existing[..whole]).lines().map(str::to_string).collect();
        let mut appender = Appender { file };
        std::io::Seek::seek(&mut appender.file, std::io::SeekFrom::End(0))?;
        Ok((appender, lines))
    }

    pub fn append(&mut self, line: &str) -> std::io::Result<()> {
        self.file.write_all(format!("{line}\n").as_bytes())?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_ids_cannot_name_paths() {
        let dir = std::env::temp_dir().join(format!("rill-files-{}", std::process::id()));
        let store = FileStore::open(&dir).unwrap();
        let me = Some("me");
        let f = store.create("in.jsonl", "batch", b"{\"a\":1}\n", me).unwrap();
        assert!(valid_id(&f.id, "file-"), "{}", f.id);
        assert_eq!(store.get(&f.id, me), Some(f.clone()));
        assert_eq!(store.content(&f.id, me).unwrap(), b"{\"a\":1}\n");
        assert_eq!(store.list(me), vec![f.clone()]);
        // Another key (or none) sees nothing of it.
        for other in [Some("you"), None] {
            assert!(store.get(&f.id, other).is_none() && store.content(&f.id, other).is_none() && store.list(other).is_empty() && !store.delete(&f.id, other));
        }
        for bad in ["../x", "file-../../etc", "file-", "file-a/b", "x"] {
            assert!(store.get(bad, me).is_none(), "{bad}");
        }
        assert!(store.delete(&f.id, me));
        assert!(store.get(&f.id, me).is_none() && !store.delete(&f.id, me));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_appender_cuts_a_torn_last_line() {
        let path = std::env::temp_dir().join(format!("rill-append-{}", std::process::id()));
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let (mut a, lines) = Appender::open(&path).unwrap();
        assert_eq!(lines, ["one", "two"]);
        a.append("three").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n");
        std::fs::remove_file(path).unwrap();
    }
}
