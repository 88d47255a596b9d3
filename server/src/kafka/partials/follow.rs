//! Following the partial-state topic: read from the beginning, keep the
//! newest record of each aggregator, restored into an engine.
//!
//! An edge hands the merge of all of them to the snapshot stage whenever
//! one changes. An aggregator asks for its own record at start, and for
//! the furthest any record got in a partition when it is assigned one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message as _;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{Kind, PartialRecord, PartialsConfig, PartialsError, CLAIM_SEQ, MAX_RECORD_BYTES};
use crate::clock::Clock;
use crate::source::SourceHealth;
use livemap_engine::first_sales::FirstSale;
use livemap_engine::ingest::{Engine, EngineConfig, Handover};

/// Arcs of a record published longer ago than this are not shown: an edge
/// catching up on the topic shows no stale arcs.
const LIVE_ARCS_MS: i64 = 5_000;
/// An edge's viewers count counts this long after its record was read
/// (it publishes every second).
const VIEWERS_FOR: Duration = Duration::from_secs(5);
/// Edge processes whose counts are kept at once.
const MAX_EDGES: usize = 4_096;
/// How often at most an edge recomputes the trends of its merge.
const REFRESH_EVERY: Duration = Duration::from_millis(500);
/// How many ticks of arcs may wait on an edge. Arcs arrive every tick
/// about as fast as they are shown, so a longer queue would only fill up
/// with jitter and show every arc that much later.
const ARC_BACKLOG_TICKS: usize = 3;

/// What an edge's follower feeds: the engine the snapshot stage reads,
/// and the health behind the snapshot's `stale` flag.
pub struct Edge<'a> {
    pub engine: &'a Mutex<Engine>,
    pub health: &'a SourceHealth,
    /// How old the newest record may be before the edge's totals are
    /// marked stale.
    pub fresh_for: Duration,
    /// Arcs the edge shows per second (arcs per tick over the tick).
    pub arcs_per_second: f64,
}

/// A live record's arcs, and what the edge needs to take its share.
#[derive(Debug)]
struct Arrived {
    aggregator: String,
    published_ms: i64,
    arcs: Vec<livemap_wire::Arc>,
    /// The record's first sales: shops new to its aggregator.
    first_sales: Vec<FirstSale>,
    /// This aggregator's share of the orders of all live aggregators.
    share: f64,
    /// The period the record covers: since the aggregator's previous one.
    period_ms: Option<i64>,
    /// Whether the record moved a state (the merge changed).
    moved: bool,
}

/// How many of a record's `arcs` an edge keeps so that arcs stay a uniform
/// sample of all orders, at the rate the edge shows them: each aggregator
/// samples as many arcs as one process would, so with several, the edge
/// takes from each its `share` of the orders. Taking them all would queue
/// arcs faster than they are shown, and they would show late.
pub fn arc_quota(arcs: usize, share: f64, period_ms: i64, arcs_per_second: f64) -> usize {
    let wanted =
        (arcs_per_second * period_ms.max(0) as f64 / 1000.0 * share.clamp(0.0, 1.0)).ceil();
    arcs.min(wanted as usize)
}

/// `quota` of `arcs`, spread evenly over them (they are in sample order,
/// so every k-th is still a uniform sample).
fn spread<T: Clone>(arcs: &[T], quota: usize) -> Vec<T> {
    if quota >= arcs.len() {
        return arcs.to_vec();
    }
    (0..quota)
        .map(|i| arcs[i * arcs.len() / quota].clone())
        .collect()
}

/// Change records an aggregator's follower keeps undecoded per id before
/// it decodes them: past this it applies them as they come.
const PENDING_BYTES: usize = 16 << 20;

/// The newest state of one aggregator: its last whole state and the
/// change records since, as far as they follow one another.
#[derive(Debug)]
pub struct Partial {
    pub aggregator: String,
    pub instance: u64,
    /// The record the state stands at.
    pub seq: u64,
    pub published_ms: i64,
    pub lineage: u64,
    /// The state, decoded: at once on an edge, which merges every record;
    /// on an aggregator only when a takeover, a restore or a retirement
    /// needs it ([`Partial::engine`]), since it reads every other
    /// aggregator's records but needs them only then. Once decoded, change
    /// records apply to it as they come.
    pub engine: Option<Engine>,
    /// Until decoded: the whole state (and the checkpoint format it is
    /// in) and the change records since, in order.
    pub whole: Vec<u8>,
    pub state_format: u32,
    pub pending: Vec<Vec<u8>>,
    /// A change record did not follow the state held (one was lost, or
    /// could not be read): later ones cannot apply until the next whole
    /// state, and the state stays where it was.
    pub broken: bool,
    /// When this follower read it.
    pub received: Instant,
}

impl Partial {
    /// The state of whole-state record `r`: `engine` if it is decoded
    /// already, else its bytes, decoded on first use.
    fn of(r: PartialRecord, engine: Option<Engine>) -> Partial {
        let whole = if engine.is_none() {
            r.state
        } else {
            Vec::new()
        };
        Partial {
            aggregator: r.aggregator,
            instance: r.instance,
            seq: r.seq,
            published_ms: r.published_ms,
            lineage: r.lineage,
            engine,
            whole,
            state_format: r.state_format,
            pending: Vec::new(),
            broken: false,
            received: Instant::now(),
        }
    }

