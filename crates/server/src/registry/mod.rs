//! The loaded models by name and version, the aliases that point at them, and each name's traffic
//! split: which model answers a request's `model`. `chat@v2` pins a version; `chat` is split by
//! weight between its versions (all to the first one loaded until an operator says otherwise),
//! and a canary that crosses its rollback rules sends everything back to the baseline.

pub mod drift;
pub mod monitor;
pub mod rollback;
pub mod traffic;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use serde_json::{json, Value};

use crate::app::ServedModel;
use rollback::RollbackRecord;
use traffic::{Traffic, TrafficRequest};

/// The version of a model loaded without one.
pub const DEFAULT_VERSION: &str = "default";
pub const ROLLBACKS: &str = "rill_model_rollbacks_total";
/// How often at most routing re-judges the canaries (each judgement reads their windows).
const JUDGE_EVERY: Duration = Duration::from_millis(100);
/// How often idle engines are looked for.
const IDLE_CHECK: Duration = Duration::from_millis(250);
/// Drift gauges are refreshed every this many idle checks.
const DRIFT_GAUGES_EVERY: u64 = 4;
pub const DRIFT_PSI: &str = "rill_drift_psi";

/// `name` or `name@version`.
pub fn split_version(model: &str) -> (&str, Option<&str>) {
    match model.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (model, None),
    }
}

/// A name: letters, digits, '.', '_' or '-' (it appears in URLs and metric labels).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

struct Deployment {
    versions: BTreeMap<String, Arc<ServedModel>>,
    traffic: Traffic,
    rollbacks: Vec<RollbackRecord>,
}

impl Deployment {
    /// `version` if it is loaded, else any version of the name (one always is).
    fn serving(&self, version: &str) -> Option<Arc<ServedModel>> {
        self.versions.get(version).or_else(|| self.versions.values().next()).cloned()
    }
}

#[derive(Default)]
struct Catalog {
    names: BTreeMap<String, Deployment>,
    aliases: BTreeMap<String, String>,
}

pub struct Registry {
    catalog: RwLock<Catalog>,
    /// A load whose KV pool does not fit may put the least recently used idle, unpinned model
    /// to sleep (it comes back on its next request) instead of failing.
    pub allow_eviction: std::sync::atomic::AtomicBool,
    /// Every version's usage, kept after it is unloaded.
    pub usage: Arc<usage::UsageLedger>,
    started: Instant,
    /// Milliseconds after `started` of the last judgement of the canaries.
    last_judged: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { catalog: RwLock::default(), allow_eviction: Default::default(), usage: Arc::default(), started: Instant::now(), last_judged: AtomicU64::new(0) }
    }
}

impl Registry {
    fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a loaded version. The first version of a name takes all its traffic; later ones
    /// take none until a traffic split gives them some.
    pub fn insert(&self, mut model: ServedModel) -> Result<Arc<ServedModel>, String> {
        model.usage = self.usage.clone();
        let mut c = self.write();
        if c.aliases.contains_key(&model.name) {
            return Err(format!("{:?} is an alias", model.name));
        }
        let model = Arc::new(model);
        let deployment = c.names.entry(model.name.clone()).or_insert_with(|| Deployment { versions: BTreeMap::new(), traffic: Traffic::all_to(&model.version), rollbacks: Vec::new() });
        if deployment.versions.contains_key(&model.version) {
            return Err(format!("model {:?} already has a version {:?}", model.name, model.version));
        }
        deployment.versions.insert(model.version.clone(), model.clone());
        Ok(model)
    }

    /// Takes a version out of routing; its share of traffic goes with it.
    pub fn remove(&self, name: &str, version: &str) -> Option<Arc<ServedModel>> {
        let mut c = self.write();
        let deployment = c.names.get_mut(name)?;
        let model = deployment.versions.remove(version)?;
        let remaining: Vec<&str> = deployment.versions.keys().map(String::as_str).collect();
        deployment.traffic.forget(version, &remaining);
        if deployment.versions.is_empty() {
            c.names.remove(name);
        }
        Some(model)
    }

