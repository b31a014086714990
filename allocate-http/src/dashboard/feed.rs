//! The live feed: one publisher per server builds snapshots, every subscriber socket sends
//! the newest one it has not sent yet.
//!
//! Bounds, and what happens at each:
//! - Building: at most one snapshot per [`PUBLISH_INTERVAL_MIN`], and only when the engine's
//!   change counter moved; after a build that took `t`, the next waits at least
//!   [`BUILD_SPACING`] × `t`, so the dashboard takes at most a tenth of the engine task
//!   however large the lab is. Updates in between are coalesced into the next snapshot.
//! - Per subscriber: a `watch` slot holds the newest snapshot, so a subscriber is never more
//!   than one snapshot behind and a slow one skips to the newest instead of queueing. One
//!   whose write stalls past the idle timeout, or that answers no ping for that long, is
//!   dropped, as agent and client sockets are.
//! - Subscribers: at most [`SUBSCRIBERS_MAX`], and at most [`SUBSCRIBERS_PER_TOKEN_MAX`]
//!   with one token, so that one client cannot lock every dashboard out; the next upgrade
//!   is refused (409). One counter per token with a feed open, so at most
//!   [`SUBSCRIBERS_MAX`] of them.
//! - Publisher: runs only while someone subscribes, and stops at shutdown.

use super::view::{self, Hello};
use crate::auth::tokens::{Credential, Revocation};
use crate::auth::Caller;
use crate::clock;
use crate::driver::{CLOSE_GOING_AWAY, CLOSE_REFUSED};
use crate::error::ApiError;
use crate::sockets::{self, Shared};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout, Instant, Interval, MissedTickBehavior};
use tracing::debug;

/// The shortest time between two snapshots: updates within it arrive together.
pub const PUBLISH_INTERVAL_MIN: Duration = Duration::from_millis(250);

/// A build that took `t` is followed by at least this many `t` without one.
const BUILD_SPACING: u32 = 10;

/// The longest wait between two looks at the change counter, however slow builds were.
const PUBLISH_INTERVAL_MAX: Duration = Duration::from_secs(5);

/// Feed sockets open at once, at most.
pub const SUBSCRIBERS_MAX: usize = 256;

/// Feed sockets open at once with one token, at most (a few browser tabs). A server that
/// runs open has no tokens, so only [`SUBSCRIBERS_MAX`] applies there.
pub const SUBSCRIBERS_PER_TOKEN_MAX: usize = 8;

/// Largest message a dashboard may send (it sends none; pongs and closes are tiny).
pub const INBOUND_BYTES_MAX: usize = 4096;

/// The publisher's side of every feed of one server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// The newest snapshot (an envelope's text); `None` while none is built.
    latest: watch::Sender<Option<Utf8Bytes>>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    subscribers: usize,
    /// Feeds open per token, for the tokens with one open.
    per_token: HashMap<Credential, usize>,
    publishing: bool,
}

impl Default for Hub {
    fn default() -> Self {
        Hub(Arc::new(Inner {
            latest: watch::Sender::new(None),
            counts: Mutex::default(),
        }))
    }
}

/// One subscriber's place: the snapshots it receives. Leaving is dropping it.
#[derive(Debug)]
pub struct Subscription {
    hub: Hub,
    snapshots: watch::Receiver<Option<Utf8Bytes>>,
    /// The token it counts against, if any.
    credential: Option<Credential>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut counts = self.hub.counts();
        counts.subscribers -= 1;
        if let Some(credential) = &self.credential {
            if let Some(n) = counts.per_token.get_mut(credential) {
                *n -= 1;
                if *n == 0 {
                    counts.per_token.remove(credential);
                }
            }
        }
    }
}

