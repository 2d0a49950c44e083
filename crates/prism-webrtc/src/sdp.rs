//! Bounds and checks on an SDP offer before the WebRTC stack parses it: size, line count
//! and length, and which codecs each media section offers. The stack does the negotiation;
//! this gives a clear refusal (and a bounded parse) for offers Prism cannot serve.

/// Largest offer accepted (bytes). Browsers' offers are 3-10 KiB; simulcast with many
/// codecs stays below 20 KiB.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Most lines in an offer, and longest line.
pub const MAX_LINES: usize = 2000;
pub const MAX_LINE: usize = 4096;
/// Most media sections in an offer (WHIP/WHEP use one audio and one video).
pub const MAX_MEDIA: usize = 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP offer too large (over {MAX_SDP_BYTES} bytes)")]
    TooLarge,
    #[error("SDP offer is not UTF-8 text")]
    NotText,
    #[error("malformed SDP offer: {0}")]
    Malformed(&'static str),
    #[error("the offer has no H.264 video with packetization-mode=1")]
    NoH264,
    #[error("the offer has neither H.264 video nor Opus audio")]
    NoMedia,
}

/// What an offer offers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Offer {
    /// A video section offers H.264 with packetization-mode=1.
    pub h264: bool,
    /// An audio section offers Opus.
    pub opus: bool,
    pub video_sections: usize,
    pub audio_sections: usize,
}

/// Checks an offer's bounds and reads which codecs it offers.
pub fn check_offer(body: &[u8]) -> Result<(&str, Offer), SdpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
    if !text.starts_with("v=0") {
        return Err(SdpError::Malformed("does not start with v=0"));
    }
    let mut offer = Offer::default();
    // Per media section: its kind and its H.264 payload types (rtpmap), and those whose
    // fmtp says packetization-mode=1.
    let mut kind = "";
    let mut h264_pts: Vec<&str> = Vec::new();
    let mut mode1_pts: Vec<&str> = Vec::new();
    let mut media = 0;
    let finish = |kind: &str, h264: &mut Vec<&str>, mode1: &mut Vec<&str>, o: &mut Offer| {
        if kind == "video" && h264.iter().any(|pt| mode1.contains(pt)) {
            o.h264 = true;
        }
        h264.clear();
        mode1.clear();
    };
    for (i, line) in text.lines().enumerate() {
        if i >= MAX_LINES {
            return Err(SdpError::Malformed("too many lines"));
        }
        if line.len() > MAX_LINE {
            return Err(SdpError::Malformed("line too long"));
        }
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            finish(kind, &mut h264_pts, &mut mode1_pts, &mut offer);
            media += 1;
            if media > MAX_MEDIA {
                return Err(SdpError::Malformed("too many media sections"));
            }
            kind = m.split(' ').next().unwrap_or("");
            match kind {
                "video" => offer.video_sections += 1,
                "audio" => offer.audio_sections += 1,
                _ => {}
            }
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let (pt, codec) = map.split_once(' ').unwrap_or((map, ""));
            let name = codec.split('/').next().unwrap_or("");
            if kind == "video" && name.eq_ignore_ascii_case("H264") {
                h264_pts.push(pt);
            } else if kind == "audio" && name.eq_ignore_ascii_case("opus") {
                offer.opus = true;
            }
        } else if let Some(fmtp) = line.strip_prefix("a=fmtp:") {
            let (pt, params) = fmtp.split_once(' ').unwrap_or((fmtp, ""));
            if params
                .split(';')
                .any(|p| p.trim() == "packetization-mode=1")
            {
                mode1_pts.push(pt);
            }
        }
    }
    finish(kind, &mut h264_pts, &mut mode1_pts, &mut offer);
    if media == 0 {
        return Err(SdpError::Malformed("no media section"));
    }
    Ok((text, offer))
}

/// A WHEP offer must let Prism send H.264 (Opus is optional: a source without it, or with
/// AAC, plays video only).
pub fn check_whep(offer: &Offer) -> Result<(), SdpError> {
    if offer.h264 {
        Ok(())
    } else {
        Err(SdpError::NoH264)
    }
}

/// A WHIP offer must send H.264 video or Opus audio; a video section without H.264 is
/// refused rather than accepted and dropped silently.
pub fn check_whip(offer: &Offer) -> Result<(), SdpError> {
    if offer.video_sections > 0 && !offer.h264 {
        return Err(SdpError::NoH264);
    }
    if !offer.h264 && !offer.opus {
        return Err(SdpError::NoMedia);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 102 103\r\na=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
        a=rtpmap:103 H264/90000\r\na=fmtp:103 packetization-mode=0;profile-level-id=42001f\r\n";

    #[test]
    fn reads_codecs() {
        let (_, o) = check_offer(CHROME.as_bytes()).unwrap();
        assert!(o.h264 && o.opus);
        assert_eq!((o.audio_sections, o.video_sections), (1, 1));
        assert!(check_whep(&o).is_ok() && check_whip(&o).is_ok());
    }

    #[test]
    fn refuses_offers_without_h264_mode_1() {
        let vp8 = CHROME.replace("packetization-mode=1", "packetization-mode=0");
        let (_, o) = check_offer(vp8.as_bytes()).unwrap();
        assert!(!o.h264 && o.opus);
        assert_eq!(check_whep(&o), Err(SdpError::NoH264));
        assert_eq!(check_whip(&o), Err(SdpError::NoH264));
        // H.264 named in an audio section does not count.
        let odd = "v=0\r\nm=audio 9 X 102\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n";
        let (_, o) = check_offer(odd.as_bytes()).unwrap();
        assert!(!o.h264);
        assert_eq!(check_whip(&o), Err(SdpError::NoMedia));
    }

    #[test]
    fn bounds() {
        assert_eq!(
            check_offer(&vec![b'a'; MAX_SDP_BYTES + 1]),
            Err(SdpError::TooLarge)
        );
        assert_eq!(check_offer(&[0xff, 0xfe]), Err(SdpError::NotText));
        assert!(matches!(check_offer(b"hello"), Err(SdpError::Malformed(_))));
        assert!(matches!(
            check_offer(b"v=0\r\n"),
            Err(SdpError::Malformed(_))
        ));
        let many = format!("v=0\r\n{}", "m=video 9 X 96\r\n".repeat(MAX_MEDIA + 1));
        assert!(matches!(
            check_offer(many.as_bytes()),
            Err(SdpError::Malformed(_))
        ));
        let long = format!("v=0\r\nm=video 9 X 96\r\na={}\r\n", "x".repeat(MAX_LINE));
        assert!(matches!(
            check_offer(long.as_bytes()),
            Err(SdpError::Malformed(_))
        ));
    }
}
