//! Websocket helpers: connect over loopback, send JSON text, read the server's envelopes.

use crate::failure::Failure;
use allocate_core::wire::{ClientEvent, Envelope, ServerMessage, WireError};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

/// A client websocket over a plain TCP stream.
pub type Ws = WebSocketStream<TcpStream>;

/// Read buffer per socket: the server's messages are small, and 10,000 agents each holding
/// tungstenite's default 128 KiB would only cost the load generator memory.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How long the server has to finish a close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A message of the `/allocate/` socket: an event, or the server's refusal.
pub type Event = Envelope<ClientEvent>;

/// `data.status` of a success (`queued`, `ready`, ...), or `""` for a refusal.
pub fn state(event: &Event) -> &'static str {
    match event {
        Envelope::Ok(e) => e.status(),
        Envelope::Refused(_) => "",
    }
}

/// The allocation of a success, or a failure naming the message.
pub fn allocation_id(event: &Event) -> Result<Uuid, Failure> {
    match event {
        Envelope::Ok(e) => Ok(e.allocation_id()),
        Envelope::Refused(r) => Err(Failure::new(
            "unexpected_message",
            format!("refused: {} {}", r.code, r.message),
        )),
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

/// The next text message; `None` once the socket has closed (pings and pongs are skipped).
async fn next_text(ws: &mut Ws) -> Result<Option<String>, Failure> {
    loop {
        match ws.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(Failure::new("ws_io", e)),
            Some(Ok(Message::Text(text))) => return Ok(Some(text.to_string())),
            // tungstenite answers a close itself; the stream ends when the server is done.
            Some(Ok(Message::Close(_) | Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(_)) => return Err(Failure::new("unexpected_message", "a binary message")),
        }
    }
}

/// The next message, read with `read`; `None` once the socket has closed.
async fn next_with<T>(
    ws: &mut Ws,
    read: fn(&str) -> Result<T, WireError>,
) -> Result<Option<T>, Failure> {
    match next_text(ws).await? {
        None => Ok(None),
        Some(text) => read(&text)
            .map(Some)
            .map_err(|e| Failure::new("bad_message", format!("{e}: {text}"))),
    }
}

/// The next message of a client's socket; `None` once the socket has closed.
pub async fn next(ws: &mut Ws) -> Result<Option<Event>, Failure> {
    next_with(ws, ClientEvent::parse).await
}

/// The next message of an agent's socket; `None` once the socket has closed.
pub async fn next_order(ws: &mut Ws) -> Result<Option<Envelope<ServerMessage>>, Failure> {
    next_with(ws, ServerMessage::parse).await
}

/// The next message of an agent's socket, where `idle` without any frame (a message or a
/// ping) is a lost connection; `None` once the socket has closed.
pub async fn next_order_within(
    ws: &mut Ws,
    idle: Duration,
) -> Result<Option<Envelope<ServerMessage>>, Failure> {
    loop {
        let frame = timeout(idle, ws.next()).await.map_err(|_| {
            Failure::new("ws_idle", format!("nothing from the server for {idle:?}"))
        })?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(Failure::new("ws_io", e)),
            Some(Ok(Message::Text(text))) => {
                return ServerMessage::parse(&text)
                    .map(Some)
                    .map_err(|e| Failure::new("bad_message", format!("{e}: {text}")))
            }
            Some(Ok(Message::Close(_) | Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(_)) => return Err(Failure::new("unexpected_message", "a binary message")),
        }
    }
}

/// The next message of a client's socket, which must come.
pub async fn expect(ws: &mut Ws) -> Result<Event, Failure> {
    next(ws)
        .await?
        .ok_or_else(|| Failure::new("ws_closed", "the server closed the socket early"))
}

/// Reads until the server closes the socket; any further message is a failure.
pub async fn finish(ws: &mut Ws) -> Result<(), Failure> {
    match timeout(CLOSE_WAIT, next_text(ws)).await {
        Err(_) => Err(Failure::new(
            "ws_close",
            "the server did not close the socket",
        )),
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(text))) => Err(Failure::new(
            "unexpected_message",
            format!("{text} after the end"),
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
