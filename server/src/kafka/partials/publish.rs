//! An aggregator's side of the partial-state topic: one record per
//! publish, acknowledged by the brokers (acks=all) before the caller
//! commits the offsets the record reflects.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::{Kind, PartialRecord, PartialsConfig, PartialsError, CLAIM_SEQ, MAX_RECORD_BYTES};
use livemap_engine::first_sales::FirstSale;
use livemap_engine::ingest::Engine;

/// A whole state goes out every this many state records (30 s at the
/// default `--publish-ms`), with the change record of the same moment:
/// compaction keeps the newest whole state and the change records since
/// it, which is what a starting reader needs. Between, a record carries
/// only what changed.
pub const WHOLE_EVERY: u64 = 30;

/// How long a record may wait for its acknowledgement. Past it the
/// publish fails and nothing is committed; the next publish tries again.
const ACK_PATIENCE: Duration = Duration::from_secs(15);
/// The same once shutting down: a last record that cannot be
/// acknowledged soon is not worth the wait (the last one that was is the
/// checkpoint).
const ACK_PATIENCE_LEAVING: Duration = Duration::from_secs(2);

/// Creates the partial-state topic if it does not exist: one partition
/// (a record per aggregator per second is little), compacted, replicated
/// as the brokers' default.
pub async fn ensure_topic(config: &PartialsConfig) -> Result<(), PartialsError> {
    let max_bytes = MAX_RECORD_BYTES.to_string();
    crate::kafka::topics::ensure(
        config.client_config(),
        &config.topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("max.message.bytes", &max_bytes),
            // Only closed segments are compacted: a segment closes every
            // 10 minutes however little it holds (Kafka: 7 days), so the
            // topic stays about one whole state and 30 change records per
            // aggregator.
            ("segment.ms", "600000"),
        ],
    )
    .await
    .map_err(|reason| PartialsError::CreateTopic {
        topic: config.topic.clone(),
        reason,
    })
}

/// What an engine sampled since the last record: its arcs and its shops'
/// first sales.
pub type Sampled = (Vec<livemap_wire::Arc>, Vec<FirstSale>);

/// The delivery opaque of an arcs-only record, which nothing waits for.
const ARCS_ONLY: u64 = u64::MAX;

/// The outcome of the newest record acknowledged, by sequence number: a
/// record that was given up on and acknowledged late is not mistaken for
/// the next one.
#[derive(Default)]
struct Acks {
    outcome: Mutex<Option<(u64, Result<(), KafkaError>)>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        if *seq == ARCS_ONLY {
            // Arcs are not waited for: a lost batch is a gap on the globe.
            if let Err((e, _)) = result {
                tracing::debug!(error = %e, "arcs record not delivered");
            }
            return;
        }
        *self.outcome.lock() = Some((
            *seq,
            match result {
                Ok(_) => Ok(()),
                Err((e, _)) => Err(e.clone()),
            },
        ));
    }
}

pub struct Publisher {
    producer: BaseProducer<Acks>,
    topic: String,
    aggregator: String,
    instance: u64,
    /// See [`PartialRecord::lineage`]: new unless the aggregator restored
    /// its own record.
    lineage: AtomicU64,
    seq: AtomicU64,
    /// One record in flight at a time, so records of one aggregator land
    /// in the order they were taken.
    sending: Mutex<()>,
    /// The newest state record the brokers acknowledged, and the state it
    /// carried: the next change record is taken against it. `None` at
    /// start and after a failed publish (the record may or may not have
    /// landed): the next record is then a whole state.
    acked: Mutex<Option<Acked>>,
    /// Set once the process shuts down: shorter patience.
    leaving: AtomicBool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("aggregator", &self.aggregator)
            .field("instance", &self.instance)
            .finish()
    }
}

impl Publisher {
    pub fn new(config: &PartialsConfig, aggregator: String) -> Result<Publisher, PartialsError> {
        let producer = config
            .client_config()
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("max.in.flight.requests.per.connection", "1")
            .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
            // A record is mostly sketch cells, many of them empty: a 2.1 MB
            // record (a million demo messages) is 0.48 MB gzipped at level
            // 1, in about 20 ms, for the broker and every edge to carry.
            .set("compression.type", "gzip")
            .set("compression.level", "1")
            .create_with_context(Acks::default())
            .map_err(|source| PartialsError::Client {
                topic: config.topic.clone(),
                source,
            })?;
        Ok(Publisher {
            producer,
            topic: config.topic.clone(),
            aggregator,
            instance: rand::random(),
            lineage: AtomicU64::new(rand::random::<u64>().max(1)),
            seq: AtomicU64::new(0),
            sending: Mutex::new(()),
            acked: Mutex::new(None),
            leaving: AtomicBool::new(false),
        })
    }

