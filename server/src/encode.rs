//! Encode stage: each snapshot is encoded once, in every form a transport
//! sends, and the bytes are shared by every connection:
//! - FlatBuffers for browsers: a keyframe (everything) every few seconds
//!   and a delta (totals, rates, arcs, the newest minute) every tick, each
//!   also gzipped for HTTP and as a ready Server-Sent Event;
//! - the public JSON for `/api/snapshot`, also gzipped.
//!
//! The history (`/api/history`) is larger and rarely asked for, so it is
//! encoded on the first request of a tick, and that tick's later requests
//! share those bytes.
//!
//! Previous stage: [`crate::snapshot`]. Next stage: [`crate::http::fanout`].

use std::io::Write;
use std::sync::OnceLock;

use base64::Engine as _;
use bytes::Bytes;
use flate2::write::GzEncoder;
use livemap_events::time::format_rfc3339_ms;
use livemap_wire::{MomentKind, Snapshot};
use serde::Serialize;

use crate::snapshot::{Built, History};
use livemap_engine::aggregate::MINUTE_MS;

/// One tick's snapshot in every encoding the transports send.
#[derive(Debug, Clone)]
pub struct Frame {
    pub version: u64,
    /// The version of the newest keyframe: this frame's own on a keyframe
    /// tick, an earlier one otherwise.
    pub keyframe_version: u64,
    /// The newest keyframe (FlatBuffers), what a client without it needs
    /// first.
    pub keyframe: Body,
    /// This tick's frame: a delta, or on a keyframe tick the keyframe.
    pub delta: Body,
    /// The public JSON document (`docs/API.md`).
    pub json: Body,
    /// The sale's history as of this tick, for `/api/history`.
    pub history: HistoryDoc,
}

impl Frame {
    /// Whether this tick's frame is itself a keyframe.
    pub fn is_keyframe(&self) -> bool {
        self.version == self.keyframe_version
    }
}

/// One encoded body, plus its gzip and (for binary frames) its
/// Server-Sent Event, made once and shared.
#[derive(Debug, Clone, Default)]
pub struct Body {
    pub raw: Bytes,
    pub gzip: Bytes,
    /// `event: keyframe|delta`, `id: VERSION`, `data: BASE64`, blank line.
    pub sse: Bytes,
}

impl Body {
    fn new(raw: Vec<u8>) -> Body {
        let mut gz = GzEncoder::new(
            Vec::with_capacity(raw.len() / 2 + 64),
            flate2::Compression::fast(),
        );
        // Writing to a Vec cannot fail.
        let gzip = gz
            .write_all(&raw)
            .and_then(|()| gz.finish())
            .unwrap_or_default();
        Body {
            raw: Bytes::from(raw),
            gzip: Bytes::from(gzip),
            sse: Bytes::new(),
        }
    }

    fn binary(snapshot: &Snapshot) -> Body {
        let mut body = Body::new(livemap_wire::encode(snapshot));
        let kind = if snapshot.keyframe {
            "keyframe"
        } else {
            "delta"
        };
        let data = base64::engine::general_purpose::STANDARD.encode(&body.raw);
        body.sse = Bytes::from(format!(
            "event: {kind}\nid: {}\ndata: {data}\n\n",
            snapshot.version
        ));
        body
    }
}

/// What a delta keeps of a snapshot: everything that changes every tick
/// and is small. The lists wait for the next keyframe.
fn delta_of(full: &Snapshot) -> Snapshot {
    Snapshot {
        keyframe: false,
        trends: Vec::new(),
        countries: Vec::new(),
        channels: Vec::new(),
        top_shops: Vec::new(),
        top_cities: Vec::new(),
        minutes: full.minutes.last().copied().into_iter().collect(),
        ingest: livemap_wire::Ingest {
            rejected: Vec::new(),
            ..full.ingest.clone()
        },
        ..full.clone()
    }
}

/// The per-minute history of one tick, and its JSON once someone asks.
#[derive(Debug, Clone, Default)]
pub struct HistoryDoc {
    version: u64,
    generated_at_ms: i64,
    history: std::sync::Arc<History>,
    json: OnceLock<Bytes>,
}

