//! Snapshot stage: on every tick, the engine's state becomes one versioned,
//! immutable snapshot.
//!
//! Versions start at the wall-clock millisecond the process started and
//! grow by one per tick. They never go back while the process lives, and
//! because a tick takes far longer than a millisecond, a restarted server
//! also starts above every version its predecessor published.
//!
//! Previous stage: [`livemap_engine::ingest`]. Next stage: [`crate::encode`].

use std::collections::{HashMap, VecDeque};

use livemap_wire::{
    Arc, Channel, Ingest, LatLon, Minute, Moment, MomentKind, Ranked, Rates, Slice, Snapshot,
    Totals, Trend,
};

use livemap_engine::aggregate::{MinuteBucket, MINUTE_MS};
use livemap_engine::anomaly::{Change, Detector, Signal};
use livemap_engine::ingest::Engine;
use livemap_engine::rankings::ShopLabel;

/// How many recent arcs `/api/snapshot` lists.
pub const RECENT_ARCS: usize = 100;
/// How many countries the binary stream carries (the JSON has them all).
pub const STREAM_COUNTRIES: usize = 10;
/// How many trends the binary stream carries (the JSON has all 500): a
/// screen shows a handful, and every keyframe goes to every browser (and
/// sits in each connection's write buffer), so it is kept small.
pub const STREAM_TRENDS: usize = 10;
/// How many recent minutes the binary stream carries: the one filling and
/// two before it, which late orders may still change. The page fetches the
/// rest once from `/api/history`.
pub const STREAM_MINUTES: i64 = 3;
/// Entries of each ranking in the binary stream, and in the JSON.
pub const STREAM_RANKED: usize = 10;
pub const JSON_RANKED: usize = 50;
/// A shop or a city is named only once this many shoppers or orders stand
/// behind it, so no ranking points at a handful of people.
pub const MIN_RANKED: u64 = 10;
/// A shop is said to be in a city only within this distance of it.
const PLACE_KM: f64 = 60.0;
/// How many first sales a tick shows at most (the newest): at the start of
/// a sale thousands of shops sell for the first time each second.
pub const FIRST_SALES_PER_TICK: usize = 2;
/// A first sale this much older (in event time) than the tick is history,
/// not news: read in a catch-up or a backfill, it is not shown.
pub const FIRST_SALE_NEWS_MS: i64 = 10 * 60_000;
/// How many recent moments `/api/snapshot` lists.
pub const RECENT_MOMENTS: usize = 20;
/// The first milestone of the total, by default: $1M; each next one is
/// ten times the last.
pub const FIRST_MILESTONE_USD_CENTS: u64 = 100_000_000;

/// How often the stream carries a keyframe (everything, lists included);
/// the ticks between carry deltas. Panels refresh at this pace, which keeps
/// a browser's stream to a few KB/s.
pub const KEYFRAME_MS: u32 = 5_000;

/// The nearest large city to a point, if one is within [`PLACE_KM`]: what
/// the page says instead of a shop's address.
fn nearest_place(lat: f32, lon: f32) -> &'static str {
    let (lat, lon) = (f64::from(lat), f64::from(lon));
    livemap_events::cities::all()
        .iter()
        .map(|c| {
            let km = livemap_events::geo::great_circle_km(lat, lon, c.lat, c.lon);
            (km, c.name)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(km, _)| *km <= PLACE_KM)
        .map_or("", |(_, name)| name)
}

#[derive(Debug)]
pub struct Snapshotter {
    version: u64,
    tick_ms: u32,
    /// Ticks to go until the next keyframe (0: this one).
    until_keyframe: u64,
    keyframe_every: u64,
    recent_arcs: VecDeque<Arc>,
    /// Shop id → nearest large city, so each shop is looked up once.
    places: HashMap<u64, &'static str>,
    /// Judges each closed minute for operators (`livemap_engine::anomaly`).
    detector: Detector,
    /// The first milestone of the total; the next are ten times each.
    first_milestone: u64,
    /// The largest milestone the total has passed (if any), as of the
    /// last tick: `None` before the first tick, which takes it without
    /// announcing it. A restart celebrates no milestone its restored
    /// state had passed, nor one passed while it catches up (stale).
    milestone_passed: Option<Option<u64>>,
    recent_moments: VecDeque<Moment>,
    /// `--public-anomalies`: the flags go into the snapshot too.
    public_alerts: bool,
}

/// The sale's per-minute history as of one tick: every minute from the
/// first with orders to the newest (still filling).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Start of the first minute, ms since the epoch; `None` before any order.
    pub start_ms: Option<i64>,
    pub minutes: Vec<MinuteBucket>,
}

