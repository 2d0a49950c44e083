//! Protocol control messages (types 1-3, 5, 6; spec 5.4) and user control events (type 4;
//! spec 7.1.7), parsed from and built into [`RawMessage`]s.

use bytes::{BufMut, Bytes, BytesMut};

use crate::chunk::ChunkError;
use crate::message::{user_control as uc, MessageType, RawMessage};

/// Set Peer Bandwidth limit types (spec 5.4.5).
pub mod limit_type {
    pub const HARD: u8 = 0;
    pub const SOFT: u8 = 1;
    pub const DYNAMIC: u8 = 2;
}

/// A protocol control message or user control event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    SetChunkSize(u32),
    /// Chunk stream id whose partial message to discard.
    Abort(u32),
    /// Sequence number: total bytes received so far.
    Acknowledgement(u32),
    WindowAckSize(u32),
    SetPeerBandwidth {
        size: u32,
        limit_type: u8,
    },
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        ms: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// A user control event we don't interpret (e.g. SWF verification, 26/27), kept as is.
    Unknown {
        event_type: u16,
        data: Bytes,
    },
}

fn need(payload: &[u8], n: usize, kind: &'static str) -> Result<(), ChunkError> {
    if payload.len() < n {
        return Err(ChunkError::ControlTooShort {
            kind,
            len: payload.len(),
            need: n,
        });
    }
    Ok(())
}

