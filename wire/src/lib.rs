//! The binary snapshot format, both ways.
//!
//! `schema/livemap.fbs` is the source of truth; `livemap_generated.rs` is
//! what `flatc --rust` makes of it and is committed so that no build needs
//! flatc (the test command checks it is current). Everything else in the
//! workspace goes through [`encode`] and [`decode`] and the plain structs
//! here, never through the generated builders directly.

#[allow(unsafe_code, unused_imports, clippy::all, clippy::unwrap_used, missing_docs)]
#[rustfmt::skip]
mod livemap_generated;

pub mod grid;

use livemap_generated::livemap::wire as fb;

/// Identifies a livemap snapshot buffer (the schema's `file_identifier`).
pub const FILE_IDENTIFIER: &str = "LMAP";

/// Sales channel of an order, as the browser sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Channel {
    #[default]
    Other = 0,
    OnlineStore = 1,
    Pos = 2,
    MobileApp = 3,
    Social = 4,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Other,
        Channel::OnlineStore,
        Channel::Pos,
        Channel::MobileApp,
        Channel::Social,
    ];

    /// The contract's name for the channel (`order.channel`).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Other => "other",
            Channel::OnlineStore => "online_store",
            Channel::Pos => "pos",
            Channel::MobileApp => "mobile_app",
            Channel::Social => "social",
        }
    }

    /// Maps the contract's free-text channel; unknown values become `Other`.
    pub fn from_contract(s: &str) -> Channel {
        match s {
            "online_store" => Channel::OnlineStore,
            "pos" => Channel::Pos,
            "mobile_app" => Channel::MobileApp,
            "social" => Channel::Social,
            _ => Channel::Other,
        }
    }

    fn from_u8(v: u8) -> Channel {
        Channel::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or_default()
    }
}

/// A point on the globe in degrees. On the wire it is a [`grid::Cell`], so
/// a decoded point is always a cell centre, never a precise location.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct LatLon {
    pub lat: f32,
    pub lon: f32,
}

/// One sampled order: an arc from the shop to the buyer.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Arc {
    pub from: LatLon,
    pub to: LatLon,
    pub usd_cents: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub channel: Channel,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Totals {
    pub orders: u64,
    pub gmv_usd_cents: u64,
    pub unique_shoppers: u64,
    pub carbon_grams: u64,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Rates {
    pub orders_per_minute: f64,
    pub gmv_usd_cents_per_minute: u64,
    /// Start of the event-time minute these rates describe.
    pub minute_start_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Ingest {
    pub accepted: u64,
    pub duplicates: u64,
    pub filtered: u64,
    /// Rejection reason and count, for every reason seen, sorted by reason.
    pub rejected: Vec<(String, u64)>,
    /// Accepted orders that arrived past the allowed lateness.
    pub late: u64,
}

/// Orders and sales in one slice of the sale (a country, a channel).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Slice {
    pub key: String,
    pub orders: u64,
    pub usd_cents: u64,
}

/// Orders, sales and shipping emissions in one event-time minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Minute {
    /// Start of the minute, milliseconds since the Unix epoch.
    pub start_ms: i64,
    pub orders: u64,
    pub usd_cents: u64,
    pub carbon_grams: u64,
}

/// One entry of a ranking: a shop by unique shoppers, or a buyer city by
/// orders (see the schema for what each field holds).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ranked {
    pub key: String,
    pub country: String,
    pub place: String,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Trend {
    pub category: String,
    pub change: f64,
}

/// What a [`Moment`] celebrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MomentKind {
    /// A shop's first sale of the event.
    #[default]
    FirstSale,
    /// The sale's total passed a milestone.
    Milestone,
}

impl MomentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MomentKind::FirstSale => "first_sale",
            MomentKind::Milestone => "milestone",
        }
    }
}

