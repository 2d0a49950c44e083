//! ISO BMFF writing: the init segment (`ftyp` + `moov`) and fragments (`moof` + `mdat`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::parse::parse_opus_head;
use crate::{Codec, TrackConfig};

/// One sample, times in its track's timescale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode duration (to the next sample's decode time).
    pub duration: u32,
    /// Composition (presentation) time minus decode time.
    pub cts_offset: i32,
    /// A sync sample. Set it on every audio sample.
    pub keyframe: bool,
    /// The sample's bytes, as [`crate::Payload::Frame`] gives them.
    pub data: Bytes,
}

/// One track's samples in a fragment.
#[derive(Clone, Copy, Debug)]
pub struct TrackRun<'a> {
    /// The track's id in the init segment (its index in the `tracks` given to
    /// [`init_segment`] plus one).
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale.
    pub base_decode_time: u64,
    pub samples: &'a [Sample],
}

/// `sample_depends_on = 2` (an I picture), sync.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample = 1`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// ISO/IEC 14496-12 unity matrix.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// A tiny box writer: `open` writes a placeholder size, `close` patches it.
struct Writer {
    buf: BytesMut,
}

impl Writer {
    fn new(capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
        }
    }

    fn open(&mut self, kind: &[u8; 4]) -> usize {
        let start = self.buf.len();
        self.buf.put_u32(0);
        self.buf.put_slice(kind);
        start
    }

    fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let start = self.open(kind);
        self.buf
            .put_u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
        start
    }

    fn close(&mut self, start: usize) {
        // Boxes here are far below 4 GiB except a huge mdat, which fragment() sizes itself.
        let size = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        if let Some(field) = self.buf.get_mut(start..start + 4) {
            field.copy_from_slice(&size.to_be_bytes());
        }
    }

    fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }
    fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }
    fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }
    fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }
    fn bytes(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }
    fn zeros(&mut self, n: usize) {
        self.buf.put_bytes(0, n);
    }

    /// A box with the given body.
    fn leaf(&mut self, kind: &[u8; 4], body: &[u8]) {
        let start = self.open(kind);
        self.bytes(body);
        self.close(start);
    }

    /// A full box with no fields but an entry count of 0.
    fn empty_table(&mut self, kind: &[u8; 4]) {
        let start = self.open_full(kind, 0, 0);
        self.u32(0);
        self.close(start);
    }
}

/// The init segment: `ftyp` + `moov` with one `trak` per config (track id = index + 1) and
/// `mvex`/`trex`; no samples.
pub fn init_segment(tracks: &[&TrackConfig]) -> Bytes {
    let mut w = Writer::new(1024 + tracks.iter().map(|t| t.record.len()).sum::<usize>());
    // ftyp as ffmpeg's `-movflags cmaf` writes it.
    let ftyp = w.open(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0x200);
    w.bytes(b"iso6cmfcmp41");
    w.close(ftyp);

    let moov = w.open(b"moov");
    let mvhd = w.open_full(b"mvhd", 0, 0);
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(1000); // timescale
    w.u32(0); // duration
    w.u32(0x0001_0000); // rate
    w.u16(0x0100); // volume
    w.zeros(2 + 8);
    MATRIX.iter().for_each(|&m| w.u32(m));
    w.zeros(24); // pre_defined
    w.u32(
        u32::try_from(tracks.len())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1),
    ); // next_track_ID
    w.close(mvhd);

    for (i, track) in tracks.iter().enumerate() {
        let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        write_trak(&mut w, id, track);
    }

    let mvex = w.open(b"mvex");
    for i in 0..tracks.len() {
        let trex = w.open_full(b"trex", 0, 0);
        w.u32(u32::try_from(i + 1).unwrap_or(u32::MAX)); // track_ID
        w.u32(1); // default_sample_description_index
        w.u32(0); // default_sample_duration
        w.u32(0); // default_sample_size
        w.u32(0); // default_sample_flags
        w.close(trex);
    }
    w.close(mvex);
    w.close(moov);
    w.buf.freeze()
}

