//! The envelope around every HTTP answer and every message the server sends on a socket:
//! `{"status": 200, "data": ...}` or `{"status": 4xx|5xx, "error": {"code", "message"}}`.

use super::explain::read_findings;
use super::fields::Fields;
use super::{WireError, UNLIMITED};
use crate::error::ErrorCode;
use crate::explain::Finding;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// One message of the server with its envelope: a success carrying `T`, or a refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope<T> {
    /// `{"status": 200, "data": T}`.
    Ok(T),
    /// `{"status": 4xx|5xx, "error": {"code", "message"}}`.
    Refused(Refusal),
}

/// The failure half of an envelope: status, code and the sentence that names the bad field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status, repeated in the envelope.
    pub status: u16,
    /// The contract's code, such as `invalid_request` (`method_not_allowed` is outside
    /// [`ErrorCode`]'s table, so this is text).
    pub code: String,
    /// One clear sentence.
    pub message: String,
    /// Why not (API.md, "Why not"): on a `408` for a request that no registered resource
    /// could ever satisfy, the findings of its explanation; the message names the first.
    pub explain: Option<Vec<Finding>>,
    /// `not_leader` (API.md, "Replicas"): the URL of the leader that a standby names, when it
    /// names one.
    pub leader: Option<Box<str>>,
}

impl Refusal {
    /// The refusal for one of the contract's error codes.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            status: code.http_status(),
            code: code.as_str().to_owned(),
            message: message.into(),
            explain: None,
            leader: None,
        }
    }

    /// The contract's code as [`ErrorCode`], when it is one of the table's.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == self.code)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<&'a [Finding]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<&'a str>,
    message: &'a str,
}

/// Keys in sorted order (`data` or `error`, then `status`): the bytes clients have always
/// received, from when every envelope went through `serde_json`'s sorted map.
impl<T: Serialize> Serialize for Envelope<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        match self {
            Envelope::Ok(data) => {
                map.serialize_entry("data", data)?;
                map.serialize_entry("status", &200u16)?;
            }
            Envelope::Refused(r) => {
                let body = ErrorBody {
                    code: &r.code,
                    explain: r.explain.as_deref(),
                    leader: r.leader.as_deref(),
                    message: &r.message,
                };
                map.serialize_entry("error", &body)?;
                map.serialize_entry("status", &r.status)?;
            }
        }
        map.end()
    }
}

/// What every envelope has; fields beyond these are a newer server's and ignored.
#[derive(Deserialize)]
struct RawEnvelope {
    status: u16,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct RawError {
    code: String,
    message: String,
    /// A standby's `leader` (a string, or `null` when it knows none).
    #[serde(default)]
    leader: Option<String>,
}

impl<T: Serialize> Envelope<T> {
    /// The envelope as JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("an envelope of contract data always serializes")
    }

    /// Writes the envelope as JSON into `out` (for large answers, without a copy).
    pub fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }

    /// The envelope as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("an envelope of contract data always serializes")
    }
}

impl Envelope<Value> {
    /// Reads any envelope from a message's text; a success without `data` carries `null`.
    pub fn parse(text: &str) -> Result<Self, WireError> {
        let raw: RawEnvelope =
            serde_json::from_str(text).map_err(|source| WireError::NotEnvelope {
                source,
                text: super::quote(text),
            })?;
        Ok(match raw.error {
            Some(error) => {
                let not_envelope = |source| WireError::NotEnvelope {
                    source,
                    text: super::quote(text),
                };
                let e = RawError::deserialize(&error).map_err(not_envelope)?;
                let fields = Fields::lenient(&error, "error", &UNLIMITED);
                let explain = fields.and_then(|f| read_findings(&f)).map_err(|source| {
                    WireError::Malformed {
                        kind: e.code.clone(),
                        allocation_id: None,
                        source,
                    }
                })?;
                Envelope::Refused(Refusal {
                    status: raw.status,
                    code: e.code,
                    message: e.message,
                    explain,
                    leader: e.leader.map(String::into_boxed_str),
                })
            }
            None => Envelope::Ok(raw.data.unwrap_or(Value::Null)),
        })
    }
}

impl<T> Envelope<T> {
    /// Reads the data of a success with `read`; a refusal stays as it is.
    pub fn try_map<U, E>(self, read: impl FnOnce(T) -> Result<U, E>) -> Result<Envelope<U>, E> {
        Ok(match self {
            Envelope::Ok(data) => Envelope::Ok(read(data)?),
            Envelope::Refused(r) => Envelope::Refused(r),
        })
    }

