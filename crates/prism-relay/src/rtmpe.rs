//! RTMPE on a byte stream: runs prism-rtmp's sans-I/O RTMPE handshake, then RC4s every
//! byte below the chunk layer ([`CipherStream`]), so the RTMP session above is the plain one.

use crate::dial::ConnError;
use crate::handshake::{epoch_ms, handshake_random};
use bytes::{Buf, BytesMut};
use prism_metrics::ErrorReason;
use prism_rtmp::rtmpe::{is_rtmpe_version, RtmpeCiphers, RtmpeClient, RtmpeServer};
use prism_rtmp::OutQueue;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Most plaintext one write takes in (encrypted into a buffer of this size at most, which
/// must drain before the next write is taken: the egress engine's back-pressure still holds).
const WRITE_CHUNK: usize = 64 * 1024;
/// A handshake's reads: C0+C1+C2 or S0+S1+S2 are 3073 bytes.
const HANDSHAKE_READ: usize = 4096;

/// A byte stream with bytes read ahead (handed out first) and, after an RTMPE handshake, RC4
/// in both directions. Without ciphers it only replays the read-ahead.
pub struct CipherStream<S> {
    io: Pin<Box<S>>,
    /// Plaintext read before the session started (the peeked C0, or what followed C2).
    read_ahead: BytesMut,
    ciphers: Option<RtmpeCiphers>,
    /// Encrypted bytes taken from the writer, not yet written.
    pending: BytesMut,
}

impl<S> CipherStream<S> {
    fn new(io: Pin<Box<S>>, mut read_ahead: BytesMut, mut ciphers: Option<RtmpeCiphers>) -> Self {
        if let Some(c) = ciphers.as_mut() {
            c.decrypt.apply(&mut read_ahead);
        }
        CipherStream {
            io,
            read_ahead,
            ciphers,
            pending: BytesMut::new(),
        }
    }

    /// Whether this stream is RTMPE-encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.ciphers.is_some()
    }
}

impl<S: AsyncWrite> CipherStream<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match self.io.as_mut().poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.pending.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead> AsyncRead for CipherStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read_ahead.is_empty() {
            let n = this.read_ahead.len().min(buf.remaining());
            buf.put_slice(&this.read_ahead[..n]);
            this.read_ahead.advance(n);
            if this.read_ahead.is_empty() {
                // Give the handshake's read buffer back: every connection passes through here.
                this.read_ahead = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = this.io.as_mut().poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(c)) = (&polled, this.ciphers.as_mut()) {
            c.decrypt.apply(&mut buf.filled_mut()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite> AsyncWrite for CipherStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.ciphers.is_none() {
            return this.io.as_mut().poll_write_vectored(cx, bufs);
        }
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        let start = this.pending.len();
        for b in bufs {
            let room = WRITE_CHUNK - (this.pending.len() - start);
            if room == 0 {
                break;
            }
            this.pending.extend_from_slice(&b[..b.len().min(room)]);
        }
        let taken = this.pending.len() - start;
        if let Some(c) = this.ciphers.as_mut() {
            c.encrypt.apply(&mut this.pending[start..]);
        }
        // Start writing now; what the socket does not take goes out with the next write or
        // flush (the driver flushes once its queue is empty).
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => this.io.as_mut().poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => this.io.as_mut().poll_shutdown(cx),
            other => other,
        }
    }
}

/// What [`accept`] found: the stream to serve RTMP on, and whether its handshake is done.
pub(crate) struct Accepted<S> {
    pub stream: CipherStream<S>,
    /// RTMPE: the handshake is done, the session starts at `connect`.
    pub handshaken: bool,
}

