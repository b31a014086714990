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
    /// The network's state.
    net: watch::Sender<Net>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (net, _) = watch::channel(Net::Up);
        let state = net.subscribe();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let now = *state.borrow();
                match now {
                    Net::Up => drop(tokio::spawn(forward(client, upstream, state.clone()))),
                    Net::Stalled => drop(tokio::spawn(hold(client, state.clone()))),
                    // Dropped here: closed at once.
                    Net::Cut => drop(client),
                }
            }
        });
        Proxy { addr, net, accept }
    }

    /// Cuts the network: every forwarded connection is closed, new ones too.
    pub fn cut(&self) {
        self.net.send_replace(Net::Cut);
    }

    /// Stalls the network: nothing is forwarded any more, and no connection is closed.
    pub fn stall(&self) {
        self.net.send_replace(Net::Stalled);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.net.send_replace(Net::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What the network does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Net {
    Up,
    Stalled,
    Cut,
}

/// Copies both ways between `client` and a new connection to `upstream` until either side
/// closes or the network goes down; when it stalls, holds both sockets until it is cut.
async fn forward(mut client: TcpStream, upstream: SocketAddr, mut net: watch::Receiver<Net>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        _ = net.wait_for(|n| *n != Net::Up) => {}
    }
    let _ = net.wait_for(|n| *n == Net::Cut).await;
}

/// Holds `socket` open, reading nothing, until the network is cut.
async fn hold(socket: TcpStream, mut net: watch::Receiver<Net>) {
    let _ = net.wait_for(|n| *n == Net::Cut).await;
    drop(socket);
}
