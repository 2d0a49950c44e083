//! Shared by the muxer's tests against real peers: ffmpeg makes the input, the muxer turns
//! it into a transport stream, and ffprobe, ffmpeg and `mpeg2ts-reader` judge the result.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::{Bytes, BytesMut};
use mpeg2ts_reader::{demultiplex, packet, pes, psi};
use prism_mpegts::mux::{next_datagram, MuxStats, Muxer, MuxerConfig, DATAGRAM_SIZE};
use prism_mpegts::{FlvFrame, FrameKind};

/// A fresh scratch directory for one test.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prism-mpegts-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Whether ffmpeg and ffprobe are installed, with the given encoders. Tests that need them
/// say so and pass without them, so the crate's tests run anywhere.
pub fn have_ffmpeg(encoders: &[&str]) -> bool {
    let Ok(out) = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
    else {
        eprintln!("SKIPPED: ffmpeg is not installed");
        return false;
    };
    let list = String::from_utf8_lossy(&out.stdout);
    for enc in encoders {
        if !list.split_whitespace().any(|w| w == *enc) {
            eprintln!("SKIPPED: ffmpeg has no {enc} encoder");
            return false;
        }
    }
    Command::new("ffprobe").arg("-version").output().is_ok()
}

/// Runs ffmpeg with `args`, panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs ffprobe and returns its stdout.
pub fn ffprobe(args: &[&str]) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (codec name, decoded frame count) of every stream, as ffprobe counts them.
pub fn frame_counts(path: &Path) -> Vec<(String, u64)> {
    let out = ffprobe(&[
        "-count_frames",
        "-show_entries",
        "stream=codec_name,nb_read_frames",
        "-of",
        "flat",
        path.to_str().expect("utf-8 path"),
    ]);
    // Lines like `streams.stream.0.codec_name="h264"`; a TS's program lists its streams
    // again under `programs.`, which is skipped.
    let mut streams: Vec<(String, u64)> = Vec::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("streams.stream.") else {
            continue;
        };
        let (index, entry) = rest.split_once('.').expect("index.key");
        let (key, value) = entry.split_once('=').expect("key=value");
        let index: usize = index.parse().expect("stream index");
        if streams.len() <= index {
            streams.resize(index + 1, (String::new(), 0));
        }
        let value = value.trim_matches('"');
        match key {
            "codec_name" => streams[index].0 = value.to_string(),
            "nb_read_frames" => streams[index].1 = value.parse().expect("count"),
            _ => {}
        }
    }
    streams
}

/// What a full decode of `path` with ffmpeg prints at level error (empty: none).
pub fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Reads the audio and video tags of an FLV file as the frames an RTMP publisher sends.
pub fn read_flv(data: &[u8]) -> Vec<FlvFrame> {
    assert_eq!(&data[..3], b"FLV", "not an FLV file");
    let u24 = |b: &[u8]| (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
    let header_len = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
    let mut at = header_len + 4; // + PreviousTagSize0
    let mut frames = Vec::new();
    while at + 11 <= data.len() {
        let tag_type = data[at] & 0x1F;
        let size = u24(&data[at + 1..]) as usize;
        let timestamp = u24(&data[at + 4..]) | (u32::from(data[at + 7]) << 24);
        let body = &data[at + 11..at + 11 + size];
        at += 11 + size + 4;
        let kind = match tag_type {
            8 => FrameKind::Audio,
            9 => FrameKind::Video,
            _ => continue,
        };
        let sequence_header = body.get(1) == Some(&0);
        frames.push(FlvFrame {
            kind,
            timestamp,
            payload: Bytes::copy_from_slice(body),
            keyframe: kind == FrameKind::Video && body[0] >> 4 == 1 && !sequence_header,
            sequence_header,
        });
    }
    frames
}

/// Muxes `frames` with the default config, taking the output off as SRT datagrams.
pub fn mux(frames: &[FlvFrame]) -> (Vec<u8>, MuxStats) {
    let mut muxer = Muxer::new(MuxerConfig::default());
    let mut out = BytesMut::new();
    let mut ts = Vec::new();
    for frame in frames {
        muxer.push_frame(frame, &mut out);
        while let Some(datagram) = next_datagram(&mut out, true) {
            assert!(datagram.len() <= DATAGRAM_SIZE && datagram.len() % 188 == 0);
            ts.extend_from_slice(&datagram);
        }
    }
    assert!(out.is_empty());
    (ts, muxer.stats().clone())
}

/// One PES as the oracle saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pes {
    pub pts: u64,
    pub dts: u64,
    /// The PCR in the PES's first packet, if any.
    pub pcr: Option<u64>,
    pub random_access: bool,
}

/// What `mpeg2ts-reader` found in a transport stream.
#[derive(Debug, Default)]
pub struct Report {
    /// (pid, stream_type) of each stream the PMT announced, in the order first announced.
    pub streams: Vec<(u16, u8)>,
    pub pcr_pid: Option<u16>,
    /// PES headers per PID, from the demultiplexer (which drops any PES it sees a
    /// continuity error in).
    pub pes: HashMap<u16, Vec<Pes>>,
    pub continuity_errors: usize,
    /// Every PCR in the stream, in order.
    pub pcrs: Vec<u64>,
    pub packets: usize,
}

thread_local! {
    static REPORT: RefCell<Report> = RefCell::new(Report::default());
    /// (PCR, random access) of the packet being demultiplexed.
    static PACKET_AF: RefCell<(Option<u64>, bool)> = const { RefCell::new((None, false)) };
}

