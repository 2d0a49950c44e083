//! The RTSP client's set-up, sans-I/O: OPTIONS, DESCRIBE, SETUP per track, PLAY, with
//! one Basic/Digest challenge answered per request; then keep-alives and TEARDOWN. The
//! driver sends what [`Step::Send`] says, binds UDP ports when [`Step::BindPorts`] asks,
//! and hands every answer back; the media side is [`Ingest`].

use crate::auth::{self, Challenge};
use crate::ingest::Ingest;
use crate::message::{self, Request, Response, Transport};
use crate::sdp::{self, SdpError};
use crate::url::RtspUrl;
use std::time::Duration;

/// RTSP's default session timeout (RFC 2326 §12.37) when the server names none.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("Prism/", env!("CARGO_PKG_VERSION"));

/// How RTP is to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lower {
    /// Interleaved in the RTSP connection.
    #[default]
    Tcp,
    /// UDP unicast, a port pair per track.
    Udp,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this request; hand its answer to [`Setup::handle_response`].
    Send(Request),
    /// Bind an RTP/RTCP port pair for track `.0` and give the ports to
    /// [`Setup::set_client_ports`].
    BindPorts(usize),
    /// PLAY was answered: media flows.
    Playing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// A request was refused (`what` answered `status`).
    Refused {
        what: &'static str,
        status: u16,
        reason: String,
    },
    /// The DESCRIBE answer's SDP does not parse.
    Sdp(SdpError),
    /// No H.264/H.265, AAC or Opus track offered.
    NoTracks,
    /// A UDP SETUP answer without `server_port`.
    NoServerPort,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Refused {
                what, status: 401, ..
            } => {
                write!(f, "{what} answered 401: credentials missing or refused")
            }
            SetupError::Refused {
                what,
                status,
                reason,
            } => write!(f, "{what} answered {status} {reason}"),
            SetupError::Sdp(e) => write!(f, "{e}"),
            SetupError::NoTracks => f.write_str("no H.264/H.265/AAC/Opus track"),
            SetupError::NoServerPort => f.write_str("SETUP answer without server_port"),
        }
    }
}

/// Where one track's packets come from, once set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackPath {
    /// RTP and RTCP channels (TCP).
    pub interleaved: (u8, u8),
    /// Our ports (UDP).
    pub client_ports: Option<(u16, u16)>,
    /// The server's ports (UDP).
    pub server_ports: Option<(u16, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Options,
    Describe,
    Setup(usize),
    Play,
    Playing,
}

/// A request awaiting its answer (resent with credentials after a challenge): method,
/// URI, extra headers.
type Pending = (&'static str, String, Vec<(&'static str, String)>);

/// One client session's requests and state.
pub struct Setup {
    url: RtspUrl,
    lower: Lower,
    cseq: u32,
    challenge: Option<Challenge>,
    nc: u32,
    /// The last request was answered 401 once already.
    retried: bool,
    cnonce: String,
    stage: Stage,
    /// The request awaiting its answer: method, URI, extra headers.
    pending: Option<Pending>,
    session: Option<String>,
    session_timeout: Duration,
    get_parameter: bool,
    base: String,
    aggregate: String,
    controls: Vec<String>,
    ingest: Option<Ingest>,
    paths: Vec<TrackPath>,
    ssrc: u32,
}

impl Setup {
    /// `ssrc`: ours, for receiver reports; `cnonce`: an unguessable string for Digest.
    pub fn new(url: RtspUrl, lower: Lower, ssrc: u32, cnonce: String) -> Setup {
        let base = url.request_url();
        Setup {
            url,
            lower,
            cseq: 0,
            challenge: None,
            nc: 0,
            retried: false,
            cnonce,
            stage: Stage::Start,
            pending: None,
            session: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            get_parameter: false,
            aggregate: base.clone(),
            base,
            controls: Vec::new(),
            ingest: None,
            paths: Vec::new(),
            ssrc,
        }
    }

    /// The CSeq of the request awaiting its answer.
    pub fn cseq(&self) -> u32 {
        self.cseq
    }

    /// The server's session timeout (from the `Session` header), for keep-alives.
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    /// The tracks' paths, in [`Ingest::tracks`] order (complete once playing).
    pub fn paths(&self) -> &[TrackPath] {
        &self.paths
    }