/// A tick's snapshot, plus what only the JSON views show: a longer arc
/// history, every country and trend, longer rankings and the history.
#[derive(Debug, Clone)]
pub struct Built {
    /// Everything, lists included; the encode stage cuts deltas from it.
    pub snapshot: Snapshot,
    /// Whether the stream sends this tick as a keyframe.
    pub keyframe: bool,
    pub recent_arcs: Vec<Arc>,
    /// The last [`RECENT_MOMENTS`] moments, oldest first.
    pub recent_moments: Vec<Moment>,
    pub all_countries: Vec<Slice>,
    pub all_trends: Vec<Trend>,
    pub top_shops: Vec<Ranked>,
    pub top_cities: Vec<Ranked>,
    /// Shared with the frame: copied once a tick, not once per stage.
    pub history: std::sync::Arc<History>,
    /// The operators' signals as last judged, and the flags raised or
    /// cleared this tick (a minute closed).
    pub anomalies: Vec<Signal>,
    pub anomaly_changes: Vec<Change>,
}

impl Snapshotter {
    pub fn new(start_ms: i64, tick_ms: u32) -> Self {
        Snapshotter {
            version: u64::try_from(start_ms).unwrap_or(0),
            tick_ms,
            until_keyframe: 0,
            keyframe_every: u64::from((KEYFRAME_MS / tick_ms.max(1)).max(1)),
            recent_arcs: VecDeque::with_capacity(RECENT_ARCS),
            places: HashMap::new(),
            detector: Detector::new(),
            first_milestone: FIRST_MILESTONE_USD_CENTS,
            milestone_passed: None,
            recent_moments: VecDeque::with_capacity(RECENT_MOMENTS),
            public_alerts: false,
        }
    }

    /// Puts the anomaly flags raised now into every snapshot
    /// (`--public-anomalies`); off, no snapshot carries them.
    pub fn with_public_alerts(mut self, on: bool) -> Self {
        self.public_alerts = on;
        self
    }

    /// Celebrates the total passing `usd_cents` and every ten times it
    /// (`--first-milestone-usd`; zero is taken as one cent).
    pub fn with_first_milestone(mut self, usd_cents: u64) -> Self {
        self.first_milestone = usd_cents.max(1);
        self
    }

    /// The largest milestone at or below `total`, if any.
    fn milestone_at(&self, total: u64) -> Option<u64> {
        let mut m = self.first_milestone;
        if total < m {
            return None;
        }
        while let Some(next) = m.checked_mul(10).filter(|&n| n <= total) {
            m = next;
        }
        Some(m)
    }

    /// This tick's moments: the newest first sales the engine found (or,
    /// on an edge, the aggregators announced), and a milestone the total
    /// passed since the last tick. While `stale` (catching up, or the
    /// source away) the total moves on without celebration and first
    /// sales are dropped: they would be news from the past.
    fn moments(&mut self, engine: &mut Engine, now_ms: i64, stale: bool) -> Vec<Moment> {
        let mut sales = engine.take_first_sales();
        sales.retain(|s| !stale && s.at_ms >= now_ms.saturating_sub(FIRST_SALE_NEWS_MS));
        let mut moments: Vec<Moment> = sales[sales.len().saturating_sub(FIRST_SALES_PER_TICK)..]
            .iter()
            // Not through the rankings' cache: a first sale's shop is
            // named once, and would only push the ranked shops out.
            .map(|sale| Moment {
                kind: MomentKind::FirstSale,
                shop: LatLon {
                    lat: sale.lat,
                    lon: sale.lon,
                },
                place: nearest_place(sale.lat, sale.lon).to_owned(),
                country: String::from_utf8_lossy(&sale.country).into_owned(),
                usd_cents: 0,
                at_ms: sale.at_ms,
            })
            .collect();
        let passed = self.milestone_at(engine.aggregate().gmv_usd_cents);
        if !stale && self.milestone_passed.is_some() && passed > self.milestone_passed.flatten() {
            moments.push(Moment {
                kind: MomentKind::Milestone,
                usd_cents: passed.unwrap_or_default(),
                at_ms: now_ms,
                ..Moment::default()
            });
        }
        self.milestone_passed = Some(passed.max(self.milestone_passed.flatten()));
        for m in &moments {
            if self.recent_moments.len() == RECENT_MOMENTS {
                self.recent_moments.pop_front();
            }
            self.recent_moments.push_back(m.clone());
        }
        moments
    }

