//! What the panels beside the globe show (trends, breakdowns, rankings and
//! the newest minutes), taken from the latest snapshot and handed to the
//! page as one small JSON document.
//!
//! The page never decodes snapshots, so the wasm has to give it these lists
//! in a form JavaScript reads natively. JSON is written by hand here rather
//! than with serde_json: the document is flat and small, and every
//! dependency adds to the wasm the page downloads before it shows anything.
//!
//! Lists are capped and cleaned up on the way in (non-finite trends
//! dropped, over-long strings cut), so whatever a snapshot holds, the
//! document stays small and the page can trust its shape.

use std::fmt::Write as _;

use livemap_wire::{Channel, Minute, Ranked, Slice, Snapshot, Trend};

/// Most trends kept: more than any layout shows.
pub const MAX_TRENDS: usize = 10;
/// Most countries kept.
pub const MAX_COUNTRIES: usize = 10;
/// Most entries kept per ranking (shops, cities).
pub const MAX_RANKED: usize = 10;
/// Most recent minutes kept (the server sends three).
pub const MAX_MINUTES: usize = 10;
/// Longest string kept, in characters; a category path or a city name is
/// far shorter, so only garbage is cut.
pub const MAX_TEXT_CHARS: usize = 96;

/// The panels' data from the latest snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Board {
    trends: Vec<Trend>,
    countries: Vec<Slice>,
    channels: Vec<Slice>,
    minutes: Vec<Minute>,
    top_shops: Vec<Ranked>,
    top_cities: Vec<Ranked>,
    /// Bumps whenever any list above changes, so the page re-renders only
    /// then; 0 until the first snapshot.
    version: u64,
}

impl Board {
    pub fn new() -> Board {
        Board::default()
    }

    /// Takes the panels' lists from `s`. Returns whether anything the page
    /// shows changed (and so whether [`Board::version`] moved).
    ///
    /// Only a keyframe carries the lists; a delta carries the newest
    /// minute, which is merged into the minutes kept.
    pub fn set(&mut self, s: &Snapshot) -> bool {
        // The snapshot's minutes first, so that they win over older copies.
        let minutes = recent_minutes(&[s.minutes.as_slice(), &self.minutes].concat());
        if !s.keyframe {
            if minutes == self.minutes {
                return false;
            }
            self.minutes = minutes;
            self.version += 1;
            return true;
        }
        let next = Board {
            trends: s
                .trends
                .iter()
                .filter(|t| t.change.is_finite())
                .take(MAX_TRENDS)
                .map(|t| Trend {
                    category: clip(&t.category),
                    change: t.change,
                })
                .collect(),
            countries: s
                .countries
                .iter()
                .take(MAX_COUNTRIES)
                .map(clip_slice)
                .collect(),
            channels: channels_in_legend_order(&s.channels),
            minutes,
            top_shops: s
                .top_shops
                .iter()
                .take(MAX_RANKED)
                .map(clip_ranked)
                .collect(),
            top_cities: s
                .top_cities
                .iter()
                .take(MAX_RANKED)
                .map(clip_ranked)
                .collect(),
            version: self.version,
        };
        // The first snapshot always counts as a change, even with empty
        // lists, so the page replaces its loading state.
        if next == *self && self.version != 0 {
            return false;
        }
        *self = Board {
            version: self.version + 1,
            ..next
        };
        true
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn trends(&self) -> &[Trend] {
        &self.trends
    }

    pub fn channels(&self) -> &[Slice] {
        &self.channels
    }

    pub fn minutes(&self) -> &[Minute] {
        &self.minutes
    }

    /// The board as one JSON object:
    ///
    /// ```json
    /// {"version":3,
    ///  "trends":[{"category":"Toys & Games > Puzzles","change":0.48}],
    ///  "countries":[{"key":"US","orders":12,"usd_cents":345600}],
    ///  "channels":[{"key":"online_store","orders":9,"usd_cents":120000}],
    ///  "minutes":[{"start_ms":1795788000000,"orders":5,"usd_cents":9900,"carbon_grams":700}],
    ///  "top_shops":[{"key":"1048576","country":"CA","place":"Toronto","value":42}],
    ///  "top_cities":[{"key":"Toronto","country":"CA","place":"","value":17}]}
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(2_048);
        let _ = write!(out, "{{\"version\":{}", self.version);
        out.push_str(",\"trends\":");
        array(&mut out, &self.trends, |out, t| {
            out.push_str("{\"category\":");
            push_string(out, &t.category);
            out.push_str(",\"change\":");
            push_f64(out, t.change);
            out.push('}');
        });
        out.push_str(",\"countries\":");
        array(&mut out, &self.countries, push_slice);
        out.push_str(",\"channels\":");
        array(&mut out, &self.channels, push_slice);
        out.push_str(",\"minutes\":");
        array(&mut out, &self.minutes, |out, m| {
            let _ = write!(
                out,
                "{{\"start_ms\":{},\"orders\":{},\"usd_cents\":{},\"carbon_grams\":{}}}",
                m.start_ms, m.orders, m.usd_cents, m.carbon_grams
            );
        });
        out.push_str(",\"top_shops\":");
        array(&mut out, &self.top_shops, push_ranked);
        out.push_str(",\"top_cities\":");
        array(&mut out, &self.top_cities, push_ranked);
        out.push('}');
        out
    }
}

