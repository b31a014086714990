//! Durations and times as people write and read them: `2h`, `1h30m`, `90s` in; `14:05`,
//! `2026-12-07 14:05` in; "2026-12-07 14:05 (in 1h 59m)" out. Never raw epochs on screen.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

static LOCAL_OFFSET: OnceLock<UtcOffset> = OnceLock::new();

/// Reads the local time zone's offset. Call at start, before any thread is spawned: the
/// `time` crate reads it only while the process has one thread (else UTC is used).
pub fn init_local_offset() {
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let _ = LOCAL_OFFSET.set(offset);
}

fn local_offset() -> UtcOffset {
    *LOCAL_OFFSET.get().unwrap_or(&UtcOffset::UTC)
}

/// Now, in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a duration: a number with a unit, repeated (`2h`, `1h30m`, `90s`, `1d`); a bare
/// number is seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration (write it like 90s, 10m, 2h, 1h30m or 1d)");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Reads a point in time, local unless it says otherwise: `14:05` (the next one),
/// `2026-12-07 14:05`, `2026-12-07T14:05:00`, or RFC 3339 with an offset
/// (`2026-12-07T14:05:00Z`). Answers unix seconds.
pub fn parse_time(text: &str, now: u64) -> Result<u64, String> {
    use time::format_description::well_known::Rfc3339;
    let bad = || {
        format!(
            "{text:?} is not a time (write it like 14:05, \"2026-12-07 14:05\" or 2026-12-07T14:05:00Z)"
        )
    };
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return u64::try_from(t.unix_timestamp()).map_err(|_| bad());
    }
    let offset = local_offset();
    let local_now = OffsetDateTime::from_unix_timestamp(now as i64)
        .map_err(|_| bad())?
        .to_offset(offset);
    let clock = time::macros::format_description!("[hour]:[minute]");
    let clock_secs = time::macros::format_description!("[hour]:[minute]:[second]");
    let clock_time = time::Time::parse(text, &clock)
        .or_else(|_| time::Time::parse(text, &clock_secs))
        .ok();
    if let Some(t) = clock_time {
        let mut at = local_now.replace_time(t);
        if at.unix_timestamp() <= now as i64 {
            at += time::Duration::days(1);
        }
        return u64::try_from(at.unix_timestamp()).map_err(|_| bad());
    }
    let formats = [
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ];
    for format in formats {
        if let Ok(t) = PrimitiveDateTime::parse(text, &format) {
            return u64::try_from(t.assume_offset(offset).unix_timestamp()).map_err(|_| bad());
        }
    }
    Err(bad())
}

/// A length of time in words: `1h 59m`, `5m 3s`, `2d 4h`.
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s > 0 => format!("{m}m {s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A unix time as local time: `2026-12-07 14:05`.
pub fn format_local(unix: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .map(|t| t.to_offset(local_offset()))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "?".to_owned())
}

/// How far `unix` is from `now`: `in 1h 59m`, `5m ago`, `now`.
pub fn format_relative(unix: u64, now: u64) -> String {
    match unix.cmp(&now) {
        std::cmp::Ordering::Greater => format!("in {}", format_duration(unix - now)),
        std::cmp::Ordering::Less => format!("{} ago", format_duration(now - unix)),
        std::cmp::Ordering::Equal => "now".to_owned(),
    }
}

/// Local time and distance: `2026-12-07 14:05 (in 1h 59m)`.
pub fn format_when(unix: u64, now: u64) -> String {
    format!("{} ({})", format_local(unix), format_relative(unix, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        for bad in ["", "h", "2x", "1h30", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_print_in_words() {
        assert_eq!(format_duration(7140), "1h 59m");
        assert_eq!(format_duration(303), "5m 3s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(600), "10m");
        assert_eq!(format_duration(2 * 86_400 + 4 * 3600), "2d 4h");
        assert_eq!(format_relative(100, 40), "in 1m");
        assert_eq!(format_relative(40, 100), "1m ago");
    }

    #[test]
    fn times_read_clock_dates_and_rfc3339() {
        // UTC when no offset was read.
        let now = 1_700_000_000; // 2023-11-14 22:13:20 UTC
        assert_eq!(parse_time("2023-11-14T23:00:00Z", now), Ok(1_700_002_800));
        assert_eq!(parse_time("2023-11-14 23:00", now), Ok(1_700_002_800));
        assert_eq!(parse_time("23:00", now), Ok(1_700_002_800));
        assert_eq!(parse_time("22:00", now), Ok(1_700_002_800 + 23 * 3600));
        assert!(parse_time("tomorrow", now).is_err());
    }
}
