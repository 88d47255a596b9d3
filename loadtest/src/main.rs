//! `livemap-loadtest`: traffic for the live map.
//!
//! `generate` writes contract events as JSON lines (one message value per
//! line), from the same generator the server's demo source uses, so a run
//! can be replayed or inspected; `produce` sends them to Kafka at a paced
//! rate; `consume` measures what a bare consumer reads; `clients` plays
//! browsers against the server's WebSocket, SSE or long-poll; `attack`
//! holds idle and slow-header sockets against it.

mod attack;
mod clients;
mod consume;
mod produce;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use livemap_events::demo::{DemoMix, Generator, Kind};

#[derive(Debug, Parser)]
#[command(
    name = "livemap-loadtest",
    version,
    about = "Load tester for the live sales map"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce contract events to a Kafka topic at a paced rate.
    Produce(produce::ProduceArgs),
    /// Read a topic with a bare consumer and report messages/s (the broker's limit).
    Consume(consume::ConsumeArgs),
    /// Play browsers: open many clients on one transport and report what they receive.
    Clients(clients::ClientsArgs),
    /// Hostile sockets: hold idle and slow-header (slowloris) sockets and report what the server did with them.
    Attack(attack::AttackArgs),
    /// Write contract events as JSON lines (newline-free JSON, one per line).
    Generate {
        /// How many messages to write.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Messages per second of event time between consecutive messages.
        #[arg(long, default_value_t = 3_000)]
        rate: u64,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Event time of the first message, ms since the epoch (default: now).
        #[arg(long)]
        start_ms: Option<i64>,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Clients(args) => clients::run(args),
        Command::Attack(args) => attack::run(args),
        Command::Generate {
            count,
            rate,
            seed,
            start_ms,
            out,
        } => generate(count, rate.max(1), seed, start_ms, out),
    }
}

fn generate(
    count: u64,
    rate: u64,
    seed: u64,
    start_ms: Option<i64>,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let start_ms = start_ms.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    });
    let sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = BufWriter::with_capacity(1 << 20, sink);
    let mut generator = Generator::new(seed, DemoMix::default());
    let mut buf = Vec::with_capacity(1024);
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    let (started, mut bytes) = (Instant::now(), 0u64);
    for i in 0..count {
        let now_ms = start_ms + (i as u128 * 1000 / u128::from(rate)) as i64;
        let kind = generator.next_message(now_ms, &mut buf);
        // JSON lines cannot hold a raw newline; the generator never writes
        // one, but an invalid-UTF-8 message is still written byte for byte.
        sink.write_all(&buf)?;
        sink.write_all(b"\n")?;
        bytes += buf.len() as u64 + 1;
        let name = match kind {
            Kind::Malformed(m) => format!("malformed:{m:?}"),
            k => format!("{k:?}"),
        };
        *kinds.entry(name).or_default() += 1;
    }
    sink.flush()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {count} messages, {bytes} bytes in {secs:.2} s ({:.0} msgs/s)",
        count as f64 / secs.max(1e-9)
    );
    for (kind, n) in kinds {
        eprintln!("  {kind}: {n}");
    }
    Ok(())
}
