//! A socket that stays failed once it has failed, so that lapin's automatic
//! recovery always gets to reconnect.
//!
//! Why this exists (lapin 4.12.3, measured on a three-node cluster with a
//! node killed under a streaming producer): when the socket breaks, lapin's
//! I/O loop starts its recovery but keeps running its inner loop until the
//! frames it had already serialized are written. Written to a dead socket,
//! they never are: the loop either spins at 100 % CPU on the failing socket
//! or sleeps waiting for a socket event that never comes, and the recovery
//! never starts (6 of 10 runs by hand). lapin's trace says which:
//! `Should continue? … connection_status=Reconnecting … ser_frames_empty=false`.
//!
//! Frames written to a socket that has failed are lost anyway, and what they
//! carried is not lost with them: an unconfirmed publish is published again
//! after the recovery ([`crate::ConfirmedPublisher`]) and an unacked delivery
//! comes back from the broker. So after its first write error a
//! [`FailStop`] socket takes every write and drops it, and after its first
//! read error a read never returns: lapin's loop empties its queue and
//! reaches its reconnect step, which opens a new socket through
//! `FailStopReactor` (and [`crate::nodes`] picks the node). Each first
//! error is passed on untouched, so lapin sees the loss as before; and the
//! two sides fail apart, so what the broker sent before it closed the
//! socket (a `connection.close` with its reason) is still read after a
//! write failed.

use std::{
    io::{self, IoSlice, Read, Write},
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd},
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use async_rs::{Tokio, traits::Reactor};
use futures_lite::{
    Stream,
    io::{AsyncRead, AsyncWrite},
};

/// The tokio reactor, with every TCP stream it opens wrapped in [`FailStop`].
#[derive(Clone, Debug)]
pub(crate) struct FailStopReactor(pub(crate) Tokio);

impl Reactor for FailStopReactor {
    type TcpStream = FailStop<<Tokio as Reactor>::TcpStream>;
    type Sleep = <Tokio as Reactor>::Sleep;

    fn register<H: Read + Write + AsFd + AsRawFd + Send + 'static>(
        &self,
        socket: H,
    ) -> io::Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static> {
        self.0.register(socket)
    }

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        self.0.sleep(duration)
    }

    fn interval(&self, every: Duration) -> impl Stream<Item = Instant> + Send + 'static {
        self.0.interval(every)
    }

    fn tcp_connect_addr(
        &self,
        address: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
        let connecting = self.0.tcp_connect_addr(address);
        async move { connecting.await.map(FailStop::new) }
    }
}

/// A stream that, after a write error, drops what is written to it, and
/// after a read error never has anything to read (see the module's comment
/// for why).
#[derive(Debug)]
pub struct FailStop<S> {
    inner: S,
    write_failed: bool,
    read_failed: bool,
}

impl<S> FailStop<S> {
    fn new(inner: S) -> FailStop<S> {
        FailStop {
            inner,
            write_failed: false,
            read_failed: false,
        }
    }
}

/// Passes `result` on, and says whether it is an error. The waker is woken
/// on one, so that lapin polls again and meets the failed state instead of
/// waiting for an event from a socket that will send none.
fn failed<T>(cx: &Context<'_>, result: &Poll<io::Result<T>>) -> bool {
    let failed = matches!(result, Poll::Ready(Err(_)));
    if failed {
        cx.waker().wake_by_ref();
    }
    failed
}

impl<S: AsyncRead + Unpin> AsyncRead for FailStop<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.read_failed {
            return Poll::Pending;
        }
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read_failed = failed(cx, &result);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FailStop<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write_failed {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.write_failed = failed(cx, &result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.write_failed {
            return Poll::Ready(Ok(bufs.iter().map(|buf| buf.len()).sum()));
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.write_failed = failed(cx, &result);
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed {
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.write_failed = failed(cx, &result);
        result
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt, future};

    /// A socket whose every operation fails, as a reset one does.
    struct Reset;

    impl AsyncRead for Reset {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }
    }

    impl AsyncWrite for Reset {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }
    }

    #[test]
    fn the_first_error_is_passed_on_and_later_writes_are_dropped() {
        let mut socket = FailStop::new(Reset);
        future::block_on(async {
            let first = socket.write(b"frame").await;
            assert_eq!(
                first.map_err(|error| error.kind()),
                Err(io::ErrorKind::ConnectionReset)
            );
            assert_eq!(socket.write(b"frame").await.ok(), Some(5));
            assert!(socket.flush().await.is_ok());
        });
    }

    #[test]
    fn after_an_error_a_read_never_returns() {
        let mut socket = FailStop::new(Reset);
        let mut buf = [0; 8];
        future::block_on(async {
            assert!(socket.read(&mut buf).await.is_err());
        });
        let again = future::block_on(future::poll_once(socket.read(&mut buf)));
        assert!(again.is_none(), "a failed socket has nothing to read");
    }

    /// Reads fine, refuses writes: a socket the broker closed after saying why.
    struct ClosedForWriting(futures_lite::io::Cursor<Vec<u8>>);

    impl AsyncRead for ClosedForWriting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for ClosedForWriting {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn what_was_received_is_still_read_after_a_write_failed() {
        let reason = b"connection.close 320".to_vec();
        let mut socket = FailStop::new(ClosedForWriting(futures_lite::io::Cursor::new(
            reason.clone(),
        )));
        let mut received = Vec::new();
        future::block_on(async {
            assert!(socket.write(b"heartbeat").await.is_err());
            socket.read_to_end(&mut received).await.unwrap();
        });
        assert_eq!(received, reason);
    }

    #[test]
    fn a_healthy_socket_is_passed_through() {
        let mut socket = FailStop::new(futures_lite::io::Cursor::new(Vec::new()));
        future::block_on(async {
            assert_eq!(socket.write(b"frame").await.ok(), Some(5));
        });
        assert_eq!(socket.inner.into_inner(), b"frame");
    }
}
