//! When to send the next anchor on a chain that mines on its own clock.
//!
//! A chain that mines each transaction as it arrives (Anvil's automine, the embedded default)
//! gets an anchor as soon as records wait. A chain that mines on a timer (Ethereum every 12 s,
//! the common L2s every 1 to 2 s, private chains on their own period) takes whatever reached it
//! before the block: an anchor sent early covers no more than one sent just before the block
//! and lands in the same block. So once anchors are seen waiting for blocks, the next one goes
//! out a `lead` before the block is expected, covering everything acknowledged until then: one
//! anchor per block, and a record waits for the next block, not for the anchor in flight to be
//! mined first (which made it wait two).
//!
//! The clock is learnt from the chain: block numbers polled while anchoring is busy give the
//! block time (the median of recent intervals) and the phase; an anchor that lands a block later
//! than aimed widens the lead, one that lands as aimed narrows it again.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Intervals kept for the median.
const SAMPLES: usize = 9;
/// Block numbers are polled this often until the block time is known.
const DEFAULT_POLL: Duration = Duration::from_millis(250);
const MIN_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_secs(1);
/// The least lead: building an anchor, asking for fees and sending it take a few round trips.
const MIN_LEAD: Duration = Duration::from_millis(100);
/// An anchor mined later than this after it was sent waited in the pool for a block.
const WAITED: Duration = Duration::from_millis(50);
/// Anchors mined at once, in a row, before the chain counts as mining what it is sent: on a
/// timed chain an anchor sent just before its block is mined quickly too, now and then.
const FAST_IN_A_ROW: u32 = 3;

/// The chain's block clock as the anchorer sees it.
#[derive(Debug)]
pub(crate) struct BlockClock {
    /// The newest block seen, and when it was first seen.
    last: Option<(u64, Instant)>,
    /// Times between blocks, newest last.
    intervals: VecDeque<Duration>,
    /// How long before the expected block an anchor is sent.
    lead: Option<Duration>,
    /// Whether anchors wait in the pool for blocks (the chain mines on a timer).
    waits_for_blocks: bool,
    /// Anchors mined at once since the last that waited.
    fast: u32,
    /// The block the last anchor sent was aimed at.
    aimed: Option<u64>,
    next_poll: Instant,
}

impl BlockClock {
    pub fn new(now: Instant) -> Self {
        Self {
            last: None,
            intervals: VecDeque::new(),
            lead: None,
            waits_for_blocks: false,
            fast: 0,
            aimed: None,
            next_poll: now,
        }
    }

    /// Whether the block number should be read now.
    pub fn poll_due(&self, now: Instant) -> bool {
        now >= self.next_poll
    }

    /// When the block number should be read next.
    pub fn next_poll(&self) -> Instant {
        self.next_poll
    }

    /// The block number could not be read at `now`: tried again a poll interval later.
    pub fn unread(&mut self, now: Instant) {
        self.next_poll = now + self.poll_interval();
    }

    /// The chain's latest block number, read at `at`.
    pub fn observe(&mut self, number: u64, at: Instant) {
        self.next_poll = at + self.poll_interval();
        match self.last {
            Some((n, _)) if number <= n => {
                if number < n {
                    // A reorganisation or a restarted node: the phase starts again.
                    self.last = Some((number, at));
                }
            }
            Some((n, t)) => {
                // Blocks skipped between two reads share the time between them; a long gap
                // (the chain was idle, or we were) says nothing about the block time.
                let blocks = number - n;
                if blocks <= 4 {
                    let gap = at.saturating_duration_since(t) / blocks as u32;
                    if self.intervals.len() == SAMPLES {
                        self.intervals.pop_front();
                    }
                    self.intervals.push_back(gap);
                }
                self.last = Some((number, at));
            }
            None => self.last = Some((number, at)),
        }
    }

