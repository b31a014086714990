//! "Why not" (API.md): the body of `POST /match`, and the explanation that answers it (also
//! the answer to `GET /allocate/{id}/explain`, and the `explain` of a first `queued` message
//! and of a `408`).

use super::client::{parse_requirements_body, Username};
use super::fields::Fields;
use super::{Envelope, WireError, UNLIMITED};
use crate::config::Limits;
use crate::error::Result;
use crate::explain::{Explanation, Finding, Reason};
use crate::model::Requirements;
use serde_json::{json, Value};

/// Reads the body of `POST /match`: `{"requirements": {...}}`, the object of `/allocate/`
/// with `username` optional (empty when omitted) and the same refusals otherwise.
pub fn parse_match_request(text: &str, limits: &Limits) -> Result<Requirements> {
    parse_requirements_body(text, limits, Username::Optional)
}

/// Reads a `requirements` object for a dry run: as on `/allocate/`, with `username` optional
/// (empty when omitted).
pub fn match_requirements(value: &Value, path: &str, limits: &Limits) -> Result<Requirements> {
    Requirements::read(value, path, limits, Username::Optional)
}

/// Writes the body of `POST /match` (an empty `username` is left out).
pub fn match_request_text(requirements: &Requirements) -> String {
    let mut value = json!({ "requirements": requirements });
    if requirements.username.is_empty() {
        if let Some(map) = value["requirements"].as_object_mut() {
            map.remove("username");
        }
    }
    value.to_string()
}

/// Reads the answer to `POST /match` or `GET /allocate/{id}/explain`.
pub fn parse_explanation(text: &str) -> std::result::Result<Envelope<Explanation>, WireError> {
    Envelope::parse(text)?.try_map(|data| {
        Explanation::from_value(&data, "data").map_err(|source| WireError::Malformed {
            kind: "explanation".to_owned(),
            allocation_id: None,
            source,
        })
    })
}

/// Reads the `explain` list of findings of an object (an explanation, a `queued` message, a
/// refusal's `error`), if it has one. Findings whose `reason` this reader does not know (a
/// newer server's) are skipped.
pub(super) fn read_findings(f: &Fields<'_>) -> Result<Option<Vec<Finding>>> {
    let Some(items) = f.opt_list("explain", usize::MAX)? else {
        return Ok(None);
    };
    let mut findings = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path_of("explain"));
        let finding = Fields::lenient(item, &path, &UNLIMITED)?;
        let Some(reason) = Reason::parse(finding.str("reason")?) else {
            continue;
        };
        findings.push(Finding {
            count: finding.u64("count")?,
            message: finding.str("message")?.to_owned(),
            reason,
        });
    }
    Ok(Some(findings))
}

impl Explanation {
    /// Reads an explanation at `path` leniently: fields a newer server adds are ignored, and
    /// so are findings whose `reason` this reader does not know.
    pub fn from_value(value: &Value, path: &str) -> Result<Self> {
        let f = Fields::lenient(value, path, &UNLIMITED)?;
        Ok(Explanation {
            findings: read_findings(&f)?.unwrap_or_default(),
            free: f.u64("free")?,
            matching_resources: f.u64("matching_resources")?,
        })
    }

    /// The explanation as a JSON value (keys sorted, as the server writes everything).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("an explanation always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuRequirement;

    fn example() -> Explanation {
        Explanation {
            findings: vec![
                Finding {
                    count: 40,
                    message: "0 of 40 registered resources have a GPU whose label contains \"RTX 2090\"; GPU labels seen: GeForce RTX 2080, Tesla T4".into(),
                    reason: Reason::GpuLabel,
                },
                Finding {
                    count: 1,
                    message: "1 of 3 matching resources are offline".into(),
                    reason: Reason::Offline,
                },
            ],
            free: 1,
            matching_resources: 3,
        }
    }

    #[test]
    fn explanations_have_fixed_bytes_and_read_back() {
        super::super::assert_fixed_bytes(
            example(),
            r#"{"data":{"explain":[{"count":40,"message":"0 of 40 registered resources have a GPU whose label contains \"RTX 2090\"; GPU labels seen: GeForce RTX 2080, Tesla T4","reason":"gpu_label"},{"count":1,"message":"1 of 3 matching resources are offline","reason":"offline"}],"free":1,"matching_resources":3},"status":200}"#,
            parse_explanation,
        );
        assert_eq!(
            Explanation::from_value(&example().to_value(), "data").unwrap(),
            example()
        );
    }

