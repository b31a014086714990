//! The contract's limits, checked on typed values, so Rust, C and Python callers get the same
//! refusals as JSON clients.

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::model::{Connection, Requirements, ResourceSpec};
use std::fmt::Display;

/// A string within the length limit. Paths are written only into an error, so that a valid
/// input costs no formatting.
pub(crate) fn text(s: &str, path: impl Display, limits: &Limits) -> Result<()> {
    // No more bytes than the limit is no more characters.
    if s.len() <= limits.string_chars_max {
        return Ok(());
    }
    let chars = s.chars().count();
    if chars > limits.string_chars_max {
        return Err(Error::invalid(format!(
            "{path} is {chars} characters long, more than the limit of {}",
            limits.string_chars_max
        )));
    }
    Ok(())
}

/// A list no longer than `len_max`.
pub(crate) fn list_len(len: usize, len_max: usize, path: impl Display) -> Result<()> {
    if len > len_max {
        return Err(Error::invalid(format!(
            "{path} has {len} entries, more than the limit of {len_max}"
        )));
    }
    Ok(())
}

/// A list of non-empty tags or labels within the limits.
pub(crate) fn tags(list: &[String], path: impl Display, limits: &Limits) -> Result<()> {
    list_len(list.len(), limits.list_len_max, &path)?;
    for (i, tag) in list.iter().enumerate() {
        if tag.is_empty() {
            return Err(Error::invalid(format!("{path}[{i}] must not be empty")));
        }
        text(tag, format_args!("{path}[{i}]"), limits)?;
    }
    Ok(())
}

/// Connection details within the limits.
pub(crate) fn connection(c: &Connection, path: impl Display, limits: &Limits) -> Result<()> {
    text(&c.host, format_args!("{path}.host"), limits)?;
    text(&c.username, format_args!("{path}.username"), limits)?;
    if c.port == Some(0) {
        return Err(Error::invalid(format!(
            "{path}.port must be between 1 and 65535, got 0"
        )));
    }
    match &c.password {
        Some(password) => text(password, format_args!("{path}.password"), limits),
        None => Ok(()),
    }
}

/// A whole registration within the limits.
pub(crate) fn registration(specs: &[ResourceSpec], limits: &Limits) -> Result<()> {
    list_len(
        specs.len(),
        limits.resources_per_registration_max,
        "resources",
    )?;
    for (i, spec) in specs.iter().enumerate() {
        tags(&spec.labels, format_args!("resources[{i}].labels"), limits)?;
        text(&spec.kind, format_args!("resources[{i}].type"), limits)?;
        list_len(
            spec.gpu.len(),
            limits.list_len_max,
            format_args!("resources[{i}].gpu"),
        )?;
        for (j, gpu) in spec.gpu.iter().enumerate() {
            text(
                &gpu.label,
                format_args!("resources[{i}].gpu[{j}].label"),
                limits,
            )?;
        }
        if let Some(c) = &spec.connection {
            connection(c, format_args!("resources[{i}].connection"), limits)?;
        }
    }
    Ok(())
}

/// Requirements within the limits, with a username.
/// At most one of `expires` and `duration_seconds`, and a duration of at least one second.
pub(crate) fn lease_length(expires: Option<u64>, duration_seconds: Option<u64>) -> Result<()> {
    match (expires, duration_seconds) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "requirements.duration_seconds and requirements.expires are exclusive: name at most one",
        )),
        (_, Some(0)) => Err(Error::invalid(
            "requirements.duration_seconds must be more than 0",
        )),
        _ => Ok(()),
    }
}

pub(crate) fn requirements(r: &Requirements, limits: &Limits) -> Result<()> {
    if r.username.trim().is_empty() {
        return Err(Error::invalid("requirements.username must not be empty"));
    }
    text(&r.username, "requirements.username", limits)?;
    lease_length(r.expires, r.duration_seconds)?;
    ssh_keys(&r.ssh_keys, limits)?;
    if let Some(provision) = &r.provision {
        provision_data(provision, limits)?;
    }
    matching(r, limits)
}

/// The parts of requirements that matching reads (tags, type, GPU) within the limits: all
/// that a dry run (`POST /match`) checks, since it needs no username or lease.
pub(crate) fn matching(r: &Requirements, limits: &Limits) -> Result<()> {
    tags(&r.tags, "requirements.tags", limits)?;
    tags(&r.exclude_tags, "requirements.exclude_tags", limits)?;
    if r.count == 0 || r.count > limits.count_max {
        return Err(Error::invalid(format!(
            "requirements.count must be between 1 and {}, got {}",
            limits.count_max, r.count
        )));
    }
    if let Some(kind) = &r.kind {
        text(kind, "requirements.type", limits)?;
    }
    if let Some(gpu) = &r.gpu {
        if gpu.count == 0 || gpu.count as usize > limits.list_len_max {
            return Err(Error::invalid(format!(
                "requirements.gpu.count must be between 1 and {}, got {}",
                limits.list_len_max, gpu.count
            )));
        }
        if let Some(label) = &gpu.label {
            text(label, "requirements.gpu.label", limits)?;
        }
    }
    Ok(())
}

/// A request's `ssh_keys`: at most `ssh_keys_max`, each a non-empty single line of at most
/// `ssh_key_bytes_max` bytes (a key becomes one line of `authorized_keys`).
pub(crate) fn ssh_keys(keys: &[String], limits: &Limits) -> Result<()> {
    list_len(keys.len(), limits.ssh_keys_max, "requirements.ssh_keys")?;
    for (i, key) in keys.iter().enumerate() {
        if key.trim().is_empty() {
            return Err(Error::invalid(format!(
                "requirements.ssh_keys[{i}] must not be empty"
            )));
        }
        if key.len() > limits.ssh_key_bytes_max {
            return Err(Error::invalid(format!(
                "requirements.ssh_keys[{i}] is {} bytes long, more than the limit of {}",
                key.len(),
                limits.ssh_key_bytes_max
            )));
        }
        if key.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Error::invalid(format!(
                "requirements.ssh_keys[{i}] must be one line without control characters"
            )));
        }
    }
    Ok(())
}

/// A request's `provision` object within its size limit.
pub(crate) fn provision_data(
    data: &serde_json::Map<String, serde_json::Value>,
    limits: &Limits,
) -> Result<()> {
    let bytes = serde_json::to_string(data).map_or(usize::MAX, |s| s.len());
    if bytes > limits.provision_bytes_max {
        return Err(Error::invalid(format!(
            "requirements.provision is {bytes} bytes long as JSON, more than the limit of {}",
            limits.provision_bytes_max
        )));
    }
    Ok(())
}

/// `s` cut to at most `chars_max` characters (for reasons an agent sends).
pub(crate) fn clip(s: &str, chars_max: usize) -> String {
    match s.char_indices().nth(chars_max) {
        Some((cut, _)) => s[..cut].to_owned(),
        None => s.to_owned(),
    }
}
