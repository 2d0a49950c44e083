//! Enhanced RTMP v2 audio/video message bodies: ModEx prefixes (with the nanosecond
//! timestamp offset), multitrack packets (one track, many tracks of one codec, many tracks
//! of many codecs) and the FourCC codecs, parsed without copying; and the rebuild of one
//! track as a plain single-track message for peers that cannot take multitrack.
//!
//! Layout (veovera enhanced-rtmp v2, "ExVideoTagHeader" / "ExAudioTagHeader"):
//! ```text
//! video: [IsExHeader:1 FrameType:3 PacketType:4]   audio: [SoundFormat=9:4 PacketType:4]
//!   while PacketType == ModEx(7):
//!     size = UI8 + 1 (256 => UI16 + 1), data[size], [ModExType:4 PacketType:4]
//!     ModExType 0 = TimestampOffsetNano: data = UI24 nanoseconds
//!   video FrameType 5 (command) and PacketType != Metadata: UI8 command, no body
//!   PacketType == Multitrack (video 6, audio 5):
//!     [AvMultitrackType:4 PacketType:4], FourCC unless ManyTracksManyCodecs
//!     per track: [FourCC if ManyTracksManyCodecs] UI8 trackId [UI24 size unless OneTrack] body
//!   else: FourCC, body
//! ```

use std::fmt;

/// Video `ExVideoPacketType` values.
pub mod video_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    pub const MULTITRACK: u8 = 6;
    pub const MOD_EX: u8 = 7;
}

/// Audio `AudioPacketType` values.
pub mod audio_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const MULTICHANNEL_CONFIG: u8 = 4;
    pub const MULTITRACK: u8 = 5;
    pub const MOD_EX: u8 = 7;
}

/// Video frame type 5: a command frame (no media body).
pub const FRAME_TYPE_COMMAND: u8 = 5;

/// `AvMultitrackType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultitrackType {
    OneTrack,
    ManyTracks,
    ManyTracksManyCodecs,
}

/// Why a body is not a well-formed E-RTMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not an E-RTMP extended header (legacy FLV codec id / sound format).
    NotExtended,
    /// The body ends inside a field.
    Truncated(&'static str),
    /// An `AvMultitrackType` the spec does not define.
    BadMultitrackType(u8),
    /// A multitrack packet whose inner packet type is Multitrack or ModEx again.
    NestedPacketType(u8),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotExtended => write!(f, "not an Enhanced RTMP header"),
            ParseError::Truncated(what) => write!(f, "E-RTMP message truncated in {what}"),
            ParseError::BadMultitrackType(t) => write!(f, "unknown AvMultitrackType {t}"),
            ParseError::NestedPacketType(t) => {
                write!(f, "packet type {t} not allowed inside a multitrack packet")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// One track of a message: its id (0 for a single-track message), codec and body (what
/// follows the FourCC / track id / size: for video CodedFrames that starts with the SI24
/// composition time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track<'a> {
    pub id: u8,
    pub fourcc: [u8; 4],
    pub body: &'a [u8],
}

/// A parsed E-RTMP audio or video message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExMessage<'a> {
    /// Video frame type (1 key, 2 inter, 3 disposable, 5 command); 0 for audio.
    pub frame_type: u8,
    /// The packet type that applies to every track (never ModEx or Multitrack).
    pub packet_type: u8,
    /// `Some` when the message was a Multitrack packet.
    pub multitrack: Option<MultitrackType>,
    /// ModEx TimestampOffsetNano: nanoseconds to add to the millisecond timestamp.
    pub nano_offset: Option<u32>,
    /// Video command (frame type 5) byte, when present.
    pub command: Option<u8>,
    pub tracks: Vec<Track<'a>>,
}

struct Reader<'a> {
    p: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        if self.p.len() < n {
            return Err(ParseError::Truncated(what));
        }
        let (h, t) = self.p.split_at(n);
        self.p = t;
        Ok(h)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(self.take(1, what)?[0])
    }
    fn u24(&mut self, what: &'static str) -> Result<usize, ParseError> {
        let b = self.take(3, what)?;
        Ok((usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    fn fourcc(&mut self) -> Result<[u8; 4], ParseError> {
        let b = self.take(4, "FourCC")?;
        Ok([b[0], b[1], b[2], b[3]])
    }
}

/// True when a video body uses the E-RTMP extended header.
pub fn is_ex_video(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x80 != 0)
}

/// True when an audio body uses the E-RTMP extended header (SoundFormat 9).
pub fn is_ex_audio(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b >> 4 == 9)
}

