//! What checking every checkout's shop against the first-sales filter
//! costs, by how orders spread over shops: the demo's 20,000 shops (the
//! popular ones selling most) and a platform's 2 million, skewed the same
//! way or spread evenly (the worst case for the cache of shops seen
//! lately). Run with `cargo bench -p livemap-engine --bench first_sales`;
//! docs/BENCHMARKS.md ("Moments") keeps the figures.

use std::time::Instant;

use livemap_engine::first_sales::{shop_hash, FirstSales};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const T0: i64 = 1_795_788_000_000;
const ORDERS: usize = 5_000_000;

fn main() {
    for (shops, skewed) in [(20_000u64, true), (2_000_000, true), (2_000_000, false)] {
        let mut rng = SmallRng::seed_from_u64(3);
        // The demo's skew: a squared uniform draw picks low ids more.
        let ids: Vec<u64> = (0..ORDERS)
            .map(|_| {
                let u: f64 = rng.random();
                let x = if skewed { u * u } else { u };
                (x * shops as f64) as u64
            })
            .collect();
        let mut best = f64::MAX;
        let mut firsts = 0;
        for _ in 0..3 {
            let mut f = FirstSales::default();
            let started = Instant::now();
            firsts = ids
                .iter()
                .filter(|&&id| f.record(shop_hash(id), T0))
                .count();
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{shops} shops, {}: {:.1} ns per checkout ({firsts} first sales in {ORDERS} orders)",
            if skewed {
                "popular ones selling most"
            } else {
                "evenly"
            },
            best * 1e9 / ORDERS as f64
        );
    }
}
