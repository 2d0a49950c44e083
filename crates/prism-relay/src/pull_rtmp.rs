//! `rtmp://` and `rtmps://` sources: Prism plays the remote stream with the client session's
//! play mode over the push targets' dialers (TCP, TLS) and publishes what arrives.

use crate::dial::ConnError;
use crate::drive::{Driver, Exit, Flow, Output};
use crate::handshake::{epoch_ms, handshake_random};
use crate::source::{PullFuture, SourcePuller, SourceSession};
use bytes::BytesMut;
use prism_config::{ResolvedTarget, SourceConfig};
use prism_hub::{Frame, Subscription};
use prism_metrics::ErrorReason;
use prism_rtmp::session::{ClientConfig, ClientEvent, ClientSession, SessionConfig, SessionError};
use prism_rtmp::url::RtmpUrl;
use prism_rtmp::OutQueue;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect + handshake + play must reach Play.Start within this. An origin that waits for
/// a publisher without answering (nginx-rtmp does) ends here too: the attempt then
/// counts as `setup_timeout` and is retried.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A playing remote that sends nothing for this long is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that says Play.Start but sends no media within this has no such stream (Prism
/// and nginx-rtmp answer a play of an absent stream by waiting for a publisher).
const FIRST_MEDIA_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`SourcePuller`] of `rtmp://` and `rtmps://` URLs (the dialers registered with the
/// relay for those schemes connect).
#[derive(Debug, Default)]
pub struct RtmpPuller;

impl SourcePuller for RtmpPuller {
    fn schemes(&self) -> &'static [&'static str] {
        &["rtmp", "rtmps"]
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
    let url = RtmpUrl::parse(&source.url).map_err(|e| ConnError::new(ErrorReason::BadUrl, e))?;
    let relay = session.relay().clone();
    let Some(dialer) = relay.dialer(&url.scheme).cloned() else {
        return Err(ConnError::new(
            ErrorReason::UnsupportedScheme,
            format!("no transport dials {}://", url.scheme),
        ));
    };
    // The dialer takes a target's options: the source's `ca` / `tls_verify`.
    let target = ResolvedTarget {
        name: "source".into(),
        url: source.url.clone(),
        queue: Default::default(),
        tls: source.options.tls(),
        audio: Default::default(),
        tracks: Default::default(),
    };
    let io = tokio::time::timeout(CONNECT_TIMEOUT, dialer.dial(&url, &target))
        .await
        .map_err(|_| ConnError::new(ErrorReason::ConnectTimeout, "connect timed out"))??;
    let now = Instant::now();
    let client = ClientSession::play(
        ClientConfig {
            app: url.app.clone(),
            tc_url: url.tc_url(),
            key: url.key.clone(),
            session: SessionConfig {
                chunk_size: relay.config().rtmp.chunk_size,
                handshake_timeout: SETUP_TIMEOUT,
                ..SessionConfig::default()
            },
        },
        handshake_random(),
        epoch_ms(),
        now,
    );
    let mut driver = Driver::new(io, prism_egress::Config::default());
    let mut pull = RtmpPull {
        client,
        session,
        unread: 0,
        last_media: None,
        first_media_by: None,
        ended: false,
    };
    driver.queue(pull.client.out());
    match driver.run(&mut pull).await? {
        Exit::Yield if pull.ended => Ok(()),
        _ => Err(ConnError::new(
            ErrorReason::Closed,
            "the source closed the connection",
        )),
    }
}

/// A playing RTMP client as the driver's [`Output`]: no subscription, input only.
struct RtmpPull<'a> {
    client: ClientSession,
    session: &'a mut SourceSession,
    /// Bytes of the input buffer already counted (an incomplete message stays there).
    unread: usize,
    /// When media last arrived, once playing (the idle timer).
    last_media: Option<Instant>,
    /// Play.Start came, no media yet: when to give up.
    first_media_by: Option<Instant>,
    /// The remote ended the stream.
    ended: bool,
}

impl Output for RtmpPull<'_> {
    fn subscription(&self) -> Option<&Subscription> {
        None
    }

    fn send_frames(&mut self, frames: &mut Vec<Arc<Frame>>, _out: &mut OutQueue) {
        frames.clear();
    }

    fn handle_input(
        &mut self,
        input: &mut BytesMut,
        now: Instant,
        out: &mut OutQueue,
    ) -> Result<Flow, ConnError> {
        self.session
            .received(input.len().saturating_sub(self.unread));
        let handled = self.client.handle_input(input, now);
        self.unread = input.len();
        out.append(self.client.out());
        // Events before the error: media that arrived before it is published.
        while let Some(ev) = self.client.poll_event() {
            match ev {
                // The stream is published on its first media, not on Play.Start: a server
                // without the stream says Play.Start too, then sends nothing.
                ClientEvent::Playing => self.first_media_by = Some(now + FIRST_MEDIA_TIMEOUT),
                ClientEvent::Media {
                    kind,
                    timestamp,
                    payload,
                } => {
                    self.session.start(None)?;
                    self.first_media_by = None;
                    self.last_media = Some(now);
                    self.session.send(kind, timestamp, payload);
                }
                ClientEvent::PlayEnded => {
                    self.ended = true;
                    return Ok(Flow::Yield);
                }
                ClientEvent::Publishing => {}
            }
        }
        handled.map_err(play_error)?;
        Ok(Flow::Continue)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.client.poll_timeout(),
            self.last_media.map(|m| m + IDLE_TIMEOUT),
            self.first_media_by,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnError> {
        self.client.handle_timeout(now).map_err(|_| {
            ConnError::new(
                ErrorReason::SetupTimeout,
                "the source did not start playing in time",
            )
        })?;
        if self.first_media_by.is_some_and(|t| now >= t) {
            return Err(ConnError::new(
                ErrorReason::NotFound,
                format!(
                    "the source played nothing within {FIRST_MEDIA_TIMEOUT:?} (no such stream?)"
                ),
            ));
        }
        if self.last_media.is_some_and(|m| now >= m + IDLE_TIMEOUT) {
            return Err(ConnError::new(
                ErrorReason::IdleTimeout,
                format!("no media from the source for {IDLE_TIMEOUT:?}"),
            ));
        }
        Ok(())
    }
}

/// A refused play of a stream the remote does not have is `not_found`.
fn play_error(e: SessionError) -> ConnError {
    match &e {
        SessionError::Refused { code, .. }
            if code.contains("StreamNotFound") || code.contains("Play.Failed") =>
        {
            ConnError::new(ErrorReason::NotFound, e)
        }
        SessionError::Refused { .. } => ConnError::new(ErrorReason::Refused, e),
        _ => ConnError::new(ErrorReason::Protocol, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_play_of_an_absent_stream_is_not_found() {
        let refused = |code: &str| SessionError::Refused {
            code: code.into(),
            description: String::new(),
        };
        assert_eq!(
            play_error(refused("NetStream.Play.StreamNotFound")).reason,
            ErrorReason::NotFound
        );
        assert_eq!(
            play_error(refused("NetStream.Play.Failed")).reason,
            ErrorReason::NotFound
        );
        assert_eq!(
            play_error(refused("NetConnection.Connect.Rejected")).reason,
            ErrorReason::Refused
        );
        assert_eq!(
            play_error(SessionError::CommandWithoutName).reason,
            ErrorReason::Protocol
        );
    }
}
