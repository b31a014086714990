//! Ids: `allocate_uuid`, reading one from an argument, and parsing and formatting them.

use crate::args::{non_null, out, text};
use crate::ownership::{try_ref_from_ptr, Castable, OwnershipRef};
use crate::panic::guard;
use crate::result::{allocate_result, Failure};
use std::ffi::c_char;
use uuid::Uuid;

/// A UUID as its 16 bytes (big-endian, as printed).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct allocate_uuid {
    /// The bytes.
    pub bytes: [u8; 16],
}

impl Castable for allocate_uuid {
    type Ownership = OwnershipRef;
    type RustType = allocate_uuid;
}

impl From<Uuid> for allocate_uuid {
    fn from(id: Uuid) -> Self {
        allocate_uuid {
            bytes: *id.as_bytes(),
        }
    }
}

impl From<&allocate_uuid> for Uuid {
    fn from(id: &allocate_uuid) -> Self {
        Uuid::from_bytes(id.bytes)
    }
}

/// Reads a required id argument.
///
/// # Safety
/// `p` must be null or readable for the call.
pub(crate) unsafe fn uuid_arg(p: *const allocate_uuid, name: &str) -> Result<Uuid, Failure> {
    // SAFETY: forwarded from the caller.
    Ok(Uuid::from(unsafe { try_ref_from_ptr(p, name) }?))
}

/// Parses a hyphenated UUID string into `uuid_out`.
///
/// # Safety
/// `text` NUL-terminated; `uuid_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_uuid_parse(
    text_in: *const c_char,
    uuid_out: *mut allocate_uuid,
) -> allocate_result {
    guard(|| {
        // SAFETY (both): the caller's contract.
        let slot = unsafe { out(uuid_out, "uuid_out") }?;
        let s = unsafe { text(text_in, "text") }?;
        *slot = allocate_core::parse_uuid(s, "text")?.into();
        Ok(())
    })
}

/// Writes a UUID as 36 lower-case hyphenated characters plus a NUL into `buf` (at least 37 bytes).
///
/// # Safety
/// `uuid` readable; `buf` has `buf_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn allocate_uuid_format(
    uuid: *const allocate_uuid,
    buf: *mut c_char,
    buf_len: usize,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        let id = unsafe { uuid_arg(uuid, "uuid") }?;
        non_null(buf, "buf")?;
        if buf_len < 37 {
            return Err(Failure::new(
                allocate_result::ALLOCATE_BUFFER_TOO_SMALL,
                "buf needs 37 bytes",
            ));
        }
        let s = id.hyphenated().to_string();
        // SAFETY: `buf` has at least 37 writable bytes; `s` is 36 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), 36);
            *buf.add(36) = 0;
        }
        Ok(())
    })
}