    /// The nearest large city to a ranked shop ([`nearest_place`]), each
    /// shop looked up once: rankings name the same shops tick after tick.
    fn place(&mut self, shop: &ShopLabel) -> &'static str {
        if self.places.len() > 10_000 {
            self.places.clear();
        }
        self.places
            .entry(shop.id)
            .or_insert_with(|| nearest_place(shop.lat, shop.lon))
    }

    /// The version the next snapshot will carry, minus one: what a client
    /// that has seen nothing yet compares against.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `viewers`: the browsers watching now, as the public listener
    /// counts them.
    pub fn build(&mut self, engine: &mut Engine, now_ms: i64, stale: bool, viewers: u64) -> Built {
        self.version += 1;
        let keyframe = self.until_keyframe == 0;
        self.until_keyframe = match self.until_keyframe {
            0 => self.keyframe_every - 1,
            n => n - 1,
        };
        let arcs = engine.take_arcs();
        let moments = self.moments(engine, now_ms, stale);
        for a in &arcs {
            if self.recent_arcs.len() == RECENT_ARCS {
                self.recent_arcs.pop_front();
            }
            self.recent_arcs.push_back(*a);
        }
        let mut countries: Vec<Slice> = engine
            .breakdowns()
            .by_country()
            .map(|(c, x)| Slice {
                key: String::from_utf8_lossy(&c).into_owned(),
                orders: x.orders,
                usd_cents: x.usd_cents,
            })
            .collect();
        countries.sort_by(|a, b| {
            b.usd_cents
                .cmp(&a.usd_cents)
                .then_with(|| a.key.cmp(&b.key))
        });
        let channels = Channel::ALL
            .iter()
            .zip(&engine.breakdowns().by_channel)
            .map(|(c, x)| Slice {
                key: c.as_str().to_owned(),
                orders: x.orders,
                usd_cents: x.usd_cents,
            })
            .collect();
        let shops: Vec<Ranked> = engine
            .rankings()
            .shops
            .top(JSON_RANKED)
            .into_iter()
            .filter(|r| r.estimate >= MIN_RANKED)
            .map(|r| Ranked {
                key: r.label.id.to_string(),
                country: String::from_utf8_lossy(&r.label.country).into_owned(),
                place: self.place(&r.label).to_owned(),
                value: r.estimate,
            })
            .collect();
        let cities: Vec<Ranked> = engine
            .rankings()
            .cities
            .top(JSON_RANKED)
            .into_iter()
            .filter(|r| r.estimate >= MIN_RANKED)
            .map(|r| Ranked {
                key: r.label.name,
                country: String::from_utf8_lossy(&r.label.country).into_owned(),
                place: String::new(),
                value: r.estimate,
            })
            .collect();
        let agg = &engine.aggregate();
        let minutes = agg.minutes.newest_minute().map_or_else(Vec::new, |newest| {
            (newest - STREAM_MINUTES + 1..=newest)
                .map(|m| {
                    let b = agg.minutes.get(m);
                    Minute {
                        start_ms: m * MINUTE_MS,
                        orders: b.orders,
                        usd_cents: b.usd_cents,
                        carbon_grams: b.carbon_grams,
                    }
                })
                .collect()
        });
        let history = std::sync::Arc::new(agg.minutes.history().map_or_else(
            History::default,
            |(start, minutes)| History {
                start_ms: Some(start * MINUTE_MS),
                minutes,
            },
        ));
        let all_trends = engine.trends().current().to_vec();
        // The minute the rates describe follows the rules in
        // `event_time`: no producer clock can blank or distort it.
        let last_full_minute = engine.last_full_minute(now_ms);
        let anomaly_changes = last_full_minute
            .map(|m| self.detector.evaluate(&engine.aggregate().minutes, m))
            .unwrap_or_default();
        let rates = last_full_minute.map_or_else(Rates::default, |minute| {
            let bucket = engine.aggregate().minutes.get(minute);
            Rates {
                orders_per_minute: bucket.orders as f64,
                gmv_usd_cents_per_minute: bucket.usd_cents,
                minute_start_ms: minute * MINUTE_MS,
            }
        });
        let agg = &engine.aggregate();
        let snapshot = Snapshot {
            version: self.version,
            generated_at_ms: now_ms,
            stale,
            totals: Totals {
                orders: agg.orders,
                gmv_usd_cents: agg.gmv_usd_cents,
                unique_shoppers: agg.shoppers.estimate(),
                carbon_grams: agg.carbon_grams,
            },
            rates,
            ingest: Ingest {
                accepted: engine.counts().accepted,
                duplicates: engine.counts().duplicates,
                filtered: engine.counts().filtered,
                rejected: engine.counts().rejected_by_reason(),
                late: engine.counts().late,
            },
            trends: all_trends.iter().take(STREAM_TRENDS).cloned().collect(),
            arcs,
            tick_ms: self.tick_ms,
            countries: countries.iter().take(STREAM_COUNTRIES).cloned().collect(),
            channels,
            minutes,
            top_shops: shops.iter().take(STREAM_RANKED).cloned().collect(),
            top_cities: cities.iter().take(STREAM_RANKED).cloned().collect(),
            keyframe: true,
            viewers,
            moments,
            alerts: if self.public_alerts {
                self.detector
                    .signals()
                    .iter()
                    .filter(|s| s.flagged)
                    .map(|s| s.kind.as_str().to_owned())
                    .collect()
            } else {
                Vec::new()
            },
        };
        Built {
            snapshot,
            keyframe,
            recent_arcs: self.recent_arcs.iter().copied().collect(),
            recent_moments: self.recent_moments.iter().cloned().collect(),
            all_countries: countries,
            all_trends,
            top_shops: shops,
            top_cities: cities,
            history,
            anomalies: self.detector.signals().to_vec(),
            anomaly_changes,
        }
    }
}
