//! Websocket helpers: connect over loopback, send JSON text, read the server's envelopes.

use crate::failure::Failure;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client websocket over a plain TCP stream.
pub type Ws = WebSocketStream<TcpStream>;

/// Read buffer per socket: the server's messages are small, and 10,000 agents each holding
/// tungstenite's default 128 KiB would only cost the load generator memory.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How long the server has to finish a close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The parts of a server message that the load generator looks at.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// The envelope's status (200 for success).
    pub status: u16,
    /// The payload of a success.
    #[serde(default)]
    pub data: Option<Data>,
}

/// The fields of `data` that matter here (the rest is ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Data {
    /// `queued`, `ready`, `released`, ... for clients; `ok` for a registration.
    pub status: Option<String>,
    /// `provision` or `release` for agents.
    pub action: Option<String>,
    /// The allocation concerned.
    pub allocation_id: Option<String>,
    /// Who will hold a provisioned resource.
    pub username: Option<String>,
    /// The ids a registration got.
    pub inventory_ids: Option<Vec<String>>,
}

impl Envelope {
    /// `data.status` of a success, or `""`.
    pub fn state(&self) -> &str {
        self.data
            .as_ref()
            .and_then(|d| d.status.as_deref())
            .filter(|_| self.status == 200)
            .unwrap_or("")
    }

    /// `data.allocation_id`, or a failure naming the message.
    pub fn allocation_id(&self) -> Result<&str, Failure> {
        self.data
            .as_ref()
            .and_then(|d| d.allocation_id.as_deref())
            .ok_or_else(|| Failure::new("unexpected_message", "no data.allocation_id"))
    }
}

/// Opens a websocket to `path` on the server.
pub async fn connect(addr: SocketAddr, path: &str) -> Result<Ws, Failure> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::new("ws_connect", e))?;
    tcp.set_nodelay(true)
        .map_err(|e| Failure::new("ws_connect", e))?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
        .await
        .map_err(|e| Failure::new("ws_handshake", e))?;
    Ok(ws)
}

/// Sends one text message.
pub async fn send(ws: &mut Ws, text: String) -> Result<(), Failure> {
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| Failure::new("ws_io", e))
}

/// The next envelope; `None` once the socket has closed (pings and pongs are skipped).
pub async fn next(ws: &mut Ws) -> Result<Option<Envelope>, Failure> {
    loop {
        match ws.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(Failure::new("ws_io", e)),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| Failure::new("bad_json", format!("{e}: {text}")))
            }
            // tungstenite answers a close itself; the stream ends when the server is done.
            Some(Ok(Message::Close(_) | Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(_)) => return Err(Failure::new("unexpected_message", "a binary message")),
        }
    }
}

/// The next envelope, which must come.
pub async fn expect(ws: &mut Ws) -> Result<Envelope, Failure> {
    next(ws)
        .await?
        .ok_or_else(|| Failure::new("ws_closed", "the server closed the socket early"))
}

/// Reads until the server closes the socket; any further message is a failure.
pub async fn finish(ws: &mut Ws) -> Result<(), Failure> {
    match timeout(CLOSE_WAIT, next(ws)).await {
        Err(_) => Err(Failure::new(
            "ws_close",
            "the server did not close the socket",
        )),
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(e))) => Err(Failure::new(
            "unexpected_message",
            format!("{:?} after the end", e.data),
        )),
        Ok(Err(e)) => Err(e),
    }
}

/// Closes the socket from our side and waits briefly for the server's reply.
pub async fn close(ws: &mut Ws) {
    let _ = ws.close(None).await;
    let _ = timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
