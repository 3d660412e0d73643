//! asyncio without a thread pool.
//!
//! An async call spawns its Rust future on the node's runtime (watches: on the binding's
//! own one-thread runtime); neither ever needs the GIL. When the future completes its result is
//! queued on the event loop's `Completer` and, if the queue was empty, one byte is written
//! to the completer's pipe. The event loop watches the pipe (`loop.add_reader`); its
//! callback calls `Completer.drain`, which converts every queued result to Python objects
//! and resolves the asyncio futures, all on the loop's thread. A burst of completions
//! costs one wake-up of the loop and no GIL hand-off to another thread.

use std::future::Future;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use futures::FutureExt;
use pyo3::intern;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors::{panic_message, Failure};

/// The binding's runtime: it awaits the node's futures (whose work runs on the library's
/// own runtime) and queues their results. One worker: it does very little per result.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("qkv-py")
            .enable_all()
            .build()
            .expect("cannot start the quorumkv Python runtime")
    })
}

type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

enum Outcome {
    Ok(Convert),
    Err(Failure),
}

struct Inner {
    queue: Mutex<Vec<(Py<PyAny>, Outcome)>>,
    writer: Mutex<std::io::PipeWriter>,
}

/// Calls submitted on the node's runtime since the last `Completer.flush`.
struct Submitted {
    node: Option<quorumkv::Node>,
    futs: Vec<quorumkv::DetachedFuture>,
}

impl Inner {
    fn push(&self, fut: Py<PyAny>, outcome: Outcome) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let was_empty = q.is_empty();
            q.push((fut, outcome));
            was_empty
        };
        if was_empty {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            // A full pipe already holds a wake-up; nothing else can fail here.
            let _ = w.write(&[1]);
        }
    }
}

/// Delivers results of native async calls to one asyncio event loop (see the module docs).
#[pyclass(module = "quorumkv._native", frozen)]
pub struct Completer {
    inner: Arc<Inner>,
    reader: std::io::PipeReader,
    /// Only the loop's thread touches it (under the GIL); a mutex keeps it `Sync`.
    submitted: Mutex<Submitted>,
}

#[pymethods]
impl Completer {
    #[new]
    fn new() -> PyResult<Self> {
        let (reader, writer) = std::io::pipe()?;
        Ok(Completer {
            inner: Arc::new(Inner { queue: Mutex::new(Vec::new()), writer: Mutex::new(writer) }),
            reader,
            submitted: Mutex::new(Submitted { node: None, futs: Vec::new() }),
        })
    }

    /// Hands every call submitted since the last flush to the runtime at once. The
    /// Python layer schedules it with `loop.call_soon` when a submission finds none
    /// pending, so the calls of one event-loop iteration cost one wake-up of a runtime
    /// thread, not one each.
    fn flush(&self) {
        let Submitted { node, futs } = std::mem::replace(
            &mut *self.submitted.lock().unwrap_or_else(|p| p.into_inner()),
            Submitted { node: None, futs: Vec::new() },
        );
        if let Some(node) = node {
            node.spawn_detached_all(futs);
        }
    }

    /// The pipe's read end, for `loop.add_reader` (the caller makes it non-blocking and
    /// empties it before each `drain`).
    fn fileno(&self) -> i32 {
        self.reader.as_raw_fd()
    }

    /// Resolves the asyncio futures of every completed call; returns how many.
    fn drain(&self, py: Python<'_>) -> usize {
        let items = std::mem::take(&mut *self.inner.queue.lock().unwrap_or_else(|p| p.into_inner()));
        let n = items.len();
        for (fut, outcome) in items {
            let fut = fut.bind(py);
            // A cancelled future takes no result.
            if fut.call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true) {
                continue;
            }
            let settled = match outcome {
                Outcome::Ok(convert) => match convert(py) {
                    Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,)),
                    Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),)),
                },
                Outcome::Err(f) => fut.call_method1(intern!(py, "set_exception"), (f.into_pyerr(py).into_value(py),)),
            };
            if let Err(e) = settled {
                e.write_unraisable(py, Some(fut));
            }
        }
        n
    }
}

/// How many async calls in a row may complete without suspending the awaiting task.
pub const IMMEDIATE_BUDGET: u32 = 32;

