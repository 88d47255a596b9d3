//! `--role edge`: merges the newest state of every aggregator from the
//! partial-state topic, shows their arcs, and serves browsers exactly as
//! one process does. Counts nothing itself.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::pieces::{serve_browsers, Frames};
use super::{connect_follower, needs_kafka, PARTIALS_PATIENCE};
use crate::clock::Clock;
use crate::http::metrics::MetricsSources;
use crate::kafka::partials::follow::{Edge, Follower};
use crate::kafka::partials::publish::ViewersPublisher;
use crate::source::SourceHealth;
use crate::{Config, Listeners, ServerError};
use livemap_engine::ingest::Engine;

pub(super) async fn run(
    listeners: Listeners,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    cancel: CancellationToken,
) -> Result<(), ServerError> {
    let Some(partials) = &config.partials else {
        return Err(needs_kafka("edge"));
    };
    let follower = connect_follower(partials, &config).await?;
    let engine = Arc::new(Mutex::new(Engine::new(config.engine.clone())));
    // Live while aggregators publish (the follower says so).
    let health = Arc::new(SourceHealth::new(i64::MAX, true));
    health.mark_restored();
    follow(&follower, &engine, &health, &clock, &config, &cancel)?;
    // Catch up before the first browser sees a total: the first frame
    // shows what was read, not an empty engine.
    let syncing = follower.clone();
    let synced = tokio::task::spawn_blocking(move || syncing.sync(PARTIALS_PATIENCE))
        .await
        .unwrap_or(false);
    if !synced {
        tracing::warn!("partial states not read to the end at start; serving what there is");
    }
    // The follower merged every record read into the engine; its trends
    // are recomputed at once rather than on the follower's next turn.
    engine.lock().refresh_trends();
    // Viewers watching now: every edge publishes how many browsers it
    // serves, each second, and shows the sum.
    let viewers = ViewersPublisher::new(partials, config.aggregator_id.clone())
        .inspect_err(|e| tracing::warn!(error = %e, "viewers of other edges will not be counted"))
        .ok();
    let elsewhere = viewers.as_ref().map(|v| {
        let (follower, me) = (follower.clone(), v.instance);
        Arc::new(move || follower.viewers_elsewhere(me)) as super::pieces::ViewersElsewhere
    });
    let frames = Frames::start(&engine, &health, &clock, &config, &cancel, elsewhere);
    if let Some(v) = viewers {
        let (places, clock) = (frames.admission.clone(), clock.clone());
        super::pieces::every(
            tokio::time::Instant::now(),
            Duration::from_secs(1),
            &cancel,
            move || v.publish(places.viewers(), clock.now_ms()),
        );
    }
    let metrics = |ticks, admission| MetricsSources {
        engine,
        health,
        checkpointer: None,
        ticks,
        clock,
        admission,
        follower: Some(follower),
        router: None,
    };
    serve_browsers(listeners, frames, metrics, &config, shutdown, &cancel).await;
    Ok(())
}

/// Follows the partial-state topic into `engine` on a thread of its own.
fn follow(
    follower: &Arc<Follower>,
    engine: &Arc<Mutex<Engine>>,
    health: &Arc<SourceHealth>,
    clock: &Arc<dyn Clock>,
    config: &Config,
    cancel: &CancellationToken,
) -> Result<(), ServerError> {
    let (reader, merged_into, health, clock, cancel) = (
        follower.clone(),
        engine.clone(),
        health.clone(),
        clock.clone(),
        cancel.clone(),
    );
    // Stale once no aggregator has published for a few publish periods.
    let fresh_for = (config.publish_every * 5).max(Duration::from_secs(5));
    let arcs_per_second = config.engine.arcs_per_tick as f64 / config.tick.as_secs_f64();
    std::thread::Builder::new()
        .name("livemap-partials".into())
        .spawn(move || {
            let edge = Edge {
                engine: &merged_into,
                health: &health,
                fresh_for,
                arcs_per_second,
            };
            reader.run(Some(edge), clock.as_ref(), &cancel);
        })?;
    Ok(())
}
