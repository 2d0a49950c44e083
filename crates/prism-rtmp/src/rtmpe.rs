//! RTMPE: Adobe's "encrypted RTMP" handshake (C0 = 6, 8 or 9), server and client side.
//!
//! Legacy and weak (RC4, a 1024-bit group): Prism speaks it only for old encoders, set-top
//! boxes and librtmp-based tools that know nothing else; RTMPS is the real answer. The
//! scheme, as librtmp's handshake.h and FFmpeg's rtmpcrypt.c implement it:
//!
//! - C1 and S1 are digest-handshake blocks (see [`crate::handshake`]) that also carry a
//!   128-byte Diffie-Hellman public key (group 2 of RFC 2409, generator 2), in the half of
//!   the block the digest is not in: scheme 0 puts it at `772 + sum(block[1532..1536]) %
//!   632`, scheme 1 at `8 + sum(block[768..772]) % 632`.
//! - Both sides compute the 128-byte shared secret `s`; a side's outgoing RC4 key is the first
//!   16 bytes of HMAC-SHA256(s, peer's public key), its incoming key the same over its own
//!   public key. Both keystreams then skip 1536 bytes; every byte after C2/S2 in both
//!   directions is RC4'd (below the chunk layer: the RTMP session is unchanged).
//! - C2/S2 are signed like the digest handshake. Types 8 and 9 further encrypt the 32-byte
//!   signature in four 8-byte blocks with XTEA (8) or Blowfish (9) under one of 16 fixed keys,
//!   picked by the HMAC key's byte at the block's offset, mod 15.
//!
//! Sans-I/O like the rest of the crate: bytes in, bytes and [`RtmpeCiphers`] out.

use blowfish::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use bytes::{Buf, BytesMut};
use num_bigint::BigUint;
use rc4::{consts::U16, StreamCipher};

use crate::handshake::{
    find_digest, full_key, hmac_sha256, imprint_digest, take_block, HandshakeError, Prng, Scheme,
    DIGEST_LEN, FMS_KEY_TEXT, FP_KEY_TEXT, HANDSHAKE_SIZE, SERVER_VERSION,
};
use crate::OutQueue;

/// C0/S0 values that ask for RTMPE: 6 (plain RTMPE), 8 (XTEA-signed), 9 (Blowfish-signed).
pub const RTMPE_VERSIONS: [u8; 3] = [6, 8, 9];

/// Whether a C0 asks for RTMPE.
pub fn is_rtmpe_version(v: u8) -> bool {
    RTMPE_VERSIONS.contains(&v)
}

/// Size of a Diffie-Hellman public key and of the shared secret.
const KEY_LEN: usize = 128;

/// The 1024-bit MODP group of RFC 2409 section 6.2 (Oakley group 2), generator 2.
const PRIME_1024: [u8; KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x37, 0xED, 0x6B, 0x0B, 0xFF, 0x5C, 0xB6, 0xF4, 0x06, 0xB7, 0xED,
    0xEE, 0x38, 0x6B, 0xFB, 0x5A, 0x89, 0x9F, 0xA5, 0xAE, 0x9F, 0x24, 0x11, 0x7C, 0x4B, 0x1F, 0xE6,
    0x49, 0x28, 0x66, 0x51, 0xEC, 0xE6, 0x53, 0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
];

/// Version bytes of an RTMPE C1 (9.0.115.0 or later is required; ffmpeg sends 128.0.3.2).
const CLIENT_VERSION: [u8; 4] = [128, 0, 3, 2];

/// Where the Diffie-Hellman public key sits in a block whose digest uses `scheme`.
fn dh_pos(scheme: Scheme, block: &[u8; HANDSHAKE_SIZE]) -> usize {
    let (sum_at, base) = match scheme {
        Scheme::Zero => (1532, 772),
        Scheme::One => (768, 8),
    };
    let sum: usize = block[sum_at..sum_at + 4]
        .iter()
        .map(|&b| usize::from(b))
        .sum();
    // 632 = 764-byte half minus offset bytes and the key; always in bounds.
    sum % 632 + base
}

/// One side's Diffie-Hellman key pair.
struct Dh {
    private: BigUint,
    public: [u8; KEY_LEN],
}

