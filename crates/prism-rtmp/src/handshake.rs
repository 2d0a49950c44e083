//! The RTMP handshake (C0/C1/C2, S0/S1/S2), server and client side.
//!
//! Two variants exist on the wire. The "simple" handshake (RTMP spec 5.2) just echoes the
//! peer's random block. The "digest" handshake (Flash Player 9+, FMLE, ffmpeg, many hardware
//! encoders) hides an HMAC-SHA256 digest inside C1/S1 and signs C2/S2; strict clients (ffmpeg
//! among them) reject a server whose S1/S2 do not carry valid signatures once they sent a
//! digest C1. The server detects which variant the client used and answers in kind.

use bytes::{Buf, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::OutQueue;

/// Size of C1/S1/C2/S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The only protocol version supported (plain RTMP; 6 is RTMPE, which is not).
pub const RTMP_VERSION: u8 = 3;

pub(crate) const DIGEST_LEN: usize = 32;

/// The 32-byte constant both Adobe keys end with.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
pub(crate) const FP_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
pub(crate) const FMS_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";

/// Version bytes we put in S1 (nginx-rtmp uses the same); non-zero tells the client "digest".
pub(crate) const SERVER_VERSION: [u8; 4] = [0x0D, 0x0E, 0x0A, 0x0D];
/// Version bytes we put in C1: what ffmpeg sends (9.0.124.2), so servers take the digest path.
const CLIENT_VERSION: [u8; 4] = [9, 0, 124, 2];

/// Peer misbehaviour during the handshake. The connection is closed on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error(
        "peer requested RTMP version {0} in C0/S0; only version 3 is supported \
         (6 and above are RTMPE/encrypted RTMP, which is not supported)"
    )]
    UnsupportedVersion(u8),
    /// An RTMPE C1/S1 without a valid digest: the public key's place cannot be found.
    #[error("RTMPE: no valid digest in the peer's C1/S1")]
    RtmpeNoDigest,
    /// The peer's Diffie-Hellman public key is outside 2..=p-2 (a degenerate key would
    /// make the shared secret guessable).
    #[error("RTMPE: the peer's Diffie-Hellman public key is invalid")]
    RtmpeBadPublicKey,
}

impl HandshakeError {
    /// A short label for metrics; see [`crate::session::SessionError::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::UnsupportedVersion(_) => "unsupported_version",
            HandshakeError::RtmpeNoDigest => "rtmpe_no_digest",
            HandshakeError::RtmpeBadPublicKey => "rtmpe_bad_public_key",
        }
    }
}

/// Where the 4 offset bytes and the digest window start for each digest scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Offset bytes at 8..12, digest somewhere in 12..776 (Flash Player 9 / ffmpeg default).
    Zero,
    /// Offset bytes at 772..776, digest somewhere in 776..1536 (Flash Player 10+).
    One,
}

impl Scheme {
    pub(crate) fn digest_pos(self, block: &[u8; HANDSHAKE_SIZE]) -> usize {
        let base = match self {
            Scheme::Zero => 8,
            Scheme::One => 772,
        };
        let sum: usize = block[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        // 728 = 764-byte half minus offset bytes and digest; always in bounds.
        sum % 728 + base + 4
    }
}

pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    // HMAC takes keys of any length, so this never fails; no panic path either way.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return out;
    };
    for part in parts {
        mac.update(part);
    }
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// The digest over a 1536-byte block excluding the 32-byte digest window at `pos`.
fn block_digest(block: &[u8; HANDSHAKE_SIZE], pos: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_sha256(key, &[&block[..pos], &block[pos + DIGEST_LEN..]])
}

/// Finds a valid digest in `block`, trying scheme 1 then scheme 0 (as ffmpeg does).
pub(crate) fn find_digest(
    block: &[u8; HANDSHAKE_SIZE],
    key: &[u8],
) -> Option<(Scheme, [u8; DIGEST_LEN])> {
    [Scheme::One, Scheme::Zero].into_iter().find_map(|scheme| {
        let pos = scheme.digest_pos(block);
        let expected = block_digest(block, pos, key);
        // Not constant time: this is a protocol fingerprint, not a secret.
        (block[pos..pos + DIGEST_LEN] == expected).then_some((scheme, expected))
    })
}

