//! The media side of an RTSP client, sans-I/O: which of a camera's SDP tracks are taken,
//! and RTP/RTCP packets of those tracks → FLV-style frames, with RTP clock unwrapping,
//! loss detection, receiver report statistics and counted drop reasons.

use crate::audio::{asc_rate_channels, parse_hex, AacDepacketizer, AacParams};
use crate::flv::{sprop_nals, AacToFlv, FlvFrame, OpusToFlv, VideoSkip, VideoToFlv};
use crate::rtp::{self, Clock, ReceptionStats, RtpHeader, SeqStats};
use crate::sdp::{Codec, Media, Session};
use crate::video::{DepackLimits, Depacketizer, VideoCodec};
use bytes::Bytes;

/// Why media was dropped; [`Drop::as_str`] is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// A G.711 track (RTMP targets cannot carry it): counted once per session.
    G711,
    /// Another codec Prism does not ingest (MJPEG, metadata, a second audio...): once per
    /// session.
    UnsupportedCodec,
    /// A packet that is not RTP, or a payload the depacketizer refused.
    Malformed,
    /// An access unit or frame lost to missing packets.
    Lost,
    /// Video before the first keyframe or parameter sets.
    BeforeKeyframe,
    /// Over a size bound.
    TooLarge,
    /// A payload type or SSRC of no track set up.
    Unexpected,
}

impl Drop {
    pub const ALL: [Drop; 7] = [
        Drop::G711,
        Drop::UnsupportedCodec,
        Drop::Malformed,
        Drop::Lost,
        Drop::BeforeKeyframe,
        Drop::TooLarge,
        Drop::Unexpected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Drop::G711 => "g711",
            Drop::UnsupportedCodec => "unsupported_codec",
            Drop::Malformed => "malformed",
            Drop::Lost => "lost",
            Drop::BeforeKeyframe => "before_keyframe",
            Drop::TooLarge => "too_large",
            Drop::Unexpected => "unexpected",
        }
    }
}

/// One track's depacketizer and frame builder (the video pair boxed: tracks are few).
enum TrackMedia {
    Video(Box<(Depacketizer, VideoToFlv)>),
    Aac(AacDepacketizer, AacToFlv),
    Opus(OpusToFlv),
}

/// One track set up with the camera.
pub struct Track {
    /// Index of its `m=` section in the SDP.
    pub media_index: usize,
    pub codec: Codec,
    payload_type: u8,
    media: TrackMedia,
    clock: Clock,
    seq: SeqStats,
    next_seq: Option<u16>,
    ssrc: Option<u32>,
    last_sr: Option<(u32, i64)>,
    aac_frames: Vec<(u32, Bytes)>,
}

/// The tracks of one session and its drop counts.
pub struct Ingest {
    pub tracks: Vec<Track>,
    drops: [u64; 7],
    /// Our SSRC in receiver reports.
    pub ssrc: u32,
}

impl Ingest {
    /// Picks the tracks to set up from a camera's SDP: the first H.264/H.265 video and
    /// the first AAC or Opus audio that can be configured. Everything else is counted as dropped
    /// (once) and not set up. `ssrc`: ours, for receiver reports.
    pub fn from_sdp(session: &Session, ssrc: u32) -> Ingest {
        let mut ing = Ingest {
            tracks: Vec::new(),
            drops: [0; 7],
            ssrc,
        };
        let (mut video, mut audio) = (false, false);
        for (i, m) in session.media.iter().enumerate() {
            let codec = m.codec();
            let media = match codec {
                Codec::H264 | Codec::H265 if !video => video_track(m, codec),
                Codec::Aac if !audio => aac_track(m),
                Codec::Opus if !audio => {
                    // RFC 7587: the rtpmap always says 2 channels; sprop-stereo says what is sent.
                    let stereo = !matches!(m.fmtp("sprop-stereo"), Some(v) if v.trim() == "0");
                    Some(TrackMedia::Opus(OpusToFlv::new(if stereo { 2 } else { 1 })))
                }
                Codec::G711 => {
                    ing.count(Drop::G711, 1);
                    None
                }
                _ => {
                    ing.count(Drop::UnsupportedCodec, 1);
                    None
                }
            };
            let Some(media) = media else {
                continue;
            };
            match media {
                TrackMedia::Video(..) => video = true,
                TrackMedia::Aac(..) | TrackMedia::Opus(..) => audio = true,
            }
            ing.tracks.push(Track {
                media_index: i,
                codec,
                payload_type: m.payload_type,
                media,
                clock: Clock::new(m.clock_rate),
                seq: SeqStats::default(),
                next_seq: None,
                ssrc: None,
                last_sr: None,
                aac_frames: Vec::new(),
            });
        }
        ing
    }