impl HistoryDoc {
    /// The JSON document (see `docs/API.md`), encoded at most once.
    pub fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| {
                let m = &self.history.minutes;
                let doc = PublicHistory {
                    version: self.version,
                    generated_at: format_rfc3339_ms(self.generated_at_ms),
                    step_ms: MINUTE_MS,
                    start_ms: self.history.start_ms,
                    start: self.history.start_ms.map(format_rfc3339_ms),
                    orders: m.iter().map(|b| b.orders).collect(),
                    gmv_usd_cents: m.iter().map(|b| b.usd_cents).collect(),
                    carbon_grams: m.iter().map(|b| b.carbon_grams).collect(),
                };
                Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
            })
            .clone()
    }
}

impl Frame {
    /// Encodes a tick. `previous` is the last frame, whose keyframe a delta
    /// tick carries on.
    pub fn encode(built: &Built, previous: Option<&Frame>) -> Frame {
        let s = &built.snapshot;
        let view = PublicSnapshot {
            version: s.version,
            generated_at: format_rfc3339_ms(s.generated_at_ms),
            stale: s.stale,
            viewers: s.viewers,
            totals: PublicTotals {
                orders: s.totals.orders,
                gmv_usd_cents: s.totals.gmv_usd_cents,
                unique_shoppers: s.totals.unique_shoppers,
                carbon_kg: s.totals.carbon_grams as f64 / 1000.0,
            },
            rates: PublicRates {
                orders_per_minute: s.rates.orders_per_minute,
                gmv_usd_cents_per_minute: s.rates.gmv_usd_cents_per_minute,
                minute_start: (s.rates.minute_start_ms != 0)
                    .then(|| format_rfc3339_ms(s.rates.minute_start_ms)),
            },
            ingest: PublicIngest {
                accepted: s.ingest.accepted,
                duplicates: s.ingest.duplicates,
                filtered: s.ingest.filtered,
                rejected: s
                    .ingest
                    .rejected
                    .iter()
                    .map(|(r, n)| (r.as_str(), *n))
                    .collect(),
                late: s.ingest.late,
            },
            trends: built
                .all_trends
                .iter()
                .map(|t| PublicTrend {
                    category: &t.category,
                    change: t.change,
                })
                .collect(),
            arcs: built
                .recent_arcs
                .iter()
                .rev()
                .map(|a| PublicArc {
                    from: [a.from.lat, a.from.lon],
                    to: [a.to.lat, a.to.lon],
                    usd_cents: a.usd_cents,
                    at: format_rfc3339_ms(a.at_ms),
                    channel: a.channel.as_str(),
                })
                .collect(),
            moments: built
                .recent_moments
                .iter()
                .rev()
                .map(|m| {
                    let sale = m.kind == MomentKind::FirstSale;
                    PublicMoment {
                        kind: m.kind.as_str(),
                        place: sale.then_some(m.place.as_str()),
                        country: sale.then_some(m.country.as_str()),
                        shop: sale.then_some([m.shop.lat, m.shop.lon]),
                        usd_cents: (!sale).then_some(m.usd_cents),
                        at: format_rfc3339_ms(m.at_ms),
                    }
                })
                .collect(),
            alerts: (!s.alerts.is_empty()).then_some(&s.alerts),
            tick_ms: s.tick_ms,
            breakdowns: PublicBreakdowns {
                by_country: built
                    .all_countries
                    .iter()
                    .map(PublicSlice::country)
                    .collect(),
                by_channel: s.channels.iter().map(PublicSlice::channel).collect(),
                top_shops: built
                    .top_shops
                    .iter()
                    .map(|r| PublicShop {
                        shop_id: r.key.parse().unwrap_or_default(),
                        country: &r.country,
                        place: &r.place,
                        unique_shoppers: r.value,
                    })
                    .collect(),
                top_cities: built
                    .top_cities
                    .iter()
                    .map(|r| PublicCity {
                        city: &r.key,
                        country: &r.country,
                        orders: r.value,
                    })
                    .collect(),
            },
        };
        let carried = previous.filter(|_| !built.keyframe);
        let (keyframe_version, keyframe, delta) = match carried {
            Some(p) => (
                p.keyframe_version,
                p.keyframe.clone(),
                Body::binary(&delta_of(s)),
            ),
            None => {
                // The built snapshot is the keyframe form already.
                let keyframe = Body::binary(s);
                (s.version, keyframe.clone(), keyframe)
            }
        };
        Frame {
            version: s.version,
            keyframe_version,
            keyframe,
            delta,
            // Serializing plain structs of numbers and strings cannot fail.
            json: Body::new(serde_json::to_vec(&view).unwrap_or_default()),
            history: HistoryDoc {
                version: s.version,
                generated_at_ms: s.generated_at_ms,
                history: built.history.clone(),
                json: OnceLock::new(),
            },
        }
    }
}

