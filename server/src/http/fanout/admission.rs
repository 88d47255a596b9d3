//! Who may hold a socket: a cap on client sockets in total and per client
//! address, an origin check for WebSockets, and the numbers `/metrics`
//! shows, per socket and per transport.
//!
//! Every socket the public listener accepts takes a [`SocketPermit`] at
//! once, before a byte of it is read, and holds it for as long as the
//! socket lives (through a WebSocket upgrade too); dropping the permit
//! gives the place back. A socket past a cap is answered `503` (or `429`
//! for one address) with a jittered `Retry-After` and closed (see
//! `serve.rs`), so a crowd that is turned away does not come back in one
//! wave, and nothing the server holds is outside the caps.
//!
//! Long-lived requests (a WebSocket, an event stream, a waiting long-poll)
//! also hold a [`Slot`] of their transport, which only counts: the caps
//! were applied to the socket already.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
};

use crate::http::metrics::{label_values, Families};

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

/// Counters of the public listener's sockets, whatever they carry.
#[derive(Debug, Default)]
pub struct SocketStats {
    pub accepted: AtomicU64,
    pub refused_full: AtomicU64,
    pub refused_address: AtomicU64,
    /// Sockets closed for not sending a whole request head in time (an idle
    /// keep-alive socket included).
    pub header_timeouts: AtomicU64,
}

/// The limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Client sockets held at once on the public listener, whatever they
    /// carry (a page load, an API call, a stream), counted from accept.
    pub max_connections: usize,
    /// Client sockets held at once from one client address; 0 for no limit
    /// (behind a load balancer every client has its address).
    pub max_per_address: usize,
    /// Origins (`scheme://host[:port]`) whose pages may open the WebSocket,
    /// besides the server's own (see [`Admission::origin_allowed`]).
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
    /// `limits.allowed_origins`, parsed; entries that do not parse (the
    /// configuration refuses them) match nothing.
    allowed: Vec<Origin>,
    /// Sockets held now.
    open: AtomicUsize,
    per_address: DashMap<IpAddr, usize>,
    sockets: SocketStats,
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

impl Refusal {
    /// The status line's code and reason, and the body's text.
    fn status(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::Full => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server full, retry later\n",
            ),
            Refusal::TooManyFromAddress => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address\n",
            ),
            Refusal::Origin => (StatusCode::FORBIDDEN, "origin not allowed\n"),
        }
    }

    /// The whole answer as raw HTTP/1.1 bytes, for a socket that is refused
    /// before any request on it is read: it says `Connection: close`, since
    /// the socket is closed right after.
    pub fn raw_response(self, retry_after: u64) -> Vec<u8> {
        let (status, text) = self.status();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            text.len()
        );
        if self != Refusal::Origin {
            let _ = write!(out, "retry-after: {retry_after}\r\n");
        }
        out.push_str("\r\n");
        out.push_str(text);
        out.into_bytes()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
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

/// One accepted socket's place under the caps, given back on drop.
#[derive(Debug)]
pub struct SocketPermit {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
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

/// A long-lived request of one transport, counted while it lives.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    transport: Transport,
}

impl Slot {
    pub fn stats(&self) -> &TransportStats {
        self.admission.stats(self.transport)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats().open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        let allowed = limits
            .allowed_origins
            .iter()
            .filter_map(|o| Origin::parse_allowed(o))
            .collect();
        Arc::new(Admission {
            limits,
            allowed,
            open: AtomicUsize::new(0),
            per_address: DashMap::new(),
            sockets: SocketStats::default(),
            stats: Default::default(),
            socket_timeouts: Arc::default(),
        })
    }

    pub fn stats(&self, transport: Transport) -> &TransportStats {
        &self.stats[transport as usize]
    }

    /// Browsers watching now: clients on a WebSocket or an event stream,
    /// or waiting on a long-poll (one between two polls is not counted).
    pub fn viewers(&self) -> u64 {
        Transport::ALL
            .iter()
            .map(|&t| self.stats(t).open.load(Ordering::Relaxed) as u64)
            .sum()
    }

    pub fn sockets(&self) -> &SocketStats {
        &self.sockets
    }

