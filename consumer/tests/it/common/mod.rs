//! What the consumer's tests share: an in-memory stdout to watch.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{io::AsyncWrite, sync::Notify, time::timeout};

/// An in-memory stdout that several consumers can share, and that wakes a
/// waiter whenever lines arrive.
#[derive(Clone, Default)]
pub struct SharedOutput {
    bytes: Arc<Mutex<Vec<u8>>>,
    written: Arc<Notify>,
}

impl SharedOutput {
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.bytes.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub async fn wait_for_lines(&self, count: usize) {
        while self.lines().len() < count {
            let _ = timeout(Duration::from_millis(50), self.written.notified()).await;
        }
    }
}

impl AsyncWrite for SharedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.bytes.lock().unwrap().extend_from_slice(buf);
        self.written.notify_waiters();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
