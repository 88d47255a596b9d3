//! An aggregator's router: reads its share of the checkout topic and
//! writes every message again to the by-id topic, keyed by event id, so
//! that all copies of one event land on one by-id partition and are
//! counted by one aggregator, whose filter sees them all. Kafka Streams
//! calls this a repartition topic.
//!
//! - A completed checkout goes as it is, keyed by its event id's hash.
//! - A message the decoder rejects goes as it is (one too large is cut to
//!   just past the limit, so that it fits the by-id topic): the counter
//!   rejects it with the same reason.
//! - Messages the decoder filters (nine in ten are not completed
//!   checkouts) are only counted: per origin partition and block of
//!   [`FILTERED_BLOCK`] offsets, one small marker says how many of the
//!   block's messages so far were filtered. It is sent again, larger, as
//!   the block fills (at most every [`MARK_EVERY`]), and a last time when
//!   the next block starts.
//! - Every message carries its origin (partition and offset, or block) in
//!   a header, and all but keyed checkouts go to the by-id partition their
//!   origin partition maps to, so a copy lands where the first did.
//!
//! The router is at-least-once: after a failure or a rebalance the next
//! router sends again from the group's committed offset, and the counter
//! skips a message whose origin it has counted, and counts of a block only
//! what its marker adds ([`livemap_engine::ingest::Engine::ingest_routed`]). For
//! that the committed offset of a partition is never inside a block with
//! filtered messages: it is that block's start, so a block's counts always
//! run from its start. A new owner reads from exactly that offset, even
//! inside a record batch (`RouterContext`). A router never routes or
//! counts a message twice itself ([`FilteredBlocks::fresh`]): what it
//! read before (delivered again by the client, or its partition handed
//! back from an older commit) is routed already.
//!
//! Next stage: the by-id topic, read by this crate's Kafka source in the
//! aggregator's counting group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livemap_events::money::FxTable;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use tokio_util::sync::CancellationToken;

use super::source::KafkaConfig;
use crate::source::{FilteredBlock, Origin};
use livemap_engine::decode::{Decoded, Decoder, MAX_MESSAGE_BYTES};

/// The header with a routed message's origin: partition (i32) and offset
/// (i64), little-endian.
pub const ORIGIN_HEADER: &str = "livemap-origin";
/// The header of a filtered-block marker: origin partition (i32), block
/// (i64), last offset counted (i64) and filtered messages from the block's
/// start to it (u32), little-endian.
pub const FILTERED_HEADER: &str = "livemap-filtered";

/// Offsets per filtered block.
pub const FILTERED_BLOCK: i64 = 4_096;
/// How often an open block's marker is sent while it fills.
pub const MARK_EVERY: Duration = Duration::from_millis(100);

/// The open block of one origin partition.
#[derive(Debug, Clone, Copy)]
struct Block {
    index: i64,
    filtered: u32,
    last: i64,
    /// Filtered messages not yet in a marker.
    unsent: bool,
}

/// A filtered-block marker to send: `count` filtered messages of `block`
/// of origin `partition`, from the block's start up to offset `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub partition: i32,
    pub block: i64,
    pub last: i64,
    pub count: u32,
}

/// The router's bookkeeping of filtered messages, apart from Kafka: which
/// markers to send, and where a partition may be committed.
#[derive(Debug, Default)]
pub struct FilteredBlocks {
    open: HashMap<i32, Block>,
    /// Per partition, the highest offset read.
    seen: HashMap<i32, i64>,
}

impl FilteredBlocks {
    /// Whether message `offset` of `partition` is new to this router, not
    /// one it read before: a client can deliver a stretch again within an
    /// assignment, and a partition can come back to its router from an
    /// older commit. What it read before is routed and counted already (its
    /// producer never gives a message up), and counting it again would
    /// break the block's count, which runs from the block's start.
    pub fn fresh(&mut self, partition: i32, offset: i64) -> bool {
        let seen = self.seen.entry(partition).or_insert(-1);
        if offset <= *seen {
            return false;
        }
        *seen = offset;
        true
    }

