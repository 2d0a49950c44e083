//! AMF0 values on bytes: decode the AMF0 payloads of RTMP command and data
//! messages into [`Value`]s and encode them back.
//!
//! Sans-I/O: this crate only turns bytes into values and values into bytes.
//! It must not know about sockets, RTMP chunking or message framing, nor what
//! any command (`connect`, `publish`, ...) means: that is the RTMP crate's job.
//!
//! The input is untrusted network data, so decoding never panics: every length
//! is checked against the remaining input before anything is allocated, and
//! nesting is capped at [`MAX_DEPTH`].

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use bytes::{BufMut, BytesMut};

/// Deepest nesting of containers (objects, arrays) that [`decode`] accepts.
///
/// Decoding recurses once per level, so without a cap a few kilobytes of
/// `0x0A 00 00 00 01` could overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// AMF0 type markers (AMF0 specification, section 2.1).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// The property-list terminator: an empty key followed by the object-end marker.
const OBJECT_END_SEQUENCE: [u8; 3] = [0x00, 0x00, marker::OBJECT_END];

/// Why AMF0 bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Amf0Error {
    /// The input ended before the value did (or a length/count field claims
    /// more bytes than remain).
    #[error("truncated AMF0 input: needed {needed} bytes, {remaining} remaining")]
    Truncated {
        /// Bytes (at least) required to continue.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A type marker that AMF0 does not define or that is reserved
    /// (0x04 movieclip, 0x0E recordset).
    #[error("unknown AMF0 marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// Marker 0x11 switches to AMF3, which this crate does not decode.
    #[error("AMF3 values (AMF0 marker 0x11) are not supported")]
    Amf3NotSupported,
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 nesting deeper than {} levels", MAX_DEPTH)]
    TooDeep,
    /// Structurally invalid bytes, e.g. an object-end marker where a value
    /// was expected.
    #[error("invalid AMF0 data: {0}")]
    InvalidData(&'static str),
}

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// 0x00: IEEE-754 double.
    Number(f64),
    /// 0x01.
    Boolean(bool),
    /// 0x02: string with a u16 length; invalid UTF-8 is decoded lossily.
    String(String),
    /// 0x03: anonymous object, properties in wire order.
    Object(Vec<(String, Value)>),
    /// 0x05.
    Null,
    /// 0x06.
    Undefined,
    /// 0x07: index of an earlier complex value (kept as-is, not resolved).
    Reference(u16),
    /// 0x08: associative array, properties in wire order. The wire count is
    /// only a hint; the properties run until the object-end marker.
    EcmaArray(Vec<(String, Value)>),
    /// 0x0A: dense array.
    StrictArray(Vec<Value>),
    /// 0x0B: milliseconds since the Unix epoch; `timezone` is reserved and
    /// should be 0.
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Reserved by the specification; kept for round trips.
        timezone: i16,
    },
    /// 0x0C: string with a u32 length.
    LongString(String),
    /// 0x0D.
    Unsupported,
    /// 0x0F: XML text with a u32 length.
    XmlDocument(String),
    /// 0x10: object tagged with a class name.
    TypedObject {
        /// The registered class name.
        class_name: String,
        /// Properties in wire order.
        properties: Vec<(String, Value)>,
    },
}

