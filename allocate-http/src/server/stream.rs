//! One connection's bytes as hyper and, after an upgrade, the websocket see them: every
//! read and write is noted as activity (the keep-alive timeout looks at it), and a write
//! that makes no progress for the write timeout fails, which ends the connection. The
//! connection's place under the caps goes with it.

use crate::access::Upgrade;
use crate::connections::Permit;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// When bytes last moved on a connection, shared between its stream and its task.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last read or write that moved a byte.
    last_ms: AtomicU64,
}

impl Activity {
    /// Activity that starts now.
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Bytes moved now.
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When bytes last moved (the start when none has).
    pub fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A TCP stream whose writes fail after `write_timeout` without progress.
#[derive(Debug)]
pub struct Guarded {
    tcp: TcpStream,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Armed while a write waits; made on the first wait, reset on later ones.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether `stall` counts down for the write now waiting.
    stalled: bool,
    /// The connection's place under the caps, and its websocket's access-log line (logged
    /// when the last holder drops it): both go with the stream, which a websocket keeps.
    _held: (Permit, Arc<Upgrade>),
}

impl Guarded {
    /// Wraps an accepted stream, which holds `held` until it is dropped.
    pub fn new(
        tcp: TcpStream,
        held: (Permit, Arc<Upgrade>),
        activity: Arc<Activity>,
        write_timeout: Duration,
    ) -> Guarded {
        Guarded {
            tcp,
            activity,
            write_timeout,
            stall: None,
            stalled: false,
            _held: held,
        }
    }

    /// What a write's poll comes to: a finished write resets the stall timer, waiting arms
    /// it, and waiting past it is an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        if !self.stalled {
            self.stalled = true;
            let deadline = Instant::now() + self.write_timeout;
            match &mut self.stall {
                Some(stall) => stall.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        if let Some(stall) = &mut self.stall {
            ready!(stall.as_mut().poll(cx));
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the peer read nothing for {} ms",
                self.write_timeout.as_millis()
            ),
        )))
    }

    /// Notes the bytes a write moved.
    fn moved(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.moved(&polled);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.moved(&polled);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.tcp).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.tcp).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::{Caps, Gate};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    /// A connected pair with small buffers on both sides (so that a large write waits on the
    /// reader at once): the guarded writer, the plain reader, and the writer's activity.
    async fn pair(write_timeout: Duration) -> (Guarded, TcpStream, Arc<Activity>) {
        let listener = TcpSocket::new_v4().unwrap();
        listener.set_recv_buffer_size(4096).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listener.listen(1).unwrap();
        let writer = TcpSocket::new_v4().unwrap();
        writer.set_send_buffer_size(4096).unwrap();
        let writer = writer
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (reader, _) = listener.accept().await.unwrap();
        let gate = Gate::new(Caps {
            total_max: 1,
            per_peer_max: 1,
        });
        let permit = gate
            .admit(writer.peer_addr().unwrap().ip(), std::time::Instant::now())
            .expect("room");
        let activity = Arc::new(Activity::new());
        let held = (permit, Upgrade::new());
        let guarded = Guarded::new(writer, held, activity.clone(), write_timeout);
        (guarded, reader, activity)
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_timeout() {
        let (mut server, _client, _) = pair(Duration::from_millis(200)).await;
        let chunk = vec![7u8; 64 * 1024];
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = server.write_all(&chunk).await {
                    return e;
                }
            }
        })
        .await
        .expect("the write gives up");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let write_timeout = Duration::from_millis(300);
        let (mut server, mut client, activity) = pair(write_timeout).await;
        // 2 MiB read 4 KiB at a time, a millisecond apart: the whole write takes longer
        // than the write timeout, though no single wait does.
        const LEN: usize = 2 << 20;
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let mut total = 0;
            while total < LEN {
                tokio::time::sleep(Duration::from_millis(1)).await;
                total += client.read(&mut buf).await.unwrap();
            }
        });
        let before = activity.last();
        // Activity is kept in milliseconds: let one pass before the first byte moves.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        server.write_all(&vec![1u8; LEN]).await.expect("written");
        reader.await.unwrap();
        assert!(
            started.elapsed() > write_timeout,
            "the write never waited long"
        );
        assert!(activity.last() > before, "writes count as activity");
    }
}