fn pad(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    // Every value here is reduced mod p, so it fits.
    let n = bytes.len().min(KEY_LEN);
    out[KEY_LEN - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    out
}

impl Dh {
    /// A key pair from the caller's randomness: a 256-bit private exponent, far beyond the
    /// strength of the group itself.
    fn new(random: [u8; 32]) -> Dh {
        let private = BigUint::from_bytes_be(&hmac_sha256(&random, &[b"prism rtmpe dh"]));
        let public = BigUint::from(2u32).modpow(&private, &BigUint::from_bytes_be(&PRIME_1024));
        Dh {
            public: pad(&public),
            private,
        }
    }

    /// The shared secret with `peer`'s public key, refusing keys outside 2..=p-2.
    fn shared(&self, peer: &[u8]) -> Result<[u8; KEY_LEN], HandshakeError> {
        let p = BigUint::from_bytes_be(&PRIME_1024);
        let y = BigUint::from_bytes_be(peer);
        let one = BigUint::from(1u32);
        if y <= one || y >= &p - &one {
            return Err(HandshakeError::RtmpeBadPublicKey);
        }
        Ok(pad(&y.modpow(&self.private, &p)))
    }
}

/// An RC4 keystream of one direction.
pub struct Rc4Cipher(rc4::Rc4<U16>);

impl Rc4Cipher {
    fn new(secret: &[u8; KEY_LEN], public: &[u8]) -> Self {
        let digest = hmac_sha256(secret, &[public]);
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        let mut rc4 = <rc4::Rc4<U16> as rc4::KeyInit>::new(&key.into());
        // Both ends skip the first 1536 bytes of each keystream.
        rc4.apply_keystream(&mut [0u8; HANDSHAKE_SIZE]);
        Rc4Cipher(rc4)
    }

    /// Encrypts or decrypts `buf` in place (RC4 is its own inverse).
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}

impl std::fmt::Debug for Rc4Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4Cipher")
    }
}

/// The two keystreams of a finished RTMPE handshake.
#[derive(Debug)]
pub struct RtmpeCiphers {
    /// Decrypts what the peer sends.
    pub decrypt: Rc4Cipher,
    /// Encrypts what we send.
    pub encrypt: Rc4Cipher,
}

impl RtmpeCiphers {
    fn new(secret: &[u8; KEY_LEN], ours: &[u8], theirs: &[u8]) -> Self {
        RtmpeCiphers {
            encrypt: Rc4Cipher::new(secret, theirs),
            decrypt: Rc4Cipher::new(secret, ours),
        }
    }
}

/// XTEA keys of type 8, as librtmp publishes them.
const XTEA_KEYS: [[u32; 4]; 16] = [
    [0xbff034b2, 0x11d9081f, 0xccdfb795, 0x748de732],
    [0x086a5eb6, 0x1743090e, 0x6ef05ab8, 0xfe5a39e2],
    [0x7b10956f, 0x76ce0521, 0x2388a73a, 0x440149a1],
    [0xa943f317, 0xebf11bb2, 0xa691a5ee, 0x17f36339],
    [0x7a30e00a, 0xb529e22c, 0xa087aea5, 0xc0cb79ac],
    [0xbdce0c23, 0x2febdeff, 0x1cfaae16, 0x1123239d],
    [0x55dd3f7b, 0x77e7e62e, 0x9bb8c499, 0xc9481ee4],
    [0x407bb6b4, 0x71e89136, 0xa7aebf55, 0xca33b839],
    [0xfcf6bdc3, 0xb63c3697, 0x7ce4f825, 0x04d959b2],
    [0x28e091fd, 0x41954c4c, 0x7fb7db00, 0xe3a066f8],
    [0x57845b76, 0x4f251b03, 0x46d45bcd, 0xa2c30d29],
    [0x0acceef8, 0xda55b546, 0x03473452, 0x5863713b],
    [0xb82075dc, 0xa75f1fee, 0xd84268e8, 0xa72a44cc],
    [0x07cf6e9e, 0xa16d7b25, 0x9fa7ae6c, 0xd92f5629],
    [0xfeb1eae4, 0x8c8c3ce1, 0x4e0064a7, 0x6a387c2a],
    [0x893a9427, 0xcc3013a2, 0xf106385b, 0xa829f927],
];