/// Reads the first byte of a connection. Plain RTMP (or anything else) is handed back
/// untouched for the session's own handshake; RTMPE (C0 = 6/8/9) is refused unless `allow`,
/// else its handshake runs here, within `timeout`.
pub(crate) async fn accept<S>(
    io: S,
    allow: bool,
    timeout: Duration,
) -> Result<Accepted<S>, ConnError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut io = Box::pin(io);
    let mut input = BytesMut::with_capacity(HANDSHAKE_READ);
    let work = async {
        let n = io.read_buf(&mut input).await?;
        if n == 0 || !is_rtmpe_version(input[0]) {
            return Ok::<_, io::Error>(None);
        }
        if !allow {
            return Ok(Some(None));
        }
        let mut server = RtmpeServer::new(handshake_random(), epoch_ms());
        let mut out = OutQueue::new();
        loop {
            match server.handle_input(&mut input, &mut out) {
                Ok(Some(ciphers)) => return Ok(Some(Some(ciphers))),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if !out.is_empty() {
                io.write_all(&out.take_all()).await?;
            }
            if input.len() > 2 * HANDSHAKE_READ {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "handshake too long",
                ));
            }
            if io.read_buf(&mut input).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    let found = match tokio::time::timeout(timeout, work).await {
        Err(_) => {
            return Err(ConnError::new(
                ErrorReason::HandshakeTimeout,
                format!("no RTMP handshake within {timeout:?}"),
            ))
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(ConnError::new(
                ErrorReason::Protocol,
                format!("RTMPE handshake: {e}"),
            ))
        }
        Ok(Err(e)) => return Err(ConnError::new(ErrorReason::Io, e)),
        Ok(Ok(found)) => found,
    };
    match found {
        None => Ok(Accepted {
            stream: CipherStream::new(io, input, None),
            handshaken: false,
        }),
        Some(None) => Err(ConnError::new(
            ErrorReason::RtmpeDisabled,
            format!(
                "RTMPE (encrypted RTMP, C0 = {}) refused: [rtmp] rtmpe is off",
                input[0]
            ),
        )),
        Some(Some(ciphers)) => Ok(Accepted {
            stream: CipherStream::new(io, input, Some(ciphers)),
            handshaken: true,
        }),
    }
}

/// The client side: RTMPE handshake on a dialed stream, then the encrypted stream.
pub async fn connect<S>(io: S, timeout: Duration) -> Result<CipherStream<S>, ConnError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut io = Box::pin(io);
    let mut input = BytesMut::with_capacity(HANDSHAKE_READ);
    let work = async {
        let mut out = OutQueue::new();
        let mut client = RtmpeClient::new(handshake_random(), epoch_ms(), &mut out);
        loop {
            if !out.is_empty() {
                io.write_all(&out.take_all()).await?;
            }
            if input.len() > 2 * HANDSHAKE_READ {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "handshake too long",
                ));
            }
            if io.read_buf(&mut input).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            match client.handle_input(&mut input, &mut out) {
                Ok(Some(ciphers)) => {
                    if !out.is_empty() {
                        io.write_all(&out.take_all()).await?;
                    }
                    return Ok(ciphers);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(ConnError::new(
            ErrorReason::SetupTimeout,
            "RTMPE handshake timed out",
        )),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => Err(ConnError::new(
            ErrorReason::Refused,
            format!("RTMPE handshake: {e}"),
        )),
        Ok(Err(e)) => Err(ConnError::new(ErrorReason::Io, e)),
        Ok(Ok(ciphers)) => Ok(CipherStream::new(io, input, Some(ciphers))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duplex buffer just above S0+S1+S2 (a real socket buffer is far larger) forces
    /// partial writes of the data, so the pending-ciphertext path runs.
    #[tokio::test]
    async fn encrypted_both_ways_with_partial_writes() {
        let (a, b) = tokio::io::duplex(3200);
        let server = tokio::spawn(accept(a, true, Duration::from_secs(5)));
        let mut client = connect(b, Duration::from_secs(5)).await.unwrap();
        let accepted = server.await.unwrap().unwrap();
        assert!(accepted.handshaken);
        let mut server = accepted.stream;
        assert!(server.is_encrypted() && client.is_encrypted());

        let up: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let down: Vec<u8> = (0..150_000u32).map(|i| (i * 13 % 253) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let writer = tokio::spawn(async move {
            client.write_all(&up2).await.unwrap();
            client.flush().await.unwrap();
            let mut got = vec![0u8; down2.len()];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        let mut got = vec![0u8; up.len()];
        server.read_exact(&mut got).await.unwrap();
        assert!(got == up, "client -> server bytes differ");
        server.write_all(&down).await.unwrap();
        server.flush().await.unwrap();
        assert!(
            writer.await.unwrap() == down,
            "server -> client bytes differ"
        );
    }

    #[tokio::test]
    async fn rtmpe_refused_when_off_and_plain_rtmp_replayed() {
        let (a, mut b) = tokio::io::duplex(4096);
        b.write_all(&[6; 10]).await.unwrap();
        let e = accept(a, false, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert_eq!(e.reason, ErrorReason::RtmpeDisabled);

        let (a, mut b) = tokio::io::duplex(4096);
        b.write_all(&[3, 1, 2]).await.unwrap();
        let accepted = accept(a, true, Duration::from_secs(5)).await.unwrap();
        assert!(!accepted.handshaken && !accepted.stream.is_encrypted());
        let mut s = accepted.stream;
        let mut first = [0u8; 3];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(first, [3, 1, 2]);
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (a, _b) = tokio::io::duplex(4096);
        let e = accept(a, true, Duration::from_millis(50))
            .await
            .err()
            .unwrap();
        assert_eq!(e.reason, ErrorReason::HandshakeTimeout);
    }
}
