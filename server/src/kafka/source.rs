//! The Kafka source: a consumer-group member reading every partition it is
//! assigned, feeding the same pipeline as the demo.
//!
//! Exactness rests on three rules:
//! - The engine's state carries, per partition, the next offset it has not
//!   counted. Messages below it are skipped, so re-reading is harmless.
//! - On assignment, each partition resumes at the offset the state says,
//!   not at what Kafka remembers; Kafka's committed offsets only ever trail
//!   a durable checkpoint (auto-commit is off), so they are a safe fallback
//!   and the hand-off point for other members. Kafka answers a fetch
//!   from inside a record batch with that batch and the client drops the
//!   records before the offset, so reading starts exactly there; a first
//!   message past it (retention deleted the rest) is counted as skipped.
//! - On revocation, the partitions stop counting, and a checkpoint is
//!   written and committed before the partitions are released, so the next
//!   owner starts exactly where this one stopped.
//!
//! Polling runs on its own thread; rebalance callbacks run inside `poll`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::kafka::partials::follow::Follower;
use crate::persist::Checkpointer;
use crate::persist::PersistError;
use crate::source::{Batch, Message, Position, SourceHealth};
use livemap_engine::ingest::{Engine, Handover};

/// Where to start in a partition that neither the state nor the group has
/// seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartFrom {
    Earliest,
    Latest,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub start_from: StartFrom,
    /// librdkafka settings passed through as they are (security, SASL, ...).
    pub options: Vec<(String, String)>,
    /// The by-id topic, whose messages carry their origin in headers
    /// (see [`KafkaConfig::by_id`]).
    pub routed: bool,
}

impl KafkaConfig {
    /// What a checkpoint's offsets belong to; a checkpoint for another
    /// topic is refused.
    pub fn source_id(&self) -> String {
        format!("kafka:{}", self.topic)
    }

    /// The by-id topic an aggregator's router writes and its counter
    /// reads, in a group of its own.
    pub fn by_id(&self) -> KafkaConfig {
        KafkaConfig {
            topic: format!("{}.livemap-by-id", self.topic),
            group_id: format!("{}.by-id", self.group_id),
            // The router starts the topic: every message in it counts.
            start_from: StartFrom::Earliest,
            routed: true,
            ..self.clone()
        }
    }

    /// A client that is not in the group (the router's producer, the
    /// admin client), with the operator's options.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        crate::kafka::client::plain_client_config(&self.brokers, &self.options)
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match self.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            // Without these a fetch waits for data and caps what it brings:
            // 35k msgs/s instead of 330k on this machine.
            .set("fetch.wait.max.ms", "10")
            .set("max.partition.fetch.bytes", "16777216")
            // Once the local queue holds queued.min.messages, librdkafka
            // waits this long before fetching again (1 s by default): a
            // fast reader drains the queue long before, then idles. The
            // router ran at 0.2 M msgs/s in bursts with it, 0.6 M without.
            .set("fetch.queue.backoff.ms", "10")
            .set("statistics.interval.ms", "1000")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000")
            // Long enough that a member on a loaded machine is not taken
            // for dead (a hand-off that a commit failure can spoil), short
            // enough that a dead one's partitions move within the minute.
            .set("session.timeout.ms", "30000")
            .set("heartbeat.interval.ms", "1000");
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("creating the Kafka consumer: {0}")]
    Create(KafkaError),
    #[error("subscribing to {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
}

struct LivemapContext {
    engine: Arc<Mutex<Engine>>,
    checkpointer: Option<Arc<Checkpointer>>,
    health: Arc<SourceHealth>,
    topic: String,
    /// The partial-state topic, on an aggregator: where other members'
    /// counts of a partition end.
    follower: Option<Arc<Follower>>,
    /// Whether this reads the by-id topic (messages carry their origin).
    routed: bool,
    /// Assignment generation of each partition, as messages are tagged.
    generations: Mutex<HashMap<i32, u64>>,
    /// Per partition, the broker timestamp of the newest message read.
    read_at: Mutex<HashMap<i32, i64>>,
    clock: Arc<dyn Clock>,
    next_generation: AtomicU64,
}

