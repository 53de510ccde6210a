//! A served model's engine, which may sleep: after `keep_alive` without requests (or when
//! memory is needed elsewhere) its weights and KV pool are freed, and the next request starts it
//! again from the same path and settings, waiting meanwhile. The model stays listed throughout.
//!
//! Requests hold an [`InFlight`] place from routing until their output ends; the engine is put
//! to sleep only under the slot's lock with no place held, so a request never loses its engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rill_engine::{Engine, EngineHandle};

use crate::load::LoadSettings;

/// How to start a model's engine again.
#[derive(Debug, Clone)]
pub struct Reload {
    pub name: String,
    pub path: PathBuf,
    pub settings: LoadSettings,
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
    /// An engine that can be started again from `reload` (`None`: it never sleeps).
    pub fn new(engine: Engine, reload: Option<Reload>, keep_alive: Option<Duration>) -> EngineSlot {
        let handle = engine.handle();
        EngineSlot {
            awake: Mutex::new(Some((engine, handle))),
            reload,
            waking: tokio::sync::Mutex::new(()),
            in_flight: Arc::default(),
            last_used: Mutex::new(Instant::now()),
            keep_alive,
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
        let engine = tokio::task::spawn_blocking(move || reload.settings.start_engine(&reload.path, &reload.name).map(|m| m.engine).map_err(|e| e.to_string()))
            .await
            .map_err(|e| format!("loading the model again: {e}"))??;
        let handle = engine.handle();
        tracing::info!(model = %self.reload.as_ref().map_or("", |r| r.name.as_str()), seconds = started.elapsed().as_secs_f64(), "model loaded again on demand");
        *self.lock() = Some((engine, handle.clone()));
        Ok(handle)
    }

    /// Idle for at least `keep_alive` with no request in flight: the engine, taken out to be
    /// dropped (which joins its thread and frees its memory) off the async threads.
    pub fn sleep_if_idle(&self, now: Instant) -> Option<Engine> {
        let keep_alive = self.keep_alive?;
        self.reload.as_ref()?;
        let idle = now.saturating_duration_since(*self.last_used.lock().unwrap_or_else(|e| e.into_inner()));
        let mut awake = self.lock();
        if idle < keep_alive || self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        awake.take().map(|(engine, _)| engine)
    }
}
