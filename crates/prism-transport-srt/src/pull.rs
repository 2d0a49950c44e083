//! `srt://` sources: Prism calls an SRT listener (an encoder, `srt-live-transmit`, another
//! server; ask for the stream with `streamid=#!::r=app/key,m=request`) and demuxes the
//! MPEG-TS it sends into the hub, as SRT ingest does.

use crate::sink::SrtUrl;
use futures::StreamExt;
use prism_config::SourceConfig;
use prism_hub::Frame;
use prism_metrics::ErrorReason;
use prism_mpegts::demux::Demuxer;
use prism_relay::{ConnError, PullFuture, SourcePuller, SourceSession};
use srt_tokio::SrtSocket;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connected listener that sends nothing for this long is gone (srt-tokio's own idle
/// timeout is 5 s of no packets at all; this covers a peer that keeps the link alive but
/// sends no data).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A listener that accepts but yields no frame within this has no such stream.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`SourcePuller`] of `srt://host:port?streamid=...&latency=...&passphrase=...`.
#[derive(Debug, Default)]
pub struct SrtPuller;

impl SourcePuller for SrtPuller {
    fn schemes(&self) -> &'static [&'static str] {
        &["srt"]
    }

    fn pull<'a>(
        &'a self,
        source: &'a SourceConfig,
        session: &'a mut SourceSession,
    ) -> PullFuture<'a> {
        Box::pin(pull(source, session))
    }
}

async fn pull(source: &SourceConfig, session: &mut SourceSession) -> Result<(), ConnError> {
    let url = SrtUrl::parse(&source.url).map_err(|e| ConnError::new(ErrorReason::BadUrl, e))?;
    let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConnError::new(ErrorReason::Connect, "no address for the host"))?;
    let mut socket = tokio::time::timeout(CONNECT_TIMEOUT, call(&url, addr))
        .await
        .map_err(|_| ConnError::new(ErrorReason::ConnectTimeout, "SRT handshake timed out"))?
        .map_err(|e| ConnError::new(ErrorReason::Connect, e))?;
    let mut demux = Demuxer::default();
    let mem = crate::media::demux_charge(session.relay());
    // Published on the first demuxed frame: a listener may accept and send nothing.
    let first_by = tokio::time::Instant::now() + FIRST_FRAME_TIMEOUT;
    loop {
        let wait = match session.is_started() {
            true => tokio::time::Instant::now() + IDLE_TIMEOUT,
            false => first_by,
        };
        let next = tokio::time::timeout_at(wait, socket.next())
            .await
            .map_err(|_| match session.is_started() {
                true => ConnError::new(
                    ErrorReason::IdleTimeout,
                    format!("no data from the source for {IDLE_TIMEOUT:?}"),
                ),
                false => ConnError::new(
                    ErrorReason::NotFound,
                    format!("the source sent no stream within {FIRST_FRAME_TIMEOUT:?}"),
                ),
            })?;
        match next {
            Some(Ok((_, datagram))) => {
                session.received(datagram.len());
                demux.push(&datagram);
                drain(&mut demux, session, addr)?;
                crate::media::update_charge(&mem, &demux);
            }
            Some(Err(e)) => return Err(ConnError::new(ErrorReason::Io, e)),
            // The listener closed: its stream is over (a restarted listener is called
            // again after the backoff).
            None => {
                demux.flush();
                drain(&mut demux, session, addr)?;
                return Err(ConnError::new(
                    ErrorReason::Closed,
                    "the SRT source closed the connection",
                ));
            }
        }
    }
}

/// Publishes what the demuxer has; the first frame starts the publish (which may be
/// refused).
fn drain(
    demux: &mut Demuxer,
    session: &mut SourceSession,
    peer: std::net::SocketAddr,
) -> Result<(), ConnError> {
    while let Some(f) = demux.poll_frame() {
        session.start(Some(peer))?;
        session.send_frame(Frame {
            kind: f.kind,
            timestamp: f.timestamp,
            payload: f.payload,
            keyframe: f.keyframe,
            sequence_header: f.sequence_header,
            disposable: false,
            wire: Default::default(),
            mem: Default::default(),
        });
    }
    Ok(())
}

async fn call(url: &SrtUrl, addr: std::net::SocketAddr) -> std::io::Result<SrtSocket> {
    let latency = url.latency;
    let mut builder = SrtSocket::builder().set(|o| crate::tune(o, latency));
    if let Some(p) = &url.passphrase {
        builder = builder.encryption(url.pbkeylen, p.clone());
    }
    builder.call(addr, url.stream_id.as_deref()).await
}
