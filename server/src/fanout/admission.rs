//! Who may hold a connection: a cap on connections in total and per client
//! address, an origin check for WebSockets, and the per-transport numbers
//! `/metrics` shows.
//!
//! Every long-lived request (a WebSocket, an event stream, a waiting
//! long-poll) holds a [`Slot`] for as long as it lives; dropping the slot
//! gives the place back. Past a cap the answer is `503` (or `429` for one
//! address) with a jittered `Retry-After`, so a crowd that is turned away
//! does not come back in one wave.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;

use crate::metrics::family;

/// The three ways a browser follows the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ws = 0,
    Sse = 1,
    LongPoll = 2,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Ws, Transport::Sse, Transport::LongPoll];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::LongPoll => "longpoll",
        }
    }
}

/// Counters of one transport.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub refused_full: AtomicU64,
    pub refused_address: AtomicU64,
    pub refused_origin: AtomicU64,
    /// Frames (or responses) sent, and their bytes.
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Clients dropped because they did not take a frame in time or stopped
    /// answering pings.
    pub dropped_slow: AtomicU64,
}

impl TransportStats {
    pub fn sent(&self, bytes: usize) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// A metric family: name, kind, help, and how to read it from a transport.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TransportStats) -> u64,
);

/// The limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections held at once over all transports.
    pub max_connections: usize,
    /// Connections held at once from one client address; 0 for no limit
    /// (behind a load balancer every client has its address).
    pub max_per_address: usize,
    /// Origins whose pages may open the WebSocket, besides the server's
    /// own (an `Origin` equal to the request's `Host`). Empty: only its own.
    pub allowed_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 150_000,
            max_per_address: 1_000,
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    open: AtomicUsize,
    per_address: DashMap<IpAddr, usize>,
    stats: [TransportStats; 3],
    /// Sockets the listener cut off because they took no data for longer
    /// than the write timeout (any transport; see `listener.rs`).
    pub socket_timeouts: Arc<AtomicU64>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Full,
    TooManyFromAddress,
    Origin,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Refusal::Full => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server full, retry later\n",
            ),
            Refusal::TooManyFromAddress => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address\n",
            ),
            Refusal::Origin => (StatusCode::FORBIDDEN, "origin not allowed\n"),
        };
        let mut response = (status, text).into_response();
        if self != Refusal::Origin {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs()));
        }
        response
    }
}

/// 5 to 15 seconds, at random: spreads the retries of a turned-away crowd.
pub fn retry_after_secs() -> u64 {
    5 + rand::random::<u64>() % 11
}

/// A place held by one connection, given back on drop.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    address: IpAddr,
    transport: Transport,
}

