//! A log of recent calls whose size does not grow with the call rate: calls that arrive within
//! one slot of each other share an entry stamped with the *latest* of them. A call therefore
//! leaves the window at most one slot late — never early — so a limit counted on it is never
//! exceeded, and memory stays bounded by window / slot entries whatever the traffic (an exact
//! log of every call grows to millions of entries at tens of thousands of calls per second,
//! and moves all of them each time it grows).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The latest call counted in this entry.
    last: Instant,
    calls: u32,
    failures: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct CallLog {
    slots: VecDeque<Slot>,
    slot: Duration,
    calls: u32,
    failures: u32,
}

impl CallLog {
    /// Calls within `slot` of each other share an entry.
    pub fn new(slot: Duration) -> Self {
        CallLog {
            slots: VecDeque::new(),
            slot,
            calls: 0,
            failures: 0,
        }
    }

    /// Forgets calls older than `window` (counted from each entry's latest call).
    pub fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(oldest) = self.slots.front() {
            if now.duration_since(oldest.last) < window {
                break;
            }
            self.calls -= oldest.calls;
            self.failures -= oldest.failures;
            self.slots.pop_front();
        }
    }

    pub fn push(&mut self, now: Instant, failed: bool) {
        let failed = u32::from(failed);
        match self.slots.back_mut() {
            Some(last) if now.duration_since(last.last) < self.slot => {
                last.last = now;
                last.calls += 1;
                last.failures += failed;
            }
            _ => self.slots.push_back(Slot {
                last: now,
                calls: 1,
                failures: failed,
            }),
        }
        self.calls += 1;
        self.failures += failed;
    }

    pub fn calls(&self) -> u32 {
        self.calls
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the oldest entry was last used (its calls leave the window `window` after that).
    pub fn oldest(&self) -> Option<Instant> {
        self.slots.front().map(|slot| slot.last)
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.calls = 0;
        self.failures = 0;
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_share_entries_and_leave_no_earlier_than_their_window() {
        let start = Instant::now();
        let mut log = CallLog::new(Duration::from_millis(1));
        for micros in 0..100_000u64 {
            log.push(start + Duration::from_micros(micros), micros % 4 == 0);
        }
        assert_eq!((log.calls(), log.failures()), (100_000, 25_000));
        assert!(log.entries() <= 101, "{} entries", log.entries());
        let window = Duration::from_secs(1);
        // 1 s after the first call, none has left: each entry is stamped with its latest call.
        log.expire(start + window, window);
        assert_eq!(log.calls(), 100_000);
        // 1 s after the last call, all have.
        log.expire(start + Duration::from_micros(99_999) + window, window);
        assert_eq!((log.calls(), log.failures()), (0, 0));
        assert!(log.oldest().is_none());
    }
}