    #[test]
    fn a_newer_servers_reasons_and_fields_are_skipped() {
        let text = r#"{"status":200,"data":{"matching_resources":2,"free":0,"later":true,
            "explain":[{"reason":"power","count":2,"message":"power capped","limit":"watts"},
                       {"reason":"allocated","count":2,"message":"busy"}]}}"#;
        let e = parse_explanation(text).unwrap().into_result().unwrap();
        assert_eq!(e.findings.len(), 1);
        assert_eq!(e.findings[0].reason, Reason::Allocated);
        let bad = r#"{"status":200,"data":{"matching_resources":"2","free":0}}"#;
        let err = parse_explanation(bad).unwrap_err().to_string();
        assert!(err.contains("data.matching_resources"), "{err}");
    }

    #[test]
    fn match_requests_need_no_username_and_are_refused_like_allocate_requests() {
        let limits = Limits::default();
        let r = parse_match_request(
            r#"{"requirements": {"gpu": {"label": "RTX 2090"}}}"#,
            &limits,
        )
        .unwrap();
        assert_eq!(r.username, "");
        assert_eq!(
            r.gpu,
            Some(GpuRequirement {
                label: Some("RTX 2090".into()),
                min_memory_gb: 0,
                count: 1
            })
        );
        assert_eq!(
            parse_match_request(&match_request_text(&r), &limits).unwrap(),
            r
        );
        assert!(!match_request_text(&r).contains("username"));
        let mut named = r.clone();
        named.username = "alice".into();
        assert_eq!(
            parse_match_request(&match_request_text(&named), &limits).unwrap(),
            named
        );
        for (body, says) in [
            (r#"{"requirements": {"tag": ["x"]}}"#, "unknown field `tag`"),
            (
                r#"{"requirements": {"min_cpu_count": 1.5}}"#,
                "requirements.min_cpu_count",
            ),
            (
                r#"{"requirements": {"gpu": {"count": 0}}}"#,
                "requirements.gpu.count",
            ),
            (r#"{}"#, "requirements"),
        ] {
            let err = parse_match_request(body, &limits).unwrap_err().to_string();
            assert!(err.contains(says), "{body}: {err}");
        }
    }
}

#[cfg(test)]
mod messages {
    use super::*;
    use crate::output::Output;
    use crate::wire::ClientEvent;
    use uuid::Uuid;

    fn why() -> Explanation {
        Explanation {
            findings: vec![Finding {
                count: 2,
                message: "0 of 2 registered resources carry every tag of \"gpu\"; labels seen: cpu"
                    .into(),
                reason: Reason::Tags,
            }],
            free: 0,
            matching_resources: 0,
        }
    }

    #[test]
    fn a_first_queued_message_carries_the_findings_and_reads_back() {
        let id = Uuid::from_u128(1);
        let queued = Output::Queued {
            allocation_id: id,
            position: 1,
            matching_resources: 0,
            eta: None,
            explain: Some(why()),
            quota: None,
        };
        let text = queued.to_text();
        assert_eq!(
            text,
            r#"{"data":{"allocation_id":"00000000-0000-0000-0000-000000000001","eta":null,"explain":[{"count":2,"message":"0 of 2 registered resources carry every tag of \"gpu\"; labels seen: cpu","reason":"tags"}],"matching_resources":0,"position":1,"status":"queued"},"status":200}"#
        );
        assert_eq!(queued.to_wire().to_string(), text);
        let back = ClientEvent::parse(&text).unwrap().into_result().unwrap();
        assert_eq!(
            back,
            ClientEvent::Queued {
                allocation_id: id,
                position: 1,
                matching_resources: 0,
                eta: None,
                explain: Some(why().findings),
                quota: None,
            }
        );
        assert_eq!(Envelope::Ok(back).to_text(), text);
    }

    #[test]
    fn a_hopeless_408_names_the_first_finding_and_reads_back() {
        let id = Uuid::from_u128(1);
        let text = Output::TimedOut {
            allocation_id: id,
            explain: Some(why()),
        }
        .to_text();
        let refusal = ClientEvent::parse(&text)
            .unwrap()
            .into_result()
            .unwrap_err();
        assert_eq!(refusal.status, 408);
        assert_eq!(
            refusal.message,
            "allocation 00000000-0000-0000-0000-000000000001: no registered resource could ever satisfy it: 0 of 2 registered resources carry every tag of \"gpu\"; labels seen: cpu"
        );
        assert_eq!(refusal.explain, Some(why().findings));
        assert_eq!(Envelope::<()>::Refused(refusal).to_text(), text);
        let plain = Output::TimedOut {
            allocation_id: id,
            explain: None,
        }
        .to_text();
        assert!(!plain.contains("explain"), "{plain}");
        let bad = r#"{"status":408,"error":{"code":"allocation_timeout","message":"m","explain":[{"reason":"tags"}]}}"#;
        let err = ClientEvent::parse(bad).unwrap_err().to_string();
        assert!(err.contains("error.explain[0].count"), "{err}");
    }
}