    /// Notes message `offset` of `partition` (filtered or not). Returns
    /// the marker that completes the previous block, to send first.
    pub fn observe(&mut self, partition: i32, offset: i64, filtered: bool) -> Option<Marker> {
        let index = offset.div_euclid(FILTERED_BLOCK);
        let block = self.open.entry(partition).or_insert(Block {
            index,
            filtered: 0,
            last: offset,
            unsent: false,
        });
        let mut done = None;
        if index != block.index {
            done = marker(partition, block);
            *block = Block {
                index,
                filtered: 0,
                last: offset,
                unsent: false,
            };
        }
        if filtered {
            block.filtered += 1;
            block.last = offset;
            block.unsent = true;
        }
        done
    }

    /// Markers of open blocks with filtered messages not yet sent.
    pub fn due(&mut self) -> Vec<Marker> {
        self.open
            .iter_mut()
            .filter_map(|(p, block)| {
                let m = marker(*p, block);
                block.unsent = false;
                m
            })
            .collect()
    }

    /// The offset after the last one of `partition` read (and routed).
    pub fn next_offset(&self, partition: i32) -> Option<i64> {
        self.seen.get(&partition).map(|seen| seen + 1)
    }

    /// Where `partition` may be committed once everything read is routed:
    /// never inside a block that holds filtered messages, so a block read
    /// again by another router counts from its start.
    pub fn commit_at(&self, partition: i32) -> Option<i64> {
        let next = self.next_offset(partition)?;
        Some(match self.open.get(&partition) {
            Some(b) if b.filtered > 0 => next.min(b.index * FILTERED_BLOCK),
            _ => next,
        })
    }
}

fn marker(partition: i32, block: &Block) -> Option<Marker> {
    block.unsent.then_some(Marker {
        partition,
        block: block.index,
        last: block.last,
        count: block.filtered,
    })
}

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
    #[error("reading the router's committed offsets again: {source}")]
    Rewind { source: rdkafka::error::KafkaError },
}

/// What `/metrics` reports about the router.
#[derive(Debug, Default)]
pub struct RouterStats {
    pub checkouts: AtomicU64,
    pub filtered: AtomicU64,
    pub rejected: AtomicU64,
    /// Offsets never read where an assigned partition resumed.
    pub skipped_at_resume: AtomicU64,
    /// Messages read again (already routed by this router), skipped.
    pub read_again: AtomicU64,
    /// Messages the by-id topic refused (too large for it, not
    /// authorised, ...), and messages given up with them: each stops
    /// routing until it can be sent again ([`RouterStats::blocked`]).
    pub failed_deliveries: AtomicU64,
    /// Why routing is stopped, while it is: nothing past the message that
    /// could not be sent is committed, and `/readyz` fails.
    pub blocked: Mutex<Option<String>>,
    /// How many times routing stopped.
    pub blocks: AtomicU64,
    /// The last refusal the producer reported.
    last_failure: Mutex<Option<String>>,
}

impl RouterStats {
    /// Why routing is stopped, if it is.
    pub fn blocked_reason(&self) -> Option<String> {
        self.blocked.lock().clone()
    }
}

/// The router's producer context: counts what could not be delivered.
struct Deliveries {
    stats: Arc<RouterStats>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        // librdkafka calls the gapless guarantee experimental each time a
        // producer is made; it is what the router relies on, on purpose.
        if fac == "CONFWARN" && message.contains("gapless") {
            return;
        }
        match level {
            rdkafka::config::RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "{fac} {message}")
            }
            rdkafka::config::RDKafkaLogLevel::Info | rdkafka::config::RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", "{fac} {message}")
            }
            rdkafka::config::RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "{fac} {message}")
            }
            _ => tracing::error!(target: "librdkafka", "{fac} {message}"),
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        if let Err((e, m)) = result {
            self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
            // The first refusal says why; those given up with it follow.
            let mut last = self.stats.last_failure.lock();
            if last.is_none() {
                tracing::error!(error = %e, partition = m.partition(), "router: a message was not delivered to the by-id topic");
                *last = Some(format!(
                    "the by-id topic refused a message for partition {}: {e}",
                    m.partition()
                ));
            }
        }
    }
}

