//! API keys. Keys come from flags (`--api-key`, `--admin-api-key`) and a keys file (TOML
//! `[[keys]]` with `name`, `key` or `key_sha256`, `scopes`), reloadable while serving. Only
//! SHA-256 digests are kept; a presented key is hashed and compared with every digest in
//! constant time. With no inference keys configured the API is open (as before keys existed).
//!
//! The check is default-deny: every path needs a key except the probes (and `/metrics` where
//! configured open), decided on the normalized path, so `//v1/models`, `/v1/./models`,
//! `/V1/models`, percent-encoding and trailing slashes can only ever require a key, never skip it.

use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::anthropic::error::AnthropicError;
use crate::key_limits::{Accounts, KeyLimits};
use crate::openai::error::ApiError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The OpenAI/Anthropic API on the main listener.
    Inference,
    /// The admin API on its own listener.
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// For logs and per-key accounting; the key itself is never logged.
    pub name: String,
    digest: [u8; 32],
    pub scopes: Vec<Scope>,
    pub limits: KeyLimits,
}

/// The key a request was authenticated with (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    keys: Vec<ApiKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    key: Option<String>,
    key_sha256: Option<String>,
    #[serde(default = "default_scopes")]
    scopes: Vec<Scope>,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u64>,
    max_concurrent: Option<u32>,
    weight: Option<u32>,
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Inference]
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Keys {
    /// Keys given on the command line, each with one scope, named by position.
    pub fn from_flags(inference: &[String], admin: &[String]) -> Keys {
        let named = |prefix: &str, keys: &[String], scope: Scope| -> Vec<ApiKey> {
            keys.iter().enumerate().map(|(i, k)| ApiKey { name: format!("{prefix}-{i}"), digest: digest(k), scopes: vec![scope], limits: KeyLimits::default() }).collect()
        };
        let mut keys = named("flag", inference, Scope::Inference);
        keys.extend(named("admin-flag", admin, Scope::Admin));
        Keys { keys }
    }

    /// These keys and `other`'s.
    pub fn merged(mut self, other: Keys) -> Keys {
        self.keys.extend(other.keys);
        self
    }

    /// These keys and those of a keys file.
    pub fn with_file(self, path: &Path) -> Result<Keys, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(self.merged(Keys::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?))
    }

    pub fn parse(toml_text: &str) -> Result<Keys, String> {
        let file: KeysFile = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let mut keys = Vec::with_capacity(file.keys.len());
        for e in file.keys {
            let digest = match (&e.key, &e.key_sha256) {
                (Some(k), None) if !k.is_empty() => digest(k),
                (None, Some(hex)) => parse_hex(hex).ok_or_else(|| format!("key {:?}: key_sha256 must be 64 hex digits", e.name))?,
                _ => return Err(format!("key {:?}: give exactly one of `key` and `key_sha256`", e.name)),
            };
            if e.scopes.is_empty() {
                return Err(format!("key {:?}: scopes must not be empty", e.name));
            }
            if keys.iter().any(|k: &ApiKey| k.name == e.name) {
                return Err(format!("two keys are named {:?}", e.name));
            }
            let limits = KeyLimits { requests_per_minute: e.requests_per_minute, tokens_per_minute: e.tokens_per_minute, max_concurrent: e.max_concurrent, weight: e.weight };
            keys.push(ApiKey { name: e.name, digest, scopes: e.scopes, limits });
        }
        Ok(Keys { keys })
    }

    /// Whether any key has `scope` (without one, that API is open).
    pub fn guards(&self, scope: Scope) -> bool {
        self.keys.iter().any(|k| k.scopes.contains(&scope))
    }

    /// The key `presented` is, comparing its digest with every key's in constant time.
    pub fn find(&self, presented: &str) -> Option<&ApiKey> {
        let d = digest(presented);
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(&d)) {
                found = Some(k);
            }
        }
        found
    }

    /// The key named `name` (a batch runs its lines as the key that created it).
    pub fn by_name(&self, name: &str) -> Option<&ApiKey> {
        self.keys.iter().find(|k| k.name == name)
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.trim().as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The keys a listener checks, swapped whole on reload, and each key's account (limits and
/// usage), which outlives reloads.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    keys: Arc<RwLock<Arc<Keys>>>,
    pub accounts: Accounts,
}

impl KeyStore {
    pub fn new(keys: Keys) -> KeyStore {
        KeyStore { keys: Arc::new(RwLock::new(Arc::new(keys))), accounts: Accounts::default() }
    }

    pub fn current(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, keys: Keys) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }
}

/// What a listener requires of a request.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub keys: KeyStore,
    pub scope: Scope,
    /// Paths served without a key (normalized): the probes, maybe `/metrics`.
    pub open_paths: Vec<&'static str>,
}

/// `path` as the router would see it at best: percent-decoded, lowercased, `//` and `.` segments
/// collapsed, `..` resolved, no trailing slash.
pub fn normalize_path(path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy().to_lowercase();
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

/// The key a request presents: `Authorization: Bearer KEY`, or `x-api-key: KEY` (Anthropic's).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
}