impl Hub {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Never held across an await; a panic while held leaves plain counters behind.
        self.0.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place among the subscribers for a caller with `credential` (409 beyond
    /// [`SUBSCRIBERS_MAX`] or [`SUBSCRIBERS_PER_TOKEN_MAX`]) and starts the publisher if it
    /// is not running.
    pub fn subscribe(
        &self,
        app: &Shared,
        credential: Option<Credential>,
    ) -> Result<Subscription, ApiError> {
        let mut counts = self.counts();
        if counts.subscribers >= SUBSCRIBERS_MAX {
            return Err(allocate_core::Error::Conflict(format!(
                "the dashboard feed already has {SUBSCRIBERS_MAX} subscribers, its limit; \
                 close a dashboard and try again"
            ))
            .into());
        }
        if let Some(credential) = &credential {
            let with_token = counts.per_token.get(credential).copied().unwrap_or(0);
            if with_token >= SUBSCRIBERS_PER_TOKEN_MAX {
                return Err(allocate_core::Error::Conflict(format!(
                    "this token has {SUBSCRIBERS_PER_TOKEN_MAX} dashboard feeds open, the \
                     limit per token; close one and try again"
                ))
                .into());
            }
            *counts.per_token.entry(credential.clone()).or_insert(0) += 1;
        }
        counts.subscribers += 1;
        if !counts.publishing {
            counts.publishing = true;
            tokio::spawn(publish(self.clone(), app.clone()));
        }
        Ok(Subscription {
            hub: self.clone(),
            snapshots: self.0.latest.subscribe(),
            credential,
        })
    }

    /// Whether the publisher should go on; when it should not, it is marked stopped (under
    /// the same lock as [`Hub::subscribe`], so a new subscriber starts a new one).
    fn keep_publishing(&self, stopping: bool) -> bool {
        let mut counts = self.counts();
        if counts.subscribers > 0 && !stopping {
            return true;
        }
        counts.publishing = false;
        // A later publisher starts from nothing rather than hand out a stale picture.
        self.0.latest.send_replace(None);
        false
    }
}

/// The publisher: looks at the engine's change counter and publishes a new snapshot when it
/// moved, until nobody subscribes or the server stops.
async fn publish(hub: Hub, app: Shared) {
    let mut stopping = app.stopping.clone();
    let mut seen: Option<u64> = None;
    loop {
        let stop = *stopping.borrow();
        if !hub.keep_publishing(stop) {
            break;
        }
        let Some(took) = publish_once(&hub, &app, &mut seen).await else {
            // The engine task is gone: the server is stopping.
            hub.keep_publishing(true);
            break;
        };
        let pause = (took * BUILD_SPACING).clamp(PUBLISH_INTERVAL_MIN, PUBLISH_INTERVAL_MAX);
        // Sleeps, unless shutdown begins first.
        let _ = timeout(pause, stopped(&mut stopping)).await;
    }
    debug!("dashboard publisher stopped");
}

/// Publishes a snapshot if the engine changed since `seen`; returns how long the look
/// took, or `None` when the engine task is gone.
async fn publish_once(hub: &Hub, app: &Shared, seen: &mut Option<u64>) -> Option<Duration> {
    let started = Instant::now();
    let last = *seen;
    let built = app
        .driver
        .read(move |engine| {
            let changes = engine.changes();
            let now = clock::now().as_secs();
            let text = (last != Some(changes)).then(|| view::snapshot_text(engine, now, None));
            (changes, text)
        })
        .await
        .ok()?;
    match built {
        (changes, Some(Ok(text))) => {
            *seen = Some(changes);
            hub.0.latest.send_replace(Some(text.into()));
        }
        (_, Some(Err(e))) => tracing::error!("dashboard snapshot: {e}"),
        (_, None) => {}
    }
    Some(started.elapsed())
}

/// Serves one feed socket: the hello, then every new snapshot, until the dashboard leaves,
/// falls behind, goes silent, loses its token to a reload, or the server stops.
pub async fn serve(
    ws: WebSocket,
    app: Shared,
    caller: Caller,
    subscription: Subscription,
    revocation: Revocation,
) {
    let _alive = app.alive.clone();
    let mut feed = Feed::new(ws, &app, subscription, revocation);
    let hello = Hello::new(&caller, clock::now().as_secs());
    let Ok(hello) = view::envelope_text(&hello) else {
        return;
    };
    if !feed.send(Message::Text(hello.into())).await {
        return;
    }
    debug!(%caller, "dashboard feed opened");
    let ending = loop {
        match feed.step().await {
            Step::Continue => {}
            Step::End(ending) => break ending,
        }
    };
    feed.end(ending).await;
    debug!("dashboard feed closed");
}

/// One feed socket and its keepalive.
struct Feed {
    ws: WebSocket,
    subscription: Subscription,
    stopping: watch::Receiver<bool>,
    pings: Interval,
    last_heard: Instant,
    idle_timeout: Duration,
    close_wait: Duration,
    revocation: Revocation,
}

/// What [`Feed::step`] leads to.
enum Step {
    Continue,
    End(Ending),
}

/// How a feed socket ends.
enum Ending {
    /// We close it with this code and reason.
    Close(u16, &'static str),
    /// The dashboard closed it: the reply to its close is sent.
    Closed,
    /// It is broken, silent or too slow: it is just dropped.
    Drop,
}

impl Feed {
    fn new(
        ws: WebSocket,
        app: &Shared,
        mut subscription: Subscription,
        revocation: Revocation,
    ) -> Feed {
        let every = app.config.ping_interval;
        let mut pings = tokio::time::interval_at(Instant::now() + every, every);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The newest snapshot goes first, if there is one already.
        subscription.snapshots.mark_changed();
        Feed {
            ws,
            subscription,
            stopping: app.stopping.clone(),
            pings,
            last_heard: Instant::now(),
            idle_timeout: app.config.idle_timeout,
            close_wait: app.config.close_wait,
            revocation,
        }
    }