/// Parses an E-RTMP video message body.
pub fn parse_video(p: &[u8]) -> Result<ExMessage<'_>, ParseError> {
    if !is_ex_video(p) {
        return Err(ParseError::NotExtended);
    }
    parse(p, true)
}

/// Parses an E-RTMP audio message body.
pub fn parse_audio(p: &[u8]) -> Result<ExMessage<'_>, ParseError> {
    if !is_ex_audio(p) {
        return Err(ParseError::NotExtended);
    }
    parse(p, false)
}

fn parse(p: &[u8], video: bool) -> Result<ExMessage<'_>, ParseError> {
    let (mod_ex, multitrack_pt) = if video {
        (video_packet::MOD_EX, video_packet::MULTITRACK)
    } else {
        (audio_packet::MOD_EX, audio_packet::MULTITRACK)
    };
    let mut r = Reader { p };
    let b0 = r.u8("header")?;
    let frame_type = if video { (b0 >> 4) & 0x07 } else { 0 };
    let mut packet_type = b0 & 0x0F;
    let mut nano_offset = None;
    // Each ModEx prefix costs at least 2 bytes, so this loop is bounded by the body size.
    while packet_type == mod_ex {
        let mut size = usize::from(r.u8("ModEx size")?) + 1;
        if size == 256 {
            let b = r.take(2, "ModEx size")?;
            size = usize::from(u16::from_be_bytes([b[0], b[1]])) + 1;
        }
        let data = r.take(size, "ModEx data")?;
        let b = r.u8("ModEx type")?;
        let mod_ex_type = b >> 4;
        packet_type = b & 0x0F;
        // TimestampOffsetNano; unknown ModEx types are skipped as the spec asks.
        if mod_ex_type == 0 && data.len() >= 3 {
            nano_offset =
                Some((u32::from(data[0]) << 16) | (u32::from(data[1]) << 8) | u32::from(data[2]));
        }
    }
    let mut msg = ExMessage {
        frame_type,
        packet_type,
        multitrack: None,
        nano_offset,
        command: None,
        tracks: Vec::new(),
    };
    if video && frame_type == FRAME_TYPE_COMMAND && packet_type != video_packet::METADATA {
        msg.command = Some(r.u8("video command")?);
        return Ok(msg);
    }
    if packet_type != multitrack_pt {
        let fourcc = r.fourcc()?;
        msg.tracks.push(Track {
            id: 0,
            fourcc,
            body: r.p,
        });
        return Ok(msg);
    }
    let b = r.u8("multitrack type")?;
    let mt = match b >> 4 {
        0 => MultitrackType::OneTrack,
        1 => MultitrackType::ManyTracks,
        2 => MultitrackType::ManyTracksManyCodecs,
        t => return Err(ParseError::BadMultitrackType(t)),
    };
    msg.packet_type = b & 0x0F;
    if msg.packet_type == multitrack_pt || msg.packet_type == mod_ex {
        return Err(ParseError::NestedPacketType(msg.packet_type));
    }
    msg.multitrack = Some(mt);
    let shared = if mt == MultitrackType::ManyTracksManyCodecs {
        None
    } else {
        Some(r.fourcc()?)
    };
    loop {
        let fourcc = match shared {
            Some(cc) => cc,
            None => r.fourcc()?,
        };
        let id = r.u8("track id")?;
        let body = if mt == MultitrackType::OneTrack {
            std::mem::take(&mut r.p)
        } else {
            let n = r.u24("track size")?;
            r.take(n, "track body")?
        };
        msg.tracks.push(Track { id, fourcc, body });
        if r.p.is_empty() {
            break;
        }
    }
    Ok(msg)
}

/// Codec short name of an E-RTMP FourCC (same names as [`crate::media::MediaInfo::codec`]).
pub fn fourcc_name(cc: &[u8]) -> &'static str {
    crate::media::fourcc_name(cc)
}