/// Writes a digest into `block` at the position `scheme` derives from the block itself.
pub(crate) fn imprint_digest(
    block: &mut [u8; HANDSHAKE_SIZE],
    scheme: Scheme,
    key: &[u8],
) -> [u8; DIGEST_LEN] {
    let pos = scheme.digest_pos(block);
    let digest = block_digest(block, pos, key);
    block[pos..pos + DIGEST_LEN].copy_from_slice(&digest);
    digest
}

/// A 1536-byte block whose last 32 bytes sign the first 1504 with
/// HMAC(`full_key`, `peer_digest`): the digest-handshake C2/S2.
fn signed_response(
    rng: &mut Prng,
    full_key: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
) -> [u8; HANDSHAKE_SIZE] {
    let mut block = [0u8; HANDSHAKE_SIZE];
    rng.fill(&mut block);
    let key = hmac_sha256(full_key, &[peer_digest]);
    let split = HANDSHAKE_SIZE - DIGEST_LEN;
    let sig = hmac_sha256(&key, &[&block[..split]]);
    block[split..].copy_from_slice(&sig);
    block
}

pub(crate) fn full_key(text: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(text.len() + KEY_TAIL.len());
    key.extend_from_slice(text);
    key.extend_from_slice(&KEY_TAIL);
    key
}

/// xoshiro256** seeded by the caller's 32 bytes: the handshake only needs unpredictable-ish
/// filler, and the core must not pull entropy itself.
pub(crate) struct Prng([u64; 4]);

