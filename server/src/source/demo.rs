//! The embedded demo source: realistic Black Friday traffic, generated in
//! the contract's JSON and sent through the same decode path as Kafka.
//!
//! It runs on its own thread because generating 200k events/s is CPU work;
//! pacing follows the real clock, with the demo's rate curve on top.

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
}

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
    let started = Instant::now();
    let mut owed = 0.0f64;
    let mut last = started;
    while !cancel.is_cancelled() {
        let now = Instant::now();
        let now_ms = clock.now_ms();
        owed += config.events_per_sec as f64 * rate_multiplier(now_ms) * (now - last).as_secs_f64();
        last = now;
        // Never build up more than a second of debt after a stall: a demo
        // should not burst to catch up.
        owed = owed.min(config.events_per_sec as f64);
        let mut due = owed as u64;
        owed -= due as f64;
        while due > 0 {
            let n = due.min(MAX_BATCH as u64) as usize;
            due -= n as u64;
            let mut batch = Vec::with_capacity(n);
            for _ in 0..n {
                generator.next_message(now_ms, &mut buf);
                if arena.capacity() < buf.len() {
                    arena.reserve(1 << 20);
                }
                arena.extend_from_slice(&buf);
                batch.push(Message {
                    payload: Some(arena.split().freeze()),
                    position: None,
                });
            }
            if tx.blocking_send(batch).is_err() {
                return;
            }
        }
        let elapsed = now.elapsed();
        if elapsed < STEP {
            std::thread::sleep(STEP - elapsed);
        }
    }
}