/// Rebuilds track `id` of an audio or video message as a plain single-track message, for
/// a peer that cannot take multitrack: H.264 (`avc1`) and AAC (`mp4a`) come out as legacy
/// FLV tags (every RTMP server and player reads those), other codecs as E-RTMP v1
/// single-track messages. The ModEx nanosecond offset is dropped (v1 has no place for it).
/// `None` when the message has no track `id` or is a command/metadata message.
pub fn extract_track(msg: &ExMessage<'_>, video: bool, id: u8) -> Option<Vec<u8>> {
    let t = msg.tracks.iter().find(|t| t.id == id)?;
    if video {
        extract_video(msg, t)
    } else {
        extract_audio(msg, t)
    }
}

fn extract_video(msg: &ExMessage<'_>, t: &Track<'_>) -> Option<Vec<u8>> {
    use video_packet::*;
    let pt = msg.packet_type;
    if msg.command.is_some() || pt == METADATA {
        return None;
    }
    let ft = msg.frame_type & 0x07;
    if &t.fourcc == b"avc1" {
        // Legacy AVC: [FrameType:4 CodecID=7:4][AVCPacketType][SI24 cts][data]
        let mut out = Vec::with_capacity(t.body.len() + 5);
        out.push((ft << 4) | 7);
        match pt {
            SEQUENCE_START => out.extend_from_slice(&[0, 0, 0, 0]),
            CODED_FRAMES => {
                if t.body.len() < 3 {
                    return None;
                }
                out.push(1);
            }
            CODED_FRAMES_X => out.extend_from_slice(&[1, 0, 0, 0]),
            SEQUENCE_END => out.extend_from_slice(&[2, 0, 0, 0]),
            _ => return None,
        }
        out.extend_from_slice(t.body);
        return Some(out);
    }
    let mut out = Vec::with_capacity(t.body.len() + 5);
    out.push(0x80 | (ft << 4) | pt);
    out.extend_from_slice(&t.fourcc);
    out.extend_from_slice(t.body);
    Some(out)
}

fn extract_audio(msg: &ExMessage<'_>, t: &Track<'_>) -> Option<Vec<u8>> {
    use audio_packet::*;
    let pt = msg.packet_type;
    if &t.fourcc == b"mp4a" {
        // Legacy AAC: [SoundFormat=10 rate=3 size=1 type=1][AACPacketType][data]
        let aac_pt = match pt {
            SEQUENCE_START => 0,
            CODED_FRAMES => 1,
            _ => return None,
        };
        let mut out = Vec::with_capacity(t.body.len() + 2);
        out.extend_from_slice(&[0xAF, aac_pt]);
        out.extend_from_slice(t.body);
        return Some(out);
    }
    let mut out = Vec::with_capacity(t.body.len() + 5);
    out.push(0x90 | pt);
    out.extend_from_slice(&t.fourcc);
    out.extend_from_slice(t.body);
    Some(out)
}

/// Most tracks per kind whose sequence start [`HeaderMerge`] keeps.
pub const MAX_TRACKS: usize = 16;

/// A track's sequence start: (track id, FourCC, body).
type KeptHeader = (u8, [u8; 4], Vec<u8>);
/// A track of a message being merged: (track id, FourCC, body).
type HeaderRef<'a> = (u8, [u8; 4], &'a [u8]);

/// Keeps every track's last sequence start of a publish, so that one cached sequence header
/// serves late joiners of every track. Encoders (OBS) send each track's sequence start in a
/// message of its own (track 0 often as a plain message); a cache that keeps the last
/// sequence header would then hold one track's only.
#[derive(Debug, Default)]
pub struct HeaderMerge {
    /// video, audio: (track id, FourCC, sequence start body), by id.
    tracks: [Vec<KeptHeader>; 2],
    multitrack_seen: [bool; 2],
}

