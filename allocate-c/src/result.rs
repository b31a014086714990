//! Result codes, the thread-local last error, and the guard every exported function runs in.

use allocate_core::ErrorCode;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::c_char;

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

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(message: &str) {
    LAST_ERROR.with(|m| {
        let mut m = m.borrow_mut();
        // Reuses the buffer: the hot path (success, or "no output") allocates nothing here.
        if !(m.is_empty() && message.is_empty()) {
            m.clear();
            m.push_str(message);
        }
    });
}

/// Runs an exported function's body: panics become `ALLOCATE_PANIC`, failures set the last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> allocate_result {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            allocate_result::ALLOCATE_OK
        }
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.code
        }
        Err(_) => {
            set_last_error("internal error: a panic was caught at the C boundary");
            allocate_result::ALLOCATE_PANIC
        }
    }
}

/// Copies the message of this thread's last failed call into `buf` (NUL-terminated).
///
/// `len_out` (may be null) receives the message's length without the NUL. Returns
/// `ALLOCATE_BUFFER_TOO_SMALL` (copying nothing) when `buf_len` is not more than that length.
/// The message is empty after a successful call.
///
/// # Safety
/// `buf` must point to `buf_len` writable bytes; `len_out` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_last_error_message(
    buf: *mut c_char,
    buf_len: usize,
    len_out: *mut usize,
) -> allocate_result {
    let message = LAST_ERROR.with(|m| m.borrow().clone());
    if !len_out.is_null() {
        // SAFETY: the caller promises `len_out` is null or writable.
        unsafe { *len_out = message.len() };
    }
    if buf.is_null() {
        return allocate_result::ALLOCATE_NULL_PARAMETER;
    }
    if buf_len <= message.len() {
        return allocate_result::ALLOCATE_BUFFER_TOO_SMALL;
    }
    // SAFETY: `buf` has `buf_len` > message.len() writable bytes, and the regions cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), message.len());
        *buf.add(message.len()) = 0;
    }
    allocate_result::ALLOCATE_OK
}
