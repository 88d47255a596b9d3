//! Everything over HTTP:
//!
//! - [`fanout`]: the public listener, where browsers, kiosks and the
//!   public API read the frames (WebSocket, Server-Sent Events,
//!   long-poll, JSON) and the page;
//! - [`admin`]: the operator's listener (`/metrics`, `/healthz`,
//!   `/readyz`, `/anomalies`), on its own socket;
//! - [`metrics`]: what `/metrics` says, read at scrape time;
//! - [`webhook`]: the one request the server makes, the anomaly webhook.

pub mod admin;
pub mod fanout;
pub mod metrics;
pub mod webhook;
