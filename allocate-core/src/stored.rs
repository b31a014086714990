//! The stored forms of records and snapshots (a journal, a snapshot file, a database row),
//! with the version of their format: what this build writes, what it reads, and the clear
//! error for what a newer build wrote.
//!
//! Every stored record and snapshot carries `"schema": N`. Those written before versioning
//! carry none and read as version 1, which they are. A build reads every version up to its
//! own [`SCHEMA`], upgrading older ones as it reads; a format change bumps [`SCHEMA`] and adds
//! its upgrade here, and the committed fixtures of older versions keep being read by the tests.
//!
//! Versions: 1, the first (also what was stored before versions were written); 2 adds to
//! snapshots the usage of ended allocations (`usage`), when each allocation became ready
//! (`ready_at`) and the other resources of an allocation of several (`others`), and to
//! requests `requirements.count`. All are optional, so version 1 reads as version 2 with no
//! usage kept (a ready allocation's usage then counts from its creation) and one resource
//! per request.

use crate::record::{Input, Record};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The format version this build writes, and the newest it reads.
pub const SCHEMA: u32 = 2;

/// The version of what was stored before versions were written.
const UNVERSIONED: u32 = 1;

/// [`UNVERSIONED`], as serde's default for a missing `schema`.
pub(crate) fn unversioned() -> u32 {
    UNVERSIONED
}

/// Why a stored record or snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// A newer build wrote it, in a format this one does not know.
    #[error("written by a newer allocate, in format version {found} (this build reads up to {SCHEMA}): run that version or a later one")]
    Newer {
        /// The version it says it is in.
        found: u32,
    },
    /// It is not what it should be at the version it says.
    #[error("not a {what} of format version {version}: {source}")]
    Malformed {
        /// `record` or `snapshot`.
        what: &'static str,
        /// The version it says (or 1 when unversioned).
        version: u32,
        /// What the parser found wrong.
        source: serde_json::Error,
    },
}

/// Only the version, read first when the whole does not parse.
#[derive(Deserialize)]
struct VersionOnly {
    #[serde(default = "unversioned")]
    schema: u32,
}

/// Parses `bytes` as a `T`; when that fails, says whether a newer build wrote it.
pub(crate) fn read<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, StoredError> {
    serde_json::from_slice(bytes).map_err(|source| {
        let version =
            serde_json::from_slice::<VersionOnly>(bytes).map_or(UNVERSIONED, |v| v.schema);
        if version > SCHEMA {
            StoredError::Newer { found: version }
        } else {
            StoredError::Malformed {
                what,
                version,
                source,
            }
        }
    })
}

/// A record as stored: the version, then the record's own fields.
#[derive(Serialize)]
struct RecordOut<'a> {
    schema: u32,
    now: Timestamp,
    input: &'a Input,
}

/// A record as read: any version up to [`SCHEMA`].
#[derive(Deserialize)]
struct RecordIn {
    #[serde(default = "unversioned")]
    schema: u32,
    now: Timestamp,
    input: Input,
}

impl Record {
    /// The stored form: JSON with the format version.
    pub fn to_stored(&self) -> serde_json::Result<String> {
        serde_json::to_string(&RecordOut {
            schema: SCHEMA,
            now: self.now,
            input: &self.input,
        })
    }

    /// Reads a stored record of any version up to [`SCHEMA`].
    pub fn from_stored(bytes: &[u8]) -> Result<Record, StoredError> {
        let stored: RecordIn = read(bytes, "record")?;
        if stored.schema > SCHEMA {
            return Err(StoredError::Newer {
                found: stored.schema,
            });
        }
        Ok(Record {
            now: stored.now,
            input: stored.input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Record {
        Record {
            now: Timestamp::from_secs(1_700_000_000),
            input: Input::Tick,
        }
    }

    #[test]
    fn records_carry_their_version_and_read_back() {
        let stored = record().to_stored().unwrap();
        let value: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(value["schema"], SCHEMA);
        assert_eq!(Record::from_stored(stored.as_bytes()).unwrap(), record());
        // Written before versions were: version 1.
        let unversioned =
            serde_json::to_vec(&json!({"now": 1_700_000_000_000_u64, "input": {"input": "tick"}}))
                .unwrap();
        assert_eq!(Record::from_stored(&unversioned).unwrap(), record());
    }

    #[test]
    fn a_newer_version_says_so_whether_or_not_it_parses() {
        let newer =
            json!({"schema": SCHEMA + 1, "now": 1_700_000_000_000_u64, "input": {"input": "tick"}});
        let err = Record::from_stored(&serde_json::to_vec(&newer).unwrap()).unwrap_err();
        assert!(matches!(err, StoredError::Newer { found } if found == SCHEMA + 1));
        assert!(err.to_string().contains("newer allocate"), "{err}");
        let unknown = json!({"schema": SCHEMA + 1, "at": 5, "what": {"input": "teleport"}});
        let err = Record::from_stored(&serde_json::to_vec(&unknown).unwrap()).unwrap_err();
        assert!(matches!(err, StoredError::Newer { .. }), "{err}");
        let broken = Record::from_stored(br#"{"now": "soon", "input": {"input": "tick"}}"#);
        let err = broken.unwrap_err();
        assert!(
            matches!(
                err,
                StoredError::Malformed {
                    what: "record",
                    version: 1,
                    ..
                }
            ),
            "{err}"
        );
    }
}
