//! The live sales map server as a library: `main` only parses flags and
//! calls [`run`], so tests start the real thing on a port-0 listener.
//!
//! The data path, one module per stage:
//! [`source`] → the engine (`livemap_engine`: decode, de-duplicate,
//! aggregate, sample arcs) → [`snapshot`] → [`encode`] → [`fanout`];
//! [`persist`] checkpoints the engine, [`partials`] carries it between
//! aggregators and edges.
//! `ARCHITECTURE.md` at the repository root has the map and invariants.

pub mod clock;
pub mod config;
pub mod encode;
pub mod http;
pub mod kafka;
pub mod persist;
pub mod snapshot;
pub mod source;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
pub use crate::config::{Args, Config, Role};
use crate::encode::Frame;
use crate::http::metrics::{MetricsSources, TickStats};
use crate::http::{admin, fanout};
use crate::kafka::partials::follow::Follower;
use crate::kafka::partials::publish::Publisher;
use crate::kafka::partials::{PartialsConfig, PartialsError};
use crate::kafka::router::{Router, RouterError, RouterStats};
use crate::kafka::source::{KafkaConfig, KafkaSource, KafkaSourceError};
use crate::persist::{Checkpointer, Store};
use crate::snapshot::Snapshotter;
use crate::source::{Batch, SourceHealth, CHANNEL_BATCHES};
use livemap_engine::checkpoint::{CheckpointError, StateDir};
use livemap_engine::ingest::Engine;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
    #[error("a pipeline thread panicked: {0}")]
    Thread(&'static str),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Kafka(#[from] KafkaSourceError),
    #[error(transparent)]
    Partials(#[from] PartialsError),
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("the partial-state topic could not be read to its end: not starting, lest this aggregator's record be overwritten")]
    PartialsBehind,
    #[error("aggregator id {0:?} is in use: another live process publishes under it (give each aggregator its own --aggregator-id)")]
    AggregatorIdInUse(String),
}

/// The sockets the server answers on: the public one (page, streams, API)
/// and the operator's admin one (metrics, health), if any.
#[derive(Debug)]
pub struct Listeners {
    pub public: TcpListener,
    pub admin: Option<TcpListener>,
}