    /// The chain's block time, once three intervals were seen.
    pub fn block_time(&self) -> Option<Duration> {
        if self.intervals.len() < 3 {
            return None;
        }
        let mut sorted: Vec<Duration> = self.intervals.iter().copied().collect();
        sorted.sort();
        Some(sorted[sorted.len() / 2]).filter(|b| !b.is_zero())
    }

    fn poll_interval(&self) -> Duration {
        self.block_time()
            .map_or(DEFAULT_POLL, |b| (b / 10).clamp(MIN_POLL, MAX_POLL))
    }

    fn lead(&self, block_time: Duration) -> Duration {
        self.lead
            .unwrap_or_else(|| (block_time / 5).max(self.floor()))
            .min(block_time / 2)
    }

    /// The least lead: a read of the block number can be a poll interval late.
    fn floor(&self) -> Duration {
        MIN_LEAD.max(self.poll_interval())
    }

    /// The next block expected after `now`: its number and when.
    fn next_block(&self, now: Instant) -> Option<(u64, Instant)> {
        let block_time = self.block_time()?;
        let (number, seen) = self.last?;
        let elapsed = now.saturating_duration_since(seen);
        let ahead = (elapsed.as_nanos() / block_time.as_nanos()) as u32 + 1;
        Some((number + u64::from(ahead), seen + block_time * ahead))
    }

    /// When the next anchor should go out: `None` at once (the chain mines what it is sent, or
    /// its clock is not known yet); otherwise a lead before the next block that no anchor was
    /// aimed at yet.
    pub fn send_at(&self, now: Instant) -> Option<Instant> {
        if !self.waits_for_blocks {
            return None;
        }
        let block_time = self.block_time()?;
        let (number, mut at) = self.next_block(now)?;
        if self.aimed.is_some_and(|a| a >= number) {
            at += block_time;
        }
        let send = at.checked_sub(self.lead(block_time))?;
        (send > now).then_some(send)
    }

    /// An anchor was sent at `now`: the block it is aimed at, if the clock is known.
    pub fn sent(&mut self, now: Instant) -> Option<u64> {
        let aimed = self.next_block(now).map(|(n, _)| n);
        if self.waits_for_blocks {
            self.aimed = aimed.max(self.aimed);
        }
        aimed
    }