impl Prng {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        let mut s = [0u64; 4];
        for (word, bytes) in s.iter_mut().zip(seed.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            *word = u64::from_le_bytes(b);
        }
        if s == [0; 4] {
            // An all-zero state would only ever produce zeros.
            s = [
                0x9E37_79B9_7F4A_7C15,
                0xBF58_476D_1CE4_E5B9,
                0x94D0_49BB_1331_11EB,
                1,
            ];
        }
        Self(s)
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Takes the version byte (C0/S0) and the 1536-byte block after it (C1/S1). The version is
/// checked as soon as it arrives rather than after 1536 more bytes of garbage. `Ok(None)`:
/// not all there yet.
fn take_version_and_block(
    input: &mut BytesMut,
) -> Result<Option<[u8; HANDSHAKE_SIZE]>, HandshakeError> {
    let Some(&version) = input.first() else {
        return Ok(None);
    };
    if version != RTMP_VERSION {
        return Err(HandshakeError::UnsupportedVersion(version));
    }
    if input.len() < 1 + HANDSHAKE_SIZE {
        return Ok(None);
    }
    input.advance(1);
    Ok(Some(take_block(input)))
}

pub(crate) fn take_block(input: &mut BytesMut) -> [u8; HANDSHAKE_SIZE] {
    let mut block = [0u8; HANDSHAKE_SIZE];
    block.copy_from_slice(&input[..HANDSHAKE_SIZE]);
    input.advance(HANDSHAKE_SIZE);
    block
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitC0C1,
    AwaitC2,
    Done,
}

/// Server side: reads C0+C1, answers S0+S1+S2, then reads C2.
pub struct ServerHandshake {
    rng: Prng,
    epoch_ms: u32,
    state: ServerState,
    digest: bool,
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("state", &self.state)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl ServerHandshake {
    /// `random` seeds the filler of S1/S2 (the caller supplies randomness; the core never does
    /// I/O). `epoch_ms` goes into S1's time field.
    pub fn new(random: [u8; 32], epoch_ms: u32) -> Self {
        Self {
            rng: Prng::new(random),
            epoch_ms,
            state: ServerState::AwaitC0C1,
            digest: false,
        }
    }

    /// Consumes handshake bytes from the front of `input` (anything after C2 stays for the
    /// chunk layer) and appends S0+S1+S2 to `out` once C1 is in. Returns `Ok(true)` once the
    /// handshake is complete.
    pub fn handle_input(
        &mut self,
        input: &mut BytesMut,
        out: &mut OutQueue,
    ) -> Result<bool, HandshakeError> {
        if self.state == ServerState::AwaitC0C1 {
            let Some(c1) = take_version_and_block(input)? else {
                return Ok(false);
            };
            self.respond(&c1, out);
            self.state = ServerState::AwaitC2;
        }
        if self.state == ServerState::AwaitC2 {
            if input.len() < HANDSHAKE_SIZE {
                return Ok(false);
            }
            // C2 is not checked: nginx-rtmp and FMS don't either, and clients differ in what
            // they echo.
            input.advance(HANDSHAKE_SIZE);
            self.state = ServerState::Done;
        }
        Ok(true)
    }

    fn respond(&mut self, c1: &[u8; HANDSHAKE_SIZE], out: &mut OutQueue) {
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1[..4].copy_from_slice(&self.epoch_ms.to_be_bytes());
        self.rng.fill(&mut s1[8..]);
        out.put_slice(&[RTMP_VERSION]);

        match find_digest(c1, FP_KEY_TEXT) {
            Some((scheme, client_digest)) => {
                self.digest = true;
                s1[4..8].copy_from_slice(&SERVER_VERSION);
                // Same scheme as the client: Flash Player looks for the server digest there.
                imprint_digest(&mut s1, scheme, FMS_KEY_TEXT);
                let s2 = signed_response(&mut self.rng, &full_key(FMS_KEY_TEXT), &client_digest);
                out.put_slice(&s1);
                out.put_slice(&s2);
            }
            None => {
                // Simple handshake: zero version in S1, S2 echoes C1.
                out.put_slice(&s1);
                out.put_slice(c1);
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    /// Whether the client used the digest handshake (known once S0-S2 were written; for logs).
    pub fn used_digest(&self) -> bool {
        self.digest
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    AwaitS0S1,
    AwaitS2,
    Done,
}

/// Client side: writes C0+C1 (digest variant, as ffmpeg does), answers S1 with C2 and
/// reads S2.
pub struct ClientHandshake {
    rng: Prng,
    state: ClientState,
    c1_digest: [u8; DIGEST_LEN],
    server_digest: Option<[u8; DIGEST_LEN]>,
    s2_verified: bool,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("state", &self.state)
            .field("server_digest", &self.server_digest.is_some())
            .field("s2_verified", &self.s2_verified)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Writes C0+C1 into `out`. C1 carries a scheme-0 digest so that strict servers (FMS,
    /// some CDNs) accept us; lenient servers just echo it.
    pub fn new(random: [u8; 32], epoch_ms: u32, out: &mut OutQueue) -> Self {
        let mut rng = Prng::new(random);
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1[..4].copy_from_slice(&epoch_ms.to_be_bytes());
        c1[4..8].copy_from_slice(&CLIENT_VERSION);
        rng.fill(&mut c1[8..]);
        let c1_digest = imprint_digest(&mut c1, Scheme::Zero, FP_KEY_TEXT);
        out.put_slice(&[RTMP_VERSION]);
        out.put_slice(&c1);
        Self {
            rng,
            state: ClientState::AwaitS0S1,
            c1_digest,
            server_digest: None,
            s2_verified: false,
        }
    }

    /// Consumes S0+S1 (then writes C2) and S2 from the front of `input`. Returns `Ok(true)`
    /// once the handshake is complete; bytes after S2 stay in `input`.
    pub fn handle_input(
        &mut self,
        input: &mut BytesMut,
        out: &mut OutQueue,
    ) -> Result<bool, HandshakeError> {
        if self.state == ClientState::AwaitS0S1 {
            let Some(s1) = take_version_and_block(input)? else {
                return Ok(false);
            };
            // C2 may go out as soon as S1 is in (spec 5.2.4); not waiting for S2 avoids a
            // deadlock with servers that hold S2 back until they see C2.
            let digest = if s1[4..8] == [0; 4] {
                None
            } else {
                find_digest(&s1, FMS_KEY_TEXT).map(|(_, d)| d)
            };
            match digest {
                Some(server_digest) => {
                    let c2 = signed_response(&mut self.rng, &full_key(FP_KEY_TEXT), &server_digest);
                    out.put_slice(&c2);
                }
                None => out.put_slice(&s1),
            }
            self.server_digest = digest;
            self.state = ClientState::AwaitS2;
        }
        if self.state == ClientState::AwaitS2 {
            if input.len() < HANDSHAKE_SIZE {
                return Ok(false);
            }
            let s2 = take_block(input);
            // Not enforced (ffmpeg-style leniency: many servers echo C1 instead of signing),
            // only recorded for diagnostics.
            let key = hmac_sha256(&full_key(FMS_KEY_TEXT), &[&self.c1_digest]);
            let split = HANDSHAKE_SIZE - DIGEST_LEN;
            self.s2_verified = hmac_sha256(&key, &[&s2[..split]])[..] == s2[split..];
            self.state = ClientState::Done;
        }
        Ok(true)
    }

    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    /// Whether S2 carried a valid digest-handshake signature (diagnostics only).
    pub fn server_signed(&self) -> bool {
        self.s2_verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut OutQueue) -> BytesMut {
        BytesMut::from(&out.take_all()[..])
    }

    #[test]
    fn key_constants() {
        assert_eq!(full_key(FP_KEY_TEXT).len(), 62);
        assert_eq!(full_key(FMS_KEY_TEXT).len(), 68);
    }

    #[test]
    fn client_against_server_in_memory() {
        let mut c_out = OutQueue::new();
        let mut s_out = OutQueue::new();
        let mut client = ClientHandshake::new([7; 32], 1000, &mut c_out);
        let mut server = ServerHandshake::new([9; 32], 2000);

        let mut to_server = drain(&mut c_out);
        assert_eq!(to_server.len(), 1 + HANDSHAKE_SIZE);
        assert!(!server.handle_input(&mut to_server, &mut s_out).unwrap());
        assert!(server.used_digest());
        let mut to_client = drain(&mut s_out);
        assert_eq!(to_client.len(), 1 + 2 * HANDSHAKE_SIZE);
        let s0s1s2 = to_client.clone();
        assert!(client.handle_input(&mut to_client, &mut c_out).unwrap());
        assert!(client.is_done());
        assert!(client.server_signed());
        assert!(client.server_digest.is_some());

        let mut to_server = drain(&mut c_out);
        // C2 is signed with HMAC(full FP key, server digest), as ffmpeg's server check expects.
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1.copy_from_slice(&s0s1s2[1..1 + HANDSHAKE_SIZE]);
        let (_, server_digest) = find_digest(&s1, FMS_KEY_TEXT).unwrap();
        let key = hmac_sha256(&full_key(FP_KEY_TEXT), &[&server_digest]);
        assert_eq!(
            &to_server[1504..],
            &hmac_sha256(&key, &[&to_server[..1504]])[..]
        );
        to_server.extend_from_slice(b"\x03chunkdata");
        assert!(server.handle_input(&mut to_server, &mut s_out).unwrap());
        assert!(server.is_done());
        assert_eq!(&to_server[..], b"\x03chunkdata");
        assert!(s_out.is_empty());
    }

    #[test]
    fn simple_c1_with_zero_version_gets_echo() {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        for (i, b) in c1.iter_mut().enumerate().skip(8) {
            *b = (i * 31 % 251) as u8;
        }
        let mut input = BytesMut::new();
        input.extend_from_slice(&[3]);
        input.extend_from_slice(&c1);
        let mut out = OutQueue::new();
        let mut server = ServerHandshake::new([1; 32], 42);
        assert!(!server.handle_input(&mut input, &mut out).unwrap());
        assert!(!server.used_digest());
        let sent = out.take_all();
        assert_eq!(sent[0], 3);
        assert_eq!(&sent[1..5], &42u32.to_be_bytes());
        assert_eq!(&sent[5..9], &[0, 0, 0, 0]);
        assert_eq!(&sent[1 + HANDSHAKE_SIZE..], &c1[..]);

        // C2 dribbles in together with the first chunk bytes.
        let mut input = BytesMut::from(&[0u8; HANDSHAKE_SIZE - 1][..]);
        assert!(!server.handle_input(&mut input, &mut out).unwrap());
        input.extend_from_slice(&[0, 0xAB, 0xCD]);
        assert!(server.handle_input(&mut input, &mut out).unwrap());
        assert_eq!(&input[..], &[0xAB, 0xCD]);
    }

    /// A digest C1 built by hand with the scheme-1 layout (Flash Player 10 style).
    #[test]
    fn digest_c1_scheme_one() {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1[4..8].copy_from_slice(&[10, 0, 32, 18]);
        let mut rng = Prng::new([3; 32]);
        rng.fill(&mut c1[8..]);
        // Offset bytes at 772..776; pick them so the digest lands at 776 + 300.
        c1[772..776].copy_from_slice(&[100, 100, 100, 0]);
        let pos = 776 + 300; // sum 300, below 728
        let digest = hmac_sha256(FP_KEY_TEXT, &[&c1[..pos], &c1[pos + 32..]]);
        c1[pos..pos + 32].copy_from_slice(&digest);
        assert_eq!(
            find_digest(&c1, FP_KEY_TEXT).map(|(s, _)| s),
            Some(Scheme::One)
        );

        let mut input = BytesMut::new();
        input.extend_from_slice(&[3]);
        input.extend_from_slice(&c1);
        let mut out = OutQueue::new();
        let mut server = ServerHandshake::new([5; 32], 0);
        server.handle_input(&mut input, &mut out).unwrap();
        assert!(server.used_digest());
        let sent = out.take_all();
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1.copy_from_slice(&sent[1..1 + HANDSHAKE_SIZE]);
        let s2 = &sent[1 + HANDSHAKE_SIZE..];
        assert_eq!(&s1[4..8], &SERVER_VERSION);

        // S1 carries a server digest at the client's scheme.
        let (scheme, _) = find_digest(&s1, FMS_KEY_TEXT).expect("server digest");
        assert_eq!(scheme, Scheme::One);

        // S2: last 32 bytes = HMAC(HMAC(full FMS key, client digest), S2[..1504]).
        let key = hmac_sha256(&full_key(FMS_KEY_TEXT), &[&digest]);
        let sig = hmac_sha256(&key, &[&s2[..1504]]);
        assert_eq!(&s2[1504..], &sig[..]);
    }

    #[test]
    fn digest_c1_scheme_zero_like_ffmpeg() {
        let mut out = OutQueue::new();
        let _client = ClientHandshake::new([11; 32], 5, &mut out);
        let sent = out.take_all();
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1.copy_from_slice(&sent[1..]);
        assert_eq!(&c1[4..8], &CLIENT_VERSION);
        assert_eq!(
            find_digest(&c1, FP_KEY_TEXT).map(|(s, _)| s),
            Some(Scheme::Zero)
        );
    }

    #[test]
    fn client_accepts_simple_server() {
        let mut out = OutQueue::new();
        let mut client = ClientHandshake::new([2; 32], 0, &mut out);
        let c0c1 = out.take_all();
        let mut input = BytesMut::new();
        input.extend_from_slice(&[3]);
        input.extend_from_slice(&[0x55; HANDSHAKE_SIZE]);
        input[5..9].copy_from_slice(&[0, 0, 0, 0]); // zero version: simple handshake
        let s1 = input[1..].to_vec();
        input.extend_from_slice(&c0c1[1..]); // S2 echoes C1
        input.extend_from_slice(b"rest");
        assert!(client.handle_input(&mut input, &mut out).unwrap());
        assert_eq!(&out.take_all()[..], &s1[..], "C2 echoes a simple S1");
        assert!(!client.server_signed());
        assert_eq!(&input[..], b"rest");
    }

    #[test]
    fn byte_at_a_time() {
        let mut c_out = OutQueue::new();
        let mut s_out = OutQueue::new();
        let mut client = ClientHandshake::new([1; 32], 1, &mut c_out);
        let mut server = ServerHandshake::new([2; 32], 2);
        let mut s_in = BytesMut::new();
        let mut c_in = BytesMut::new();
        for _ in 0..10_000 {
            let bytes = c_out.take_all();
            for &b in bytes.iter() {
                s_in.extend_from_slice(&[b]);
                server.handle_input(&mut s_in, &mut s_out).unwrap();
            }
            let bytes = s_out.take_all();
            for &b in bytes.iter() {
                c_in.extend_from_slice(&[b]);
                client.handle_input(&mut c_in, &mut c_out).unwrap();
            }
            if client.is_done() && server.is_done() {
                break;
            }
        }
        assert!(client.is_done() && server.is_done());
        assert!(client.server_signed());
        assert!(s_in.is_empty() && c_in.is_empty());
    }

    #[test]
    fn rejects_other_versions_early() {
        for v in [0u8, 6, 8, 0x47] {
            let mut server = ServerHandshake::new([0; 32], 0);
            let mut input = BytesMut::from(&[v][..]);
            let err = server
                .handle_input(&mut input, &mut OutQueue::new())
                .unwrap_err();
            assert_eq!(err, HandshakeError::UnsupportedVersion(v));
        }
        let mut out = OutQueue::new();
        let mut client = ClientHandshake::new([0; 32], 0, &mut out);
        let mut input = BytesMut::from(&[6u8][..]);
        assert!(client.handle_input(&mut input, &mut out).is_err());
        // "GET / HTTP/1.1" from a confused HTTP client.
        let mut server = ServerHandshake::new([0; 32], 0);
        let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(server
            .handle_input(&mut input, &mut OutQueue::new())
            .is_err());
    }
}
