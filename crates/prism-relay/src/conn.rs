//! The byte plumbing shared by server and push connections: a read buffer, the pending
//! output, and cancel-safe vectored writes.

use bytes::BytesMut;
use prism_rtmp::OutQueue;
use std::io::{self, IoSlice};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// Most bytes read per call, and so the most one read can add to the input buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Segments handed to one vectored write.
const MAX_IOVECS: usize = 64;

pub(crate) struct Conn<S> {
    pub reader: ReadHalf<S>,
    pub writer: WriteHalf<S>,
    pub input: BytesMut,
    pub pending: OutQueue,
    pub bytes_written: u64,
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
        }
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
            self.pending.advance(n);
            self.bytes_written += n as u64;
        }
        self.writer.flush().await
    }
}
