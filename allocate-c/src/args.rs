//! Checked reading of C arguments: null pointers and invalid UTF-8 become failures, not crashes.

use crate::result::{allocate_result, Failure};
use std::ffi::{c_char, CStr};

/// A required pointer argument.
pub(crate) fn non_null<T>(p: *const T, name: &str) -> Result<*const T, Failure> {
    if p.is_null() {
        Err(Failure::new(
            allocate_result::ALLOCATE_NULL_PARAMETER,
            format!("{name} must not be null"),
        ))
    } else {
        Ok(p)
    }
}

/// A required writable out-parameter.
///
/// # Safety
/// `p` must be null or valid for writes for the duration of the call.
pub(crate) unsafe fn out<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Failure> {
    non_null(p.cast_const(), name)?;
    // SAFETY: checked non-null; the caller promises it is writable.
    Ok(unsafe { &mut *p })
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string that lives for the call.
pub(crate) unsafe fn text<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failure> {
    non_null(p, name)?;
    // SAFETY: checked non-null; the caller promises NUL termination.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| {
        Failure::new(
            allocate_result::ALLOCATE_INVALID_UTF8,
            format!("{name} is not valid UTF-8"),
        )
    })
}

/// An optional NUL-terminated UTF-8 string (null means absent).
///
/// # Safety
/// As for [`text`].
pub(crate) unsafe fn opt_text<'a>(
    p: *const c_char,
    name: &str,
) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { text(p, name) }.map(Some)
    }
}

/// An array of `len` strings (null allowed only when `len` is 0).
///
/// # Safety
/// `p` must point to `len` valid string pointers, each as for [`text`].
pub(crate) unsafe fn text_list(
    p: *const *const c_char,
    len: usize,
    name: &str,
) -> Result<Vec<String>, Failure> {
    if len == 0 {
        return Ok(Vec::new());
    }
    non_null(p, name)?;
    (0..len)
        .map(|i| {
            // SAFETY: the caller promises `len` readable entries.
            let item = unsafe { *p.add(i) };
            unsafe { text(item, &format!("{name}[{i}]")) }.map(str::to_owned)
        })
        .collect()
}
