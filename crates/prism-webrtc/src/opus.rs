//! Opus between WebRTC (RFC 7587: one Opus packet per RTP packet, 48 kHz clock) and the
//! hub's Enhanced RTMP audio form (`[SoundFormat=9][AudioPacketType]` + `Opus` FourCC):
//! SequenceStart carries an OpusHead (RFC 7845 §5.1), CodedFrames one Opus packet.
//!
//! Only Opus passes through here. AAC sources are not sent over WHEP, and WHIP Opus is not
//! turned into AAC: that is the audio bridge's job (prism-audio), plugged in by the
//! transport ahead of these functions.

const SEQUENCE_START: u8 = 0;
const CODED_FRAMES: u8 = 1;
/// The RTP clock rate of Opus, whatever the coded rate (RFC 7587 §4.1).
pub const RTP_RATE: u32 = 48_000;
/// An Opus packet is at most 120 ms of 48 kHz stereo at 510 kbit/s: well under this.
pub const MAX_PACKET: usize = 8 * 1024;

/// The E-RTMP sequence header for a stereo 48 kHz Opus track (what browsers send: the
/// `opus/48000/2` of the SDP).
pub fn sequence_header(channels: u8) -> Vec<u8> {
    let mut v = vec![0x90 | SEQUENCE_START];
    v.extend_from_slice(b"Opus");
    v.extend_from_slice(b"OpusHead");
    v.push(1); // version
    v.push(channels.max(1));
    v.extend_from_slice(&312u16.to_le_bytes()); // pre-skip: libopus' usual 6.5 ms
    v.extend_from_slice(&RTP_RATE.to_le_bytes()); // input sample rate (informative)
    v.extend_from_slice(&0u16.to_le_bytes()); // output gain
    v.push(0); // channel mapping family 0: mono or stereo
    v
}

/// One Opus packet as an E-RTMP CodedFrames body; `None` if empty or oversized.
pub fn frame(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.is_empty() || packet.len() > MAX_PACKET {
        return None;
    }
    let mut v = Vec::with_capacity(packet.len() + 5);
    v.push(0x90 | CODED_FRAMES);
    v.extend_from_slice(b"Opus");
    v.extend_from_slice(packet);
    Some(v)
}

/// What an FLV audio tag body is, as far as WHEP cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Audio<'a> {
    /// An Opus packet to send.
    OpusPacket(&'a [u8]),
    /// An Opus sequence header (nothing to send).
    OpusHeader,
    /// Anything else (AAC, MP3, ...): WHEP cannot send it without the audio bridge.
    Other,
}

/// Classifies an FLV audio tag body.
pub fn classify(p: &[u8]) -> Audio<'_> {
    let Some(&b0) = p.first() else {
        return Audio::Other;
    };
    if b0 >> 4 != 9 || p.get(1..5) != Some(b"Opus") {
        return Audio::Other;
    }
    match b0 & 0x0F {
        SEQUENCE_START => Audio::OpusHeader,
        CODED_FRAMES if p.len() > 5 => Audio::OpusPacket(&p[5..]),
        _ => Audio::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_classify() {
        let f = frame(&[0xfc, 1, 2]).unwrap();
        assert_eq!(classify(&f), Audio::OpusPacket(&[0xfc, 1, 2]));
        let h = sequence_header(2);
        assert_eq!(classify(&h), Audio::OpusHeader);
        assert_eq!(&h[5..13], b"OpusHead");
        assert_eq!(h.len(), 5 + 19);
        assert_eq!(classify(&[0xaf, 1, 0x21]), Audio::Other, "AAC");
        assert_eq!(classify(&[]), Audio::Other);
        assert_eq!(classify(&[0x91, b'O', b'p']), Audio::Other);
        assert_eq!(classify(&[0x91, b'O', b'p', b'u', b's']), Audio::Other);
        assert!(frame(&[]).is_none());
        assert!(frame(&vec![0; MAX_PACKET + 1]).is_none());
    }
}
