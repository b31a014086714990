//! The panic boundary every exported function runs in, and the thread's last error it records.
//!
//! No panic unwinds into C: [`boundary`] catches it and returns the function's documented
//! panic value ([`PanicValue`]). [`guard`] adds the usual shape of a call: a `Failure` becomes
//! its code and the sentence for `allocate_last_error_message`, success clears that sentence.

use crate::result::{allocate_result, Failure};
use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The sentence left by a panic caught at the boundary.
pub(crate) const PANIC_MESSAGE: &str = "internal error: a panic was caught at the C boundary";

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the sentence `allocate_last_error_message` returns on this thread ("" after success).
pub(crate) fn set_last_error(message: &str) {
    LAST_ERROR.with(|m| {
        let mut m = m.borrow_mut();
        // Reuses the buffer: the hot path (success, or "no output") allocates nothing here.
        if !(m.is_empty() && message.is_empty()) {
            m.clear();
            m.push_str(message);
        }
    });
}

/// Runs `f` with this thread's last error sentence.
pub(crate) fn with_last_error<T>(f: impl FnOnce(&str) -> T) -> T {
    LAST_ERROR.with(|m| f(&m.borrow()))
}

/// What an exported function returns when its body panicked.
pub(crate) trait PanicValue {
    /// The value documented for a caught panic.
    fn panic_value() -> Self;
}

impl PanicValue for allocate_result {
    fn panic_value() -> Self {
        allocate_result::ALLOCATE_PANIC
    }
}

/// `_free` functions return nothing: the panic is contained and left as the last error.
impl PanicValue for () {
    fn panic_value() -> Self {}
}

impl PanicValue for *const c_char {
    fn panic_value() -> Self {
        std::ptr::null()
    }
}

/// Runs an exported function's whole body: a panic becomes `T::panic_value()` and the last
/// error; anything else is returned as is and the last error is left alone.
pub(crate) fn boundary<T: PanicValue>(body: impl FnOnce() -> T) -> T {
    // AssertUnwindSafe: state a panic may leave half-updated is the engine behind its mutex,
    // and `ALLOCATE_PANIC` documents that it may be inconsistent.
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        set_last_error(PANIC_MESSAGE);
        T::panic_value()
    })
}

/// Runs an exported function's body that ends in a `Failure` or success, inside [`boundary`].
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> allocate_result {
    boundary(|| match body() {
        Ok(()) => {
            set_last_error("");
            allocate_result::ALLOCATE_OK
        }
        Err(failure) => {
            set_last_error(&failure.message);
            failure.code
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_panic_value_of_each_return_type() {
        assert_eq!(
            boundary(|| -> allocate_result { panic!("boom") }),
            allocate_result::ALLOCATE_PANIC
        );
        assert!(boundary(|| -> *const c_char { panic!("boom") }).is_null());
        boundary::<()>(|| panic!("boom"));
        assert_eq!(with_last_error(str::to_owned), PANIC_MESSAGE);
    }

    #[test]
    fn guard_records_a_failure_and_clears_it_on_success() {
        let code = guard(|| Err(Failure::new(allocate_result::ALLOCATE_CONFLICT, "taken")));
        assert_eq!(code, allocate_result::ALLOCATE_CONFLICT);
        assert_eq!(with_last_error(str::to_owned), "taken");
        assert_eq!(guard(|| Ok(())), allocate_result::ALLOCATE_OK);
        assert_eq!(with_last_error(str::to_owned), "");
        assert_eq!(
            guard(|| -> Result<(), Failure> { panic!("boom") }),
            allocate_result::ALLOCATE_PANIC
        );
        assert_eq!(with_last_error(str::to_owned), PANIC_MESSAGE);
    }
}