    /// Every loaded version.
    pub fn all(&self) -> Vec<Arc<ServedModel>> {
        self.read().names.values().flat_map(|d| d.versions.values().cloned()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.read().names.is_empty()
    }

    pub fn get(&self, name: &str, version: &str) -> Option<Arc<ServedModel>> {
        self.read().names.get(name)?.versions.get(version).cloned()
    }

    /// The model that answers `asked` (a name, `name@version` or an alias; with one name served,
    /// nothing means that one).
    pub fn route(&self, asked: Option<&str>) -> Option<Arc<ServedModel>> {
        let c = self.read();
        let asked = match asked.filter(|a| !a.is_empty()) {
            Some(a) => a,
            None if c.names.len() == 1 => c.names.keys().next()?,
            None => return None,
        };
        let target = c.aliases.get(asked).map_or(asked, String::as_str);
        let (name, version) = split_version(target);
        let deployment = c.names.get(name)?;
        if let Some(v) = version {
            return deployment.versions.get(v).cloned();
        }
        let routed = deployment.serving(deployment.traffic.pick(traffic::uniform()));
        let judged = deployment.traffic.rollback.is_some();
        drop(c);
        if judged {
            self.judge_now_and_then();
        }
        routed
    }

    /// Whether any version of `name` is loaded.
    pub fn has(&self, name: &str) -> bool {
        self.read().names.contains_key(name)
    }

    /// Every name and alias clients may ask for, with the model that stands for it (the name's
    /// baseline).
    pub fn listed(&self) -> Vec<(String, Arc<ServedModel>)> {
        let c = self.read();
        let baseline = |d: &Deployment| d.serving(&d.traffic.baseline);
        let mut out: Vec<(String, Arc<ServedModel>)> = c.names.iter().filter_map(|(n, d)| Some((n.clone(), baseline(d)?))).collect();
        for (alias, target) in &c.aliases {
            let (name, version) = split_version(target);
            let Some(d) = c.names.get(name) else { continue };
            if let Some(m) = version.map_or_else(|| baseline(d), |v| d.versions.get(v).cloned()) {
                out.push((alias.clone(), m));
            }
        }
        out
    }

    /// `alias` now stands for `target` (`name` or `name@version`, which must exist).
    pub fn set_alias(&self, alias: &str, target: &str) -> Result<(), String> {
        if !valid_name(alias) {
            return Err("an alias must be 1-128 characters of letters, digits, '.', '_' or '-'".into());
        }
        let mut c = self.write();
        if c.names.contains_key(alias) {
            return Err(format!("{alias:?} is a model name"));
        }
        let (name, version) = split_version(target);
        let exists = c.names.get(name).is_some_and(|d| version.is_none_or(|v| d.versions.contains_key(v)));
        if !exists {
            return Err(format!("no model {target:?} to point at"));
        }
        c.aliases.insert(alias.to_string(), target.to_string());
        Ok(())
    }

    pub fn remove_alias(&self, alias: &str) -> bool {
        self.write().aliases.remove(alias).is_some()
    }

    pub fn aliases(&self) -> BTreeMap<String, String> {
        self.read().aliases.clone()
    }

    /// Splits `name`'s traffic as asked; its canaries are judged afresh from now on.
    pub fn set_traffic(&self, name: &str, req: TrafficRequest) -> Result<Traffic, String> {
        let mut c = self.write();
        let deployment = c.names.get_mut(name).ok_or_else(|| format!("no model {name:?}"))?;
        let versions: Vec<&str> = deployment.versions.keys().map(String::as_str).collect();
        let traffic = Traffic::from_request(req, &versions)?;
        let logprobs = traffic.rollback.as_ref().is_some_and(|r| r.max_logprob_drop.is_some());
        for (version, model) in &deployment.versions {
            model.monitor.track_logprobs.store(logprobs, Ordering::Relaxed);
            if traffic.candidates().any(|c| c == version) {
                model.monitor.clear();
            }
        }
        deployment.traffic = traffic.clone();
        Ok(traffic)
    }

    /// Judges the canaries, at most every [`JUDGE_EVERY`].
    fn judge_now_and_then(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_judged.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= JUDGE_EVERY.as_millis() as u64 && self.last_judged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.judge();
        }
    }

    /// Every canary against its name's rollback rules: one that crosses a threshold sends all of
    /// its name's traffic back to the baseline, and the rollback is recorded. It stays loaded.
    pub fn judge(&self) {
        let breaches: Vec<(String, String, rollback::Breach, usize)> = {
            let c = self.read();
            let mut found = Vec::new();
            for (name, d) in &c.names {
                let Some(rules) = &d.traffic.rollback else { continue };
                let Some(baseline) = d.versions.get(&d.traffic.baseline) else { continue };
                let base = baseline.monitor.stats(rules.window);
                for candidate in d.traffic.candidates() {
                    let Some(model) = d.versions.get(candidate) else { continue };
                    let stats = model.monitor.stats(rules.window);
                    if let Some(breach) = rules.judge(&stats, &base) {
                        found.push((name.clone(), candidate.to_string(), breach, stats.requests));
                    }
                }
            }
            found
        };
        if breaches.is_empty() {
            return;
        }
        let mut c = self.write();
        for (name, version, breach, requests) in breaches {
            let Some(d) = c.names.get_mut(&name) else { continue };
            if !d.traffic.candidates().any(|v| v == version) {
                continue;
            }
            d.traffic.roll_back();
            let at = crate::openai::unix_time();
            tracing::warn!(model = %name, version = %version, baseline = %d.traffic.baseline, rule = breach.rule, observed = breach.observed, threshold = breach.threshold, "canary rolled back");
            counter!(ROLLBACKS, "model" => name.clone(), "version" => version.clone()).increment(1);
            d.rollbacks.push(RollbackRecord { version, baseline: d.traffic.baseline.clone(), rule: breach.rule, observed: breach.observed, threshold: breach.threshold, requests, at });
        }
    }

