//! `--role aggregator`: re-keys its share of the checkouts by event id
//! (the router), counts its share of the by-id topic, and publishes its
//! state every `--publish-ms` and its arcs every tick. Serves no browser.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::pieces::{every, serve_public, start_admin, start_ingest, Threads};
use super::PARTIALS_PATIENCE;
use super::{connect_follower, grouped_health, needs_kafka, start_kafka, Counting};
use crate::clock::Clock;
use crate::http::fanout::Admission;
use crate::http::metrics::MetricsSources;
use crate::kafka::partials::follow::Follower;
use crate::kafka::partials::publish::Publisher;
use crate::kafka::partials::PartialsConfig;
use crate::kafka::router::{Router, RouterStats};
use crate::kafka::source::KafkaConfig;
use crate::persist::{Checkpointer, Store};
use crate::{Config, Listeners, ServerError};
use livemap_engine::ingest::Engine;

pub(super) async fn run(
    listeners: Listeners,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    cancel: CancellationToken,
) -> Result<(), ServerError> {
    let (Some(kafka), Some(partials)) = (&config.kafka, &config.partials) else {
        return Err(needs_kafka("aggregator"));
    };
    let follower = connect_follower(partials, &config).await?;
    {
        // Read from the start: its own state is restored from the topic.
        let (f, clock, cancel) = (follower.clone(), clock.clone(), cancel.clone());
        std::thread::Builder::new()
            .name("livemap-partials".into())
            .spawn(move || f.run(None, clock.as_ref(), &cancel))?;
    }
    let (engine, checkpointer) = restore_own(&config, partials, &follower, &clock).await?;
    let health = grouped_health(&config);
    let mut threads = Threads::default();
    let router = start_router(&mut threads, kafka, &config, &cancel).await?;
    let tx = start_ingest(&mut threads, &engine, &clock)?;
    let counting = Counting {
        engine: &engine,
        checkpointer: &checkpointer,
        health: &health,
        clock: &clock,
        follower: Some(follower.clone()),
        every: config.publish_every,
    };
    start_kafka(&mut threads, &kafka.by_id(), counting, tx, &cancel)?;
    publish_arcs(&checkpointer, &engine, &clock, &config, &cancel);
    let admission = Admission::new(config.limits.clone());
    let metrics = MetricsSources {
        engine,
        health,
        checkpointer: Some(checkpointer.clone()),
        ticks: Arc::default(),
        clock,
        admission: admission.clone(),
        follower: Some(follower),
        router: Some(router),
    };
    let admin = start_admin(listeners.admin, metrics, &cancel);
    serve_public(
        listeners.public,
        not_for_browsers(),
        admission,
        &config,
        shutdown,
        &cancel,
    )
    .await;
    // A last record need not wait long for a broker that may be away.
    if let Some(publisher) = checkpointer.publisher() {
        publisher.hurry();
    }
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    threads.join().await
}

/// An aggregator's public port: browsers belong on an edge.
fn not_for_browsers() -> axum::Router {
    axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::NOT_FOUND,
            "this livemap process is an aggregator: browsers connect to an edge\n",
        )
    })
}

/// An aggregator's arcs and first sales go out every tick, in small
/// records of their own, so that an edge shows an order as soon as one
/// process would; the state follows once per publish.
fn publish_arcs(
    checkpointer: &Checkpointer,
    engine: &Arc<Mutex<Engine>>,
    clock: &Arc<dyn Clock>,
    config: &Config,
    cancel: &CancellationToken,
) {
    let Some(publisher) = checkpointer.publisher() else {
        return;
    };
    let (publisher, engine, clock) = (publisher.clone(), engine.clone(), clock.clone());
    every(
        tokio::time::Instant::now(),
        config.tick,
        cancel,
        move || {
            let (arcs, first_sales) = {
                let mut engine = engine.lock();
                (engine.take_arcs(), engine.take_first_sales())
            };
            if !arcs.is_empty() || !first_sales.is_empty() {
                if let Err(e) = publisher.publish_arcs(arcs, first_sales, clock.now_ms()) {
                    tracing::warn!(error = %e, "arcs not published");
                }
            }
        },
    );
}

/// Restores this aggregator from its own record on the partial-state
/// topic, after claiming its id; its checkpoints are its next records.
async fn restore_own(
    config: &Config,
    partials: &PartialsConfig,
    follower: &Arc<Follower>,
    clock: &Arc<dyn Clock>,
) -> Result<(Arc<Mutex<Engine>>, Arc<Checkpointer>), ServerError> {
    // Publishing before the own record is read would overwrite it with
    // less: refuse to start instead.
    let f = follower.clone();
    let synced = tokio::task::spawn_blocking(move || f.sync(PARTIALS_PATIENCE))
        .await
        .unwrap_or(false);
    if !synced {
        return Err(ServerError::PartialsBehind);
    }
    let id = &config.aggregator_id;
    let publisher = Publisher::new(partials, id.clone())?;
    claim_id(follower, &publisher, id, partials.quiet, clock).await?;
    // Its own record continues only while no edge can have retired the
    // id: within half the retirement time, so the first new record lands
    // long before anyone retires the old one.
    let own = follower.state_of(id).filter(|own| {
        let age = clock.now_ms() - own.published_ms;
        let fresh = age <= (partials.retire_after / 2).as_millis() as i64;
        if !fresh {
            tracing::warn!(
                aggregator = %id,
                age_secs = age / 1000,
                "own record older than half of --retire-after-secs: counting from zero under a new lineage (the old counts stay in the retired sum)"
            );
        }
        fresh
    });
    let source_id = super::counted(config)
        .map(|k| k.source_id())
        .unwrap_or_default();
    let engine = match own {
        Some(own) => {
            publisher.continue_lineage(own.lineage);
            let engine =
                Engine::restore_format(config.engine.clone(), &source_id, &own.state, own.format)?;
            tracing::info!(
                orders = engine.aggregate().orders,
                positions = ?engine.positions(),
                "restored from its own record"
            );
            engine
        }
        None => Engine::new(config.engine.clone()),
    };
    let engine = Arc::new(Mutex::new(engine));
    let store = Store::Partials(Arc::new(publisher));
    let checkpointer = Checkpointer::new(store, source_id, engine.clone(), clock.clone());
    Ok((engine, Arc::new(checkpointer)))
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
    threads: &mut Threads,
    kafka: &KafkaConfig,
    config: &Config,
    cancel: &CancellationToken,
) -> Result<Arc<RouterStats>, ServerError> {
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
    threads.spawn("router", move || router.run())?;
    Ok(stats)
}
