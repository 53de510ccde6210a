//! Per-key limits from the keys file: requests and tokens per minute (token buckets that refill
//! continuously) and requests in flight. A request over a limit is a 429 `rate_limit_exceeded`
//! with `Retry-After`. Tokens are charged when a request ends (prompt + generated), so a key may
//! overdraw once; it then waits until its bucket is positive again. Usage is counted per key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use metrics::counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::openai::error::ApiError;

pub const KEY_REQUESTS: &str = "rill_key_requests_total";
pub const KEY_TOKENS: &str = "rill_key_tokens_total";
pub const KEY_RATE_LIMITED: &str = "rill_key_rate_limited_total";

/// What a key may use; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub max_concurrent: Option<u32>,
    /// The key's share of the engine when keys compete (1 unless set).
    pub weight: Option<u32>,
}

/// A continuously refilling allowance of `per_minute`, starting full.
#[derive(Debug)]
struct Bucket {
    per_minute: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: f64, now: Instant) -> Bucket {
        Bucket { per_minute, level: per_minute, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.per_minute / 60.0).min(self.per_minute);
        self.at = now;
    }

    /// Time until the level reaches `need`.
    fn wait_for(&self, need: f64) -> Duration {
        Duration::from_secs_f64(((need - self.level).max(0.0) * 60.0 / self.per_minute).max(0.0))
    }
}

/// One key's allowances and usage, kept across key reloads (by name).
#[derive(Debug)]
pub struct KeyAccount {
    pub name: String,
    limits: Mutex<KeyLimits>,
    buckets: Mutex<(Option<Bucket>, Option<Bucket>)>,
    concurrent: Mutex<Option<(u32, Arc<Semaphore>)>>,
}

/// A request's hold on its key: the concurrency place (released when dropped) and the account to
/// charge its tokens to.
#[derive(Debug, Clone)]
pub struct KeyCharge {
    pub account: Arc<KeyAccount>,
    _place: Option<Arc<OwnedSemaphorePermit>>,
}

impl KeyCharge {
    /// A charge that takes no concurrency place (for batch lines, which the runner paces).
    pub fn unpaced(account: Arc<KeyAccount>) -> KeyCharge {
        KeyCharge { account, _place: None }
    }

    /// Counts a finished request's tokens against the key.
    pub fn tokens(&self, prompt: usize, completion: usize) {
        self.account.charge_tokens((prompt + completion) as u64);
        counter!(KEY_TOKENS, "key" => self.account.name.clone(), "kind" => "prompt").increment(prompt as u64);
        counter!(KEY_TOKENS, "key" => self.account.name.clone(), "kind" => "completion").increment(completion as u64);
    }
}

impl KeyAccount {
    fn new(name: &str, limits: KeyLimits) -> KeyAccount {
        KeyAccount { name: name.to_string(), limits: Mutex::new(limits), buckets: Mutex::new((None, None)), concurrent: Mutex::new(None) }
    }

    /// Admits one request now, or says how long to wait.
    pub fn admit(self: &Arc<Self>, now: Instant) -> Result<KeyCharge, ApiError> {
        let limits = *self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let place = match limits.max_concurrent {
            None => None,
            Some(max) => {
                let mut c = self.concurrent.lock().unwrap_or_else(|p| p.into_inner());
                if c.as_ref().is_none_or(|(m, _)| *m != max) {
                    *c = Some((max, Arc::new(Semaphore::new(max as usize))));
                }
                let semaphore = c.as_ref().map(|(_, s)| s.clone()).expect("set above");
                match semaphore.try_acquire_owned() {
                    Ok(p) => Some(Arc::new(p)),
                    Err(_) => return Err(self.limited(format!("at most {max} requests of this key may run at once"), Duration::from_secs(1))),
                }
            }
        };
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (requests, tokens) = &mut *b;
        sync_bucket(requests, limits.requests_per_minute.map(f64::from), now);
        sync_bucket(tokens, limits.tokens_per_minute.map(|t| t as f64), now);
        if let Some(t) = tokens.as_ref().filter(|t| t.level <= 0.0) {
            return Err(self.limited("the key's tokens per minute are used up".into(), t.wait_for(1.0)));
        }
        if let Some(r) = requests.as_mut() {
            if r.level < 1.0 {
                return Err(self.limited("the key's requests per minute are used up".into(), r.wait_for(1.0)));
            }
            r.level -= 1.0;
        }
        counter!(KEY_REQUESTS, "key" => self.name.clone()).increment(1);
        Ok(KeyCharge { account: self.clone(), _place: place })
    }

    /// The key as the engine's scheduler sees it.
    pub fn tenant(&self) -> rill_engine::Tenant {
        let weight = self.limits.lock().unwrap_or_else(|p| p.into_inner()).weight.unwrap_or(1).max(1);
        rill_engine::Tenant { name: self.name.as_str().into(), weight }
    }

    fn charge_tokens(&self, tokens: u64) {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = b.1.as_mut() {
            t.refill(Instant::now());
            t.level -= tokens as f64;
        }
    }

    fn limited(&self, why: String, retry_after: Duration) -> ApiError {
        counter!(KEY_RATE_LIMITED, "key" => self.name.clone()).increment(1);
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut e = ApiError::new(429, "requests", format!("Rate limit reached: {why}. Retry in {secs} s.")).with_code("rate_limit_exceeded");
        e.retry_after_secs = Some(secs);
        e
    }
}

/// The bucket for a limit (made, resized or removed as the limit says), refilled to `now`.
fn sync_bucket(bucket: &mut Option<Bucket>, per_minute: Option<f64>, now: Instant) {
    match (per_minute, bucket.as_mut()) {
        (None, _) => *bucket = None,
        (Some(p), Some(b)) if b.per_minute == p => b.refill(now),
        (Some(p), _) => *bucket = Some(Bucket::new(p, now)),
    }
}

/// Every key's account, by name.
#[derive(Debug, Default, Clone)]
pub struct Accounts(Arc<DashMap<String, Arc<KeyAccount>>>);

impl Accounts {
    /// The account of key `name` with these limits (updated if the keys file changed them).
    pub fn account(&self, name: &str, limits: KeyLimits) -> Arc<KeyAccount> {
        let account = self.0.entry(name.to_string()).or_insert_with(|| Arc::new(KeyAccount::new(name, limits))).clone();
        *account.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
        account
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_requests_per_minute_then_a_429_with_retry_after() {
        let accounts = Accounts::default();
        let a = accounts.account("k", KeyLimits { requests_per_minute: Some(2), ..KeyLimits::default() });
        let t0 = Instant::now();
        assert!(a.admit(t0).is_ok() && a.admit(t0).is_ok());
        let e = a.admit(t0).unwrap_err();
        assert_eq!((e.status, e.code.as_deref(), e.retry_after_secs), (429, Some("rate_limit_exceeded"), Some(30)));
        // Half a minute later one request's worth is back.
        assert!(a.admit(t0 + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn tokens_are_charged_after_the_fact_and_concurrency_is_held_by_the_charge() {
        let accounts = Accounts::default();
        let a = accounts.account("k", KeyLimits { tokens_per_minute: Some(100), max_concurrent: Some(1), ..KeyLimits::default() });
        let first = a.admit(Instant::now()).unwrap();
        assert_eq!(a.admit(Instant::now()).unwrap_err().status, 429, "one at a time");
        first.tokens(80, 40);
        drop(first);
        let e = a.admit(Instant::now()).unwrap_err();
        assert!(e.message.contains("tokens per minute"), "{e}");
        assert!(e.retry_after_secs.unwrap() >= 12, "{e:?}");
    }
}
