//! The pieces every role is built from: the threads of the pipeline, the
//! tick that turns the engine into frames, the two listeners, and the
//! ordered stop.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::encode::Frame;
use crate::http::metrics::{MetricsSources, TickStats};
use crate::http::{admin, fanout};
use crate::kafka::source::KafkaHandle;
use crate::snapshot::Snapshotter;
use crate::source::{Batch, SourceHealth};
use crate::{Config, ServerError};
use livemap_engine::ingest::Engine;

/// The pipeline's threads, joined in order at the stop.
#[derive(Default)]
pub(super) struct Threads {
    running: Vec<(&'static str, JoinHandle<()>)>,
    /// A Kafka source's consumer, for the last checkpoint once everything
    /// read is counted.
    kafka: Option<KafkaHandle>,
}

impl Threads {
    pub(super) fn spawn(
        &mut self,
        name: &'static str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), ServerError> {
        let thread = std::thread::Builder::new()
            .name(format!("livemap-{name}"))
            .spawn(f)?;
        self.running.push((name, thread));
        Ok(())
    }

    pub(super) fn checkpoint_at_stop(&mut self, kafka: KafkaHandle) {
        self.kafka = Some(kafka);
    }

    /// Waits for every thread (the source first, so everything it read
    /// reaches the engine), then writes the last checkpoint. Without it
    /// nothing is lost (the last checkpoint is consistent, and what was
    /// read since is read again), so a broker that is away does not fail
    /// a deploy.
    pub(super) async fn join(self) -> Result<(), ServerError> {
        tokio::task::spawn_blocking(move || {
            let mut result = Ok(());
            for (name, thread) in self.running {
                if thread.join().is_err() && result.is_ok() {
                    result = Err(ServerError::Thread(name));
                }
            }
            result?;
            if let Some(kafka) = self.kafka {
                if let Err(e) = kafka.final_checkpoint() {
                    tracing::warn!(error = %e, "no last checkpoint: the next start resumes from the one before");
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| ServerError::Thread("join"))?
    }
}

/// Source → engine: a bounded channel of batches, drained by the ingest
/// thread. Returns the sending end for the source.
pub(super) fn start_ingest(
    threads: &mut Threads,
    engine: &Arc<Mutex<Engine>>,
    clock: &Arc<dyn Clock>,
) -> Result<mpsc::Sender<Batch>, ServerError> {
    let (tx, mut rx) = mpsc::channel::<Batch>(crate::source::CHANNEL_BATCHES);
    let (engine, clock) = (engine.clone(), clock.clone());
    // Feeds batches into the engine until every source has hung up. The
    // wall clock is read once per batch, not per message.
    threads.spawn("ingest", move || {
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
    })?;
    Ok(tx)
}

/// The browsers other processes serve (an edge: the other edges'), for
/// the viewers watching now.
pub(super) type ViewersElsewhere = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Engine → snapshot → encode, once per tick, into the channel every
/// client reads. The first frame is built now, so that the first any
/// client gets already shows the restored (or merged) totals.
pub(super) struct Frames {
    pub(super) rx: watch::Receiver<Arc<Frame>>,
    pub(super) ticks: Arc<TickStats>,
    /// The public listener's places, which the tick counts viewers from.
    pub(super) admission: Arc<fanout::Admission>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Frames {
    pub(super) fn start(
        engine: &Arc<Mutex<Engine>>,
        health: &Arc<SourceHealth>,
        clock: &Arc<dyn Clock>,
        config: &Config,
        cancel: &CancellationToken,
        viewers_elsewhere: Option<ViewersElsewhere>,
    ) -> Frames {
        let tick = config.tick;
        // The URL was checked with the flags.
        let webhook = config.anomaly_webhook.as_deref().and_then(|url| {
            crate::http::webhook::Webhook::start(url, cancel)
                .inspect_err(|e| tracing::error!(error = %e, "no anomaly webhook"))
                .ok()
        });
        let instance = config.aggregator_id.clone();
        let admission = fanout::Admission::new(config.limits.clone());
        let mut snapshotter = Snapshotter::new(clock.now_ms(), tick.as_millis() as u32)
            .with_first_milestone(config.first_milestone_usd_cents)
            .with_public_alerts(config.public_anomalies);
        let first = Frame::encode(
            &snapshotter.build(&mut engine.lock(), clock.now_ms(), health.stale(), 0),
            None,
        );
        let (tx, rx) = watch::channel(Arc::new(first));
        let ticks = Arc::new(TickStats {
            webhook: webhook.as_ref().map(|w| w.stats.clone()),
            ..TickStats::default()
        });
        let (engine, clock, health, stats, places) = (
            engine.clone(),
            clock.clone(),
            health.clone(),
            ticks.clone(),
            admission.clone(),
        );
        // The first frame is published: the next is one tick away.
        let ticker = every(
            tokio::time::Instant::now() + tick,
            tick,
            cancel,
            move || {
                let started = Instant::now();
                // Counted before the engine is locked: the other edges'
                // counts sit behind the follower's lock, which is never
                // taken while holding the engine's (ARCHITECTURE.md).
                let viewers = places.viewers() + viewers_elsewhere.as_ref().map_or(0, |f| f());
                let built =
                    snapshotter.build(&mut engine.lock(), clock.now_ms(), health.stale(), viewers);
                tell_operators(&built, &stats, webhook.as_ref(), &instance);
                let encoding = Instant::now();
                let previous = tx.borrow().clone();
                let frame = Frame::encode(&built, Some(&previous));
                stats.record(started, encoding, &frame);
                tx.send_replace(Arc::new(frame));
            },
        );
        Frames {
            rx,
            ticks,
            admission,
            ticker,
        }
    }

    /// The page, the streams and the public API over these frames.
    pub(super) fn app(
        &self,
        config: &Config,
        admission: &Arc<fanout::Admission>,
        cancel: &CancellationToken,
    ) -> axum::Router {
        fanout::router(fanout::AppState {
            frames: self.rx.clone(),
            poll_timeout: config.poll_timeout,
            write_timeout: config.write_timeout,
            admission: admission.clone(),
            shutdown: cancel.clone(),
        })
    }

    pub(super) async fn stop(self) {
        let _ = self.ticker.await;
    }
}

/// Keeps the operators' signals for `/metrics` and `/anomalies`, and logs
/// each flag raised or cleared (and posts it to `--anomaly-webhook`).
fn tell_operators(
    built: &crate::snapshot::Built,
    stats: &TickStats,
    webhook: Option<&crate::http::webhook::Webhook>,
    instance: &str,
) {
    for c in &built.anomaly_changes {
        if let Some(w) = webhook {
            w.notify(c, instance);
        }
        let s = &c.signal;
        let percent = s.ratio().map_or(0.0, |r| r * 100.0);
        if c.raised {
            tracing::warn!(
                signal = s.kind.as_str(),
                observed = s.observed,
                expected = s.expected,
                "anomaly: {} fell to {percent:.0} % of what the sale expects (a checkout or payment outage?)",
                s.kind.as_str()
            );
        } else {
            tracing::info!(
                signal = s.kind.as_str(),
                "anomaly over: {} is back to {percent:.0} % of what the sale expects",
                s.kind.as_str()
            );
        }
    }
    if !built.anomalies.is_empty() {
        stats.anomalies.lock().clone_from(&built.anomalies);
    }
}

/// Runs `f` every `period` from `start` until `cancel`; a tick that comes
/// late is skipped, not made up.
pub(super) fn every(
    start: tokio::time::Instant,
    period: Duration,
    cancel: &CancellationToken,
    mut f: impl FnMut() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut interval = tokio::time::interval_at(start, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let cancel = cancel.clone();
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

/// The operator's listener, if there is one, until `cancel`.
pub(super) fn start_admin(
    listener: Option<TcpListener>,
    sources: MetricsSources,
    cancel: &CancellationToken,
) -> Option<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = listener?;
    let app = admin::router(sources);
    let cancel = cancel.clone();
    Some(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
    }))
}

/// Serves browsers from `frames` (the page, the streams, the API) and the
/// operator's listener until `shutdown`, then stops the tick and the
/// admin listener. `metrics` names what `/metrics` reads, given the
/// tick's numbers and the connection caps.
pub(super) async fn serve_browsers(
    listeners: crate::Listeners,
    frames: Frames,
    metrics: impl FnOnce(Arc<TickStats>, Arc<fanout::Admission>) -> MetricsSources,
    config: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    cancel: &CancellationToken,
) {
    let admission = frames.admission.clone();
    let sources = metrics(frames.ticks.clone(), admission.clone());
    let admin = start_admin(listeners.admin, sources, cancel);
    let app = frames.app(config, &admission, cancel);
    serve_public(listeners.public, app, admission, config, shutdown, cancel).await;
    frames.stop().await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
}

/// Serves `app` on the public listener until `shutdown`, then cancels
/// everything else and returns once the connections have drained.
pub(super) async fn serve_public(
    listener: TcpListener,
    app: axum::Router,
    admission: Arc<fanout::Admission>,
    config: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    cancel: &CancellationToken,
) {
    if !fanout::wasm_embedded() {
        tracing::warn!(
            "this build has no globe: run scripts/build-wasm.sh, then rebuild the server"
        );
    }
    // The socket-level cut-off is the backstop for every transport; the
    // WebSocket's own, shorter timeout usually acts first and is counted
    // per transport.
    let socket_write_timeout = config.write_timeout + Duration::from_secs(2);
    let serve = fanout::ServeConfig {
        header_timeout: config.header_timeout,
        write_timeout: socket_write_timeout,
        // Every connection left at shutdown ends within one of these: a
        // response being written by the write cut-off, a head being read
        // by the header timeout, a stream on the cancel token.
        drain: socket_write_timeout.max(config.header_timeout) + Duration::from_secs(1),
    };
    let stop = cancel.clone();
    fanout::serve(
        fanout::PublicListener::new(listener),
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
}
