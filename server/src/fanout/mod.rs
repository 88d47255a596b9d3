//! Fan-out stage: every transport sends the latest encoded [`Frame`],
//! shared as `Bytes`, to as many clients as connect. Nothing here encodes
//! per client, and no client has a queue: they all read one `watch`
//! channel, which only ever holds the newest frame, so a slow client skips
//! ahead instead of building a backlog.
//!
//! Previous stage: [`crate::encode`].

mod api;
mod assets;
mod poll;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::encode::Frame;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub frames: watch::Receiver<Arc<Frame>>,
    pub poll_timeout: Duration,
    /// Fires on shutdown, so long-lived connections end promptly.
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/sse", get(api::sse))
        .route("/api/poll", get(poll::poll))
        .route("/api/snapshot", get(api::snapshot))
        .route("/api/history", get(api::history))
        .route("/healthz", get(api::healthz))
        .fallback(get(assets::serve))
        .with_state(state)
}

pub use assets::wasm_embedded;
