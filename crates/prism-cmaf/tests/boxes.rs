//! The bytes of the init segment and fragments, box by box (ffmpeg checks that they play;
//! this checks the fields players other than ffmpeg rely on).

use bytes::Bytes;
use prism_cmaf::{
    fragment, init_segment, parse_audio, parse_video, Codec, Payload, Sample, TrackConfig, TrackRun,
};

/// Top-level boxes of `data`: (type, body).
fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && size <= data.len(),
            "box size {size} of {}",
            data.len()
        );
        out.push((data[4..8].try_into().unwrap(), &data[8..size]));
        data = &data[size..];
    }
    out
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    boxes(data)
        .into_iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(kind)))
        .1
}

fn children<'a>(data: &'a [u8], kind: &[u8; 4]) -> Vec<&'a [u8]> {
    boxes(data)
        .into_iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, b)| b)
        .collect()
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

fn config(p: Payload) -> TrackConfig {
    match p {
        Payload::Config(c) => c,
        other => panic!("{other:?}"),
    }
}

fn avc() -> TrackConfig {
    let avcc = "0164000dffe100196764000dacd94141fb0110000003001000000303c0f142996001000668ebe3cb22c0fdf8f800";
    let mut p = vec![0x17, 0, 0, 0, 0];
    p.extend(
        (0..avcc.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&avcc[i..i + 2], 16).unwrap()),
    );
    config(parse_video(&Bytes::from(p)).unwrap())
}

fn aac() -> TrackConfig {
    config(parse_audio(&Bytes::from_static(&[0xAF, 0, 0x12, 0x10])).unwrap())
}

fn opus() -> TrackConfig {
    let mut p = vec![0x90];
    p.extend_from_slice(b"OpusOpusHead");
    p.extend_from_slice(&[1, 2, 0x38, 0x01, 0x44, 0xAC, 0, 0, 0xFE, 0xFF, 0]);
    config(parse_audio(&Bytes::from(p)).unwrap())
}

#[test]
fn init_segment_layout() {
    let (v, a, o) = (avc(), aac(), opus());
    let init = init_segment(&[&v, &a, &o]);
    let top = boxes(&init);
    assert_eq!(top.len(), 2);
    assert_eq!(&top[0].0, b"ftyp");
    assert_eq!(top[0].1, b"iso6\0\0\x02\0iso6cmfcmp41");
    let moov = top[1].1;
    let mvhd = child(moov, b"mvhd");
    assert_eq!(be32(&mvhd[12..]), 1000, "movie timescale");
    assert_eq!(be32(&mvhd[96..]), 4, "next_track_ID");

    let traks = children(moov, b"trak");
    assert_eq!(traks.len(), 3);
    let expect = [
        (b"vide", 90_000, b"avc1", 320u32, 240u32),
        (b"soun", 44_100, b"mp4a", 0, 0),
        (b"soun", 48_000, b"Opus", 0, 0),
    ];
    for (i, (trak, (handler, timescale, entry, w, h))) in traks.iter().zip(expect).enumerate() {
        let tkhd = child(trak, b"tkhd");
        assert_eq!(be32(tkhd) & 0xFF_FFFF, 3, "enabled, in movie");
        assert_eq!(be32(&tkhd[12..]), i as u32 + 1, "track_ID");
        assert_eq!(be32(&tkhd[76..]), w << 16);
        assert_eq!(be32(&tkhd[80..]), h << 16);
        let mdia = child(trak, b"mdia");
        assert_eq!(be32(&child(mdia, b"mdhd")[12..]), timescale);
        assert_eq!(&child(mdia, b"hdlr")[8..12], handler);
        let stbl = child(child(mdia, b"minf"), b"stbl");
        let stsd = child(stbl, b"stsd");
        assert_eq!(be32(&stsd[4..]), 1);
        let entries = boxes(&stsd[8..]);
        assert_eq!(&entries[0].0, entry);
        for table in [b"stts", b"stsc", b"stco"] {
            assert_eq!(child(stbl, table), &[0; 8], "empty {table:?}");
        }
        assert_eq!(child(stbl, b"stsz"), &[0; 12]);
    }

    // avcC verbatim after the 78-byte visual sample entry fields.
    let avc1 = boxes(
        &children(
            child(child(child(traks[0], b"mdia"), b"minf"), b"stbl"),
            b"stsd",
        )[0][8..],
    )[0]
    .1;
    assert_eq!(&avc1[24..28], &[1, 64, 0, 240]);
    assert_eq!(child(&avc1[78..], b"avcC"), &v.record[..]);

    // esds: ES_Descriptor → DecoderConfigDescriptor (0x40, audio) → DecSpecificInfo (ASC).
    let stsd = |t: &[u8]| -> Vec<u8> {
        child(child(child(child(t, b"mdia"), b"minf"), b"stbl"), b"stsd")[8..].to_vec()
    };
    let mp4a_stsd = stsd(traks[1]);
    let mp4a = boxes(&mp4a_stsd)[0].1;
    assert_eq!(&mp4a[16..18], &[0, 2], "channels");
    assert_eq!(be32(&mp4a[24..]), 44_100 << 16);
    let esds = child(&mp4a[28..], b"esds");
    let dcd = esds
        .windows(2)
        .position(|w| w == [0x40, 0x15])
        .expect("objectType 0x40");
    let dsi = &esds[dcd + 13..];
    assert_eq!(dsi[0], 0x05);
    assert_eq!(&dsi[5..7], &[0x12, 0x10]);

    // dOps: big-endian fields from the little-endian OpusHead.
    let opus_stsd = stsd(traks[2]);
    let opus_entry = boxes(&opus_stsd)[0].1;
    assert_eq!(&opus_entry[16..18], &[0, 2]);
    assert_eq!(be32(&opus_entry[24..]), 48_000 << 16);
    let dops = child(&opus_entry[28..], b"dOps");
    assert_eq!(dops, &[0, 2, 0x01, 0x38, 0, 0, 0xAC, 0x44, 0xFF, 0xFE, 0]);

    let mvex = child(moov, b"mvex");
    let trex = children(mvex, b"trex");
    assert_eq!(trex.len(), 3);
    for (i, t) in trex.iter().enumerate() {
        assert_eq!(be32(&t[4..]), i as u32 + 1);
        assert_eq!(be32(&t[8..]), 1, "sample description 1");
    }
}

