//! AMF0 decoding of arbitrary bytes, and the encode/decode round trip of what decodes.
//!
//! Checks: no panic, no stack overflow (nesting is capped), no allocation beyond what the
//! input holds; `decode` leaves its input untouched on error; anything `decode_all`
//! accepts encodes to bytes that decode to the same values (compared bit for bit, so NaN
//! payloads and -0.0 count), and encoding is then stable.

use bytes::BytesMut;
use prism_amf0::{decode, decode_all, encode_all, strip_amf3_prefix, Value};

/// Bit-exact equality (f64 compared by bits, so NaN == NaN).
fn same(a: &Value, b: &Value) -> bool {
    let props = |x: &[(String, Value)], y: &[(String, Value)]| {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && same(v1, v2))
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.to_bits() == y.to_bits(),
        (
            Value::Date {
                millis: x,
                timezone: tx,
            },
            Value::Date {
                millis: y,
                timezone: ty,
            },
        ) => x.to_bits() == y.to_bits() && tx == ty,
        (Value::Object(x), Value::Object(y)) | (Value::EcmaArray(x), Value::EcmaArray(y)) => {
            props(x, y)
        }
        (Value::StrictArray(x), Value::StrictArray(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (
            Value::TypedObject {
                class_name: c1,
                properties: p1,
            },
            Value::TypedObject {
                class_name: c2,
                properties: p2,
            },
        ) => c1 == c2 && props(p1, p2),
        _ => a == b,
    }
}

/// Whether every short-string field of `v` fits AMF0's 16-bit length. Invalid UTF-8 is
/// decoded lossily (one bad byte becomes the 3-byte U+FFFD), so a 64 KiB string can come
/// out longer: `encode` then writes it as LongString (and cuts an over-long key), which is
/// valid AMF0 but not the same value. Prism never re-encodes a peer's values, so the round
/// trip is only checked where it is defined.
fn fits(v: &Value) -> bool {
    const MAX: usize = u16::MAX as usize;
    let props = |p: &[(String, Value)]| p.iter().all(|(k, v)| k.len() <= MAX && fits(v));
    match v {
        Value::String(s) => s.len() <= MAX,
        Value::Object(p) | Value::EcmaArray(p) => props(p),
        Value::StrictArray(items) => items.iter().all(fits),
        Value::TypedObject {
            class_name,
            properties,
        } => class_name.len() <= MAX && props(properties),
        _ => true,
    }
}

pub fn run(data: &[u8]) {
    // One value at a time, as the RTMP metadata path reads them.
    let mut input = data;
    match decode(&mut input) {
        Ok(_) => assert!(input.len() < data.len()),
        Err(_) => assert_eq!(input.len(), data.len()),
    }
    let _ = decode_all(strip_amf3_prefix(data));

    let Ok(values) = decode_all(data) else {
        return;
    };
    let mut first = BytesMut::new();
    encode_all(&values, &mut first);
    let again = decode_all(&first).expect("what Prism encodes decodes");
    assert_eq!(values.len(), again.len());
    if !values.iter().all(fits) {
        return;
    }
    for (a, b) in values.iter().zip(&again) {
        assert!(same(a, b), "round trip changed {a:?} into {b:?}");
    }
    let mut second = BytesMut::new();
    encode_all(&again, &mut second);
    assert_eq!(first, second, "encoding is not stable");
}