    /// The state, decoded on first use. `None` (logged) when it cannot
    /// be: the record is then as good as absent.
    fn engine(&mut self, config: &EngineConfig, source: &str) -> Option<&Engine> {
        if self.engine.is_none() {
            let decoded =
                Engine::restore_format(config.clone(), source, &self.whole, self.state_format);
            match decoded {
                Ok(mut engine) => {
                    // The change records since, as far as they apply (one
                    // that does not leaves the state where it was, as on
                    // an edge, until the next whole state).
                    for changes in &self.pending {
                        let applied =
                            engine.apply_changes_format(source, changes, self.state_format, None);
                        if let Err(e) = applied {
                            tracing::error!(aggregator = %self.aggregator, error = %e, "a change record cannot be applied: waiting for the next whole state");
                            self.broken = true;
                            break;
                        }
                    }
                    self.engine = Some(engine);
                    self.whole = Vec::new();
                    self.pending = Vec::new();
                }
                Err(e) => {
                    tracing::error!(aggregator = %self.aggregator, error = %e, "partial state cannot be read");
                    return None;
                }
            }
        }
        self.engine.as_ref()
    }
}

/// A process heard publishing under an aggregator id.
#[derive(Debug, Clone, Copy)]
struct Heard {
    received: Instant,
    /// Only claims so far: the process is still watching whether the id
    /// is taken, and has counted nothing.
    claiming: bool,
    /// When its first claim heard was published, by its own clock.
    first_claim_ms: Option<i64>,
}

/// How long a process heard under an id is remembered.
const HEARD_FOR: Duration = Duration::from_secs(600);

/// How many retired lineages are remembered, to refuse a record that
/// continues one (its counts are already in the retired sum).
const RETIRED_LINEAGES: usize = 4_096;

/// An aggregator's newest state record, for it to restore from.
#[derive(Debug, Clone)]
pub struct Published {
    pub state: Vec<u8>,
    /// The checkpoint format of `state`.
    pub format: u32,
    pub lineage: u64,
    pub published_ms: i64,
}

#[derive(Debug, Default)]
struct Followed {
    latest: BTreeMap<String, Partial>,
    /// Per aggregator, when its newest arcs-only record was published.
    arcs_published: BTreeMap<String, i64>,
    /// Per aggregator, orders per millisecond between its last two records.
    rates: BTreeMap<String, f64>,
    /// Per partition of the topic, the next offset to read.
    positions: HashMap<i32, i64>,
    /// Per aggregator id, the processes (instances) heard under it lately.
    heard: BTreeMap<String, BTreeMap<u64, Heard>>,
    /// Pairs of processes found publishing under one id, reported once.
    conflicts: BTreeSet<(String, u64)>,
    /// The counts of every retired aggregator id, folded into one engine:
    /// what an edge holds for past ids does not grow with their number.
    retired: Option<Engine>,
    /// Per partition of the checkout topic, the furthest a retired id got.
    retired_handovers: BTreeMap<i32, Handover>,
    /// Lineages retired lately (id, lineage), oldest first.
    retired_lineages: VecDeque<(String, u64)>,
    /// Per edge process (instance), its newest viewers count and when it
    /// was read.
    viewers: HashMap<u64, (u64, Instant)>,
    /// The shops whose first sale this edge announced lately, oldest
    /// first (at most [`ANNOUNCED`]).
    announced: VecDeque<u64>,
}

/// How many announced first sales an edge remembers, against two
/// aggregators announcing one shop at once: a few seconds' worth.
const ANNOUNCED: usize = 4_096;

impl Followed {
    /// The process whose records under `aggregator` are merged, if it is
    /// another than `instance` and still alive for a record published at
    /// `published_ms`: heard from within `quiet`, by this follower's clock
    /// and by the records' own.
    fn live_other(
        &self,
        aggregator: &str,
        instance: u64,
        published_ms: i64,
        quiet: Duration,
    ) -> Option<u64> {
        let current = self.latest.get(aggregator)?;
        // A process that began claiming the id after the newest state
        // under it started once that one was gone: its successor, however
        // soon after (its own claim watched the topic; this follower's
        // `quiet` may be longer than the one it waited).
        let claimed_after = self
            .heard
            .get(aggregator)
            .and_then(|instances| instances.get(&instance))
            .and_then(|h| h.first_claim_ms)
            .is_some_and(|claimed| claimed > current.published_ms);
        if claimed_after {
            return None;
        }
        let quiet_ms = i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX);
        let alive = current.received.elapsed() < quiet
            && published_ms.saturating_sub(current.published_ms) < quiet_ms;
        (current.instance != instance && alive).then_some(current.instance)
    }

    fn hear(&mut self, r: &PartialRecord) {
        let now = Instant::now();
        let instances = self.heard.entry(r.aggregator.clone()).or_default();
        instances.retain(|_, h| now.duration_since(h.received) < HEARD_FOR);
        let claiming = r.seq == CLAIM_SEQ;
        let heard = instances.entry(r.instance).or_insert(Heard {
            received: now,
            claiming,
            first_claim_ms: None,
        });
        heard.received = now;
        heard.claiming &= claiming;
        if claiming && heard.first_claim_ms.is_none() {
            heard.first_claim_ms = Some(r.published_ms);
        }
    }
}

impl Followed {
    /// Folds `aggregator`'s newest record into the retired sum and frees
    /// everything kept per id.
    fn fold(&mut self, aggregator: &str, config: &EngineConfig, source: &str) {
        let Some(mut partial) = self.latest.remove(aggregator) else {
            return;
        };
        if let Some(engine) = partial.engine(config, source) {
            self.retired
                .get_or_insert_with(|| Engine::new(config.clone()))
                .absorb(engine);
            for (p, _) in engine.positions() {
                if let Some(h) = engine.handover(p) {
                    let furthest = self.retired_handovers.entry(p).or_insert_with(|| h.clone());
                    if h.next_offset > furthest.next_offset {
                        *furthest = h;
                    }
                }
            }
        }
        if self.retired_lineages.len() == RETIRED_LINEAGES {
            self.retired_lineages.pop_front();
        }
        self.retired_lineages
            .push_back((aggregator.to_owned(), partial.lineage));
        self.rates.remove(aggregator);
        self.arcs_published.remove(aggregator);
        self.heard.remove(aggregator);
        self.conflicts.retain(|(a, _)| a != aggregator);
    }

