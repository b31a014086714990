//! `Engine`: allocate-core's engine for simulations and fast deterministic tests.

use crate::clock::ManualClock;
use crate::convert::{dict_to_json, engine_config, seconds, timestamp, Id};
use crate::errors;
use crate::explain::{dry_run_requirements, Explanation};
use crate::outputs;
use crate::policy::PyPolicy;
use crate::types::{AllocationInfo, Connection, InventoryEntry, Requirements, Resource};
use allocate_core::wire::policy_from_value;
use allocate_core::{Engine as CoreEngine, ProvisionResult, SeededIds, Timestamp};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::cell::Cell;
use std::sync::{Arc, Mutex, TryLockError};

/// What the lock guards: the engine and the Python policy installed in it.
#[derive(Debug)]
struct State {
    engine: CoreEngine,
    policy: Option<Arc<PyPolicy>>,
}

thread_local! {
    /// Whether this thread is inside an engine call (so a policy hook calling back in would
    /// wait on its own lock).
    static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the thread as inside an engine call until dropped.
struct InEngine;

impl InEngine {
    fn enter() -> PyResult<Self> {
        if IN_ENGINE.with(Cell::get) {
            return Err(PyRuntimeError::new_err(
                "an Engine cannot be used from inside a matching policy hook",
            ));
        }
        IN_ENGINE.with(|c| c.set(true));
        Ok(InEngine)
    }
}

impl Drop for InEngine {
    fn drop(&mut self) {
        IN_ENGINE.with(|c| c.set(false));
    }
}

/// The requirements given as a `Requirements` object, or else read from keywords with `read`;
/// both at once is a TypeError.
fn object_or_fields(
    requirements: Option<PyRef<'_, Requirements>>,
    fields: Option<&Bound<'_, PyDict>>,
    read: impl FnOnce(Option<&Bound<'_, PyDict>>) -> PyResult<allocate_core::Requirements>,
) -> PyResult<allocate_core::Requirements> {
    match (requirements, fields) {
        (Some(_), Some(f)) if !f.is_empty() => Err(PyTypeError::new_err(
            "give a Requirements object or requirement keywords, not both",
        )),
        (Some(r), _) => Ok(r.0.clone()),
        (None, f) => read(f),
    }
}

fn poisoned<T>(_: T) -> PyErr {
    errors::from_error_code(
        allocate_core::ErrorCode::Internal,
        "the engine panicked during an earlier call and can no longer be used".into(),
    )
}

/// The allocation engine: inventory, matching, queue and leases, with no IO and no clock of
/// its own. Feed it inputs, then drain `poll_output()` (or `drain()`); call `handle_timeout()`
/// at `poll_timeout()`, or `advance()` the clock. Times are unix seconds; a call without
/// `now=` reads the engine's `clock`. Allocation ids come from `seed`, so a run repeats exactly.
///
/// Mutating calls release the GIL while the engine works. One call runs at a time; other
/// threads wait for it.
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Debug)]
pub struct Engine {
    state: Mutex<State>,
    clock: Py<ManualClock>,
}

impl Engine {
    fn now(&self, now: Option<f64>) -> PyResult<Timestamp> {
        match now {
            Some(t) => timestamp(t, "now"),
            None => Ok(self.clock.get().timestamp()),
        }
    }