/// The middleware: 401 without a known key, 403 for a key without the scope, in the shape of the
/// API asked (Anthropic's for `/v1/messages`).
pub async fn require_key(State(policy): State<AuthPolicy>, mut req: Request, next: Next) -> Response {
    let path = normalize_path(req.uri().path());
    let keys = policy.keys.current();
    if !keys.guards(policy.scope) || policy.open_paths.contains(&path.as_str()) {
        return next.run(req).await;
    }
    // A batch's line, sent by the server itself: it runs as the key that created the batch (if
    // that key still exists), paced by the batch runner instead of the key's request limits.
    if let Some(line) = req.extensions().get::<crate::batch::BatchLine>().cloned() {
        let Some(key) = line.owner.as_deref().and_then(|name| keys.by_name(name)).filter(|k| k.scopes.contains(&policy.scope)) else {
            return ApiError::new(401, "invalid_request_error", "The key that created this batch is no longer valid.").with_code("invalid_api_key").into_response();
        };
        let account = policy.keys.accounts.account(&key.name, key.limits);
        req.extensions_mut().insert(KeyName(key.name.clone()));
        req.extensions_mut().insert(crate::key_limits::KeyCharge::unpaced(account));
        return next.run(req).await;
    }
    let error = match presented_key(req.headers()).map(|k| keys.find(k)) {
        None => ApiError::new(401, "invalid_request_error", "Missing API key: send it as `Authorization: Bearer KEY`.").with_code("invalid_api_key"),
        Some(None) => ApiError::new(401, "invalid_request_error", "Incorrect API key provided.").with_code("invalid_api_key"),
        Some(Some(key)) if !key.scopes.contains(&policy.scope) => {
            ApiError::new(403, "invalid_request_error", format!("This key is not allowed to use the {} API.", if policy.scope == Scope::Admin { "admin" } else { "inference" }))
                .with_code("insufficient_scope")
        }
        Some(Some(key)) => match policy.keys.accounts.account(&key.name, key.limits).admit(std::time::Instant::now()) {
            Ok(charge) => {
                req.extensions_mut().insert(KeyName(key.name.clone()));
                // The charge holds the key's concurrency place until the request's output ends.
                req.extensions_mut().insert(charge);
                return next.run(req).await;
            }
            Err(limited) => limited,
        },
    };
    let mut resp = if path.starts_with("/v1/messages") { AnthropicError(error).into_response() } else { error.into_response() };
    // The request's body was never read: the connection cannot carry another request, and saying
    // so lets a keep-alive client open a new one instead of writing into a closed socket.
    resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_so_tricks_cannot_skip_the_check() {
        for trick in ["//v1/models", "/v1/./models", "/V1/Models", "/v1/%6Dodels", "/v1/models/", "/health/../v1/models", "/v1//models//"] {
            assert_eq!(normalize_path(trick), "/v1/models", "{trick}");
        }
        assert_eq!(normalize_path("/health/"), "/health");
        assert_eq!(normalize_path("/%2e%2e/health"), "/health");
    }

    #[test]
    fn keys_from_flags_and_file_match_by_digest_with_scopes() {
        let text = r#"
            [[keys]]
            name = "alice"
            key = "sk-alice"
            scopes = ["inference", "admin"]
            requests_per_minute = 2

            [[keys]]
            name = "bob"
            key_sha256 = "a7b3b7b4c2a5f1ffbd53c6d40c4ec5d2f5b4c7c7d44a8f0a2e17d4c1e3b0c9f1"
        "#;
        let keys = Keys::from_flags(&["sk-flag".into()], &[]).with_file_text(text).unwrap();
        assert_eq!(keys.find("sk-alice").unwrap().scopes, [Scope::Inference, Scope::Admin]);
        assert_eq!(keys.find("sk-flag").unwrap().name, "flag-0");
        assert!(keys.find("sk-nobody").is_none() && keys.find("").is_none());
        assert!(keys.guards(Scope::Admin) && keys.guards(Scope::Inference));
        let hashed = Keys::parse(&format!("[[keys]]\nname = \"c\"\nkey_sha256 = \"{}\"\n", hex(&digest("sk-c")))).unwrap();
        assert_eq!(hashed.find("sk-c").unwrap().scopes, [Scope::Inference]);
        assert!(Keys::parse("[[keys]]\nname = \"x\"\n").is_err());
        assert!(Keys::parse("[[keys]]\nname = \"x\"\nkey = \"k\"\nscopes = [\"root\"]\n").is_err());
        assert!(!Keys::default().guards(Scope::Inference));
    }

    fn hex(d: &[u8; 32]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    impl Keys {
        fn with_file_text(self, text: &str) -> Result<Keys, String> {
            Ok(self.merged(Keys::parse(text)?))
        }
    }

    #[test]
    fn bearer_and_x_api_key_headers_present_keys() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer  sk-1 ".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-1"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "sk-2".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-2"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
    }
}
