//! SDP (RFC 8866), the subset RTSP uses: parse a camera's DESCRIBE answer into its media
//! (codec, clock, fmtp, control URL), and write one for a stream Prism serves.

use std::fmt::Write as _;

/// Most `m=` sections accepted; cameras offer two or three (video, audio, metadata).
pub const MAX_MEDIA: usize = 8;
/// Most lines accepted.
const MAX_LINES: usize = 512;
/// Most `fmtp` parameters kept per media.
const MAX_FMTP: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// Session-level `a=control` (aggregate control URL), if any.
    pub control: Option<String>,
    pub media: Vec<Media>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Media {
    /// `video`, `audio`, `application`...
    pub kind: String,
    /// The first payload type of the `m=` line.
    pub payload_type: u8,
    /// `a=rtpmap` encoding name, upper-cased (`H264`, `MPEG4-GENERIC`, ...); empty if none
    /// (then a static payload type may say: 0 = PCMU, 8 = PCMA).
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u16,
    /// `a=fmtp` parameters (`name=value`, names lower-cased).
    pub fmtp: Vec<(String, String)>,
    pub control: Option<String>,
}

/// What a media section carries, as Prism sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
    /// MPEG4-GENERIC (RFC 3640) AAC-hbr.
    Aac,
    Opus,
    /// PCMU/PCMA: RTMP targets cannot carry them; dropped with a counted reason.
    G711,
    Other,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "hevc",
            Codec::Aac => "aac",
            Codec::Opus => "opus",
            Codec::G711 => "g711",
            Codec::Other => "other",
        }
    }
}

