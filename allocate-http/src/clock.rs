//! The shell's sources of time and ids: the system clock and random v4 uuids. The engine
//! reads neither; it is given their values.

use allocate_core::{IdSource, Timestamp};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// The current time as the engine counts it (unix milliseconds).
pub fn now() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Timestamp::from_millis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

/// How long from `now` until `deadline` (zero when it has passed).
pub fn until(now: Timestamp, deadline: Timestamp) -> Duration {
    Duration::from_millis(deadline.as_millis().saturating_sub(now.as_millis()))
}

/// Allocation ids drawn at random (uuid v4).
#[derive(Debug, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_id(&mut self) -> Uuid {
        Uuid::new_v4()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_unix_millis_and_ids_are_random_v4() {
        let t = now();
        assert!(t > Timestamp::from_secs(1_600_000_000));
        assert_eq!(until(t, t.add_millis(250)), Duration::from_millis(250));
        assert_eq!(until(t.add_millis(5), t), Duration::ZERO);
        let mut ids = RandomIds;
        let (a, b) = (ids.next_id(), ids.next_id());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
    }
}