/// The router's consumer context. On assignment it starts each partition
/// at exactly the group's committed offset, and the run loop routes
/// nothing below it: a block's counts then run from where the last router
/// committed, as the counter needs. A first message past the offset means
/// offsets were never read (retention deleted them): counted as skipped.
struct RouterContext {
    topic: String,
    /// Per newly assigned partition, the committed offset it resumes at,
    /// until a message at or past it is read.
    resume_at: Mutex<HashMap<i32, i64>>,
    stats: Arc<RouterStats>,
}

impl ClientContext for RouterContext {}

impl ConsumerContext for RouterContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let committed = consumer
                    .committed_offsets(tpl.clone(), Duration::from_secs(10))
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "router cannot read committed offsets");
                        TopicPartitionList::new()
                    });
                for e in committed.elements_for_topic(&self.topic) {
                    if let Offset::Offset(at) = e.offset() {
                        if tpl
                            .set_partition_offset(&self.topic, e.partition(), Offset::Offset(at))
                            .is_ok()
                        {
                            self.resume_at.lock().insert(e.partition(), at);
                        }
                    }
                }
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut resume_at = self.resume_at.lock();
                for e in tpl.elements_for_topic(&self.topic) {
                    resume_at.remove(&e.partition());
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "router rebalance error; dropping the assignment");
                self.resume_at.lock().clear();
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "router assignment change failed");
        }
    }
}

impl RouterContext {
    /// Whether message `offset` of `partition` is to be routed: not if it
    /// lies before where the partition resumes.
    fn admits(&self, partition: i32, offset: i64) -> bool {
        let mut resume_at = self.resume_at.lock();
        let Some(&at) = resume_at.get(&partition) else {
            return true;
        };
        if offset < at {
            return false;
        }
        resume_at.remove(&partition);
        if offset > at {
            tracing::warn!(
                partition,
                resume_at = at,
                first_read = offset,
                "router: offsets skipped where the partition resumed"
            );
            self.stats
                .skipped_at_resume
                .fetch_add((offset - at).unsigned_abs(), Ordering::Relaxed);
        }
        true
    }
}

pub struct Router {
    consumer: BaseConsumer<RouterContext>,
    /// Polled on its own thread: delivery reports never wait on routing.
    producer: ThreadedProducer<Deliveries>,
    /// To make the producer again after it stopped on a refusal.
    producer_config: rdkafka::ClientConfig,
    decoder: Decoder,
    by_id_topic: String,
    by_id_partitions: i32,
    raw_topic: String,
    pub stats: Arc<RouterStats>,
    /// Refusals seen so far: one more means routing stops.
    failures_seen: u64,
    /// While routing is stopped: when to try again, and the pause after.
    retry: Option<(Instant, Duration)>,
    cancel: CancellationToken,
}

/// Why a message could not be handed to the producer.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("the router's producer refused a message: {0}")]
    Refused(rdkafka::error::KafkaError),
    #[error("shutting down with the producer's queue full")]
    Cancelled,
}

/// What a record batch holds besides its records, with room to spare.
const BATCH_FRAMING: usize = 512;

/// The first pause before routing is tried again after a refusal, and
/// the longest (the pause doubles each time in between).
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// A routed message's origin, from its headers (`None` on a message that
/// was not routed, or whose header is malformed).
pub fn origin(headers: Option<&rdkafka::message::BorrowedHeaders>) -> Option<Origin> {
    let headers = headers?;
    for h in headers.iter() {
        let Some(v) = h.value else { continue };
        match (h.key, v.len()) {
            (ORIGIN_HEADER, 12) => {
                return Some(Origin {
                    partition: i32::from_le_bytes(v[..4].try_into().ok()?),
                    offset: i64::from_le_bytes(v[4..].try_into().ok()?),
                    filtered: None,
                });
            }
            (FILTERED_HEADER, 24) => {
                return Some(Origin {
                    partition: i32::from_le_bytes(v[..4].try_into().ok()?),
                    offset: i64::from_le_bytes(v[12..20].try_into().ok()?),
                    filtered: Some(FilteredBlock {
                        block: i64::from_le_bytes(v[4..12].try_into().ok()?),
                        count: u32::from_le_bytes(v[20..].try_into().ok()?),
                    }),
                });
            }
            _ => {}
        }
    }
    None
}

