//! The live sales map server as a library: `main` only parses flags and
//! calls [`run`], so tests start the real thing on a port-0 listener.
//!
//! The data path, one module per stage:
//! [`source`] → [`decode`] → [`ingest`] (with [`dedup`], [`aggregate`],
//! [`hll`], [`arcs`]) → [`snapshot`] → [`encode`] → [`fanout`].
//! `ARCHITECTURE.md` at the repository root has the map and invariants.

pub mod admin;
pub mod aggregate;
pub mod arcs;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod encode;
pub mod fanout;
pub mod hll;
pub mod ingest;
pub mod metrics;
pub mod persist;
pub mod rankings;
pub mod snapshot;
pub mod source;
pub mod trends;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointError, StateDir};
use crate::clock::{Clock, SystemClock};
pub use crate::config::{Args, Config};
use crate::encode::Frame;
use crate::ingest::Engine;
use crate::metrics::{MetricsSources, TickStats};
use crate::persist::Checkpointer;
use crate::snapshot::Snapshotter;
use crate::source::kafka::{KafkaSource, KafkaSourceError};
use crate::source::{Batch, SourceHealth, CHANNEL_BATCHES};

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
    let (engine, health, checkpointer) = restore(&config, &clock)?;
    let mut snapshotter = Snapshotter::new(clock.now_ms(), config.tick.as_millis() as u32);
    let first = Frame::encode(
        &snapshotter.build(&mut engine.lock(), clock.now_ms(), health.stale()),
        None,
    );
    let (frames_tx, frames_rx) = watch::channel(Arc::new(first));

    // Source → engine: a bounded channel of batches.
    let (tx, rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let (source, kafka) = match &config.kafka {
        Some(kafka) => {
            let src =
                KafkaSource::connect(kafka, engine.clone(), checkpointer.clone(), health.clone())?;
            let handle = src.handle();
            let (cancel, every) = (cancel.clone(), config.checkpoint_every);
            let thread = std::thread::Builder::new()
                .name("livemap-kafka".into())
                .spawn(move || src.run(tx, cancel, every))?;
            (thread, Some(handle))
        }
        None => {
            let demo = source::demo::DemoConfig {
                events_per_sec: config.demo_rate,
                seed: config.demo_seed,
                backfill: config.demo_backfill,
            };
            let (clock, cancel) = (clock.clone(), cancel.clone());
            let thread = std::thread::Builder::new()
                .name("livemap-source".into())
                .spawn(move || source::demo::run(demo, clock, tx, cancel))?;
            (thread, None)
        }
    };
    let ingest = {
        let (engine, clock) = (engine.clone(), clock.clone());
        std::thread::Builder::new()
            .name("livemap-ingest".into())
            .spawn(move || ingest_loop(rx, &engine, clock.as_ref()))?
    };

    // Engine → snapshot → encode → every client, once per tick.
    let ticks = Arc::new(TickStats::default());
    let ticker = {
        let (engine, clock, cancel, health, ticks) = (
            engine.clone(),
            clock.clone(),
            cancel.clone(),
            health.clone(),
            ticks.clone(),
        );
        // The first frame is already published: the next is one tick away.
        let start = tokio::time::Instant::now() + config.tick;
        let mut interval = tokio::time::interval_at(start, config.tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = cancel.cancelled() => break,
                }
                let started = Instant::now();
                let built = snapshotter.build(&mut engine.lock(), clock.now_ms(), health.stale());
                let encoding = Instant::now();
                let previous = frames_tx.borrow().clone();
                let frame = Frame::encode(&built, Some(&previous));
                ticks.record(started, encoding, &frame);
                frames_tx.send_replace(Arc::new(frame));
            }
        })
    };

    let admission = fanout::Admission::new(config.limits.clone());
    let socket_timeouts = admission.socket_timeouts.clone();
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
        });
        let cancel = cancel.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await
        })
    });
    let app = fanout::router(fanout::AppState {
        frames: frames_rx,
        poll_timeout: config.poll_timeout,
        write_timeout: config.write_timeout,
        admission,
        shutdown: cancel.clone(),
    });
    let stop = cancel.clone();
    // The socket-level cut-off is the backstop for every transport; the
    // WebSocket's own, shorter timeout usually acts first and is counted
    // per transport.
    let public = fanout::PublicListener::new(
        listeners.public,
        config.write_timeout + std::time::Duration::from_secs(2),
        socket_timeouts,
    );
    let served = axum::serve(
        public,
        app.into_make_service_with_connect_info::<fanout::ClientAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down");
        stop.cancel();
    })
    .await;
    cancel.cancel();
    let _ = ticker.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    let joined = tokio::task::spawn_blocking(move || {
        let source = source.join().map_err(|_| ServerError::Thread("source"));
        let ingest = ingest.join().map_err(|_| ServerError::Thread("ingest"));
        source.and(ingest)?;
        // Everything read has been counted: record it, and where it ends.
        if let Some(kafka) = kafka {
            kafka.final_checkpoint()?;
        }
        Ok(())
    })
    .await
    .map_err(|_| ServerError::Thread("join"))?;
    served?;
    joined
}

/// Restores the engine from the last checkpoint (Kafka source), or starts
/// empty (demo).
#[allow(clippy::type_complexity)]
fn restore(
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> Result<
    (
        Arc<Mutex<Engine>>,
        Arc<SourceHealth>,
        Option<Arc<Checkpointer>>,
    ),
    ServerError,
> {
    let Some(kafka) = &config.kafka else {
        let engine = Arc::new(Mutex::new(Engine::new(config.engine.clone())));
        return Ok((engine, Arc::new(SourceHealth::always_live()), None));
    };
    let dir = StateDir::new(&config.state_dir)?;
    let engine = match dir.load()? {
        Some(bytes) => {
            let engine = Engine::restore(config.engine.clone(), &kafka.source_id(), &bytes)?;
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
    let health = Arc::new(SourceHealth::new(config.lag_limit, true));
    health.mark_restored();
    let checkpointer = Arc::new(Checkpointer::new(
        dir,
        kafka.source_id(),
        engine.clone(),
        clock.clone(),
    ));
    Ok((engine, health, Some(checkpointer)))
}
/// Feeds batches into the engine until every source has hung up. The wall
/// clock is read once per batch, not per message.
fn ingest_loop(mut rx: mpsc::Receiver<Batch>, engine: &Mutex<Engine>, clock: &dyn Clock) {
    while let Some(batch) = rx.blocking_recv() {
        let now_ms = clock.now_ms();
        let mut engine = engine.lock();
        for message in &batch {
            engine.ingest(message.payload.as_deref(), message.position, now_ms);
        }
    }
}