/// Runs the server until `shutdown` completes, then drains: streams are
/// closed, the source stops, the pipeline finishes, and a Kafka source
/// writes a last checkpoint.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_with_clock(listeners, config, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with a clock of the caller's choosing.
pub async fn run_with_clock(
    listeners: Listeners,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let cancel = CancellationToken::new();
    // If this future is dropped rather than shut down (its runtime went
    // away), the pipeline threads must still stop.
    let _stop_threads = cancel.clone().drop_guard();
    if let Some(partials) = &config.partials {
        crate::kafka::partials::publish::ensure_topic(partials).await?;
    }
    let follower = match &config.partials {
        Some(partials) => Some(start_follower(partials, &config, &clock, &cancel).await?),
        None => None,
    };
    let (engine, health, checkpointer) = restore(&config, &clock, follower.as_ref()).await?;

    // Source → engine: a bounded channel of batches. An edge has no source:
    // its follower merges the aggregators' states into the engine.
    let (tx, rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    // An aggregator first re-keys its share of the checkouts by event id
    // (the router), then counts its share of the by-id topic.
    let router = match (&config.kafka, config.role) {
        (Some(kafka), Role::Aggregator) => Some(start_router(kafka, &config, &cancel).await?),
        _ => None,
    };
    let source_and_kafka = match (counted(&config), config.role) {
        (_, Role::Edge) => {
            drop(tx);
            None
        }
        (Some(kafka), Role::All | Role::Aggregator) => {
            let src = KafkaSource::connect(
                &kafka,
                engine.clone(),
                checkpointer.clone(),
                follower.clone().filter(|_| config.role == Role::Aggregator),
                health.clone(),
                clock.clone(),
            )?;
            let handle = src.handle();
            let every = match config.role {
                Role::Aggregator => config.publish_every,
                Role::All | Role::Edge => config.checkpoint_every,
            };
            let cancel = cancel.clone();
            let thread = std::thread::Builder::new()
                .name("livemap-kafka".into())
                .spawn(move || src.run(tx, cancel, every))?;
            Some((thread, Some(handle)))
        }
        (None, Role::All | Role::Aggregator) => {
            let demo = source::demo::DemoConfig {
                events_per_sec: config.demo_rate,
                seed: config.demo_seed,
                backfill: config.demo_backfill,
            };
            let (clock, cancel) = (clock.clone(), cancel.clone());
            let thread = std::thread::Builder::new()
                .name("livemap-source".into())
                .spawn(move || source::demo::run(demo, clock, tx, cancel))?;
            Some((thread, None))
        }
    };
    let ingest = {
        let (engine, clock) = (engine.clone(), clock.clone());
        std::thread::Builder::new()
            .name("livemap-ingest".into())
            .spawn(move || ingest_loop(rx, &engine, clock.as_ref()))?
    };
    if let (Some(follower), Role::Edge) = (&follower, config.role) {
        let (reader, merged_into, edge_health, edge_clock, edge_cancel) = (
            follower.clone(),
            engine.clone(),
            health.clone(),
            clock.clone(),
            cancel.clone(),
        );
        // Stale once no aggregator has published for a few publish periods.
        let fresh_for = (config.publish_every * 5).max(std::time::Duration::from_secs(5));
        let arcs_per_second = config.engine.arcs_per_tick as f64 / config.tick.as_secs_f64();
        std::thread::Builder::new()
            .name("livemap-partials".into())
            .spawn(move || {
                let edge = crate::kafka::partials::follow::Edge {
                    engine: &merged_into,
                    health: &edge_health,
                    fresh_for,
                    arcs_per_second,
                };
                reader.run(Some(edge), edge_clock.as_ref(), &edge_cancel);
            })?;
        // Catch up before the first browser sees a total.
        let syncing = follower.clone();
        let synced = tokio::task::spawn_blocking(move || syncing.sync(PARTIALS_PATIENCE))
            .await
            .unwrap_or(false);
        if !synced {
            tracing::warn!("partial states not read to the end at start; serving what there is");
        }
        // The first frame shows what was read, not an empty engine.
        engine.lock().replace_counts(follower.merged());
    }

    // Built only now, so that the first frame any client gets already
    // shows the restored (or, on an edge, the merged) totals.
    let mut snapshotter = Snapshotter::new(clock.now_ms(), config.tick.as_millis() as u32);
    let first = Frame::encode(
        &snapshotter.build(&mut engine.lock(), clock.now_ms(), health.stale()),
        None,
    );
    let (frames_tx, frames_rx) = watch::channel(Arc::new(first));

    // An aggregator's arcs go out every tick, in small records of their
    // own, so that an edge shows an order as soon as one process would; the
    // state follows once per publish.
    if let Some(publisher) = checkpointer.as_ref().and_then(|c| c.publisher()) {
        let (publisher, engine, clock) = (publisher.clone(), engine.clone(), clock.clone());
        every(
            tokio::time::Instant::now(),
            config.tick,
            cancel.clone(),
            move || {
                let arcs = engine.lock().take_arcs();
                if !arcs.is_empty() {
                    if let Err(e) = publisher.publish_arcs(arcs, clock.now_ms()) {
                        tracing::warn!(error = %e, "arcs not published");
                    }
                }
            },
        );
    }

    // Engine → snapshot → encode → every client, once per tick. An
    // aggregator serves no browser.
    let ticks = Arc::new(TickStats::default());
    let ticker = (config.role != Role::Aggregator).then(|| {
        let (engine, clock, health, ticks) =
            (engine.clone(), clock.clone(), health.clone(), ticks.clone());
        // The first frame is already published: the next is one tick away.
        let start = tokio::time::Instant::now() + config.tick;
        every(start, config.tick, cancel.clone(), move || {
            let started = Instant::now();
            let built = snapshotter.build(&mut engine.lock(), clock.now_ms(), health.stale());
            let encoding = Instant::now();
            let previous = frames_tx.borrow().clone();
            let frame = Frame::encode(&built, Some(&previous));
            ticks.record(started, encoding, &frame);
            frames_tx.send_replace(Arc::new(frame));
        })
    });

    let admission = fanout::Admission::new(config.limits.clone());
    if !fanout::wasm_embedded() {
        tracing::warn!(
            "this build has no globe: run scripts/build-wasm.sh, then rebuild the server"
        );
    }
    let admin = listeners.admin.map(|listener| {
        let app = admin::router(MetricsSources {
            engine: engine.clone(),
            health: health.clone(),
            checkpointer: checkpointer.clone(),
            ticks: ticks.clone(),
            clock: clock.clone(),
            admission: admission.clone(),
            follower: follower.clone(),
            router: router.as_ref().map(|(_, stats)| stats.clone()),
        });
        let cancel = cancel.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await
        })
    });
    let app = match config.role {
        Role::Aggregator => aggregator_router(),
        Role::All | Role::Edge => fanout::router(fanout::AppState {
            frames: frames_rx,
            poll_timeout: config.poll_timeout,
            write_timeout: config.write_timeout,
            admission: admission.clone(),
            shutdown: cancel.clone(),
        }),
    };
    let stop = cancel.clone();
    // The socket-level cut-off is the backstop for every transport; the
    // WebSocket's own, shorter timeout usually acts first and is counted
    // per transport.
    let socket_write_timeout = config.write_timeout + std::time::Duration::from_secs(2);
    let serve = fanout::ServeConfig {
        header_timeout: config.header_timeout,
        write_timeout: socket_write_timeout,
        // Every connection left at shutdown ends within one of these: a
        // response being written by the write cut-off, a head being read
        // by the header timeout, a stream on the cancel token.
        drain: socket_write_timeout.max(config.header_timeout) + std::time::Duration::from_secs(1),
    };
    fanout::serve(
        fanout::PublicListener::new(listeners.public),
        app,
        admission,
        serve,
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        },
    )
    .await;
    cancel.cancel();
    // A last record need not wait long for a broker that may be away.
    if let Some(publisher) = checkpointer.as_ref().and_then(|c| c.publisher()) {
        publisher.hurry();
    }
    if let Some(ticker) = ticker {
        let _ = ticker.await;
    }
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    let joined = tokio::task::spawn_blocking(move || {
        let (source, kafka) = match source_and_kafka {
            Some((thread, kafka)) => (
                thread.join().map_err(|_| ServerError::Thread("source")),
                kafka,
            ),
            None => (Ok(()), None),
        };
        let ingest = ingest.join().map_err(|_| ServerError::Thread("ingest"));
        let router = match router {
            Some((thread, _)) => thread.join().map_err(|_| ServerError::Thread("router")),
            None => Ok(()),
        };
        source.and(ingest).and(router)?;
        // Everything read has been counted: record it, and where it ends.
        // Without it nothing is lost (the last checkpoint is consistent,
        // and what was read since is read again), so the shutdown is
        // still clean: a broker that is away must not fail a deploy.
        if let Some(kafka) = kafka {
            if let Err(e) = kafka.final_checkpoint() {
                tracing::warn!(error = %e, "no last checkpoint: the next start resumes from the one before");
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| ServerError::Thread("join"))?;
    joined
}

/// Runs `f` every `period` from `start` until `cancel`; a tick that comes
/// late is skipped, not made up.
fn every(
    start: tokio::time::Instant,
    period: std::time::Duration,
    cancel: CancellationToken,
    mut f: impl FnMut() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut interval = tokio::time::interval_at(start, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = cancel.cancelled() => break,
            }
            f();
        }
    })
}

