//! The bytes on disk: CRC-32, record frames, and the headers of journal segments and snapshots.
//!
//! A frame is `[len: u32 LE][crc: u32 LE][payload: len bytes]`, where `crc` is the CRC-32
//! (IEEE, as zlib and gzip compute it) of the four length bytes followed by the payload. A
//! journal segment is a 16-byte header (`ALCJRNL1`, then the sequence number of its first
//! record as u64 LE) followed by frames, one per record; a snapshot is a 16-byte header
//! (`ALCSNAP1`, then the sequence number of the last record it covers) followed by one frame.

use std::ops::Range;

/// How a journal segment starts.
pub const SEGMENT_MAGIC: &[u8; 8] = b"ALCJRNL1";
/// How a snapshot file starts.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"ALCSNAP1";
/// Bytes of a segment or snapshot header: the magic and a sequence number.
pub const HEADER_BYTES: usize = 16;
/// Bytes of a frame header: the length and the checksum.
const FRAME_HEADER_BYTES: usize = 8;
/// The largest record payload accepted when reading. A record holds one input, and the
/// largest input (a registration of 10,000 resources in a 1 MiB message) is far below this;
/// a larger length can only be damage.
pub const RECORD_BYTES_MAX: usize = 64 << 20;

/// The CRC-32 of the concatenation of `parts` (crc32fast: the same IEEE polynomial, with the
/// processor's CRC or carry-less multiply instructions where it has them).
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// Appends one frame holding `payload` to `out`; `None` when the payload is over 4 GiB.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) -> Option<()> {
    let len = u32::try_from(payload.len()).ok()?.to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32(&[&len, payload]).to_le_bytes());
    out.extend_from_slice(payload);
    Some(())
}

/// A file header: `magic` and a sequence number.
pub fn header(magic: &[u8; 8], seq: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(magic);
    h[8..].copy_from_slice(&seq.to_le_bytes());
    h
}

/// The sequence number in a header that starts with `magic`, or why it is not one.
pub fn read_header(bytes: &[u8], magic: &[u8; 8]) -> Result<u64, String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!(
            "the file is {} bytes long, shorter than its {HEADER_BYTES}-byte header",
            bytes.len()
        ));
    }
    if &bytes[..8] != magic {
        return Err(format!(
            "the file does not start with {:?}",
            String::from_utf8_lossy(magic)
        ));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[8..HEADER_BYTES]);
    Ok(u64::from_le_bytes(seq))
}

/// The payload range and end of the frame at `at`, or why there is no whole, intact frame.
pub fn frame_at(bytes: &[u8], at: usize, max: usize) -> Result<(Range<usize>, usize), String> {
    let rest = bytes.len() - at;
    if rest < FRAME_HEADER_BYTES {
        return Err(format!(
            "only {rest} of the {FRAME_HEADER_BYTES} bytes of a record header"
        ));
    }
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[at + i..at + i + 4]);
        w
    };
    let (len_bytes, crc_bytes) = (word(0), word(4));
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > max {
        return Err(format!(
            "record length {len} is over the limit of {max} bytes"
        ));
    }
    let start = at + FRAME_HEADER_BYTES;
    if len > bytes.len() - start {
        return Err(format!(
            "record length {len} runs past the end of the file ({} bytes left)",
            bytes.len() - start
        ));
    }
    let payload = start..start + len;
    if crc32(&[&len_bytes, &bytes[payload.clone()]]) != u32::from_le_bytes(crc_bytes) {
        return Err("checksum mismatch".to_owned());
    }
    Ok((payload.clone(), payload.end))
}

/// What reading a segment's frames found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Each record: where its frame starts, and its payload.
    pub records: Vec<(usize, Range<usize>)>,
    /// A damaged last record: where it starts and why it is unreadable.
    pub torn: Option<(usize, String)>,
}

/// A frame that cannot be read, with more data after it: the journal is damaged there.
#[derive(Debug, PartialEq, Eq)]
pub struct Damage {
    /// Where the unreadable frame starts.
    pub offset: usize,
    /// What is wrong with it.
    pub why: String,
}

