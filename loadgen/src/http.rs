//! A minimal HTTP/1.1 keep-alive client: one connection, one request at a time, bodies
//! framed by `content-length` (which is how the server answers every request we make).

use crate::failure::Failure;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head we accept; the server's are a few hundred bytes.
const HEAD_BYTES_MAX: usize = 16 * 1024;

/// Largest response body we accept (the inventory of 100,000 resources is about 30 MB).
const BODY_BYTES_MAX: usize = 512 * 1024 * 1024;

/// A response: its status code and body.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// One keep-alive connection to the server.
#[derive(Debug)]
pub struct HttpConn {
    stream: TcpStream,
    host: String,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

impl HttpConn {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<HttpConn, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::new("http_connect", e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Failure::new("http_connect", e))?;
        Ok(HttpConn {
            stream,
            host: addr.to_string(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends a request without a body and reads the whole response.
    pub async fn request(&mut self, method: &str, path: &str) -> Result<Response, Failure> {
        let head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.host);
        self.stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| Failure::new("http_io", e))?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > HEAD_BYTES_MAX {
                return Err(Failure::new("http_protocol", "response head too long"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| Failure::new("http_protocol", "response head is not UTF-8"))?;
        let (status, length) = parse_head(head)?;
        if length > BODY_BYTES_MAX {
            return Err(Failure::new("http_protocol", "response body too long"));
        }
        self.buf.drain(..head_end);
        while self.buf.len() < length {
            self.buf.reserve(length - self.buf.len());
            self.fill().await?;
        }
        // The body leaves by moving the buffer (the inventory is tens of MB): only what
        // follows it is copied.
        let rest = self.buf.split_off(length);
        let body = std::mem::replace(&mut self.buf, rest);
        Ok(Response { status, body })
    }

    /// Reads more bytes into the buffer; the end of the stream is an error.
    async fn fill(&mut self) -> Result<(), Failure> {
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| Failure::new("http_io", e))?;
        if n == 0 {
            return Err(Failure::new("http_io", "the server closed the connection"));
        }
        Ok(())
    }
}

/// The status code and `content-length` of a response head.
fn parse_head(head: &str) -> Result<(u16, usize), Failure> {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::new("http_protocol", format!("bad status line in {head:?}")))?;
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| Failure::new("http_protocol", format!("no content-length in {head:?}")))?;
    Ok((status, length))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let head = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (404, 12));
        assert!(parse_head("HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert_eq!(find(b"ab\r\n\r\ncd", b"\r\n\r\n"), Some(2));
    }
}