    /// Puts the least recently used idle, unpinned model to sleep to free its memory, if the
    /// operator allowed eviction; its id, or `None` when nothing could be freed. Blocks while the
    /// engine stops.
    pub fn make_room(&self) -> Option<String> {
        if !self.allow_eviction.load(Ordering::Relaxed) {
            return None;
        }
        let mut candidates: Vec<Arc<ServedModel>> = self.all().into_iter().filter(|m| !m.engine.pinned && m.engine.reload.is_some() && !m.engine.is_asleep()).collect();
        candidates.sort_by_key(|m| m.engine.last_used());
        for model in candidates {
            if let Some(engine) = model.engine.sleep_if_unused() {
                tracing::warn!(model = %model.id(), "evicted to make room for another model's load (it comes back on its next request)");
                drop(engine);
                return Some(model.id());
            }
        }
        None
    }

    /// For the server's life: puts to sleep the engines idle past their `keep_alive` (freeing
    /// weights and KV pool off the async threads; the next request wakes them), and keeps the
    /// drift gauges current.
    pub async fn housekeeping(self: Arc<Self>) {
        for tick in 0u64.. {
            tokio::time::sleep(IDLE_CHECK).await;
            for model in self.all() {
                if let Some(engine) = model.engine.sleep_if_idle(Instant::now()) {
                    tracing::info!(model = %model.id(), keep_alive = ?model.engine.keep_alive, "idle: weights and KV pool freed until the next request");
                    tokio::task::spawn_blocking(move || drop(engine));
                }
                if tick % DRIFT_GAUGES_EVERY == 0 {
                    for (feature, drift) in model.monitor.drift().2 {
                        if let Some(d) = drift {
                            gauge!(DRIFT_PSI, "model" => model.name.clone(), "version" => model.version.clone(), "feature" => feature).set(d.psi);
                        }
                    }
                }
            }
        }
    }

    /// `GET /admin/models/{name}/drift`: per loaded version, the window sizes and each
    /// feature's index and binned distributions.
    pub fn drift(&self, name: &str) -> Option<Value> {
        let c = self.read();
        let d = c.names.get(name)?;
        let versions: BTreeMap<&String, Value> = d
            .versions
            .iter()
            .map(|(v, m)| {
                let (reference, recent, features) = m.monitor.drift();
                (v, json!({"reference_requests": reference, "recent_requests": recent, "features": features}))
            })
            .collect();
        Some(json!({"name": name, "window": monitor::DRIFT_WINDOW, "versions": versions}))
    }

    /// Pins the latest requests of `name` (or of one version) as the drift reference.
    pub fn pin_drift_reference(&self, name: &str, version: Option<&str>) -> Option<Value> {
        let c = self.read();
        let d = c.names.get(name)?;
        let pinned: BTreeMap<&String, usize> = d.versions.iter().filter(|(v, _)| version.is_none_or(|x| x == v.as_str())).map(|(v, m)| (v, m.monitor.pin_reference())).collect();
        Some(json!({"name": name, "reference_requests": pinned}))
    }

    /// `name`'s versions (loaded ones, with their window statistics), traffic split and
    /// rollbacks, for the admin API; `None` when no version of it is loaded.
    pub fn describe(&self, name: &str) -> Option<Value> {
        self.judge();
        let c = self.read();
        let d = c.names.get(name)?;
        let window = d.traffic.rollback.as_ref().map_or(rollback::MAX_WINDOW, |r| r.window);
        let versions: BTreeMap<&String, Value> = d
            .versions
            .iter()
            .map(|(v, m)| {
                let s = m.monitor.stats(window);
                let stats = json!({"requests": s.requests, "error_rate": s.error_rate, "ttft_p95_ms": s.ttft_p95_ms, "inter_token_p95_ms": s.inter_token_p95_ms, "mean_logprob": s.mean_logprob});
                (v, json!({"weight": d.traffic.weights.get(v).copied().unwrap_or(0), "path": m.info.path, "asleep": m.engine.is_asleep(), "window": stats}))
            })
            .collect();
        Some(json!({"name": name, "versions": versions, "traffic": d.traffic, "rollbacks": d.rollbacks}))
    }
}