impl Router {
    /// The router of `raw` (the checkout topic and its group), writing to
    /// `by_id_topic` of `by_id_partitions` partitions, which takes record
    /// batches of up to `max_batch` bytes.
    pub fn connect(
        raw: &KafkaConfig,
        by_id_topic: String,
        by_id_partitions: i32,
        max_batch: Option<usize>,
        fx: FxTable,
        cancel: CancellationToken,
    ) -> Result<Router, RouterError> {
        let stats = Arc::new(RouterStats::default());
        let context = RouterContext {
            topic: raw.topic.clone(),
            resume_at: Mutex::new(HashMap::new()),
            stats: Arc::clone(&stats),
        };
        let consumer: BaseConsumer<RouterContext> = raw
            .client_config()
            // Its health is the counter's to report; no statistics here.
            .set("statistics.interval.ms", "0")
            .create_with_context(context)
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
        let mut producer_config = raw.producer_config();
        producer_config
            // Messages of one origin partition must reach a by-id
            // partition in order, retries included, and none may be
            // missing before one that arrived: the counter's skip rule
            // relies on both. The idempotent producer keeps the order
            // with several requests in flight; with the gapless guarantee
            // a message the broker refuses for good stops the producer,
            // so nothing after it on its partition is written, and the
            // router sends again from its last commit.
            .set("enable.idempotence", "true")
            .set("enable.gapless.guarantee", "true")
            .set("acks", "all")
            // Never give a message up on time: a broker outage fills the
            // queue and stalls routing instead.
            .set("message.timeout.ms", "0")
            .set("linger.ms", "10")
            .set("queue.buffering.max.messages", "500000");
        if let Some(max) = max_batch {
            // Batches the topic takes: only a single message larger than
            // its limit is refused, never a batch of small ones.
            let batch = max.saturating_sub(BATCH_FRAMING).clamp(1_024, 1_000_000);
            producer_config.set("batch.size", batch.to_string());
        }
        let producer = new_producer(&producer_config, &stats)?;
        Ok(Router {
            consumer,
            producer,
            producer_config,
            decoder: Decoder::new(fx),
            by_id_topic,
            by_id_partitions: by_id_partitions.max(1),
            raw_topic: raw.topic.clone(),
            stats,
            failures_seen: 0,
            retry: None,
            cancel,
        })
    }

    /// Routes until cancelled, then flushes and commits what was sent.
    pub fn run(mut self) {
        let mut blocks = FilteredBlocks::default();
        let (mut last_commit, mut last_mark) = (Instant::now(), Instant::now());
        while !self.cancel.is_cancelled() {
            if self.retry.is_some() {
                self.stopped(&mut blocks);
                continue;
            }
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let (p, o) = (m.partition(), m.offset());
                    if !self.consumer.context().admits(p, o) {
                        continue;
                    }
                    let before = blocks.next_offset(p);
                    if !blocks.fresh(p, o) {
                        self.stats.read_again.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if before != Some(o) {
                        // A (re)assignment: where reading starts says whether
                        // messages were routed by another router meanwhile.
                        tracing::info!(partition = p, offset = o, ?before, "router reads from");
                    }
                    let routed = self.route(p, o, m.payload()).and_then(|filtered| {
                        match blocks.observe(p, o, filtered) {
                            Some(done) => self.mark(done),
                            None => Ok(()),
                        }
                    });
                    if let Err(e) = routed {
                        self.stop(self.why(&e), p, o);
                        continue;
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "router poll error"),
                None => {}
            }
            if self.refused() {
                self.stop_on_refusal();
                continue;
            }
            if last_mark.elapsed() >= MARK_EVERY {
                last_mark = Instant::now();
                if let Err(e) = blocks.due().into_iter().try_for_each(|m| self.mark(m)) {
                    self.stop(self.why(&e), -1, -1);
                    continue;
                }
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                last_commit = Instant::now();
                self.commit(&blocks, CommitMode::Async);
            }
        }
        if self.retry.is_none()
            && blocks
                .due()
                .into_iter()
                .try_for_each(|m| self.mark(m))
                .is_ok()
        {
            self.commit(&blocks, CommitMode::Sync);
        }
    }

