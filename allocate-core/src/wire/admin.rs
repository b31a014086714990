//! The bodies of the HTTP calls that change a lease or a resource:
//! `PATCH /allocate/{id}` (`{"expires": t}`) and `PATCH /inventory/{id}` (admin,
//! `{"maintenance": bool, "reason": "..."}`).

use super::fields::{parse_json, Fields};
use crate::config::Limits;
use crate::error::{Error, Result};
use serde_json::json;

/// Reads the body of `PATCH /allocate/{id}`: `{"expires": t}`.
pub fn parse_expires_patch(text: &str, limits: &Limits) -> Result<u64> {
    let value = parse_json(text)?;
    Fields::new(&value, "", &["expires"], limits)?.u64("expires")
}

/// Reads the body of `PATCH /inventory/{id}`: `{"maintenance": bool, "reason": "..."}`.
/// Returns the maintenance reason to set, or `None` to return the resource to service.
pub fn parse_maintenance_patch(text: &str, limits: &Limits) -> Result<Option<String>> {
    let value = parse_json(text)?;
    let f = Fields::new(&value, "", &["maintenance", "reason"], limits)?;
    let on = f
        .opt_bool("maintenance")?
        .ok_or_else(|| f.missing("maintenance"))?;
    let reason = f.opt_str("reason")?;
    match (on, reason) {
        (true, reason) => Ok(Some(reason.unwrap_or("maintenance").to_owned())),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(Error::invalid(
            "reason is only allowed with maintenance: true",
        )),
    }
}

/// Writes the body of `PATCH /allocate/{id}`.
pub fn expires_patch_text(expires: u64) -> String {
    json!({ "expires": expires }).to_string()
}

/// Writes the body of `PATCH /inventory/{id}`: `Some(reason)` takes the resource out of
/// service, `None` returns it.
pub fn maintenance_patch_text(reason: Option<&str>) -> String {
    match reason {
        Some(reason) => json!({"maintenance": true, "reason": reason}),
        None => json!({"maintenance": false}),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_read_and_refuse() {
        let limits = Limits::default();
        assert_eq!(
            parse_expires_patch(r#"{"expires": 5}"#, &limits).unwrap(),
            5
        );
        assert!(parse_expires_patch(r#"{"expires": "5"}"#, &limits).is_err());
        assert_eq!(
            parse_maintenance_patch(r#"{"maintenance": true, "reason": "fan broken"}"#, &limits)
                .unwrap(),
            Some("fan broken".into())
        );
        assert_eq!(
            parse_maintenance_patch(r#"{"maintenance": true}"#, &limits).unwrap(),
            Some("maintenance".into())
        );
        assert_eq!(
            parse_maintenance_patch(r#"{"maintenance": false}"#, &limits).unwrap(),
            None
        );
        assert!(parse_maintenance_patch(r#"{"reason": "x"}"#, &limits).is_err());
        let err = parse_maintenance_patch(r#"{"maintenance": false, "reason": "x"}"#, &limits);
        assert!(err.is_err());
    }

    #[test]
    fn patches_round_trip_with_fixed_bytes() {
        let limits = Limits::default();
        for expires in [0, 1_893_456_000, u64::MAX] {
            let text = expires_patch_text(expires);
            assert_eq!(parse_expires_patch(&text, &limits).unwrap(), expires);
        }
        assert_eq!(expires_patch_text(5), r#"{"expires":5}"#);
        for reason in [Some("fan broken"), Some("maintenance"), None] {
            let text = maintenance_patch_text(reason);
            assert_eq!(
                parse_maintenance_patch(&text, &limits).unwrap().as_deref(),
                reason
            );
        }
        assert_eq!(
            maintenance_patch_text(Some("fan")),
            r#"{"maintenance":true,"reason":"fan"}"#
        );
    }
}