#[derive(Serialize)]
struct PublicSnapshot<'a> {
    version: u64,
    generated_at: String,
    stale: bool,
    /// Browsers watching now.
    viewers: u64,
    totals: PublicTotals,
    rates: PublicRates,
    ingest: PublicIngest<'a>,
    trends: Vec<PublicTrend<'a>>,
    /// Most recent first.
    arcs: Vec<PublicArc>,
    /// The last few moments (first sales, milestones), most recent first.
    moments: Vec<PublicMoment<'a>>,
    /// Anomaly flags raised now, only with `--public-anomalies`.
    #[serde(skip_serializing_if = "Option::is_none")]
    alerts: Option<&'a Vec<String>>,
    tick_ms: u32,
    breakdowns: PublicBreakdowns<'a>,
}

#[derive(Serialize)]
struct PublicBreakdowns<'a> {
    /// Every buyer country, largest sales first.
    by_country: Vec<PublicSlice<'a>>,
    by_channel: Vec<PublicSlice<'a>>,
    /// Shops by estimated unique shoppers over the sale, most first.
    top_shops: Vec<PublicShop<'a>>,
    /// Buyer cities by estimated orders over the sale, most first.
    top_cities: Vec<PublicCity<'a>>,
}

#[derive(Serialize)]
struct PublicShop<'a> {
    shop_id: u64,
    country: &'a str,
    /// The nearest large city, or empty: never the shop's address.
    place: &'a str,
    unique_shoppers: u64,
}

#[derive(Serialize)]
struct PublicCity<'a> {
    city: &'a str,
    country: &'a str,
    orders: u64,
}

#[derive(Serialize)]
struct PublicHistory {
    version: u64,
    generated_at: String,
    step_ms: i64,
    start_ms: Option<i64>,
    start: Option<String>,
    /// One entry per minute from `start`; the last is still filling.
    orders: Vec<u64>,
    gmv_usd_cents: Vec<u64>,
    carbon_grams: Vec<u64>,
}

#[derive(Serialize)]
struct PublicSlice<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    orders: u64,
    gmv_usd_cents: u64,
}

impl<'a> PublicSlice<'a> {
    fn country(x: &'a livemap_wire::Slice) -> Self {
        PublicSlice {
            country: Some(&x.key),
            channel: None,
            orders: x.orders,
            gmv_usd_cents: x.usd_cents,
        }
    }

    fn channel(x: &'a livemap_wire::Slice) -> Self {
        PublicSlice {
            country: None,
            channel: Some(&x.key),
            orders: x.orders,
            gmv_usd_cents: x.usd_cents,
        }
    }
}

#[derive(Serialize)]
struct PublicTotals {
    orders: u64,
    gmv_usd_cents: u64,
    unique_shoppers: u64,
    carbon_kg: f64,
}

#[derive(Serialize)]
struct PublicRates {
    orders_per_minute: f64,
    gmv_usd_cents_per_minute: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    minute_start: Option<String>,
}

#[derive(Serialize)]
struct PublicIngest<'a> {
    accepted: u64,
    duplicates: u64,
    filtered: u64,
    rejected: std::collections::BTreeMap<&'a str, u64>,
    /// Accepted orders later than the allowed lateness (in totals, not in
    /// their minute).
    late: u64,
}

#[derive(Serialize)]
struct PublicTrend<'a> {
    category: &'a str,
    change: f64,
}

#[derive(Serialize)]
struct PublicMoment<'a> {
    /// `first_sale` or `milestone`.
    kind: &'static str,
    /// A first sale's shop: the large city nearest it (or empty), its
    /// country, and its grid cell's centre as `[lat, lon]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    place: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shop: Option<[f32; 2]>,
    /// A milestone: the total passed, in US cents.
    #[serde(skip_serializing_if = "Option::is_none")]
    usd_cents: Option<u64>,
    at: String,
}

#[derive(Serialize)]
struct PublicArc {
    from: [f32; 2],
    to: [f32; 2],
    usd_cents: u64,
    at: String,
    channel: &'static str,
}
