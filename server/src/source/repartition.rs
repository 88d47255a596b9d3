//! An aggregator's router: reads its share of the checkout topic and
//! writes every message again to the by-id topic, keyed by event id, so
//! that all copies of one event land on one by-id partition and are
//! counted by one aggregator, whose filter sees them all. Kafka Streams
//! calls this a repartition topic.
//!
//! - A completed checkout goes as it is, keyed by its event id's hash.
//! - A message the decoder rejects goes as it is: the counter rejects it
//!   with its reason.
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
//! what its marker adds ([`crate::ingest::Engine::ingest_routed`]). For
//! that the committed offset of a partition is never inside a block with
//! filtered messages: it is that block's start, so a block's counts always
//! run from its start. A new owner reads from exactly that offset, even
//! inside a record batch ([`RouterContext`]). A router never routes or
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

use super::kafka::{read_behind, KafkaConfig};
use super::{FilteredBlock, Origin};
use crate::decode::{Decoded, Decoder};

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
    /// Messages the broker refused for good (too large for the by-id
    /// topic, not authorised): lost from the counts, so reported.
    pub failed_deliveries: AtomicU64,
}

/// The router's producer context: counts what could not be delivered.
struct Deliveries {
    stats: Arc<RouterStats>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        if let Err((e, m)) = result {
            self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, partition = m.partition(), "router: a message was not delivered to the by-id topic");
        }
    }
}

/// The router's consumer context. On assignment it starts each partition
/// [`super::kafka::READ_BEHIND`] before the group's committed offset (a
/// broker may skip the rest of a record batch fetched from its middle),
/// and the run loop routes nothing below that offset: a block's counts
/// then run from where the last router committed, as the counter needs.
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
                        let from = read_behind(consumer, &self.topic, e.partition(), at);
                        if tpl
                            .set_partition_offset(&self.topic, e.partition(), Offset::Offset(from))
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
    /// `by_id_topic` of `by_id_partitions` partitions.
    pub fn connect(
        raw: &KafkaConfig,
        by_id_topic: String,
        by_id_partitions: i32,
        fx: FxTable,
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
        let mut producer_config = rdkafka::ClientConfig::new();
        producer_config
            .set("bootstrap.servers", &raw.brokers)
            .set("acks", "all")
            // Messages of one origin partition must reach a by-id
            // partition in order, retries included: the counter's skip
            // rule relies on it. One request in flight keeps that order on
            // any broker. (The idempotent producer with five in flight was
            // no faster here, the router being CPU-bound.)
            .set("max.in.flight.requests.per.connection", "1")
            // Never give a message up: one that failed while later ones got
            // through would leave a gap the counter's skip rule cannot see
            // (they are committed past). A broker outage fills the queue
            // and stalls routing instead.
            .set("message.timeout.ms", "0")
            .set("linger.ms", "10")
            .set("queue.buffering.max.messages", "500000");
        let producer: ThreadedProducer<Deliveries> = producer_config
            .create_with_context(Deliveries {
                stats: Arc::clone(&stats),
            })
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
            stats,
        })
    }

    /// Routes until cancelled, then flushes and commits what was sent.
    pub fn run(self, cancel: CancellationToken) {
        let mut blocks = FilteredBlocks::default();
        let (mut last_commit, mut last_mark) = (Instant::now(), Instant::now());
        while !cancel.is_cancelled() {
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
                    let filtered = self.route(p, o, m.payload());
                    if let Some(done) = blocks.observe(p, o, filtered) {
                        self.mark(done);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "router poll error"),
                None => {}
            }
            if last_mark.elapsed() >= MARK_EVERY {
                last_mark = Instant::now();
                blocks.due().into_iter().for_each(|m| self.mark(m));
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                last_commit = Instant::now();
                self.commit(&blocks, CommitMode::Async);
            }
        }
        blocks.due().into_iter().for_each(|m| self.mark(m));
        self.commit(&blocks, CommitMode::Sync);
    }

    fn mark(&self, m: Marker) {
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
        self.send(record, m.partition, m.last);
    }

    /// Routes one message; returns whether it was filtered (then it is
    /// only counted in its block).
    fn route(&self, partition: i32, offset: i64, payload: Option<&[u8]>) -> bool {
        let key = match self.decoder.decode(payload) {
            Decoded::Checkout(c) => {
                self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
                Some(format!("{:016x}", c.event_id_hash))
            }
            Decoded::Filtered(_) => {
                self.stats.filtered.fetch_add(1, Ordering::Relaxed);
                return true;
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
            record = record.payload(v);
        }
        self.send(record, partition, offset);
        false
    }

    fn send(&self, mut record: BaseRecord<'_, str, [u8]>, partition: i32, offset: i64) {
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

    /// Commits where each origin partition still ours got to (the start
    /// of its open block if that holds filtered messages), once everything
    /// routed is acknowledged.
    fn commit(&self, blocks: &FilteredBlocks, mode: CommitMode) {
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
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "router flush incomplete; not committing");
            return;
        }
        tracing::debug!(offsets = ?tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>(), "router commits");
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::warn!(error = %e, "router commit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Engine, EngineConfig};
    use crate::source::Position;
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
            assert_eq!(engine.counts.filtered, want, "seed {seed}");
        }
    }
}