/// Makes sure no other live process publishes under aggregator id `id`:
/// two would overwrite each other's record, and the counts in the
/// overwritten one would be lost. Before it counts anything, a starting
/// aggregator claims the id: it says so on the partial-state topic every
/// quarter second for [`PartialsConfig::quiet`] and listens. It refuses to
/// start if it hears a process that is past its claim (publishing state
/// or arcs), or another claimant with a lower instance number: of two
/// processes started together under one id, exactly one goes on.
async fn claim_id(
    follower: &Arc<Follower>,
    publisher: &Publisher,
    id: &str,
    quiet: std::time::Duration,
    clock: &Arc<dyn Clock>,
) -> Result<(), ServerError> {
    let me = publisher.instance();
    let since = Instant::now();
    tracing::info!(id, ?quiet, "claiming the aggregator id");
    loop {
        for (other, claiming) in follower.others_since(id, me, since) {
            if !claiming || other < me {
                tracing::error!(
                    id,
                    me,
                    other,
                    claiming,
                    "another process publishes under this aggregator id"
                );
                return Err(ServerError::AggregatorIdInUse(id.to_owned()));
            }
        }
        if since.elapsed() >= quiet {
            return Ok(());
        }
        if let Err(e) = publisher.claim(clock.now_ms()) {
            tracing::warn!(error = %e, "claim not sent");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Connects to the partial-state topic. An aggregator's follower starts
/// reading at once (its state is restored from it); an edge's is started
/// once there is an engine to merge into.
async fn start_follower(
    partials: &PartialsConfig,
    config: &Config,
    clock: &Arc<dyn Clock>,
    cancel: &CancellationToken,
) -> Result<Arc<Follower>, ServerError> {
    let source_id = counted(config).map(|k| k.source_id()).unwrap_or_default();
    let (partials, engine_config) = (partials.clone(), config.engine.clone());
    let follower =
        tokio::task::spawn_blocking(move || Follower::connect(&partials, engine_config, source_id))
            .await
            .map_err(|_| ServerError::Thread("partials"))??;
    if config.role == Role::Aggregator {
        let (f, clock, cancel) = (follower.clone(), clock.clone(), cancel.clone());
        std::thread::Builder::new()
            .name("livemap-partials".into())
            .spawn(move || f.run(None, clock.as_ref(), &cancel))?;
    }
    Ok(follower)
}

/// The topic this process counts (and names its state after): the
/// checkout topic, or on an aggregator and an edge the by-id topic.
fn counted(config: &Config) -> Option<KafkaConfig> {
    let kafka = config.kafka.as_ref()?;
    Some(match config.role {
        Role::All => kafka.clone(),
        Role::Aggregator | Role::Edge => kafka.by_id(),
    })
}

/// How many partitions `topic` has, asked off the runtime's threads.
async fn partition_count(kafka: &KafkaConfig, topic: &str) -> Result<i32, ServerError> {
    let (client, name) = (kafka.producer_config(), topic.to_owned());
    tokio::task::spawn_blocking(move || crate::kafka::topics::partition_count(&client, &name))
        .await
        .map_err(|_| ServerError::Thread("router"))?
        .map_err(|reason| ServerError::Topic {
            topic: topic.to_owned(),
            reason,
        })
}

/// Creates the by-id topic (as many partitions as the checkout topic) if
/// missing, and starts the router that fills it.
async fn start_router(
    kafka: &KafkaConfig,
    config: &Config,
    cancel: &CancellationToken,
) -> Result<(std::thread::JoinHandle<()>, Arc<RouterStats>), ServerError> {
    let by_id = kafka.by_id();
    let partitions = partition_count(kafka, &kafka.topic).await?;
    crate::kafka::topics::ensure(kafka.producer_config(), &by_id.topic, partitions, &[])
        .await
        .map_err(|reason| ServerError::Topic {
            topic: by_id.topic.clone(),
            reason,
        })?;
    // The topic may have been made with another count: route by what it has.
    let by_id_partitions = partition_count(kafka, &by_id.topic).await?;
    let max_batch = crate::kafka::topics::max_message_bytes(kafka.producer_config(), &by_id.topic)
        .await
        .unwrap_or_else(|reason| {
            tracing::warn!(%reason, topic = %by_id.topic, "cannot read the topic's max.message.bytes");
            None
        });
    let router = Router::connect(
        kafka,
        by_id.topic,
        by_id_partitions,
        max_batch,
        config.engine.fx.clone(),
        cancel.clone(),
    )?;
    let stats = router.stats.clone();
    let thread = std::thread::Builder::new()
        .name("livemap-router".into())
        .spawn(move || router.run())?;
    Ok((thread, stats))
}

/// How long a start waits to read the partial-state topic to its end.
const PARTIALS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// What a restore starts from.
enum Saved {
    /// Restored from the state directory.
    Engine(Box<Engine>),
    /// An aggregator's own record: its state, in that checkpoint format.
    Record(Vec<u8>, u32),
}

/// Restores the engine: from the state directory (Kafka source), from this
/// aggregator's own record on the partial-state topic (aggregator), or
/// empty (demo, edge).
#[allow(clippy::type_complexity)]
async fn restore(
    config: &Config,
    clock: &Arc<dyn Clock>,
    follower: Option<&Arc<Follower>>,
) -> Result<
    (
        Arc<Mutex<Engine>>,
        Arc<SourceHealth>,
        Option<Arc<Checkpointer>>,
    ),
    ServerError,
> {
    let kafka = match (counted(config), config.role) {
        (Some(kafka), Role::All | Role::Aggregator) => kafka,
        (_, Role::Edge) => {
            // Live while aggregators publish (the follower says so).
            let engine = Arc::new(Mutex::new(Engine::new(config.engine.clone())));
            let health = SourceHealth::new(i64::MAX, true);
            health.mark_restored();
            return Ok((engine, Arc::new(health), None));
        }
        _ => {
            let engine = Arc::new(Mutex::new(Engine::new(config.engine.clone())));
            return Ok((engine, Arc::new(SourceHealth::always_live()), None));
        }
    };
    let (saved, store) = match (config.role, follower, &config.partials) {
        (Role::Aggregator, Some(follower), Some(partials)) => {
            // Publishing before the own record is read would overwrite it
            // with less: refuse to start instead.
            let f = follower.clone();
            let synced = tokio::task::spawn_blocking(move || f.sync(PARTIALS_PATIENCE))
                .await
                .unwrap_or(false);
            if !synced {
                return Err(ServerError::PartialsBehind);
            }
            let publisher = Publisher::new(partials, config.aggregator_id.clone())?;
            claim_id(
                follower,
                &publisher,
                &config.aggregator_id,
                partials.quiet,
                clock,
            )
            .await?;
            // Its own record continues only while no edge can have retired
            // the id: within half the retirement time, so the first new
            // record lands long before anyone retires the old one.
            let own = follower.state_of(&config.aggregator_id).filter(|own| {
                let age = clock.now_ms() - own.published_ms;
                let fresh = age <= (partials.retire_after / 2).as_millis() as i64;
                if !fresh {
                    tracing::warn!(
                        aggregator = %config.aggregator_id,
                        age_secs = age / 1000,
                        "own record older than half of --retire-after-secs: counting from zero under a new lineage (the old counts stay in the retired sum)"
                    );
                }
                fresh
            });
            if let Some(own) = &own {
                publisher.continue_lineage(own.lineage);
            }
            (
                own.map(|own| Saved::Record(own.state, own.format)),
                Store::Partials(Arc::new(publisher)),
            )
        }
        _ => {
            let dir = StateDir::new(&config.state_dir)?;
            let restored = crate::persist::restore_from_dir(
                &dir,
                &config.engine,
                &kafka.source_id(),
                config.discard_unreadable_checkpoint,
            )?;
            (
                restored.map(|e| Saved::Engine(Box::new(e))),
                Store::Dir(dir),
            )
        }
    };
    let engine = match saved {
        Some(saved) => {
            let engine = match saved {
                Saved::Engine(engine) => *engine,
                Saved::Record(bytes, format) => Engine::restore_format(
                    config.engine.clone(),
                    &kafka.source_id(),
                    &bytes,
                    format,
                )?,
            };
            tracing::info!(
                orders = engine.aggregate.orders,
                positions = ?engine.positions(),
                "restored from checkpoint"
            );
            engine
        }
        None => Engine::new(config.engine.clone()),
    };
    let engine = Arc::new(Mutex::new(engine));
    let health = Arc::new(SourceHealth::grouped(
        config.lag_limit,
        config.lag_limit_secs.as_secs_f64(),
    ));
    health.mark_restored();
    let checkpointer = Arc::new(Checkpointer::new(
        store,
        kafka.source_id(),
        engine.clone(),
        clock.clone(),
    ));
    Ok((engine, health, Some(checkpointer)))
}

/// An aggregator's public port: browsers belong on an edge.
fn aggregator_router() -> axum::Router {
    axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::NOT_FOUND,
            "this livemap process is an aggregator: browsers connect to an edge\n",
        )
    })
}

/// Feeds batches into the engine until every source has hung up. The wall
/// clock is read once per batch, not per message.
fn ingest_loop(mut rx: mpsc::Receiver<Batch>, engine: &Mutex<Engine>, clock: &dyn Clock) {
    while let Some(batch) = rx.blocking_recv() {
        let now_ms = clock.now_ms();
        let mut engine = engine.lock();
        for message in &batch {
            engine.ingest_routed(
                message.payload.as_deref(),
                message.position,
                message.origin,
                now_ms,
            );
        }
    }
}