/// Blowfish keys of type 9, as librtmp publishes them.
const BLOWFISH_KEYS: [[u8; 24]; 16] = [
    [
        0x79, 0x34, 0x77, 0x4c, 0x67, 0xd1, 0x38, 0x3a, 0xdf, 0xb3, 0x56, 0xbe, 0x8b, 0x7b, 0xd0,
        0x24, 0x38, 0xe0, 0x73, 0x58, 0x41, 0x5d, 0x69, 0x67,
    ],
    [
        0x46, 0xf6, 0xb4, 0xcc, 0x01, 0x93, 0xe3, 0xa1, 0x9e, 0x7d, 0x3c, 0x65, 0x55, 0x86, 0xfd,
        0x09, 0x8f, 0xf7, 0xb3, 0xc4, 0x6f, 0x41, 0xca, 0x5c,
    ],
    [
        0x1a, 0xe7, 0xe2, 0xf3, 0xf9, 0x14, 0x79, 0x94, 0xc0, 0xd3, 0x97, 0x43, 0x08, 0x7b, 0xb3,
        0x84, 0x43, 0x2f, 0x9d, 0x84, 0x3f, 0x21, 0x01, 0x9b,
    ],
    [
        0xd3, 0xe3, 0x54, 0xb0, 0xf7, 0x1d, 0xf6, 0x2b, 0x5a, 0x43, 0x4d, 0x04, 0x83, 0x64, 0x3e,
        0x0d, 0x59, 0x2f, 0x61, 0xcb, 0xb1, 0x6a, 0x59, 0x0d,
    ],
    [
        0xc8, 0xc1, 0xe9, 0xb8, 0x16, 0x56, 0x99, 0x21, 0x7b, 0x5b, 0x36, 0xb7, 0xb5, 0x9b, 0xdf,
        0x06, 0x49, 0x2c, 0x97, 0xf5, 0x95, 0x48, 0x85, 0x7e,
    ],
    [
        0xeb, 0xe5, 0xe6, 0x2e, 0xa4, 0xba, 0xd4, 0x2c, 0xf2, 0x16, 0xe0, 0x8f, 0x66, 0x23, 0xa9,
        0x43, 0x41, 0xce, 0x38, 0x14, 0x84, 0x95, 0x00, 0x53,
    ],
    [
        0x66, 0xdb, 0x90, 0xf0, 0x3b, 0x4f, 0xf5, 0x6f, 0xe4, 0x9c, 0x20, 0x89, 0x35, 0x5e, 0xd2,
        0xb2, 0xc3, 0x9e, 0x9f, 0x7f, 0x63, 0xb2, 0x28, 0x81,
    ],
    [
        0xbb, 0x20, 0xac, 0xed, 0x2a, 0x04, 0x6a, 0x19, 0x94, 0x98, 0x9b, 0xc8, 0xff, 0xcd, 0x93,
        0xef, 0xc6, 0x0d, 0x56, 0xa7, 0xeb, 0x13, 0xd9, 0x30,
    ],
    [
        0xbc, 0xf2, 0x43, 0x82, 0x09, 0x40, 0x8a, 0x87, 0x25, 0x43, 0x6d, 0xe6, 0xbb, 0xa4, 0xb9,
        0x44, 0x58, 0x3f, 0x21, 0x7c, 0x99, 0xbb, 0x3f, 0x24,
    ],
    [
        0xec, 0x1a, 0xaa, 0xcd, 0xce, 0xbd, 0x53, 0x11, 0xd2, 0xfb, 0x83, 0xb6, 0xc3, 0xba, 0xab,
        0x4f, 0x62, 0x79, 0xe8, 0x65, 0xa9, 0x92, 0x28, 0x76,
    ],
    [
        0xc6, 0x0c, 0x30, 0x03, 0x91, 0x18, 0x2d, 0x7b, 0x79, 0xda, 0xe1, 0xd5, 0x64, 0x77, 0x9a,
        0x12, 0xc5, 0xb1, 0xd7, 0x91, 0x4f, 0x96, 0x4c, 0xa3,
    ],
    [
        0xd7, 0x7c, 0x2a, 0xbf, 0xa6, 0xe7, 0x85, 0x7c, 0x45, 0xad, 0xff, 0x12, 0x94, 0xd8, 0xde,
        0xa4, 0x5c, 0x3d, 0x79, 0xa4, 0x44, 0x02, 0x5d, 0x22,
    ],
    [
        0x16, 0x19, 0x0d, 0x81, 0x6a, 0x4c, 0xc7, 0xf8, 0xb8, 0xf9, 0x4e, 0xcd, 0x2c, 0x9e, 0x90,
        0x84, 0xb2, 0x08, 0x25, 0x60, 0xe1, 0x1e, 0xae, 0x18,
    ],
    [
        0xe9, 0x7c, 0x58, 0x26, 0x1b, 0x51, 0x9e, 0x49, 0x82, 0x60, 0x61, 0xfc, 0xa0, 0xa0, 0x1b,
        0xcd, 0xf5, 0x05, 0xd6, 0xa6, 0x6d, 0x07, 0x88, 0xa3,
    ],
    [
        0x2b, 0x97, 0x11, 0x8b, 0xd9, 0x4e, 0xd9, 0xdf, 0x20, 0xe3, 0x9c, 0x10, 0xe6, 0xa1, 0x35,
        0x21, 0x11, 0xf9, 0x13, 0x0d, 0x0b, 0x24, 0x65, 0xb2,
    ],
    [
        0x53, 0x6a, 0x4c, 0x54, 0xac, 0x8b, 0x9b, 0xb8, 0x97, 0x29, 0xfc, 0x60, 0x2c, 0x5b, 0x3a,
        0x85, 0x68, 0xb5, 0xaa, 0x6a, 0x44, 0xcd, 0x3f, 0xa7,
    ],
];

