//! Fan-out stage: every transport sends the latest encoded [`Frame`],
//! shared as `Bytes`, to as many clients as connect. Nothing here encodes
//! per client, and no client has a queue: they all read one `watch`
//! channel, which only ever holds the newest frame, so a slow client skips
//! ahead instead of building a backlog. What a client is sent follows one
//! rule ([`to_send`]): the newest keyframe if it does not have it, then
//! this tick's delta.
//!
//! Previous stage: [`crate::encode`].

mod admission;
mod api;
mod assets;
mod listener;
mod poll;
mod serve;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::encode::{Body, Frame};

pub use admission::{Admission, Limits, Origin, Transport};
pub use assets::wasm_embedded;
pub use listener::{ClientAddr, PublicListener};
pub use serve::{serve, sockets_within, ServeConfig, SocketHold, FILES_KEPT_BACK, MAX_HEAD};

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub frames: watch::Receiver<Arc<Frame>>,
    pub poll_timeout: Duration,
    /// A client that does not take a frame within this is dropped.
    pub write_timeout: Duration,
    pub admission: Arc<Admission>,
    /// Fires on shutdown, so long-lived connections end promptly.
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    assets::prepare();
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

/// The bodies a client gets for `frame`, given the version of the newest
/// keyframe it has (`have`, updated): the frame's keyframe first if it
/// lacks it, then the tick's delta unless that keyframe was the tick's
/// own. A client that fell behind thus gets the newest keyframe, never a
/// backlog.
pub fn to_send<'a>(frame: &'a Frame, have: &mut u64) -> impl Iterator<Item = &'a Body> {
    let keyframe = (*have != frame.keyframe_version).then(|| {
        *have = frame.keyframe_version;
        &frame.keyframe
    });
    let delta = (!frame.is_keyframe() || keyframe.is_none()).then_some(&frame.delta);
    keyframe.into_iter().chain(delta)
}

/// Whether a request says it takes gzip.
fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Body;
    use bytes::Bytes;

    fn frame(version: u64, keyframe_version: u64) -> Frame {
        let body = |s: &'static str| Body {
            raw: Bytes::from_static(s.as_bytes()),
            ..Body::default()
        };
        Frame {
            version,
            keyframe_version,
            keyframe: body("K"),
            delta: body(if version == keyframe_version {
                "K"
            } else {
                "D"
            }),
            json: Body::default(),
            history: crate::encode::HistoryDoc::default(),
        }
    }

    fn sent(f: &Frame, have: &mut u64) -> Vec<&'static str> {
        to_send(f, have)
            .map(|b| if b.raw.as_ref() == b"K" { "K" } else { "D" })
            .collect()
    }

    #[test]
    fn a_client_gets_the_keyframe_it_lacks_then_deltas() {
        let mut have = 0;
        // Joining between keyframes: the keyframe, then the delta.
        assert_eq!(sent(&frame(12, 10), &mut have), ["K", "D"]);
        assert_eq!(sent(&frame(13, 10), &mut have), ["D"]);
        // A keyframe tick: the keyframe once.
        assert_eq!(sent(&frame(15, 15), &mut have), ["K"]);
        // Fell behind past a keyframe: the newest keyframe, then the delta.
        assert_eq!(sent(&frame(27, 25), &mut have), ["K", "D"]);
        assert_eq!(have, 25);
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        let h = |v: &str| {
            let mut m = axum::http::HeaderMap::new();
            m.insert(
                axum::http::header::ACCEPT_ENCODING,
                v.parse().expect("header"),
            );
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, gzip;q=0.8")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&axum::http::HeaderMap::new()));
    }
}
