//! Slow player: one player stops reading while ffmpeg publishes at 8 Mbit/s and
//! a normal ffmpeg player watches the same stream. Prism sheds the stalled
//! player within its small `[player]` budget (drops frames, then disconnects
//! it for staying over budget: `too_slow`), while the normal player
//! decodes cleanly throughout and ingest keeps flowing.
//!
//! The stalled player is a raw RTMP client written here (handshake, connect,
//! createStream, play with prism-rtmp's encoder and hand-built AMF0
//! commands): it reads until the first video frame arrives, then never reads
//! again while holding the socket open. A client that never read at all
//! would not get past the handshake, so its queue would never fill.

mod common;

use bytes::BytesMut;
use common::*;
use prism_amf0::Value;
use prism_rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits};
use prism_rtmp::handshake::ClientHandshake;
use prism_rtmp::message::{csid, MessageType, RawMessage};
use prism_rtmp::OutQueue;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const KEY: &str = "slow";
const STREAM: &str = "live/slow";

/// A minimal blocking RTMP player.
struct RawPlayer {
    sock: TcpStream,
    input: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
}

impl RawPlayer {
    /// Handshake + connect + createStream + play `app/key`; returns once
    /// `NetStream.Play.Start` and the first video message have arrived.
    fn play(addr: SocketAddr, app: &str, key: &str) -> RawPlayer {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        sock.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        sock.set_nodelay(true).expect("nodelay");
        let mut p = RawPlayer {
            sock,
            input: BytesMut::new(),
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            encoder: ChunkEncoder::new(),
        };

        let mut out = OutQueue::new();
        let mut hs = ClientHandshake::new([7; 32], 0, &mut out);
        p.flush(&mut out);
        loop {
            let done = hs
                .handle_input(&mut p.input, &mut out)
                .unwrap_or_else(|e| panic!("handshake: {e}"));
            p.flush(&mut out);
            if done {
                break;
            }
            p.fill();
        }

        let tc_url = format!("rtmp://{addr}/{app}");
        p.command(
            0,
            &[
                Value::String("connect".into()),
                Value::Number(1.0),
                Value::object([
                    ("app", Value::String(app.into())),
                    ("flashVer", Value::String("LNX 9,0,124,2".into())),
                    ("tcUrl", Value::String(tc_url)),
                    ("fpad", Value::Boolean(false)),
                    ("capabilities", Value::Number(15.0)),
                    ("audioCodecs", Value::Number(4071.0)),
                    ("videoCodecs", Value::Number(252.0)),
                    ("videoFunction", Value::Number(1.0)),
                ]),
            ],
        );
        p.await_result(1.0, "connect");
        p.command(
            0,
            &[
                Value::String("createStream".into()),
                Value::Number(2.0),
                Value::Null,
            ],
        );
        let sid = p
            .await_result(2.0, "createStream")
            .get(3)
            .and_then(Value::as_f64)
            .expect("createStream _result carries a stream id") as u32;
        p.command(
            sid,
            &[
                Value::String("play".into()),
                Value::Number(0.0),
                Value::Null,
                Value::String(key.into()),
            ],
        );
        let (mut started, mut video) = (false, false);
        while !(started && video) {
            let msg = p.next_message();
            match msg.type_id {
                MessageType::VIDEO => video = true,
                MessageType::COMMAND_AMF0 => {
                    let vals = prism_amf0::decode_all(&msg.payload).expect("AMF0 command");
                    let code = vals
                        .get(3)
                        .and_then(|i| i.get("code"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    assert!(
                        !code.contains("Failed") && !code.contains("NotFound"),
                        "play refused: {vals:?}"
                    );
                    started |= code == "NetStream.Play.Start";
                }
                _ => {}
            }
        }
        p
    }

    fn command(&mut self, stream_id: u32, vals: &[Value]) {
        let mut payload = BytesMut::new();
        prism_amf0::encode_all(vals, &mut payload);
        let msg = RawMessage {
            timestamp: 0,
            type_id: MessageType::COMMAND_AMF0,
            stream_id,
            payload: payload.freeze(),
        };
        let mut out = OutQueue::new();
        self.encoder.write(csid::COMMAND, &msg, &mut out);
        self.flush(&mut out);
    }

    /// Reads messages until `_result` for transaction `txn`; panics on `_error`.
    fn await_result(&mut self, txn: f64, what: &str) -> Vec<Value> {
        loop {
            let msg = self.next_message();
            if msg.type_id != MessageType::COMMAND_AMF0 {
                continue;
            }
            let vals = prism_amf0::decode_all(&msg.payload).expect("AMF0 command");
            let name = vals.first().and_then(Value::as_str).unwrap_or_default();
            let t = vals.get(1).and_then(Value::as_f64);
            if t == Some(txn) {
                assert_eq!(name, "_result", "{what} answered {vals:?}");
                return vals;
            }
        }
    }

    fn next_message(&mut self) -> RawMessage {
        loop {
            if let Some(m) = self
                .decoder
                .decode(&mut self.input)
                .unwrap_or_else(|e| panic!("chunk stream from prism: {e}"))
            {
                return m;
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        match self.sock.read(&mut buf) {
            Ok(0) => panic!("prism closed the player connection during setup"),
            Ok(n) => self.input.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading from prism: {e}"),
        }
    }

    fn flush(&mut self, out: &mut OutQueue) {
        let bytes = out.take_all();
        self.sock.write_all(&bytes).expect("write to prism");
    }

    /// Reads everything left until the peer closes. `Ok(bytes)` on EOF or
    /// reset; `Err` if the connection is still open after `timeout`.
    fn drain_to_close(&mut self, timeout: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + timeout;
        self.sock
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(total),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("reading the stalled player's socket: {e}")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "still open {timeout:?} after the disconnect ({total} bytes drained)"
                ));
            }
        }
    }
}