    /// An anchor sent at `sent_at`, aimed at block `aimed`, was seen mined in block `block` at
    /// `seen_at`.
    pub fn mined(&mut self, sent_at: Instant, aimed: Option<u64>, block: u64, seen_at: Instant) {
        if seen_at.saturating_duration_since(sent_at) > WAITED {
            self.waits_for_blocks = true;
            self.fast = 0;
        } else {
            self.fast += 1;
            if self.fast >= FAST_IN_A_ROW {
                self.waits_for_blocks = false;
            }
        }
        let (Some(aimed), Some(block_time)) = (aimed, self.block_time()) else {
            return;
        };
        let lead = self.lead(block_time);
        self.lead = Some(if block > aimed {
            // Missed the block: send earlier.
            (lead * 3 / 2).max(lead + self.poll_interval())
        } else {
            (lead * 15 / 16).max(self.floor())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// A clock that saw blocks 10..=15 arrive a second apart, starting at `t0`.
    fn ticking(t0: Instant) -> BlockClock {
        let mut c = BlockClock::new(t0);
        for i in 0..6u32 {
            c.observe(10 + u64::from(i), t0 + SECOND * i);
        }
        c
    }

    #[test]
    fn learns_the_block_time_from_intervals_and_tolerates_skipped_reads() {
        let t0 = Instant::now();
        let mut c = BlockClock::new(t0);
        c.observe(1, t0);
        c.observe(2, t0 + SECOND * 2);
        // Two blocks between reads: two seconds each.
        c.observe(4, t0 + SECOND * 6);
        assert_eq!(c.block_time(), None, "three intervals first");
        c.observe(5, t0 + SECOND * 8);
        assert_eq!(c.block_time(), Some(SECOND * 2));
        // The same block read again changes nothing; a long gap is not an interval.
        c.observe(5, t0 + SECOND * 9);
        c.observe(50, t0 + SECOND * 100);
        assert_eq!(c.block_time(), Some(SECOND * 2));
        assert_eq!(c.poll_interval(), Duration::from_millis(200));
    }

    #[test]
    fn an_automining_chain_gets_anchors_at_once() {
        let t0 = Instant::now();
        let mut c = ticking(t0);
        let now = t0 + SECOND * 5 + Duration::from_millis(100);
        let aimed = c.sent(now);
        // Mined on the first look for its receipt.
        c.mined(now, aimed, 16, now + Duration::from_millis(5));
        assert_eq!(c.send_at(now + Duration::from_millis(10)), None);
        // One anchor that waited makes the chain timed; one quick one does not undo it, three
        // in a row do.
        c.mined(now, aimed, 16, now + SECOND);
        assert!(c.send_at(now + Duration::from_millis(10)).is_some());
        c.mined(now, aimed, 16, now + Duration::from_millis(5));
        assert!(c.send_at(now + Duration::from_millis(10)).is_some());
        c.mined(now, aimed, 16, now + Duration::from_millis(5));
        c.mined(now, aimed, 16, now + Duration::from_millis(5));
        assert_eq!(c.send_at(now + Duration::from_millis(10)), None);
    }

    #[test]
    fn on_a_timed_chain_one_anchor_goes_out_a_lead_before_each_block() {
        let t0 = Instant::now();
        let mut c = ticking(t0);
        // Block 15 was seen at t0+5 s; an anchor sent at t0+5.1 s was mined in block 16.
        let sent = t0 + SECOND * 5 + Duration::from_millis(100);
        let aimed = c.sent(sent);
        assert_eq!(aimed, Some(16));
        c.observe(16, t0 + SECOND * 6);
        c.mined(sent, aimed, 16, t0 + SECOND * 6 + Duration::from_millis(20));
        assert!(c.waits_for_blocks);
        // Next block 17 at t0+7 s; the lead narrowed from 200 ms by a sixteenth.
        let now = t0 + SECOND * 6 + Duration::from_millis(100);
        let at = c.send_at(now).expect("aligned");
        let lead = (t0 + SECOND * 7) - at;
        assert!(
            lead >= MIN_LEAD && lead < Duration::from_millis(200),
            "{lead:?}"
        );
        // Sent then, aimed at 17; records after that wait for block 18's send time.
        let aimed = c.sent(at);
        assert_eq!(aimed, Some(17));
        let later = c.send_at(at + Duration::from_millis(10)).expect("aligned");
        assert_eq!(later, at + SECOND);
        // Within the lead of a block no anchor was aimed at: at once.
        c.aimed = Some(16);
        assert_eq!(c.send_at(t0 + SECOND * 7 - MIN_LEAD / 2), None);
    }

    #[test]
    fn a_missed_block_widens_the_lead_and_hits_narrow_it_back_to_the_floor() {
        let t0 = Instant::now();
        let mut c = ticking(t0);
        c.waits_for_blocks = true;
        let first = c.lead(SECOND);
        let sent = t0 + SECOND * 5 + Duration::from_millis(900);
        c.mined(sent, Some(16), 17, t0 + SECOND * 7);
        let wider = c.lead(SECOND);
        assert!(wider > first, "{first:?} -> {wider:?}");
        for _ in 0..200 {
            c.mined(sent, Some(16), 16, t0 + SECOND * 6);
        }
        assert_eq!(c.lead(SECOND), c.floor());
        // Never more than half a block.
        for _ in 0..20 {
            c.mined(sent, Some(16), 18, t0 + SECOND * 8);
        }
        assert_eq!(c.lead(SECOND), SECOND / 2);
    }
}
