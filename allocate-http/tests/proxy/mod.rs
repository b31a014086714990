//! A TCP proxy on loopback that a test can cut: it forwards each connection to one upstream
//! address; [`Proxy::cut`] closes every forwarded connection at once and closes each new one
//! as soon as it is accepted, as a network that went away would; [`Proxy::restore`] forwards
//! new connections again. Its tasks end with the test's runtime.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A proxy to one upstream address; stops accepting when dropped.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether the network is up.
    open: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (open, _) = watch::channel(true);
        let up = open.subscribe();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *up.borrow() {
                    tokio::spawn(forward(client, upstream, up.clone()));
                }
                // Otherwise `client` is dropped here: closed at once.
            }
        });
        Proxy { addr, open, accept }
    }

    /// Cuts the network: every forwarded connection is closed, new ones too.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways between `client` and a new connection to `upstream` until either side
/// closes or the network is cut (then both sockets are dropped, which closes them).
async fn forward(mut client: TcpStream, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|open| !*open) => {}
    }
}
