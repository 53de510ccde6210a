//! A served model's engine, which may sleep: after `keep_alive` without requests (or when
//! memory is needed elsewhere) its weights and KV pool are freed, and the next request starts it
//! again from the same path and settings, waiting meanwhile. The model stays listed throughout.
//!
//! Requests hold an [`InFlight`] place from routing until their output ends; the engine is put
//! to sleep only under the slot's lock with no place held, so a request never loses its engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rill_engine::{Engine, EngineHandle};

use crate::load::{LoadSettings, StartedModel};
use crate::registry::Registry;

/// How to start a model's engine (again).
#[derive(Debug, Clone)]
pub struct Reload {
    pub name: String,
    pub path: PathBuf,
    pub settings: LoadSettings,
    /// Where to make room when the KV pool does not fit: the registry evicts its least recently
    /// used idle, unpinned model if the operator allowed eviction.
    pub room: Option<Weak<Registry>>,
}

impl Reload {
    /// Loads the model and starts its engine, evicting idle models while the KV pool does not
    /// fit and eviction is allowed.
    pub fn start(&self) -> Result<StartedModel, String> {
        loop {
            match self.settings.start_engine(&self.path, &self.name) {
                Ok(started) => return Ok(started),
                Err(e) if does_not_fit(&*e) && self.room.as_ref().and_then(Weak::upgrade).is_some_and(|r| r.make_room().is_some()) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn does_not_fit(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(e.downcast_ref::<rill_model::loader::LoadError>(), Some(rill_model::loader::LoadError::DoesNotFit { .. }))
}

pub struct EngineSlot {
    awake: Mutex<Option<(Engine, EngineHandle)>>,
    /// How to start the engine again; only a model that has one sleeps.
    pub reload: Option<Reload>,
    /// One wake-up at a time; the others wait for it.
    waking: tokio::sync::Mutex<()>,
    in_flight: Arc<AtomicUsize>,
    last_used: Mutex<Instant>,
    /// Idle time after which the engine sleeps; `None`: never.
    pub keep_alive: Option<Duration>,
    /// Never evicted to make room for another model.
    pub pinned: bool,
}

/// A request's place: the engine does not sleep while one is held.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Clone for InFlight {
    fn clone(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlight(self.0.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EngineSlot {
    /// A running engine that never sleeps until given a `reload` spec and a `keep_alive`.
    pub fn new(engine: Engine) -> EngineSlot {
        let handle = engine.handle();
        EngineSlot {
            awake: Mutex::new(Some((engine, handle))),
            reload: None,
            waking: tokio::sync::Mutex::new(()),
            in_flight: Arc::default(),
            last_used: Mutex::new(Instant::now()),
            keep_alive: None,
            pinned: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<(Engine, EngineHandle)>> {
        self.awake.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine's handle while it is awake.
    pub fn handle(&self) -> Option<EngineHandle> {
        self.lock().as_ref().map(|(_, h)| h.clone())
    }

    pub fn is_asleep(&self) -> bool {
        self.lock().is_none()
    }

    /// A place for a request that is about to use the engine.
    pub fn enter(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        InFlight(self.in_flight.clone())
    }

    /// The engine's handle, starting it first if it sleeps (call with a place held).
    pub async fn wake(&self) -> Result<EngineHandle, String> {
        if let Some(handle) = self.handle() {
            return Ok(handle);
        }
        let _one_at_a_time = self.waking.lock().await;
        if let Some(handle) = self.handle() {
            return Ok(handle);
        }
        let reload = self.reload.clone().ok_or("the model's engine stopped and cannot be restarted")?;
        let started = Instant::now();
        let engine = tokio::task::spawn_blocking(move || reload.start().map(|m| m.engine))
            .await
            .map_err(|e| format!("loading the model again: {e}"))??;
        let handle = engine.handle();
        tracing::info!(model = %self.reload.as_ref().map_or("", |r| r.name.as_str()), seconds = started.elapsed().as_secs_f64(), "model loaded again on demand");
        *self.lock() = Some((engine, handle.clone()));
        Ok(handle)
    }

    pub fn last_used(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle for at least `keep_alive` with no request in flight: the engine, taken out to be
    /// dropped (which joins its thread and frees its memory) off the async threads.
    pub fn sleep_if_idle(&self, now: Instant) -> Option<Engine> {
        let keep_alive = self.keep_alive?;
        if now.saturating_duration_since(self.last_used()) < keep_alive {
            return None;
        }
        self.sleep_if_unused()
    }

    /// The engine, taken out, if no request is in flight and it can be started again.
    pub fn sleep_if_unused(&self) -> Option<Engine> {
        self.reload.as_ref()?;
        let mut awake = self.lock();
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        awake.take().map(|(engine, _)| engine)
    }
}