impl ClientContext for LivemapContext {
    fn stats(&self, stats: Statistics) {
        let up = stats
            .brokers
            .values()
            .any(|b| b.state == "UP" && b.nodeid >= 0);
        let partitions = self
            .topics_partitions(&stats)
            .filter(|(p, _)| **p >= 0)
            .collect::<Vec<_>>();
        // Fetching: the client knows where it reads, so its lag (or its
        // being idle on an empty partition) is current.
        let fetching = partitions
            .iter()
            .filter(|(_, part)| part.fetch_state == "active")
            .map(|(p, _)| **p)
            .collect();
        // A backlog's age: how long ago the newest message read was
        // written. The producer's clock sets CreateTime, so a time ahead
        // of ours counts as no lag, and no more than a day is believed.
        let now = self.clock.now_ms();
        let read_at = self.read_at.lock();
        let (lag, seconds): (Vec<(i32, i64)>, BTreeMap<i32, f64>) = partitions
            .iter()
            .filter(|(_, part)| part.consumer_lag >= 0)
            .map(|(p, part)| {
                let age_ms = match read_at.get(p) {
                    Some(&at) if part.consumer_lag > 0 => (now - at).clamp(0, DAY_MS),
                    _ => 0,
                };
                ((**p, part.consumer_lag), (**p, age_ms as f64 / 1000.0))
            })
            .unzip();
        drop(read_at);
        self.health.observe(up, lag);
        self.health.observe_lag_seconds(seconds);
        self.health.observe_fetching(fetching);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::error::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.health.observe_down();
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for LivemapContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let generation = self.next_generation.fetch_add(1, Ordering::SeqCst) + 1;
                // An aggregator first reads every partial state published
                // so far: the furthest record for a partition, not the
                // group's offset, is where its last owner's counts end.
                if let Some(follower) = &self.follower {
                    if !follower.sync(PARTIALS_PATIENCE) {
                        tracing::warn!(
                            "partial states not read to the end; resuming from what was read"
                        );
                    }
                }
                let handed: Vec<(i32, Option<Handover>)> = self
                    .committed(consumer, &partitions)
                    .into_iter()
                    .map(|(p, committed)| {
                        let recorded = self.follower.as_ref().and_then(|f| f.handover(p));
                        (p, furthest(recorded, committed.map(Handover::at)))
                    })
                    .collect();
                let resume = self.engine.lock().assign(&handed, generation);
                {
                    let mut gens = self.generations.lock();
                    for p in &partitions {
                        gens.insert(*p, generation);
                    }
                }
                for r in &resume {
                    if let Some(from) = r.read_from {
                        tracing::debug!(partition = r.partition, fetch_from = from, "resume");
                        if let Err(e) =
                            tpl.set_partition_offset(&self.topic, r.partition, Offset::Offset(from))
                        {
                            tracing::error!(partition = r.partition, error = %e, "cannot set resume offset");
                        }
                    }
                }
                tracing::info!(?resume, generation, "partitions assigned");
                self.health.observe_assignment(&partitions);
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.engine.lock().revoke(&partitions);
                self.health.observe_revocation(&partitions);
                {
                    let mut gens = self.generations.lock();
                    for p in &partitions {
                        gens.remove(p);
                    }
                }
                // Hand the partitions over exactly where this member stopped.
                if let Some(ck) = &self.checkpointer {
                    match ck.checkpoint(&partitions) {
                        // Without a broker a commit only waits (a closing
                        // consumer revokes too): the checkpoint is where
                        // the next owner resumes.
                        Ok(positions) if self.health.connected() => {
                            commit(consumer, &self.topic, &positions, CommitMode::Sync)
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "checkpoint on revoke failed"),
                    }
                }
                tracing::info!(?partitions, "partitions revoked");
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                self.engine.lock().revoke(&partitions);
                self.generations.lock().clear();
                let _ = consumer.unassign();
            }
        }
    }
}

impl LivemapContext {
    /// The statistics of each partition of the topic read.
    fn topics_partitions<'s>(
        &self,
        stats: &'s Statistics,
    ) -> impl Iterator<Item = (&'s i32, &'s rdkafka::statistics::Partition)> {
        stats
            .topics
            .get(&self.topic)
            .into_iter()
            .flat_map(|t| t.partitions.iter())
    }

    /// A fetched message, tagged with its partition's current assignment.
    fn message(&self, m: &BorrowedMessage<'_>) -> Message {
        let generation = self
            .generations
            .lock()
            .get(&m.partition())
            .copied()
            .unwrap_or(0);
        self.message_of(m, generation, m.payload().map(Bytes::copy_from_slice))
    }

    /// A fetched message with its payload already copied out.
    fn message_of(
        &self,
        m: &BorrowedMessage<'_>,
        generation: u64,
        payload: Option<Bytes>,
    ) -> Message {
        Message {
            payload,
            position: Some(Position {
                partition: m.partition(),
                offset: m.offset(),
                generation,
            }),
            // Only the by-id topic's headers are ours to trust.
            origin: if self.routed {
                super::router::origin(m.headers())
            } else {
                None
            },
        }
    }

    /// The group's committed offsets for `partitions` (`None` where there is
    /// none, or the coordinator cannot say in time).
    fn committed(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &[i32],
    ) -> Vec<(i32, Option<i64>)> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let found = match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read committed offsets; resuming from the checkpoint");
                TopicPartitionList::new()
            }
        };
        partitions
            .iter()
            .map(|&p| {
                let offset = found
                    .find_partition(&self.topic, p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                (p, offset)
            })
            .collect()
    }
}