    /// Sockets held right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a place for a socket just accepted from `address`, or says why
    /// not.
    pub fn admit_socket(self: &Arc<Self>, address: IpAddr) -> Result<SocketPermit, Refusal> {
        // Reserve first, then check: concurrent admissions cannot overshoot.
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.sockets.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        if self.limits.max_per_address > 0 {
            let mut n = self.per_address.entry(address).or_insert(0);
            if *n >= self.limits.max_per_address {
                drop(n);
                self.open.fetch_sub(1, Ordering::Relaxed);
                self.sockets.refused_address.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::TooManyFromAddress);
            }
            *n += 1;
        }
        self.sockets.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(SocketPermit {
            admission: self.clone(),
            address,
        })
    }

    /// Counts a long-lived request of `transport` for as long as the slot
    /// lives. Its socket is already under the caps.
    pub fn track(self: &Arc<Self>, transport: Transport) -> Slot {
        let stats = self.stats(transport);
        stats.open.fetch_add(1, Ordering::Relaxed);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        Slot {
            admission: self.clone(),
            transport,
        }
    }

    /// Whether a WebSocket request may connect, by its `Origin`:
    ///
    /// - no `Origin` at all: yes (not a browser, so not a page of another
    ///   site riding on a visitor's browser);
    /// - `Origin` equal to the request's own origin: `http://` and the
    ///   `Host` header, or `https://` and the `Host` header when a proxy
    ///   in front says the request came over TLS (`X-Forwarded-Proto:
    ///   https` or `Forwarded: proto=https`);
    /// - `Origin` equal to one of `--allowed-origin`.
    ///
    /// Origins compare by scheme, host (case-insensitive) and port (a
    /// default port, 80 for http and 443 for https, is the same as none).
    /// `null`, anything that is not `http(s)://host[:port]`, and a request
    /// with two `Origin` headers are refused.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let mut origins = headers.get_all(header::ORIGIN).iter();
        let Some(first) = origins.next() else {
            return true;
        };
        let origin = match (first.to_str().ok(), origins.next()) {
            (Some(value), None) => Origin::parse(value),
            _ => None,
        };
        let allowed =
            origin.is_some_and(|o| own_origins(headers).contains(&o) || self.allowed.contains(&o));
        if !allowed {
            self.stats(Transport::Ws)
                .refused_origin
                .fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }
}

label_values!(
    /// Which cap turned a socket away.
    RefusedBy {
        Full => "full",
        Address => "address",
    }
);

#[derive(Debug, Clone, EncodeLabelSet)]
struct ReasonLabel {
    reason: RefusedBy,
}

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// One of the three transports, [`Transport::ALL`].
#[derive(Debug, Clone, EncodeLabelSet)]
struct TransportLabel {
    transport: Transport,
}