/// A moment for the audience (see the schema).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Moment {
    pub kind: MomentKind,
    /// A first sale's shop, a grid cell's centre (zero for a milestone).
    pub shop: LatLon,
    pub place: String,
    pub country: String,
    /// A milestone's total, in US cents.
    pub usd_cents: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Everything a browser is sent in one tick.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Snapshot {
    pub version: u64,
    pub generated_at_ms: i64,
    pub stale: bool,
    pub totals: Totals,
    pub rates: Rates,
    pub ingest: Ingest,
    pub trends: Vec<Trend>,
    /// Orders sampled since the previous snapshot, oldest first.
    pub arcs: Vec<Arc>,
    pub tick_ms: u32,
    /// Top buyer countries by sales, largest first.
    pub countries: Vec<Slice>,
    /// Every sales channel.
    pub channels: Vec<Slice>,
    /// The last few event-time minutes, oldest first; the newest is still
    /// filling.
    pub minutes: Vec<Minute>,
    /// Shops with the most unique shoppers, most first.
    pub top_shops: Vec<Ranked>,
    /// Buyer cities with the most orders, most first.
    pub top_cities: Vec<Ranked>,
    /// A keyframe carries the lists; a delta leaves them empty (see the
    /// schema).
    pub keyframe: bool,
    /// Browsers watching now (see the schema).
    pub viewers: u64,
    /// Moments since the previous snapshot, oldest first.
    pub moments: Vec<Moment>,
    /// Anomaly flags shown to the public (see the schema); usually empty.
    pub alerts: Vec<String>,
}

/// The fields a client needs to place a frame, read without decoding the
/// rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    pub version: u64,
    pub generated_at_ms: i64,
    pub keyframe: bool,
}

/// Why a buffer could not be read as a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a livemap snapshot (missing file identifier {FILE_IDENTIFIER:?})")]
    WrongIdentifier,
    #[error("invalid snapshot buffer: {0}")]
    Invalid(#[from] flatbuffers::InvalidFlatbuffer),
}

