//! The exception classes: one base, `AllocateError`, and one subclass per error code of the
//! contract (allocate-core's `ErrorCode` table), plus `ConnectionLost` for the network.

use allocate_core::ErrorCode;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    allocate._allocate,
    AllocateError,
    PyException,
    "Base class of every error the allocate package raises; `code` names the contract's error code."
);
create_exception!(
    allocate._allocate,
    InvalidRequest,
    AllocateError,
    "A malformed or out-of-range request or field (400 invalid_request); the message names the field."
);
create_exception!(
    allocate._allocate,
    Unauthorized,
    AllocateError,
    "No bearer token, or one the server does not know (401 unauthorized)."
);
create_exception!(
    allocate._allocate,
    Forbidden,
    AllocateError,
    "The token's role may not do this (403 forbidden)."
);
create_exception!(
    allocate._allocate,
    NotFound,
    AllocateError,
    "An unknown or already ended allocation or resource (404 not_found)."
);
create_exception!(
    allocate._allocate,
    AllocationTimeout,
    AllocateError,
    "Nothing matching became ready before the wait ended (408 allocation_timeout)."
);
create_exception!(
    allocate._allocate,
    Conflict,
    AllocateError,
    "The request clashes with the current state, such as an id another agent owns (409 conflict)."
);
create_exception!(
    allocate._allocate,
    InternalError,
    AllocateError,
    "A fault in the server; its log has the details (500 internal)."
);
create_exception!(
    allocate._allocate,
    ShuttingDown,
    AllocateError,
    "The server is stopping (503 shutting_down)."
);
create_exception!(
    allocate._allocate,
    Overloaded,
    AllocateError,
    "The server holds as many connections as it allows, in all or from this address (503 overloaded)."
);
create_exception!(
    allocate._allocate,
    NotLeader,
    AllocateError,
    "This server is a standby of a shared store; another one leads (503 not_leader)."
);
create_exception!(
    allocate._allocate,
    QuotaExceeded,
    AllocateError,
    "The request could never fit its user's quota; the message names the limit (403 quota_exceeded)."
);
create_exception!(
    allocate._allocate,
    ConnectionLost,
    AllocateError,
    "The server could not be reached, or the connection to it dropped or stopped answering."
);

/// The `code` class attribute of the classes that no contract code names.
const BASE_CODE: &str = "error";
const CONNECTION_LOST_CODE: &str = "connection_lost";

/// Sets each exception class's `code` class attribute (the module exports the classes).
pub fn set_codes(py: Python<'_>) -> PyResult<()> {
    py.get_type::<AllocateError>().setattr("code", BASE_CODE)?;
    for code in ErrorCode::ALL {
        let class = from_error_code(code, String::new()).get_type(py);
        class.setattr("code", code.as_str())?;
    }
    py.get_type::<ConnectionLost>()
        .setattr("code", CONNECTION_LOST_CODE)
}

/// The exception for a contract error `code` (as the server sends it) with its message; an
/// unknown code (a newer server) gives the base class.
pub fn from_code(code: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    match ErrorCode::ALL.into_iter().find(|c| c.as_str() == code) {
        Some(code) => from_error_code(code, message),
        None => AllocateError::new_err(format!("{code}: {message}")),
    }
}

/// The exception for a contract error code.
pub fn from_error_code(code: ErrorCode, message: String) -> PyErr {
    match code {
        ErrorCode::InvalidRequest => InvalidRequest::new_err(message),
        ErrorCode::Unauthorized => Unauthorized::new_err(message),
        ErrorCode::Forbidden => Forbidden::new_err(message),
        ErrorCode::NotFound => NotFound::new_err(message),
        ErrorCode::AllocationTimeout => AllocationTimeout::new_err(message),
        ErrorCode::Conflict => Conflict::new_err(message),
        ErrorCode::Internal => InternalError::new_err(message),
        ErrorCode::ShuttingDown => ShuttingDown::new_err(message),
        ErrorCode::Overloaded => Overloaded::new_err(message),
        ErrorCode::NotLeader => NotLeader::new_err(message),
        ErrorCode::QuotaExceeded => QuotaExceeded::new_err(message),
    }
}

/// The exception for an error of the engine.
pub fn from_core(error: allocate_core::Error) -> PyErr {
    from_error_code(error.code(), error.to_string())
}

/// A `ConnectionLost` with this message.
pub fn lost(message: impl Into<String>) -> PyErr {
    ConnectionLost::new_err(message.into())
}

/// An `InvalidRequest` with this message.
pub fn invalid(message: impl Into<String>) -> PyErr {
    InvalidRequest::new_err(message.into())
}
