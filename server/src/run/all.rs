//! `--role all`: one process reads the checkouts (from Kafka, or the
//! embedded demo) and serves browsers.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::pieces::{serve_browsers, start_ingest, Frames, Threads};
use super::{start_kafka, Counting};
use crate::clock::Clock;
use crate::http::metrics::MetricsSources;
use crate::persist::{restore_from_dir, Checkpointer, Store};
use crate::source::{self, SourceHealth};
use crate::{Config, Listeners, ServerError};
use livemap_engine::checkpoint::StateDir;
use livemap_engine::ingest::Engine;

pub(super) async fn run(
    listeners: Listeners,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    cancel: CancellationToken,
) -> Result<(), ServerError> {
    let mut threads = Threads::default();
    let (engine, health, checkpointer) = restore(&config, &clock)?;
    let tx = start_ingest(&mut threads, &engine, &clock)?;
    match (&config.kafka, &checkpointer) {
        (Some(kafka), Some(checkpointer)) => {
            let counting = Counting {
                engine: &engine,
                checkpointer,
                health: &health,
                clock: &clock,
                follower: None,
                every: config.checkpoint_every,
            };
            start_kafka(&mut threads, kafka, counting, tx, &cancel)?;
        }
        _ => {
            let demo = source::demo::DemoConfig {
                events_per_sec: config.demo_rate,
                seed: config.demo_seed,
                backfill: config.demo_backfill,
                outage: config.demo_outage,
            };
            let (clock, cancel) = (clock.clone(), cancel.clone());
            threads.spawn("source", move || source::demo::run(demo, clock, tx, cancel))?;
        }
    }
    let frames = Frames::start(&engine, &health, &clock, &config, &cancel, None);
    let metrics = |ticks, admission| MetricsSources {
        engine,
        health,
        checkpointer,
        ticks,
        clock,
        admission,
        follower: None,
        router: None,
    };
    serve_browsers(listeners, frames, metrics, &config, shutdown, &cancel).await;
    threads.join().await
}

/// The engine as the state directory holds it (Kafka), or empty (demo).
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
    let restored = restore_from_dir(
        &dir,
        &config.engine,
        &kafka.source_id(),
        config.discard_unreadable_checkpoint,
    )?;
    if let Some(engine) = &restored {
        tracing::info!(
            orders = engine.aggregate().orders,
            positions = ?engine.positions(),
            "restored from checkpoint"
        );
    }
    let engine = restored.unwrap_or_else(|| Engine::new(config.engine.clone()));
    let engine = Arc::new(Mutex::new(engine));
    let store = Store::Dir(dir);
    let checkpointer = Checkpointer::new(store, kafka.source_id(), engine.clone(), clock.clone());
    Ok((
        engine,
        super::grouped_health(config),
        Some(Arc::new(checkpointer)),
    ))
}