fn write_trak(w: &mut Writer, id: u32, t: &TrackConfig) {
    let video = t.codec.is_video();
    let trak = w.open(b"trak");

    // Flags: enabled, in movie.
    let tkhd = w.open_full(b"tkhd", 0, 3);
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(id);
    w.u32(0); // reserved
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if video { 0 } else { 0x0100 }); // volume
    w.u16(0);
    MATRIX.iter().for_each(|&m| w.u32(m));
    w.u32(u32::from(t.width) << 16);
    w.u32(u32::from(t.height) << 16);
    w.close(tkhd);

    let mdia = w.open(b"mdia");
    let mdhd = w.open_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(t.timescale.max(1));
    w.u32(0); // duration
    w.u16(0x55C4); // language "und"
    w.u16(0);
    w.close(mdhd);

    let hdlr = w.open_full(b"hdlr", 0, 0);
    w.u32(0); // pre_defined
    w.bytes(if video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    w.close(hdlr);

    let minf = w.open(b"minf");
    if video {
        let vmhd = w.open_full(b"vmhd", 0, 1);
        w.zeros(8); // graphicsmode, opcolor
        w.close(vmhd);
    } else {
        let smhd = w.open_full(b"smhd", 0, 0);
        w.zeros(4); // balance, reserved
        w.close(smhd);
    }
    let dinf = w.open(b"dinf");
    let dref = w.open_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.open_full(b"url ", 0, 1); // self-contained
    w.close(url);
    w.close(dref);
    w.close(dinf);

    let stbl = w.open(b"stbl");
    let stsd = w.open_full(b"stsd", 0, 0);
    w.u32(1);
    write_sample_entry(w, t);
    w.close(stsd);
    w.empty_table(b"stts");
    w.empty_table(b"stsc");
    let stsz = w.open_full(b"stsz", 0, 0);
    w.u32(0); // sample_size
    w.u32(0); // sample_count
    w.close(stsz);
    w.empty_table(b"stco");
    w.close(stbl);
    w.close(minf);
    w.close(mdia);
    w.close(trak);
}

fn write_sample_entry(w: &mut Writer, t: &TrackConfig) {
    match t.codec {
        Codec::H264 => visual_entry(w, b"avc1", b"avcC", t),
        Codec::Hevc => visual_entry(w, b"hvc1", b"hvcC", t),
        Codec::Av1 => visual_entry(w, b"av01", b"av1C", t),
        Codec::Aac => {
            let entry = audio_entry_start(w, b"mp4a", t);
            write_esds(w, &t.record);
            w.close(entry);
        }
        Codec::Opus => {
            let entry = audio_entry_start(w, b"Opus", t);
            write_dops(w, &t.record, t.channels);
            w.close(entry);
        }
    }
}

fn visual_entry(w: &mut Writer, kind: &[u8; 4], config: &[u8; 4], t: &TrackConfig) {
    let entry = w.open(kind);
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(16); // pre_defined, reserved
    w.u16(t.width);
    w.u16(t.height);
    w.u32(0x0048_0000); // horizresolution 72 dpi
    w.u32(0x0048_0000); // vertresolution
    w.u32(0);
    w.u16(1); // frame_count
    w.zeros(32); // compressorname
    w.u16(0x0018); // depth
    w.u16(0xFFFF); // pre_defined = -1
    w.leaf(config, &t.record);
    w.close(entry);
}

fn audio_entry_start(w: &mut Writer, kind: &[u8; 4], t: &TrackConfig) -> usize {
    let entry = w.open(kind);
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    w.u16(t.channels);
    w.u16(16); // samplesize
    w.zeros(4);
    // 16.16; rates above 65535 Hz do not fit (the decoder config is authoritative).
    let rate = u16::try_from(t.sample_rate).unwrap_or(0);
    w.u32(u32::from(rate) << 16);
    entry
}

/// An MPEG-4 descriptor header with a 4-byte size (as ffmpeg writes it).
fn descriptor(w: &mut Writer, tag: u8, len: usize) {
    let len = u32::try_from(len).unwrap_or(0).min(0x0FFF_FFFF);
    w.u8(tag);
    w.u8(0x80 | ((len >> 21) & 0x7F) as u8);
    w.u8(0x80 | ((len >> 14) & 0x7F) as u8);
    w.u8(0x80 | ((len >> 7) & 0x7F) as u8);
    w.u8((len & 0x7F) as u8);
}

/// `esds`: ES_Descriptor → DecoderConfigDescriptor (AAC) → DecSpecificInfo (the ASC),
/// SLConfigDescriptor (ISO/IEC 14496-1 7.2.6, 14496-14 3.1.2).
fn write_esds(w: &mut Writer, asc: &[u8]) {
    let esds = w.open_full(b"esds", 0, 0);
    let dsi_len = 5 + asc.len();
    let dcd_len = 13 + dsi_len;
    let sl_len = 5 + 1;
    descriptor(w, 0x03, 3 + 5 + dcd_len + sl_len);
    w.u16(0); // ES_ID
    w.u8(0); // flags, streamPriority
    descriptor(w, 0x04, dcd_len);
    w.u8(0x40); // objectTypeIndication: MPEG-4 Audio
    w.u8(0x15); // streamType 5 (audio) << 2 | upStream 0 | reserved 1
    w.zeros(3); // bufferSizeDB
    w.u32(0); // maxBitrate
    w.u32(0); // avgBitrate
    descriptor(w, 0x05, asc.len());
    w.bytes(asc);
    descriptor(w, 0x06, 1);
    w.u8(0x02); // predefined: MP4
    w.close(esds);
}

