//! `ManualClock`: time that moves only when told to, for simulations and deterministic tests.

use crate::convert::{seconds, timestamp};
use allocate_core::Timestamp;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// A clock that stands still until advanced; an `Engine` reads it when a call names no `now`.
/// Times are unix seconds (floats, millisecond precision). It never goes backwards.
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    /// The current time.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_millis(self.millis.load(Ordering::Acquire))
    }

    /// A clock standing at `t`.
    pub fn at(t: Timestamp) -> Self {
        ManualClock {
            millis: AtomicU64::new(t.as_millis()),
        }
    }
}

#[pymethods]
impl ManualClock {
    #[new]
    #[pyo3(signature = (now = 0.0))]
    fn new(now: f64) -> PyResult<Self> {
        Ok(Self::at(timestamp(now, "now")?))
    }

    /// The current time (unix seconds).
    #[getter]
    fn now(&self) -> f64 {
        seconds(self.timestamp())
    }

    /// Moves the clock forward by `seconds` (not negative); returns the new time.
    pub fn advance(&self, seconds: f64) -> PyResult<f64> {
        let step = timestamp(seconds, "seconds")?.as_millis();
        let before = self.millis.fetch_add(step, Ordering::AcqRel);
        Ok(crate::convert::seconds(Timestamp::from_millis(
            before.saturating_add(step),
        )))
    }

    /// Sets the clock to `now` (unix seconds), which must not be earlier than the current time.
    fn set(&self, now: f64) -> PyResult<()> {
        let t = timestamp(now, "now")?.as_millis();
        let before = self.millis.fetch_max(t, Ordering::AcqRel);
        if t < before {
            return Err(PyValueError::new_err(format!(
                "a ManualClock never goes backwards: it is at {}, asked for {now}",
                seconds(Timestamp::from_millis(before))
            )));
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("ManualClock(now={:?})", self.now())
    }
}