    /// The media side, once DESCRIBE was answered (taken once).
    pub fn take_ingest(&mut self) -> Option<Ingest> {
        self.ingest.take()
    }

    /// The first request.
    pub fn start(&mut self) -> Step {
        self.stage = Stage::Options;
        let uri = self.base.clone();
        self.send("OPTIONS", uri, Vec::new())
    }

    fn send(
        &mut self,
        method: &'static str,
        uri: String,
        extra: Vec<(&'static str, String)>,
    ) -> Step {
        let req = self.build(method, &uri, &extra);
        self.pending = Some((method, uri, extra));
        Step::Send(req)
    }

    fn build(&mut self, method: &str, uri: &str, extra: &[(&'static str, String)]) -> Request {
        self.cseq += 1;
        let mut req = Request::new(method, uri)
            .header("CSeq", self.cseq.to_string())
            .header("User-Agent", USER_AGENT);
        for (n, v) in extra {
            req = req.header(n, v.clone());
        }
        if let (Some(ch), Some(user)) = (&self.challenge, &self.url.user) {
            self.nc += 1;
            let pass = self.url.pass.as_deref().unwrap_or_default();
            let value = auth::authorization(ch, user, pass, method, uri, self.nc, &self.cnonce);
            req = req.header("Authorization", value);
        }
        if let Some(s) = &self.session {
            req = req.header("Session", s.clone());
        }
        req
    }

    /// The answer to the last [`Step::Send`].
    pub fn handle_response(&mut self, r: &Response) -> Result<Step, SetupError> {
        let Some((method, uri, extra)) = self.pending.take() else {
            return Err(refused("response", r));
        };
        if r.status == 401 && !self.retried && self.url.user.is_some() {
            if let Some(ch) = auth::pick_challenge(r.headers.get_all("WWW-Authenticate")) {
                self.challenge = Some(ch);
                self.nc = 0;
                self.retried = true;
                return Ok(self.send(method, uri, extra));
            }
        }
        self.retried = false;
        match self.stage {
            Stage::Start | Stage::Playing => Err(refused(method, r)),
            Stage::Options => {
                // Some servers refuse OPTIONS: only its `Public` list is of use.
                self.get_parameter = r.status == 200
                    && r.headers
                        .get("Public")
                        .is_some_and(|p| p.to_ascii_uppercase().contains("GET_PARAMETER"));
                self.stage = Stage::Describe;
                let uri = self.base.clone();
                Ok(self.send("DESCRIBE", uri, vec![("Accept", "application/sdp".into())]))
            }
            Stage::Describe => {
                ok(method, r)?;
                let session = sdp::parse(&r.body).map_err(SetupError::Sdp)?;
                if let Some(b) = r
                    .headers
                    .get("Content-Base")
                    .or_else(|| r.headers.get("Content-Location"))
                {
                    self.base = b.trim().to_owned();
                }
                self.aggregate = sdp::resolve_control(&self.base, session.control.as_deref());
                let ingest = Ingest::from_sdp(&session, self.ssrc);
                if ingest.tracks.is_empty() {
                    self.ingest = Some(ingest);
                    return Err(SetupError::NoTracks);
                }
                self.controls = ingest
                    .tracks
                    .iter()
                    .map(|t| {
                        let control = session
                            .media
                            .get(t.media_index)
                            .and_then(|m| m.control.as_deref());
                        sdp::resolve_control(&self.base, control)
                    })
                    .collect();
                self.paths = vec![TrackPath::default(); ingest.tracks.len()];
                self.ingest = Some(ingest);
                Ok(self.setup(0))
            }
            Stage::Setup(i) => {
                ok(method, r)?;
                let got = r
                    .headers
                    .get("Transport")
                    .and_then(Transport::parse)
                    .unwrap_or_default();
                if let Some(s) = r.headers.get("Session") {
                    let (id, timeout) = message::parse_session(s);
                    self.session = Some(id);
                    if let Some(t) = timeout.filter(|t| (5..=3600).contains(t)) {
                        self.session_timeout = Duration::from_secs(t);
                    }
                }
                let Some(path) = self.paths.get_mut(i) else {
                    return Err(refused(method, r));
                };
                match self.lower {
                    Lower::Tcp => {
                        if let Some(ch) = got.interleaved {
                            path.interleaved = ch;
                        }
                    }
                    Lower::Udp => {
                        path.server_ports = Some(got.server_port.ok_or(SetupError::NoServerPort)?);
                    }
                }
                if i + 1 < self.paths.len() {
                    return Ok(self.setup(i + 1));
                }
                self.stage = Stage::Play;
                let uri = self.aggregate.clone();
                Ok(self.send("PLAY", uri, vec![("Range", "npt=0.000-".into())]))
            }
            Stage::Play => {
                ok(method, r)?;
                self.stage = Stage::Playing;
                Ok(Step::Playing)
            }
        }
    }

    /// SETUP of track `i` (after its ports, for UDP).
    fn setup(&mut self, i: usize) -> Step {
        self.stage = Stage::Setup(i);
        // At most two tracks are taken: no wrap in practice.
        let even = (i as u8).wrapping_mul(2);
        let ch = (even, even.wrapping_add(1));
        let (Some(path), Some(uri)) = (self.paths.get(i), self.controls.get(i)) else {
            // Only a driver asking for a track that was never offered gets here.
            self.stage = Stage::Play;
            let uri = self.aggregate.clone();
            return self.send("PLAY", uri, vec![("Range", "npt=0.000-".into())]);
        };
        let (client_ports, uri) = (path.client_ports, uri.clone());
        match self.lower {
            Lower::Udp if client_ports.is_none() => Step::BindPorts(i),
            lower => {
                let spec = Transport {
                    tcp: lower == Lower::Tcp,
                    unicast: true,
                    interleaved: (lower == Lower::Tcp).then_some(ch),
                    client_port: client_ports,
                    ..Default::default()
                };
                if let Some(p) = self.paths.get_mut(i) {
                    p.interleaved = ch;
                }
                self.send("SETUP", uri, vec![("Transport", spec.to_header())])
            }
        }
    }

    /// The ports bound for track `i` after [`Step::BindPorts`].
    pub fn set_client_ports(&mut self, i: usize, ports: (u16, u16)) -> Step {
        if let Some(p) = self.paths.get_mut(i) {
            p.client_ports = Some(ports);
        }
        self.setup(i)
    }

    /// A keep-alive (GET_PARAMETER if the server offers it, else OPTIONS); its answer
    /// needs no handling.
    pub fn keepalive(&mut self) -> Request {
        let method = if self.get_parameter {
            "GET_PARAMETER"
        } else {
            "OPTIONS"
        };
        let uri = self.aggregate.clone();
        self.build(method, &uri, &[])
    }

    pub fn teardown(&mut self) -> Request {
        let uri = self.aggregate.clone();
        self.build("TEARDOWN", &uri, &[])
    }
}

fn refused(what: &'static str, r: &Response) -> SetupError {
    SetupError::Refused {
        what,
        status: r.status,
        reason: r.reason.clone(),
    }
}

fn ok(what: &'static str, r: &Response) -> Result<(), SetupError> {
    if r.status == 200 {
        Ok(())
    } else {
        Err(refused(what, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const SDP: &str = "v=0\r\na=control:*\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=1\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/1\r\na=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1208\r\na=control:trackID=2\r\n";

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        let mut r = Response::new(status, None);
        for (n, v) in headers {
            r.headers.push(*n, *v);
        }
        r.body = Bytes::from(body.to_owned());
        r
    }

    fn sent(step: Result<Step, SetupError>) -> Request {
        match step {
            Ok(Step::Send(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn digest_tcp_session() {
        let url = RtspUrl::parse("rtsp://admin:pw@cam:554/live").unwrap();
        let mut s = Setup::new(url, Lower::Tcp, 1, "c".into());
        let Step::Send(options) = s.start() else {
            panic!()
        };
        assert_eq!(options.method, "OPTIONS");
        assert_eq!(options.uri, "rtsp://cam:554/live");
        let r = resp(200, &[("Public", "OPTIONS, DESCRIBE, GET_PARAMETER")], "");
        let d = sent(s.handle_response(&r));
        assert_eq!(d.method, "DESCRIBE");
        assert!(d.headers.get("Authorization").is_none());
        // The challenge: the same request again, with Digest.
        let ch = resp(
            401,
            &[("WWW-Authenticate", "Digest realm=\"r\", nonce=\"n\"")],
            "",
        );
        let d2 = sent(s.handle_response(&ch));
        assert_eq!(d2.method, "DESCRIBE");
        assert!(d2
            .headers
            .get("Authorization")
            .unwrap()
            .starts_with("Digest username=\"admin\""));
        assert!(d2.headers.cseq() > d.headers.cseq());
        let r = resp(200, &[("Content-Base", "rtsp://cam:554/live/")], SDP);
        let setup = sent(s.handle_response(&r));
        assert_eq!(setup.uri, "rtsp://cam:554/live/trackID=1");
        assert!(setup
            .headers
            .get("Transport")
            .unwrap()
            .contains("interleaved=0-1"));
        assert!(setup.headers.get("Authorization").is_some());
        let r = resp(
            200,
            &[
                ("Session", "abc;timeout=30"),
                ("Transport", "RTP/AVP/TCP;unicast;interleaved=4-5"),
            ],
            "",
        );
        let setup2 = sent(s.handle_response(&r));
        assert_eq!(setup2.uri, "rtsp://cam:554/live/trackID=2");
        assert_eq!(setup2.headers.get("Session"), Some("abc"));
        let play = sent(s.handle_response(&resp(200, &[], "")));
        assert_eq!(
            (play.method.as_str(), play.uri.as_str()),
            ("PLAY", "rtsp://cam:554/live/")
        );
        assert_eq!(s.handle_response(&resp(200, &[], "")), Ok(Step::Playing));
        assert_eq!(s.paths()[0].interleaved, (4, 5));
        assert_eq!(s.paths()[1].interleaved, (2, 3));
        assert_eq!(s.session_timeout(), Duration::from_secs(30));
        assert_eq!(s.keepalive().method, "GET_PARAMETER");
        assert_eq!(s.take_ingest().unwrap().tracks.len(), 2);
    }

    #[test]
    fn udp_session_asks_for_ports() {
        let url = RtspUrl::parse("rtsp://cam/live").unwrap();
        let mut s = Setup::new(url, Lower::Udp, 1, "c".into());
        s.start();
        sent(s.handle_response(&resp(501, &[], "")));
        let step = s.handle_response(&resp(200, &[], SDP)).unwrap();
        assert_eq!(step, Step::BindPorts(0));
        let Step::Send(setup) = s.set_client_ports(0, (5000, 5001)) else {
            panic!()
        };
        assert!(setup
            .headers
            .get("Transport")
            .unwrap()
            .contains("client_port=5000-5001"));
        // No server_port in the answer: a protocol error.
        let r = resp(
            200,
            &[("Transport", "RTP/AVP;unicast;client_port=5000-5001")],
            "",
        );
        assert_eq!(s.handle_response(&r), Err(SetupError::NoServerPort));
        assert_eq!(s.keepalive().method, "OPTIONS");
    }

    #[test]
    fn refusals() {
        let url = RtspUrl::parse("rtsp://u:p@cam/live").unwrap();
        let mut s = Setup::new(url, Lower::Tcp, 1, "c".into());
        s.start();
        sent(s.handle_response(&resp(200, &[], "")));
        let ch = resp(401, &[("WWW-Authenticate", "Basic realm=\"x\"")], "");
        sent(s.handle_response(&ch));
        // A second 401 for the same request: refused, without the password in the text.
        let e = s.handle_response(&ch).unwrap_err();
        assert!(matches!(e, SetupError::Refused { status: 401, .. }));
        assert!(!e.to_string().contains("p@"));
        let mut s = Setup::new(
            RtspUrl::parse("rtsp://cam/x").unwrap(),
            Lower::Tcp,
            1,
            "c".into(),
        );
        s.start();
        sent(s.handle_response(&resp(200, &[], "")));
        let e = s.handle_response(&resp(200, &[], "v=0\r\nm=audio 0 RTP/AVP 0\r\n"));
        assert_eq!(e, Err(SetupError::NoTracks));
        assert_eq!(s.take_ingest().unwrap().drops()[0], 1, "g711 counted");
    }
}