/// Channels in the legend's order (and every channel once), so the stacked
/// bar's segments keep their places from one snapshot to the next. Keys
/// the page does not know are dropped: it has no colour for them.
fn channels_in_legend_order(channels: &[Slice]) -> Vec<Slice> {
    const ORDER: [Channel; 5] = [
        Channel::OnlineStore,
        Channel::Pos,
        Channel::MobileApp,
        Channel::Social,
        Channel::Other,
    ];
    ORDER
        .iter()
        .filter_map(|c| channels.iter().find(|s| s.key == c.as_str()).cloned())
        .collect()
}

/// The newest minutes, oldest first, one entry per start.
fn recent_minutes(minutes: &[Minute]) -> Vec<Minute> {
    let mut m = minutes.to_vec();
    m.sort_by_key(|m| m.start_ms);
    m.dedup_by_key(|m| m.start_ms);
    let skip = m.len().saturating_sub(MAX_MINUTES);
    m.split_off(skip)
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT_CHARS).collect()
}

fn clip_slice(s: &Slice) -> Slice {
    Slice {
        key: clip(&s.key),
        ..s.clone()
    }
}

fn clip_ranked(r: &Ranked) -> Ranked {
    Ranked {
        key: clip(&r.key),
        country: clip(&r.country),
        place: clip(&r.place),
        value: r.value,
    }
}

fn array<T>(out: &mut String, items: &[T], mut item: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, x);
    }
    out.push(']');
}

fn push_slice(out: &mut String, s: &Slice) {
    out.push_str("{\"key\":");
    push_string(out, &s.key);
    let _ = write!(
        out,
        ",\"orders\":{},\"usd_cents\":{}}}",
        s.orders, s.usd_cents
    );
}

fn push_ranked(out: &mut String, r: &Ranked) {
    out.push_str("{\"key\":");
    push_string(out, &r.key);
    out.push_str(",\"country\":");
    push_string(out, &r.country);
    out.push_str(",\"place\":");
    push_string(out, &r.place);
    let _ = write!(out, ",\"value\":{}}}", r.value);
}

/// A JSON number for `v`. JSON has no NaN or infinity, so those become
/// `null`; Rust's `Display` never uses an exponent, so finite values are
/// always valid JSON numbers.
fn push_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

