//! What a change record costs, per aggregator per publish, at a given
//! traffic: its size, taking it on the aggregator, and applying it on an
//! edge (to the aggregator's state and the merge), against decoding and
//! merging the whole state as records did before. docs/SCALE-OUT.md
//! projects an edge's load from these figures. Run with
//! `cargo bench -p livemap-engine --bench changes`.

use std::time::Instant;

use livemap_engine::ingest::{Engine, EngineConfig};
use livemap_engine::position::Position;
use livemap_events::demo::{DemoMix, Generator};

const SOURCE: &str = "kafka:checkouts.livemap-by-id";
const T0: i64 = 1_795_788_000_000;

fn main() {
    let config = EngineConfig::default();
    // Messages of the demo mix per aggregator per publish (1 s): 1 M/s in
    // all over 50, 10 and 3 aggregators, and this machine's 15,000/s over 3.
    for per_publish in [5_000i64, 20_000, 100_000, 333_333] {
        let mut g = Generator::new(1, DemoMix::default());
        let mut sender = Engine::new(config.clone());
        sender.assign(&[(0, None)], 1);
        let mut offset = 0i64;
        let mut buf = Vec::new();
        let mut feed = |engine: &mut Engine, n: i64, second: i64| {
            for i in 0..n {
                let t = T0 + second * 1_000 + i * 1_000 / n;
                g.next_message(t, &mut buf);
                let at = Position {
                    partition: 0,
                    offset,
                    generation: 1,
                };
                offset += 1;
                engine.ingest(Some(&buf), Some(at), t + 20);
            }
        };
        // A sale under way: a million messages counted first, so the
        // sketches are as full as they get.
        feed(&mut sender, 1_000_000, 0);
        let mut published = sender.view_clone();
        let mut held = sender.view_clone();
        let mut merged = Engine::new(config.clone());
        merged.absorb(&held);
        let whole = sender.export_view(SOURCE);
        let (mut bytes, mut take_s, mut apply_s) = (0usize, 0.0f64, 0.0f64);
        const ROUNDS: i64 = 10;
        for round in 1..=ROUNDS {
            feed(&mut sender, per_publish, round);
            let started = Instant::now();
            let changes = sender.export_changes(&published, SOURCE);
            published = sender.view_clone();
            take_s += started.elapsed().as_secs_f64();
            bytes += changes.len();
            let started = Instant::now();
            held.apply_changes(SOURCE, &changes, Some(&mut merged))
                .expect("applies");
            apply_s += started.elapsed().as_secs_f64();
        }
        // The way before: decode the whole state, merge it with the rest.
        let started = Instant::now();
        for _ in 0..ROUNDS {
            let decoded = Engine::restore(config.clone(), SOURCE, &whole).expect("restores");
            let mut m = Engine::new(config.clone());
            m.absorb(&decoded);
            std::hint::black_box(m.aggregate().orders);
        }
        let whole_s = started.elapsed().as_secs_f64() / ROUNDS as f64;
        let n = ROUNDS as f64;
        println!(
            "{per_publish} messages per publish: change record {:.0} KB ({:.1} B per message), taken in {:.2} ms, applied in {:.2} ms ({:.0} ns per message); whole state {:.0} KB, decoded and merged in {:.1} ms",
            bytes as f64 / n / 1e3,
            bytes as f64 / n / per_publish as f64,
            take_s / n * 1e3,
            apply_s / n * 1e3,
            apply_s / n / per_publish as f64 * 1e9,
            whole.len() as f64 / 1e3,
            whole_s * 1e3,
        );
    }
}