/// The socket and per-transport families for `/metrics`, read at scrape.
impl Collector for Admission {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.sockets;
        let mut f = Families(encoder);
        f.gauge(
            "livemap_sockets_open",
            "Client sockets held now on the public listener (any request, any transport).",
            self.open() as u64,
        )?;
        f.gauge(
            "livemap_sockets_limit",
            "Most client sockets held at once: --max-connections, lowered to fit the open-file limit.",
            self.limits.max_connections as u64,
        )?;
        f.counter(
            "livemap_sockets_accepted_total",
            "Client sockets admitted under the caps.",
            s.accepted.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_sockets_header_timeouts_total",
            "Client sockets closed for not sending a whole request head within --header-timeout-secs (idle keep-alive sockets included).",
            s.header_timeouts.load(Ordering::Relaxed),
        )?;
        f.counters(
            "livemap_sockets_refused_total",
            "Client sockets answered 503 (full: the total cap) or 429 (address: the per-address cap) and closed at accept.",
            [
                (RefusedBy::Full, &s.refused_full),
                (RefusedBy::Address, &s.refused_address),
            ]
            .map(|(reason, n)| (ReasonLabel { reason }, n.load(Ordering::Relaxed))),
        )?;
        f.counter(
            "livemap_socket_write_timeouts_total",
            "Client sockets cut off for taking no data within the write timeout.",
            self.socket_timeouts.load(Ordering::Relaxed),
        )?;
        let per_transport = |read: fn(&TransportStats) -> u64| {
            Transport::ALL
                .map(|transport| (TransportLabel { transport }, read(self.stats(transport))))
        };
        f.gauges(
            "livemap_connections",
            "Streams held now (WebSockets, event streams, waiting long-polls).",
            per_transport(|s| s.open.load(Ordering::Relaxed) as u64),
        )?;
        f.counters(
            "livemap_connections_accepted_total",
            "Streams started.",
            per_transport(|s| s.accepted.load(Ordering::Relaxed)),
        )?;
        f.counters(
            "livemap_connections_refused_origin_total",
            "WebSocket requests from an origin not allowed.",
            per_transport(|s| s.refused_origin.load(Ordering::Relaxed)),
        )?;
        f.counters(
            "livemap_frames_sent_total",
            "Frames (or responses) sent.",
            per_transport(|s| s.frames.load(Ordering::Relaxed)),
        )?;
        f.counters(
            "livemap_bytes_sent_total",
            "Bytes of frames sent (before TLS and framing).",
            per_transport(|s| s.bytes.load(Ordering::Relaxed)),
        )?;
        f.counters(
            "livemap_clients_dropped_slow_total",
            "Clients dropped for not taking frames or not answering pings.",
            per_transport(|s| s.dropped_slow.load(Ordering::Relaxed)),
        )
    }
}