/// XTEA, 32 cycles, on two words. Hand-written: it is a dozen lines, and the one crate for
/// it is far less used than the cipher is simple.
fn xtea_encrypt([mut v0, mut v1]: [u32; 2], k: &[u32; 4]) -> [u32; 2] {
    const DELTA: u32 = 0x9E37_79B9;
    let mut sum: u32 = 0;
    for _ in 0..32 {
        v0 = v0.wrapping_add(
            ((v1 << 4) ^ (v1 >> 5)).wrapping_add(v1) ^ sum.wrapping_add(k[(sum & 3) as usize]),
        );
        sum = sum.wrapping_add(DELTA);
        v1 = v1.wrapping_add(
            ((v0 << 4) ^ (v0 >> 5)).wrapping_add(v0)
                ^ sum.wrapping_add(k[((sum >> 11) & 3) as usize]),
        );
    }
    [v0, v1]
}

fn le_words(b: &[u8]) -> [u32; 2] {
    [
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    ]
}

/// Types 8 and 9: encrypts the 32-byte `sig` in place, block `i` under the fixed key chosen
/// by `key[8 * i] % 15`. Words are little-endian (as librtmp reads them). Type 6: unchanged.
fn encrypt_signature(version: u8, sig: &mut [u8], key: &[u8; DIGEST_LEN]) {
    for (i, block) in sig.chunks_exact_mut(8).enumerate() {
        let id = usize::from(key[i * 8] % 15);
        match version {
            8 => {
                let [a, b] = xtea_encrypt(le_words(block), &XTEA_KEYS[id]);
                block[..4].copy_from_slice(&a.to_le_bytes());
                block[4..].copy_from_slice(&b.to_le_bytes());
            }
            9 => {
                // 24-byte keys are within Blowfish's 4..=56, so this never fails.
                if let Ok(bf) = blowfish::BlowfishLE::new_from_slice(&BLOWFISH_KEYS[id]) {
                    bf.encrypt_block(GenericArray::from_mut_slice(block));
                }
            }
            _ => return,
        }
    }
}

/// A C2/S2: random filler whose last 32 bytes are HMAC(HMAC(`full_key`, `peer_digest`),
/// filler), encrypted for types 8/9.
fn signed_response(
    rng: &mut Prng,
    version: u8,
    full_key: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
) -> [u8; HANDSHAKE_SIZE] {
    let mut block = [0u8; HANDSHAKE_SIZE];
    rng.fill(&mut block);
    let key = hmac_sha256(full_key, &[peer_digest]);
    let split = HANDSHAKE_SIZE - DIGEST_LEN;
    let mut sig = hmac_sha256(&key, &[&block[..split]]);
    encrypt_signature(version, &mut sig, &key);
    block[split..].copy_from_slice(&sig);
    block
}

/// Whether `block` carries the signature [`signed_response`] makes.
fn verify_response(
    block: &[u8; HANDSHAKE_SIZE],
    version: u8,
    full_key: &[u8],
    our_digest: &[u8; DIGEST_LEN],
) -> bool {
    let key = hmac_sha256(full_key, &[our_digest]);
    let split = HANDSHAKE_SIZE - DIGEST_LEN;
    let mut sig = hmac_sha256(&key, &[&block[..split]]);
    encrypt_signature(version, &mut sig, &key);
    block[split..] == sig
}