const DAY_MS: i64 = 86_400_000;

/// How long an assignment waits to read the partial-state topic's end.
const PARTIALS_PATIENCE: Duration = Duration::from_secs(15);

/// The hand-over that got further; a record (which carries minute marks)
/// wins a tie with the group's bare offset.
fn furthest(recorded: Option<Handover>, committed: Option<Handover>) -> Option<Handover> {
    match (recorded, committed) {
        (Some(r), Some(c)) if c.next_offset > r.next_offset => Some(c),
        (Some(r), _) => Some(r),
        (None, c) => c,
    }
}

/// Commits offsets that a durable checkpoint already reflects.
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    positions: &[(i32, i64)],
    mode: CommitMode,
) {
    if positions.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, next) in positions {
        if tpl
            .add_partition_offset(topic, *p, Offset::Offset(*next))
            .is_err()
        {
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        // Not fatal: the checkpoint holds the truth, Kafka's offsets are
        // only a hand-off hint for other members.
        tracing::warn!(error = %e, "offset commit failed");
    }
}

/// Copies payloads into blocks shared by many messages: one allocation
/// per block instead of one per message. A block lives until the last
/// message in it is dropped, which is one batch later.
#[derive(Default)]
struct PayloadArena {
    block: bytes::BytesMut,
}

impl PayloadArena {
    const BLOCK: usize = 1 << 20;

    fn copy(&mut self, payload: &[u8]) -> Bytes {
        if self.block.capacity() - self.block.len() < payload.len() {
            self.block = bytes::BytesMut::with_capacity(Self::BLOCK.max(payload.len()));
        }
        self.block.extend_from_slice(payload);
        self.block.split().freeze()
    }
}

/// A running Kafka source: the poll thread, and the periodic checkpoints.
pub struct KafkaSource {
    consumer: Arc<BaseConsumer<LivemapContext>>,
    topic: String,
}