    /// Waits for the next thing to do, and does it.
    async fn step(&mut self) -> Step {
        tokio::select! {
            biased;
            () = stopped(&mut self.stopping) => {
                Step::End(Ending::Close(CLOSE_GOING_AWAY, "server shutting down"))
            }
            changed = self.subscription.snapshots.changed() => self.forward(changed.is_ok()).await,
            message = self.ws.recv() => self.read(message),
            _ = self.pings.tick() => self.ping().await,
            () = self.revocation.revoked() => {
                debug!("closing a dashboard whose token a reload took away");
                Step::End(Ending::Close(CLOSE_REFUSED, "token revoked"))
            }
        }
    }

    /// Sends the newest snapshot.
    async fn forward(&mut self, open: bool) -> Step {
        if !open {
            return Step::End(Ending::Close(CLOSE_GOING_AWAY, "server shutting down"));
        }
        let newest = self.subscription.snapshots.borrow_and_update().clone();
        let Some(text) = newest else {
            return Step::Continue;
        };
        if self.send(Message::Text(text)).await {
            Step::Continue
        } else {
            debug!("dropping a dashboard that fell behind");
            Step::End(Ending::Drop)
        }
    }

    /// Handles what the dashboard sent: pongs count as signs of life, a close ends it, and
    /// so does a message that breaks the protocol or the size limit (with the code for it).
    fn read(&mut self, message: Option<Result<Message, axum::Error>>) -> Step {
        self.last_heard = Instant::now();
        match message {
            Some(Ok(Message::Close(_))) => Step::End(Ending::Closed),
            Some(Ok(_)) => Step::Continue,
            Some(Err(e)) => match sockets::close_for(e) {
                Some((code, reason)) => Step::End(Ending::Close(code, reason)),
                None => Step::End(Ending::Drop),
            },
            None => Step::End(Ending::Drop),
        }
    }

    /// Pings, or gives up on a dashboard silent for the idle timeout.
    async fn ping(&mut self) -> Step {
        if self.last_heard.elapsed() >= self.idle_timeout {
            debug!("dropping a silent dashboard");
            return Step::End(Ending::Drop);
        }
        if self.send(Message::Ping(Default::default())).await {
            Step::Continue
        } else {
            Step::End(Ending::Drop)
        }
    }

    /// Sends one message unless the write stalls past the idle timeout.
    async fn send(&mut self, message: Message) -> bool {
        matches!(
            timeout(self.idle_timeout, self.ws.send(message)).await,
            Ok(Ok(()))
        )
    }

