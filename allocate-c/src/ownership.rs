//! Who owns what crosses the boundary, recorded in the type (rustls-ffi's `Castable`).
//!
//! Each C-visible type implements [`Castable`]: the Rust value behind its pointer and how C
//! holds it. The conversions below only accept the ownership they are sound for, so a `_free`
//! cannot free a borrowed struct, and a handle is only ever made by [`to_boxed_mut_ptr`] and
//! ended by [`free_box`]. Null pointers become `ALLOCATE_NULL_PARAMETER` (or a no-op for
//! `_free`), never a dereference.
//!
//! | C type | Ownership | made by | ended by |
//! |---|---|---|---|
//! | `allocate_engine` | Box | `allocate_engine_new`, `allocate_engine_restore_json` | `allocate_engine_free` |
//! | `allocate_uuid`, `allocate_config`, `allocate_request` | Ref | the caller | the caller |
//!
//! Strings the library returns (`char *`) are `CString`s, made and freed only in `strings`.

use crate::args::non_null;
use crate::result::Failure;

/// C holds a `Box<RustType>` it must give back to exactly one `_free` function.
#[derive(Debug)]
pub(crate) enum OwnershipBox {}

/// C lends a value for the length of one call; the library never frees or keeps it.
#[derive(Debug)]
pub(crate) enum OwnershipRef {}

/// A type that crosses the boundary behind a pointer.
pub(crate) trait Castable {
    /// [`OwnershipBox`] or [`OwnershipRef`].
    type Ownership;
    /// The Rust value the C pointer points to (the type itself for plain `#[repr(C)]` structs).
    type RustType;
}

/// Hands a new value to C as a handle it frees with the type's `_free` function.
pub(crate) fn to_boxed_mut_ptr<C: Castable<Ownership = OwnershipBox>>(
    value: C::RustType,
) -> *mut C {
    Box::into_raw(Box::new(value)).cast()
}

/// Borrows the value behind a required pointer argument (a handle or a lent struct).
///
/// # Safety
/// `p` must be null, or point to a live `C::RustType` (for a handle: one from
/// [`to_boxed_mut_ptr`] not yet freed) that stays valid and unmutated elsewhere for `'a`.
pub(crate) unsafe fn try_ref_from_ptr<'a, C: Castable>(
    p: *const C,
    name: &str,
) -> Result<&'a C::RustType, Failure> {
    let p = non_null(p, name)?.cast::<C::RustType>();
    // SAFETY: non-null; the caller promises it points to a live `C::RustType` for `'a`.
    Ok(unsafe { &*p })
}

/// Takes back a handle from C; `None` for null.
///
/// # Safety
/// `p` must be null or a pointer from [`to_boxed_mut_ptr`] not freed before and not in use.
pub(crate) unsafe fn try_box_from_ptr<C: Castable<Ownership = OwnershipBox>>(
    p: *mut C,
) -> Option<Box<C::RustType>> {
    // SAFETY: the caller hands back ownership of a pointer made by `Box::into_raw`.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p.cast::<C::RustType>()) })
}

/// Frees a handle C gives back; null is a no-op.
///
/// # Safety
/// As for [`try_box_from_ptr`].
pub(crate) unsafe fn free_box<C: Castable<Ownership = OwnershipBox>>(p: *mut C) {
    // SAFETY: forwarded from the caller.
    drop(unsafe { try_box_from_ptr(p) });
}