impl HeaderMerge {
    /// Records a sequence-start `payload` and, once the stream is multitrack and the
    /// message does not carry every known track, returns a ManyTracks(ManyCodecs) sequence
    /// start of all of them to publish in its place. `None`: publish it as it is.
    pub fn sequence_start(&mut self, video: bool, payload: &[u8]) -> Option<Vec<u8>> {
        let k = usize::from(!video);
        let (tracks, multitrack): (Vec<HeaderRef<'_>>, bool) = match if video {
            parse_video(payload)
        } else {
            parse_audio(payload)
        } {
            Ok(m) if m.packet_type == 0 && m.command.is_none() => (
                m.tracks.iter().map(|t| (t.id, t.fourcc, t.body)).collect(),
                m.multitrack.is_some(),
            ),
            Ok(_) => return None,
            // Legacy AVC / AAC sequence headers are track 0.
            Err(ParseError::NotExtended) if video => match payload {
                [b0, 0, _, _, _, rest @ ..] if b0 & 0x0F == 7 => (vec![(0, *b"avc1", rest)], false),
                _ => return None,
            },
            Err(ParseError::NotExtended) => match payload {
                [b0, 0, rest @ ..] if b0 >> 4 == 10 => (vec![(0, *b"mp4a", rest)], false),
                _ => return None,
            },
            Err(_) => return None,
        };
        let known = &mut self.tracks[k];
        for (id, cc, body) in &tracks {
            if let Some(t) = known.iter_mut().find(|t| t.0 == *id) {
                t.1 = *cc;
                t.2 = body.to_vec();
            } else if known.len() < MAX_TRACKS {
                known.push((*id, *cc, body.to_vec()));
            }
        }
        known.sort_by_key(|t| t.0);
        self.multitrack_seen[k] |= multitrack;
        let all_here = known
            .iter()
            .all(|t| tracks.iter().any(|(id, _, _)| *id == t.0));
        if !self.multitrack_seen[k] || all_here {
            return None;
        }
        let same_codec = known.iter().all(|t| t.1 == known[0].1);
        let mt = if same_codec {
            MultitrackType::ManyTracks
        } else {
            MultitrackType::ManyTracksManyCodecs
        };
        let list: Vec<HeaderRef<'_>> = known.iter().map(|t| (t.0, t.1, t.2.as_slice())).collect();
        Some(if video {
            build::multitrack(0x90, video_packet::MULTITRACK, mt, 0, &list)
        } else {
            build::multitrack(0x90, audio_packet::MULTITRACK, mt, 0, &list)
        })
    }
}

/// Builders for multitrack messages (test fixtures, and a v2 sender).
pub mod build {
    use super::MultitrackType;

    /// A ModEx TimestampOffsetNano prefix to put before the real packet type.
    /// Returns (prefix bytes after the first header byte, packet type to put in byte 0 = ModEx).
    pub fn nano_prefix(nanos: u32, next_packet_type: u8) -> Vec<u8> {
        // size byte = len - 1 = 2; data = UI24; then [ModExType=0:4 PacketType:4]
        vec![
            2,
            (nanos >> 16) as u8,
            (nanos >> 8) as u8,
            nanos as u8,
            next_packet_type & 0x0F,
        ]
    }