    fn count(&mut self, d: Drop, n: u64) {
        if let Some(i) = Drop::ALL.iter().position(|x| *x == d) {
            self.drops[i] += n;
        }
    }

    /// Running drop totals, in [`Drop::ALL`] order.
    pub fn drops(&self) -> [u64; 7] {
        self.drops
    }

    /// Bytes the depacketizers hold (partial access units and frames), for a memory
    /// budget. Linear in the tracks (two at most).
    pub fn buffered_bytes(&self) -> usize {
        self.tracks
            .iter()
            .map(|t| {
                let media = match &t.media {
                    TrackMedia::Video(v) => v.0.buffered_bytes(),
                    TrackMedia::Aac(d, _) => d.buffered_bytes(),
                    TrackMedia::Opus(_) => 0,
                };
                media + t.aac_frames.iter().map(|(_, b)| b.len()).sum::<usize>()
            })
            .sum()
    }

    /// Times the RTP clocks were re-anchored (jumps, SSRC changes).
    pub fn rebases(&self) -> u64 {
        self.tracks.iter().map(|t| t.clock.rebases()).sum()
    }

    /// One RTP packet of track `t`; `now_ms` is the session clock (for anchoring).
    /// Frames that complete go to `out`.
    pub fn push_rtp(&mut self, t: usize, pkt: &Bytes, now_ms: i64, out: &mut Vec<FlvFrame>) {
        let Some((hdr, payload)) = RtpHeader::parse(pkt) else {
            self.count(Drop::Malformed, 1);
            return;
        };
        let mut drops: Vec<(Drop, u64)> = Vec::new();
        let Some(track) = self.tracks.get_mut(t) else {
            return;
        };
        if hdr.payload_type != track.payload_type {
            self.count(Drop::Unexpected, 1);
            return;
        }
        if track.ssrc.is_some_and(|s| s != hdr.ssrc) {
            // A new source (camera restarted its encoder): sequence numbering restarts.
            track.next_seq = None;
            track.seq = SeqStats::default();
        }
        track.ssrc = Some(hdr.ssrc);
        track.seq.record(hdr.sequence);
        let gap = match track.next_seq {
            Some(n) => {
                let d = hdr.sequence.wrapping_sub(n) as i16;
                if d < 0 {
                    // Late or duplicate (TCP never; UDP after the reorder buffer gave up).
                    self.count(Drop::Unexpected, 1);
                    return;
                }
                d > 0
            }
            None => false,
        };
        track.next_seq = Some(hdr.sequence.wrapping_add(1));
        match &mut track.media {
            TrackMedia::Video(v) => {
                let (depack, flv) = &mut **v;
                if let Err(e) = depack.push(&hdr, payload, gap) {
                    drops.push((
                        match e {
                            crate::video::DepackError::TooLarge => Drop::TooLarge,
                            crate::video::DepackError::FragmentWithoutStart => Drop::Lost,
                            crate::video::DepackError::Malformed => Drop::Malformed,
                        },
                        1,
                    ));
                }
                while let Some(au) = depack.pop() {
                    let ms = track.clock.to_ms(hdr.ssrc, au.timestamp, now_ms);
                    match flv.push(&au, ms, out) {
                        Ok(()) | Err(VideoSkip::Empty) => {}
                        Err(VideoSkip::NoParameterSets | VideoSkip::BeforeKeyframe) => {
                            drops.push((Drop::BeforeKeyframe, 1))
                        }
                    }
                }
            }
            TrackMedia::Opus(flv) => {
                if gap {
                    drops.push((Drop::Lost, 1));
                }
                if !payload.is_empty() {
                    let ms = track.clock.to_ms(hdr.ssrc, hdr.timestamp, now_ms);
                    flv.push(&payload, ms, out);
                }
            }
            TrackMedia::Aac(depack, flv) => {
                if gap {
                    drops.push((Drop::Lost, 1));
                }
                track.aac_frames.clear();
                if depack
                    .push(hdr.timestamp, &payload, gap, &mut track.aac_frames)
                    .is_err()
                {
                    drops.push((Drop::Malformed, 1));
                }
                for (ts, frame) in &track.aac_frames {
                    let ms = track.clock.to_ms(hdr.ssrc, *ts, now_ms);
                    flv.push(frame, ms, out);
                }
            }
        }
        for (d, n) in drops {
            self.count(d, n);
        }
    }

