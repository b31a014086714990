//! The Rust side of the Python-vs-Rust engine benchmark (`make bench-py`): the same
//! allocate+release cycle as the Python loop, run in Rust in the same process.

use crate::convert::timestamp;
use crate::errors;
use crate::types::{Requirements, Resource};
use allocate_core::{Config, Engine, SeededIds};
use pyo3::prelude::*;
use std::hint::black_box;
use std::time::Instant;
use uuid::Uuid;

/// Registers `resources` in a fresh engine, then times `cycles` cycles (request `requirements`,
/// take the outputs, release, take the outputs) with the GIL released; returns the seconds taken.
#[pyfunction]
pub fn _bench_rust_cycles(
    py: Python<'_>,
    resources: Vec<PyRef<'_, Resource>>,
    requirements: PyRef<'_, Requirements>,
    cycles: u64,
    now: f64,
) -> PyResult<f64> {
    let now = timestamp(now, "now")?;
    let specs: Vec<_> = resources.iter().map(|r| r.0.clone()).collect();
    let wants = requirements.0.clone();
    py.detach(|| {
        let mut engine = Engine::new(Config::default(), Box::new(SeededIds::new(1)));
        engine.register_agent(now, Uuid::from_u128(1), specs)?;
        let start = Instant::now();
        for _ in 0..cycles {
            let id = engine.request(now, wants.clone())?;
            while black_box(engine.poll_output()).is_some() {}
            engine.release(now, id)?;
            while black_box(engine.poll_output()).is_some() {}
        }
        Ok(start.elapsed().as_secs_f64())
    })
    .map_err(errors::from_core)
}
