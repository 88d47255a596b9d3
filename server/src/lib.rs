//! The live sales map server as a library: `main` only parses flags and
//! calls [`run`], so tests start the real thing on a port-0 listener.
//!
//! The data path, one module per stage:
//! [`source`] → [`decode`] → [`ingest`] (with [`dedup`], [`aggregate`],
//! [`hll`], [`arcs`]) → [`snapshot`] → [`encode`] → [`fanout`].
//! `ARCHITECTURE.md` at the repository root has the map and invariants.

pub mod aggregate;
pub mod arcs;
pub mod clock;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod encode;
pub mod fanout;
pub mod hll;
pub mod ingest;
pub mod snapshot;
pub mod source;

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
pub use crate::config::{Args, Config};
use crate::encode::Frame;
use crate::ingest::Engine;
use crate::snapshot::Snapshotter;
use crate::source::{Batch, CHANNEL_BATCHES};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
    #[error("a pipeline thread panicked: {0}")]
    Thread(&'static str),
}

/// Runs the server on `listener` until `shutdown` completes, then drains:
/// streams are closed, the source stops, and the pipeline finishes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_with_clock(listener, config, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with a clock of the caller's choosing.
pub async fn run_with_clock(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let cancel = CancellationToken::new();
    let engine = Arc::new(Mutex::new(Engine::new(config.engine.clone())));
    let mut snapshotter = Snapshotter::new(clock.now_ms(), config.tick.as_millis() as u32);
    let first = Frame::encode(&snapshotter.build(&mut engine.lock(), clock.now_ms(), false));
    let (frames_tx, frames_rx) = watch::channel(Arc::new(first));

    // Source → engine: a bounded channel of batches.
    let (tx, rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let source = {
        let demo = source::demo::DemoConfig {
            events_per_sec: config.demo_rate,
            seed: config.demo_seed,
        };
        let (clock, cancel) = (clock.clone(), cancel.clone());
        std::thread::Builder::new()
            .name("livemap-source".into())
            .spawn(move || source::demo::run(demo, clock, tx, cancel))?
    };
    let ingest = {
        let (engine, clock) = (engine.clone(), clock.clone());
        std::thread::Builder::new()
            .name("livemap-ingest".into())
            .spawn(move || ingest_loop(rx, &engine, clock.as_ref()))?
    };

    // Engine → snapshot → encode → every client, once per tick.
    let ticker = {
        let (engine, clock, cancel) = (engine.clone(), clock.clone(), cancel.clone());
        let mut interval = tokio::time::interval(config.tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = cancel.cancelled() => break,
                }
                let built = snapshotter.build(&mut engine.lock(), clock.now_ms(), false);
                frames_tx.send_replace(Arc::new(Frame::encode(&built)));
            }
        })
    };

    if !fanout::wasm_embedded() {
        tracing::warn!(
            "this build has no globe: run scripts/build-wasm.sh, then rebuild the server"
        );
    }
    let app = fanout::router(fanout::AppState {
        frames: frames_rx,
        poll_timeout: config.poll_timeout,
        shutdown: cancel.clone(),
    });
    let stop = cancel.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        })
        .await;
    cancel.cancel();
    let _ = ticker.await;
    let joined = tokio::task::spawn_blocking(move || {
        let source = source.join().map_err(|_| ServerError::Thread("source"));
        let ingest = ingest.join().map_err(|_| ServerError::Thread("ingest"));
        source.and(ingest)
    })
    .await
    .map_err(|_| ServerError::Thread("join"))?;
    served?;
    joined
}

/// Feeds batches into the engine until every source has hung up. The wall
/// clock is read once per batch, not per message.
fn ingest_loop(mut rx: mpsc::Receiver<Batch>, engine: &Mutex<Engine>, clock: &dyn Clock) {
    while let Some(batch) = rx.blocking_recv() {
        let now_ms = clock.now_ms();
        let mut engine = engine.lock();
        for message in &batch {
            engine.ingest(message.payload.as_deref(), now_ms);
        }
    }
}