    /// One RTCP packet of track `t` (a sender report is remembered for the next RR).
    pub fn push_rtcp(&mut self, t: usize, pkt: &[u8], now_ms: i64) {
        if let (Some(track), Some(mid)) =
            (self.tracks.get_mut(t), rtp::sender_report_ntp_middle(pkt))
        {
            track.last_sr = Some((mid, now_ms));
        }
    }

    /// A receiver report for track `t`, once it has received something.
    pub fn receiver_report(&mut self, t: usize, now_ms: i64) -> Option<Bytes> {
        let track = self.tracks.get_mut(t)?;
        let source_ssrc = track.ssrc?;
        let (max, lost, fraction) = track.seq.report();
        let (last_sr, delay) = match track.last_sr {
            Some((mid, at)) => (mid, ((now_ms - at).max(0) as u64 * 65536 / 1000) as u32),
            None => (0, 0),
        };
        Some(rtp::receiver_report(
            self.ssrc,
            &ReceptionStats {
                source_ssrc,
                extended_max_seq: max,
                cumulative_lost: lost,
                fraction_lost: fraction,
                last_sr,
                delay_since_last_sr: delay,
            },
        ))
    }
}

fn video_track(m: &Media, codec: Codec) -> Option<TrackMedia> {
    let (vc, params) = match codec {
        Codec::H264 => {
            // Packetization mode 2 (interleaved) is not supported; 0 and 1 are.
            if m.fmtp("packetization-mode")
                .is_some_and(|p| p.trim() == "2")
            {
                return None;
            }
            let sprop: Vec<&str> = m.fmtp("sprop-parameter-sets").into_iter().collect();
            (VideoCodec::H264, sprop_nals(&sprop))
        }
        _ => {
            let sprop: Vec<&str> = ["sprop-vps", "sprop-sps", "sprop-pps"]
                .iter()
                .filter_map(|k| m.fmtp(k))
                .collect();
            (VideoCodec::H265, sprop_nals(&sprop))
        }
    };
    Some(TrackMedia::Video(Box::new((
        Depacketizer::new(vc, DepackLimits::default()),
        VideoToFlv::new(vc, &params),
    ))))
}

