//! `produce`: contract events into Kafka at a paced rate, generated (the
//! demo generator) or replayed from a JSON-lines file.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use livemap_events::demo::{DemoMix, Generator};
use memchr::memmem;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    #[arg(long, default_value = "checkouts")]
    topic: String,
    /// Messages per second (all event types together).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long to produce, in seconds (ignored when --count or --file ends first).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Replay this JSON-lines file (one message value per line) instead of generating.
    #[arg(long)]
    file: Option<PathBuf>,
    /// With --file: pace by the events' own `occurred_at`, this many times
    /// faster than real time, instead of at --rate.
    #[arg(long)]
    speed: Option<f64>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A librdkafka producer setting, KEY=VALUE (repeatable).
    #[arg(long = "kafka-option")]
    options: Vec<String>,
    /// Create the topic with this many partitions first, unless it exists.
    #[arg(long)]
    partitions: Option<i32>,
}

struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct Ctx(Arc<Counting>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The message key: the shop id as decimal text, as upstream keys them.
fn shop_key(value: &[u8]) -> Option<&[u8]> {
    let at = memmem::find(value, b"\"shop\":{\"id\":")? + 13;
    let digits = value[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    (digits > 0).then(|| &value[at..at + digits])
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let counting = Arc::new(Counting {
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097152")
        .set("compression.type", "lz4")
        .set("acks", "all");
    for kv in &args.options {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--kafka-option {kv:?} is not KEY=VALUE"))?;
        config.set(k, v);
    }
    if let Some(partitions) = args.partitions {
        create_topic(&config, &args.topic, partitions)?;
    }
    let producer: ThreadedProducer<Ctx> = config
        .create_with_context(Ctx(counting.clone()))
        .context("creating the Kafka producer")?;

    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let limit = args.count.unwrap_or(u64::MAX);
    let started = Instant::now();
    let (mut sent, mut bytes, mut queue_full) = (0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    let mut send = |value: &[u8], sent: &mut u64, bytes: &mut u64| -> anyhow::Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&args.topic).payload(value);
        if let Some(key) = shop_key(value) {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // The broker is slower than the rate asked for: wait for
                    // room rather than drop events.
                    queue_full += 1;
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
        *sent += 1;
        *bytes += value.len() as u64;
        Ok(())
    };
    let mut report = |sent: u64, bytes: u64, force: bool| {
        if force || last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "[produce] {sent} sent ({:.0}/s, {:.1} MB/s), {} delivered, {} failed",
                sent as f64 / secs,
                bytes as f64 / secs / 1e6,
                counting.delivered.load(Ordering::Relaxed),
                counting.failed.load(Ordering::Relaxed)
            );
        }
    };

    if let Some(path) = &args.file {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut first_event_ms: Option<i64> = None;
        for line in reader.split(b'\n') {
            let line = line?;
            if sent >= limit {
                break;
            }
            let due = match (args.speed, event_time_ms(&line)) {
                (Some(speed), Some(t)) if speed > 0.0 => {
                    let t0 = *first_event_ms.get_or_insert(t);
                    Duration::from_secs_f64(((t - t0).max(0) as f64 / 1000.0) / speed)
                }
                _ => Duration::from_secs_f64(sent as f64 / args.rate.max(1) as f64),
            };
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            send(&line, &mut sent, &mut bytes)?;
            report(sent, bytes, false);
        }
    } else {
        let now_ms = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let mut generator = Generator::new(args.seed, DemoMix::default());
        let mut buf = Vec::with_capacity(1024);
        while sent < limit && Instant::now() < deadline {
            let target = ((started.elapsed().as_secs_f64() * args.rate as f64) as u64).min(limit);
            if sent >= target {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            let now = now_ms();
            while sent < target {
                generator.next_message(now, &mut buf);
                send(&buf, &mut sent, &mut bytes)?;
            }
            report(sent, bytes, false);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing")?;
    report(sent, bytes, true);
    let secs = started.elapsed().as_secs_f64();
    let failed = counting.failed.load(Ordering::Relaxed);
    println!(
        "produced {sent} messages, {bytes} bytes in {secs:.2} s: {:.0} msgs/s, {:.1} MB/s; delivered {}, failed {failed}, queue-full waits {queue_full}",
        sent as f64 / secs,
        bytes as f64 / secs / 1e6,
        counting.delivered.load(Ordering::Relaxed)
    );
    anyhow::ensure!(failed == 0, "{failed} messages were not delivered");
    Ok(())
}

/// Creates `topic` with `partitions` partitions unless it exists.
fn create_topic(config: &ClientConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating the Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    // The admin client's futures run on its own thread: any executor waits.
    let results = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(admin.create_topics([&new], &options))
        .context("creating the topic")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => anyhow::bail!("creating topic {t}: {code}"),
        }
    }
    Ok(())
}

fn event_time_ms(line: &[u8]) -> Option<i64> {
    let at = memmem::find(line, b"\"occurred_at\":\"")? + 15;
    let end = line[at..].iter().position(|&b| b == b'"')?;
    livemap_events::time::parse_rfc3339_ms(std::str::from_utf8(&line[at..at + end]).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_times_come_from_the_event() {
        let mut g = Generator::new(1, DemoMix::default());
        let msg = g.checkout(1_795_788_191_123);
        let e: livemap_events::CheckoutEvent = serde_json_lite(&msg);
        assert_eq!(shop_key(&msg), Some(e.shop.id.to_string().as_bytes()));
        assert!(event_time_ms(&msg).is_some());
        assert_eq!(shop_key(b"{}"), None);
    }

    fn serde_json_lite(msg: &[u8]) -> livemap_events::CheckoutEvent<'_> {
        serde_json::from_slice(msg).expect("valid event")
    }
}