#[test]
fn fragment_layout() {
    let sample = |d: &'static [u8], key, cts| Sample {
        duration: 3000,
        cts_offset: cts,
        keyframe: key,
        data: Bytes::from_static(d),
    };
    let video = [
        sample(b"IDR..", true, 6000),
        sample(b"B", false, -3000),
        sample(b"P..", false, 0),
    ];
    let audio = [sample(b"aac1", true, 0), sample(b"aac2!", true, 0)];
    let frag = fragment(
        7,
        &[
            TrackRun {
                track_id: 1,
                base_decode_time: 1 << 33,
                samples: &video,
            },
            TrackRun {
                track_id: 2,
                base_decode_time: 44_100,
                samples: &audio,
            },
        ],
    );
    let top = boxes(&frag);
    assert_eq!((&top[0].0, &top[1].0), (b"moof", b"mdat"));
    let moof_size = top[0].1.len() + 8;
    assert_eq!(top[1].1, b"IDR..BP..aac1aac2!");
    let moof = top[0].1;
    assert_eq!(be32(&child(moof, b"mfhd")[4..]), 7);
    let trafs = children(moof, b"traf");
    assert_eq!(trafs.len(), 2);

    let tfhd = child(trafs[0], b"tfhd");
    assert_eq!(be32(tfhd), 0x02_0000, "v0, default-base-is-moof only");
    assert_eq!(be32(&tfhd[4..]), 1);
    let tfdt = child(trafs[0], b"tfdt");
    assert_eq!(tfdt[0], 1, "tfdt v1");
    assert_eq!(u64::from_be_bytes(tfdt[4..12].try_into().unwrap()), 1 << 33);
    let trun = child(trafs[0], b"trun");
    assert_eq!(
        be32(trun),
        0x0100_0F01,
        "v1; offset, duration, size, flags, cts"
    );
    assert_eq!(be32(&trun[4..]), 3);
    assert_eq!(
        be32(&trun[8..]) as usize,
        moof_size + 8,
        "data offset from the moof"
    );
    let rows: Vec<[u32; 4]> = trun[12..]
        .chunks(16)
        .map(|r| [be32(r), be32(&r[4..]), be32(&r[8..]), be32(&r[12..])])
        .collect();
    assert_eq!(
        rows,
        [
            [3000, 5, 0x0200_0000, 6000],
            [3000, 1, 0x0101_0000, (-3000i32) as u32],
            [3000, 3, 0x0101_0000, 0],
        ]
    );

    // Audio: no composition offsets, all sync; data right after the video's.
    let trun = child(trafs[1], b"trun");
    assert_eq!(be32(trun), 0x0100_0701);
    assert_eq!(be32(&trun[8..]) as usize, moof_size + 8 + 9);
    assert_eq!(
        &trun[12..],
        &[0, 0, 0x0B, 0xB8, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0x0B, 0xB8, 0, 0, 0, 5, 2, 0, 0, 0]
    );

    // An empty run still makes a well-formed traf.
    let frag = fragment(
        1,
        &[TrackRun {
            track_id: 1,
            base_decode_time: 0,
            samples: &[],
        }],
    );
    let top = boxes(&frag);
    assert_eq!(top[1].1, b"");
    assert_eq!(be32(&child(child(top[0].1, b"traf"), b"trun")[4..]), 0);
    assert_eq!(Codec::Aac.as_str(), "aac");
    assert!(Codec::Av1.is_video() && !Codec::Opus.is_video());
}
