//! The byte plumbing shared by server and push connections: a read buffer, the pending
//! output, and cancel-safe vectored writes.

use bytes::BytesMut;
use prism_rtmp::OutQueue;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;

/// Most bytes read per call, and so the most one read can add to the input buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Segments handed to one vectored write.
pub(crate) const MAX_IOVECS: usize = 32;

pub(crate) struct Conn<S> {
    pub reader: ReadHalf<S>,
    pub writer: WriteHalf<S>,
    pub input: BytesMut,
    pub pending: OutQueue,
    pub bytes_written: u64,
    /// Since when the pending output has waited without any write progress: the last write,
    /// or when output was queued while nothing was pending. A stalled peer is measured
    /// from here, never from an old write before an idle spell.
    pub stalled_since: Instant,
}

impl<S: AsyncRead + AsyncWrite> Conn<S> {
    pub fn new(io: S) -> Self {
        let (reader, writer) = tokio::io::split(io);
        Conn {
            reader,
            writer,
            input: BytesMut::with_capacity(READ_CHUNK),
            pending: OutQueue::new(),
            bytes_written: 0,
            stalled_since: Instant::now(),
        }
    }

    /// Moves a session's output to the pending queue.
    pub fn queue(&mut self, out: &mut OutQueue) {
        if out.is_empty() {
            return;
        }
        if self.pending.is_empty() {
            self.stalled_since = Instant::now();
        }
        self.pending.append(out);
    }

    /// When a peer that has not taken pending output since `stalled_since` is given up on;
    /// None while nothing is pending.
    pub fn write_deadline(&self, timeout: Duration) -> Option<Instant> {
        (!self.pending.is_empty()).then(|| self.stalled_since + timeout)
    }

    /// Records `n` bytes written.
    pub fn wrote(&mut self, n: usize) {
        self.pending.advance(n);
        self.bytes_written += n as u64;
        self.stalled_since = Instant::now();
    }

    /// Writes what the socket takes right now without waiting, so a batch of frames goes
    /// out in the same wake-up that produced it; returns the bytes written (0 if the socket
    /// is full: the select loop's write branch then waits for it).
    pub async fn write_now(&mut self) -> io::Result<usize> {
        let mut total = 0;
        while !self.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.pending.chunks_vectored(&mut slices);
            let writer = &mut self.writer;
            let polled = std::future::poll_fn(|cx| {
                Poll::Ready(Pin::new(&mut *writer).poll_write_vectored(cx, &slices[..n]))
            })
            .await;
            match polled {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => {
                    self.wrote(written);
                    total += written;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if self.pending.is_empty() {
            // TLS streams may keep encrypted bytes back after accepting a write.
            let writer = &mut self.writer;
            let flushed =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *writer).poll_flush(cx))).await;
            if let Poll::Ready(Err(e)) = flushed {
                return Err(e);
            }
        }
        Ok(total)
    }

    /// Reads once; Ok(0) means the peer closed.
    pub async fn read(&mut self) -> io::Result<usize> {
        read_some(&mut self.reader, &mut self.input).await
    }
}

/// Reads once into `input`; Ok(0) means the peer closed. Cancel-safe.
pub(crate) async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    input: &mut BytesMut,
) -> io::Result<usize> {
    if input.capacity() - input.len() < READ_CHUNK / 4 {
        input.reserve(READ_CHUNK);
    }
    reader.read_buf(input).await
}

/// One vectored write of pending bytes. Cancel-safe: bytes count as written only once the
/// write returned, and the caller advances the queue then.
pub(crate) async fn write_some<W: AsyncWrite + Unpin>(
    writer: &mut W,
    pending: &OutQueue,
) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let n = pending.chunks_vectored(&mut slices);
    let written = writer.write_vectored(&slices[..n]).await?;
    if written == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(written)
}

impl<S: AsyncRead + AsyncWrite> Conn<S> {
    /// Writes everything pending (used outside select loops: handshakes, final flushes).
    pub async fn flush_all(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let n = write_some(&mut self.writer, &self.pending).await?;
            self.wrote(n);
        }
        self.writer.flush().await
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Output held for `write_merge_ms` (targets and players) this large goes out at once: the
/// merge has paid off.
pub(crate) const MERGE_FLUSH_BYTES: usize = 64 * 1024;

/// When output held for `write_merge_ms` is written: the next multiple of `merge` on one
/// process-wide grid. Every held connection flushes on the same ticks, so the workers
/// write in bursts and sleep between them rather than waking for each connection's own
/// deadline, and a frame waits less than `merge` (half of it on average).
pub(crate) fn merge_deadline(now: Instant, merge: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now);
    let step = merge.as_nanos().max(1);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let ticks = since / step + 1;
    epoch + Duration::from_nanos(u64::try_from(ticks * step).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_deadlines_share_a_grid() {
        let merge = Duration::from_millis(20);
        let now = Instant::now();
        let a = merge_deadline(now, merge);
        let b = merge_deadline(now + Duration::from_millis(7), merge);
        assert!(a > now && a <= now + merge);
        // Two connections holding within one tick flush together...
        if b < a + merge && b > a - merge {
            assert!(b == a || b == a + merge);
        }
        // ...and the ticks are `merge` apart.
        assert_eq!(merge_deadline(a, merge), a + merge);
    }
}
