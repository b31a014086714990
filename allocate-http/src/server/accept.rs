//! The accept loop: each connection the caps admit gets a task ([`super::connection`]); one
//! beyond them gets a short `503` and is closed, so that a flood of connections costs
//! the server a bounded number of file descriptors and never the ones its honest clients
//! need.
//!
//! Bounds, and what happens at each:
//! - open connections: the [`Gate`]'s caps; the next one is answered `503`;
//! - refusals being answered at once: [`REFUSING_MAX`], each within [`REFUSAL_WAIT`];
//!   beyond that a connection is closed without an answer (with TLS, always);
//! - at shutdown, connections get the shutdown grace to finish their answer.

use super::connection::{self, Context, Timeouts};
use crate::connections::{Gate, LogLimiter, Refusal};
use crate::tls::Tls;
use allocate_core::wire::{self, Envelope};
use allocate_core::ErrorCode;
use axum::Router;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::timeout;
use tracing::{error, warn};

/// Refused connections being answered at once, at most; each holds a file descriptor.
pub const REFUSING_MAX: usize = 64;

/// The longest a refused connection is kept: to write the `503` and read what the client
/// sent (closing with unread bytes would reset the connection and lose the answer).
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// The most bytes read from a refused connection before it is closed anyway.
const REFUSAL_DRAIN_BYTES_MAX: usize = 64 * 1024;

/// How long the loop pauses after an accept that failed for want of resources (file
/// descriptors, memory), rather than spinning on it.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Accepts connections (over TLS with `tls`) until `signal` completes, then tells every
/// connection to finish its answer and close, and waits for them at most `grace`.
pub async fn serve(
    listener: TcpListener,
    gate: Gate,
    router: Router,
    timeouts: Timeouts,
    tls: Option<Tls>,
    grace: Duration,
    signal: impl Future<Output = ()>,
) {
    let (closing_tx, closing) = watch::channel(false);
    let (alive_tx, mut all_closed) = mpsc::channel::<()>(1);
    let admission = Admission {
        gate,
        context: Context {
            router,
            timeouts,
            closing,
            alive: alive_tx,
            tls,
        },
        refusing: Arc::new(Semaphore::new(REFUSING_MAX)),
    };
    let mut accept_log = LogLimiter::default();
    tokio::pin!(signal);
    loop {
        let accepted = tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => admission.admit(tcp, peer),
            Err(e) => shrug_off(&e, &mut accept_log).await,
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(admission);
    if timeout(grace, all_closed.recv()).await.is_err() {
        warn!(
            grace_ms = grace.as_millis(),
            "some connections did not close in time"
        );
    }
}

/// What the loop needs to admit or refuse a connection.
struct Admission {
    gate: Gate,
    context: Context,
    /// Places for refusals being answered.
    refusing: Arc<Semaphore>,
}

impl Admission {
    /// Serves the connection from `peer` in a task of its own, or refuses it over the caps.
    fn admit(&self, tcp: TcpStream, peer: SocketAddr) {
        match self.gate.admit(peer.ip(), std::time::Instant::now()) {
            Ok(permit) => {
                tokio::spawn(connection::serve(tcp, peer, permit, self.context.clone()));
            }
            Err(refused) => {
                if let Some(count) = refused.log {
                    warn!(
                        count,
                        open = self.gate.counts().open,
                        "connection refused with 503: {}",
                        refused.refusal
                    );
                }
                // A TLS client would read the plain `503` as a corrupt record: it is closed
                // instead (answering over TLS would spend a handshake on every refusal).
                if self.context.tls.is_none() {
                    refuse(tcp, refused.refusal, &self.refusing);
                }
            }
        }
    }
}

/// After a failed accept: nothing for one connection's error, else a log line (at most one
/// per [`crate::connections::LOG_EVERY`]) and a pause.
async fn shrug_off(e: &io::Error, log: &mut LogLimiter) {
    if is_connection_error(e) {
        return;
    }
    if let Some(count) = log.hit(std::time::Instant::now()) {
        error!(count, "cannot accept connections: {e}; pausing");
    }
    tokio::time::sleep(ACCEPT_PAUSE).await;
}

/// Errors of one connection that the loop shrugs off (the peer left before its accept).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Answers `503` on a connection over the caps and closes it, in a task of its own if a
/// place among [`REFUSING_MAX`] is free, else closes it at once.
fn refuse(tcp: TcpStream, refusal: Refusal, refusing: &Arc<Semaphore>) {
    let Ok(place) = refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _ = timeout(REFUSAL_WAIT, answer(tcp, refusal)).await;
        drop(place);
    });
}

/// Writes the `503`, ends the sending side, and reads what the client sent until it closes.
async fn answer(mut tcp: TcpStream, refusal: Refusal) -> io::Result<()> {
    tcp.write_all(&refusal_response(refusal)).await?;
    tcp.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN_BYTES_MAX {
        match tcp.read(&mut sink).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}

/// The whole HTTP answer to a refused connection: `503` with the failure envelope, code
/// `overloaded`, and `Connection: close`.
fn refusal_response(refusal: Refusal) -> Vec<u8> {
    let body = Envelope::<()>::Refused(wire::Refusal::new(
        ErrorCode::Overloaded,
        refusal.to_string(),
    ))
    .to_text();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_answer_with_our_envelope() {
        let text = String::from_utf8(refusal_response(Refusal::Total(5))).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("connection: close"));
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(envelope["status"], 503);
        assert_eq!(envelope["error"]["code"], "overloaded");
        assert!(envelope["error"]["message"]
            .as_str()
            .unwrap()
            .contains("5 connections"));
    }
}
