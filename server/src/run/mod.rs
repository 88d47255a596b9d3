//! Running the server: one small function per role, built from the
//! pieces in [`pieces`].
//!
//! - [`all`]: one process reads the checkouts (Kafka or the demo) and
//!   serves browsers.
//! - [`aggregator`]: counts its share of the checkouts and publishes its
//!   state; serves no browser.
//! - [`edge`]: merges the aggregators' states and serves browsers.

mod aggregator;
mod all;
mod edge;
mod pieces;

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::kafka::partials::follow::Follower;
use crate::kafka::partials::PartialsConfig;
use crate::kafka::source::{KafkaConfig, KafkaSource};
use crate::persist::Checkpointer;
use crate::source::{Batch, SourceHealth};
use crate::{Config, Listeners, Role, ServerError};
use livemap_engine::ingest::Engine;
use pieces::Threads;

/// How long a start waits to read the partial-state topic to its end.
const PARTIALS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

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
    match config.role {
        Role::All => all::run(listeners, config, clock, shutdown, cancel).await,
        Role::Aggregator => aggregator::run(listeners, config, clock, shutdown, cancel).await,
        Role::Edge => edge::run(listeners, config, clock, shutdown, cancel).await,
    }
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

/// Makes sure the partial-state topic exists and connects to it.
async fn connect_follower(
    partials: &PartialsConfig,
    config: &Config,
) -> Result<Arc<Follower>, ServerError> {
    crate::kafka::partials::publish::ensure_topic(partials).await?;
    let source_id = counted(config).map(|k| k.source_id()).unwrap_or_default();
    let (partials, engine_config) = (partials.clone(), config.engine.clone());
    Ok(
        tokio::task::spawn_blocking(move || Follower::connect(&partials, engine_config, source_id))
            .await
            .map_err(|_| ServerError::Thread("partials"))??,
    )
}

/// What a Kafka source needs from the rest of the process.
struct Counting<'a> {
    engine: &'a Arc<Mutex<Engine>>,
    checkpointer: &'a Arc<Checkpointer>,
    health: &'a Arc<SourceHealth>,
    clock: &'a Arc<dyn Clock>,
    /// An aggregator's follower: where it takes partitions over from.
    follower: Option<Arc<Follower>>,
    /// Between checkpoints (on an aggregator: between records).
    every: std::time::Duration,
}

/// Starts the Kafka source on `kafka`, feeding `tx`; it checkpoints and
/// commits behind the engine, and writes a last checkpoint at the stop.
fn start_kafka(
    threads: &mut Threads,
    kafka: &KafkaConfig,
    counting: Counting<'_>,
    tx: mpsc::Sender<Batch>,
    cancel: &CancellationToken,
) -> Result<(), ServerError> {
    let src = KafkaSource::connect(
        kafka,
        counting.engine.clone(),
        Some(counting.checkpointer.clone()),
        counting.follower,
        counting.health.clone(),
        counting.clock.clone(),
    )?;
    threads.checkpoint_at_stop(src.handle());
    let (cancel, every) = (cancel.clone(), counting.every);
    threads.spawn("kafka", move || src.run(tx, cancel, every))
}

/// The health of a group member: stale until it has its partitions and
/// fetches them, and while it lags past the limits.
fn grouped_health(config: &Config) -> Arc<SourceHealth> {
    let health = SourceHealth::grouped(config.lag_limit, config.lag_limit_secs.as_secs_f64());
    health.mark_restored();
    Arc::new(health)
}

/// A role that needs Kafka was configured without it (a `Config` built by
/// hand; the flags refuse it).
fn needs_kafka(role: &'static str) -> ServerError {
    ServerError::NeedsKafka(role)
}
