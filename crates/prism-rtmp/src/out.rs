//! The outgoing byte queue every encoder in this crate writes into.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Bytes waiting to be written, as a list of segments.
///
/// Small pieces (chunk headers, control messages) are written into `scratch` and split off;
/// large payloads are pushed as `Bytes` slices that share the publisher's buffer, so fanning
/// one message out to many peers never copies its payload. Drivers hand the segments to a
/// vectored write.
#[derive(Debug, Default)]
pub struct OutQueue {
    segments: VecDeque<Bytes>,
    scratch: BytesMut,
    len: usize,
}

impl OutQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes copied from `data` (for small headers and control messages).
    pub fn put_slice(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.scratch.capacity() - self.scratch.len() < data.len() {
            self.scratch.reserve(data.len().max(4096));
        }
        self.scratch.extend_from_slice(data);
        let piece = self.scratch.split().freeze();
        self.push_merged(piece);
    }

    /// Appends a shared payload without copying it.
    pub fn put_bytes(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.segments.push_back(data);
    }

    fn push_merged(&mut self, piece: Bytes) {
        self.len += piece.len();
        self.segments.push_back(piece);
    }

    /// Moves everything queued in `other` to the end of this queue (no copying).
    pub fn append(&mut self, other: &mut OutQueue) {
        self.len += other.len;
        other.len = 0;
        self.segments.append(&mut other.segments);
    }

    /// Total bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `dst` with up to `dst.len()` segments for a vectored write; returns how many.
    pub fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, seg) in dst.iter_mut().zip(self.segments.iter()) {
            *slot = std::io::IoSlice::new(seg);
            n += 1;
        }
        n
    }

    /// Drops `n` written bytes from the front.
    pub fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.segments.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }

    /// Removes and returns everything queued as one contiguous buffer (copies; for tests
    /// and transports that need contiguous bytes, such as the HTTP tunnel).
    pub fn take_all(&mut self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.len);
        for seg in self.segments.drain(..) {
            buf.extend_from_slice(&seg);
        }
        self.len = 0;
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_segments() {
        let mut q = OutQueue::new();
        q.put_slice(b"abc");
        q.put_bytes(Bytes::from_static(b"defgh"));
        q.put_slice(b"ij");
        assert_eq!(q.len(), 10);
        q.advance(4);
        assert_eq!(q.len(), 6);
        assert_eq!(&q.take_all()[..], b"efghij");
        assert!(q.is_empty());
    }
}