impl Media {
    pub fn fmtp(&self, name: &str) -> Option<&str> {
        self.fmtp
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn codec(&self) -> Codec {
        match self.encoding.as_str() {
            "H264" => Codec::H264,
            "H265" => Codec::H265,
            "MPEG4-GENERIC"
                if self
                    .fmtp("mode")
                    .is_some_and(|m| m.eq_ignore_ascii_case("AAC-hbr")) =>
            {
                Codec::Aac
            }
            "OPUS" => Codec::Opus,
            "PCMU" | "PCMA" => Codec::G711,
            "" if self.payload_type == 0 || self.payload_type == 8 => Codec::G711,
            _ => Codec::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpError {
    NotUtf8,
    TooManyLines,
    TooManyMedia,
    BadMediaLine,
    BadRtpmap,
    NoMedia,
}

impl SdpError {
    pub fn as_str(self) -> &'static str {
        match self {
            SdpError::NotUtf8 => "SDP is not UTF-8",
            SdpError::TooManyLines => "SDP has too many lines",
            SdpError::TooManyMedia => "SDP has too many media",
            SdpError::BadMediaLine => "bad SDP m= line",
            SdpError::BadRtpmap => "bad SDP rtpmap",
            SdpError::NoMedia => "SDP has no media",
        }
    }
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses an SDP body. Lines Prism has no use for are skipped; absurd values (payload
/// type over 127, a zero or huge clock, too many media) are errors.
pub fn parse(body: &[u8]) -> Result<Session, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut session = Session::default();
    for (i, line) in text.lines().enumerate() {
        if i >= MAX_LINES {
            return Err(SdpError::TooManyLines);
        }
        let line = line.trim_end_matches('\r');
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "m" => {
                if session.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                let mut f = v.split_ascii_whitespace();
                let kind = f.next().ok_or(SdpError::BadMediaLine)?;
                let _port = f.next().ok_or(SdpError::BadMediaLine)?;
                let _proto = f.next().ok_or(SdpError::BadMediaLine)?;
                let payload_type = f
                    .next()
                    .and_then(|p| p.parse::<u8>().ok())
                    .filter(|p| *p < 128)
                    .ok_or(SdpError::BadMediaLine)?;
                session.media.push(Media {
                    kind: kind.to_ascii_lowercase(),
                    payload_type,
                    // Static payload types carry their clock in RFC 3551.
                    clock_rate: 8000,
                    channels: 1,
                    ..Default::default()
                });
            }
            "a" => {
                let (name, value) = v.split_once(':').unwrap_or((v, ""));
                match (name, session.media.last_mut()) {
                    ("control", None) => session.control = Some(value.trim().to_owned()),
                    ("control", Some(m)) => m.control = Some(value.trim().to_owned()),
                    ("rtpmap", Some(m)) => {
                        let (pt, enc) = value.trim().split_once(' ').ok_or(SdpError::BadRtpmap)?;
                        if pt.trim().parse::<u8>().ok() != Some(m.payload_type) {
                            continue;
                        }
                        let mut p = enc.trim().split('/');
                        m.encoding = p.next().unwrap_or_default().to_ascii_uppercase();
                        m.clock_rate = p
                            .next()
                            .and_then(|c| c.parse::<u32>().ok())
                            .filter(|c| (1000..=1_000_000).contains(c))
                            .ok_or(SdpError::BadRtpmap)?;
                        m.channels = match p.next() {
                            Some(c) => c
                                .parse::<u16>()
                                .ok()
                                .filter(|c| (1..=8).contains(c))
                                .ok_or(SdpError::BadRtpmap)?,
                            None => 1,
                        };
                    }
                    ("fmtp", Some(m)) => {
                        let Some((pt, params)) = value.trim().split_once(' ') else {
                            continue;
                        };
                        if pt.trim().parse::<u8>().ok() != Some(m.payload_type) {
                            continue;
                        }
                        for p in params.split(';') {
                            if m.fmtp.len() >= MAX_FMTP {
                                break;
                            }
                            if let Some((k, v)) = p.trim().split_once('=') {
                                m.fmtp
                                    .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if session.media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    Ok(session)
}

/// One track of an SDP Prism writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackDesc {
    pub codec: Codec,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub channels: u16,
    /// The `a=fmtp` parameters after the payload type, e.g. `packetization-mode=1;...`.
    pub fmtp: String,
    /// `a=control` value, relative to the content base (`trackID=0`).
    pub control: String,
}

/// Writes an SDP for `tracks` (a DESCRIBE answer). `origin` is the server's address as
/// the client reached it.
pub fn write(origin: &str, session_name: &str, tracks: &[TrackDesc]) -> String {
    let ip_kind = if origin.contains(':') { "IP6" } else { "IP4" };
    let mut s = String::new();
    let _ = write!(
        s,
        "v=0\r\no=- 0 0 IN {ip_kind} {origin}\r\ns={session_name}\r\nc=IN {ip_kind} 0.0.0.0\r\nt=0 0\r\na=tool:prism\r\na=control:*\r\n"
    );
    for t in tracks {
        let (kind, enc) = match t.codec {
            Codec::H264 => ("video", "H264"),
            Codec::H265 => ("video", "H265"),
            Codec::Aac => ("audio", "MPEG4-GENERIC"),
            Codec::Opus => ("audio", "opus"),
            Codec::G711 => ("audio", "PCMU"),
            Codec::Other => continue,
        };
        let _ = write!(s, "m={kind} 0 RTP/AVP {}\r\n", t.payload_type);
        if t.channels > 1 || t.codec == Codec::Opus {
            let _ = write!(
                s,
                "a=rtpmap:{} {enc}/{}/{}\r\n",
                t.payload_type, t.clock_rate, t.channels
            );
        } else {
            let _ = write!(s, "a=rtpmap:{} {enc}/{}\r\n", t.payload_type, t.clock_rate);
        }
        if !t.fmtp.is_empty() {
            let _ = write!(s, "a=fmtp:{} {}\r\n", t.payload_type, t.fmtp);
        }
        let _ = write!(s, "a=control:{}\r\n", t.control);
    }
    s
}

/// Resolves a media's control URL against the content base (RFC 2326 §C.1.1): absolute
/// URLs as they are, `*` or none = the base, relative ones appended with one slash.
pub fn resolve_control(base: &str, control: Option<&str>) -> String {
    match control.map(str::trim) {
        None | Some("") | Some("*") => base.to_owned(),
        Some(c)
            if c.to_ascii_lowercase().starts_with("rtsp://")
                || c.to_ascii_lowercase().starts_with("rtsps://") =>
        {
            c.to_owned()
        }
        Some(c) => {
            let b = base.trim_end_matches('/');
            format!("{b}/{}", c.trim_start_matches('/'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMERA: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=Session\r\nt=0 0\r\na=control:*\r\n\
m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:500\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=640033;sprop-parameter-sets=Z2QAM6zoAoALWQ==,aO48MA==\r\n\
a=control:trackID=1\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000\r\n\
a=fmtp:97 streamtype=5;profile-level-id=15;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1408; profile=1;\r\n\
a=control:trackID=2\r\nm=audio 0 RTP/AVP 0\r\na=control:trackID=3\r\n";

    #[test]
    fn camera_offer() {
        let s = parse(CAMERA.as_bytes()).unwrap();
        assert_eq!(s.control.as_deref(), Some("*"));
        assert_eq!(s.media.len(), 3);
        let v = &s.media[0];
        assert_eq!((v.codec(), v.clock_rate), (Codec::H264, 90_000));
        assert_eq!(
            v.fmtp("sprop-parameter-sets"),
            Some("Z2QAM6zoAoALWQ==,aO48MA==")
        );
        let a = &s.media[1];
        assert_eq!(
            (a.codec(), a.clock_rate, a.fmtp("config")),
            (Codec::Aac, 16_000, Some("1408"))
        );
        assert_eq!(s.media[2].codec(), Codec::G711);
        assert_eq!(
            resolve_control("rtsp://h/x/", a.control.as_deref()),
            "rtsp://h/x/trackID=2"
        );
    }

    #[test]
    fn absurd_values() {
        assert_eq!(parse(b"v=0\r\n"), Err(SdpError::NoMedia));
        assert_eq!(
            parse(b"m=video 0 RTP/AVP 300\r\n"),
            Err(SdpError::BadMediaLine)
        );
        assert_eq!(
            parse(b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/0\r\n"),
            Err(SdpError::BadRtpmap)
        );
        assert_eq!(
            parse(b"m=audio 0 RTP/AVP 96\r\na=rtpmap:96 opus/48000/65535\r\n"),
            Err(SdpError::BadRtpmap)
        );
        let many = "m=video 0 RTP/AVP 96\r\n".repeat(20);
        assert_eq!(parse(many.as_bytes()), Err(SdpError::TooManyMedia));
        let long = "a=x\r\n".repeat(600) + "m=video 0 RTP/AVP 96\r\n";
        assert_eq!(parse(long.as_bytes()), Err(SdpError::TooManyLines));
        assert_eq!(parse(&[0xff, 0xfe]), Err(SdpError::NotUtf8));
    }

    #[test]
    fn written_sdp_parses_back() {
        let tracks = [
            TrackDesc {
                codec: Codec::H264,
                payload_type: 96,
                clock_rate: 90_000,
                channels: 1,
                fmtp: "packetization-mode=1".into(),
                control: "trackID=0".into(),
            },
            TrackDesc {
                codec: Codec::Opus,
                payload_type: 97,
                clock_rate: 48_000,
                channels: 2,
                fmtp: String::new(),
                control: "trackID=1".into(),
            },
        ];
        let s = parse(write("127.0.0.1", "live/x", &tracks).as_bytes()).unwrap();
        assert_eq!(s.media[0].codec(), Codec::H264);
        assert_eq!((s.media[1].codec(), s.media[1].channels), (Codec::Opus, 2));
        assert_eq!(s.media[1].control.as_deref(), Some("trackID=1"));
    }
}