/// Reads every frame after the header. An unreadable frame is a torn last record when
/// `torn_tail_allowed` and no intact record follows it anywhere; otherwise it is damage.
pub fn scan(bytes: &[u8], torn_tail_allowed: bool) -> Result<Scan, Damage> {
    let mut scan = Scan::default();
    let mut at = HEADER_BYTES.min(bytes.len());
    while at < bytes.len() {
        match frame_at(bytes, at, RECORD_BYTES_MAX) {
            Ok((payload, end)) => {
                scan.records.push((at, payload));
                at = end;
            }
            Err(why) => {
                if !torn_tail_allowed {
                    return Err(Damage { offset: at, why });
                }
                if let Some(next) = next_record(bytes, at + 1) {
                    return Err(Damage {
                        offset: at,
                        why: format!("{why}, and an intact record follows at byte {next}"),
                    });
                }
                scan.torn = Some((at, why));
                break;
            }
        }
    }
    Ok(scan)
}

/// The first offset at or after `from` where an intact frame holding a JSON object starts.
/// Only called on damage. A checksum is computed only where a `{` sits right after a frame
/// header, so a long damaged stretch costs little.
fn next_record(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| {
        bytes.get(at + FRAME_HEADER_BYTES) == Some(&b'{')
            && frame_at(bytes, at, RECORD_BYTES_MAX).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&str]) -> Vec<u8> {
        let mut bytes = header(SEGMENT_MAGIC, 1).to_vec();
        for p in payloads {
            push_frame(&mut bytes, p.as_bytes()).unwrap();
        }
        bytes
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[]), 0);
    }

    #[test]
    fn frames_read_back_and_headers_name_their_sequence() {
        let bytes = segment(&["{\"a\":1}", "{}"]);
        assert_eq!(read_header(&bytes, SEGMENT_MAGIC), Ok(1));
        assert!(read_header(&bytes, SNAPSHOT_MAGIC).is_err());
        assert!(read_header(&bytes[..10], SEGMENT_MAGIC).is_err());
        let scan = scan(&bytes, false).unwrap();
        let payloads: Vec<&[u8]> = scan
            .records
            .iter()
            .map(|(_, p)| &bytes[p.clone()])
            .collect();
        assert_eq!(payloads, [&b"{\"a\":1}"[..], &b"{}"[..]]);
        assert_eq!(scan.records[0].0, HEADER_BYTES);
        assert!(scan.torn.is_none());
    }

    #[test]
    fn a_cut_or_garbled_last_record_is_torn_only_at_the_tail() {
        let whole = segment(&["{\"a\":1}", "{\"b\":2}"]);
        let second = scan(&whole, false).unwrap().records[1].0;
        for cut in second + 1..whole.len() {
            let s = scan(&whole[..cut], true).unwrap();
            assert_eq!(s.records.len(), 1, "cut at {cut}");
            assert_eq!(s.torn.as_ref().map(|t| t.0), Some(second));
            assert_eq!(scan(&whole[..cut], false).unwrap_err().offset, second);
        }
        let mut garbled = whole.clone();
        *garbled.last_mut().unwrap() ^= 0x40;
        let s = scan(&garbled, true).unwrap();
        assert_eq!(s.torn.unwrap(), (second, "checksum mismatch".to_owned()));
    }

    #[test]
    fn damage_followed_by_an_intact_record_is_never_a_torn_tail() {
        let whole = segment(&["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        let first = HEADER_BYTES;
        for byte in [first, first + 4, first + 9] {
            let mut bad = whole.clone();
            bad[byte] ^= 0x01;
            let damage = scan(&bad, true).unwrap_err();
            assert_eq!(damage.offset, first, "flipped byte {byte}");
            assert!(damage.why.contains("intact record follows"), "{damage:?}");
        }
    }

    #[test]
    fn an_impossible_length_is_reported() {
        let mut bytes = header(SEGMENT_MAGIC, 1).to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 12]);
        let damage = scan(&bytes, false).unwrap_err();
        assert!(damage.why.contains("over the limit"), "{damage:?}");
    }
}
