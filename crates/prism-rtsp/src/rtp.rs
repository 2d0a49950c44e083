//! RTP (RFC 3550) headers, the two RTCP reports Prism sends (SR as a server, RR as a
//! client), the RTP clock → hub milliseconds mapping, and a small reorder buffer for UDP.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The fixed RTP header fields Prism uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

pub const HEADER_LEN: usize = 12;

impl RtpHeader {
    /// Parses a packet: its header and payload (CSRCs, extension and padding removed).
    /// None for anything that is not a well-formed RTP version 2 packet.
    pub fn parse(pkt: &Bytes) -> Option<(RtpHeader, Bytes)> {
        let b = pkt.get(..HEADER_LEN)?;
        if b[0] >> 6 != 2 {
            return None;
        }
        let padding = b[0] & 0x20 != 0;
        let extension = b[0] & 0x10 != 0;
        let csrc = usize::from(b[0] & 0x0F);
        let hdr = RtpHeader {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7F,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        };
        let mut start = HEADER_LEN + 4 * csrc;
        if extension {
            let e = pkt.get(start..start + 4)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([e[2], e[3]]));
        }
        let mut end = pkt.len();
        if padding {
            let pad = usize::from(*pkt.last()?);
            end = end.checked_sub(pad)?;
        }
        if start > end {
            return None;
        }
        Some((hdr, pkt.slice(start..end)))
    }

    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = 0x80;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7F);
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// An RTCP packet's type, if the buffer starts with a plausible RTCP header.
pub fn rtcp_type(pkt: &[u8]) -> Option<u8> {
    let b = pkt.get(..4)?;
    (b[0] >> 6 == 2 && (200..=206).contains(&b[1])).then_some(b[1])
}

/// The 64-bit NTP timestamp of `t`.
pub fn ntp_timestamp(t: SystemTime) -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// An RTCP sender report (no report blocks) followed by an SDES with a CNAME, as RFC 3550
/// §6.1 wants every compound packet to carry.
pub fn sender_report(ssrc: u32, ntp: u64, rtp_ts: u32, packets: u32, octets: u32) -> Bytes {
    let mut b = BytesMut::with_capacity(28 + 20);
    b.put_u8(0x80);
    b.put_u8(200);
    b.put_u16(6);
    b.put_u32(ssrc);
    b.put_u64(ntp);
    b.put_u32(rtp_ts);
    b.put_u32(packets);
    b.put_u32(octets);
    put_sdes(&mut b, ssrc);
    b.freeze()
}

/// Reception statistics of one source, for a receiver report block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceptionStats {
    pub source_ssrc: u32,
    /// Highest sequence number received, extended with its wrap count.
    pub extended_max_seq: u32,
    pub cumulative_lost: u32,
    pub fraction_lost: u8,
    /// Middle 32 bits of the NTP timestamp of the last SR received (0 if none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// An RTCP receiver report with one report block, plus SDES/CNAME.
pub fn receiver_report(ssrc: u32, s: &ReceptionStats) -> Bytes {
    let mut b = BytesMut::with_capacity(32 + 20);
    b.put_u8(0x81);
    b.put_u8(201);
    b.put_u16(7);
    b.put_u32(ssrc);
    b.put_u32(s.source_ssrc);
    b.put_u32((u32::from(s.fraction_lost) << 24) | (s.cumulative_lost & 0x00FF_FFFF));
    b.put_u32(s.extended_max_seq);
    b.put_u32(0); // interarrival jitter: not tracked
    b.put_u32(s.last_sr);
    b.put_u32(s.delay_since_last_sr);
    put_sdes(&mut b, ssrc);
    b.freeze()
}

fn put_sdes(b: &mut BytesMut, ssrc: u32) {
    const CNAME: &[u8] = b"prism";
    // header(4) + ssrc(4) + type(1) + len(1) + CNAME + end(1), padded to 32 bits.
    let len = 4 + 4 + 2 + CNAME.len() + 1;
    let padded = len.div_ceil(4) * 4;
    b.put_u8(0x81);
    b.put_u8(202);
    b.put_u16((padded / 4 - 1) as u16);
    b.put_u32(ssrc);
    b.put_u8(1);
    b.put_u8(CNAME.len() as u8);
    b.put_slice(CNAME);
    b.put_bytes(0, padded - len + 1);
}

/// The middle 32 bits of a sender report's NTP timestamp, if `pkt` (a compound RTCP
/// packet) starts with an SR.
pub fn sender_report_ntp_middle(pkt: &[u8]) -> Option<u32> {
    (rtcp_type(pkt)? == 200).then_some(())?;
    let n = pkt.get(8..16)?;
    Some(u32::from_be_bytes([n[2], n[3], n[4], n[5]]))
}