    /// The data of a success, or the refusal.
    pub fn into_result(self) -> Result<T, Refusal> {
        match self {
            Envelope::Ok(data) => Ok(data),
            Envelope::Refused(r) => Err(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{AllocationInfo, AllocationState, InventoryEntry, ResourceState};
    use crate::Timestamp;
    use serde_json::json;
    use uuid::Uuid;

    #[test]
    fn successes_and_refusals_have_fixed_bytes_and_read_back() {
        let ok = Envelope::Ok("deleted allocation");
        assert_eq!(
            ok.to_text(),
            r#"{"data":"deleted allocation","status":200}"#
        );
        assert_eq!(
            Envelope::parse(&ok.to_text()).unwrap(),
            Envelope::Ok(json!("deleted allocation"))
        );
        let refused: Envelope<()> =
            Envelope::Refused(Refusal::new(ErrorCode::NotFound, "allocation 1 not found"));
        let text = refused.to_text();
        assert_eq!(
            text,
            r#"{"error":{"code":"not_found","message":"allocation 1 not found"},"status":404}"#
        );
        let back = Envelope::parse(&text).unwrap();
        assert_eq!(back.to_text(), text);
        let Envelope::Refused(r) = back else {
            panic!("not a refusal")
        };
        assert_eq!(r.error_code(), Some(ErrorCode::NotFound));
        assert_eq!(refused.to_value().to_string(), text);
    }

    #[test]
    fn a_standby_names_its_leader() {
        let text = r#"{"error":{"code":"not_leader","leader":"http://a.lab:8080","message":"standby","role":"standby"},"status":503}"#;
        let Envelope::Refused(r) = Envelope::parse(text).unwrap() else {
            panic!("not a refusal");
        };
        assert_eq!(r.leader.as_deref(), Some("http://a.lab:8080"));
        assert_eq!(r.error_code(), Some(ErrorCode::NotLeader));
        let unknown = text.replace(r#""http://a.lab:8080""#, "null");
        let Envelope::Refused(r) = Envelope::parse(&unknown).unwrap() else {
            panic!("not a refusal");
        };
        assert_eq!(r.leader, None);
    }

    #[test]
    fn every_error_code_round_trips() {
        for code in ErrorCode::ALL {
            let sent: Envelope<Value> = Envelope::Refused(Refusal::new(code, "why"));
            assert_eq!(Envelope::parse(&sent.to_text()).unwrap(), sent);
        }
        let other = Refusal {
            status: 405,
            code: "method_not_allowed".into(),
            message: "no".into(),
            explain: None,
            leader: None,
        };
        assert_eq!(other.error_code(), None);
    }

    #[test]
    fn http_bodies_read_back_as_what_was_written() {
        let entry = InventoryEntry {
            inventory_id: Uuid::from_u128(1),
            labels: vec!["nvidia".into()],
            cpu_count: 12,
            memory_gb: 32,
            gpu: vec![],
            kind: "VM".into(),
            agent_id: Uuid::from_u128(2),
            state: ResourceState::Maintenance,
            reason: Some("fan broken".into()),
        };
        let info = AllocationInfo {
            allocation_id: Uuid::from_u128(3),
            inventory_id: Some(Uuid::from_u128(1)),
            inventory_ids: vec![],
            username: "ci".into(),
            state: AllocationState::Ready,
            created: 10,
            expires: 20,
            connection: None,
            position: None,
            created_at: Timestamp::default(),
        };
        let mut bytes = Vec::new();
        Envelope::Ok(&[&entry]).write(&mut bytes).unwrap();
        let data = Envelope::parse(std::str::from_utf8(&bytes).unwrap())
            .unwrap()
            .into_result()
            .unwrap();
        assert_eq!(
            serde_json::from_value::<Vec<InventoryEntry>>(data).unwrap(),
            [entry]
        );
        let text = Envelope::Ok(&info).to_text();
        let data = Envelope::parse(&text).unwrap().into_result().unwrap();
        assert_eq!(
            serde_json::from_value::<AllocationInfo>(data).unwrap(),
            info
        );
    }

    #[test]
    fn what_is_not_an_envelope_is_refused() {
        for text in ["not json", r#"{"data": {}}"#, r#"{"status": "200"}"#] {
            assert!(
                matches!(Envelope::parse(text), Err(WireError::NotEnvelope { .. })),
                "{text}"
            );
        }
        assert_eq!(
            Envelope::parse(r#"{"status": 200}"#).unwrap(),
            Envelope::Ok(Value::Null)
        );
    }
}