/// Takes one unit of the immediate-completion budget: false (and a refilled budget) once
/// `IMMEDIATE_BUDGET` calls in a row have completed at once, so the next one suspends and
/// the event loop runs its other tasks, timers and I/O. One budget for the process: with
/// event loops on several threads each merely suspends a little more often.
pub fn take_immediate_budget() -> bool {
    use std::sync::atomic::{AtomicU32, Ordering};
    static USED: AtomicU32 = AtomicU32::new(0);
    let used = USED.fetch_add(1, Ordering::Relaxed) + 1;
    if used >= IMMEDIATE_BUDGET {
        USED.store(0, Ordering::Relaxed);
        return false;
    }
    true
}

/// A function of the Python layer (`quorumkv/__init__.py`).
pub fn helper<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    let m = MODULE.get_or_try_init(py, || py.import("quorumkv").map(Bound::unbind))?;
    m.bind(py).getattr(name)
}

/// An async call in the making: the running event loop, its completer and a new future
/// of that loop (raises `RuntimeError` outside a running loop, as asyncio does).
pub struct LoopCall<'py> {
    event_loop: Bound<'py, PyAny>,
    completer: Bound<'py, Completer>,
    pub fut: Bound<'py, PyAny>,
}

impl<'py> LoopCall<'py> {
    pub fn new(py: Python<'py>) -> PyResult<Self> {
        static GET_RUNNING_LOOP: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let get = GET_RUNNING_LOOP
            .get_or_try_init(py, || py.import("asyncio")?.getattr("get_running_loop").map(Bound::unbind))?;
        let event_loop = get.bind(py).call0()?;
        // Cached on the loop by `quorumkv._completer`, which makes it on first use.
        let completer = match event_loop.getattr(intern!(py, "_quorumkv_completer")) {
            Ok(c) => c,
            Err(_) => helper(py, "_completer")?.call1((&event_loop,))?,
        };
        let completer = completer.cast_into::<Completer>()?;
        let fut = event_loop.call_method0(intern!(py, "create_future"))?;
        Ok(LoopCall { event_loop, completer, fut })
    }

    pub fn completer(&self) -> &Completer {
        self.completer.get()
    }

    /// Schedules the completer's flush when `spawn` said so; returns the future.
    pub fn finish(self, first: bool) -> PyResult<Bound<'py, PyAny>> {
        if first {
            let flush = self.completer.getattr(intern!(self.fut.py(), "flush"))?;
            self.event_loop.call_method1(intern!(self.fut.py(), "call_soon"), (flush,))?;
        }
        Ok(self.fut)
    }
}

/// Where async work runs.
pub enum On<'a> {
    /// The node's own runtime: its async methods then run without a hop between runtimes.
    Node(&'a quorumkv::Node),
    /// The binding's runtime (work that needs no node).
    Binding,
}

/// Runs `work` and resolves the asyncio future `fut` (of the loop `completer` serves)
/// with `convert(result)`, or with the mapped error or panic. Work on a node waits for
/// `Completer.flush`; the result says whether the caller must schedule it (the first
/// submission since the last flush).
pub fn spawn<T, W, C>(on: On<'_>, completer: &Completer, fut: Py<PyAny>, work: W, convert: C) -> bool
where
    T: Send + 'static,
    W: Future<Output = quorumkv::Result<T>> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let inner = completer.inner.clone();
    // Boxed before it is moved around: the node's futures are several KiB.
    let work = Box::pin(work);
    let task = async move {
        let outcome = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(Ok(v)) => Outcome::Ok(Box::new(move |py| convert(py, v))),
            Ok(Err(e)) => Outcome::Err(Failure::Core(e)),
            Err(p) => Outcome::Err(Failure::Panic(panic_message(p))),
        };
        inner.push(fut, outcome);
    };
    match on {
        On::Node(node) => {
            let mut submitted = completer.submitted.lock().unwrap_or_else(|p| p.into_inner());
            // Every node's async methods are correct on any runtime (they hop to their
            // own when it differs), so one batch may hold calls of several nodes.
            let first = submitted.node.is_none();
            submitted.node.get_or_insert_with(|| node.clone());
            submitted.futs.push(Box::pin(task));
            first
        }
        On::Binding => {
            drop(runtime().spawn(task));
            false
        }
    }
}