/// Maps one track's 32-bit RTP clock to hub milliseconds: unwraps it, scales it, and
/// anchors it at `base_ms` (the track's first packet's time on the session clock, so
/// tracks start aligned). A jump of more than [`Clock::MAX_JUMP`] either way (a camera
/// clock reset, a new SSRC) re-anchors at the last output plus one frame-ish step,
/// so the hub sees time continue rather than leap.
#[derive(Debug, Clone)]
pub struct Clock {
    rate: u64,
    /// Last extended RTP timestamp.
    last: Option<i64>,
    /// Extended RTP timestamp that maps to `anchor_ms`.
    anchor_ts: i64,
    anchor_ms: i64,
    last_ms: i64,
    ssrc: Option<u32>,
    rebases: u64,
}

impl Clock {
    /// Jumps larger than this are clock resets, not media.
    pub const MAX_JUMP: Duration = Duration::from_secs(10);

    pub fn new(rate: u32) -> Clock {
        Clock {
            rate: u64::from(rate.max(1)),
            last: None,
            anchor_ts: 0,
            anchor_ms: 0,
            last_ms: 0,
            ssrc: None,
            rebases: 0,
        }
    }

    /// Times the clock was re-anchored after a jump or SSRC change.
    pub fn rebases(&self) -> u64 {
        self.rebases
    }

    /// The hub time in ms of an RTP timestamp; `now_ms` is the session clock, used to
    /// anchor the first packet and re-anchor after a jump.
    pub fn to_ms(&mut self, ssrc: u32, ts: u32, now_ms: i64) -> i64 {
        let ext = match self.last {
            None => i64::from(ts),
            Some(last) => {
                // The nearest value with these low 32 bits.
                let delta = i64::from(ts.wrapping_sub(last as u32) as i32);
                last + delta
            }
        };
        let max_jump = (Self::MAX_JUMP.as_millis() as i64) * self.rate as i64 / 1000;
        let rebase = match (self.last, self.ssrc) {
            (None, _) => {
                self.anchor_ts = ext;
                self.anchor_ms = now_ms.max(0);
                false
            }
            (Some(_), Some(s)) if s != ssrc => true,
            (Some(last), _) => (ext - last).abs() > max_jump,
        };
        if rebase {
            self.rebases += 1;
            self.anchor_ts = ext;
            self.anchor_ms = (self.last_ms + 1).max(now_ms.min(self.last_ms + 1000));
        }
        self.ssrc = Some(ssrc);
        self.last = Some(ext);
        let ms = self.anchor_ms + (ext - self.anchor_ts) * 1000 / self.rate as i64;
        self.last_ms = self.last_ms.max(ms);
        ms
    }
}

/// Extended sequence numbers and loss counts for a receiver report.
#[derive(Debug, Clone, Default)]
pub struct SeqStats {
    max: Option<u32>,
    received: u64,
    base: u32,
    expected_prior: u64,
    received_prior: u64,
}

impl SeqStats {
    pub fn record(&mut self, seq: u16) {
        self.received += 1;
        match self.max {
            None => {
                self.max = Some(u32::from(seq));
                self.base = u32::from(seq);
            }
            Some(max) => {
                let delta = seq.wrapping_sub(max as u16) as i16;
                if delta > 0 {
                    self.max = Some(max.wrapping_add(delta as u32));
                }
            }
        }
    }

    /// (extended max seq, cumulative lost, fraction lost since the last call).
    pub fn report(&mut self) -> (u32, u32, u8) {
        let Some(max) = self.max else {
            return (0, 0, 0);
        };
        let expected = u64::from(max.wrapping_sub(self.base)) + 1;
        let lost = expected.saturating_sub(self.received);
        let exp_int = expected.saturating_sub(self.expected_prior);
        let rec_int = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_int = exp_int.saturating_sub(rec_int);
        let fraction = (lost_int << 8)
            .checked_div(exp_int)
            .map_or(0, |f| f.min(255) as u8);
        (max, lost.min(0x7F_FFFF) as u32, fraction)
    }
}

/// Puts UDP packets back in sequence order, holding at most `capacity` of them: a gap
/// is waited for only until the buffer fills (then the packets after it are released
/// and the gap counted as lost). Duplicates and packets older than what was released
/// are dropped.
#[derive(Debug)]
pub struct Reorder<T> {
    capacity: usize,
    next: Option<u16>,
    held: VecDeque<(u16, T)>,
    lost: u64,
    late: u64,
}

impl<T> Reorder<T> {
    pub fn new(capacity: usize) -> Self {
        Reorder {
            capacity: capacity.max(1),
            next: None,
            held: VecDeque::new(),
            lost: 0,
            late: 0,
        }
    }

    /// Packets given up on (a gap the buffer could not wait for).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Packets that came after their place was passed, or twice.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// The packets held, in order.
    pub fn held(&self) -> impl Iterator<Item = &T> {
        self.held.iter().map(|(_, t)| t)
    }

