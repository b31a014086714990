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

impl Explanation {
    /// Reads an explanation at `path` leniently: fields a newer server adds are ignored, and
    /// so are findings whose `reason` this reader does not know.
    pub fn from_value(value: &Value, path: &str) -> Result<Self> {
        let f = Fields::lenient(value, path, &UNLIMITED)?;
        let mut findings = Vec::new();
        for (i, item) in f
            .opt_list("explain", usize::MAX)?
            .into_iter()
            .flatten()
            .enumerate()
        {
            let finding =
                Fields::lenient(item, &format!("{}[{i}]", f.path_of("explain")), &UNLIMITED)?;
            let Some(reason) = Reason::parse(finding.str("reason")?) else {
                continue;
            };
            findings.push(Finding {
                count: finding.u64("count")?,
                message: finding.str("message")?.to_owned(),
                reason,
            });
        }
        Ok(Explanation {
            findings,
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
            "explain":[{"reason":"quota","count":2,"message":"over quota","limit":"gpus"},
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
