//! CUDA graphs: `begin_capture(key)` puts the stream in capture mode, the step's kernel ops are
//! recorded instead of run, `end_capture(key)` instantiates the graph and keeps it under `key`,
//! `replay(key)` launches it. Replays reuse every address the ops were recorded with, which is
//! why kernel ops never allocate and why growing scratch drops all graphs (`memory.rs`).
//!
//! Capture is thread-local: a call from this thread that cannot be recorded (a synchronizing
//! copy, an allocation) fails instead of being silently serialized. An op that fails during a
//! capture marks it failed: `end_capture` still ends it (so the stream is usable) but discards the
//! recording and returns `Ok`, leaving the op's own error as the one the caller reports;
//! `replay(key)` then answers `Ok(false)` and the next step records again.
//!
//! Recording a key that already has a graph replaces it: the old graph is destroyed in
//! `begin_capture`, before the stream starts capturing, because waiting for a replay of it that
//! may still run is a synchronization, and synchronizing a capturing stream invalidates the
//! capture. A failed re-recording therefore leaves the key empty rather than keeping the old
//! graph: a caller re-records a key only when that graph no longer fits (its buffers moved), so
//! replaying it after the failure would run on stale addresses.

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::CudaGraph;
use rill_backend::{BackendError, BackendResult};

use crate::CudaBackend;

/// A recorded step.
pub(crate) struct Graph(CudaGraph);

// SAFETY: CUDA graph objects are not tied to a thread; they only need external serialization,
// which the backend provides: graphs live in its `RefCell` state and the backend is not `Sync`.
unsafe impl Send for Graph {}

impl CudaBackend {
    pub(crate) fn capture_begin(&self, key: u64) -> BackendResult<()> {
        let mut st = self.state.borrow_mut();
        if let Some(current) = st.capturing {
            return Err(BackendError::Device(format!("begin_capture({key}): already capturing {current}")));
        }
        if st.graphs.contains_key(&key) {
            // Not reachable through the forward pass (it replays a key it has). A replay of the
            // graph being replaced may still be running: wait for it now, while that is allowed.
            let _ = self.dev.stream.synchronize();
            st.graphs.remove(&key);
        }
        self.dev
            .stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| BackendError::Device(format!("begin_capture({key}): {e}")))?;
        st.capturing = Some(key);
        st.capture_failed = false;
        Ok(())
    }

    pub(crate) fn capture_end(&self, key: u64) -> BackendResult<()> {
        let mut st = self.state.borrow_mut();
        match st.capturing {
            Some(k) if k == key => {}
            Some(k) => return Err(BackendError::Device(format!("end_capture({key}): capturing {k}"))),
            None => return Err(BackendError::Device(format!("end_capture({key}): no capture in progress"))),
        }
        st.capturing = None;
        // No synchronization from here until the capture has ended (see the module docs).
        let ended = self.dev.stream.end_capture(CUgraphInstantiate_flags(0));
        if std::mem::take(&mut st.capture_failed) {
            // Missing the failed op's kernels: never to be replayed. (A CUDA error here is the
            // invalidated capture the failure caused.)
            drop(ended);
            return Ok(());
        }
        if let Some(g) = ended.map_err(|e| BackendError::Device(format!("end_capture({key}): {e}")))? {
            st.graphs.insert(key, Graph(g));
        }
        Ok(())
    }

    pub(crate) fn graph_replay(&self, key: u64) -> BackendResult<bool> {
        let st = self.state.borrow();
        if st.capturing.is_some() {
            return Err(BackendError::Device(format!("replay({key}) during a capture")));
        }
        match st.graphs.get(&key) {
            Some(g) => g.0.launch().map(|()| true).map_err(|e| BackendError::Device(format!("replay({key}): {e}"))),
            None => Ok(false),
        }
    }

    /// Marks the capture in progress (if any) as failed; see the module docs.
    pub(crate) fn fail_capture(&self) {
        let mut st = self.state.borrow_mut();
        if st.capturing.is_some() {
            st.capture_failed = true;
        }
    }

    pub(crate) fn capturing(&self) -> bool {
        self.state.borrow().capturing.is_some()
    }

    /// Recorded graphs point at scratch by address; called whenever scratch moves. Waits for a
    /// replay that may still be running before destroying its graph.
    pub(crate) fn drop_graphs(&self, st: &mut crate::State) {
        if !st.graphs.is_empty() {
            let _ = self.dev.stream.synchronize();
            st.graphs.clear();
        }
    }
}
