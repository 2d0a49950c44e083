//! The media socket's send side: a session's datagrams to its peer leave in batches, one
//! `sendmsg` with UDP GSO (`UDP_SEGMENT`) per run of equal-sized datagrams, where the kernel
//! supports it. A video frame is a run of full-MTU RTP packets and a shorter last one, so
//! a WHEP viewer's frame is one system call and one trip down the IP stack instead of ~10
//! (the per-datagram `sendto` path was a quarter of Prism's CPU at 300 viewers).

use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
use std::io;
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Bytes in one GSO send: the kernel's limit is one IP datagram (64 KiB) of payload.
const MAX_BATCH_BYTES: usize = 60_000;

/// The shared media socket with the kernel features probed at bind.
pub(crate) struct MediaSocket {
    socket: UdpSocket,
    state: UdpSocketState,
}

impl MediaSocket {
    pub fn new(socket: UdpSocket) -> io::Result<MediaSocket> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(MediaSocket { socket, state })
    }

    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams one `sendmsg` may carry (1 without GSO, or after the kernel refused it).
    fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Sends `contents` to `to`, cut into `segment`-byte datagrams (the last may be shorter).
    /// A full socket buffer drops them, as the network would; the peer's NACKs recover
    /// what matters.
    fn send(&self, to: SocketAddr, contents: &[u8], segment: usize) {
        let segment_size = (segment > 0 && contents.len() > segment).then_some(segment);
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        let sent = self.socket.try_io(Interest::WRITABLE, || {
            self.state
                .try_send(UdpSockRef::from(&self.socket), &transmit)
        });
        match sent {
            Err(e) if segment_size.is_some() && e.kind() != io::ErrorKind::WouldBlock => {
                // The device refused segmentation (quinn-udp stops offering it from now
                // on): send this batch a datagram at a time.
                for d in contents.chunks(segment) {
                    let _ = self.socket.try_send_to(d, to);
                }
            }
            _ => {}
        }
    }
}

thread_local! {
    /// The batch bytes, one buffer per runtime worker: a session's drain runs without
    /// awaiting, so it never shares one, and no session keeps (or allocates) its own.
    static BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(MAX_BATCH_BYTES));
}

/// One session's datagrams waiting to go out together, all to one address. Holds only the
/// shape of the run; the bytes are in this thread's [`BUF`], so a batch must be flushed
/// before its task can move (before the next `.await`).
#[derive(Default)]
pub(crate) struct SendBatch {
    len: usize,
    to: Option<SocketAddr>,
    /// The size of every datagram but possibly the last.
    segment: usize,
    count: usize,
}

impl SendBatch {
    /// Adds a datagram, first sending what is batched if this one cannot join it.
    pub fn push(&mut self, socket: &MediaSocket, to: SocketAddr, datagram: &[u8]) {
        if self.count > 0 {
            // A shorter datagram ends a run: only full ones may follow each other.
            let run_open = self.len == self.count * self.segment;
            let joins = self.to == Some(to)
                && run_open
                && datagram.len() <= self.segment
                && self.count < socket.max_segments()
                && self.len + datagram.len() <= MAX_BATCH_BYTES;
            if !joins {
                self.flush(socket);
            }
        }
        if self.count == 0 {
            self.to = Some(to);
            self.segment = datagram.len();
        }
        BUF.with_borrow_mut(|b| {
            b.truncate(self.len);
            b.extend_from_slice(datagram);
        });
        self.len += datagram.len();
        self.count += 1;
    }

    /// Sends what is batched.
    pub fn flush(&mut self, socket: &MediaSocket) {
        if let (Some(to), true) = (self.to, self.count > 0) {
            BUF.with_borrow(|b| socket.send(to, &b[..self.len], self.segment));
        }
        self.len = 0;
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn bound() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// What a peer sees: every datagram whole, in order, each on its own, whether the
    /// kernel segmented a batch (GSO) or it went one by one.
    #[tokio::test]
    async fn a_batch_arrives_as_the_datagrams_pushed() {
        let socket = MediaSocket::new(bound().await).unwrap();
        // As in the server, where the receive loop has long polled the socket: tokio's
        // `try_io` trusts the readiness it has seen, and a new socket has seen none.
        socket.socket.writable().await.unwrap();
        // Linux has had UDP GSO since 4.18: the batched path is the one under test here.
        #[cfg(target_os = "linux")]
        assert!(socket.max_segments() > 1, "no UDP GSO on this kernel");
        let (a, b) = (bound().await, bound().await);
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let datagram = |n: usize, len: usize| vec![n as u8; len];
        // A frame: 10 full packets and a short last one; then an audio packet; then a run
        // to another peer; then more full packets than one batch may hold.
        let mut to_a_sent = Vec::new();
        let mut batch = SendBatch::default();
        for n in 0..10 {
            to_a_sent.push(datagram(n, 1200));
        }
        to_a_sent.push(datagram(10, 700));
        to_a_sent.push(datagram(11, 90));
        for d in &to_a_sent {
            batch.push(&socket, to_a, d);
        }
        batch.push(&socket, to_b, &datagram(99, 1200));
        for n in 0..70 {
            let d = datagram(12 + n, 1000);
            batch.push(&socket, to_a, &d);
            to_a_sent.push(d);
        }
        batch.flush(&socket);
        let mut buf = vec![0u8; 65536];
        for (i, want) in to_a_sent.iter().enumerate() {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), a.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("datagram {i} within 5 s"))
                .unwrap();
            assert_eq!(&buf[..n], &want[..]);
        }
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), b.recv_from(&mut buf))
            .await
            .expect("b's datagram within 5 s")
            .unwrap();
        assert_eq!(&buf[..n], &datagram(99, 1200)[..]);
    }
}