    /// Adds a packet; then [`Reorder::pop`] until None.
    pub fn push(&mut self, seq: u16, item: T) {
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next) as i16;
        if ahead < 0 {
            self.late += 1;
            return;
        }
        // Sorted insert by distance from `next`; equal = duplicate.
        let dist = |s: u16| s.wrapping_sub(next);
        let pos = self.held.partition_point(|(s, _)| dist(*s) < dist(seq));
        if self.held.get(pos).is_some_and(|(s, _)| *s == seq) {
            self.late += 1;
            return;
        }
        self.held.insert(pos, (seq, item));
    }

    /// The next packet in order, if it is here, or (when the buffer is full) the first
    /// one after a gap.
    pub fn pop(&mut self) -> Option<T> {
        let next = self.next?;
        let (seq, _) = self.held.front()?;
        if *seq != next {
            if self.held.len() < self.capacity {
                return None;
            }
            self.lost += u64::from(seq.wrapping_sub(next));
        }
        let (seq, item) = self.held.pop_front()?;
        self.next = Some(seq.wrapping_add(1));
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_garbage() {
        let h = RtpHeader {
            marker: true,
            payload_type: 96,
            sequence: 65535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 7,
        };
        let mut b = [0u8; HEADER_LEN];
        h.write(&mut b);
        let mut pkt = b.to_vec();
        pkt.extend_from_slice(b"xyz");
        let (back, payload) = RtpHeader::parse(&Bytes::from(pkt)).unwrap();
        assert_eq!(back, h);
        assert_eq!(&payload[..], b"xyz");
        // CSRC count pointing past the end, padding longer than the packet.
        assert!(RtpHeader::parse(&Bytes::from_static(&[
            0x8F, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]))
        .is_none());
        assert!(RtpHeader::parse(&Bytes::from_static(&[
            0xA0, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200
        ]))
        .is_none());
        assert!(RtpHeader::parse(&Bytes::from_static(&[
            0x90, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
        ]))
        .is_none());
        assert!(RtpHeader::parse(&Bytes::from_static(b"short")).is_none());
    }

    #[test]
    fn reports() {
        let sr = sender_report(1, 0x1122_3344_5566_7788, 9000, 10, 1000);
        assert_eq!(rtcp_type(&sr), Some(200));
        assert_eq!(sender_report_ntp_middle(&sr), Some(0x3344_5566));
        assert_eq!(sr.len() % 4, 0);
        let rr = receiver_report(2, &ReceptionStats::default());
        assert_eq!(rtcp_type(&rr), Some(201));
        assert_eq!(rr.len() % 4, 0);
    }

    #[test]
    fn clock_wraps_and_rebases() {
        let mut c = Clock::new(90_000);
        let t0 = u32::MAX - 45_000; // wraps after half a second
        assert_eq!(c.to_ms(1, t0, 100), 100);
        assert_eq!(c.to_ms(1, t0.wrapping_add(90_000), 0), 1100);
        // B-frames: a little backwards is media, not a jump.
        assert_eq!(c.to_ms(1, t0.wrapping_add(87_000), 0), 1066);
        // A camera clock reset: re-anchored just after the last output.
        let ms = c.to_ms(1, 0x4000_0000, 1200);
        assert!((1101..=1200).contains(&ms), "{ms}");
        assert_eq!(c.rebases(), 1);
        // A new SSRC re-anchors too.
        let after = c.to_ms(2, 77, 1300);
        assert!(after > ms);
        assert_eq!(c.rebases(), 2);
    }

    #[test]
    fn seq_stats() {
        let mut s = SeqStats::default();
        for q in [65534u16, 65535, 1, 2] {
            s.record(q);
        }
        let (max, lost, frac) = s.report();
        assert_eq!(max, 65536 + 2);
        assert_eq!(lost, 1);
        assert!(frac > 0);
    }

    #[test]
    fn reorder() {
        let mut r = Reorder::new(4);
        let mut out = vec![];
        for s in [10u16, 12, 11, 11, 9, 13] {
            r.push(s, s);
            while let Some(x) = r.pop() {
                out.push(x);
            }
        }
        assert_eq!(out, [10, 11, 12, 13]);
        assert_eq!(r.late(), 2);
        // A gap that never fills is skipped once the buffer is full.
        for s in [15u16, 16, 17, 18] {
            r.push(s, s);
            while let Some(x) = r.pop() {
                out.push(x);
            }
        }
        assert_eq!(out, [10, 11, 12, 13, 15, 16, 17, 18]);
        assert_eq!(r.lost(), 1);
        // Wrap-around.
        let mut r = Reorder::new(8);
        let mut out = vec![];
        for s in [65534u16, 0, 65535, 1] {
            r.push(s, s);
            while let Some(x) = r.pop() {
                out.push(x);
            }
        }
        assert_eq!(out, [65534, 65535, 0, 1]);
    }
}