    /// From now on a record waits `ACK_PATIENCE_LEAVING` at most.
    pub fn hurry(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }

    fn patience(&self) -> Duration {
        if self.leaving.load(Ordering::Relaxed) {
            ACK_PATIENCE_LEAVING
        } else {
            ACK_PATIENCE
        }
    }

    /// Publishes as a continuation of `lineage`: this process restored the
    /// state its id last published.
    pub fn continue_lineage(&self, lineage: u64) {
        self.lineage.store(lineage, Ordering::Relaxed);
    }

    /// This process's instance, as its records carry it.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Says that this process is starting under its aggregator id (an
    /// empty record with [`CLAIM_SEQ`]); nothing waits for it.
    pub fn claim(&self, published_ms: i64) -> Result<(), PartialsError> {
        self.send_stateless(CLAIM_SEQ, Sampled::default(), published_ms, "claim")
    }

    /// Sends `arcs` in a record of their own (an empty state says so),
    /// keyed apart from the state so compaction keeps both, and does not
    /// wait: the next tick's arcs matter more than this one's.
    pub fn publish_arcs(
        &self,
        arcs: Vec<livemap_wire::Arc>,
        first_sales: Vec<FirstSale>,
        published_ms: i64,
    ) -> Result<(), PartialsError> {
        self.send_stateless(0, (arcs, first_sales), published_ms, "arcs")
    }

