//! A group's read-ahead: the messages past its cursor it holds in memory, in log order, bounded
//! by count and by bytes (a lagging group re-reads the rest from the log instead of growing).

use std::collections::BTreeMap;
use std::sync::Arc;

/// Messages held per group, at most.
const MAX_MESSAGES: usize = 65_536;
/// Envelope bytes held per group, at most (shared with the publish and other groups: the
/// bound is on what this group keeps alive).
const MAX_BYTES: usize = 32 << 20;

pub(crate) struct Waiting {
    pub subject: Option<String>,
    pub envelope: Arc<[u8]>,
    /// Deliveries so far (0 for a message never handed out).
    pub attempts: u32,
}

#[derive(Default)]
pub(crate) struct Window {
    messages: BTreeMap<i64, Waiting>,
    bytes: usize,
}

impl Window {
    /// Whether another message fits.
    pub fn has_room(&self) -> bool {
        self.messages.len() < MAX_MESSAGES && self.bytes < MAX_BYTES
    }

    /// How many more messages may be read into it (0 when full).
    pub fn room(&self) -> usize {
        if self.has_room() {
            MAX_MESSAGES - self.messages.len()
        } else {
            0
        }
    }

    pub fn insert(&mut self, seq: i64, waiting: Waiting) {
        self.bytes += waiting.envelope.len();
        if let Some(old) = self.messages.insert(seq, waiting) {
            self.bytes -= old.envelope.len();
        }
    }

    pub fn remove(&mut self, seq: i64) -> Option<Waiting> {
        let waiting = self.messages.remove(&seq)?;
        self.bytes -= waiting.envelope.len();
        Some(waiting)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i64, &Waiting)> {
        self.messages.iter()
    }

    pub fn first_seq(&self) -> Option<i64> {
        self.messages.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(bytes: usize) -> Waiting {
        Waiting {
            subject: None,
            envelope: Arc::from(vec![b'x'; bytes]),
            attempts: 0,
        }
    }

    #[test]
    fn the_window_is_bounded_by_bytes_and_counts_what_it_holds() {
        let mut window = Window::default();
        let mut seq = 0;
        while window.has_room() {
            seq += 1;
            window.insert(seq, waiting(1 << 20));
        }
        assert_eq!(seq, 32, "32 MiB of 1 MiB envelopes");
        assert_eq!(window.room(), 0);
        window.insert(1, waiting(10));
        assert!(window.has_room(), "replacing a message releases its bytes");
        assert!(window.remove(2).is_some());
        assert_eq!(window.first_seq(), Some(1));
        assert_eq!(window.room(), MAX_MESSAGES - 31);
    }
}