/// Encodes a snapshot into a finished FlatBuffers buffer.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(256 + snapshot.arcs.len() * 48);
    let totals = fb::Totals::create(
        &mut fbb,
        &fb::TotalsArgs {
            orders: snapshot.totals.orders,
            gmv_usd_cents: snapshot.totals.gmv_usd_cents,
            unique_shoppers: snapshot.totals.unique_shoppers,
            carbon_grams: snapshot.totals.carbon_grams,
        },
    );
    let rates = fb::Rates::create(
        &mut fbb,
        &fb::RatesArgs {
            orders_per_minute: snapshot.rates.orders_per_minute,
            gmv_usd_cents_per_minute: snapshot.rates.gmv_usd_cents_per_minute,
            minute_start_ms: snapshot.rates.minute_start_ms,
        },
    );
    let reasons: Vec<_> = snapshot
        .ingest
        .rejected
        .iter()
        .map(|(reason, count)| {
            let reason = fbb.create_string(reason);
            fb::ReasonCount::create(
                &mut fbb,
                &fb::ReasonCountArgs {
                    reason: Some(reason),
                    count: *count,
                },
            )
        })
        .collect();
    let rejected = fbb.create_vector(&reasons);
    let ingest = fb::Ingest::create(
        &mut fbb,
        &fb::IngestArgs {
            accepted: snapshot.ingest.accepted,
            duplicates: snapshot.ingest.duplicates,
            filtered: snapshot.ingest.filtered,
            rejected: Some(rejected),
            late: snapshot.ingest.late,
        },
    );
    let trends: Vec<_> = snapshot
        .trends
        .iter()
        .map(|t| {
            let category = fbb.create_string(&t.category);
            fb::Trend::create(
                &mut fbb,
                &fb::TrendArgs {
                    category: Some(category),
                    change: t.change,
                },
            )
        })
        .collect();
    let trends = fbb.create_vector(&trends);
    let cell = |p: &LatLon| {
        let c = grid::cell_of(f64::from(p.lat), f64::from(p.lon));
        fb::Cell::new(c.row, c.col)
    };
    let arcs: Vec<fb::Arc> = snapshot
        .arcs
        .iter()
        .map(|a| {
            let offset = a.at_ms.saturating_sub(snapshot.generated_at_ms);
            fb::Arc::new(
                &cell(&a.from),
                &cell(&a.to),
                u32::try_from(a.usd_cents).unwrap_or(u32::MAX),
                i32::try_from(offset).unwrap_or(if offset < 0 { i32::MIN } else { i32::MAX }),
                fb::Channel(a.channel as u8),
            )
        })
        .collect();
    let arcs = fbb.create_vector(&arcs);
    let mut slices = |list: &[Slice]| {
        let items: Vec<_> = list
            .iter()
            .map(|x| {
                let key = fbb.create_string(&x.key);
                fb::Slice::create(
                    &mut fbb,
                    &fb::SliceArgs {
                        key: Some(key),
                        orders: x.orders,
                        usd_cents: x.usd_cents,
                    },
                )
            })
            .collect();
        fbb.create_vector(&items)
    };
    let countries = slices(&snapshot.countries);
    let channels = slices(&snapshot.channels);
    let minutes: Vec<fb::Minute> = snapshot
        .minutes
        .iter()
        .map(|m| fb::Minute::new(m.start_ms, m.orders, m.usd_cents, m.carbon_grams))
        .collect();
    let minutes = fbb.create_vector(&minutes);
    let mut ranked = |list: &[Ranked]| {
        let items: Vec<_> = list
            .iter()
            .map(|x| {
                let key = fbb.create_string(&x.key);
                let country = fbb.create_string(&x.country);
                let place = fbb.create_string(&x.place);
                fb::Ranked::create(
                    &mut fbb,
                    &fb::RankedArgs {
                        key: Some(key),
                        country: Some(country),
                        place: Some(place),
                        value: x.value,
                    },
                )
            })
            .collect();
        fbb.create_vector(&items)
    };
    let top_shops = ranked(&snapshot.top_shops);
    let top_cities = ranked(&snapshot.top_cities);
    let moments: Vec<_> = snapshot
        .moments
        .iter()
        .map(|m| {
            let place = fbb.create_string(&m.place);
            let country = fbb.create_string(&m.country);
            let offset = m.at_ms.saturating_sub(snapshot.generated_at_ms);
            // A milestone has no place.
            let shop = cell(&m.shop);
            let shop = (m.kind == MomentKind::FirstSale).then_some(&shop);
            fb::Moment::create(
                &mut fbb,
                &fb::MomentArgs {
                    kind: match m.kind {
                        MomentKind::FirstSale => fb::MomentKind::FirstSale,
                        MomentKind::Milestone => fb::MomentKind::Milestone,
                    },
                    shop,
                    place: Some(place),
                    country: Some(country),
                    usd_cents: m.usd_cents,
                    at_offset_ms: i32::try_from(offset).unwrap_or(if offset < 0 {
                        i32::MIN
                    } else {
                        i32::MAX
                    }),
                },
            )
        })
        .collect();
    // Both are usually empty: absent then, not an empty vector.
    let moments = (!moments.is_empty()).then(|| fbb.create_vector(&moments));
    let alerts: Vec<_> = snapshot
        .alerts
        .iter()
        .map(|a| fbb.create_string(a))
        .collect();
    let alerts = (!alerts.is_empty()).then(|| fbb.create_vector(&alerts));
    let root = fb::Snapshot::create(
        &mut fbb,
        &fb::SnapshotArgs {
            version: snapshot.version,
            generated_at_ms: snapshot.generated_at_ms,
            stale: snapshot.stale,
            totals: Some(totals),
            rates: Some(rates),
            ingest: Some(ingest),
            trends: Some(trends),
            arcs: Some(arcs),
            tick_ms: snapshot.tick_ms,
            countries: Some(countries),
            channels: Some(channels),
            minutes: Some(minutes),
            top_shops: Some(top_shops),
            top_cities: Some(top_cities),
            keyframe: snapshot.keyframe,
            viewers: snapshot.viewers,
            moments,
            alerts,
        },
    );
    fb::finish_snapshot_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

/// The centre of a cell on the wire: all a reader ever learns of a place.
fn centre_of(c: &fb::Cell) -> LatLon {
    let (lat, lon) = grid::centre(grid::Cell {
        row: c.row(),
        col: c.col(),
    });
    LatLon {
        lat: lat as f32,
        lon: lon as f32,
    }
}

fn verified(buf: &[u8]) -> Result<fb::Snapshot<'_>, DecodeError> {
    // The identifier check reads bytes 4..8 without a length check.
    if buf.len() < 8 || !fb::snapshot_buffer_has_identifier(buf) {
        return Err(DecodeError::WrongIdentifier);
    }
    Ok(fb::root_as_snapshot(buf)?)
}

/// Verifies a snapshot buffer and reads only its header: for clients that
/// count and time frames (the load tester) without using their content.
pub fn peek(buf: &[u8]) -> Result<Header, DecodeError> {
    let s = verified(buf)?;
    Ok(Header {
        version: s.version(),
        generated_at_ms: s.generated_at_ms(),
        keyframe: s.keyframe(),
    })
}