    /// Whether the producer reported a refusal not yet acted on.
    fn refused(&self) -> bool {
        self.stats.failed_deliveries.load(Ordering::Relaxed) != self.failures_seen
    }

    fn stop_on_refusal(&mut self) {
        let reason = self
            .refusal()
            .unwrap_or_else(|| "the by-id topic refused a message".to_owned());
        self.stop(reason, -1, -1);
    }

    /// The broker's reason for a refusal: the producer's fatal error (the
    /// gapless guarantee stops it on one), or the first failed delivery.
    fn refusal(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(_, why)| why)
            .or_else(|| self.stats.last_failure.lock().clone())
    }

    /// Why a send failed: a stopped producer answers every send with a
    /// bare "fatal", so the reason it stopped is asked for.
    fn why(&self, e: &SendError) -> String {
        self.refusal().unwrap_or_else(|| e.to_string())
    }

    /// Stops routing: nothing more is read, sent or committed until
    /// [`Router::resume`] starts again from the group's committed offsets.
    fn stop(&mut self, reason: String, partition: i32, offset: i64) {
        tracing::error!(
            %reason,
            partition,
            offset,
            "routing stopped: nothing past this message is committed; retrying"
        );
        *self.stats.blocked.lock() = Some(reason);
        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
        self.retry = Some((Instant::now() + RETRY_FIRST, RETRY_FIRST));
    }

    /// While routing is stopped: stays in the group (what is fetched is
    /// dropped; it is read again from the last commit) and tries to
    /// resume when it is time.
    fn stopped(&mut self, blocks: &mut FilteredBlocks) {
        let _ = self.consumer.poll(Duration::from_millis(100));
        let Some((at, pause)) = self.retry else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        match self.resume(blocks) {
            Ok(()) => {
                tracing::info!("routing resumes from the last commit");
                self.retry = None;
                *self.stats.blocked.lock() = None;
            }
            Err(e) => {
                let pause = (pause * 2).min(RETRY_MAX);
                tracing::warn!(error = %e, retry_in = ?pause, "routing cannot resume yet");
                self.retry = Some((Instant::now() + pause, pause));
            }
        }
    }

    /// A fresh producer, and every assigned partition read again from
    /// the group's committed offset: the counter skips what it counted,
    /// and the message that was refused is sent again.
    fn resume(&mut self, blocks: &mut FilteredBlocks) -> Result<(), RouterError> {
        // Dropping the old producer gives up what it still held.
        self.producer = new_producer(&self.producer_config, &self.stats)?;
        self.failures_seen = self.stats.failed_deliveries.load(Ordering::Relaxed);
        *self.stats.last_failure.lock() = None;
        let assigned = self
            .consumer
            .assignment()
            .map_err(|source| RouterError::Rewind { source })?;
        let committed = self
            .consumer
            .committed_offsets(assigned, Duration::from_secs(10))
            .map_err(|source| RouterError::Rewind { source })?;
        *blocks = FilteredBlocks::default();
        let mut resume_at = self.consumer.context().resume_at.lock();
        resume_at.clear();
        for e in committed.elements_for_topic(&self.raw_topic) {
            // A partition never committed starts where the group's reset
            // policy says, as it did when it was first read.
            let at = match e.offset() {
                Offset::Offset(at) => {
                    resume_at.insert(e.partition(), at);
                    Offset::Offset(at)
                }
                _ => Offset::Beginning,
            };
            self.consumer
                .seek(&self.raw_topic, e.partition(), at, Duration::from_secs(10))
                .map_err(|source| RouterError::Rewind { source })?;
        }
        Ok(())
    }

    fn mark(&self, m: Marker) -> Result<(), SendError> {
        let mut v = [0u8; 24];
        v[..4].copy_from_slice(&m.partition.to_le_bytes());
        v[4..12].copy_from_slice(&m.block.to_le_bytes());
        v[12..20].copy_from_slice(&m.last.to_le_bytes());
        v[20..].copy_from_slice(&m.count.to_le_bytes());
        let headers = OwnedHeaders::new().insert(Header {
            key: FILTERED_HEADER,
            value: Some(&v[..]),
        });
        let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.by_id_topic)
            .headers(headers)
            .partition(m.partition.rem_euclid(self.by_id_partitions));
        self.send(record)
    }

    /// Routes one message; returns whether it was filtered (then it is
    /// only counted in its block).
    fn route(
        &self,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
    ) -> Result<bool, SendError> {
        let key = match self.decoder.decode(payload) {
            Decoded::Checkout(c) => {
                self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
                Some(format!("{:016x}", c.event_id_hash))
            }
            Decoded::Filtered(_) => {
                self.stats.filtered.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
            Decoded::Rejected(_) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let mut origin = [0u8; 12];
        origin[..4].copy_from_slice(&partition.to_le_bytes());
        origin[4..].copy_from_slice(&offset.to_le_bytes());
        let headers = OwnedHeaders::new().insert(Header {
            key: ORIGIN_HEADER,
            value: Some(&origin[..]),
        });
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&self.by_id_topic).headers(headers);
        record = match &key {
            Some(k) => record.key(k.as_str()),
            // A copy sent again must land where the first went, or the
            // counter there cannot know it for a copy.
            None => record.partition(partition.rem_euclid(self.by_id_partitions)),
        };
        if let Some(v) = payload {
            // A rejected message is sent for its reason only: one the
            // decoder finds too large goes cut to just over the limit, so
            // that it fits the by-id topic and is rejected there as here.
            let cut = if key.is_none() {
                &v[..v.len().min(MAX_MESSAGE_BYTES + 1)]
            } else {
                v
            };
            record = record.payload(cut);
        }
        self.send(record)?;
        Ok(false)
    }

    fn send(&self, mut record: BaseRecord<'_, str, [u8]>) -> Result<(), SendError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    // The broker is away or slow: wait for room, but not
                    // past a shutdown.
                    if self.cancel.is_cancelled() {
                        return Err(SendError::Cancelled);
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(SendError::Refused(e)),
            }
        }
    }

    /// Commits where each origin partition still ours got to (the start
    /// of its open block if that holds filtered messages), once everything
    /// routed is acknowledged, and nothing was refused.
    fn commit(&mut self, blocks: &FilteredBlocks, mode: CommitMode) {
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in assigned.elements() {
            if let Some(next) = blocks.commit_at(e.partition()) {
                let _ =
                    tpl.add_partition_offset(&self.raw_topic, e.partition(), Offset::Offset(next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = self.producer.flush(self.flush_patience()) {
            tracing::warn!(error = %e, "router flush incomplete; not committing");
            return;
        }
        // Every delivery report is in once the flush is through: a
        // refusal among them means nothing here may be committed.
        if self.refused() {
            self.stop_on_refusal();
            return;
        }
        tracing::debug!(offsets = ?tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>(), "router commits");
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::warn!(error = %e, "router commit failed");
        }
    }

    /// How long a flush may wait: a while when routing, briefly when
    /// shutting down (what is not acknowledged is not committed, and is
    /// routed again by the next owner).
    fn flush_patience(&self) -> Duration {
        if self.cancel.is_cancelled() {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(10)
        }
    }
}

fn new_producer(
    config: &rdkafka::ClientConfig,
    stats: &Arc<RouterStats>,
) -> Result<ThreadedProducer<Deliveries>, RouterError> {
    config
        .create_with_context(Deliveries {
            stats: Arc::clone(stats),
        })
        .map_err(|source| RouterError::Create {
            what: "producer",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Position;
    use livemap_engine::ingest::{Engine, EngineConfig};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// One origin partition read by two routers in turns: each reads a
    /// stretch from the group's committed offset (skipping what it read
    /// itself before, and sometimes handed a stretch again), marks and
    /// commits at random moments, and hands over. A commit flushes first:
    /// everything its router sent before it (in any earlier turn too)
    /// reaches the counter before the markers of anyone who starts from
    /// that commit; the rest of each router's markers come in its own
    /// order, interleaved with the other's in any way. The counter must
    /// count every filtered message once.
    #[test]
    fn filtered_counts_survive_hand_overs_in_any_interleaving() {
        for seed in 0..300 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let n: i64 = 20_000;
            let flags: Vec<bool> = (0..n).map(|_| rng.random_bool(0.9)).collect();
            let want = flags.iter().filter(|f| **f).count() as u64;
            let mut routers = [FilteredBlocks::default(), FilteredBlocks::default()];
            // Each router's markers in the order it sent them, each tagged
            // with what must be out before it: (router, markers of it).
            let mut queues: [Vec<((usize, usize), Marker)>; 2] = [Vec::new(), Vec::new()];
            let (mut owner, mut committed) = (0usize, 0i64);
            // What the committed offset's flush guarantees is out.
            let mut flushed = (0usize, 0usize);
            loop {
                let (start, waits_for) = (committed, flushed);
                let end = (start + rng.random_range(1..9_000)).min(n);
                let mut next = start;
                let send = |queues: &mut [Vec<_>; 2], m| queues[owner].push((waits_for, m));
                while next < end {
                    let o = next;
                    next += 1;
                    if rng.random_bool(0.0002) {
                        // The client delivers a stretch again.
                        next = rng.random_range(start..=o);
                    }
                    if !routers[owner].fresh(0, o) {
                        continue;
                    }
                    if let Some(m) = routers[owner].observe(0, o, flags[o as usize]) {
                        send(&mut queues, m);
                    }
                    if rng.random_bool(0.003) {
                        routers[owner]
                            .due()
                            .into_iter()
                            .for_each(|m| send(&mut queues, m));
                    }
                    if rng.random_bool(0.002) {
                        committed = routers[owner].commit_at(0).expect("read");
                        flushed = (owner, queues[owner].len());
                    }
                }
                routers[owner]
                    .due()
                    .into_iter()
                    .for_each(|m| send(&mut queues, m));
                if end == n {
                    break;
                }
                owner = 1 - owner;
            }
            let mut order: Vec<Marker> = Vec::new();
            let mut heads = [0usize, 0usize];
            while heads[0] < queues[0].len() || heads[1] < queues[1].len() {
                let ready = |r: usize, heads: &[usize; 2]| {
                    queues[r]
                        .get(heads[r])
                        .is_some_and(|&((after, out), _)| heads[after] >= out)
                };
                let r = match (ready(0, &heads), ready(1, &heads)) {
                    (true, true) => usize::from(rng.random_bool(0.5)),
                    (true, false) => 0,
                    (false, true) => 1,
                    (false, false) => unreachable!("a marker waits on one sent before it"),
                };
                order.push(queues[r][heads[r]].1);
                heads[r] += 1;
            }
            let mut engine = Engine::new(EngineConfig::default());
            engine.assign(&[(0, None)], 1);
            for (offset, m) in order.into_iter().enumerate() {
                let origin = Origin {
                    partition: m.partition,
                    offset: m.last,
                    filtered: Some(FilteredBlock {
                        block: m.block,
                        count: m.count,
                    }),
                };
                let position = Position {
                    partition: 0,
                    offset: offset as i64,
                    generation: 1,
                };
                engine.ingest_routed(None, Some(position), Some(origin), 0);
            }
            assert_eq!(engine.counts().filtered, want, "seed {seed}");
        }
    }
}
