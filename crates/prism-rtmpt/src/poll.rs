//! The polling-interval byte.

/// The byte that opens every send/idle reply: how long the client may wait before its next
/// idle poll. It follows Red5: low (`0x01`) while data flows; after a few replies in a row
/// without data it doubles, up to `0x21`, so an idle session costs few requests; the first
/// reply with data drops it back to `0x01`.
#[derive(Debug, Clone, Default)]
pub struct PollInterval {
    /// Red5's delay: 0, then 1, 2, 4, ... 32; the byte sent is one more.
    delay: u8,
    empty_replies: u32,
}

impl PollInterval {
    /// The byte of the reply to `/close`, and of any reply once the session has ended:
    /// it tells the client the server is closing.
    pub const CLOSING: u8 = 0;
    /// The byte while data flows.
    pub const MIN: u8 = 0x01;
    /// The byte after a long run of empty replies.
    pub const MAX: u8 = 0x21;
    /// Empty replies in a row before the interval starts to grow.
    const GROW_AFTER: u32 = 4;

    pub fn new() -> Self {
        Self::default()
    }

    /// Records a reply that carries `data_bytes` bytes after the interval byte, and returns
    /// the interval byte to send with it.
    pub fn on_reply(&mut self, data_bytes: usize) -> u8 {
        if data_bytes > 0 {
            self.delay = 0;
            self.empty_replies = 0;
        } else {
            self.empty_replies = self.empty_replies.saturating_add(1);
            if self.empty_replies > Self::GROW_AFTER {
                self.delay = self.delay.saturating_mul(2).clamp(1, Self::MAX - 1);
            }
        }
        self.delay + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_while_data_flows_rises_while_idle() {
        let mut p = PollInterval::new();
        assert_eq!(p.on_reply(100), PollInterval::MIN);
        let idle: Vec<u8> = (0..12).map(|_| p.on_reply(0)).collect();
        assert_eq!(idle, [1, 1, 1, 1, 2, 3, 5, 9, 17, 33, 33, 33]);
        assert_eq!(*idle.last().unwrap_or(&0), PollInterval::MAX);
        // Data again: back to the minimum at once, and the count of empty replies restarts.
        assert_eq!(p.on_reply(1), PollInterval::MIN);
        assert_eq!(p.on_reply(0), PollInterval::MIN);
    }
}