    /// Sends a record without state under `<aggregator>/<kind>`; nothing
    /// waits for its acknowledgement.
    fn send_stateless(
        &self,
        seq: u64,
        (arcs, first_sales): Sampled,
        published_ms: i64,
        kind: &str,
    ) -> Result<(), PartialsError> {
        let record = PartialRecord {
            aggregator: self.aggregator.clone(),
            instance: self.instance,
            seq,
            published_ms,
            lineage: self.lineage.load(Ordering::Relaxed),
            arcs,
            first_sales,
            ..PartialRecord::default()
        };
        let bytes = record.encode();
        let key = format!("{}/{kind}", self.aggregator);
        self.producer
            .send(
                BaseRecord::with_opaque_to(&self.topic, Box::new(ARCS_ONLY))
                    .key(&key)
                    .payload(&bytes),
            )
            .map_err(|(source, _)| PartialsError::Publish {
                topic: self.topic.clone(),
                source,
            })?;
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Takes the next state record from `engine` (under its lock, so the
    /// state is one moment's): the changes since the last acknowledged
    /// record, or the whole state, or both (see [`WHOLE_EVERY`]).
    pub fn prepare(
        &self,
        engine: &Engine,
        source: &str,
        (arcs, first_sales): Sampled,
        published_ms: i64,
    ) -> Prepared {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let acked = self.acked.lock();
        let base = PartialRecord {
            aggregator: self.aggregator.clone(),
            instance: self.instance,
            seq,
            published_ms,
            lineage: self.lineage.load(Ordering::Relaxed),
            ..PartialRecord::default()
        };
        let mut records = Vec::with_capacity(2);
        let mut whole_seq = seq;
        if let Some(last) = acked.as_ref() {
            records.push(PartialRecord {
                kind: Kind::Changes,
                prev_seq: last.seq,
                whole_seq: last.whole_seq,
                state: engine.export_changes(&last.view, source),
                ..base.clone()
            });
            whole_seq = last.whole_seq;
        }
        // Arcs and first sales ride on the first record: the change
        // record if there is one.
        let due = acked
            .as_ref()
            .is_none_or(|last| seq - last.whole_seq >= WHOLE_EVERY);
        if due {
            whole_seq = seq;
            records.push(PartialRecord {
                kind: Kind::Whole,
                whole_seq: seq,
                state: engine.export_view(source),
                ..base
            });
        }
        if let Some(first) = records.first_mut() {
            first.arcs = arcs;
            first.first_sales = first_sales;
        }
        Prepared {
            records,
            view: engine.view_clone(),
            seq,
            whole_seq,
        }
    }

    /// Publishes a [`Publisher::prepare`]d state and waits for the brokers
    /// to acknowledge every record of it; returns the bytes sent.
    pub fn publish(&self, prepared: Prepared) -> Result<usize, PartialsError> {
        let _one_at_a_time = self.sending.lock();
        let mut bytes = 0;
        for record in &prepared.records {
            let key = match record.kind {
                Kind::Whole => self.aggregator.clone(),
                Kind::Changes => format!(
                    "{}/c{}",
                    self.aggregator,
                    record.seq.saturating_sub(record.whole_seq)
                ),
            };
            match self.send_and_wait(record, &key) {
                Ok(n) => bytes += n,
                Err(e) => {
                    *self.acked.lock() = None;
                    return Err(e);
                }
            }
        }
        *self.acked.lock() = Some(Acked {
            seq: prepared.seq,
            whole_seq: prepared.whole_seq,
            view: prepared.view,
        });
        Ok(bytes)
    }

    /// Sends `record` under `key` and waits for the brokers to acknowledge
    /// it.
    fn send_and_wait(&self, record: &PartialRecord, key: &str) -> Result<usize, PartialsError> {
        let bytes = record.encode();
        let ctx = self.producer.context();
        self.producer
            .send(
                BaseRecord::with_opaque_to(&self.topic, Box::new(record.seq))
                    .key(key)
                    .payload(&bytes),
            )
            .map_err(|(source, _)| PartialsError::Publish {
                topic: self.topic.clone(),
                source,
            })?;
        let started = Instant::now();
        // Re-read each turn: a shutdown cuts short a wait under way.
        while started.elapsed() < self.patience() {
            self.producer.poll(Duration::from_millis(10));
            let mine = ctx
                .outcome
                .lock()
                .take_if(|(seq, _)| *seq == record.seq)
                .map(|(_, outcome)| outcome);
            if let Some(outcome) = mine {
                return outcome
                    .map(|()| bytes.len())
                    .map_err(|source| PartialsError::Publish {
                        topic: self.topic.clone(),
                        source,
                    });
            }
        }
        Err(PartialsError::Unacknowledged {
            topic: self.topic.clone(),
        })
    }
}

/// The last acknowledged state record.
struct Acked {
    seq: u64,
    whole_seq: u64,
    view: Engine,
}

/// A state ready to publish: one or two records (see
/// [`Publisher::prepare`]) and the state they bring a reader to.
pub struct Prepared {
    pub records: Vec<PartialRecord>,
    view: Engine,
    seq: u64,
    whole_seq: u64,
}

/// An edge's side of the viewers count: how many browsers it serves, one
/// small record a second, not waited for.
pub struct ViewersPublisher {
    producer: BaseProducer,
    topic: String,
    edge: String,
    /// This process's, also how its own record is told from the others'.
    pub instance: u64,
}

impl std::fmt::Debug for ViewersPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewersPublisher")
            .field("topic", &self.topic)
            .field("edge", &self.edge)
            .finish_non_exhaustive()
    }
}

impl ViewersPublisher {
    pub fn new(config: &PartialsConfig, edge: String) -> Result<ViewersPublisher, PartialsError> {
        let producer = config
            .client_config()
            .set("linger.ms", "0")
            .create()
            .map_err(|source| PartialsError::Client {
                topic: config.topic.clone(),
                source,
            })?;
        Ok(ViewersPublisher {
            producer,
            topic: config.topic.clone(),
            edge,
            instance: rand::random(),
        })
    }

    /// Publishes `viewers`; a lost record is replaced a second later.
    pub fn publish(&self, viewers: u64, published_ms: i64) {
        let record = super::ViewersRecord {
            edge: self.edge.clone(),
            instance: self.instance,
            published_ms,
            viewers,
        }
        .encode();
        let key = format!("edge/{}", self.edge);
        if let Err((e, _)) = self
            .producer
            .send(BaseRecord::to(&self.topic).key(&key).payload(&record))
        {
            tracing::debug!(error = %e, "viewers record not sent");
        }
        self.producer.poll(Duration::ZERO);
    }
}
