//! Reading the JSON text that clients and agents send, strictly: an object that names the
//! same key twice is refused (a lenient reader keeps one of the two silently, so a client
//! and the server could each believe a different one), and an error names the field where
//! the text went wrong (`requirements.expires is a number out of range`), not only a line
//! and column.

use crate::error::{Error, Result};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use std::fmt;

/// The longest key quoted in an error.
const KEY_CHARS_QUOTED_MAX: usize = 64;

/// Parses a message's text as JSON; refuses duplicate keys, and names the field of an
/// error where it can.
pub fn parse_json(text: &str) -> Result<Value> {
    let mut trail = Trail::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Strict { trail: &mut trail }
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    parsed.map_err(|e| trail.error(&e))
}

/// Where reading stopped: filled in only on the way out of a failure, so reading text that
/// is fine costs nothing here.
#[derive(Debug, Default)]
struct Trail {
    /// The keys and indexes from the failing value up to the top, innermost first.
    path: Vec<Segment>,
    /// The key an object named twice.
    duplicate: Option<String>,
}

#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Trail {
    /// The failing value's path, such as `requirements.gpu.count` or `resources[3].labels`.
    fn path(&self) -> String {
        let mut out = String::new();
        for segment in self.path.iter().rev() {
            match segment {
                Segment::Key(key) if out.is_empty() => out.push_str(&quoted(key)),
                Segment::Key(key) => {
                    out.push('.');
                    out.push_str(&quoted(key));
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The error for a failed parse: a duplicate key, a number out of range, or else the
    /// parser's own sentence with where it happened.
    fn error(&self, e: &serde_json::Error) -> Error {
        let path = self.path();
        let name = if path.is_empty() { "message" } else { &path };
        if let Some(key) = &self.duplicate {
            return Error::invalid(format!("duplicate field `{}` in {name}", quoted(key)));
        }
        if is_out_of_range(e) {
            return Error::invalid(format!("{name} is a number out of range"));
        }
        if path.is_empty() {
            Error::invalid(format!("message is not valid JSON: {e}"))
        } else {
            Error::invalid(format!("message is not valid JSON: {e} (in {path})"))
        }
    }
}

/// Whether serde_json gave up on a number too large for any number type.
fn is_out_of_range(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Syntax
        && e.to_string().starts_with("number out of range")
}

/// A key as an error quotes it: at most [`KEY_CHARS_QUOTED_MAX`] characters.
fn quoted(key: &str) -> String {
    match key.char_indices().nth(KEY_CHARS_QUOTED_MAX) {
        Some((cut, _)) => format!("{}…", &key[..cut]),
        None => key.to_owned(),
    }
}

/// Reads one JSON value into a [`Value`], refusing duplicate keys and noting the path of a
/// failure in the trail.
struct Strict<'t> {
    trail: &'t mut Trail,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity, so this is always a number.
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            match seq.next_element_seed(Strict {
                trail: &mut *self.trail,
            }) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    self.trail.path.push(Segment::Index(items.len()));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match map.next_value_seed(Strict {
                trail: &mut *self.trail,
            }) {
                Ok(value) => value,
                Err(e) => {
                    self.trail.path.push(Segment::Key(key));
                    return Err(e);
                }
            };
            match object.entry(key) {
                Entry::Vacant(place) => {
                    place.insert(value);
                }
                Entry::Occupied(held) => {
                    self.trail.duplicate = Some(held.key().clone());
                    return Err(de::Error::custom("duplicate key"));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(text: &str) -> String {
        parse_json(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let text = r#"{"a": [1, -2, 3.5, "x", true, null, {"b": {}}], "c": "é\n"}"#;
        assert_eq!(
            parse_json(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(parse_json("7").unwrap(), json!(7));
        assert_eq!(parse_json(" [] ").unwrap(), json!([]));
    }

    #[test]
    fn a_key_named_twice_is_refused_with_where_it_is() {
        assert_eq!(
            refused(r#"{"requirements": {"username": "a", "username": "b"}}"#),
            "duplicate field `username` in requirements"
        );
        assert_eq!(
            refused(r#"{"expires": 1, "expires": 2}"#),
            "duplicate field `expires` in message"
        );
        assert_eq!(
            refused(r#"{"resources": [{}, {"labels": [], "labels": []}]}"#),
            "duplicate field `labels` in resources[1]"
        );
        let long = "k".repeat(300);
        let message = refused(&format!(r#"{{"{long}": 1, "{long}": 2}}"#));
        assert!(message.len() < 120, "{message}");
    }

    #[test]
    fn a_number_out_of_range_names_its_field() {
        assert_eq!(
            refused(r#"{"requirements": {"username": "a", "expires": 1e400}}"#),
            "requirements.expires is a number out of range"
        );
        assert_eq!(
            refused(r#"{"resources": [{"gpu": [{"memory_gb": -1e999}]}]}"#),
            "resources[0].gpu[0].memory_gb is a number out of range"
        );
        assert_eq!(refused("1e400"), "message is a number out of range");
    }

    #[test]
    fn other_syntax_errors_keep_the_position_and_say_where() {
        let message = refused(r#"{"requirements": {"tags": ["a",]}}"#);
        assert!(
            message.starts_with("message is not valid JSON: trailing comma at line 1"),
            "{message}"
        );
        assert!(message.ends_with("(in requirements.tags[1])"), "{message}");
        assert!(refused("{").starts_with("message is not valid JSON: EOF"));
        assert!(refused(r#"{"a": 1} x"#).contains("trailing characters"));
    }
}