    /// Closes the socket as `ending` says, waiting briefly for the other side.
    async fn end(mut self, ending: Ending) {
        let close = match ending {
            Ending::Drop => return,
            // Reading once more sends tungstenite's queued close reply.
            Ending::Closed => None,
            Ending::Close(code, reason) => Some(CloseFrame {
                code,
                reason: reason.into(),
            }),
        };
        if let Some(frame) = close {
            if !self.send(Message::Close(Some(frame))).await {
                return;
            }
        }
        let _ = timeout(self.close_wait, async {
            while let Some(Ok(_)) = self.ws.recv().await {}
        })
        .await;
    }
}

/// Completes once shutdown has begun (the guard that `wait_for` returns is not `Send`).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::RandomIds;
    use crate::config::ServerConfig;
    use crate::driver;
    use allocate_core::{Config, Engine};
    use tokio::sync::mpsc;

    fn app() -> (Shared, Hub, watch::Sender<bool>) {
        let engine = Engine::new(Config::default(), Box::new(RandomIds));
        let (driver, _task) = driver::spawn(engine, None);
        let (stop, stopping) = watch::channel(false);
        let (alive, _) = mpsc::channel(1);
        let app = Shared {
            driver,
            config: Arc::new(ServerConfig::default()),
            stopping,
            alive,
        };
        (app, Hub::default(), stop)
    }

    #[tokio::test]
    async fn one_token_holds_a_few_places_and_gives_them_back() {
        let (app, hub, _stop) = app();
        let table = crate::auth::tokens::TokenTable::parse(
            "alice-token-0123456789 user alice\nbob-token-0123456789 user bob",
        )
        .expect("a table");
        let alice = table.credential_of("alice-token-0123456789");
        let bob = table.credential_of("bob-token-0123456789");
        let mut of_alice: Vec<Subscription> = (0..SUBSCRIBERS_PER_TOKEN_MAX)
            .map(|_| hub.subscribe(&app, alice.clone()).expect("room"))
            .collect();
        let refused = hub.subscribe(&app, alice.clone()).expect_err("full");
        assert!(refused.to_string().contains("limit per token"), "{refused}");
        let _of_bob = hub.subscribe(&app, bob).expect("another token");
        let _open = hub.subscribe(&app, None).expect("no token");
        of_alice.pop();
        of_alice.push(hub.subscribe(&app, alice).expect("a place came back"));
        drop(of_alice);
        assert_eq!(hub.counts().per_token.len(), 1, "alice's counter went");
        assert_eq!(hub.counts().subscribers, 2);
    }

    async fn next_snapshot(sub: &mut Subscription) -> String {
        timeout(Duration::from_secs(5), sub.snapshots.changed())
            .await
            .expect("a snapshot in time")
            .expect("the hub is alive");
        let text = sub.snapshots.borrow_and_update().clone();
        text.expect("a snapshot").to_string()
    }

    #[tokio::test]
    async fn subscribers_are_bounded_and_the_publisher_runs_only_while_someone_listens() {
        let (app, hub, stop) = app();
        let mut subs: Vec<Subscription> = (0..SUBSCRIBERS_MAX)
            .map(|_| hub.subscribe(&app, None).expect("room"))
            .collect();
        let refused = hub.subscribe(&app, None).expect_err("full");
        assert!(refused.to_string().contains("256 subscribers"), "{refused}");
        assert!(next_snapshot(&mut subs[0])
            .await
            .contains("\"type\":\"snapshot\""));
        subs.pop();
        let mut late = hub.subscribe(&app, None).expect("room again");
        assert!(
            late.snapshots.borrow().is_some(),
            "the newest is there at once"
        );
        late.snapshots.mark_unchanged();

        // Nothing changes: nothing new is published.
        let quiet = timeout(PUBLISH_INTERVAL_MIN * 3, late.snapshots.changed()).await;
        assert!(quiet.is_err(), "an unchanged engine was published again");

        drop(subs);
        drop(late);
        let stopped = async {
            while hub.counts().publishing {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(Duration::from_secs(5), stopped)
            .await
            .expect("the publisher stops with its last subscriber");
        assert!(hub.0.latest.borrow().is_none(), "no stale picture is kept");

        let mut again = hub.subscribe(&app, None).expect("a new publisher");
        next_snapshot(&mut again).await;
        let _ = stop.send(true);
        timeout(Duration::from_secs(5), async {
            while hub.counts().publishing {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the publisher stops at shutdown");
    }
}
