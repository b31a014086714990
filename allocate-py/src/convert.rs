//! Conversions at the Python boundary: ids, times, and Python values as the contract's JSON.

use crate::errors;
use crate::http::client_error;
use allocate_client::ClientOptions;
use allocate_core::{parse_uuid, Timestamp};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::Borrowed;
use serde_json::{Map, Number, Value};
use uuid::Uuid;

/// An id given from Python: a hyphenated UUID string or a `uuid.UUID`.
#[derive(Clone, Copy, Debug)]
pub struct Id(pub Uuid);

impl<'a, 'py> FromPyObject<'a, 'py> for Id {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let text = match obj.cast::<PyString>() {
            Ok(s) => s.to_cow()?.into_owned(),
            // `uuid.UUID` and anything else whose str() is a UUID.
            Err(_) if obj.hasattr("hex")? => obj.str()?.to_cow()?.into_owned(),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "an id must be a str or uuid.UUID, got {}",
                    obj.get_type().name()?
                )))
            }
        };
        parse_uuid(&text, "id").map(Id).map_err(errors::from_core)
    }
}

/// The server's URL given from Python: one `str` (the replicas of one store separated by
/// commas) or a sequence of `str`, one per replica.
#[derive(Clone, Debug)]
pub struct Urls(Vec<String>);

impl Urls {
    /// The URL of one server.
    pub fn one(url: String) -> Self {
        Urls(vec![url])
    }

    /// The client crate's client of these servers (a bad URL is a `ValueError` naming it).
    pub fn client(&self, options: ClientOptions) -> PyResult<allocate_client::Client> {
        let urls = self.0.iter().flat_map(|u| u.split(','));
        allocate_client::Client::with_urls(urls, options).map_err(client_error)
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Urls {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(s) = obj.cast::<PyString>() {
            return Ok(Urls::one(s.to_cow()?.into_owned()));
        }
        obj.extract::<Vec<String>>().map(Urls).map_err(|_| {
            let kind = obj
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string());
            PyTypeError::new_err(format!(
                "url must be a str or a list of str (the replicas of one store), got {kind}"
            ))
        })
    }
}

/// A time in unix seconds (as Python's `time.time()` gives it) as the engine's timestamp.
pub fn timestamp(seconds: f64, what: &str) -> PyResult<Timestamp> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a finite, non-negative number of seconds, got {seconds}"
        )));
    }
    // Saturating: a float beyond u64 milliseconds is "never" anyway.
    Ok(Timestamp::from_millis((seconds * 1000.0).round() as u64))
}

/// The engine's timestamp as unix seconds.
pub fn seconds(t: Timestamp) -> f64 {
    t.as_millis() as f64 / 1000.0
}

/// A Python value as JSON: `None`, `bool`, `int`, `float`, `str`, lists, tuples and dicts with
/// string keys. `path` names the value in errors (`requirements.tags[2]`).
pub fn to_json(value: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        if let Ok(n) = value.extract::<u64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = value.extract::<i64>() {
            return Ok(Value::from(n));
        }
        return Err(errors::invalid(format!(
            "{path} is an integer too large to send"
        )));
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        return Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| errors::invalid(format!("{path} must be a finite number")));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return value
            .try_iter()?
            .enumerate()
            .map(|(i, item)| to_json(&item?, &format!("{path}[{i}]")))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        return dict_to_json(dict, path).map(Value::Object);
    }
    Err(PyTypeError::new_err(format!(
        "{path} must be None, a bool, int, float, str, list or dict, got {}",
        value.get_type().name()?
    )))
}

/// The engine's settings from a dict of `allocate_core::Config` fields (defaults for the rest).
pub fn engine_config(config: Option<&Bound<'_, PyDict>>) -> PyResult<allocate_core::Config> {
    match config {
        None => Ok(allocate_core::Config::default()),
        Some(dict) => serde_json::from_value(Value::Object(dict_to_json(dict, "config")?))
            .map_err(|e| errors::invalid(format!("config: {e}"))),
    }
}

/// A dict with string keys as a JSON object; `path` names it in errors.
pub fn dict_to_json(dict: &Bound<'_, PyDict>, path: &str) -> PyResult<Map<String, Value>> {
    let mut map = Map::with_capacity(dict.len());
    for (key, item) in dict.iter() {
        let key: String = key
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("the keys of {path} must be strings")))?;
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        map.insert(key, to_json(&item, &here)?);
    }
    Ok(map)
}