/// A digest block carrying `dh`'s public key: filler, key, digest over both.
fn keyed_block(
    rng: &mut Prng,
    epoch_ms: u32,
    version: [u8; 4],
    scheme: Scheme,
    dh: &Dh,
    key_text: &[u8],
) -> ([u8; HANDSHAKE_SIZE], [u8; DIGEST_LEN]) {
    let mut block = [0u8; HANDSHAKE_SIZE];
    block[..4].copy_from_slice(&epoch_ms.to_be_bytes());
    block[4..8].copy_from_slice(&version);
    rng.fill(&mut block[8..]);
    let pos = dh_pos(scheme, &block);
    block[pos..pos + KEY_LEN].copy_from_slice(&dh.public);
    let digest = imprint_digest(&mut block, scheme, key_text);
    (block, digest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    AwaitFinal,
    Done,
}

/// Server side of RTMPE: reads C0 (6, 8 or 9) + C1, answers S0+S1+S2, reads C2, then hands
/// out the ciphers. Whatever follows C2 in `input` is already encrypted.
pub struct RtmpeServer {
    rng: Prng,
    random: [u8; 32],
    epoch_ms: u32,
    state: State,
    version: u8,
    ciphers: Option<RtmpeCiphers>,
}

impl std::fmt::Debug for RtmpeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpeServer")
            .field("state", &self.state)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl RtmpeServer {
    /// `random` seeds the filler and the Diffie-Hellman private key (the caller supplies
    /// randomness; the core never does I/O).
    pub fn new(random: [u8; 32], epoch_ms: u32) -> Self {
        RtmpeServer {
            rng: Prng::new(random),
            random,
            epoch_ms,
            state: State::AwaitHello,
            version: 0,
            ciphers: None,
        }
    }

    /// The type the client asked for (6, 8 or 9); 0 before C0 arrived.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Consumes C0+C1 (then writes S0+S1+S2 to `out`) and C2 from the front of `input`.
    /// Returns the ciphers once the handshake is complete (once; `None` before and after).
    pub fn handle_input(
        &mut self,
        input: &mut BytesMut,
        out: &mut OutQueue,
    ) -> Result<Option<RtmpeCiphers>, HandshakeError> {
        if self.state == State::AwaitHello {
            let Some((version, c1)) = take_hello(input)? else {
                return Ok(None);
            };
            self.version = version;
            self.respond(&c1, out)?;
            self.state = State::AwaitFinal;
        }
        if self.state == State::AwaitFinal {
            if input.len() < HANDSHAKE_SIZE {
                return Ok(None);
            }
            // C2 is not checked, as in the plain handshake (nginx-rtmp and FMS don't either).
            input.advance(HANDSHAKE_SIZE);
            self.state = State::Done;
            return Ok(self.ciphers.take());
        }
        Ok(None)
    }

    fn respond(
        &mut self,
        c1: &[u8; HANDSHAKE_SIZE],
        out: &mut OutQueue,
    ) -> Result<(), HandshakeError> {
        let (scheme, client_digest) =
            find_digest(c1, FP_KEY_TEXT).ok_or(HandshakeError::RtmpeNoDigest)?;
        let client_pos = dh_pos(scheme, c1);
        let client_key = &c1[client_pos..client_pos + KEY_LEN];
        let dh = Dh::new(self.random);
        let secret = dh.shared(client_key)?;
        // S1 always uses scheme 0: FFmpeg, when publishing, looks for the server's key
        // there whatever scheme it used itself; librtmp and FFmpeg players try both.
        let (s1, _) = keyed_block(
            &mut self.rng,
            self.epoch_ms,
            SERVER_VERSION,
            Scheme::Zero,
            &dh,
            FMS_KEY_TEXT,
        );
        let s2 = signed_response(
            &mut self.rng,
            self.version,
            &full_key(FMS_KEY_TEXT),
            &client_digest,
        );
        self.ciphers = Some(RtmpeCiphers::new(&secret, &dh.public, client_key));
        out.put_slice(&[self.version]);
        out.put_slice(&s1);
        out.put_slice(&s2);
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

/// Client side of RTMPE (type 6, as FFmpeg and rtmpdump send): writes C0+C1, answers S1
/// with C2, reads S2, then hands out the ciphers.
pub struct RtmpeClient {
    rng: Prng,
    dh: Dh,
    c1_digest: [u8; DIGEST_LEN],
    state: State,
    secret: Option<[u8; KEY_LEN]>,
    server_key: [u8; KEY_LEN],
    version: u8,
    s2_verified: bool,
}

impl std::fmt::Debug for RtmpeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpeClient")
            .field("state", &self.state)
            .field("s2_verified", &self.s2_verified)
            .finish_non_exhaustive()
    }
}

impl RtmpeClient {
    /// Writes C0+C1 into `out`.
    pub fn new(random: [u8; 32], epoch_ms: u32, out: &mut OutQueue) -> Self {
        let mut rng = Prng::new(random);
        let dh = Dh::new(random);
        // Scheme 1, as FFmpeg and librtmp clients use for RTMPE.
        let (c1, c1_digest) = keyed_block(
            &mut rng,
            epoch_ms,
            CLIENT_VERSION,
            Scheme::One,
            &dh,
            FP_KEY_TEXT,
        );
        out.put_slice(&[6]);
        out.put_slice(&c1);
        RtmpeClient {
            rng,
            dh,
            c1_digest,
            state: State::AwaitHello,
            secret: None,
            server_key: [0; KEY_LEN],
            version: 6,
            s2_verified: false,
        }
    }

    /// Consumes S0+S1 (then writes C2) and S2 from the front of `input`. Returns the ciphers
    /// once the handshake is complete; bytes after S2 stay in `input`, already encrypted.
    pub fn handle_input(
        &mut self,
        input: &mut BytesMut,
        out: &mut OutQueue,
    ) -> Result<Option<RtmpeCiphers>, HandshakeError> {
        if self.state == State::AwaitHello {
            // A server answering 3 declined encryption: not what this target asked for.
            let Some((version, s1)) = take_hello(input)? else {
                return Ok(None);
            };
            let (scheme, server_digest) =
                find_digest(&s1, FMS_KEY_TEXT).ok_or(HandshakeError::RtmpeNoDigest)?;
            let pos = dh_pos(scheme, &s1);
            self.server_key.copy_from_slice(&s1[pos..pos + KEY_LEN]);
            self.secret = Some(self.dh.shared(&self.server_key)?);
            self.version = version;
            let c2 = signed_response(
                &mut self.rng,
                version,
                &full_key(FP_KEY_TEXT),
                &server_digest,
            );
            out.put_slice(&c2);
            self.state = State::AwaitFinal;
        }
        if self.state == State::AwaitFinal {
            if input.len() < HANDSHAKE_SIZE {
                return Ok(None);
            }
            let s2 = take_block(input);
            // Recorded, not enforced, like the plain client.
            self.s2_verified =
                verify_response(&s2, self.version, &full_key(FMS_KEY_TEXT), &self.c1_digest);
            self.state = State::Done;
            let Some(secret) = self.secret else {
                return Ok(None);
            };
            return Ok(Some(RtmpeCiphers::new(
                &secret,
                &self.dh.public,
                &self.server_key,
            )));
        }
        Ok(None)
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether S2 carried a valid signature (diagnostics only).
    pub fn server_signed(&self) -> bool {
        self.s2_verified
    }
}

/// Takes the version byte and the 1536-byte block after it (C0+C1 or S0+S1) from the front
/// of `input` once both are in; refuses a version other than RTMPE's at once.
fn take_hello(input: &mut BytesMut) -> Result<Option<(u8, [u8; HANDSHAKE_SIZE])>, HandshakeError> {
    let Some(&version) = input.first() else {
        return Ok(None);
    };
    if !is_rtmpe_version(version) {
        return Err(HandshakeError::UnsupportedVersion(version));
    }
    if input.len() < 1 + HANDSHAKE_SIZE {
        return Ok(None);
    }
    input.advance(1);
    Ok(Some((version, take_block(input))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut OutQueue) -> BytesMut {
        BytesMut::from(&out.take_all()[..])
    }

    #[test]
    fn prime_is_oakley_group_2() {
        let p = BigUint::from_bytes_be(&PRIME_1024);
        assert_eq!(p.bits(), 1024);
        // p = 2^1024 - 2^960 - 1 + 2^64 * (floor(2^894 pi) + 129644); check the fixed ends.
        assert_eq!(&PRIME_1024[..8], &[0xFF; 8]);
        assert_eq!(&PRIME_1024[120..], &[0xFF; 8]);
        // A safe prime's generator 2 has order q = (p-1)/2: 2^q = 1 (mod p) by Euler's
        // criterion, since 2 is a quadratic residue for p = 7 mod 8.
        let q = (&p - 1u32) >> 1;
        assert_eq!(BigUint::from(2u32).modpow(&q, &p), BigUint::from(1u32));
        assert_eq!(&p % 8u32, BigUint::from(7u32));
    }

    #[test]
    fn dh_agrees() {
        let a = Dh::new([1; 32]);
        let b = Dh::new([2; 32]);
        assert_ne!(a.public, b.public);
        assert_eq!(a.shared(&b.public).unwrap(), b.shared(&a.public).unwrap());
        assert_eq!(a.shared(&[0; 128]), Err(HandshakeError::RtmpeBadPublicKey));
        let mut one = [0u8; 128];
        one[127] = 1;
        assert_eq!(a.shared(&one), Err(HandshakeError::RtmpeBadPublicKey));
        assert_eq!(
            a.shared(&PRIME_1024),
            Err(HandshakeError::RtmpeBadPublicKey)
        );
    }

    #[test]
    fn xtea_reference_vector() {
        // The published XTEA test vector (key 00..0F, "ABCDEFGH"), big-endian words.
        let k = [0x0001_0203, 0x0405_0607, 0x0809_0A0B, 0x0C0D_0E0F];
        assert_eq!(
            xtea_encrypt([0x4142_4344, 0x4546_4748], &k),
            [0x497D_F3D0, 0x7261_2CB5]
        );
    }

    #[test]
    fn blowfish_reference_vector() {
        // Eric Young's vector: key 0000000000000000, plaintext 0, cipher 4EF997456198DD78
        // (big-endian words); type 9 reads words little-endian, so swap bytes around it.
        let bf = blowfish::BlowfishLE::new_from_slice(&[0; 8]).unwrap();
        let mut block = [0u8; 8];
        bf.encrypt_block(GenericArray::from_mut_slice(&mut block));
        let words = le_words(&block);
        assert_eq!(words, [0x4EF9_9745, 0x6198_DD78]);
    }

    fn run_pair(version: u8) -> (RtmpeCiphers, RtmpeCiphers, RtmpeClient) {
        let mut c_out = OutQueue::new();
        let mut s_out = OutQueue::new();
        let mut client = RtmpeClient::new([7; 32], 1000, &mut c_out);
        let mut server = RtmpeServer::new([9; 32], 2000);
        let mut to_server = drain(&mut c_out);
        to_server[0] = version;
        assert_eq!(to_server.len(), 1 + HANDSHAKE_SIZE);
        assert!(server
            .handle_input(&mut to_server, &mut s_out)
            .unwrap()
            .is_none());
        assert_eq!(server.version(), version);
        let mut to_client = drain(&mut s_out);
        assert_eq!(to_client.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(to_client[0], version);
        to_client.extend_from_slice(b"enc");
        let client_ciphers = client
            .handle_input(&mut to_client, &mut c_out)
            .unwrap()
            .expect("client done");
        assert_eq!(&to_client[..], b"enc");
        let mut to_server = drain(&mut c_out);
        assert_eq!(to_server.len(), HANDSHAKE_SIZE);
        to_server.extend_from_slice(b"rest");
        let server_ciphers = server
            .handle_input(&mut to_server, &mut s_out)
            .unwrap()
            .expect("server done");
        assert_eq!(&to_server[..], b"rest");
        assert!(server.is_done() && client.is_done());
        (client_ciphers, server_ciphers, client)
    }

    #[test]
    fn client_and_server_agree_on_keys() {
        for version in RTMPE_VERSIONS {
            let (mut c, mut s, client) = run_pair(version);
            assert!(client.server_signed(), "type {version}: S2 signed");
            let plain = b"\x03 chunk bytes both ways".to_vec();
            let mut wire = plain.clone();
            c.encrypt.apply(&mut wire);
            assert_ne!(wire, plain);
            s.decrypt.apply(&mut wire);
            assert_eq!(wire, plain);
            let mut wire = plain.clone();
            s.encrypt.apply(&mut wire);
            c.decrypt.apply(&mut wire);
            assert_eq!(wire, plain);
            // The two directions use different keystreams.
            let mut a = [0u8; 16];
            let mut b = [0u8; 16];
            c.encrypt.apply(&mut a);
            s.encrypt.apply(&mut b);
            assert_ne!(a, b);
        }
    }

    #[test]
    fn type_8_and_9_signatures_differ_from_type_6() {
        let key = [3u8; 32];
        let base = [0x5Au8; 32];
        let mut six = base;
        encrypt_signature(6, &mut six, &key);
        assert_eq!(six, base);
        let mut eight = base;
        encrypt_signature(8, &mut eight, &key);
        let mut nine = base;
        encrypt_signature(9, &mut nine, &key);
        assert_ne!(eight, base);
        assert_ne!(nine, base);
        assert_ne!(eight, nine);
    }

    /// The server's key sits where FFmpeg (publishing) looks: scheme 0's place, and the
    /// server's S1 digest is at scheme 0.
    #[test]
    fn server_key_at_scheme_zero() {
        let mut c_out = OutQueue::new();
        let _client = RtmpeClient::new([4; 32], 0, &mut c_out);
        let mut input = drain(&mut c_out);
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1.copy_from_slice(&input[1..]);
        assert_eq!(
            find_digest(&c1, FP_KEY_TEXT).map(|(s, _)| s),
            Some(Scheme::One)
        );
        let mut server = RtmpeServer::new([5; 32], 0);
        let mut out = OutQueue::new();
        server.handle_input(&mut input, &mut out).unwrap();
        let sent = out.take_all();
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1.copy_from_slice(&sent[1..1 + HANDSHAKE_SIZE]);
        assert_eq!(
            find_digest(&s1, FMS_KEY_TEXT).map(|(s, _)| s),
            Some(Scheme::Zero)
        );
        let pos = dh_pos(Scheme::Zero, &s1);
        assert_eq!(&s1[pos..pos + KEY_LEN], &Dh::new([5; 32]).public[..]);
    }

    #[test]
    fn refusals() {
        let mut out = OutQueue::new();
        // Plain RTMP is not RTMPE.
        let mut server = RtmpeServer::new([0; 32], 0);
        let mut input = BytesMut::from(&[3u8][..]);
        assert_eq!(
            server.handle_input(&mut input, &mut out).unwrap_err(),
            HandshakeError::UnsupportedVersion(3)
        );
        // A C1 without a digest has no findable key.
        let mut server = RtmpeServer::new([0; 32], 0);
        let mut input = BytesMut::from(&[6u8][..]);
        input.extend_from_slice(&[0x11; HANDSHAKE_SIZE]);
        assert_eq!(
            server.handle_input(&mut input, &mut out).unwrap_err(),
            HandshakeError::RtmpeNoDigest
        );
        assert!(out.is_empty());
        // A client whose server answers plain RTMP.
        let mut client = RtmpeClient::new([0; 32], 0, &mut out);
        let mut input = BytesMut::from(&[3u8][..]);
        assert_eq!(
            client.handle_input(&mut input, &mut out).unwrap_err(),
            HandshakeError::UnsupportedVersion(3)
        );
    }

    #[test]
    fn byte_at_a_time() {
        let mut c_out = OutQueue::new();
        let mut s_out = OutQueue::new();
        let mut client = RtmpeClient::new([1; 32], 1, &mut c_out);
        let mut server = RtmpeServer::new([2; 32], 2);
        let (mut s_in, mut c_in) = (BytesMut::new(), BytesMut::new());
        let (mut got_c, mut got_s) = (None, None);
        for _ in 0..10 {
            for &b in c_out.take_all().iter() {
                s_in.extend_from_slice(&[b]);
                if let Some(c) = server.handle_input(&mut s_in, &mut s_out).unwrap() {
                    got_s = Some(c);
                }
            }
            for &b in s_out.take_all().iter() {
                c_in.extend_from_slice(&[b]);
                if let Some(c) = client.handle_input(&mut c_in, &mut c_out).unwrap() {
                    got_c = Some(c);
                }
            }
        }
        let (mut c, mut s) = (got_c.unwrap(), got_s.unwrap());
        let mut x = *b"hello";
        c.encrypt.apply(&mut x);
        s.decrypt.apply(&mut x);
        assert_eq!(&x, b"hello");
    }
}