fn metric(prism: &Prism, sel: &str) -> f64 {
    prism.metric_value(sel).unwrap_or(0.0)
}

fn too_slow(prism: &Prism) -> f64 {
    metric(
        prism,
        "prism_connection_errors_total{reason=\"too_slow\",transport=\"rtmp\"}",
    )
}

/// `prism_player_dropped_frames_total` of [`STREAM`], all reasons.
fn player_drops(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("prism_player_dropped_frames_total{"))
        .filter(|l| l.contains(&format!("stream=\"{STREAM}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn stalled_player_is_disconnected_while_others_play_on() {
    let clip = make_clip(5);
    let (rtmp, http) = (free_port(), free_port());
    let prism = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [player]\nmax_queue_bytes = 200000\nmax_queue_ms = 1000\noverflow_disconnect_ms = 2000\n"
    ));
    let url = prism.rtmp_url("live", KEY);
    let mut publisher = Publisher::start_with_args(&url, &clip, true, &HIGH_BITRATE_VIDEO);
    let video_in = |p: &Prism| {
        metric(
            p,
            &format!("prism_ingest_frames_total{{kind=\"video\",stream=\"{STREAM}\"}}"),
        )
    };
    wait_until(Duration::from_secs(15), "ingest of video", || {
        video_in(&prism) > 25.0
    });
    let players = |p: &Prism| metric(p, &format!("prism_players_active{{stream=\"{STREAM}\"}}"));

    // The normal player decodes through the whole stall and disconnect (about
    // 8 s of it here), in a thread.
    const WATCH_SECS: f64 = 16.0;
    let normal = {
        let url = url.clone();
        thread::spawn(move || {
            decode(&url, Some(WATCH_SECS), Duration::from_secs(60)).and_then(|r| {
                if r.exit_ok && r.errors.is_empty() && r.video_frames > 0 {
                    Ok(r.video_frames)
                } else {
                    Err(format!(
                        "normal player: exit_ok={} video_frames={} errors:\n{}",
                        r.exit_ok,
                        r.video_frames,
                        r.errors.join("\n")
                    ))
                }
            })
        })
    };
    wait_until(Duration::from_secs(10), "the ffmpeg player", || {
        players(&prism) == 1.0
    });

    // The raw player gets going, then stops reading.
    let mut stalled = RawPlayer::play(prism.rtmp_addr.expect("rtmp addr"), "live", KEY);
    let stalled_at = Instant::now();
    assert_eq!(players(&prism), 2.0, "{}", prism.metrics());
    assert_eq!(too_slow(&prism), 0.0);
    let ingest_at_stall = video_in(&prism);

    // Prism drops frames for it once the kernel buffers are full, then
    // disconnects it after overflow_disconnect_ms (2 s) over budget.
    wait_until(
        Duration::from_secs(20),
        "the stalled player to be disconnected as too_slow",
        || too_slow(&prism) >= 1.0,
    );
    let disconnected_after = stalled_at.elapsed();
    eprintln!("stalled player disconnected {disconnected_after:?} after it stopped reading");
    assert!(
        !normal.is_finished(),
        "the normal player stopped before the disconnect: {:?}",
        normal.join()
    );
    let text = prism.metrics();
    let drops = player_drops(&text);
    for l in text
        .lines()
        .filter(|l| l.starts_with("prism_player_dropped"))
    {
        eprintln!("  {l}");
    }
    assert!(
        drops > 0.0,
        "no player drops counted before the disconnect\n{text}"
    );
    assert_eq!(too_slow(&prism), 1.0, "only the stalled player is too slow");

    // Its socket sees the close (after what the kernel still held).
    let t = Instant::now();
    let drained = stalled
        .drain_to_close(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "stalled player: {drained} bytes left in the kernel buffers, EOF after {:?}",
        t.elapsed()
    );
    wait_until(Duration::from_secs(5), "one player left", || {
        players(&prism) == 1.0
    });

    // Ingest kept flowing meanwhile and still does.
    let ingest_at_disconnect = video_in(&prism);
    assert!(
        ingest_at_disconnect - ingest_at_stall >= 25.0 * disconnected_after.as_secs_f64() * 0.7,
        "ingest stalled: {ingest_at_stall} -> {ingest_at_disconnect} video frames in {disconnected_after:?}"
    );
    wait_until(
        Duration::from_secs(5),
        "ingest after the disconnect",
        || video_in(&prism) >= ingest_at_disconnect + 25.0,
    );
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());

    // The normal player decoded cleanly throughout.
    let frames = normal
        .join()
        .expect("normal player thread")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        frames as f64 >= 25.0 * WATCH_SECS * 0.9,
        "the normal player decoded only {frames} frames in {WATCH_SECS} s"
    );
    assert_eq!(too_slow(&prism), 1.0, "{}", prism.metrics());
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    publisher.stop();
}
