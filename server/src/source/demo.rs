//! The embedded demo source: realistic Black Friday traffic, generated in
//! the contract's JSON and sent through the same decode path as Kafka.
//!
//! It runs on its own thread because generating 200k events/s is CPU work;
//! pacing follows the real clock, with the demo's rate curve on top.
//!
//! Before going live it can backfill: the completed checkouts of the last
//! `backfill` of sale, generated as fast as the engine takes them, so that
//! a fresh demo already has a timeline and product trends (which need an
//! hour of history).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use livemap_events::demo::{rate_multiplier, DemoMix, Generator};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Batch, Message};
use crate::clock::Clock;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Average messages per second, all event types together.
    pub events_per_sec: u64,
    pub seed: u64,
    /// How much sale to generate at start, in event time, before going live.
    pub backfill: Duration,
    /// A rehearsed outage: orders fall by [`OUTAGE_FALL`] from this long
    /// before going live until this long after (zero: none).
    pub outage: Duration,
}

/// How far orders fall in a rehearsed outage (`--demo-outage-minutes`).
pub const OUTAGE_FALL: f64 = 0.8;

const STEP: Duration = Duration::from_millis(10);
const MAX_BATCH: usize = 2_048;

/// Runs until `cancel` fires or the engine side of `tx` is gone.
pub fn run(
    config: DemoConfig,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Batch>,
    cancel: CancellationToken,
) {
    let mut generator = Generator::new(config.seed, DemoMix::default());
    let mut buf = Vec::with_capacity(1024);
    let mut arena = BytesMut::with_capacity(1 << 20);
    let mut sender = Sender {
        tx: &tx,
        arena: &mut arena,
        batch: Vec::with_capacity(MAX_BATCH),
    };
    // Backfill up to the clock, then again up to where the clock has got
    // to meanwhile, until the gap is under a second: no dip at "now".
    let checkouts_per_sec = config.events_per_sec as f64 * DemoMix::default().checkout;
    // The rehearsed outage straddles the moment the demo goes live, so
    // its first minutes are history by then and judged at once.
    let outage_ms = config.outage.as_millis() as i64;
    let (outage_from, outage_to) = (clock.now_ms() - outage_ms, clock.now_ms() + outage_ms);
    let rate = |t_ms: i64| {
        let fall = if (outage_from..outage_to).contains(&t_ms) {
            1.0 - OUTAGE_FALL
        } else {
            1.0
        };
        rate_multiplier(t_ms) * fall
    };
    // From a minute boundary, so the timeline's first minute is a whole one.
    let mut from = clock.now_ms() - config.backfill.as_millis() as i64;
    if !config.backfill.is_zero() {
        from -= from.rem_euclid(60_000);
    }
    let mut owed = 0.0f64;
    loop {
        let to = clock.now_ms();
        if to - from < 1_000 {
            break;
        }
        for second in (from..to).step_by(1_000) {
            if cancel.is_cancelled() {
                return;
            }
            owed += checkouts_per_sec * rate(second);
            let n = owed as u64;
            owed -= n as f64;
            for k in 0..n {
                let at = second + (k * 1_000 / n) as i64;
                generator.write_checkout_at(at, &mut buf);
                if !sender.push(&buf) {
                    return;
                }
            }
        }
        from = to;
    }
    if !sender.flush() {
        return;
    }
    let started = Instant::now();
    let mut owed = 0.0f64;
    let mut last = started;
    while !cancel.is_cancelled() {
        let now = Instant::now();
        let now_ms = clock.now_ms();
        owed += config.events_per_sec as f64 * rate(now_ms) * (now - last).as_secs_f64();
        last = now;
        // Never build up more than a second of debt after a stall: a demo
        // should not burst to catch up.
        owed = owed.min(config.events_per_sec as f64);
        let due = owed as u64;
        owed -= due as f64;
        for _ in 0..due {
            generator.next_message(now_ms, &mut buf);
            if !sender.push(&buf) {
                return;
            }
        }
        if !sender.flush() {
            return;
        }
        let elapsed = now.elapsed();
        if elapsed < STEP {
            std::thread::sleep(STEP - elapsed);
        }
    }
}

/// Copies messages into a shared arena and sends them in batches.
struct Sender<'a> {
    tx: &'a mpsc::Sender<Batch>,
    arena: &'a mut BytesMut,
    batch: Batch,
}

impl Sender<'_> {
    /// Queues one message; false once the engine side has gone.
    fn push(&mut self, message: &[u8]) -> bool {
        if self.arena.capacity() < message.len() {
            self.arena.reserve(1 << 20);
        }
        self.arena.extend_from_slice(message);
        self.batch.push(Message {
            payload: Some(self.arena.split().freeze()),
            position: None,
            origin: None,
        });
        self.batch.len() < MAX_BATCH || self.flush()
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(MAX_BATCH));
        self.tx.blocking_send(batch).is_ok()
    }
}