impl Slot {
    pub fn stats(&self) -> &TransportStats {
        self.admission.stats(self.transport)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
        self.stats().open.fetch_sub(1, Ordering::Relaxed);
        if self.admission.limits.max_per_address > 0 {
            self.admission
                .per_address
                .remove_if_mut(&self.address, |_, n| {
                    *n -= 1;
                    *n == 0
                });
        }
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            open: AtomicUsize::new(0),
            per_address: DashMap::new(),
            stats: Default::default(),
            socket_timeouts: Arc::default(),
        })
    }

    pub fn stats(&self, transport: Transport) -> &TransportStats {
        &self.stats[transport as usize]
    }

    /// Connections held right now, over all transports.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a place for a connection from `address`, or says why not.
    pub fn admit(self: &Arc<Self>, address: IpAddr, transport: Transport) -> Result<Slot, Refusal> {
        let stats = self.stats(transport);
        // Reserve first, then check: concurrent admissions cannot overshoot.
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            stats.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        if self.limits.max_per_address > 0 {
            let mut n = self.per_address.entry(address).or_insert(0);
            if *n >= self.limits.max_per_address {
                drop(n);
                self.open.fetch_sub(1, Ordering::Relaxed);
                stats.refused_address.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::TooManyFromAddress);
            }
            *n += 1;
        }
        stats.open.fetch_add(1, Ordering::Relaxed);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            admission: self.clone(),
            address,
            transport,
        })
    }

    /// Whether a WebSocket request's `Origin` may connect: none at all (not
    /// a browser), the server's own host, or one of the allowed origins.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            return true;
        };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host)) {
            return true;
        }
        let allowed = self
            .limits
            .allowed_origins
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin));
        if !allowed {
            self.stats(Transport::Ws)
                .refused_origin
                .fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// The per-transport families for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        let families: [Family; 8] = [
            (
                "livemap_connections",
                "gauge",
                "Connections held now.",
                |s| s.open.load(Ordering::Relaxed) as u64,
            ),
            (
                "livemap_connections_accepted_total",
                "counter",
                "Connections accepted.",
                |s| s.accepted.load(Ordering::Relaxed),
            ),
            (
                "livemap_connections_refused_full_total",
                "counter",
                "Connections turned away at the total cap.",
                |s| s.refused_full.load(Ordering::Relaxed),
            ),
            (
                "livemap_connections_refused_address_total",
                "counter",
                "Connections turned away at the per-address cap.",
                |s| s.refused_address.load(Ordering::Relaxed),
            ),
            (
                "livemap_connections_refused_origin_total",
                "counter",
                "WebSocket requests from an origin not allowed.",
                |s| s.refused_origin.load(Ordering::Relaxed),
            ),
            (
                "livemap_frames_sent_total",
                "counter",
                "Frames (or responses) sent.",
                |s| s.frames.load(Ordering::Relaxed),
            ),
            (
                "livemap_bytes_sent_total",
                "counter",
                "Bytes of frames sent (before TLS and framing).",
                |s| s.bytes.load(Ordering::Relaxed),
            ),
            (
                "livemap_clients_dropped_slow_total",
                "counter",
                "Clients dropped for not taking frames or not answering pings.",
                |s| s.dropped_slow.load(Ordering::Relaxed),
            ),
        ];
        let timeouts = "livemap_socket_write_timeouts_total";
        family(
            out,
            timeouts,
            "counter",
            "Client sockets cut off for taking no data within the write timeout.",
        );
        let _ = writeln!(
            out,
            "{timeouts} {}",
            self.socket_timeouts.load(Ordering::Relaxed)
        );
        for (name, kind, help, read) in families {
            family(out, name, kind, help);
            for t in Transport::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{transport=\"{}\"}} {}",
                    t.as_str(),
                    read(self.stats(t))
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_hold_and_slots_give_their_place_back() {
        let a = Admission::new(Limits {
            max_connections: 3,
            max_per_address: 2,
            allowed_origins: Vec::new(),
        });
        let s1 = a.admit(ip(1), Transport::Ws).expect("first");
        let s2 = a.admit(ip(1), Transport::Sse).expect("second");
        assert_eq!(
            a.admit(ip(1), Transport::Ws).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let s3 = a
            .admit(ip(2), Transport::LongPoll)
            .expect("another address");
        assert_eq!(a.admit(ip(3), Transport::Ws).err(), Some(Refusal::Full));
        assert_eq!(a.open(), 3);
        drop((s1, s2, s3));
        assert_eq!(a.open(), 0);
        assert!(a.per_address.is_empty(), "no entry left behind");
        assert_eq!(
            a.stats(Transport::Ws).refused_full.load(Ordering::Relaxed),
            1
        );
        assert_eq!(a.stats(Transport::Ws).open.load(Ordering::Relaxed), 0);
        let mut out = String::new();
        a.render_metrics(&mut out);
        assert!(out.contains("livemap_connections_refused_address_total{transport=\"ws\"} 1"));
    }

    #[test]
    fn origins_are_checked_against_the_host_and_the_allowed_list() {
        let a = Admission::new(Limits {
            allowed_origins: vec!["https://shop.example".into()],
            ..Limits::default()
        });
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("live.example:8080"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_str(o).expect("header"));
            }
            h
        };
        assert!(a.origin_allowed(&headers(None)));
        assert!(a.origin_allowed(&headers(Some("http://live.example:8080"))));
        assert!(a.origin_allowed(&headers(Some("https://shop.example"))));
        assert!(!a.origin_allowed(&headers(Some("https://evil.example"))));
    }
}