impl Value {
    /// The text of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// Property lookup for Object, EcmaArray and TypedObject.
    ///
    /// If a key occurs more than once, the first occurrence wins.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(props)
            | Value::EcmaArray(props)
            | Value::TypedObject {
                properties: props, ..
            } => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Builds an `Object` from key/value pairs, keeping their order.
    pub fn object<I, K>(props: I) -> Value
    where
        I: IntoIterator<Item = (K, Value)>,
        K: Into<String>,
    {
        Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Decodes one value from the front of `input`, advancing it.
///
/// On error `input` is left unchanged.
pub fn decode(input: &mut &[u8]) -> Result<Value, Amf0Error> {
    let mut reader = Reader { buf: input };
    let value = reader.value(0)?;
    *input = reader.buf;
    Ok(value)
}

/// Decodes values until input is exhausted.
pub fn decode_all(input: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut reader = Reader { buf: input };
    let mut values = Vec::new();
    while !reader.buf.is_empty() {
        values.push(reader.value(0)?);
    }
    Ok(values)
}

/// Appends the encoding of `value` to `out`. Strings longer than 65535 bytes
/// are written as LongString.
///
/// Fields that AMF0 cannot represent are clamped rather than failing, since a
/// locally built value is a programming matter, not a wire error: property
/// keys and class names longer than 65535 bytes are cut to 65535 bytes, and
/// anything beyond `u32::MAX` bytes/elements is cut to `u32::MAX`.
/// Encoding recurses per nesting level and does not apply [`MAX_DEPTH`].
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Value::String(s) => {
            if s.len() <= usize::from(u16::MAX) {
                out.put_u8(marker::STRING);
                put_short_string(out, s);
            } else {
                out.put_u8(marker::LONG_STRING);
                put_long_string(out, s);
            }
        }
        Value::Object(props) => {
            out.put_u8(marker::OBJECT);
            put_properties(out, props);
        }
        Value::Null => out.put_u8(marker::NULL),
        Value::Undefined => out.put_u8(marker::UNDEFINED),
        Value::Reference(index) => {
            out.put_u8(marker::REFERENCE);
            out.put_u16(*index);
        }
        Value::EcmaArray(props) => {
            out.put_u8(marker::ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            put_properties(out, props);
        }
        Value::StrictArray(items) => {
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.put_u8(marker::STRICT_ARRAY);
            out.put_u32(count);
            // The count is authoritative on the wire, so never write more
            // elements than it announces.
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Value::Date { millis, timezone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        Value::LongString(s) => {
            out.put_u8(marker::LONG_STRING);
            put_long_string(out, s);
        }
        Value::Unsupported => out.put_u8(marker::UNSUPPORTED),
        Value::XmlDocument(s) => {
            out.put_u8(marker::XML_DOCUMENT);
            put_long_string(out, s);
        }
        Value::TypedObject {
            class_name,
            properties,
        } => {
            out.put_u8(marker::TYPED_OBJECT);
            put_short_string(out, class_name);
            put_properties(out, properties);
        }
    }
}

/// Appends the encodings of `values` to `out`, one after another.
pub fn encode_all<'a>(values: impl IntoIterator<Item = &'a Value>, out: &mut BytesMut) {
    for value in values {
        encode(value, out);
    }
}

/// Message types 15 (data AMF3) and 17 (command AMF3) start with one 0x00
/// format byte and then carry AMF0; returns the AMF0 part (payload unchanged
/// if the first byte is not 0).
pub fn strip_amf3_prefix(payload: &[u8]) -> &[u8] {
    match payload.split_first() {
        Some((0, rest)) => rest,
        _ => payload,
    }
}

fn put_short_string(out: &mut BytesMut, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.put_u16(len);
    out.put_slice(&s.as_bytes()[..usize::from(len)]);
}

fn put_long_string(out: &mut BytesMut, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.put_u32(len);
    out.put_slice(&s.as_bytes()[..len as usize]);
}

fn put_properties(out: &mut BytesMut, props: &[(String, Value)]) {
    for (key, value) in props {
        put_short_string(out, key);
        encode(value, out);
    }
    out.put_slice(&OBJECT_END_SEQUENCE);
}

/// A cursor over untrusted input; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        if n > self.buf.len() {
            return Err(Amf0Error::Truncated {
                needed: n,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| Amf0Error::InvalidData("short read"))
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16, Amf0Error> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// `take` checks the length first, so a huge claimed length costs nothing.
    fn text(&mut self, len: usize) -> Result<String, Amf0Error> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u16()?;
        self.text(usize::from(len))
    }

    fn long_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u32()?;
        self.text(usize::try_from(len).unwrap_or(usize::MAX))
    }

