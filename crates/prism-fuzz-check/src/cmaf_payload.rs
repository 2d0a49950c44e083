//! The `cmaf_payload` fuzz target's body.
//!
//! Input: one byte whose low bit picks video (0) or audio (1), then an FLV-style payload.
//! Checks besides "no panic": a frame's data is a zero-copy slice of the payload; whatever
//! parses as a configuration makes an init segment starting with `ftyp`, and a codec string;
//! a frame makes a fragment (`moof` first) that carries its data.

use bytes::Bytes;
use prism_cmaf::{Payload, Sample, TrackRun};

/// What the input parsed as (`config`, `frame`, `skip`, `error`), for the corpus test.
pub fn run(data: &[u8]) -> &'static str {
    let Some((&which, payload)) = data.split_first() else {
        return "error";
    };
    let payload = Bytes::copy_from_slice(payload);
    let parsed = if which & 1 == 0 {
        prism_cmaf::parse_video(&payload)
    } else {
        prism_cmaf::parse_audio(&payload)
    };
    match parsed {
        Ok(Payload::Config(c)) => {
            let init = prism_cmaf::init_segment(&[&c]);
            assert_eq!(init.get(4..8), Some(&b"ftyp"[..]));
            assert!(!c.codec_string().is_empty());
            assert!(c.timescale > 0);
            "config"
        }
        Ok(Payload::Frame { keyframe, data, .. }) => {
            assert!(data.len() <= payload.len());
            let range = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len() + 1;
            assert!(
                data.is_empty() || range.contains(&(data.as_ptr() as usize)),
                "not a slice"
            );
            let sample = Sample {
                duration: 3000,
                cts_offset: 0,
                keyframe,
                data: data.clone(),
            };
            let frag = prism_cmaf::fragment(
                1,
                &[TrackRun {
                    track_id: 1,
                    base_decode_time: 0,
                    samples: std::slice::from_ref(&sample),
                }],
            );
            assert_eq!(frag.get(4..8), Some(&b"moof"[..]));
            assert!(frag.ends_with(&data));
            "frame"
        }
        Ok(Payload::Skip) => "skip",
        Err(_) => "error",
    }
}
