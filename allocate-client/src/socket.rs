//! A client websocket: how one is read (text messages, pings answered, the end typed) and
//! written (each send bounded in time).

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Largest websocket message either way (the contract's limit).
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// How long one send may take: a server that stops reading would otherwise stall its caller.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing waits for the server's close reply.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// An open client websocket (plain or TLS).
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a websocket ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SocketEnd {
    /// The server sent a close frame (1000 after a final event, 1001 on shutdown, ...).
    #[error("the server closed the connection ({code} {reason})")]
    Closed {
        /// The close code.
        code: u16,
        /// The close reason, possibly empty.
        reason: String,
    },
    /// The stream ended without a close frame.
    #[error("the connection ended without a close frame")]
    Ended,
    /// Reading or writing failed; the text is the websocket library's.
    #[error("the connection failed: {0}")]
    Failed(String),
    /// The server sent nothing (no message, no ping, no pong) for this long.
    #[error("nothing heard from the server for {} ms", .0.as_millis())]
    Silent(Duration),
}

/// The next text message of `socket`, skipping pings, pongs and binary frames (tungstenite
/// answers pings while it is read); `Err` says how the socket ended.
pub(crate) async fn next_text(socket: &mut Socket) -> Result<String, SocketEnd> {
    loop {
        if let Some(text) = next_message(socket).await? {
            return Ok(text);
        }
    }
}

/// The next frame of `socket`: `Some` a text message, `None` a ping, pong or binary frame
/// (the server is alive, nothing to read); `Err` says how the socket ended.
pub(crate) async fn next_message(socket: &mut Socket) -> Result<Option<String>, SocketEnd> {
    match socket.next().await {
        None => Err(SocketEnd::Ended),
        Some(Ok(Message::Text(text))) => Ok(Some(text.to_string())),
        Some(Ok(Message::Close(frame))) => Err(match frame {
            Some(f) => SocketEnd::Closed {
                code: f.code.into(),
                reason: f.reason.to_string(),
            },
            None => SocketEnd::Closed {
                code: 1005,
                reason: String::new(),
            },
        }),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(SocketEnd::Failed(crate::chain::chain(&e))),
    }
}

/// Sends `message`, bounded by [`SEND_TIMEOUT`].
pub(crate) async fn send(socket: &mut Socket, message: Message) -> Result<(), SocketEnd> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(result) => result.map_err(|e| SocketEnd::Failed(crate::chain::chain(&e))),
        Err(_) => Err(SocketEnd::Failed(format!(
            "a send did not finish within {} s",
            SEND_TIMEOUT.as_secs()
        ))),
    }
}

/// Closes `socket`, waiting at most [`CLOSE_TIMEOUT`] for the server's reply.
pub(crate) async fn close(socket: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
}