    /// The merge made anew from every state held and the retired sum:
    /// after a whole state that could not be applied as changes.
    fn merged_anew(&mut self, config: &EngineConfig, source: &str) -> Engine {
        let mut merged = Engine::new(config.clone());
        if let Some(retired) = &self.retired {
            merged.absorb(retired);
        }
        for partial in self.latest.values_mut() {
            if let Some(engine) = partial.engine(config, source) {
                merged.absorb(engine);
            }
        }
        merged
    }

    /// Retires every id whose newest state record was published before
    /// `cutoff_ms`; returns how many.
    fn retire_before(&mut self, cutoff_ms: i64, config: &EngineConfig, source: &str) -> usize {
        let old: Vec<String> = self
            .latest
            .iter()
            .filter(|(_, p)| p.published_ms < cutoff_ms)
            .map(|(a, _)| a.clone())
            .collect();
        for a in &old {
            tracing::info!(aggregator = %a, "aggregator id retired: its counts stay in the retired sum");
            self.fold(a, config, source);
        }
        // Ids only ever heard (claims, arcs) are forgotten in time too.
        let now = Instant::now();
        self.heard.retain(|_, instances| {
            instances.retain(|_, h| now.duration_since(h.received) < HEARD_FOR);
            !instances.is_empty()
        });
        // Arcs come before an aggregator's first state: keep what is still
        // heard, forget the rest.
        let (latest, heard) = (&self.latest, &self.heard);
        self.arcs_published
            .retain(|a, _| latest.contains_key(a) || heard.contains_key(a));
        old.len()
    }

    /// Whether a record of `aggregator` under `lineage` continues a state
    /// that was retired (and so is already in the retired sum).
    fn continues_retired(&self, aggregator: &str, lineage: u64) -> bool {
        !self.latest.contains_key(aggregator)
            && self
                .retired_lineages
                .iter()
                .any(|(a, l)| a == aggregator && *l == lineage)
    }

    /// `aggregator`'s share of the orders of the aggregators that published
    /// within [`LIVE_ARCS_MS`] of `now_ms`; an equal share while rates are
    /// unknown.
    fn share_of(&self, aggregator: &str, now_ms: i64) -> f64 {
        let live: Vec<&String> = self
            .latest
            .iter()
            .filter(|(a, p)| *a != aggregator && now_ms - p.published_ms <= LIVE_ARCS_MS)
            .map(|(a, _)| a)
            .collect();
        let equal = 1.0 / (live.len() + 1) as f64;
        let Some(&mine) = self.rates.get(aggregator) else {
            return equal;
        };
        let mut total = mine;
        for a in live {
            match self.rates.get(a) {
                Some(r) => total += r,
                None => return equal,
            }
        }
        if total > 0.0 {
            mine / total
        } else {
            equal
        }
    }
}

/// What `/metrics` reports about the partial-state topic.
#[derive(Debug, Default)]
pub struct FollowStats {
    pub records: AtomicU64,
    pub rejected: AtomicU64,
    /// Records that carry only arcs.
    pub arcs_records: AtomicU64,
    /// First sales aggregators announced that this edge shows: shops new
    /// to every aggregator.
    pub first_sales: AtomicU64,
    /// First sales announced by one aggregator for a shop another knew.
    pub first_sales_known: AtomicU64,
    pub bytes: AtomicU64,
    /// Newest `published_ms` of any record read.
    pub newest_published_ms: AtomicU64,
    /// Records refused because another process publishes under their
    /// aggregator id (two processes under one id).
    pub conflicts: AtomicU64,
    /// Aggregator ids retired (folded into the retired sum).
    pub retired: AtomicU64,
    /// Records refused because they continue a retired id's state.
    pub retired_refused: AtomicU64,
    /// State records that carried changes (the others carried whole
    /// states).
    pub change_records: AtomicU64,
    /// Whole states decoded: an edge decodes one at start per aggregator,
    /// and again only after a gap.
    pub wholes_decoded: AtomicU64,
    /// Change records that did not follow the state held.
    pub gaps: AtomicU64,
}

/// What the follower's client received from the brokers, as librdkafka
/// counts it (compressed, protocol included): an edge's inbound bytes.
#[derive(Debug, Default)]
pub struct Received {
    bytes: AtomicU64,
}

impl ClientContext for Received {
    fn stats(&self, statistics: Statistics) {
        self.bytes
            .store(statistics.rx_bytes.max(0) as u64, Ordering::Relaxed);
    }
}

impl ConsumerContext for Received {}

