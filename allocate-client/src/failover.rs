//! Several servers on one store (API.md, "Replicas"): which one a [`crate::Client`] tries
//! first, where it goes when that one is down or a standby, and how long it keeps trying.
//! No IO here: the caller sends, reports the outcome, and sleeps the delay it is given.

use reqwest::Url;
use std::time::Duration;

/// Most leaders learned from `not_leader` answers that are kept besides the configured
/// servers; beyond it the oldest learned one is forgotten.
const LEARNED_MAX: usize = 8;

/// How a client moves between servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverOptions {
    /// How long one call (or one websocket opening) keeps trying other servers before it
    /// gives up with the last error.
    pub deadline: Duration,
    /// The pause after every server was tried once in vain; it doubles each round.
    pub backoff_min: Duration,
    /// The longest pause between rounds.
    pub backoff_max: Duration,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            deadline: Duration::from_secs(15),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// The servers a client knows: the configured ones in order, then leaders that standbys
/// named; and the one believed to lead, tried first.
#[derive(Clone, Debug)]
pub(crate) struct Servers {
    urls: Vec<Url>,
    configured: usize,
    current: usize,
}

impl Servers {
    /// The configured servers (at least one); the first is tried first.
    pub(crate) fn new(urls: Vec<Url>) -> Self {
        assert!(!urls.is_empty(), "a client has at least one server");
        Servers {
            configured: urls.len(),
            urls,
            current: 0,
        }
    }

    /// The server tried first.
    pub(crate) fn current(&self) -> &Url {
        &self.urls[self.current]
    }

    /// Every server known, configured ones first.
    pub(crate) fn all(&self) -> &[Url] {
        &self.urls
    }

    /// `failed` did not serve: the next call starts at `leader` (a standby named it; added
    /// if unknown), else at the server after `failed`. Another call may have moved on
    /// already; then nothing changes.
    pub(crate) fn failed(&mut self, failed: &Url, leader: Option<Url>) {
        if self.current() != failed {
            return;
        }
        match leader.filter(|l| l != failed) {
            Some(leader) => self.current = self.index_of(leader),
            None => self.current = (self.current + 1) % self.urls.len(),
        }
    }

    /// The index of `url`, learning it if it is new.
    fn index_of(&mut self, url: Url) -> usize {
        if let Some(i) = self.urls.iter().position(|u| *u == url) {
            return i;
        }
        if self.urls.len() >= self.configured + LEARNED_MAX {
            self.urls.remove(self.configured);
        }
        self.urls.push(url);
        self.urls.len() - 1
    }
}

/// One call's walk over the servers: how many tries, and the pause before the next one.
#[derive(Debug)]
pub(crate) struct Walk {
    options: FailoverOptions,
    tries: usize,
}

impl Walk {
    /// A call about to make its first try.
    pub(crate) fn new(options: &FailoverOptions) -> Self {
        Walk {
            options: options.clone(),
            tries: 0,
        }
    }

    /// A try failed with `servers` known: the pause before the next one, or `None` when the
    /// call should give up (one server only, or the deadline would pass). Every server is
    /// tried once without a pause, then each round waits twice as long as the one before,
    /// up to [`FailoverOptions::backoff_max`]. `elapsed` is the time since the first try.
    pub(crate) fn next_delay(&mut self, servers: usize, elapsed: Duration) -> Option<Duration> {
        if servers < 2 {
            return None;
        }
        self.tries += 1;
        let delay = if self.tries % servers == 0 {
            let round = u32::try_from(self.tries / servers - 1).unwrap_or(u32::MAX);
            let factor = 2u32.saturating_pow(round.min(16));
            (self.options.backoff_min * factor).min(self.options.backoff_max)
        } else {
            Duration::ZERO
        };
        (elapsed + delay < self.options.deadline).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_failed_server_passes_the_turn_to_the_next_or_to_the_named_leader() {
        let (a, b) = (url("http://a/"), url("http://b/"));
        let mut servers = Servers::new(vec![a.clone(), b.clone()]);
        servers.failed(&a, None);
        assert_eq!(servers.current(), &b);
        // A stale failure (another call moved on already) changes nothing.
        servers.failed(&a, None);
        assert_eq!(servers.current(), &b);
        servers.failed(&b, None);
        assert_eq!(servers.current(), &a);
        servers.failed(&a, Some(b.clone()));
        assert_eq!(servers.current(), &b);
        // A leader nobody configured is learned; a standby naming itself is ignored.
        let c = url("http://c/");
        servers.failed(&b, Some(c.clone()));
        assert_eq!((servers.current(), servers.all().len()), (&c, 3));
        servers.failed(&c, Some(c.clone()));
        assert_eq!(servers.current(), &a);
    }

    #[test]
    fn learned_leaders_are_bounded() {
        let mut servers = Servers::new(vec![url("http://a/")]);
        for i in 0..LEARNED_MAX + 3 {
            let failed = servers.current().clone();
            servers.failed(&failed, Some(url(&format!("http://l{i}/"))));
        }
        assert_eq!(servers.all().len(), 1 + LEARNED_MAX);
        assert_eq!(servers.all()[0], url("http://a/"));
        assert_eq!(
            servers.current(),
            &url(&format!("http://l{}/", LEARNED_MAX + 2))
        );
    }

    #[test]
    fn rounds_back_off_up_to_the_bound_and_stop_at_the_deadline() {
        let options = FailoverOptions {
            deadline: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
        };
        assert_eq!(Walk::new(&options).next_delay(1, Duration::ZERO), None);
        let mut walk = Walk::new(&options);
        let delays: Vec<_> = (0..8)
            .map(|_| walk.next_delay(2, Duration::ZERO).unwrap().as_millis())
            .collect();
        assert_eq!(delays, [0, 100, 0, 200, 0, 300, 0, 300]);
        assert_eq!(
            walk.next_delay(2, Duration::from_millis(950)),
            Some(Duration::ZERO)
        );
        assert_eq!(walk.next_delay(2, Duration::from_millis(950)), None);
    }
}
