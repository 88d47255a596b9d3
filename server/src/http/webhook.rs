//! The anomaly webhook: each flag raised or cleared
//! (`livemap_engine::anomaly`) is POSTed as JSON to `--anomaly-webhook`,
//! a plain `http://` URL (a relay adds TLS where one is needed).
//!
//! Bounded and never in the tick's way: the tick hands a change over a
//! channel of [`QUEUE`] places and goes on; a change that finds it full is
//! dropped and counted. One sender posts them in order, each within
//! [`PATIENCE`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Uri};
use hyper_util::rt::TokioIo;
use livemap_engine::aggregate::MINUTE_MS;
use livemap_engine::anomaly::Change;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Changes waiting to be posted.
const QUEUE: usize = 16;
/// How long a post may take, connection included.
const PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("--anomaly-webhook {0}: an http://host[:port]/path URL is needed")]
    Url(String),
    #[error("connecting: {0}")]
    Connect(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] axum::http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Status(u16),
}

/// What `/metrics` says of the webhook.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

#[derive(Debug)]
pub struct Webhook {
    tx: mpsc::Sender<Vec<u8>>,
    pub stats: Arc<WebhookStats>,
}

/// Where `url` points: its URI and the `host:port` to connect to; an
/// error unless it is a plain `http://` URL with a host. The flags are
/// checked with it, so a bad URL stops the start.
pub fn target(url: &str) -> Result<(Uri, String), WebhookError> {
    let bad = || WebhookError::Url(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let (Some("http"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(bad());
    };
    let address = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    Ok((uri, address))
}

impl Webhook {
    /// Starts the sender for `url` ([`target`]), until `cancel`.
    pub fn start(url: &str, cancel: &CancellationToken) -> Result<Webhook, WebhookError> {
        let (uri, address) = target(url)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let stats = Arc::new(WebhookStats::default());
        let (counts, cancel) = (stats.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let body = tokio::select! {
                    body = rx.recv() => match body { Some(b) => b, None => break },
                    _ = cancel.cancelled() => break,
                };
                let posted = tokio::time::timeout(PATIENCE, post(&address, &uri, body)).await;
                match posted.unwrap_or(Err(WebhookError::Timeout(PATIENCE))) {
                    Ok(()) => counts.sent.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(error = %e, "anomaly webhook not delivered");
                        counts.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        Ok(Webhook { tx, stats })
    }

    /// Hands `change` to the sender, or counts it dropped if too many wait.
    pub fn notify(&self, change: &Change, instance: &str) {
        let s = &change.signal;
        let body = serde_json::json!({
            "event": if change.raised { "anomaly" } else { "anomaly_over" },
            "signal": s.kind.as_str(),
            "flagged": s.flagged,
            "minute_start_ms": s.minute * MINUTE_MS,
            "observed_per_minute": s.observed,
            "expected_per_minute": s.expected,
            "ratio": s.ratio(),
            "since_ms": s.since_minute.map(|m| m * MINUTE_MS),
            "instance": instance,
        });
        if self.tx.try_send(body.to_string().into_bytes()).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One POST over a connection of its own.
async fn post(address: &str, uri: &Uri, body: Vec<u8>) -> Result<(), WebhookError> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::post(path)
        .header(header::HOST, address)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))?;
    let status = sender.send_request(request).await?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(WebhookError::Status(status.as_u16()))
    }
}
