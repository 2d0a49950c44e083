use super::*;

fn enc(value: &Value) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(value, &mut out);
    out.to_vec()
}

fn enc_all(values: &[Value]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_all(values, &mut out);
    out.to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Checks `bytes` decodes to exactly `value` and `value` encodes to `bytes`.
fn both_ways(bytes: &[u8], value: Value) {
    let mut input = bytes;
    assert_eq!(decode(&mut input).unwrap(), value, "decoding {bytes:02x?}");
    assert!(input.is_empty(), "left over: {input:02x?}");
    assert_eq!(enc(&value), bytes, "encoding {value:?}");
}

// ---- one byte vector per type ----

#[test]
fn number() {
    both_ways(b"\x00\x3f\xf8\x00\x00\x00\x00\x00\x00", Value::Number(1.5));
    both_ways(
        b"\x00\xc0\x59\x00\x00\x00\x00\x00\x00",
        Value::Number(-100.0),
    );
}

#[test]
fn boolean() {
    both_ways(b"\x01\x01", Value::Boolean(true));
    both_ways(b"\x01\x00", Value::Boolean(false));
    // Any non-zero byte reads as true.
    assert_eq!(decode_all(b"\x01\x7f").unwrap(), [Value::Boolean(true)]);
}

#[test]
fn string() {
    both_ways(b"\x02\x00\x02hi", Value::String("hi".into()));
    both_ways(b"\x02\x00\x00", Value::String(String::new()));
    both_ways(
        "\x02\x00\x03\u{e9}t".as_bytes(),
        Value::String("\u{e9}t".into()),
    );
}

#[test]
fn invalid_utf8_is_lossy() {
    let v = decode_all(b"\x02\x00\x03a\xffb").unwrap();
    assert_eq!(v, [Value::String("a\u{fffd}b".into())]);
    let v = decode_all(b"\x0c\x00\x00\x00\x01\xc3").unwrap();
    assert_eq!(v, [Value::LongString("\u{fffd}".into())]);
}

#[test]
fn object() {
    both_ways(
        b"\x03\x00\x01a\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\x00\x01b\x05\x00\x00\x09",
        Value::object([("a", Value::Number(1.0)), ("b", Value::Null)]),
    );
    both_ways(b"\x03\x00\x00\x09", Value::Object(vec![]));
}

#[test]
fn null_undefined_unsupported() {
    both_ways(b"\x05", Value::Null);
    both_ways(b"\x06", Value::Undefined);
    both_ways(b"\x0d", Value::Unsupported);
}

#[test]
fn reference() {
    both_ways(b"\x07\x01\x02", Value::Reference(0x0102));
}

#[test]
fn ecma_array() {
    both_ways(
        b"\x08\x00\x00\x00\x02\x00\x01k\x05\x00\x01n\x01\x01\x00\x00\x09",
        Value::EcmaArray(vec![
            ("k".into(), Value::Null),
            ("n".into(), Value::Boolean(true)),
        ]),
    );
}

#[test]
fn ecma_array_count_is_only_a_hint() {
    // Count 0 (common in onMetaData from some encoders) but two entries.
    let v = decode_all(b"\x08\x00\x00\x00\x00\x00\x01k\x05\x00\x01m\x06\x00\x00\x09").unwrap();
    assert_eq!(
        v,
        [Value::EcmaArray(vec![
            ("k".into(), Value::Null),
            ("m".into(), Value::Undefined)
        ])]
    );
    // Count 9 but one entry, terminated properly.
    let v = decode_all(b"\x08\x00\x00\x00\x09\x00\x01k\x05\x00\x00\x09").unwrap();
    assert_eq!(v, [Value::EcmaArray(vec![("k".into(), Value::Null)])]);
}

#[test]
fn missing_end_marker_at_end_of_input_is_tolerated() {
    // ECMA array whose count is satisfied.
    let v = decode_all(b"\x08\x00\x00\x00\x01\x00\x01k\x05").unwrap();
    assert_eq!(v, [Value::EcmaArray(vec![("k".into(), Value::Null)])]);
    // Object.
    let v = decode_all(b"\x03\x00\x01k\x05").unwrap();
    assert_eq!(v, [Value::object([("k", Value::Null)])]);
    // But not an ECMA array that announced more entries than arrived.
    assert!(matches!(
        decode_all(b"\x08\x00\x00\x00\x02\x00\x01k\x05"),
        Err(Amf0Error::Truncated { .. })
    ));
    // Nor half a terminator.
    assert!(decode_all(b"\x03\x00\x01k\x05\x00").is_err());
    assert!(decode_all(b"\x03\x00\x01k\x05\x00\x00").is_err());
}

#[test]
fn empty_key_with_a_value_is_a_property() {
    // Only `00 00 09` ends the list; an empty key followed by a value is a
    // legal (if odd) property and round-trips.
    both_ways(
        b"\x03\x00\x00\x05\x00\x00\x09",
        Value::object([("", Value::Null)]),
    );
}

#[test]
fn strict_array() {
    both_ways(
        b"\x0a\x00\x00\x00\x02\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\x02\x00\x01a",
        Value::StrictArray(vec![Value::Number(1.0), Value::String("a".into())]),
    );
    both_ways(b"\x0a\x00\x00\x00\x00", Value::StrictArray(vec![]));
}

#[test]
fn date() {
    both_ways(
        b"\x0b\x42\x77\x4b\x8d\x6c\x4f\x00\x00\xff\xc4",
        Value::Date {
            millis: f64::from_be_bytes(*b"\x42\x77\x4b\x8d\x6c\x4f\x00\x00"),
            timezone: -60,
        },
    );
}

#[test]
fn long_string() {
    both_ways(b"\x0c\x00\x00\x00\x02hi", Value::LongString("hi".into()));
}

#[test]
fn xml_document() {
    both_ways(
        b"\x0f\x00\x00\x00\x04<a/>",
        Value::XmlDocument("<a/>".into()),
    );
}

#[test]
fn typed_object() {
    both_ways(
        b"\x10\x00\x03Foo\x00\x01x\x05\x00\x00\x09",
        Value::TypedObject {
            class_name: "Foo".into(),
            properties: vec![("x".into(), Value::Null)],
        },
    );
}

#[test]
fn long_text_is_written_as_long_string() {
    let text = "x".repeat(70_000);
    let bytes = enc(&Value::String(text.clone()));
    assert_eq!(&bytes[..5], b"\x0c\x00\x01\x11\x70");
    assert_eq!(bytes.len(), 5 + 70_000);
    assert_eq!(decode_all(&bytes).unwrap(), [Value::LongString(text)]);
    // Exactly 65535 bytes still fits a short string.
    let bytes = enc(&Value::String("y".repeat(65_535)));
    assert_eq!(&bytes[..3], b"\x02\xff\xff");
}

#[test]
fn over_long_key_is_clamped() {
    let key = "k".repeat(70_000);
    let bytes = enc(&Value::object([(key, Value::Null)]));
    assert_eq!(&bytes[..3], b"\x03\xff\xff");
    let decoded = decode_all(&bytes).unwrap();
    assert_eq!(
        decoded,
        [Value::object([("k".repeat(65_535), Value::Null)])]
    );
}

// ---- a real command ----

/// `connect` as sent by ffmpeg/OBS (trimmed to the usual first properties).
const CONNECT: &[u8] = b"\x02\x00\x07connect\
\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\
\x03\
\x00\x03app\x02\x00\x04live\
\x00\x04type\x02\x00\x0anonprivate\
\x00\x08flashVer\x02\x00\x1fFMLE/3.0 (compatible; FMSc/1.0)\
\x00\x05tcUrl\x02\x00\x1artmp://localhost:1935/live\
\x00\x00\x09";

fn connect_values() -> Vec<Value> {
    vec![
        Value::String("connect".into()),
        Value::Number(1.0),
        Value::object([
            ("app", Value::String("live".into())),
            ("type", Value::String("nonprivate".into())),
            (
                "flashVer",
                Value::String("FMLE/3.0 (compatible; FMSc/1.0)".into()),
            ),
            ("tcUrl", Value::String("rtmp://localhost:1935/live".into())),
        ]),
    ]
}

#[test]
fn connect_command() {
    let values = decode_all(CONNECT).unwrap();
    assert_eq!(values, connect_values());
    assert_eq!(values[0].as_str(), Some("connect"));
    assert_eq!(values[1].as_f64(), Some(1.0));
    let cmd = &values[2];
    assert_eq!(cmd.get("app").and_then(Value::as_str), Some("live"));
    assert_eq!(
        cmd.get("tcUrl").and_then(Value::as_str),
        Some("rtmp://localhost:1935/live")
    );
    assert_eq!(cmd.get("missing"), None);
    assert_eq!(enc_all(&values), CONNECT);
}

#[test]
fn connect_command_in_amf3_message() {
    let mut payload = vec![0u8];
    payload.extend_from_slice(CONNECT);
    assert_eq!(
        decode_all(strip_amf3_prefix(&payload)).unwrap(),
        connect_values()
    );
}

#[test]
fn strip_amf3_prefix_only_strips_zero() {
    assert_eq!(strip_amf3_prefix(b"\x00\x05"), b"\x05");
    assert_eq!(strip_amf3_prefix(b"\x02\x00\x00"), b"\x02\x00\x00");
    assert_eq!(strip_amf3_prefix(b""), b"");
    assert_eq!(strip_amf3_prefix(b"\x00"), b"");
}

#[test]
fn decode_advances_and_is_untouched_on_error() {
    let mut input: &[u8] = b"\x05\x01\x01\x02\x00\x05ab";
    assert_eq!(decode(&mut input).unwrap(), Value::Null);
    assert_eq!(decode(&mut input).unwrap(), Value::Boolean(true));
    let before = input;
    assert!(decode(&mut input).is_err());
    assert_eq!(input, before);
}

#[test]
fn accessors() {
    assert_eq!(Value::LongString("a".into()).as_str(), Some("a"));
    assert_eq!(Value::XmlDocument("a".into()).as_str(), None);
    assert_eq!(Value::Null.as_f64(), None);
    assert_eq!(Value::Boolean(false).as_bool(), Some(false));
    assert_eq!(Value::Number(0.0).as_bool(), None);
    let ecma = Value::EcmaArray(vec![
        ("d".into(), Value::Number(2.0)),
        ("d".into(), Value::Number(3.0)),
    ]);
    assert_eq!(ecma.get("d"), Some(&Value::Number(2.0)));
    let typed = Value::TypedObject {
        class_name: "C".into(),
        properties: vec![("p".into(), Value::Null)],
    };
    assert_eq!(typed.get("p"), Some(&Value::Null));
    assert_eq!(Value::StrictArray(vec![]).get("0"), None);
}

// ---- round trips ----

fn everything() -> Vec<Value> {
    let inner = Value::object([
        ("n", Value::Number(-0.25)),
        (
            "arr",
            Value::StrictArray(vec![
                Value::Boolean(false),
                Value::object([("deep", Value::EcmaArray(vec![]))]),
                Value::StrictArray(vec![Value::Null, Value::Undefined]),
            ]),
        ),
    ]);
    vec![
        Value::String("onMetaData".into()),
        Value::EcmaArray(vec![
            ("width".into(), Value::Number(1920.0)),
            ("encoder".into(), Value::String("Lavf61".into())),
            ("nested".into(), inner.clone()),
            ("stereo".into(), Value::Boolean(true)),
        ]),
        inner,
        Value::Reference(3),
        Value::Date {
            millis: 1.7e12,
            timezone: 0,
        },
        Value::LongString("long".into()),
        Value::XmlDocument("<x/>".into()),
        Value::Unsupported,
        Value::TypedObject {
            class_name: "flex.Msg".into(),
            properties: vec![
                ("body".into(), Value::StrictArray(vec![Value::Number(1.0)])),
                ("id".into(), Value::String("ü".into())),
            ],
        },
    ]
}

#[test]
fn round_trip_nested() {
    let values = everything();
    let bytes = enc_all(&values);
    assert_eq!(decode_all(&bytes).unwrap(), values);
}

#[test]
fn round_trip_at_max_depth() {
    let mut v = Value::Null;
    for i in 0..MAX_DEPTH {
        v = match i % 4 {
            0 => Value::StrictArray(vec![v]),
            1 => Value::object([("o", v)]),
            2 => Value::EcmaArray(vec![("e".into(), v)]),
            _ => Value::TypedObject {
                class_name: "T".into(),
                properties: vec![("t".into(), v)],
            },
        };
    }
    let bytes = enc(&v);
    assert_eq!(decode_all(&bytes).unwrap(), [v.clone()]);
    // One more level is refused.
    let bytes = enc(&Value::StrictArray(vec![v]));
    assert_eq!(decode_all(&bytes), Err(Amf0Error::TooDeep));
}

// ---- malformed input ----

/// A prefix may only decode if what was cut off is nothing but trailing
/// `00 00 09` terminators (the documented tolerance); otherwise it must fail.
fn check_every_prefix(bytes: &[u8]) {
    for cut in 0..bytes.len() {
        let prefix = &bytes[..cut];
        match decode_all(prefix) {
            Err(_) => {}
            Ok(values) => {
                let again = enc_all(&values);
                let rest = again.strip_prefix(prefix).unwrap_or_else(|| {
                    panic!("prefix {cut} decoded to something else: {values:?}")
                });
                assert!(
                    rest.len() % 3 == 0 && rest.chunks(3).all(|c| c == OBJECT_END_SEQUENCE),
                    "prefix {cut} accepted with more than terminators missing"
                );
            }
        }
    }
}

#[test]
fn truncated_at_every_offset_never_panics() {
    check_every_prefix(CONNECT);
    check_every_prefix(&enc_all(&everything()));
}

#[test]
fn truncated_connect_only_accepted_at_property_boundaries() {
    // With the terminator tolerance an object cut right after a property is
    // accepted; everywhere else the cut must be an error.
    let obj_start = CONNECT.iter().position(|&b| b == 0x03).unwrap() + 1;
    let mut accepted = vec![];
    for cut in 0..CONNECT.len() {
        if decode_all(&CONNECT[..cut]).is_ok() {
            accepted.push(cut);
        }
    }
    let mut expected = vec![0, 10, 19, obj_start];
    let mut rest = &CONNECT[obj_start..];
    for _ in 0..4 {
        let key_len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let val_len = usize::from(u16::from_be_bytes([
            rest[2 + key_len + 1],
            rest[2 + key_len + 2],
        ]));
        let prop_len = 2 + key_len + 3 + val_len;
        rest = &rest[prop_len..];
        expected.push(CONNECT.len() - rest.len());
    }
    assert_eq!(rest, OBJECT_END_SEQUENCE);
    assert_eq!(accepted, expected);
}

#[test]
fn truncated_without_property_lists_is_always_an_error() {
    let values = [
        Value::Number(3.0),
        Value::Boolean(true),
        Value::String("abc".into()),
        Value::Reference(9),
        Value::StrictArray(vec![Value::Null, Value::Number(2.0)]),
        Value::Date {
            millis: 0.0,
            timezone: 0,
        },
        Value::LongString("def".into()),
        Value::XmlDocument("<g/>".into()),
    ];
    for value in &values {
        let bytes = enc(value);
        for cut in 1..bytes.len() {
            assert!(
                decode_all(&bytes[..cut]).is_err(),
                "{value:?} cut at {cut} decoded"
            );
            let mut input = &bytes[..cut];
            assert!(decode(&mut input).is_err());
        }
    }
    // An ECMA array may only lose its terminator, not announced entries.
    let bytes = enc(&Value::EcmaArray(vec![
        ("k".into(), Value::Null),
        ("l".into(), Value::Null),
    ]));
    for cut in 1..bytes.len() {
        let ok = decode_all(&bytes[..cut]).is_ok();
        assert_eq!(ok, cut == bytes.len() - 3, "cut at {cut}");
    }
    let mut input: &[u8] = &[];
    assert!(matches!(
        decode(&mut input),
        Err(Amf0Error::Truncated { .. })
    ));
}

#[test]
fn strict_array_claiming_four_billion_elements() {
    assert!(matches!(
        decode_all(b"\x0a\xff\xff\xff\xff\x05\x05"),
        Err(Amf0Error::Truncated { .. })
    ));
    assert!(matches!(
        decode_all(b"\x0a\xee\x6b\x28\x00"),
        Err(Amf0Error::Truncated { .. })
    ));
}

#[test]
fn huge_string_lengths_are_refused_before_allocating() {
    assert!(matches!(
        decode_all(b"\x0c\xff\xff\xff\xffabc"),
        Err(Amf0Error::Truncated { .. })
    ));
    assert!(matches!(
        decode_all(b"\x0f\xff\xff\xff\xff"),
        Err(Amf0Error::Truncated { .. })
    ));
    assert!(matches!(
        decode_all(b"\x02\xff\xff"),
        Err(Amf0Error::Truncated { .. })
    ));
}

#[test]
fn nesting_1000_deep_is_too_deep() {
    let mut arrays = Vec::new();
    let mut objects = Vec::new();
    let mut ecma = Vec::new();
    for _ in 0..1000 {
        arrays.extend_from_slice(b"\x0a\x00\x00\x00\x01");
        objects.extend_from_slice(b"\x03\x00\x01a");
        ecma.extend_from_slice(b"\x08\x00\x00\x00\x01\x00\x01a");
    }
    arrays.push(0x05);
    objects.push(0x05);
    ecma.push(0x05);
    for _ in 0..1000 {
        objects.extend_from_slice(&OBJECT_END_SEQUENCE);
        ecma.extend_from_slice(&OBJECT_END_SEQUENCE);
    }
    assert_eq!(decode_all(&arrays), Err(Amf0Error::TooDeep));
    assert_eq!(decode_all(&objects), Err(Amf0Error::TooDeep));
    assert_eq!(decode_all(&ecma), Err(Amf0Error::TooDeep));
}

#[test]
fn unknown_and_unsupported_markers() {
    for m in [0x04u8, 0x0e, 0x12, 0x7f, 0xff] {
        assert_eq!(decode_all(&[m]), Err(Amf0Error::UnknownMarker(m)));
    }
    assert_eq!(decode_all(b"\x11\x01"), Err(Amf0Error::Amf3NotSupported));
    assert!(matches!(
        decode_all(b"\x09"),
        Err(Amf0Error::InvalidData(_))
    ));
    // Inside an object too.
    assert_eq!(
        decode_all(b"\x03\x00\x01a\x04\x00\x00\x09"),
        Err(Amf0Error::UnknownMarker(0x04))
    );
}

#[test]
fn errors_display() {
    assert_eq!(
        Amf0Error::UnknownMarker(0x12).to_string(),
        "unknown AMF0 marker 0x12"
    );
    assert!(Amf0Error::TooDeep.to_string().contains("64"));
}

/// Cheap deterministic fuzzing: random bytes and bit-flipped valid encodings
/// must never panic (or blow the stack).
#[test]
fn garbage_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = cat(&[CONNECT, &enc_all(&everything())]);
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| (next() % 20) as u8).collect();
        let _ = decode_all(&bytes);
        let mut mutated = valid.clone();
        for _ in 0..3 {
            let i = (next() as usize) % mutated.len();
            mutated[i] ^= 1 << (next() % 8);
        }
        if let Ok(values) = decode_all(&mutated) {
            // Whatever decodes must encode again without trouble.
            let _ = enc_all(&values);
        }
    }
}