/// `dOps` (Encapsulation of Opus in ISO BMFF, 4.3.2) from the OpusHead. The record was
/// checked by the parser; a config built by hand with a bad OpusHead gets a stereo default.
fn write_dops(w: &mut Writer, opus_head: &[u8], channels: u16) {
    let dops = w.open(b"dOps");
    w.u8(0); // Version
    match parse_opus_head(opus_head) {
        Some(h) => {
            w.u8(h.channels);
            w.u16(h.pre_skip);
            w.u32(h.input_sample_rate);
            w.u16(h.output_gain as u16);
            w.u8(h.mapping_family);
            w.bytes(h.mapping);
        }
        None => {
            w.u8(u8::try_from(channels).unwrap_or(2).clamp(1, 2));
            w.u16(312);
            w.u32(48_000);
            w.u16(0);
            w.u8(0);
        }
    }
    w.close(dops);
}

/// One CMAF fragment: `moof` (`mfhd`, one `traf` per run: `tfhd` with
/// default-base-is-moof, `tfdt` v1, `trun` v1) + one `mdat` holding the runs' samples in
/// order. Runs with no samples get a `traf` with an empty `trun`.
///
/// A fragment's `mdat` is limited to what a 32-bit signed data offset reaches (2 GiB);
/// beyond that the offsets saturate (no panic, but no valid file either).
pub fn fragment(sequence_number: u32, runs: &[TrackRun<'_>]) -> Bytes {
    let sample_count: usize = runs.iter().map(|r| r.samples.len()).sum();
    let data_len: usize = runs
        .iter()
        .flat_map(|r| r.samples.iter())
        .map(|s| s.data.len())
        .sum();
    let mut w = Writer::new(64 + runs.len() * 64 + sample_count * 16 + data_len);

    let moof = w.open(b"moof");
    let mfhd = w.open_full(b"mfhd", 0, 0);
    w.u32(sequence_number);
    w.close(mfhd);

    // Where each trun's data_offset goes, and its run's offset within the mdat payload.
    let mut offsets = Vec::with_capacity(runs.len());
    let mut data_pos = 0usize;
    for run in runs {
        let traf = w.open(b"traf");
        let tfhd = w.open_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
        w.u32(run.track_id);
        w.close(tfhd);
        let tfdt = w.open_full(b"tfdt", 1, 0);
        w.u64(run.base_decode_time);
        w.close(tfdt);

        let with_cts = run.samples.iter().any(|s| s.cts_offset != 0);
        // data-offset, sample duration, size, flags [, composition time offsets].
        let flags = 0x0001 | 0x0100 | 0x0200 | 0x0400 | if with_cts { 0x0800 } else { 0 };
        let trun = w.open_full(b"trun", 1, flags);
        w.u32(u32::try_from(run.samples.len()).unwrap_or(u32::MAX));
        offsets.push((w.buf.len(), data_pos));
        w.i32(0); // data_offset, patched below
        for s in run.samples {
            w.u32(s.duration);
            w.u32(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
            w.u32(if s.keyframe {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            });
            if with_cts {
                w.i32(s.cts_offset);
            }
            data_pos = data_pos.saturating_add(s.data.len());
        }
        w.close(trun);
        w.close(traf);
    }
    w.close(moof);

    // data_offset is relative to the start of the moof (default-base-is-moof).
    let mdat_header = 8;
    let moof_len = w.buf.len();
    for (at, pos) in offsets {
        let offset = moof_len.saturating_add(mdat_header).saturating_add(pos);
        let offset = i32::try_from(offset).unwrap_or(i32::MAX);
        if let Some(field) = w.buf.get_mut(at..at + 4) {
            field.copy_from_slice(&offset.to_be_bytes());
        }
    }

    w.u32(u32::try_from(data_len.saturating_add(mdat_header)).unwrap_or(u32::MAX));
    w.bytes(b"mdat");
    for s in runs.iter().flat_map(|r| r.samples.iter()) {
        w.bytes(&s.data);
    }
    w.buf.freeze()
}
