//! Reading JSON objects field by field, with errors that name the field, e.g.
//! `requirements.gpu.count`: strictly for what clients and agents send (unknown fields are
//! refused), leniently for what the server sends (unknown fields are a newer server's).

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::validate;
use serde_json::{Map, Value};
use uuid::Uuid;

pub use super::json::parse_json;

/// A JSON object being read field by field; rejects fields it was not told about.
pub(crate) struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
    limits: &'a Limits,
}

/// 2^64, the first integer past `u64::MAX`.
const U64_END: f64 = 18_446_744_073_709_551_616.0;

/// -2^63, `i64::MIN`: serde_json reads an integer below it as a float.
const I64_START: f64 = -9_223_372_036_854_775_808.0;

/// Whether a number serde_json read as a float was written as an integer too large for 64
/// bits (or a float of that size, which no integer field can hold either).
fn is_out_of_range(f: f64) -> bool {
    f.fract() == 0.0 && !(I64_START..U64_END).contains(&f)
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() => "an integer",
        Value::Number(n) if n.is_i64() => "a negative integer",
        // serde_json reads an integer beyond 64 bits as a float.
        Value::Number(n) if n.as_f64().is_some_and(is_out_of_range) => "a number out of range",
        Value::Number(_) => "a float",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Joins a parent path and a field name: `requirements` + `tags` = `requirements.tags`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Fields<'a> {
    /// Reads `value` at `path` as an object whose keys are all in `allowed`.
    pub(crate) fn new(
        value: &'a Value,
        path: &str,
        allowed: &[&str],
        limits: &'a Limits,
    ) -> Result<Self> {
        let fields = Self::lenient(value, path, limits)?;
        let name = if path.is_empty() { "message" } else { path };
        if let Some(unknown) = fields.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let unknown = truncate(unknown, limits.string_chars_max);
            return Err(Error::invalid(format!(
                "unknown field `{}` in {name}; expected one of: {}",
                unknown,
                allowed.join(", ")
            )));
        }
        Ok(fields)
    }

    /// Reads `value` at `path` as an object, ignoring fields nobody asks for.
    pub(crate) fn lenient(value: &'a Value, path: &str, limits: &'a Limits) -> Result<Self> {
        let Value::Object(map) = value else {
            let name = if path.is_empty() { "message" } else { path };
            return Err(Error::invalid(format!(
                "{name} must be an object, got {}",
                describe(value)
            )));
        };
        Ok(Fields {
            path: path.to_owned(),
            map,
            limits,
        })
    }

    /// The full path of a field of this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value of a field; `null` counts as absent.
    pub(crate) fn value(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn type_error(&self, key: &str, expected: &str, got: &Value) -> Error {
        Error::invalid(format!(
            "{} must be {expected}, got {}",
            self.path_of(key),
            describe(got)
        ))
    }

    /// An optional string within the length limit.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                validate::text(s, self.path_of(key), self.limits).map(|()| Some(s.as_str()))
            }
            Some(other) => Err(self.type_error(key, "a string", other)),
        }
    }

    /// A required string within the length limit.
    pub(crate) fn str(&self, key: &str) -> Result<&'a str> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional non-negative integer (floats, booleans and strings are refused).
    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                self.type_error(key, "a non-negative integer", &Value::Number(n.clone()))
            }),
            Some(other) => Err(self.type_error(key, "a non-negative integer", other)),
        }
    }

    /// A required non-negative integer.
    pub(crate) fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    /// A required integer that fits 32 bits.
    pub(crate) fn u32(&self, key: &str) -> Result<u32> {
        let n = self.u64(key)?;
        u32::try_from(n).map_err(|_| {
            Error::invalid(format!(
                "{} must be at most {}, got {n}",
                self.path_of(key),
                u32::MAX
            ))
        })
    }

    /// An optional boolean.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.type_error(key, "a boolean", other)),
        }
    }

    /// An optional id (a UUID string).
    pub(crate) fn opt_uuid(&self, key: &str) -> Result<Option<Uuid>> {
        self.opt_str(key)?
            .map(|s| parse_uuid(s, &self.path_of(key)))
            .transpose()
    }

    /// A required id (a UUID string).
    pub(crate) fn uuid(&self, key: &str) -> Result<Uuid> {
        self.opt_uuid(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional list, each entry within the list limit; returns the entries.
    pub(crate) fn opt_list(&self, key: &str, len_max: usize) -> Result<Option<&'a Vec<Value>>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                validate::list_len(items.len(), len_max, self.path_of(key)).map(|()| Some(items))
            }
            Some(other) => Err(self.type_error(key, "a list", other)),
        }
    }

    /// An optional list of non-empty strings (tags or labels), within the limits.
    pub(crate) fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(items) = self.opt_list(key, self.limits.list_len_max)? else {
            return Ok(None);
        };
        let path = self.path_of(key);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let here = format!("{path}[{i}]");
                match item {
                    Value::String(s) if s.is_empty() => {
                        Err(Error::invalid(format!("{here} must not be empty")))
                    }
                    Value::String(s) => validate::text(s, &here, self.limits).map(|()| s.clone()),
                    other => Err(Error::invalid(format!(
                        "{here} must be a string, got {}",
                        describe(other)
                    ))),
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An optional list of at most `len_max` strings whose lengths the caller checks (public
    /// keys, longer than the string limit); absent is empty.
    pub(crate) fn raw_strings(&self, key: &str, len_max: usize) -> Result<Vec<String>> {
        let Some(items) = self.opt_list(key, len_max)? else {
            return Ok(Vec::new());
        };
        let path = self.path_of(key);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(Error::invalid(format!(
                    "{path}[{i}] must be a string, got {}",
                    describe(other)
                ))),
            })
            .collect()
    }

    /// An optional object, kept as it is.
    pub(crate) fn opt_object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(self.type_error(key, "an object", other)),
        }
    }

    /// The error for a required field that is absent.
    pub(crate) fn missing(&self, key: &str) -> Error {
        Error::invalid(format!("{} is required", self.path_of(key)))
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> &'a Limits {
        self.limits
    }
}

