//! One accepted connection served over HTTP/1.1 until it ends, is upgraded to a websocket,
//! times out, or the server stops.
//!
//! Its timeouts:
//! - the head of each request (request line and headers) must arrive within the
//!   header-read timeout, counted from the connection's start or the end of the previous
//!   answer (hyper's own timer): a trickling client (slowloris) is closed;
//! - no request in progress and no byte moving for the keep-alive timeout: closed after
//!   any answer in progress;
//! - a write that makes no progress for the write timeout fails ([`super::stream`]);
//! - with TLS, the handshake counts against the first request's header-read timeout: the
//!   handshake and that head must both arrive within it, counted from the connection's start.
//!
//! TLS sits above the guarded stream, so the write timeout and the keep-alive's activity
//! count the encrypted bytes, handshake included.

use super::stream::{Activity, Guarded};
use crate::access::{ConnectionInfo, Upgrade};
use crate::connections::Permit;
use crate::tls::Tls;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_rustls::server::TlsStream;
use tower_service::Service;
use tracing::{debug, warn};

/// Largest request head (and read buffer) a connection may hold, in bytes. hyper's default
/// (about 400 KiB) would let each trickling connection hold that much.
const READ_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// The timeouts of every connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For a request's head.
    pub header_read: Duration,
    /// With no request in progress and nothing moving.
    pub keep_alive: Duration,
    /// For a write that makes no progress.
    pub write: Duration,
}

/// What every connection task gets from the accept loop.
#[derive(Clone, Debug)]
pub struct Context {
    /// The routes.
    pub router: Router,
    /// The timeouts.
    pub timeouts: Timeouts,
    /// Becomes `true` when the server stops: finish the answer in progress, then close.
    pub closing: watch::Receiver<bool>,
    /// Held until the connection ends; the server's shutdown waits until every one is dropped.
    pub alive: mpsc::Sender<()>,
    /// The certificate to serve HTTPS and WSS with; `None` serves plain HTTP.
    pub tls: Option<Tls>,
}

/// Serves one connection from `peer`, which holds `permit` for as long as it (or its
/// websocket) lives.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, permit: Permit, context: Context) {
    set_nodelay(&tcp);
    let Context {
        router,
        timeouts,
        closing,
        alive: _alive,
        tls,
    } = context;
    let activity = Arc::new(Activity::new());
    let info = ConnectionInfo {
        peer,
        upgrade: Upgrade::new(),
    };
    let held = (permit, info.upgrade.clone());
    let guarded = Guarded::new(tcp, held, activity.clone(), timeouts.write);
    let routes = Routes {
        router,
        info,
        arrived: Arc::default(),
    };
    let ended = match tls {
        None => {
            let conn = http(guarded, routes, timeouts);
            drive(conn, &activity, timeouts.keep_alive, closing, None).await
        }
        Some(tls) => {
            let first_head_by = Instant::now() + timeouts.header_read;
            let Some(stream) = handshake(&tls, guarded, first_head_by, closing.clone()).await
            else {
                return;
            };
            let first_head = Some((first_head_by, routes.arrived.clone()));
            let conn = http(stream, routes, timeouts);
            drive(conn, &activity, timeouts.keep_alive, closing, first_head).await
        }
    };
    if let Err(e) = ended {
        debug!("connection closed: {e}");
    }
}

/// Sets TCP_NODELAY: without it a small websocket frame written right after another
/// (`released`, then the close) waits for the peer's delayed ACK, tens of milliseconds.
fn set_nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        warn!("cannot set TCP_NODELAY: {e}");
    }
}

/// The TLS handshake on `guarded`, done by `deadline`; `None` (logged at debug level) when
/// it fails, runs late, or the server stops meanwhile.
async fn handshake(
    tls: &Tls,
    guarded: Guarded,
    deadline: Instant,
    closing: watch::Receiver<bool>,
) -> Option<TlsStream<Guarded>> {
    let accepting = tls.acceptor().accept(guarded);
    let done = tokio::select! {
        done = timeout_at(deadline, accepting) => done,
        () = stopped(closing) => return None,
    };
    match done {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            debug!("TLS handshake timed out");
            None
        }
    }
}

/// A connection as hyper serves it, over the plain or the TLS stream.
type Conn<I> = http1::UpgradeableConnection<TokioIo<I>, Routes>;

/// The routes as hyper calls them, with the connection's peer and upgrade slot in every
/// request (the access log reads them).
#[derive(Clone, Debug)]
struct Routes {
    router: Router,
    info: ConnectionInfo,
    /// Whether a request's head has arrived on the connection.
    arrived: Arc<AtomicBool>,
}

impl hyper::service::Service<Request<Incoming>> for Routes {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.arrived.store(true, Ordering::Relaxed);
        req.extensions_mut().insert(self.info.clone());
        self.router.clone().call(req)
    }
}

/// HTTP/1.1 with upgrades over `io`, with the header-read timeout and a bounded buffer.
fn http<I>(io: I, routes: Routes, timeouts: Timeouts) -> Conn<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(READ_BUFFER_BYTES_MAX)
        .serve_connection(TokioIo::new(io), routes)
        .with_upgrades()
}

/// Runs `conn` until it ends, or until it has been idle for `keep_alive` or the server
/// stops: then hyper closes it once the answer in progress, if any, is out. With
/// `first_head`, a connection whose first request has not arrived by its deadline is closed
/// (hyper's own timer starts only once `conn` runs, after the TLS handshake).
async fn drive<I>(
    conn: Conn<I>,
    activity: &Activity,
    keep_alive: Duration,
    closing: watch::Receiver<bool>,
    first_head: Option<(Instant, Arc<AtomicBool>)>,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::pin!(conn);
    let ended = tokio::select! {
        result = conn.as_mut() => Some(result),
        () = idle(activity, keep_alive) => {
            debug!("closing an idle connection");
            None
        }
        () = stopped(closing) => None,
        () = first_head_late(first_head) => return Ok(()),
    };
    match ended {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Completes once no byte has moved for `keep_alive`.
async fn idle(activity: &Activity, keep_alive: Duration) {
    loop {
        sleep_until(activity.last() + keep_alive).await;
        if activity.last() + keep_alive <= Instant::now() {
            return;
        }
    }
}

/// Completes at the deadline of `first_head` if no request has arrived by then; else never.
async fn first_head_late(first_head: Option<(Instant, Arc<AtomicBool>)>) {
    if let Some((deadline, arrived)) = first_head {
        sleep_until(deadline).await;
        if !arrived.load(Ordering::Relaxed) {
            debug!("no request head within the header-read timeout of a TLS connection");
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Completes once the server stops (the guard that `wait_for` returns is not `Send`).
async fn stopped(mut closing: watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}