/// `s` as a JSON string literal: quotes, backslashes and control
/// characters escaped, everything else (any Unicode) as is. U+2028 and
/// U+2029 are escaped too: valid in JSON, but not in older JavaScript
/// string literals, should the text ever be pasted into a script.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, s);
        out
    }

    #[test]
    fn strings_are_escaped_for_json() {
        assert_eq!(quoted(""), r#""""#);
        assert_eq!(
            quoted("Toys & Games > Puzzles"),
            r#""Toys & Games > Puzzles""#
        );
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quoted("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(quoted("\u{0}\u{1f}\u{8}\u{c}"), r#""\u0000\u001f\b\f""#);
        assert_eq!(quoted("\u{2028}\u{2029}"), r#""\u2028\u2029""#);
        // Non-ASCII text passes through untouched.
        assert_eq!(quoted("São Paulo · 東京 🛍"), "\"São Paulo · 東京 🛍\"");
        // DEL is not a control character in JSON's sense.
        assert_eq!(quoted("\u{7f}"), "\"\u{7f}\"");
    }

    /// Every character, alone and in company, survives a real JSON parser.
    #[test]
    fn any_text_round_trips_through_a_json_parser() {
        let mut all = String::new();
        for c in (0u32..0x3000)
            .chain(0xfff0..0x1_0100)
            .filter_map(char::from_u32)
        {
            all.push(c);
            let q = quoted(&c.to_string());
            let back: String = serde_json::from_str(&q).expect("valid JSON string");
            assert_eq!(back, c.to_string());
        }
        let back: String = serde_json::from_str(&quoted(&all)).expect("valid JSON string");
        assert_eq!(back, all);
    }

    #[test]
    fn the_document_parses_as_json() {
        let mut board = Board::new();
        let mut s = full_snapshot();
        s.top_cities[0].key = "Zürich \\ \"\u{0}\u{2028}".into();
        board.set(&s);
        let v: serde_json::Value = serde_json::from_str(&board.to_json()).expect("valid JSON");
        assert_eq!(v["top_cities"][0]["key"], "Zürich \\ \"\u{0}\u{2028}");
        assert_eq!(v["trends"][0]["change"], 0.48);
        assert_eq!(v["minutes"][0]["start_ms"], 1_795_788_000_000_i64);
    }

    #[test]
    fn numbers_are_valid_json() {
        let num = |v: f64| {
            let mut out = String::new();
            push_f64(&mut out, v);
            out
        };
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(-0.125), "-0.125");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(num(f64::INFINITY), "null");
        assert!(!num(1e21).contains('e'));
        assert!(!num(1e-9).contains('e'));
    }

    fn ranked(key: &str, country: &str, place: &str, value: u64) -> Ranked {
        Ranked {
            key: key.into(),
            country: country.into(),
            place: place.into(),
            value,
        }
    }

    fn slice(key: &str, orders: u64, usd_cents: u64) -> Slice {
        Slice {
            key: key.into(),
            orders,
            usd_cents,
        }
    }

    fn minute(start_ms: i64, orders: u64) -> Minute {
        Minute {
            start_ms,
            orders,
            usd_cents: orders * 100,
            carbon_grams: orders * 7,
        }
    }

    fn full_snapshot() -> Snapshot {
        Snapshot {
            trends: vec![Trend {
                category: "Toys & Games > \"Puzzles\"".into(),
                change: 0.48,
            }],
            countries: vec![slice("US", 12, 345_600)],
            channels: vec![slice("online_store", 9, 120_000)],
            minutes: vec![minute(1_795_788_000_000, 5)],
            top_shops: vec![ranked("1048576", "CA", "Toronto", 42)],
            top_cities: vec![ranked("Toronto", "CA", "", 17)],
            keyframe: true,
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_delta_keeps_the_lists_and_merges_its_minute() {
        let mut board = Board::new();
        assert!(board.set(&full_snapshot()));
        let (trends, version) = (board.trends().to_vec(), board.version());
        let later = Snapshot {
            minutes: vec![minute(1_795_788_000_000, 9), minute(1_795_788_060_000, 1)],
            ..Snapshot::default()
        };
        assert!(board.set(&later));
        assert_eq!(
            board.trends(),
            trends.as_slice(),
            "lists wait for a keyframe"
        );
        let orders: Vec<u64> = board.minutes().iter().map(|m| m.orders).collect();
        assert_eq!(orders, [9, 1], "the newer copy of a minute wins");
        assert_eq!(board.version(), version + 1);
        assert!(!board.set(&later), "nothing new, no new version");
    }

    #[test]
    fn renders_every_list_as_json() {
        let mut board = Board::new();
        assert!(board.set(&full_snapshot()));
        assert_eq!(
            board.to_json(),
            concat!(
                r#"{"version":1,"#,
                r#""trends":[{"category":"Toys & Games > \"Puzzles\"","change":0.48}],"#,
                r#""countries":[{"key":"US","orders":12,"usd_cents":345600}],"#,
                r#""channels":[{"key":"online_store","orders":9,"usd_cents":120000}],"#,
                r#""minutes":[{"start_ms":1795788000000,"orders":5,"usd_cents":500,"carbon_grams":35}],"#,
                r#""top_shops":[{"key":"1048576","country":"CA","place":"Toronto","value":42}],"#,
                r#""top_cities":[{"key":"Toronto","country":"CA","place":"","value":17}]}"#,
            )
        );
    }

    #[test]
    fn empty_lists_render_as_empty_arrays() {
        let mut board = Board::new();
        assert_eq!(board.version(), 0);
        // The first snapshot moves the version even with nothing in it.
        assert!(board.set(&Snapshot {
            keyframe: true,
            ..Snapshot::default()
        }));
        assert_eq!(
            board.to_json(),
            r#"{"version":1,"trends":[],"countries":[],"channels":[],"minutes":[],"top_shops":[],"top_cities":[]}"#
        );
    }

    #[test]
    fn version_moves_only_when_something_shown_changes() {
        let mut board = Board::new();
        let mut s = full_snapshot();
        assert!(board.set(&s));
        // Totals, arcs and the snapshot version are not the board's business.
        s.version += 7;
        s.totals.orders += 100;
        assert!(!board.set(&s));
        assert_eq!(board.version(), 1);
        if let Some(m) = s.minutes.last_mut() {
            m.orders += 1;
        }
        assert!(board.set(&s));
        assert_eq!(board.version(), 2);
        assert!(!board.set(&s));
        s.trends.clear();
        assert!(board.set(&s));
        assert_eq!(board.version(), 3);
    }

    #[test]
    fn lists_are_capped_and_cleaned() {
        let s = Snapshot {
            trends: (0..30)
                .map(|i| Trend {
                    category: format!("c{i}"),
                    change: if i == 0 { f64::NAN } else { f64::from(i) },
                })
                .collect(),
            countries: (0..30).map(|i| slice(&format!("C{i}"), i, i)).collect(),
            top_shops: (0..30)
                .map(|i| ranked(&"x".repeat(500), "CA", "", i))
                .collect(),
            minutes: vec![minute(180_000, 3), minute(60_000, 1), minute(120_000, 2)],
            keyframe: true,
            ..Snapshot::default()
        };
        let mut board = Board::new();
        board.set(&s);
        assert_eq!(board.trends().len(), MAX_TRENDS);
        assert_eq!(board.trends()[0].category, "c1", "the NaN trend is dropped");
        assert_eq!(board.countries.len(), MAX_COUNTRIES);
        assert_eq!(board.top_shops.len(), MAX_RANKED);
        assert_eq!(board.top_shops[0].key.chars().count(), MAX_TEXT_CHARS);
        let starts: Vec<i64> = board.minutes().iter().map(|m| m.start_ms).collect();
        assert_eq!(starts, [60_000, 120_000, 180_000], "oldest first");
    }

    #[test]
    fn minutes_keep_the_newest_and_no_repeats() {
        let many: Vec<Minute> = (0..25).rev().map(|i| minute(i * 60_000, 1)).collect();
        let mut with_repeat = many.clone();
        with_repeat.push(minute(24 * 60_000, 9));
        let kept = recent_minutes(&with_repeat);
        assert_eq!(kept.len(), MAX_MINUTES);
        assert_eq!(kept.first().map(|m| m.start_ms), Some(15 * 60_000));
        assert_eq!(kept.last().map(|m| m.start_ms), Some(24 * 60_000));
    }

    #[test]
    fn channels_follow_the_legend_order() {
        let s = Snapshot {
            channels: vec![
                slice("other", 1, 1),
                slice("social", 2, 2),
                slice("carrier_pigeon", 9, 9),
                slice("online_store", 3, 3),
                slice("pos", 4, 4),
            ],
            keyframe: true,
            ..Snapshot::default()
        };
        let mut board = Board::new();
        board.set(&s);
        let keys: Vec<&str> = board.channels().iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["online_store", "pos", "social", "other"]);
    }
}