impl KafkaSource {
    pub fn connect(
        config: &KafkaConfig,
        engine: Arc<Mutex<Engine>>,
        checkpointer: Option<Arc<Checkpointer>>,
        follower: Option<Arc<Follower>>,
        health: Arc<SourceHealth>,
        clock: Arc<dyn Clock>,
    ) -> Result<KafkaSource, KafkaSourceError> {
        let context = LivemapContext {
            engine,
            checkpointer,
            follower,
            health,
            routed: config.routed,
            topic: config.topic.clone(),
            generations: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(0),
            read_at: Mutex::new(HashMap::new()),
            clock,
        };
        let consumer: BaseConsumer<LivemapContext> = config
            .client_config()
            .create_with_context(context)
            .map_err(KafkaSourceError::Create)?;
        consumer
            .subscribe(&[&config.topic])
            .map_err(|source| KafkaSourceError::Subscribe {
                topic: config.topic.clone(),
                source,
            })?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            topic: config.topic.clone(),
        })
    }

    /// Polls until cancelled, sending batches to the engine. Ends with a
    /// last checkpoint and commit.
    pub fn run(
        self,
        tx: mpsc::Sender<Batch>,
        cancel: CancellationToken,
        checkpoint_every: Duration,
    ) {
        const MAX_BATCH: usize = 4_096;
        const MAX_LINGER: Duration = Duration::from_millis(20);
        const CLOCK_EVERY: usize = 128;
        let mut batch: Batch = Vec::with_capacity(MAX_BATCH);
        // The broker timestamps of the batch's newest messages, passed on
        // with it (one lock per batch, not per message).
        let mut read_at: HashMap<i32, i64> = HashMap::new();
        // Payloads are copied into shared blocks, not one allocation each.
        let mut arena = PayloadArena::default();
        // The assignment generations, copied whenever a rebalance (which
        // runs inside `poll`, on this thread) changed them.
        let mut generations = (u64::MAX, HashMap::new());
        let mut batch_started = Instant::now();
        let mut last_checkpoint = Instant::now();
        let ctx = self.consumer.context();
        while !cancel.is_cancelled() {
            let wait = if batch.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            // The clock is read once per CLOCK_EVERY messages, not per
            // message (it was a tenth of the process's CPU), and whenever
            // nothing more is buffered.
            let mut idle = false;
            match self.consumer.poll(wait) {
                Some(Ok(m)) => {
                    if batch.is_empty() {
                        batch_started = Instant::now();
                    }
                    let version = ctx.next_generation.load(Ordering::SeqCst);
                    if generations.0 != version {
                        generations = (version, ctx.generations.lock().clone());
                    }
                    let generation = generations.1.get(&m.partition()).copied().unwrap_or(0);
                    let payload = m.payload().map(|p| arena.copy(p));
                    batch.push(ctx.message_of(&m, generation, payload));
                    if let Some(at) = m.timestamp().to_millis() {
                        let newest = read_at.entry(m.partition()).or_insert(at);
                        *newest = (*newest).max(at);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka poll error");
                }
                // Nothing more buffered: send what there is rather than wait.
                None => {
                    batch_started = Instant::now() - MAX_LINGER;
                    idle = true;
                }
            }
            let full = batch.len() >= MAX_BATCH;
            let look = idle || full || batch.len().is_multiple_of(CLOCK_EVERY);
            if !look {
                continue;
            }
            if !batch.is_empty() && (full || batch_started.elapsed() >= MAX_LINGER) {
                ctx.read_at.lock().extend(read_at.drain());
                ctx.health.observe_message();
                if tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                    break;
                }
                batch.reserve(MAX_BATCH);
            }
            if last_checkpoint.elapsed() >= checkpoint_every {
                last_checkpoint = Instant::now();
                self.checkpoint_and_commit(CommitMode::Async);
            }
        }
        if !batch.is_empty() && tx.blocking_send(std::mem::take(&mut batch)).is_err() {
            return;
        }
        if !ctx.health.connected() {
            // Leaving needs the coordinator; the broker expires this
            // member after its session timeout instead. The last
            // checkpoint (or record) is where the next owner resumes.
            tracing::warn!("no broker reachable: not leaving the group");
            return;
        }
        self.leave_group(&tx);
    }

    /// Leaves the group while still polling, so the revocation (with its
    /// checkpoint and commit) runs while the coordinator is known and the
    /// next owner starts exactly where this member stopped.
    fn leave_group(&self, tx: &mpsc::Sender<Batch>) {
        const LEAVE_PATIENCE: Duration = Duration::from_secs(15);
        self.consumer.unsubscribe();
        let ctx = self.consumer.context();
        let started = Instant::now();
        while started.elapsed() < LEAVE_PATIENCE {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(50)) {
                // Still ours until the revocation: count it like any other.
                if tx.blocking_send(vec![ctx.message(&m)]).is_err() {
                    return;
                }
            }
            if self.consumer.assignment().map_or(true, |a| a.count() == 0) {
                return;
            }
        }
        tracing::warn!("left the group without a clean revocation");
    }

    /// Writes a checkpoint and commits the offsets it reflects.
    fn checkpoint_and_commit(&self, mode: CommitMode) {
        let Some(ck) = &self.consumer.context().checkpointer else {
            return;
        };
        match ck.checkpoint(&[]) {
            Ok(positions) => commit(&self.consumer, &self.topic, &positions, mode),
            Err(e) => tracing::error!(error = %e, "checkpoint failed"),
        }
    }

    /// The consumer, for a final checkpoint from the pipeline after the
    /// engine has drained.
    pub fn handle(&self) -> KafkaHandle {
        KafkaHandle {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
        }
    }
}

/// What the pipeline keeps to checkpoint and close after the source stops.
pub struct KafkaHandle {
    consumer: Arc<BaseConsumer<LivemapContext>>,
    topic: String,
}

impl KafkaHandle {
    pub fn final_checkpoint(&self) -> Result<(), PersistError> {
        let ctx = self.consumer.context();
        if let Some(ck) = &ctx.checkpointer {
            let positions = ck.checkpoint(&[])?;
            // A commit needs the coordinator, and the consumer's close
            // waits for it: with no broker, the checkpoint alone holds
            // where to resume.
            if ctx.health.connected() {
                commit(&self.consumer, &self.topic, &positions, CommitMode::Sync);
            }
        }
        Ok(())
    }
}