/// Big-endian u32 at `at`; callers have checked the length with `need`.
fn be32(p: &[u8], at: usize) -> u32 {
    match p.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

impl Control {
    /// Parses `msg` if it is a control message; `Ok(None)` for any other type. A payload too
    /// short for its type is [`ChunkError::ControlTooShort`] (control messages belong to the
    /// chunk layer, and one error type keeps the session's `?` simple).
    /// Trailing bytes beyond what a type needs are ignored (some peers pad).
    pub fn parse(msg: &RawMessage) -> Result<Option<Control>, ChunkError> {
        let p = &msg.payload[..];
        let c = match msg.type_id {
            MessageType::SET_CHUNK_SIZE => {
                need(p, 4, "Set Chunk Size")?;
                Control::SetChunkSize(be32(p, 0))
            }
            MessageType::ABORT => {
                need(p, 4, "Abort")?;
                Control::Abort(be32(p, 0))
            }
            MessageType::ACKNOWLEDGEMENT => {
                need(p, 4, "Acknowledgement")?;
                Control::Acknowledgement(be32(p, 0))
            }
            MessageType::WINDOW_ACK_SIZE => {
                need(p, 4, "Window Acknowledgement Size")?;
                Control::WindowAckSize(be32(p, 0))
            }
            MessageType::SET_PEER_BANDWIDTH => {
                need(p, 5, "Set Peer Bandwidth")?;
                Control::SetPeerBandwidth {
                    size: be32(p, 0),
                    limit_type: p[4],
                }
            }
            MessageType::USER_CONTROL => Self::parse_user_control(&msg.payload)?,
            _ => return Ok(None),
        };
        Ok(Some(c))
    }

    fn parse_user_control(payload: &Bytes) -> Result<Control, ChunkError> {
        need(payload, 2, "User Control")?;
        let event_type = u16::from_be_bytes([payload[0], payload[1]]);
        let d = &payload[2..];
        let one = |kind| need(d, 4, kind).map(|()| be32(d, 0));
        Ok(match event_type {
            uc::STREAM_BEGIN => Control::StreamBegin(one("User Control StreamBegin")?),
            uc::STREAM_EOF => Control::StreamEof(one("User Control StreamEOF")?),
            uc::STREAM_DRY => Control::StreamDry(one("User Control StreamDry")?),
            uc::SET_BUFFER_LENGTH => {
                need(d, 8, "User Control SetBufferLength")?;
                Control::SetBufferLength {
                    stream_id: be32(d, 0),
                    ms: be32(d, 4),
                }
            }
            uc::STREAM_IS_RECORDED => {
                Control::StreamIsRecorded(one("User Control StreamIsRecorded")?)
            }
            uc::PING_REQUEST => Control::PingRequest(one("User Control PingRequest")?),
            uc::PING_RESPONSE => Control::PingResponse(one("User Control PingResponse")?),
            _ => Control::Unknown {
                event_type,
                data: payload.slice(2..),
            },
        })
    }

    /// Builds the message (timestamp 0, message stream 0; send it on `csid::CONTROL`).
    pub fn to_message(&self) -> RawMessage {
        let mut b = BytesMut::with_capacity(10);
        let type_id = match *self {
            Control::SetChunkSize(v) => {
                b.put_u32(v);
                MessageType::SET_CHUNK_SIZE
            }
            Control::Abort(v) => {
                b.put_u32(v);
                MessageType::ABORT
            }
            Control::Acknowledgement(v) => {
                b.put_u32(v);
                MessageType::ACKNOWLEDGEMENT
            }
            Control::WindowAckSize(v) => {
                b.put_u32(v);
                MessageType::WINDOW_ACK_SIZE
            }
            Control::SetPeerBandwidth { size, limit_type } => {
                b.put_u32(size);
                b.put_u8(limit_type);
                MessageType::SET_PEER_BANDWIDTH
            }
            Control::StreamBegin(v) => user(&mut b, uc::STREAM_BEGIN, &[v]),
            Control::StreamEof(v) => user(&mut b, uc::STREAM_EOF, &[v]),
            Control::StreamDry(v) => user(&mut b, uc::STREAM_DRY, &[v]),
            Control::SetBufferLength { stream_id, ms } => {
                user(&mut b, uc::SET_BUFFER_LENGTH, &[stream_id, ms])
            }
            Control::StreamIsRecorded(v) => user(&mut b, uc::STREAM_IS_RECORDED, &[v]),
            Control::PingRequest(v) => user(&mut b, uc::PING_REQUEST, &[v]),
            Control::PingResponse(v) => user(&mut b, uc::PING_RESPONSE, &[v]),
            Control::Unknown {
                event_type,
                ref data,
            } => {
                b.put_u16(event_type);
                b.extend_from_slice(data);
                MessageType::USER_CONTROL
            }
        };
        RawMessage {
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload: b.freeze(),
        }
    }
}

fn user(b: &mut BytesMut, event: u16, args: &[u32]) -> MessageType {
    b.put_u16(event);
    for &a in args {
        b.put_u32(a);
    }
    MessageType::USER_CONTROL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all() {
        let all = [
            Control::SetChunkSize(4096),
            Control::Abort(6),
            Control::Acknowledgement(0xDEAD_BEEF),
            Control::WindowAckSize(2_500_000),
            Control::SetPeerBandwidth {
                size: 2_500_000,
                limit_type: limit_type::DYNAMIC,
            },
            Control::StreamBegin(1),
            Control::StreamEof(1),
            Control::StreamDry(1),
            Control::SetBufferLength {
                stream_id: 1,
                ms: 3000,
            },
            Control::StreamIsRecorded(1),
            Control::PingRequest(123_456),
            Control::PingResponse(123_456),
            Control::Unknown {
                event_type: 26,
                data: Bytes::from_static(&[1, 2, 3]),
            },
        ];
        for c in all {
            let m = c.to_message();
            assert_eq!((m.timestamp, m.stream_id), (0, 0));
            assert_eq!(Control::parse(&m).unwrap(), Some(c));
        }
    }

    #[test]
    fn wire_format() {
        let m = Control::SetBufferLength {
            stream_id: 1,
            ms: 3000,
        }
        .to_message();
        assert_eq!(m.type_id, MessageType::USER_CONTROL);
        assert_eq!(&m.payload[..], &[0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8]);
        let m = Control::SetPeerBandwidth {
            size: 5000,
            limit_type: 2,
        }
        .to_message();
        assert_eq!(m.type_id, MessageType::SET_PEER_BANDWIDTH);
        assert_eq!(&m.payload[..], &[0, 0, 0x13, 0x88, 2]);
    }

    #[test]
    fn not_control_and_too_short() {
        let mk = |ty: u8, p: &'static [u8]| RawMessage {
            timestamp: 0,
            type_id: MessageType(ty),
            stream_id: 0,
            payload: Bytes::from_static(p),
        };
        assert_eq!(Control::parse(&mk(9, b"video")).unwrap(), None);
        assert_eq!(Control::parse(&mk(20, b"")).unwrap(), None);
        assert!(matches!(
            Control::parse(&mk(6, &[0, 0, 0, 1])),
            Err(ChunkError::ControlTooShort {
                need: 5,
                len: 4,
                ..
            })
        ));
        assert!(Control::parse(&mk(4, &[0])).is_err());
        assert!(Control::parse(&mk(4, &[0, 6, 0, 0])).is_err());
        assert!(Control::parse(&mk(4, &[0, 3, 0, 0, 0, 1, 0, 0])).is_err());
        assert!(Control::parse(&mk(3, &[])).is_err());
        // Trailing padding is tolerated.
        assert_eq!(
            Control::parse(&mk(5, &[0, 0, 1, 0, 0xFF])).unwrap(),
            Some(Control::WindowAckSize(256))
        );
    }
}