/// A web origin as browsers serialise it: scheme, host and port, with the
/// host in lower case and the scheme's default port filled in, so that two
/// spellings of one origin compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses an `Origin` header's value: `http://` or `https://`, a host
    /// (a name, an IPv4 address or a bracketed IPv6 address) and an
    /// optional port, and nothing else (no path, no user, no `null`).
    pub fn parse(value: &str) -> Option<Origin> {
        let (scheme, authority) = value.split_once("://")?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        Origin::with_authority(https, authority)
    }

    /// Parses an `--allowed-origin` entry: as [`Origin::parse`], but one
    /// trailing `/` (as an origin is often written in a URL) is allowed.
    pub fn parse_allowed(value: &str) -> Option<Origin> {
        let value = value.trim();
        Origin::parse(value.strip_suffix('/').unwrap_or(value))
    }

    /// The origin of scheme `https` (or http) and `authority`
    /// (`host[:port]`, as in a `Host` header).
    fn with_authority(https: bool, authority: &str) -> Option<Origin> {
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            Some(port) => port,
            None if https => 443,
            None => 80,
        };
        Some(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// Splits `host[:port]`, checking that the host is a plain name or IPv4
/// address (letters, digits, `-`, `.`, `_`) or a bracketed IPv6 address,
/// and that a port, if there is a colon, is a number that fits.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ipv6 = !inside.is_empty()
            && inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !ipv6 {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&authority[..inside.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || !(host.starts_with('[') || host.chars().all(plain)) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// The origins a request counts as its own: `http://` and its `Host`, and
/// `https://` and its `Host` when a proxy in front says it came over TLS.
/// A browser cannot set these headers on a WebSocket handshake, so a page
/// of another site cannot claim either.
fn own_origins(headers: &HeaderMap) -> Vec<Origin> {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Vec::new();
    };
    let mut own: Vec<Origin> = Origin::with_authority(false, host).into_iter().collect();
    if forwarded_https(headers) {
        own.extend(Origin::with_authority(true, host));
    }
    own
}

/// Whether the nearest proxy says the request came over TLS:
/// `X-Forwarded-Proto: https`, or `proto=https` in `Forwarded` (RFC 7239).
/// Only the first (client-side) entry of each counts.
fn forwarded_https(headers: &HeaderMap) -> bool {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
    };
    let x_forwarded = first("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let forwarded = first("forwarded").is_some_and(|element| {
        element.split(';').any(|pair| {
            pair.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("proto")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("https")
            })
        })
    });
    x_forwarded || forwarded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_hold_and_permits_give_their_place_back() {
        let a = Admission::new(Limits {
            max_connections: 3,
            max_per_address: 2,
            allowed_origins: Vec::new(),
        });
        let s1 = a.admit_socket(ip(1)).expect("first");
        let s2 = a.admit_socket(ip(1)).expect("second");
        assert_eq!(
            a.admit_socket(ip(1)).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let s3 = a.admit_socket(ip(2)).expect("another address");
        assert_eq!(a.admit_socket(ip(3)).err(), Some(Refusal::Full));
        assert_eq!(a.open(), 3);
        drop((s1, s2, s3));
        assert_eq!(a.open(), 0);
        assert!(a.per_address.is_empty(), "no entry left behind");
        let again = a.admit_socket(ip(1)).expect("a freed place");
        let out = crate::http::metrics::render_collector(a.clone());
        assert!(out.contains("livemap_sockets_refused_total{reason=\"full\"} 1\n"));
        assert!(out.contains("livemap_sockets_refused_total{reason=\"address\"} 1\n"));
        assert!(out.contains("livemap_sockets_open 1\n"));
        assert!(out.contains("livemap_sockets_accepted_total 4\n"));
        assert!(out.contains("livemap_sockets_limit 3\n"));
        drop(again);
    }

    #[test]
    fn slots_count_streams_per_transport() {
        let a = Admission::new(Limits::default());
        let ws = a.track(Transport::Ws);
        let sse = a.track(Transport::Sse);
        assert_eq!(a.stats(Transport::Ws).open.load(Ordering::Relaxed), 1);
        drop(ws);
        assert_eq!(a.stats(Transport::Ws).open.load(Ordering::Relaxed), 0);
        assert_eq!(a.stats(Transport::Ws).accepted.load(Ordering::Relaxed), 1);
        let out = crate::http::metrics::render_collector(a.clone());
        assert!(out.contains("livemap_connections{transport=\"sse\"} 1\n"));
        drop(sse);
    }

    #[test]
    fn refusals_before_a_request_are_whole_http_answers() {
        let raw = String::from_utf8(Refusal::Full.raw_response(7)).expect("ASCII");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.1 503 Service Unavailable"));
        let headers: Vec<&str> = lines.collect();
        assert!(headers.contains(&"retry-after: 7"));
        assert!(headers.contains(&"connection: close"));
        assert!(headers.contains(&format!("content-length: {}", body.len()).as_str()));
        let raw = String::from_utf8(Refusal::TooManyFromAddress.raw_response(5)).expect("ASCII");
        assert!(raw.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(raw.contains("\r\nretry-after: 5\r\n"));
    }

    fn admission(allowed: &[&str]) -> Arc<Admission> {
        Admission::new(Limits {
            allowed_origins: allowed.iter().map(|s| s.to_string()).collect(),
            ..Limits::default()
        })
    }

    fn request(host: &str, origin: Option<&str>, extra: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).expect("header"));
        }
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn a_request_without_an_origin_is_not_a_browser_and_is_allowed() {
        assert!(admission(&[]).origin_allowed(&request("live.example:8080", None, &[])));
    }

    #[test]
    fn the_own_origin_is_http_and_the_host_unless_a_proxy_says_https() {
        let a = admission(&[]);
        let host = "live.example:8080";
        assert!(a.origin_allowed(&request(host, Some("http://live.example:8080"), &[])));
        assert!(a.origin_allowed(&request(host, Some("HTTP://Live.Example:8080"), &[])));
        // The same host and port over TLS is another origin, unless a
        // proxy in front says the request came over TLS.
        assert!(!a.origin_allowed(&request(host, Some("https://live.example:8080"), &[])));
        for proxied in [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "HTTPS, http"),
            ("forwarded", "for=192.0.2.1;proto=https, proto=http"),
            ("forwarded", "proto=\"https\""),
        ] {
            let h = request(host, Some("https://live.example:8080"), &[proxied]);
            assert!(a.origin_allowed(&h), "{proxied:?}");
        }
        let h = request(
            host,
            Some("https://live.example:8080"),
            &[("x-forwarded-proto", "http, https")],
        );
        assert!(!a.origin_allowed(&h), "only the client-side entry counts");
        // Another port, or no port where the host has one, is another origin.
        assert!(!a.origin_allowed(&request(host, Some("http://live.example:8081"), &[])));
        assert!(!a.origin_allowed(&request(host, Some("http://live.example"), &[])));
    }

    #[test]
    fn default_ports_are_the_same_as_none() {
        let a = admission(&[]);
        assert!(a.origin_allowed(&request(
            "live.example",
            Some("http://live.example:80"),
            &[]
        )));
        assert!(a.origin_allowed(&request(
            "live.example:80",
            Some("http://live.example"),
            &[]
        )));
        let tls = [("x-forwarded-proto", "https")];
        assert!(a.origin_allowed(&request(
            "live.example",
            Some("https://live.example:443"),
            &tls
        )));
        assert!(!a.origin_allowed(&request(
            "live.example",
            Some("https://live.example:80"),
            &tls
        )));
    }

    #[test]
    fn look_alike_hosts_are_other_origins() {
        let a = admission(&["https://shop.example"]);
        let host = "live.example";
        for evil in [
            "http://live.example.evil.com",
            "http://evil.com.live.example.x",
            "http://evillive.example",
            "http://live.example@evil.com",
            "http://evil.com/live.example",
            "https://shop.example.evil.com",
            "https://evil-shop.example",
        ] {
            assert!(!a.origin_allowed(&request(host, Some(evil), &[])), "{evil}");
        }
    }

    #[test]
    fn allowed_origins_match_exactly_by_scheme_host_and_port() {
        let a = admission(&["https://shop.example", "http://Kiosk.example:8000/"]);
        let host = "live.example";
        assert!(a.origin_allowed(&request(host, Some("https://shop.example"), &[])));
        assert!(a.origin_allowed(&request(host, Some("https://SHOP.example:443"), &[])));
        assert!(a.origin_allowed(&request(host, Some("http://kiosk.example:8000"), &[])));
        assert!(!a.origin_allowed(&request(host, Some("http://shop.example"), &[])));
        assert!(!a.origin_allowed(&request(host, Some("https://shop.example:8443"), &[])));
        assert!(!a.origin_allowed(&request(host, Some("http://kiosk.example"), &[])));
        assert!(!a.origin_allowed(&request(host, Some("https://kiosk.example:8000"), &[])));
    }

    #[test]
    fn null_and_malformed_origins_are_refused() {
        let a = admission(&["https://shop.example"]);
        let host = "live.example";
        for bad in [
            "null",
            "",
            "live.example",
            "//live.example",
            "ftp://live.example",
            "http://",
            "http://live.example:",
            "http://live.example:99999",
            "http://live.example:80x",
            "http://live.example/",
            "http://live.example?x",
            "http://live example",
            "http://[::1",
            "http://[]",
            "https://shop.example/",
        ] {
            assert!(!a.origin_allowed(&request(host, Some(bad), &[])), "{bad:?}");
        }
        assert_eq!(
            a.stats(Transport::Ws)
                .refused_origin
                .load(Ordering::Relaxed),
            15
        );
        // Two Origin headers: not something a browser sends.
        let mut h = request(host, Some("http://live.example"), &[]);
        h.append(
            header::ORIGIN,
            HeaderValue::from_static("http://live.example"),
        );
        assert!(!a.origin_allowed(&h));
    }

    #[test]
    fn ip_literal_hosts_work() {
        let a = admission(&[]);
        assert!(a.origin_allowed(&request(
            "127.0.0.1:8080",
            Some("http://127.0.0.1:8080"),
            &[]
        )));
        assert!(a.origin_allowed(&request("[::1]:8080", Some("http://[::1]:8080"), &[])));
        assert!(!a.origin_allowed(&request("[::1]:8080", Some("http://[::2]:8080"), &[])));
    }

    #[test]
    fn allowed_origin_entries_parse() {
        assert!(Origin::parse_allowed("https://shop.example/").is_some());
        assert!(Origin::parse_allowed(" https://shop.example:8443 ").is_some());
        assert!(Origin::parse_allowed("shop.example").is_none());
        assert!(Origin::parse_allowed("https://shop.example/path").is_none());
        assert!(Origin::parse_allowed("*").is_none());
    }
}
