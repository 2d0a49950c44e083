//! AMF0 micro-benchmarks on the two payloads every publish carries: the `connect` command
//! (decoded once per connection, encoded by every push target) and `onMetaData` (decoded
//! when published, forwarded to every player and target).
//!
//! Run: `cargo bench -p prism-amf0 --bench amf0` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prism_amf0::{decode_all, encode_all, Value};

fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// `connect` as OBS and ffmpeg send it: name, transaction id, command object.
fn connect() -> Vec<Value> {
    vec![
        s("connect"),
        Value::Number(1.0),
        Value::object([
            ("app", s("live")),
            ("type", s("nonprivate")),
            ("flashVer", s("FMLE/3.0 (compatible; FMSc/1.0)")),
            ("swfUrl", s("rtmp://live.example.com/live")),
            ("tcUrl", s("rtmp://live.example.com/live")),
            ("fpad", Value::Boolean(false)),
            ("capabilities", Value::Number(239.0)),
            ("audioCodecs", Value::Number(3575.0)),
            ("videoCodecs", Value::Number(252.0)),
            ("videoFunction", Value::Number(1.0)),
            ("pageUrl", Value::Undefined),
            ("objectEncoding", Value::Number(0.0)),
        ]),
    ]
}

/// `@setDataFrame` + `onMetaData` with the ECMA array OBS writes for H.264 + AAC.
fn metadata() -> Vec<Value> {
    let props: Vec<(String, Value)> = [
        ("duration", Value::Number(0.0)),
        ("fileSize", Value::Number(0.0)),
        ("width", Value::Number(1920.0)),
        ("height", Value::Number(1080.0)),
        ("videocodecid", Value::Number(7.0)),
        ("videodatarate", Value::Number(4500.0)),
        ("framerate", Value::Number(30.0)),
        ("audiocodecid", Value::Number(10.0)),
        ("audiodatarate", Value::Number(160.0)),
        ("audiosamplerate", Value::Number(48000.0)),
        ("audiosamplesize", Value::Number(16.0)),
        ("audiochannels", Value::Number(2.0)),
        ("stereo", Value::Boolean(true)),
        ("2.1", Value::Boolean(false)),
        ("3.1", Value::Boolean(false)),
        ("4.0", Value::Boolean(false)),
        ("4.1", Value::Boolean(false)),
        ("5.1", Value::Boolean(false)),
        ("7.1", Value::Boolean(false)),
        ("encoder", s("obs-output module (libobs version 30.1.2)")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    vec![s("@setDataFrame"), s("onMetaData"), Value::EcmaArray(props)]
}

fn amf0(c: &mut Criterion) {
    let mut g = c.benchmark_group("amf0");
    for (name, values) in [("connect", connect()), ("onMetaData", metadata())] {
        let mut wire = BytesMut::new();
        encode_all(&values, &mut wire);
        let wire = wire.freeze();
        assert_eq!(decode_all(&wire).expect("round trip"), values);
        g.throughput(Throughput::Bytes(wire.len() as u64));

        g.bench_function(format!("{name}/encode"), |b| {
            // One buffer reused, as a session's command path would reuse capacity.
            let mut out = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                encode_all(black_box(&values), &mut out);
                black_box(&out);
            })
        });
        g.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| decode_all(black_box(&wire)).expect("decode"))
        });
    }
    g.finish();
}

criterion_group!(benches, amf0);
criterion_main!(benches);