pub struct Follower {
    topic: String,
    quiet: Duration,
    retire_after_ms: i64,
    source_id: String,
    engine_config: EngineConfig,
    consumer: BaseConsumer<Received>,
    followed: Mutex<Followed>,
    advanced: Condvar,
    pub stats: FollowStats,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Connects and assigns every partition of the topic from the
    /// beginning. The topic must exist (aggregators create it).
    pub fn connect(
        config: &PartialsConfig,
        engine_config: EngineConfig,
        source_id: String,
    ) -> Result<Arc<Follower>, PartialsError> {
        let consumer: BaseConsumer<Received> = config
            .client_config()
            // For `Received`: what arrives, counted each second.
            .set("statistics.interval.ms", "1000")
            // librdkafka wants a group even for a consumer that only
            // assigns; it never joins it or commits to it.
            .set("group.id", "livemap-partials-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50")
            // Prefetch stays small: a follower that decodes slower than it
            // fetches (a loaded edge catching up) would otherwise queue up
            // to 64 MB of records. A record larger than a fetch still
            // comes whole (the client widens the fetch for it).
            .set("fetch.message.max.bytes", (1 << 20).to_string())
            .set("queued.max.messages.kbytes", "16384")
            .set(
                "receive.message.max.bytes",
                (MAX_RECORD_BYTES * 2).to_string(),
            )
            .create_with_context(Received::default())
            .map_err(|source| PartialsError::Client {
                topic: config.topic.clone(),
                source,
            })?;
        let metadata = consumer
            .fetch_metadata(Some(&config.topic), Duration::from_secs(10))
            .map_err(|source| PartialsError::Metadata {
                topic: config.topic.clone(),
                source,
            })?;
        let mut tpl = TopicPartitionList::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(&config.topic, p.id(), Offset::Beginning)
                    .map_err(|source| PartialsError::Metadata {
                        topic: config.topic.clone(),
                        source,
                    })?;
            }
        }
        if tpl.count() == 0 {
            return Err(PartialsError::CreateTopic {
                topic: config.topic.clone(),
                reason: "the topic has no partitions (is it created?)".into(),
            });
        }
        consumer
            .assign(&tpl)
            .map_err(|source| PartialsError::Metadata {
                topic: config.topic.clone(),
                source,
            })?;
        Ok(Arc::new(Follower {
            topic: config.topic.clone(),
            quiet: config.quiet,
            retire_after_ms: i64::try_from(config.retire_after.as_millis()).unwrap_or(i64::MAX),
            source_id,
            engine_config,
            consumer,
            followed: Mutex::new(Followed::default()),
            advanced: Condvar::new(),
            stats: FollowStats::default(),
        }))
    }

    /// Reads until cancelled. With `edge`, every change is merged into that
    /// engine, arcs of live records are queued on it, and its health is
    /// stale while no aggregator has published for `fresh_for`.
    pub fn run(&self, edge: Option<Edge<'_>>, clock: &dyn Clock, cancel: &CancellationToken) {
        let mut changed = false;
        let mut last_merge = Instant::now();
        while !cancel.is_cancelled() {
            if let Some(edge) = &edge {
                let newest = self.stats.newest_published_ms.load(Ordering::Relaxed) as i64;
                let fresh = clock.now_ms() - newest <= edge.fresh_for.as_millis() as i64;
                edge.health.observe(fresh, Vec::new());
            }
            let mut drained = false;
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    // An edge applies every record to its engine at once;
                    // an aggregator decodes one only when it needs it.
                    let arrived = self.apply(
                        m.partition(),
                        m.offset(),
                        m.payload(),
                        clock.now_ms(),
                        edge.as_ref().map(|e| e.engine),
                    );
                    changed |= arrived.as_ref().is_some_and(|a| a.moved);
                    if let (Some(edge), Some(a)) = (&edge, arrived) {
                        if clock.now_ms() - a.published_ms <= LIVE_ARCS_MS {
                            // A first record covers no known period: one
                            // fresh-period's worth at most.
                            let period = a.period_ms.unwrap_or(1_000);
                            let quota =
                                arc_quota(a.arcs.len(), a.share, period, edge.arcs_per_second);
                            let arcs = spread(&a.arcs, quota);
                            // The follower's lock is taken and let go
                            // before the engine's (the lock order).
                            let firsts = self.first_anywhere(&a.aggregator, a.first_sales);
                            let mut engine = edge.engine.lock();
                            engine.push_arcs(&arcs, ARC_BACKLOG_TICKS);
                            for sale in firsts {
                                engine.queue_first_sale(sale);
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = %self.topic, "partials poll error")
                }
                None => drained = true,
            }
            // The merge is the edge's engine itself, kept change by
            // change; only its trends wait to be recomputed, at most every
            // REFRESH_EVERY (or each second while catching up).
            let due = if drained {
                REFRESH_EVERY
            } else {
                Duration::from_secs(1)
            };
            if changed && last_merge.elapsed() >= due {
                if let Some(edge) = &edge {
                    edge.engine.lock().refresh_trends();
                }
                changed = false;
                last_merge = Instant::now();
            }
        }
    }

    /// Retires the ids whose newest state is `retire_after` older than a
    /// record published at `published_ms` (never believed past this
    /// follower's clock, `now_ms`).
    fn retire(&self, followed: &mut Followed, published_ms: i64, now_ms: i64) {
        let cutoff = published_ms
            .min(now_ms)
            .saturating_sub(self.retire_after_ms);
        let n = followed.retire_before(cutoff, &self.engine_config, &self.source_id);
        self.stats.retired.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Takes one record: returns its arcs and their share if it was good.
    /// `merge` (an edge's engine): keep every state decoded and the merge
    /// in it up to date.
    fn apply(
        &self,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
        now_ms: i64,
        merge: Option<&Mutex<Engine>>,
    ) -> Option<Arrived> {
        if let Some(bytes) = payload.filter(|b| super::ViewersRecord::is_one(b)) {
            self.take_viewers(partition, offset, bytes);
            return None;
        }
        let decoded = payload
            .ok_or(livemap_engine::checkpoint::CheckpointError::Payload(
                "empty record",
            ))
            .and_then(PartialRecord::decode);
        let r = match decoded {
            Ok(r) if r.state.is_empty() => {
                return Some(self.apply_arcs(partition, offset, r, now_ms))
            }
            Ok(r) => r,
            Err(e) => {
                self.followed.lock().positions.insert(partition, offset + 1);
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, partition, offset, topic = %self.topic, "partial record refused");
                self.advanced.notify_all();
                return None;
            }
        };
        let mut followed = self.followed.lock();
        followed.positions.insert(partition, offset + 1);
        let result = self.take_state(
            &mut followed,
            r,
            payload.map_or(0, <[u8]>::len),
            now_ms,
            merge,
        );
        drop(followed);
        self.advanced.notify_all();
        result
    }

    /// Takes a state record (whole or changes) that decoded.
    fn take_state(
        &self,
        followed: &mut Followed,
        mut r: PartialRecord,
        size: usize,
        now_ms: i64,
        merge: Option<&Mutex<Engine>>,
    ) -> Option<Arrived> {
        self.retire(followed, r.published_ms, now_ms);
        if followed.continues_retired(&r.aggregator, r.lineage) {
            self.stats.retired_refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                aggregator = %r.aggregator,
                "a record continues a retired aggregator's state (it published nothing for --retire-after-secs): not merged, its counts are in the retired sum; restart that aggregator"
            );
            return None;
        }
        followed.hear(&r);
        if self.twin(followed, &r) {
            self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // A new lineage started from zero: the old one's counts must
        // stay, in the retired sum.
        if followed
            .latest
            .get(&r.aggregator)
            .is_some_and(|p| p.lineage != r.lineage)
        {
            tracing::info!(aggregator = %r.aggregator, "aggregator restarted from zero: its earlier counts go to the retired sum");
            followed.fold(&r.aggregator, &self.engine_config, &self.source_id);
            self.stats.retired.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(size as u64, Ordering::Relaxed);
        self.stats
            .newest_published_ms
            .fetch_max(r.published_ms.max(0) as u64, Ordering::Relaxed);
        let previous = followed.latest.get(&r.aggregator).map(|p| {
            (
                p.published_ms,
                p.engine.as_ref().map(|e| e.counts().accepted),
            )
        });
        let arcs = std::mem::take(&mut r.arcs);
        let first_sales = std::mem::take(&mut r.first_sales);
        let published_ms = r.published_ms;
        let aggregator = r.aggregator.clone();
        let advanced = match r.kind {
            Kind::Whole => self.take_whole(followed, r, merge),
            Kind::Changes => {
                self.stats.change_records.fetch_add(1, Ordering::Relaxed);
                self.take_changes(followed, r, merge)
            }
        };
        let mut period_ms = None;
        if let (true, Some((prev_ms, Some(before)))) = (advanced, previous) {
            let after = followed
                .latest
                .get(&aggregator)
                .and_then(|p| p.engine.as_ref())
                .map(|e| e.counts().accepted);
            let dt = published_ms - prev_ms;
            if let (Some(after), true) = (after, dt > 0) {
                let orders = after.saturating_sub(before);
                followed
                    .rates
                    .insert(aggregator.clone(), orders as f64 / dt as f64);
                period_ms = Some(dt);
            }
        }
        // The share as of this record's rate, just taken.
        let share = followed.share_of(&aggregator, published_ms);
        Some(Arrived {
            aggregator,
            published_ms,
            arcs,
            first_sales,
            share,
            period_ms,
            moved: advanced,
        })
    }

    /// Takes a whole state. A reader that holds the state of the same
    /// moment (it applied the change record sent with it) has nothing to
    /// do; one that does not (it starts, or lost a change record) starts
    /// over from it. Returns whether the held state moved.
    fn take_whole(
        &self,
        followed: &mut Followed,
        r: PartialRecord,
        merge: Option<&Mutex<Engine>>,
    ) -> bool {
        let (config, source) = (&self.engine_config, &self.source_id);
        let edge = merge.is_some();
        if let Some(p) = followed.latest.get_mut(&r.aggregator) {
            let in_step = p.instance == r.instance && p.seq == r.seq && !p.broken;
            if in_step && (edge || p.engine.is_some()) {
                p.published_ms = r.published_ms;
                p.received = Instant::now();
                return false;
            }
            if p.instance == r.instance && r.seq < p.seq {
                // Older than what is held of the same process: it would
                // move the state back.
                return false;
            }
        }
        let Some(merge) = merge else {
            // An aggregator decodes only when it needs the state; a newer
            // whole state leaves nothing pending.
            followed
                .latest
                .insert(r.aggregator.clone(), Partial::of(r, None));
            return true;
        };
        let engine = match Engine::restore_format(config.clone(), source, &r.state, r.state_format)
        {
            Ok(engine) => engine,
            Err(e) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(aggregator = %r.aggregator, error = %e, "partial state cannot be read");
                return false;
            }
        };
        self.stats.wholes_decoded.fetch_add(1, Ordering::Relaxed);
        let mut merged = merge.lock();
        let held = followed
            .latest
            .get_mut(&r.aggregator)
            .and_then(|p| p.engine.as_mut());
        let rebuild = match held {
            // What the merge holds of this aggregator moves to the new
            // state, as if one change record carried everything.
            Some(held) => {
                let changes = engine.export_changes(held, source);
                held.apply_changes(source, &changes, Some(&mut merged))
                    .is_err()
            }
            None => {
                merged.absorb(&engine);
                false
            }
        };
        drop(merged);
        followed
            .latest
            .insert(r.aggregator.clone(), Partial::of(r, Some(engine)));
        if rebuild {
            let anew = followed.merged_anew(config, source);
            merge.lock().replace_counts(anew);
        }
        true
    }

    /// Takes a change record if it follows the state held; returns
    /// whether it did. One that does not (a record was lost, or this
    /// reader started after it) waits for the next whole state.
    fn take_changes(
        &self,
        followed: &mut Followed,
        r: PartialRecord,
        merge: Option<&Mutex<Engine>>,
    ) -> bool {
        let (config, source) = (&self.engine_config, &self.source_id);
        let Some(p) = followed.latest.get_mut(&r.aggregator) else {
            // Before this reader's first whole state of the id.
            return false;
        };
        if p.instance != r.instance || r.seq <= p.seq {
            // An earlier process's or an earlier record (a catch-up reads
            // the records compaction kept from before the whole state).
            return false;
        }
        if p.broken || p.seq != r.prev_seq {
            if !p.broken {
                p.broken = true;
                self.stats.gaps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(aggregator = %r.aggregator, held = p.seq, follows = r.prev_seq, "a change record does not follow the state held: waiting for the next whole state");
            }
            return false;
        }
        // A record that cannot be read applies not at all (the engine
        // checks it whole first): the state held and the merge stay as
        // they were, and the next whole state takes over.
        let applied = match (p.engine.as_mut(), merge) {
            (Some(held), Some(merge)) => {
                held.apply_changes_format(source, &r.state, r.state_format, Some(&mut merge.lock()))
            }
            (Some(held), None) => held.apply_changes_format(source, &r.state, r.state_format, None),
            (None, _) => {
                p.pending.push(r.state);
                let pending: usize = p.pending.iter().map(Vec::len).sum();
                if pending > PENDING_BYTES {
                    // Decoded now, so that what is held stays bounded.
                    let _ = p.engine(config, source);
                }
                Ok(())
            }
        };
        if let Err(e) = applied {
            p.broken = true;
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::error!(aggregator = %r.aggregator, error = %e, "a change record cannot be applied: waiting for the next whole state");
            return false;
        }
        p.seq = r.seq;
        p.published_ms = r.published_ms;
        p.received = Instant::now();
        true
    }

    /// Waits until every record in the topic now has been read, so that
    /// what follows sees the newest state of every aggregator. `false` if
    /// that took longer than `patience` or the brokers could not say.
    pub fn sync(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let Ok(tpl) = self.consumer.assignment() else {
            return false;
        };
        let mut highs = Vec::new();
        for e in tpl.elements() {
            match self
                .consumer
                .fetch_watermarks(&self.topic, e.partition(), patience)
            {
                Ok((_, high)) => highs.push((e.partition(), high)),
                Err(e) => {
                    tracing::warn!(error = %e, topic = %self.topic, "cannot read the partials' end");
                    return false;
                }
            }
        }
        let mut followed = self.followed.lock();
        loop {
            let done = highs
                .iter()
                .all(|(p, high)| followed.positions.get(p).copied().unwrap_or(0) >= *high);
            if done {
                return true;
            }
            if self
                .advanced
                .wait_until(&mut followed, deadline)
                .timed_out()
            {
                return false;
            }
        }
    }

    /// The furthest any aggregator's record got in partition `p` of the
    /// checkout topic, retired ones included.
    pub fn handover(&self, p: i32) -> Option<Handover> {
        let mut followed = self.followed.lock();
        let followed = &mut *followed;
        let (config, source) = (&self.engine_config, &self.source_id);
        followed
            .latest
            .values_mut()
            .filter_map(|partial| partial.engine(config, source)?.handover(p))
            .chain(followed.retired_handovers.get(&p).cloned())
            .max_by_key(|h| h.next_offset)
    }

    /// Whether `r` comes from a second process under an id whose first
    /// is alive: one heard from within [`PartialsConfig::quiet`], by this
    /// follower's clock and by the records' own. A process that took an
    /// id over waited that long after the last record under it (its
    /// claim), so it is never taken for a twin. A twin's records are not
    /// merged: two processes' counts under one id would replace each
    /// other, and the totals jump.
    fn twin(&self, followed: &mut Followed, r: &PartialRecord) -> bool {
        let Some(first) =
            followed.live_other(&r.aggregator, r.instance, r.published_ms, self.quiet)
        else {
            return false;
        };
        if followed
            .conflicts
            .insert((r.aggregator.clone(), r.instance))
        {
            tracing::error!(
                aggregator = %r.aggregator,
                first,
                second = r.instance,
                "two processes publish under one aggregator id: the second's records are not merged (give each aggregator its own --aggregator-id)"
            );
        }
        true
    }

    /// Processes other than `me` heard under `aggregator` since `since`,
    /// and whether each has only claimed the id so far.
    pub fn others_since(&self, aggregator: &str, me: u64, since: Instant) -> Vec<(u64, bool)> {
        self.followed
            .lock()
            .heard
            .get(aggregator)
            .map(|instances| {
                instances
                    .iter()
                    .filter(|(i, h)| **i != me && h.received >= since)
                    .map(|(i, h)| (*i, h.claiming))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes a record that carries only arcs: it changes no state.
    fn apply_arcs(&self, partition: i32, offset: i64, r: PartialRecord, now_ms: i64) -> Arrived {
        self.stats.arcs_records.fetch_add(1, Ordering::Relaxed);
        let mut followed = self.followed.lock();
        followed.positions.insert(partition, offset + 1);
        self.retire(&mut followed, r.published_ms, now_ms);
        followed.hear(&r);
        if r.seq == CLAIM_SEQ {
            // A claim only says a process is starting under the id.
            drop(followed);
            self.advanced.notify_all();
            return Arrived {
                aggregator: r.aggregator,
                published_ms: r.published_ms,
                arcs: Vec::new(),
                first_sales: Vec::new(),
                share: 0.0,
                period_ms: None,
                moved: false,
            };
        }
        let period_ms = followed
            .arcs_published
            .insert(r.aggregator.clone(), r.published_ms)
            .map(|before| r.published_ms - before)
            .filter(|&dt| dt > 0);
        let share = followed.share_of(&r.aggregator, r.published_ms);
        drop(followed);
        self.advanced.notify_all();
        Arrived {
            aggregator: r.aggregator,
            published_ms: r.published_ms,
            arcs: r.arcs,
            first_sales: r.first_sales,
            share,
            period_ms,
            moved: false,
        }
    }

    /// Of the first sales `aggregator` announced (shops new to it), those
    /// that are new to every aggregator: no other state this follower
    /// holds, and no retired one, knows the shop, and no other
    /// aggregator announced it lately (two may see a shop's first two
    /// sales at once). Counted in `livemap_partials_first_sales_total`.
    fn first_anywhere(&self, aggregator: &str, sales: Vec<FirstSale>) -> Vec<FirstSale> {
        if sales.is_empty() {
            return sales;
        }
        let mut followed = self.followed.lock();
        let mut firsts = Vec::with_capacity(sales.len());
        for sale in sales {
            let known_elsewhere = followed
                .latest
                .iter()
                .filter(|(id, _)| id.as_str() != aggregator)
                .filter_map(|(_, p)| p.engine.as_ref())
                .chain(followed.retired.as_ref())
                .any(|e| e.has_sold(sale.shop_hash));
            if known_elsewhere || followed.announced.contains(&sale.shop_hash) {
                self.stats.first_sales_known.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if followed.announced.len() == ANNOUNCED {
                followed.announced.pop_front();
            }
            followed.announced.push_back(sale.shop_hash);
            self.stats.first_sales.fetch_add(1, Ordering::Relaxed);
            firsts.push(sale);
        }
        firsts
    }

    /// The state `aggregator` last published, unless the id is retired.
    pub fn state_of(&self, aggregator: &str) -> Option<Published> {
        let mut followed = self.followed.lock();
        let p = followed.latest.get_mut(aggregator)?;
        let (lineage, published_ms) = (p.lineage, p.published_ms);
        let state = p
            .engine(&self.engine_config, &self.source_id)?
            .export_view(&self.source_id);
        Some(Published {
            state,
            format: livemap_engine::checkpoint::FORMAT_VERSION,
            lineage,
            published_ms,
        })
    }

    /// Keeps an edge's viewers count.
    fn take_viewers(&self, partition: i32, offset: i64, bytes: &[u8]) {
        let mut followed = self.followed.lock();
        followed.positions.insert(partition, offset + 1);
        match super::ViewersRecord::decode(bytes) {
            Ok(v) => {
                let now = Instant::now();
                let viewers = &mut followed.viewers;
                viewers.retain(|_, (_, at)| now.duration_since(*at) < VIEWERS_FOR);
                if viewers.len() < MAX_EDGES || viewers.contains_key(&v.instance) {
                    viewers.insert(v.instance, (v.viewers, now));
                }
            }
            Err(e) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, partition, offset, "viewers record refused");
            }
        }
        drop(followed);
        self.advanced.notify_all();
    }

    /// The browsers the other edges serve, as their newest records say
    /// (those read within the last few seconds): `me` is this edge's own
    /// instance, whose live count the caller adds.
    pub fn viewers_elsewhere(&self, me: u64) -> u64 {
        let now = Instant::now();
        self.followed
            .lock()
            .viewers
            .iter()
            .filter(|(instance, (_, at))| **instance != me && now.duration_since(*at) < VIEWERS_FOR)
            .map(|(_, (n, _))| *n)
            .sum()
    }

    /// Bytes received from the brokers so far (updated each second).
    pub fn received_bytes(&self) -> u64 {
        self.consumer.context().bytes.load(Ordering::Relaxed)
    }

    /// How many aggregator ids this follower holds a state for.
    pub fn held(&self) -> usize {
        self.followed.lock().latest.len()
    }

    /// Aggregators seen, with their newest record's sequence and age.
    pub fn aggregators(&self) -> Vec<(String, u64, u64, i64)> {
        self.followed
            .lock()
            .latest
            .values()
            .map(|p| (p.aggregator.clone(), p.instance, p.seq, p.published_ms))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "kafka:checkouts.livemap-by-id";

    fn partial(aggregator: &str, published_ms: i64) -> Partial {
        Partial {
            aggregator: aggregator.to_owned(),
            instance: 1,
            seq: 1,
            published_ms,
            lineage: 1,
            engine: Some(Engine::new(EngineConfig::default())),
            whole: Vec::new(),
            state_format: livemap_engine::checkpoint::FORMAT_VERSION,
            pending: Vec::new(),
            broken: false,
            received: Instant::now(),
        }
    }

    #[test]
    fn a_second_process_under_a_live_id_is_a_twin_and_a_successor_is_not() {
        let quiet = Duration::from_secs(3);
        let mut f = Followed::default();
        f.latest.insert("a".into(), partial("a", 10_000));
        // The same process: never a twin.
        assert_eq!(f.live_other("a", 1, 11_000, quiet), None);
        // Another process while the first publishes: a twin.
        assert_eq!(f.live_other("a", 2, 11_000, quiet), Some(1));
        // Another process whose record comes a claim's wait after the
        // first's last (read later, in a catch-up): its successor.
        assert_eq!(f.live_other("a", 2, 13_000, quiet), None);
        // The first went quiet by this follower's clock: a successor too.
        if let Some(p) = f.latest.get_mut("a") {
            p.received = Instant::now() - quiet;
        }
        assert_eq!(f.live_other("a", 2, 11_000, quiet), None);
        // An id never seen: no one to conflict with.
        assert_eq!(f.live_other("b", 2, 11_000, quiet), None);
        // Read in a catch-up (everything just received): a process that
        // began claiming after the newest state under the id is its
        // successor, even sooner than this follower's `quiet` (it waited
        // its own); one that claimed before that state is a twin.
        if let Some(p) = f.latest.get_mut("a") {
            p.received = Instant::now();
        }
        let claim = |instance: u64, published_ms: i64| PartialRecord {
            aggregator: "a".into(),
            instance,
            seq: CLAIM_SEQ,
            published_ms,
            ..PartialRecord::default()
        };
        f.hear(&claim(3, 10_100));
        assert_eq!(f.live_other("a", 3, 12_000, quiet), None, "a successor");
        f.hear(&claim(4, 9_000));
        assert_eq!(f.live_other("a", 4, 12_000, quiet), Some(1), "a twin");
    }

    /// A partial of `orders` demo orders counted from partition 0 up to
    /// offset `orders`.
    fn counted(aggregator: &str, published_ms: i64, lineage: u64, orders: i64) -> Partial {
        let mut g = livemap_events::demo::Generator::new(lineage, Default::default());
        let mut engine = Engine::new(EngineConfig::default());
        engine.assign(&[(0, None)], 1);
        for i in 0..orders {
            let position = crate::source::Position {
                partition: 0,
                offset: i,
                generation: 1,
            };
            engine.ingest(
                Some(&g.checkout(published_ms)),
                Some(position),
                published_ms,
            );
        }
        Partial {
            lineage,
            engine: Some(engine),
            ..partial(aggregator, published_ms)
        }
    }

    #[test]
    fn past_ids_are_retired_into_one_sum_and_memory_does_not_grow_with_them() {
        let config = EngineConfig::default();
        let mut f = Followed::default();
        let retire_after = 10_000;
        // A rollout every second for 200 seconds: each id publishes once,
        // with 3 orders, then never again.
        for i in 0..200i64 {
            let at = 1_795_788_000_000 + i * 1_000;
            f.retire_before(at - retire_after, &config, SOURCE);
            let id = format!("agg-{i}");
            f.hear(&PartialRecord {
                aggregator: id.clone(),
                instance: i as u64,
                published_ms: at,
                ..PartialRecord::default()
            });
            f.latest
                .insert(id, counted(&format!("agg-{i}"), at, i as u64 + 1, 3));
            assert!(f.latest.len() <= 11, "{} held at {i}", f.latest.len());
            assert!(f.heard.len() <= 11 + 1, "{} heard at {i}", f.heard.len());
            assert!(f.rates.len() <= 11);
        }
        let mut merged = Engine::new(config.clone());
        merged.absorb(f.retired.as_ref().expect("a retired sum"));
        for p in f.latest.values() {
            merged.absorb(p.engine.as_ref().expect("decoded"));
        }
        assert_eq!(merged.aggregate().orders, 600, "every id's counts stay");
        assert!(f.retired_lineages.len() <= RETIRED_LINEAGES);
        // A retired id's record that continues its state is recognised;
        // a new lineage under it is not.
        assert!(f.continues_retired("agg-0", 1));
        assert!(!f.continues_retired("agg-0", 12_345));
        // The furthest a retired id got in a partition is kept.
        assert_eq!(f.retired_handovers.get(&0).map(|h| h.next_offset), Some(3));
    }

    #[test]
    fn a_restart_from_zero_folds_the_old_lineage_and_keeps_its_counts() {
        let config = EngineConfig::default();
        let mut f = Followed::default();
        f.latest.insert("a".into(), counted("a", 10_000, 1, 5));
        f.fold("a", &config, SOURCE);
        f.latest.insert("a".into(), counted("a", 11_000, 2, 2));
        let total = f.retired.as_ref().map_or(0, |r| r.aggregate().orders)
            + f.latest
                .values()
                .map(|p| p.engine.as_ref().map_or(0, |e| e.aggregate().orders))
                .sum::<u64>();
        assert_eq!(total, 7);
        assert!(!f.continues_retired("a", 1), "the id is live again");
    }

    #[test]
    fn an_aggregators_follower_decodes_a_record_only_when_it_needs_it() {
        let config = EngineConfig::default();
        let counted = counted("a", 10_000, 1, 4);
        let state = counted
            .engine
            .as_ref()
            .expect("decoded")
            .export_view(SOURCE);
        let mut lazy = Partial {
            engine: None,
            whole: state,
            ..partial("a", 10_000)
        };
        let copy = lazy_copy(&lazy);
        let engine = lazy.engine(&config, SOURCE).expect("decodes on first use");
        assert_eq!(engine.aggregate().orders, 4);
        assert_eq!(engine.handover(0).map(|h| h.next_offset), Some(4));
        let mut broken = Partial {
            engine: None,
            whole: vec![1, 2, 3],
            ..partial("b", 10_000)
        };
        assert!(
            broken.engine(&config, SOURCE).is_none(),
            "logged, as if absent"
        );
        // A retirement decodes what it folds.
        let mut f = Followed::default();
        f.latest.insert("a".into(), copy);
        f.fold("a", &config, SOURCE);
        assert_eq!(f.retired.as_ref().map(|r| r.aggregate().orders), Some(4));
        assert_eq!(f.retired_handovers.get(&0).map(|h| h.next_offset), Some(4));
    }

    fn lazy_copy(p: &Partial) -> Partial {
        Partial {
            engine: None,
            whole: p.whole.clone(),
            ..partial(&p.aggregator, p.published_ms)
        }
    }

    #[test]
    fn one_aggregator_keeps_every_arc_of_a_period() {
        // 40 arcs a tick of 100 ms: a 1 s record carries 400.
        assert_eq!(arc_quota(400, 1.0, 1_000, 400.0), 400);
        assert_eq!(arc_quota(400, 1.0, 999, 400.0), 400);
        assert_eq!(arc_quota(120, 1.0, 1_000, 400.0), 120, "a quiet second");
    }

    #[test]
    fn several_aggregators_give_arcs_by_their_share_of_orders() {
        let mut f = Followed::default();
        f.latest.insert("a".into(), partial("a", 10_000));
        f.latest.insert("b".into(), partial("b", 10_000));
        f.latest.insert("gone".into(), partial("gone", 1_000));
        assert_eq!(f.share_of("a", 10_000), 0.5, "rates unknown: equal");
        f.rates.insert("a".into(), 3.0);
        f.rates.insert("b".into(), 1.0);
        f.rates.insert("gone".into(), 100.0);
        assert_eq!(f.share_of("a", 10_000), 0.75);
        assert_eq!(f.share_of("b", 10_000), 0.25);
        assert_eq!(arc_quota(400, 0.75, 1_000, 400.0), 300);
        assert_eq!(arc_quota(400, 0.25, 1_000, 400.0), 100);
        // A newcomer with no rate yet shares equally with the live two.
        assert!((f.share_of("new", 10_000) - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_quota_is_spread_over_the_sample() {
        let arcs: Vec<u32> = (0..10).collect();
        assert_eq!(spread(&arcs, 5), vec![0, 2, 4, 6, 8]);
        assert_eq!(spread(&arcs, 20), arcs);
        assert!(spread(&arcs, 0).is_empty());
    }
}
