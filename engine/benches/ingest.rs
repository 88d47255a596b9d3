//! Ingest throughput on one core: decode + filter + de-duplicate +
//! aggregate + arc sampling over the demo's contract mix (about 90 % other
//! event types), with the aggregation step plain (totals, per-minute
//! series) and full (plus trends, breakdowns and rankings). Run with
//! `cargo bench -p livemap-engine --bench ingest`.

use std::time::Instant;

use livemap_engine::ingest::{Engine, EngineConfig};
use livemap_events::demo::{DemoMix, Generator};

fn main() {
    const N: usize = 1_000_000;
    const NOW: i64 = 1_795_788_000_000;
    let mut generator = Generator::new(1, DemoMix::default());
    let mut buf = Vec::new();
    let messages: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            generator.next_message(NOW + (i as i64) / 100, &mut buf);
            buf.clone()
        })
        .collect();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    // Plain (totals, per-minute series, arcs) and full (plus trends,
    // breakdowns and rankings), interleaved so that both see the same
    // machine state; the best of five each.
    let (mut plain, mut full) = (f64::MAX, f64::MAX);
    for round in 0..10 {
        let totals_only = round % 2 == 0;
        let mut engine = Engine::new(EngineConfig {
            totals_only,
            ..EngineConfig::default()
        });
        let started = Instant::now();
        for (i, m) in messages.iter().enumerate() {
            engine.ingest(Some(m), None, NOW + (i as i64) / 100);
            if i % 40_000 == 0 {
                // A tick's worth of arcs, as the snapshot stage would take.
                std::hint::black_box(engine.take_arcs());
            }
        }
        let took = started.elapsed().as_secs_f64();
        std::hint::black_box(&engine.aggregate().orders);
        if totals_only {
            plain = plain.min(took);
        } else {
            full = full.min(took);
        }
    }
    let decoder = livemap_engine::decode::Decoder::new(Default::default());
    let started = Instant::now();
    let mut checkouts = 0usize;
    for m in &messages {
        if matches!(
            decoder.decode(Some(m)),
            livemap_engine::decode::Decoded::Checkout(_)
        ) {
            checkouts += 1;
        }
    }
    let decode_only = started.elapsed().as_secs_f64();
    println!(
        "decode only: {:.2} M events/s ({checkouts} checkouts)",
        N as f64 / decode_only / 1e6
    );
    println!(
        "ingest, totals only: {N} messages ({:.0} bytes avg) in {plain:.3} s: {:.2} M events/s on one core",
        bytes as f64 / N as f64,
        N as f64 / plain / 1e6
    );
    println!(
        "ingest, everything (trends, breakdowns, rankings): {full:.3} s: {:.2} M events/s on one core",
        N as f64 / full / 1e6
    );
    println!(
        "extra cost of trends, breakdowns and rankings: {:+.1} %",
        (full / plain - 1.0) * 100.0
    );
}
