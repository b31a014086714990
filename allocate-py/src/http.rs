//! The exceptions for what `allocate-client` reports: every network call of the module goes
//! through that crate, and its errors become this module's exception classes here.

use crate::errors;
use allocate_core::wire::Refusal;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The exception for a refusal of the server.
pub fn refused(refusal: Refusal) -> PyErr {
    errors::from_code(&refusal.code, refusal.message)
}

use allocate_client::chain;

/// The exception for an error of the client crate: the server's refusal as its class, a bad
/// URL or token as `ValueError`, anything on the way as `ConnectionLost`.
pub fn client_error(error: allocate_client::Error) -> PyErr {
    use allocate_client::Error;
    match error {
        Error::Refused { refusal, .. } => refused(*refusal),
        Error::Allocation(e) => allocation_error(e),
        Error::Url { .. } | Error::Token | Error::CaFile { .. } => {
            PyValueError::new_err(error.to_string())
        }
        Error::Unreadable { .. } => errors::AllocateError::new_err(chain(&error)),
        other => errors::lost(chain(&other)),
    }
}

/// The exception for an allocation request that failed.
pub fn allocation_error(error: allocate_client::AllocationError) -> PyErr {
    use allocate_client::AllocationError as E;
    match error {
        E::TimedOut(refusal) | E::Refused(refusal) => refused(refusal),
        E::ReleasedBeforeReady => errors::AllocateError::new_err(
            "the request was released (deleted) before it became ready",
        ),
        E::LostBeforeReady(_) | E::LostDuringLease(_) => errors::lost(error.to_string()),
        E::Unreadable(_) | E::Ended(_) => errors::AllocateError::new_err(error.to_string()),
        E::NoIdYet => pyo3::exceptions::PyRuntimeError::new_err(
            "the server has not answered this request yet",
        ),
    }
}