mpeg2ts_reader::packet_filter_switch! {
    OracleFilter<OracleContext> {
        Pes: pes::PesPacketFilter<OracleContext, PesRecorder>,
        Pat: demultiplex::PatPacketFilter<OracleContext>,
        Pmt: demultiplex::PmtPacketFilter<OracleContext>,
        Null: demultiplex::NullPacketFilter<OracleContext>,
    }
}
mpeg2ts_reader::demux_context!(OracleContext, OracleFilter);

impl OracleContext {
    fn do_construct(&mut self, req: demultiplex::FilterRequest<'_, '_>) -> OracleFilter {
        match req {
            demultiplex::FilterRequest::ByPid(psi::pat::PAT_PID) => {
                OracleFilter::Pat(demultiplex::PatPacketFilter::default())
            }
            demultiplex::FilterRequest::ByPid(_) | demultiplex::FilterRequest::Nit { .. } => {
                OracleFilter::Null(demultiplex::NullPacketFilter::default())
            }
            demultiplex::FilterRequest::Pmt {
                pid,
                program_number,
            } => OracleFilter::Pmt(demultiplex::PmtPacketFilter::new(pid, program_number)),
            demultiplex::FilterRequest::ByStream {
                stream_type,
                pmt,
                stream_info,
                ..
            } => {
                let pid = u16::from(stream_info.elementary_pid());
                REPORT.with_borrow_mut(|r| {
                    r.pcr_pid = Some(u16::from(pmt.pcr_pid()));
                    if !r.streams.iter().any(|s| s.0 == pid) {
                        r.streams.push((pid, u8::from(stream_type)));
                    }
                });
                OracleFilter::Pes(pes::PesPacketFilter::new(PesRecorder { pid }))
            }
        }
    }
}

pub struct PesRecorder {
    pid: u16,
}

impl pes::ElementaryStreamConsumer<OracleContext> for PesRecorder {
    fn start_stream(&mut self, _: &mut OracleContext) {}
    fn begin_packet(&mut self, _: &mut OracleContext, header: pes::PesHeader<'_>) {
        let pes::PesContents::Parsed(Some(parsed)) = header.contents() else {
            panic!("pid {:#x}: PES without a parsed header", self.pid);
        };
        let (pts, dts) = match parsed.pts_dts().expect("PTS/DTS") {
            pes::PtsDts::PtsOnly(pts) => {
                let pts = pts.expect("PTS").value();
                (pts, pts)
            }
            pes::PtsDts::Both { pts, dts } => {
                (pts.expect("PTS").value(), dts.expect("DTS").value())
            }
            other => panic!("pid {:#x}: {other:?}", self.pid),
        };
        let (pcr, random_access) = PACKET_AF.with_borrow(|af| *af);
        REPORT.with_borrow_mut(|r| {
            r.pes.entry(self.pid).or_default().push(Pes {
                pts,
                dts,
                pcr,
                random_access,
            })
        });
    }
    fn continue_packet(&mut self, _: &mut OracleContext, _: &[u8]) {}
    fn end_packet(&mut self, _: &mut OracleContext) {}
    fn continuity_error(&mut self, _: &mut OracleContext) {
        REPORT.with_borrow_mut(|r| r.continuity_errors += 1);
    }
}

/// Demultiplexes `ts` with `mpeg2ts-reader`, one packet at a time.
pub fn inspect(ts: &[u8]) -> Report {
    REPORT.with_borrow_mut(|r| *r = Report::default());
    assert_eq!(ts.len() % 188, 0, "whole packets");
    let mut ctx = OracleContext::new();
    let mut demux = demultiplex::Demultiplex::new(&mut ctx);
    for chunk in ts.chunks(188) {
        let p = packet::Packet::try_new(chunk).expect("sync byte");
        let (pcr, random_access) = match p.adaptation_field() {
            Some(af) => (
                af.pcr().ok().map(|c| c.base()),
                af.random_access_indicator(),
            ),
            None => (None, false),
        };
        if let Some(pcr) = pcr {
            REPORT.with_borrow_mut(|r| r.pcrs.push(pcr));
        }
        PACKET_AF.with_borrow_mut(|af| *af = (pcr, random_access));
        demux.push(&mut ctx, chunk);
    }
    REPORT.with_borrow_mut(|r| {
        r.packets = ts.len() / 188;
        std::mem::take(r)
    })
}

/// Checks what every muxed stream must satisfy and returns the report.
pub fn check_common(ts: &[u8]) -> Report {
    let report = inspect(ts);
    assert_eq!(report.continuity_errors, 0, "continuity errors");
    assert!(
        !report.streams.is_empty(),
        "PAT/PMT with valid CRCs announce the streams"
    );
    assert!(
        report.pcrs.windows(2).all(|w| w[0] <= w[1]),
        "PCR never goes backwards"
    );
    let pcr_pid = report.pcr_pid.expect("PCR PID");
    for (pid, pes) in &report.pes {
        for p in pes {
            assert!(
                p.pts >= p.dts,
                "pid {pid:#x}: PTS {} < DTS {}",
                p.pts,
                p.dts
            );
            if *pid == pcr_pid {
                let pcr = p.pcr.expect("PCR in every PES on the PCR PID");
                assert!(pcr <= p.dts, "PCR {pcr} after DTS {}", p.dts);
            }
        }
    }
    report
}