fn truncate(s: &str, chars_max: usize) -> String {
    match s.char_indices().nth(chars_max.min(64)) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Parses a lower- or upper-case hyphenated UUID, naming `what` when it is malformed.
pub fn parse_uuid(s: &str, what: &str) -> Result<Uuid> {
    if s.len() != 36 {
        return Err(Error::invalid(format!(
            "{what} must be a hyphenated UUID, got {:?}",
            truncate(s, 64)
        )));
    }
    Uuid::try_parse(s)
        .map_err(|_| Error::invalid(format!("{what} must be a hyphenated UUID, got {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read<T>(value: Value, f: impl FnOnce(&Fields) -> Result<T>) -> Result<T> {
        let limits = Limits::default();
        let fields = Fields::new(&value, "req", &["a", "b"], &limits)?;
        f(&fields)
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = read(json!({"a": 1, "tag": ["x"]}), |_| Ok(())).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `tag` in req"),
            "{err}"
        );
    }

    #[test]
    fn integers_refuse_floats_booleans_strings_and_negatives() {
        for (bad, word) in [
            (json!(1.5), "a float"),
            (json!(true), "a boolean"),
            (json!("3"), "a string"),
            (json!(-1), "a negative integer"),
            (json!(18_446_744_073_709_551_616.0), "a number out of range"),
            (json!(-1e19), "a number out of range"),
        ] {
            let err = read(json!({ "a": bad }), |f| f.u64("a")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("req.a must be a non-negative integer, got {word}")
            );
        }
        assert_eq!(read(json!({"a": 3}), |f| f.u64("a")).unwrap(), 3);
        assert_eq!(read(json!({"a": null}), |f| f.opt_u64("a")).unwrap(), None);
        assert_eq!(
            read(json!({}), |f| f.u64("b")).unwrap_err().to_string(),
            "req.b is required"
        );
    }

    #[test]
    fn strings_and_lists_respect_limits() {
        let long = "x".repeat(257);
        let err = read(json!({ "a": long }), |f| f.str("a").map(str::to_owned)).unwrap_err();
        assert!(
            err.to_string().contains("req.a is 257 characters long"),
            "{err}"
        );
        let many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
        let err = read(json!({ "a": many }), |f| f.opt_strings("a")).unwrap_err();
        assert!(err.to_string().contains("req.a has 65 entries"), "{err}");
        let err = read(json!({"a": ["ok", ""]}), |f| f.opt_strings("a")).unwrap_err();
        assert_eq!(err.to_string(), "req.a[1] must not be empty");
        let err = read(json!({"a": ["ok", 3]}), |f| f.opt_strings("a")).unwrap_err();
        assert_eq!(err.to_string(), "req.a[1] must be a string, got an integer");
    }

    #[test]
    fn uuids_must_be_hyphenated() {
        assert!(parse_uuid("8a526e72-bcde-45e6-8a5f-f598b350f093", "id").is_ok());
        let err = parse_uuid("8a526e72bcde45e68a5ff598b350f093", "inventory_id").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("inventory_id must be a hyphenated UUID"));
        assert!(parse_uuid("zz526e72-bcde-45e6-8a5f-f598b350f093", "id").is_err());
    }

    #[test]
    fn non_objects_and_bad_json_are_refused() {
        let limits = Limits::default();
        let err = Fields::new(&json!([1]), "", &[], &limits).err().unwrap();
        assert_eq!(err.to_string(), "message must be an object, got a list");
        assert!(parse_json("{")
            .unwrap_err()
            .to_string()
            .starts_with("message is not valid JSON"));
    }
}