    /// Runs an input with the GIL released; raises the engine's refusal, or afterwards an
    /// exception a policy hook raised.
    fn input<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut CoreEngine) -> allocate_core::Result<T> + Send,
    ) -> PyResult<T> {
        let _inside = InEngine::enter()?;
        let (result, policy) = py.detach(|| {
            let mut state = self.state.lock().map_err(poisoned)?;
            let result = f(&mut state.engine);
            Ok::<_, PyErr>((result, state.policy.clone()))
        })?;
        if let Some(err) = policy.and_then(|p| p.take_error()) {
            return Err(err);
        }
        result.map_err(errors::from_core)
    }

    /// Runs `f` on the state (queries and other short work: no policy hook runs); waits for
    /// the lock with the GIL released only when another thread holds it.
    fn locked<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut State) -> T + Send,
    ) -> PyResult<T> {
        let _inside = InEngine::enter()?;
        match self.state.try_lock() {
            Ok(mut state) => Ok(f(&mut state)),
            Err(TryLockError::WouldBlock) => py.detach(|| {
                let mut state = self.state.lock().map_err(poisoned)?;
                Ok(f(&mut state))
            }),
            Err(TryLockError::Poisoned(e)) => Err(poisoned(e)),
        }
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (config = None, *, seed = 0, clock = None, policy = None))]
    fn new(
        py: Python<'_>,
        config: Option<&Bound<'_, PyDict>>,
        seed: u64,
        clock: Option<Py<ManualClock>>,
        policy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let config = engine_config(config)?;
        let mut engine = CoreEngine::new(config, Box::new(SeededIds::new(seed)));
        let policy = policy.map(PyPolicy::new).transpose()?.map(Arc::new);
        engine.set_policy(policy.clone().map(|p| p as _));
        let clock = match clock {
            Some(c) => c,
            None => Py::new(py, ManualClock::at(Timestamp::default()))?,
        };
        Ok(Engine {
            state: Mutex::new(State { engine, policy }),
            clock,
        })
    }

    /// The clock read by calls that name no `now`.
    #[getter]
    fn clock(&self, py: Python<'_>) -> Py<ManualClock> {
        self.clock.clone_ref(py)
    }

    /// The latest time the engine has been given (unix seconds).
    #[getter(now)]
    fn engine_now(&self, py: Python<'_>) -> PyResult<f64> {
        self.locked(py, |s| seconds(s.engine.now()))
    }

    /// Installs a matching policy (an object with `veto` and/or `score`), or restores plain best
    /// fit with None. Hooks must be deterministic: same arguments, same answer.
    #[pyo3(signature = (policy))]
    fn set_policy(&self, py: Python<'_>, policy: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let policy = policy.map(PyPolicy::new).transpose()?.map(Arc::new);
        self.locked(py, |s| {
            s.engine.set_policy(policy.clone().map(|p| p as _));
            s.policy = policy;
        })
    }

    /// Sets the quotas (a dict: `default`, `groups`, `users`, as the server's policy file has
    /// them), or removes them with None. Waiting requests the new limits could never fit end
    /// at once (`QuotaRefused`); those they allow are placed.
    #[pyo3(signature = (policy, *, now = None))]
    fn set_quotas(
        &self,
        py: Python<'_>,
        policy: Option<&Bound<'_, PyDict>>,
        now: Option<f64>,
    ) -> PyResult<()> {
        let now = self.now(now)?;
        let policy = policy
            .map(|dict| {
                let json = serde_json::Value::Object(dict_to_json(dict, "policy")?);
                policy_from_value(json).map_err(|e| errors::invalid(format!("policy: {e}")))
            })
            .transpose()?;
        self.input(py, |e| e.set_quotas(now, policy))
    }

    /// An agent registers (or replaces) its resource list; returns their inventory ids in order.
    #[pyo3(signature = (agent_id, resources, *, now = None))]
    fn register_agent(
        &self,
        py: Python<'_>,
        agent_id: Id,
        resources: Vec<PyRef<'_, Resource>>,
        now: Option<f64>,
    ) -> PyResult<Vec<String>> {
        let now = self.now(now)?;
        let specs: Vec<_> = resources.iter().map(|r| r.0.clone()).collect();
        let ids = self.input(py, |e| e.register_agent(now, agent_id.0, specs))?;
        Ok(ids.iter().map(ToString::to_string).collect())
    }

    /// An agent's socket closed: its resources go offline.
    #[pyo3(signature = (agent_id, *, now = None))]
    fn disconnect_agent(&self, py: Python<'_>, agent_id: Id, now: Option<f64>) -> PyResult<()> {
        let now = self.now(now)?;
        self.input(py, |e| e.disconnect_agent(now, agent_id.0))
    }

    /// Asks for an allocation; returns its id. Give a `Requirements` object or the contract's
    /// requirement fields as keywords (`username` is required; unknown fields raise InvalidRequest).
    #[pyo3(signature = (requirements = None, /, *, now = None, **fields))]
    fn request(
        &self,
        py: Python<'_>,
        requirements: Option<PyRef<'_, Requirements>>,
        now: Option<f64>,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        let requirements =
            object_or_fields(
                requirements,
                fields,
                |f| Ok(Requirements::from_fields(f)?.0),
            )?;
        let now = self.now(now)?;
        let id = self.input(py, |e| e.request(now, requirements))?;
        Ok(id.to_string())
    }

    /// An agent answers a provision: with connection details, or with an `error` saying why not.
    #[pyo3(signature = (agent_id, allocation_id, connection = None, *, error = None, now = None))]
    fn provisioned(
        &self,
        py: Python<'_>,
        agent_id: Id,
        allocation_id: Id,
        connection: Option<PyRef<'_, Connection>>,
        error: Option<String>,
        now: Option<f64>,
    ) -> PyResult<()> {
        let result = match (connection, error) {
            (Some(c), None) => ProvisionResult::Connection(c.0.clone()),
            (None, Some(why)) => ProvisionResult::Failed(why),
            _ => {
                return Err(PyTypeError::new_err(
                    "provisioned() takes either a connection or an error",
                ))
            }
        };
        let now = self.now(now)?;
        self.input(py, |e| {
            e.provisioned(now, agent_id.0, allocation_id.0, result)
        })
    }

    /// An agent acknowledges a release: the resource is free again.
    #[pyo3(signature = (agent_id, allocation_id, *, now = None))]
    fn release_acknowledged(
        &self,
        py: Python<'_>,
        agent_id: Id,
        allocation_id: Id,
        now: Option<f64>,
    ) -> PyResult<()> {
        let now = self.now(now)?;
        self.input(py, |e| {
            e.release_acknowledged(now, agent_id.0, allocation_id.0)
        })
    }

    /// Frees an allocation or cancels a waiting request (the contract's DELETE).
    #[pyo3(signature = (allocation_id, *, now = None))]
    fn release(&self, py: Python<'_>, allocation_id: Id, now: Option<f64>) -> PyResult<()> {
        let now = self.now(now)?;
        self.input(py, |e| e.release(now, allocation_id.0))
    }

    /// The requesting client went away: cancels a waiting request (and ends a held allocation
    /// that asked for `release_on_disconnect`).
    #[pyo3(signature = (allocation_id, *, now = None))]
    fn client_gone(&self, py: Python<'_>, allocation_id: Id, now: Option<f64>) -> PyResult<()> {
        let now = self.now(now)?;
        self.input(py, |e| e.client_gone(now, allocation_id.0))
    }

    /// Moves a live allocation's lease end (unix seconds); returns the effective, capped value.
    #[pyo3(signature = (allocation_id, expires, *, now = None))]
    fn set_expires(
        &self,
        py: Python<'_>,
        allocation_id: Id,
        expires: u64,
        now: Option<f64>,
    ) -> PyResult<u64> {
        let now = self.now(now)?;
        self.input(py, |e| e.set_expires(now, allocation_id.0, expires))
    }

    /// Takes a resource out of service once its lease ends (a reason), or returns it to
    /// service and clears any error (None).
    #[pyo3(signature = (inventory_id, reason, *, now = None))]
    fn set_maintenance(
        &self,
        py: Python<'_>,
        inventory_id: Id,
        reason: Option<String>,
        now: Option<f64>,
    ) -> PyResult<()> {
        let now = self.now(now)?;
        self.input(py, |e| e.set_maintenance(now, inventory_id.0, reason))
    }

    /// Fires every deadline due by `now` (default: the clock). Early or repeated calls are harmless.
    #[pyo3(signature = (*, now = None))]
    fn handle_timeout(&self, py: Python<'_>, now: Option<f64>) -> PyResult<()> {
        let now = self.now(now)?;
        self.input(py, |e| {
            e.handle_timeout(now);
            Ok(())
        })
    }

    /// Moves the clock forward by `seconds` and fires the deadlines that became due.
    fn advance(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        self.clock.get().advance(seconds)?;
        self.handle_timeout(py, None)
    }

    /// When `handle_timeout` should next be called (unix seconds), or None if nothing is pending.
    fn poll_timeout(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        self.locked(py, |s| s.engine.poll_timeout().map(seconds))
    }

    /// The next output (`Queued`, `Ready`, `Provision`, ...), or None when there is none.
    fn poll_output(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.locked(py, |s| s.engine.poll_output())?
            .map(|o| outputs::to_python(py, o))
            .transpose()
    }

    /// Every pending output, oldest first.
    fn drain(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let pending = self.locked(py, |s| {
            std::iter::from_fn(|| s.engine.poll_output()).collect::<Vec<_>>()
        })?;
        pending
            .into_iter()
            .map(|o| outputs::to_python(py, o))
            .collect()
    }

    /// Every resource, in registration order.
    fn inventory(&self, py: Python<'_>) -> PyResult<Vec<InventoryEntry>> {
        self.locked(py, |s| s.engine.inventory().map(InventoryEntry).collect())
    }

    /// One resource, or None.
    fn resource(&self, py: Python<'_>, inventory_id: Id) -> PyResult<Option<InventoryEntry>> {
        self.locked(py, |s| {
            s.engine.resource(&inventory_id.0).map(InventoryEntry)
        })
    }

    /// One allocation (live, or ended and still remembered), or None.
    fn allocation(&self, py: Python<'_>, allocation_id: Id) -> PyResult<Option<AllocationInfo>> {
        self.locked(py, |s| {
            s.engine.allocation(&allocation_id.0).map(AllocationInfo)
        })
    }

    /// What following an allocation sees first: the outputs its creating socket saw last
    /// (`Queued`, or `Ready` with its connection); empty when ended or unknown.
    fn current(&self, py: Python<'_>, allocation_id: Id) -> PyResult<Vec<Py<PyAny>>> {
        self.locked(py, |s| s.engine.current_outputs(&allocation_id.0))?
            .into_iter()
            .map(|o| outputs::to_python(py, o))
            .collect()
    }

    /// Why a request would or would not be served now (a dry run: nothing changes). Give a
    /// `Requirements` object or the contract's requirement fields as keywords (`username` may
    /// be left out); unknown or bad fields raise InvalidRequest.
    #[pyo3(signature = (requirements = None, /, **fields))]
    fn explain(
        &self,
        py: Python<'_>,
        requirements: Option<PyRef<'_, Requirements>>,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Explanation> {
        let requirements = object_or_fields(requirements, fields, |f| {
            dry_run_requirements(f, &allocate_core::Limits::default())
        })?;
        self.locked(py, |s| s.engine.explain(&requirements))?
            .map(Explanation::from)
            .map_err(errors::from_core)
    }

    /// Every remembered allocation: live ones by arrival, then ended ones oldest first.
    fn allocations(&self, py: Python<'_>) -> PyResult<Vec<AllocationInfo>> {
        self.locked(py, |s| {
            s.engine
                .allocations()
                .into_iter()
                .map(AllocationInfo)
                .collect()
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.locked(py, |s| {
            let stats = s.engine.stats();
            format!(
                "Engine(now={:?}, resources={}, queued={}, provisioning={}, ready={}, policy={})",
                seconds(s.engine.now()),
                s.engine.resource_count(),
                stats.queued,
                stats.provisioning,
                stats.ready,
                if s.policy.is_some() { "python" } else { "None" },
            )
        })
    }
}