/// Verifies and decodes a snapshot buffer. Safe on untrusted bytes: the
/// FlatBuffers verifier checks every offset before anything is read.
pub fn decode(buf: &[u8]) -> Result<Snapshot, DecodeError> {
    let s = verified(buf)?;
    let totals = s.totals().map_or_else(Totals::default, |t| Totals {
        orders: t.orders(),
        gmv_usd_cents: t.gmv_usd_cents(),
        unique_shoppers: t.unique_shoppers(),
        carbon_grams: t.carbon_grams(),
    });
    let rates = s.rates().map_or_else(Rates::default, |r| Rates {
        orders_per_minute: r.orders_per_minute(),
        gmv_usd_cents_per_minute: r.gmv_usd_cents_per_minute(),
        minute_start_ms: r.minute_start_ms(),
    });
    let ingest = s.ingest().map_or_else(Ingest::default, |i| Ingest {
        accepted: i.accepted(),
        duplicates: i.duplicates(),
        filtered: i.filtered(),
        rejected: i
            .rejected()
            .map(|v| {
                v.iter()
                    .map(|rc| (rc.reason().unwrap_or_default().to_owned(), rc.count()))
                    .collect()
            })
            .unwrap_or_default(),
        late: i.late(),
    });
    let trends = s
        .trends()
        .map(|v| {
            v.iter()
                .map(|t| Trend {
                    category: t.category().unwrap_or_default().to_owned(),
                    change: t.change(),
                })
                .collect()
        })
        .unwrap_or_default();
    let arcs = s
        .arcs()
        .map(|v| {
            v.iter()
                .map(|a| Arc {
                    from: centre_of(a.from()),
                    to: centre_of(a.to()),
                    usd_cents: u64::from(a.usd_cents()),
                    at_ms: s
                        .generated_at_ms()
                        .saturating_add(i64::from(a.at_offset_ms())),
                    channel: Channel::from_u8(a.channel().0),
                })
                .collect()
        })
        .unwrap_or_default();
    let slices = |v: Option<
        flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::Slice<'_>>>,
    >|
     -> Vec<Slice> {
        v.map(|v| {
            v.iter()
                .map(|x| Slice {
                    key: x.key().unwrap_or_default().to_owned(),
                    orders: x.orders(),
                    usd_cents: x.usd_cents(),
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let ranked = |v: Option<
        flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::Ranked<'_>>>,
    >|
     -> Vec<Ranked> {
        v.map(|v| {
            v.iter()
                .map(|x| Ranked {
                    key: x.key().unwrap_or_default().to_owned(),
                    country: x.country().unwrap_or_default().to_owned(),
                    place: x.place().unwrap_or_default().to_owned(),
                    value: x.value(),
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let moments = s
        .moments()
        .map(|v| {
            v.iter()
                .map(|m| Moment {
                    kind: match m.kind() {
                        fb::MomentKind::Milestone => MomentKind::Milestone,
                        _ => MomentKind::FirstSale,
                    },
                    shop: m.shop().map_or_else(LatLon::default, centre_of),
                    place: m.place().unwrap_or_default().to_owned(),
                    country: m.country().unwrap_or_default().to_owned(),
                    usd_cents: m.usd_cents(),
                    at_ms: s
                        .generated_at_ms()
                        .saturating_add(i64::from(m.at_offset_ms())),
                })
                .collect()
        })
        .unwrap_or_default();
    let minutes = s
        .minutes()
        .map(|v| {
            v.iter()
                .map(|m| Minute {
                    start_ms: m.start_ms(),
                    orders: m.orders(),
                    usd_cents: m.usd_cents(),
                    carbon_grams: m.carbon_grams(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Snapshot {
        version: s.version(),
        generated_at_ms: s.generated_at_ms(),
        stale: s.stale(),
        totals,
        rates,
        ingest,
        trends,
        arcs,
        tick_ms: s.tick_ms(),
        countries: slices(s.countries()),
        channels: slices(s.channels()),
        minutes,
        top_shops: ranked(s.top_shops()),
        top_cities: ranked(s.top_cities()),
        keyframe: s.keyframe(),
        viewers: s.viewers(),
        moments,
        alerts: s
            .alerts()
            .map(|v| v.iter().map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centre(lat: f64, lon: f64) -> LatLon {
        let (lat, lon) = grid::coarsen(lat, lon);
        LatLon {
            lat: lat as f32,
            lon: lon as f32,
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            version: 42,
            generated_at_ms: 1_795_000_000_000,
            stale: true,
            totals: Totals {
                orders: 7,
                gmv_usd_cents: 123_456,
                unique_shoppers: 5,
                carbon_grams: 2_500,
            },
            rates: Rates {
                orders_per_minute: 3.0,
                gmv_usd_cents_per_minute: 999,
                minute_start_ms: 1_795_000_000_000 - 60_000,
            },
            ingest: Ingest {
                accepted: 7,
                duplicates: 1,
                filtered: 20,
                rejected: vec![("bad_json".into(), 2), ("too_large".into(), 1)],
                late: 3,
            },
            trends: vec![Trend {
                category: "Apparel & Accessories > Shoes".into(),
                change: 0.25,
            }],
            arcs: vec![Arc {
                from: centre(43.6, -79.4),
                to: centre(30.3, -97.7),
                usd_cents: 12_999,
                at_ms: 1_795_000_000_000 - 4_321,
                channel: Channel::MobileApp,
            }],
            tick_ms: 200,
            countries: vec![Slice {
                key: "US".into(),
                orders: 4,
                usd_cents: 99_00,
            }],
            channels: vec![Slice {
                key: "pos".into(),
                orders: 1,
                usd_cents: 5,
            }],
            minutes: vec![Minute {
                start_ms: 1_795_000_000_000 - 60_000,
                orders: 3,
                usd_cents: 999,
                carbon_grams: 1_260,
            }],
            top_shops: vec![Ranked {
                key: "1048576".into(),
                country: "CA".into(),
                place: "Toronto".into(),
                value: 4,
            }],
            top_cities: vec![Ranked {
                key: "Austin".into(),
                country: "US".into(),
                place: String::new(),
                value: 2,
            }],
            keyframe: true,
            viewers: 1_234,
            moments: vec![
                Moment {
                    kind: MomentKind::FirstSale,
                    shop: centre(45.5, -73.6),
                    place: "Montréal".into(),
                    country: "CA".into(),
                    usd_cents: 0,
                    at_ms: 1_795_000_000_000 - 150,
                },
                Moment {
                    kind: MomentKind::Milestone,
                    usd_cents: 100_000_000,
                    at_ms: 1_795_000_000_000,
                    ..Moment::default()
                },
            ],
            alerts: vec!["orders_per_minute".into()],
        }
    }

    #[test]
    fn round_trips_every_field() {
        let s = sample();
        let buf = encode(&s);
        assert_eq!(decode(&buf).expect("decodes"), s);
        assert_eq!(
            peek(&buf).expect("peeks"),
            Header {
                version: 42,
                generated_at_ms: 1_795_000_000_000,
                keyframe: true
            }
        );
    }

    #[test]
    fn an_arc_is_twenty_bytes_and_a_position_a_cell() {
        let mut s = Snapshot::default();
        let empty = encode(&s).len();
        s.arcs = vec![sample().arcs[0]; 100];
        assert!(encode(&s).len() - empty <= 100 * 20 + 8);
        // Whatever precision goes in, a cell centre comes out.
        s.arcs[0].to = LatLon {
            lat: 30.2672,
            lon: -97.7431,
        };
        let back = decode(&encode(&s)).expect("decodes");
        assert!(grid::is_coarsened(back.arcs[0].to.lat, back.arcs[0].to.lon));
        assert_ne!(back.arcs[0].to, s.arcs[0].to);
    }

    #[test]
    fn rejects_foreign_and_truncated_buffers() {
        assert!(matches!(
            decode(b"not a flatbuffer"),
            Err(DecodeError::WrongIdentifier)
        ));
        let buf = encode(&sample());
        assert!(decode(&buf[..buf.len() / 2]).is_err());
    }

    #[test]
    fn short_and_random_buffers_are_errors_not_panics() {
        for len in 0..64 {
            let _ = decode(&vec![0u8; len]);
            let _ = decode(&vec![0xffu8; len]);
        }
        assert!(decode(b"").is_err());
        assert!(decode(b"LMAP").is_err());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (x % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn unknown_channel_values_read_as_other() {
        assert_eq!(Channel::from_u8(200), Channel::Other);
        assert_eq!(Channel::from_contract("carrier_pigeon"), Channel::Other);
        for c in Channel::ALL {
            assert_eq!(Channel::from_contract(c.as_str()), c);
        }
    }
}
