//! An aggregator's router: reads its share of the checkout topic and
//! writes every message again to the by-id topic, keyed by event id, so
//! that all copies of one event land on one by-id partition and are
//! counted by one aggregator, whose filter sees them all. Kafka Streams
//! calls this a repartition topic.
//!
//! - A completed checkout goes as it is, keyed by its event id's hash.
//! - Anything else the decoder would filter goes without its payload,
//!   marked filtered: nine messages in ten are not completed checkouts,
//!   and the counter only counts them.
//! - A message the decoder rejects goes as it is: the counter rejects it
//!   with its reason. It and the filtered go to the by-id partition that
//!   their origin partition maps to, so a copy lands where the first did.
//! - Every message carries its origin (partition and offset) in a header.
//!   The router is at-least-once: after a failure or a rebalance, the next
//!   router sends again from the group's committed offset, and the counter
//!   skips a copy whose origin it has counted
//!   ([`crate::ingest::Engine::ingest_routed`]).
//!
//! Next stage: the by-id topic, read by this crate's Kafka source in the
//! aggregator's counting group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livemap_events::money::FxTable;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use super::kafka::KafkaConfig;
use super::Origin;
use crate::decode::{Decoded, Decoder};

/// The header with a routed message's origin: partition (i32) and offset
/// (i64), little-endian.
pub const ORIGIN_HEADER: &str = "livemap-origin";
/// The header on a message the router filtered (its payload is dropped).
pub const FILTERED_HEADER: &str = "livemap-filtered";

/// How often the router flushes what it sent and commits the offsets of
/// what was acknowledged.
const COMMIT_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("creating the router's {what}: {source}")]
    Create {
        what: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("subscribing the router to {topic}: {source}")]
    Subscribe {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
}

/// What `/metrics` reports about the router.
#[derive(Debug, Default)]
pub struct RouterStats {
    pub checkouts: AtomicU64,
    pub filtered: AtomicU64,
    pub rejected: AtomicU64,
    pub commits: AtomicU64,
}

pub struct Router {
    consumer: BaseConsumer,
    /// Polled on its own thread: delivery reports never wait on routing.
    producer: ThreadedProducer<DefaultProducerContext>,
    decoder: Decoder,
    by_id_topic: String,
    by_id_partitions: i32,
    raw_topic: String,
    pub stats: Arc<RouterStats>,
}

/// A routed message's origin, from its headers (`None` on a message that
/// was not routed, or whose header is malformed).
pub fn origin(headers: Option<&rdkafka::message::BorrowedHeaders>) -> Option<Origin> {
    let headers = headers?;
    let mut origin = None;
    let mut filtered = false;
    for h in headers.iter() {
        match h.key {
            ORIGIN_HEADER => {
                let v = h.value?;
                if v.len() == 12 {
                    let partition = i32::from_le_bytes(v[..4].try_into().ok()?);
                    let offset = i64::from_le_bytes(v[4..].try_into().ok()?);
                    origin = Some((partition, offset));
                }
            }
            FILTERED_HEADER => filtered = true,
            _ => {}
        }
    }
    origin.map(|(partition, offset)| Origin {
        partition,
        offset,
        filtered,
    })
}

impl Router {
    /// The router of `raw` (the checkout topic and its group), writing to
    /// `by_id_topic` of `by_id_partitions` partitions.
    pub fn connect(
        raw: &KafkaConfig,
        by_id_topic: String,
        by_id_partitions: i32,
        fx: FxTable,
    ) -> Result<Router, RouterError> {
        let consumer: BaseConsumer = raw
            .client_config()
            // Its health is the counter's to report; no statistics here.
            .set("statistics.interval.ms", "0")
            .create()
            .map_err(|source| RouterError::Create {
                what: "consumer",
                source,
            })?;
        consumer
            .subscribe(&[&raw.topic])
            .map_err(|source| RouterError::Subscribe {
                topic: raw.topic.clone(),
                source,
            })?;
        let mut producer_config = rdkafka::ClientConfig::new();
        producer_config
            .set("bootstrap.servers", &raw.brokers)
            .set("acks", "all")
            // Messages of one origin partition must reach a by-id
            // partition in order, retries included: the counter's skip
            // rule relies on it. The idempotent producer keeps that order
            // with several requests in flight.
            .set("enable.idempotence", "true")
            .set("linger.ms", "10")
            .set("queue.buffering.max.messages", "500000");
        let producer: ThreadedProducer<DefaultProducerContext> =
            producer_config
                .create()
                .map_err(|source| RouterError::Create {
                    what: "producer",
                    source,
                })?;
        Ok(Router {
            consumer,
            producer,
            decoder: Decoder::new(fx),
            by_id_topic,
            by_id_partitions: by_id_partitions.max(1),
            raw_topic: raw.topic.clone(),
            stats: Arc::new(RouterStats::default()),
        })
    }

    /// Routes until cancelled, then flushes and commits what was sent.
    pub fn run(self, cancel: CancellationToken) {
        let mut sent: HashMap<i32, i64> = HashMap::new();
        let mut last_commit = Instant::now();
        while !cancel.is_cancelled() {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    self.route(m.partition(), m.offset(), m.payload());
                    sent.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "router poll error"),
                None => {}
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                last_commit = Instant::now();
                self.commit(&sent, CommitMode::Async);
            }
        }
        self.commit(&sent, CommitMode::Sync);
    }

    fn route(&self, partition: i32, offset: i64, payload: Option<&[u8]>) {
        let mut origin = [0u8; 12];
        origin[..4].copy_from_slice(&partition.to_le_bytes());
        origin[4..].copy_from_slice(&offset.to_le_bytes());
        let mut headers = OwnedHeaders::new().insert(Header {
            key: ORIGIN_HEADER,
            value: Some(&origin[..]),
        });
        let mut key = None;
        let mut value = payload;
        match self.decoder.decode(payload) {
            Decoded::Checkout(c) => {
                key = Some(format!("{:016x}", c.event_id_hash));
                self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
            }
            Decoded::Filtered(_) => {
                headers = headers.insert(Header {
                    key: FILTERED_HEADER,
                    value: None::<&[u8]>,
                });
                value = None;
                self.stats.filtered.fetch_add(1, Ordering::Relaxed);
            }
            Decoded::Rejected(_) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&self.by_id_topic).headers(headers);
        record = match &key {
            Some(k) => record.key(k.as_str()),
            // A copy sent again must land where the first went, or the
            // counter there cannot know it for a copy: the by-id partition
            // of an unkeyed message follows from its origin partition.
            None => record.partition(partition.rem_euclid(self.by_id_partitions)),
        };
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    // Not committed past, so it is sent again after a restart.
                    tracing::error!(error = %e, partition, offset, "router cannot send");
                    return;
                }
            }
        }
    }

    /// Waits until everything sent is acknowledged, then commits where each
    /// origin partition got to (only partitions still ours).
    fn commit(&self, sent: &HashMap<i32, i64>, mode: CommitMode) {
        if sent.is_empty() {
            return;
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "router flush incomplete; not committing");
            return;
        }
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in assigned.elements() {
            if let Some(next) = sent.get(&e.partition()) {
                let _ =
                    tpl.add_partition_offset(&self.raw_topic, e.partition(), Offset::Offset(*next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "router commit failed"),
        }
    }
}
