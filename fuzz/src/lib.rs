//! Helpers shared by the fuzz targets: how a fuzz input is cut into the pieces a
//! sans-I/O state machine is fed, so every target exercises "bytes arrive in any slicing".
//!
//! Stream targets read their input as `stream ++ [split]`: the last byte picks how
//! `stream` is sliced, so a raw capture with one byte appended is a valid seed, and the
//! fuzzer can mutate the bytes and the slicing independently.

/// Splits a fuzz input into the stream and its slicing byte (0 = one piece).
pub fn split_seed(data: &[u8]) -> (&[u8], u8) {
    match data.split_last() {
        Some((&seed, stream)) => (stream, seed),
        None => (data, 0),
    }
}

/// Slices `stream` into pieces as `seed` says:
/// - 0: the whole stream in one piece;
/// - 1..=63: pieces of exactly `seed` bytes (1 = byte at a time);
/// - 64..=255: pseudo-random piece sizes (seeded by `seed`) up to 16, 512 or 4096 bytes.
pub fn pieces(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    if stream.is_empty() {
        return Vec::new();
    }
    match seed {
        0 => vec![stream],
        1..=63 => stream.chunks(usize::from(seed)).collect(),
        _ => {
            let max = [16usize, 512, 4096][usize::from(seed >> 6) - 1];
            let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
            let mut out = Vec::new();
            let mut rest = stream;
            while !rest.is_empty() {
                // xorshift32
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let n = (state as usize % max + 1).min(rest.len());
                let (head, tail) = rest.split_at(n);
                out.push(head);
                rest = tail;
            }
            out
        }
    }
}
