//! `quorumkv._native.Watch`: a watch, as an iterator (and, in Python, an async iterator).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::IntoPyObjectExt;
use quorumkv as q;

use crate::aio::{helper, spawn, Completer};
use crate::errors::wait;
use crate::types::Event;

/// How long one blocking wait lasts before Python gets a chance to handle signals.
const WAIT_SLICE: Duration = Duration::from_millis(100);

struct Shared {
    /// Events received and not handed out yet.
    events: Mutex<VecDeque<q::Event>>,
    /// Store revision of the last response seen (events or progress).
    revision: std::sync::atomic::AtomicI64,
    done: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn take(&self, resp: q::WatchResponse) -> bool {
        self.revision.fetch_max(resp.header.revision, std::sync::atomic::Ordering::Relaxed);
        if resp.events.is_empty() {
            return false;
        }
        self.events.lock().unwrap_or_else(|p| p.into_inner()).extend(resp.events);
        true
    }

    fn pop(&self) -> Option<q::Event> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }
}

/// One watch. Iterate it for events; use it as a context manager to cancel it on exit.
#[pyclass(module = "quorumkv._native", name = "Watch", subclass, frozen)]
pub struct PyWatch {
    /// `next` needs `&mut`; the sync and the async readers take turns.
    watcher: Arc<tokio::sync::Mutex<q::Watcher>>,
    canceler: q::WatchCanceler,
    id: i64,
    shared: Arc<Shared>,
}

impl PyWatch {
    pub fn new(watcher: q::Watcher) -> Self {
        PyWatch {
            canceler: watcher.canceler(),
            id: watcher.id(),
            watcher: Arc::new(tokio::sync::Mutex::new(watcher)),
            shared: Arc::new(Shared {
                events: Mutex::new(VecDeque::new()),
                revision: std::sync::atomic::AtomicI64::new(0),
                done: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Waits up to `timeout` (forever for `None`) for the next event.
    fn next_event_inner(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(ev) = self.shared.pop() {
                return Ok(Some(Event(ev)));
            }
            if self.shared.done.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(None);
            }
            let slice = match deadline {
                None => WAIT_SLICE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    left.min(WAIT_SLICE)
                }
            };
            let watcher = self.watcher.clone();
            let shared = self.shared.clone();
            let got = wait(py, move || {
                let mut w = watcher.blocking_lock();
                match w.next_blocking(slice) {
                    Some(Ok(resp)) => Ok(shared.take(resp)),
                    Some(Err(q::Error::Timeout)) => Ok(false),
                    Some(Err(e)) => {
                        shared.done.store(true, std::sync::atomic::Ordering::Relaxed);
                        Err(e)
                    }
                    None => {
                        shared.done.store(true, std::sync::atomic::Ordering::Relaxed);
                        Ok(false)
                    }
                }
            });
            got?;
            py.check_signals()?;
        }
    }
}

#[pymethods]
impl PyWatch {
    /// The watch id.
    #[getter]
    fn id(&self) -> i64 {
        self.id
    }

    /// The store revision this watch has seen everything up to (0 before any response).
    #[getter]
    fn revision(&self) -> i64 {
        self.shared.revision.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the watch has ended (cancelled, compacted or node stopped) and every
    /// event was handed out.
    #[getter]
    fn done(&self) -> bool {
        self.shared.done.load(std::sync::atomic::Ordering::Relaxed)
            && self.shared.events.lock().map_or(true, |e| e.is_empty())
    }

    /// Cancels the watch; events already received are still returned, then iteration ends.
    fn cancel(&self) {
        self.canceler.cancel();
    }

    /// Asks for a progress notification (advances `revision`).
    fn request_progress(&self, py: Python<'_>) -> PyResult<()> {
        let watcher = self.watcher.clone();
        wait(py, move || {
            watcher.blocking_lock().request_progress();
            Ok(())
        })
    }

    /// The next event, waiting at most `timeout` seconds (forever for `None`); `None` when
    /// the timeout passed or the watch has ended (see `done`).
    #[pyo3(signature = (timeout=None))]
    fn next_event(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Event>> {
        let timeout = match timeout {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
            Some(_) => return Err(crate::errors::invalid(py, "timeout must be a non-negative number of seconds")),
        };
        self.next_event_inner(py, timeout)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Event>> {
        self.next_event_inner(py, None)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.canceler.cancel();
        false
    }

    /// Private: the next buffered event, without waiting.
    fn _pop(&self) -> Option<Event> {
        self.shared.pop().map(Event)
    }

    /// Private: waits for the next response without blocking and resolves `fut` with
    /// `True` (events buffered) or `False` (the watch ended).
    fn _fill(&self, py: Python<'_>, completer: &Bound<'_, Completer>, fut: Py<PyAny>) -> PyResult<()> {
        if self.shared.done.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = py;
            let f = fut.bind(py);
            f.call_method1("set_result", (false,))?;
            return Ok(());
        }
        let watcher = self.watcher.clone();
        let shared = self.shared.clone();
        // Runs on the binding's runtime at once: nothing to flush.
        let _ = spawn(
            crate::aio::On::Binding,
            completer.get(),
            fut,
            async move {
                let mut w = watcher.lock().await;
                loop {
                    match w.next().await {
                        Some(Ok(resp)) => {
                            if shared.take(resp) {
                                return Ok(true);
                            }
                        }
                        Some(Err(e)) => {
                            shared.done.store(true, std::sync::atomic::Ordering::Relaxed);
                            return Err(e);
                        }
                        None => {
                            shared.done.store(true, std::sync::atomic::Ordering::Relaxed);
                            return Ok(false);
                        }
                    }
                }
            },
            |py, more| more.into_py_any(py),
        );
        Ok(())
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// An awaitable of the next event (`quorumkv._watch_anext`).
    fn __anext__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(helper(slf.py(), "_watch_anext")?.call1((slf,))?.unbind())
    }

    fn __aenter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(helper(slf.py(), "_watch_aenter")?.call1((slf,))?.unbind())
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__(slf: &Bound<'_, Self>, _args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        Ok(helper(slf.py(), "_watch_aexit")?.call1((slf,))?.unbind())
    }

    fn __repr__(&self) -> String {
        format!("Watch(id={}, revision={})", self.id, self.revision())
    }
}