    /// Decodes one value; `depth` is the number of enclosing containers.
    fn value(&mut self, depth: usize) -> Result<Value, Amf0Error> {
        match self.u8()? {
            marker::NUMBER => Ok(Value::Number(self.f64()?)),
            // Any non-zero byte is true, as in Flash.
            marker::BOOLEAN => Ok(Value::Boolean(self.u8()? != 0)),
            marker::STRING => Ok(Value::String(self.short_string()?)),
            marker::OBJECT => {
                let inner = enter(depth)?;
                Ok(Value::Object(self.properties(inner, None)?))
            }
            marker::NULL => Ok(Value::Null),
            marker::UNDEFINED => Ok(Value::Undefined),
            marker::REFERENCE => Ok(Value::Reference(self.u16()?)),
            marker::ECMA_ARRAY => {
                let inner = enter(depth)?;
                let hint = self.u32()?;
                Ok(Value::EcmaArray(self.properties(inner, Some(hint))?))
            }
            marker::OBJECT_END => Err(Amf0Error::InvalidData(
                "object-end marker outside a property list",
            )),
            marker::STRICT_ARRAY => {
                let inner = enter(depth)?;
                let count = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
                // Every element is at least one byte (its marker), so a count
                // beyond the remaining bytes is a lie; reject before allocating.
                if count > self.buf.len() {
                    return Err(Amf0Error::Truncated {
                        needed: count,
                        remaining: self.buf.len(),
                    });
                }
                // A Value is far bigger than one byte, so cap the up-front
                // reservation too; the Vec grows with real elements only.
                let mut items = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    items.push(self.value(inner)?);
                }
                Ok(Value::StrictArray(items))
            }
            marker::DATE => {
                let millis = self.f64()?;
                let timezone = self.i16()?;
                Ok(Value::Date { millis, timezone })
            }
            marker::LONG_STRING => Ok(Value::LongString(self.long_string()?)),
            marker::UNSUPPORTED => Ok(Value::Unsupported),
            marker::XML_DOCUMENT => Ok(Value::XmlDocument(self.long_string()?)),
            marker::TYPED_OBJECT => {
                let inner = enter(depth)?;
                let class_name = self.short_string()?;
                let properties = self.properties(inner, None)?;
                Ok(Value::TypedObject {
                    class_name,
                    properties,
                })
            }
            marker::AVMPLUS => Err(Amf0Error::Amf3NotSupported),
            other => Err(Amf0Error::UnknownMarker(other)),
        }
    }

    /// Reads `key value` pairs up to the `00 00 09` terminator.
    ///
    /// Tolerance, as in nginx-rtmp: some encoders (e.g. Envivio) omit the
    /// terminator when the list ends the payload, so input ending exactly where
    /// the terminator would start closes the list. For an ECMA array this is
    /// only accepted once `count_hint` properties have been read, so that a
    /// payload cut short is still reported as truncated. With the terminator
    /// present, the hint is ignored.
    fn properties(
        &mut self,
        depth: usize,
        count_hint: Option<u32>,
    ) -> Result<Vec<(String, Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            if self.buf.is_empty() {
                let expected = count_hint.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
                if props.len() >= expected {
                    return Ok(props);
                }
                return Err(Amf0Error::Truncated {
                    needed: OBJECT_END_SEQUENCE.len(),
                    remaining: 0,
                });
            }
            let key_len = self.u16()?;
            if key_len == 0 && self.buf.first() == Some(&marker::OBJECT_END) {
                self.take(1)?;
                return Ok(props);
            }
            let key = self.text(usize::from(key_len))?;
            let value = self.value(depth)?;
            props.push((key, value));
        }
    }
}

/// Depth for the children of a container opened at `depth`.
fn enter(depth: usize) -> Result<usize, Amf0Error> {
    if depth >= MAX_DEPTH {
        Err(Amf0Error::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

#[cfg(test)]
mod tests;