    /// Builds a multitrack body. `first` is the header byte's high nibble part (video:
    /// 0x80 | frame_type << 4; audio: 0x90), `multitrack_pt` the Multitrack packet type
    /// (video 6, audio 5), `packet_type` the inner packet type and `tracks` (id, fourcc, body).
    pub fn multitrack(
        first: u8,
        multitrack_pt: u8,
        mt: MultitrackType,
        packet_type: u8,
        tracks: &[(u8, [u8; 4], &[u8])],
    ) -> Vec<u8> {
        let mut out = vec![first | multitrack_pt];
        let mt_n = match mt {
            MultitrackType::OneTrack => 0,
            MultitrackType::ManyTracks => 1,
            MultitrackType::ManyTracksManyCodecs => 2,
        };
        out.push((mt_n << 4) | packet_type);
        if mt != MultitrackType::ManyTracksManyCodecs {
            if let Some((_, cc, _)) = tracks.first() {
                out.extend_from_slice(cc);
            }
        }
        for (id, cc, body) in tracks {
            if mt == MultitrackType::ManyTracksManyCodecs {
                out.extend_from_slice(cc);
            }
            out.push(*id);
            if mt != MultitrackType::OneTrack {
                let n = body.len();
                out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
            }
            out.extend_from_slice(body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn single_track_hevc_and_opus() {
        let m = parse_video(&[0x93, b'h', b'v', b'c', b'1', 9, 9]).unwrap();
        assert_eq!(m.frame_type, 1);
        assert_eq!(m.packet_type, video_packet::CODED_FRAMES_X);
        assert_eq!(m.multitrack, None);
        assert_eq!(m.tracks.len(), 1);
        assert_eq!(&m.tracks[0].fourcc, b"hvc1");
        assert_eq!(m.tracks[0].body, &[9, 9]);
        let a = parse_audio(&[0x91, b'O', b'p', b'u', b's', 1, 2, 3]).unwrap();
        assert_eq!(a.packet_type, audio_packet::CODED_FRAMES);
        assert_eq!(&a.tracks[0].fourcc, b"Opus");
        assert_eq!(a.tracks[0].body, &[1, 2, 3]);
        assert_eq!(parse_video(&[0x17, 0]), Err(ParseError::NotExtended));
        assert_eq!(parse_audio(&[0xAF, 0]), Err(ParseError::NotExtended));
    }

    #[test]
    fn new_audio_fourccs_pass_through() {
        for (cc, name) in [
            (*b"Opus", "opus"),
            (*b"fLaC", "flac"),
            (*b"ac-3", "ac3"),
            (*b"ec-3", "eac3"),
            (*b".mp3", "mp3"),
        ] {
            let mut p = vec![0x91];
            p.extend_from_slice(&cc);
            p.extend_from_slice(&[7, 7, 7]);
            let m = parse_audio(&p).unwrap();
            assert_eq!(fourcc_name(&m.tracks[0].fourcc), name);
            // A plain single-track message rebuilds byte for byte.
            assert_eq!(extract_track(&m, false, 0).unwrap(), p);
        }
    }

    #[test]
    fn one_track_multitrack() {
        // Spec: AvMultitrackType.OneTrack: FourCC once, track id, then the body to the end.
        let p = multitrack(
            0x90,
            6,
            MultitrackType::OneTrack,
            video_packet::CODED_FRAMES_X,
            &[(3, *b"av01", &[1, 2, 3, 4])],
        );
        assert_eq!(p, [0x96, 0x03, b'a', b'v', b'0', b'1', 3, 1, 2, 3, 4]);
        let m = parse_video(&p).unwrap();
        assert_eq!(m.multitrack, Some(MultitrackType::OneTrack));
        assert_eq!(m.packet_type, video_packet::CODED_FRAMES_X);
        assert_eq!(
            m.tracks,
            [Track {
                id: 3,
                fourcc: *b"av01",
                body: &[1, 2, 3, 4]
            }]
        );
        // Extracted as a plain v1 key frame.
        assert_eq!(
            extract_track(&m, true, 3).unwrap(),
            [0x93, b'a', b'v', b'0', b'1', 1, 2, 3, 4]
        );
        assert_eq!(extract_track(&m, true, 0), None);
    }

    #[test]
    fn many_tracks_one_codec() {
        let p = multitrack(
            0x90,
            6,
            MultitrackType::ManyTracks,
            video_packet::SEQUENCE_START,
            &[
                (0, *b"avc1", &[1, 0x64, 0, 0x1f]),
                (1, *b"avc1", &[1, 0x42, 0, 0x1e]),
            ],
        );
        assert_eq!(
            p,
            [
                0x96, 0x10, b'a', b'v', b'c', b'1', //
                0, 0, 0, 4, 1, 0x64, 0, 0x1f, //
                1, 0, 0, 4, 1, 0x42, 0, 0x1e
            ]
        );
        let m = parse_video(&p).unwrap();
        assert_eq!(m.multitrack, Some(MultitrackType::ManyTracks));
        assert_eq!(m.tracks.len(), 2);
        assert_eq!(m.tracks[1].body, &[1, 0x42, 0, 0x1e]);
        // avc1 comes out as a legacy AVC sequence header (AVCPacketType 0, cts 0).
        assert_eq!(
            extract_track(&m, true, 1).unwrap(),
            [0x17, 0, 0, 0, 0, 1, 0x42, 0, 0x1e]
        );
    }

    #[test]
    fn many_tracks_many_codecs_audio() {
        let p = multitrack(
            0x90,
            5,
            MultitrackType::ManyTracksManyCodecs,
            audio_packet::CODED_FRAMES,
            &[
                (0, *b"mp4a", &[0x21, 0x10]),
                (1, *b"Opus", &[0xfc, 0xff]),
                (2, *b"ac-3", &[0x0b, 0x77]),
            ],
        );
        let m = parse_audio(&p).unwrap();
        assert_eq!(m.multitrack, Some(MultitrackType::ManyTracksManyCodecs));
        let ccs: Vec<_> = m.tracks.iter().map(|t| fourcc_name(&t.fourcc)).collect();
        assert_eq!(ccs, ["aac", "opus", "ac3"]);
        assert_eq!(extract_track(&m, false, 0).unwrap(), [0xAF, 1, 0x21, 0x10]);
        assert_eq!(
            extract_track(&m, false, 1).unwrap(),
            [0x91, b'O', b'p', b'u', b's', 0xfc, 0xff]
        );
        assert_eq!(
            extract_track(&m, false, 2).unwrap(),
            [0x91, b'a', b'c', b'-', b'3', 0x0b, 0x77]
        );
    }

    #[test]
    fn avc_coded_frames_keep_composition_time() {
        // CodedFrames carries SI24 cts before the NALUs; legacy AVC keeps it as is.
        let p = multitrack(
            0xA0,
            6,
            MultitrackType::OneTrack,
            video_packet::CODED_FRAMES,
            &[(1, *b"avc1", &[0, 0, 0x21, 0, 0, 0, 2, 0x41, 0x9a])],
        );
        let m = parse_video(&p).unwrap();
        assert_eq!(m.frame_type, 2);
        assert_eq!(
            extract_track(&m, true, 1).unwrap(),
            [0x27, 1, 0, 0, 0x21, 0, 0, 0, 2, 0x41, 0x9a]
        );
    }

    #[test]
    fn mod_ex_nano_offset_is_kept() {
        // [ModEx] size-1=2, UI24 nanos = 500_000, [TimestampOffsetNano=0 | CodedFramesX], FourCC
        let mut p = vec![0x90 | video_packet::MOD_EX];
        p.extend(nano_prefix(500_000, video_packet::CODED_FRAMES_X));
        p.extend_from_slice(b"hvc1");
        p.push(0xAB);
        let m = parse_video(&p).unwrap();
        assert_eq!(m.nano_offset, Some(500_000));
        assert_eq!(m.packet_type, video_packet::CODED_FRAMES_X);
        assert_eq!(m.tracks[0].body, &[0xAB]);
        assert_eq!(
            extract_track(&m, true, 0).unwrap(),
            [0x93, b'h', b'v', b'c', b'1', 0xAB]
        );
        // ModEx before a multitrack audio packet.
        let inner = multitrack(
            0x90,
            5,
            MultitrackType::ManyTracks,
            audio_packet::CODED_FRAMES,
            &[(0, *b"Opus", &[1]), (1, *b"Opus", &[2])],
        );
        let mut a = vec![0x90 | audio_packet::MOD_EX];
        a.extend(nano_prefix(999_999, audio_packet::MULTITRACK));
        a.extend_from_slice(&inner[1..]);
        let m = parse_audio(&a).unwrap();
        assert_eq!(m.nano_offset, Some(999_999));
        assert_eq!(m.tracks.len(), 2);
        assert_eq!(m.tracks[1].body, &[2]);
    }

    #[test]
    fn mod_ex_long_size_and_unknown_type_are_skipped() {
        // size byte 255 => UI16 + 1 follows: 0x0100 + 1 = 257 bytes of data, type 3 (unknown)
        let mut p = vec![0x97, 255, 0x01, 0x00];
        p.extend(std::iter::repeat_n(0u8, 257));
        p.push(0x30 | video_packet::CODED_FRAMES_X);
        p.extend_from_slice(b"vp09");
        let m = parse_video(&p).unwrap();
        assert_eq!(m.nano_offset, None);
        assert_eq!(&m.tracks[0].fourcc, b"vp09");
    }

    #[test]
    fn header_merge_keeps_every_tracks_sequence_start() {
        let mut h = HeaderMerge::default();
        // Track 0 as a legacy AVC sequence header: a plain stream so far, untouched.
        assert_eq!(h.sequence_start(true, &[0x17, 0, 0, 0, 0, 1, 0x64]), None);
        // Track 1 alone in a OneTrack message: both tracks come out in one message.
        let t1 = multitrack(
            0x90,
            6,
            MultitrackType::OneTrack,
            0,
            &[(1, *b"avc1", &[1, 0x42])],
        );
        let merged = h.sequence_start(true, &t1).expect("merged");
        let m = parse_video(&merged).unwrap();
        assert_eq!(m.multitrack, Some(MultitrackType::ManyTracks));
        assert_eq!(m.packet_type, 0);
        assert_eq!(
            m.tracks,
            [
                Track {
                    id: 0,
                    fourcc: *b"avc1",
                    body: &[1, 0x64]
                },
                Track {
                    id: 1,
                    fourcc: *b"avc1",
                    body: &[1, 0x42]
                }
            ]
        );
        // Each track extracts to its own header.
        assert_eq!(
            extract_track(&m, true, 0).unwrap(),
            [0x17, 0, 0, 0, 0, 1, 0x64]
        );
        // A message already carrying every track is left alone; coded frames are not looked at.
        let both = multitrack(
            0x90,
            6,
            MultitrackType::ManyTracks,
            0,
            &[(0, *b"avc1", &[1]), (1, *b"avc1", &[2])],
        );
        assert_eq!(h.sequence_start(true, &both), None);
        assert_eq!(
            h.sequence_start(true, &[0x93, b'h', b'v', b'c', b'1']),
            None
        );
        // Audio of two codecs: ManyTracksManyCodecs.
        assert_eq!(h.sequence_start(false, &[0xAF, 0, 0x12, 0x10]), None);
        let opus = multitrack(
            0x90,
            5,
            MultitrackType::OneTrack,
            0,
            &[(1, *b"Opus", b"OpusHead")],
        );
        let merged = h.sequence_start(false, &opus).expect("merged audio");
        let m = parse_audio(&merged).unwrap();
        assert_eq!(m.multitrack, Some(MultitrackType::ManyTracksManyCodecs));
        assert_eq!(m.tracks.len(), 2);
        // Bounded: no more than MAX_TRACKS tracks are kept.
        for id in 0..=255u8 {
            let p = multitrack(
                0x90,
                6,
                MultitrackType::OneTrack,
                0,
                &[(id, *b"av01", &[id])],
            );
            let _ = h.sequence_start(true, &p);
        }
        assert_eq!(h.tracks[0].len(), MAX_TRACKS);
    }

    #[test]
    fn command_frame_has_no_body() {
        let m = parse_video(&[0xD1, 0x01]).unwrap();
        assert_eq!(m.command, Some(1));
        assert!(m.tracks.is_empty());
        assert_eq!(extract_track(&m, true, 0), None);
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        assert_eq!(
            parse_video(&[0x96]),
            Err(ParseError::Truncated("multitrack type"))
        );
        assert_eq!(
            parse_video(&[0x96, 0x30, 1, 2, 3, 4]),
            Err(ParseError::BadMultitrackType(3))
        );
        assert_eq!(
            parse_video(&[0x96, 0x06]),
            Err(ParseError::NestedPacketType(6))
        );
        // Track size larger than what is left.
        assert_eq!(
            parse_video(&[0x96, 0x11, b'a', b'v', b'0', b'1', 0, 0, 0, 9, 1]),
            Err(ParseError::Truncated("track body"))
        );
        assert_eq!(
            parse_video(&[0x97, 5, 1]),
            Err(ParseError::Truncated("ModEx data"))
        );
        for n in 0..40 {
            let p = multitrack(
                0x90,
                6,
                MultitrackType::ManyTracksManyCodecs,
                1,
                &[(0, *b"hvc1", &[1, 2, 3]), (1, *b"av01", &[4, 5])],
            );
            let _ = parse_video(&p[..n.min(p.len())]);
        }
    }
}
