//! Strings and sentences the library hands to C: given (the caller frees them with
//! `allocate_string_free`), lent (owned by the engine until its next poll), copied (the last
//! error), or static (the version).

use crate::panic::{boundary, with_last_error};
use crate::result::{allocate_result, Failure};
use std::ffi::{c_char, CString};

/// Gives a string to the caller through an out-parameter already checked with `args::out`;
/// the caller frees it with `allocate_string_free`.
pub(crate) fn give_string(s: String, slot: &mut *mut c_char) -> Result<(), Failure> {
    let c = CString::new(s).map_err(|_| {
        Failure::new(
            allocate_result::ALLOCATE_INTERNAL,
            "string holds a NUL byte",
        )
    })?;
    *slot = c.into_raw();
    Ok(())
}

/// Gives `value` as JSON to the caller, as [`give_string`].
pub(crate) fn give_json(
    value: &impl serde::Serialize,
    slot: &mut *mut c_char,
) -> Result<(), Failure> {
    let json = serde_json::to_string(value)
        .map_err(|e| Failure::new(allocate_result::ALLOCATE_INTERNAL, e.to_string()))?;
    give_string(json, slot)
}

/// The strings of the last polled output, lent to the caller until the next poll (the buffers
/// are reused from output to output, so polling allocates nothing once they are warm).
#[derive(Debug, Default)]
pub(crate) struct LentStrings {
    /// `allocate_output.host`.
    pub host: Vec<u8>,
    /// `allocate_output.username`.
    pub username: Vec<u8>,
    /// `allocate_output.password`.
    pub password: Vec<u8>,
}

/// Copies `s` into `buf` as a C string (dropping any NUL bytes) and lends a pointer to it,
/// valid until `buf` is next changed or dropped.
pub(crate) fn lend(buf: &mut Vec<u8>, s: &str) -> *const c_char {
    buf.clear();
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.push(0);
    buf.as_ptr().cast()
}

/// Frees a string this library returned. Null is a no-op.
///
/// Leaves the last error alone, unless a panic is caught inside: then it says so.
///
/// # Safety
/// `s` must be null or a string from this library not freed before.
#[no_mangle]
pub unsafe extern "C" fn allocate_string_free(s: *mut c_char) {
    boundary(|| {
        if !s.is_null() {
            // SAFETY: the caller hands back a string from `CString::into_raw` in `give_string`.
            drop(unsafe { CString::from_raw(s) });
        }
    })
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
    // Not `guard`: reading the last error must not clear it.
    boundary(|| {
        with_last_error(|message| {
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
            // SAFETY: `buf` has `buf_len` > message.len() writable bytes; the regions cannot
            // overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), message.len());
                *buf.add(message.len()) = 0;
            }
            allocate_result::ALLOCATE_OK
        })
    })
}

/// The library's version, a static string (do not free).
#[no_mangle]
pub extern "C" fn allocate_version() -> *const c_char {
    boundary(|| concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}