fn aac_track(m: &Media) -> Option<TrackMedia> {
    let config = parse_hex(m.fmtp("config")?)?;
    asc_rate_channels(&config)?;
    let num = |k: &str, d: u8| -> Option<u8> {
        match m.fmtp(k) {
            Some(v) => v.trim().parse().ok().filter(|n: &u8| *n <= 16),
            None => Some(d),
        }
    };
    let params = AacParams {
        size_length: num("sizelength", 13)?,
        index_length: num("indexlength", 3)?,
        index_delta_length: num("indexdeltalength", 3)?,
    };
    Some(TrackMedia::Aac(
        AacDepacketizer::new(params),
        AacToFlv::new(config),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn offer() -> sdp::Session {
        let sprop = format!(
            "{},{}",
            crate::auth::base64_encode(SPS),
            crate::auth::base64_encode(PPS)
        );
        let text = format!(
            "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets={sprop}\r\na=control:v\r\n\
             m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/1\r\na=fmtp:97 streamtype=5;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1208\r\n\
             m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
             m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n"
        );
        sdp::parse(text.as_bytes()).unwrap()
    }

    fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Bytes {
        let mut h = [0u8; 12];
        RtpHeader {
            marker,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: 42,
        }
        .write(&mut h);
        let mut v = h.to_vec();
        v.extend_from_slice(payload);
        Bytes::from(v)
    }

    #[test]
    fn camera_session_to_frames() {
        let mut ing = Ingest::from_sdp(&offer(), 1);
        assert_eq!(ing.tracks.len(), 2);
        let d = ing.drops();
        assert_eq!((d[0], d[1]), (1, 1), "g711 and metadata counted");
        let mut out = vec![];
        // P-frame before any keyframe: dropped, counted.
        ing.push_rtp(0, &rtp(96, 1, 1000, true, &[0x41, 1]), 0, &mut out);
        assert!(out.is_empty());
        // IDR over two FU-A packets, then audio.
        ing.push_rtp(0, &rtp(96, 2, 4000, false, &[28, 0x85, 1, 2]), 10, &mut out);
        ing.push_rtp(0, &rtp(96, 3, 4000, true, &[28, 0x45, 3]), 10, &mut out);
        let mut aac = crate::audio::aac_au_header(3).to_vec();
        aac.extend_from_slice(&[7, 7, 7]);
        ing.push_rtp(1, &rtp(97, 9, 500, true, &aac), 20, &mut out);
        ing.push_rtp(1, &rtp(97, 10, 1524, true, &aac), 40, &mut out);
        let kinds: Vec<(bool, bool)> = out
            .iter()
            .map(|f| (f.sequence_header, f.keyframe))
            .collect();
        assert_eq!(
            kinds,
            [
                (true, false),
                (false, true),
                (true, false),
                (false, false),
                (false, false)
            ]
        );
        // Audio timestamps follow the RTP clock: 1024 samples at 44.1 kHz = 23 ms.
        assert_eq!(out[4].timestamp - out[3].timestamp, 23);
        assert_eq!(ing.drops()[4], 1, "before_keyframe");
        assert!(ing.receiver_report(0, 100).is_some());
        assert!(ing.receiver_report(5, 100).is_none());
        // Wrong payload type and garbage.
        ing.push_rtp(0, &rtp(100, 4, 4000, true, &[0x41]), 50, &mut out);
        ing.push_rtp(0, &Bytes::from_static(b"junk"), 50, &mut out);
        assert_eq!(ing.drops()[6], 1);
        assert_eq!(ing.drops()[2], 1);
    }

    #[test]
    fn jumping_sequence_numbers_and_clock() {
        let mut ing = Ingest::from_sdp(&offer(), 1);
        let mut out = vec![];
        let sps_pps_idr = |seq: u16, ts: u32| {
            let mut stap = vec![24];
            for n in [SPS, PPS, &[0x65, 1, 2, 3][..]] {
                stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
                stap.extend_from_slice(n);
            }
            rtp(96, seq, ts, true, &stap)
        };
        ing.push_rtp(0, &sps_pps_idr(100, 0), 0, &mut out);
        let mut x: u32 = 5;
        for i in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Sequence numbers and timestamps all over the place.
            ing.push_rtp(
                0,
                &rtp(96, x as u16, x.rotate_left(7), i % 2 == 0, &[0x41, 1]),
                i as i64,
                &mut out,
            );
        }
        // Every timestamp stays within the session (no leap to 2^32 / 90).
        assert!(
            out.iter().all(|f| f.timestamp < 200_000),
            "{:?}",
            out.iter().map(|f| f.timestamp).max()
        );
        assert!(ing.rebases() > 0);
        let ts: Vec<u32> = out
            .iter()
            .filter(|f| !f.sequence_header)
            .map(|f| f.timestamp)
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    }
}
