//! The outgoing byte queue every encoder in this crate writes into.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Pieces up to this size are kept inline (chunk headers are at most 18 bytes).
const INLINE: usize = 30;

/// One piece of queued output.
#[derive(Debug, Clone)]
enum Segment {
    /// A small piece copied in place: no allocation and no reference counting, which matters
    /// because every message to every peer starts with one.
    Inline {
        buf: [u8; INLINE],
        start: u8,
        end: u8,
    },
    Shared(Bytes),
}

impl Segment {
    fn as_slice(&self) -> &[u8] {
        match self {
            Segment::Inline { buf, start, end } => &buf[*start as usize..*end as usize],
            Segment::Shared(b) => b,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Drops the first `n` bytes (`n` < len).
    fn skip(&mut self, n: usize) {
        match self {
            Segment::Inline { start, .. } => *start += n as u8,
            Segment::Shared(b) => {
                let _ = b.split_to(n);
            }
        }
    }
}

/// Bytes waiting to be written, as a list of segments.
///
/// Small pieces (chunk headers, control messages) are copied inline; large payloads are
/// pushed as `Bytes` slices that share the publisher's buffer, so fanning one message out
/// to many peers never copies its payload. Drivers hand the segments to a vectored write.
#[derive(Debug, Default)]
pub struct OutQueue {
    segments: VecDeque<Segment>,
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
        if data.len() > INLINE {
            self.put_bytes(Bytes::copy_from_slice(data));
            return;
        }
        let mut buf = [0u8; INLINE];
        buf[..data.len()].copy_from_slice(data);
        self.len += data.len();
        self.segments.push_back(Segment::Inline {
            buf,
            start: 0,
            end: data.len() as u8,
        });
    }

    /// Appends a shared payload without copying it.
    pub fn put_bytes(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.segments.push_back(Segment::Shared(data));
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
            *slot = std::io::IoSlice::new(seg.as_slice());
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
            let len = front.len();
            if len <= n {
                n -= len;
                self.segments.pop_front();
            } else {
                front.skip(n);
                n = 0;
            }
        }
    }

    /// Removes and returns everything queued as one contiguous buffer (copies; for tests
    /// and transports that need contiguous bytes, such as the HTTP tunnel).
    pub fn take_all(&mut self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.len);
        for seg in self.segments.drain(..) {
            buf.extend_from_slice(seg.as_slice());
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
        // A large slice is copied into a shared segment; partial advances inside inline ones.
        q.put_slice(&[7u8; 100]);
        q.put_slice(b"xyz");
        q.advance(101);
        assert_eq!(&q.take_all()[..], b"yz");
    }
}
