//! Result codes, and `Failure`: the code and sentence a failed call ends with.

use allocate_core::ErrorCode;
use std::borrow::Cow;

/// What every function returns. The numbers are stable and never reused.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum allocate_result {
    /// Success.
    ALLOCATE_OK = 0,
    /// A required pointer argument was null.
    ALLOCATE_NULL_PARAMETER = 1,
    /// A string argument was not valid UTF-8.
    ALLOCATE_INVALID_UTF8 = 2,
    /// Malformed JSON, a bad field, or a value outside the limits (HTTP 400).
    ALLOCATE_INVALID_REQUEST = 3,
    /// Unknown or already ended id (HTTP 404).
    ALLOCATE_NOT_FOUND = 4,
    /// The caller may not do this, such as an agent answering for another's resource (HTTP 403).
    ALLOCATE_FORBIDDEN = 5,
    /// The input clashes with the current state (HTTP 409).
    ALLOCATE_CONFLICT = 6,
    /// A bug inside the library was caught at the boundary; the engine may be inconsistent.
    ALLOCATE_PANIC = 7,
    /// Nothing to return: no output pending, or no deadline set.
    ALLOCATE_EMPTY = 8,
    /// The caller's buffer is too small; the needed length was written to the length out-parameter.
    ALLOCATE_BUFFER_TOO_SMALL = 9,
    /// No or an unknown token (HTTP 401); not produced by the engine itself.
    ALLOCATE_UNAUTHORIZED = 10,
    /// Nothing became free in time (HTTP 408); not produced by the engine itself.
    ALLOCATE_ALLOCATION_TIMEOUT = 11,
    /// A server fault (HTTP 500); not produced by the engine itself.
    ALLOCATE_INTERNAL = 12,
    /// The server is stopping (HTTP 503); not produced by the engine itself.
    ALLOCATE_SHUTTING_DOWN = 13,
    /// A policy callback called into the engine that is calling it (which would deadlock);
    /// the inner call did nothing.
    ALLOCATE_REENTERED = 14,
    /// The server holds as many connections as it allows (HTTP 503 `overloaded`); not produced
    /// by the engine itself.
    ALLOCATE_OVERLOADED = 15,
    /// The server is a standby, another leads (HTTP 503 `not_leader`); not produced by the
    /// engine itself.
    ALLOCATE_NOT_LEADER = 16,
    /// The request could never fit its user's quota (HTTP 403 `quota_exceeded`); the message
    /// names the limit.
    ALLOCATE_QUOTA_EXCEEDED = 17,
}

impl From<ErrorCode> for allocate_result {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::InvalidRequest => allocate_result::ALLOCATE_INVALID_REQUEST,
            ErrorCode::Unauthorized => allocate_result::ALLOCATE_UNAUTHORIZED,
            ErrorCode::Forbidden => allocate_result::ALLOCATE_FORBIDDEN,
            ErrorCode::NotFound => allocate_result::ALLOCATE_NOT_FOUND,
            ErrorCode::AllocationTimeout => allocate_result::ALLOCATE_ALLOCATION_TIMEOUT,
            ErrorCode::Conflict => allocate_result::ALLOCATE_CONFLICT,
            ErrorCode::Internal => allocate_result::ALLOCATE_INTERNAL,
            ErrorCode::ShuttingDown => allocate_result::ALLOCATE_SHUTTING_DOWN,
            ErrorCode::Overloaded => allocate_result::ALLOCATE_OVERLOADED,
            ErrorCode::NotLeader => allocate_result::ALLOCATE_NOT_LEADER,
            ErrorCode::QuotaExceeded => allocate_result::ALLOCATE_QUOTA_EXCEEDED,
        }
    }
}

/// A failed call: its code and the sentence for [`allocate_last_error_message`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: allocate_result,
    pub message: Cow<'static, str>,
}

impl Failure {
    pub(crate) fn new(code: allocate_result, message: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A quiet outcome that is not an error (`ALLOCATE_EMPTY`).
    pub(crate) fn empty(what: &'static str) -> Self {
        Failure::new(allocate_result::ALLOCATE_EMPTY, what)
    }
}

impl From<allocate_core::Error> for Failure {
    fn from(e: allocate_core::Error) -> Self {
        Failure::new(e.code().into(), Cow::Owned(e.to_string()))
    }
}
