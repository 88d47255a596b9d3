//! Snapshot-style tests: a scripted stream and a driven clock go through
//! the real engine, snapshot and encode stages, and the whole JSON output
//! (`/api/snapshot` and `/api/history` documents) is compared with a file
//! in `server/tests/golden/`.
//!
//! To accept a deliberate change, run with `LIVEMAP_BLESS=1` and review the
//! diff of the golden files like any other code change.

use std::path::PathBuf;

use livemap_engine::ingest::{Engine, EngineConfig};
use livemap_events::time::{format_rfc3339_ms, parse_rfc3339_ms};
use livemap_server::encode::Frame;
use livemap_server::snapshot::Snapshotter;
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn at(rfc3339: &str) -> i64 {
    parse_rfc3339_ms(rfc3339).expect("test times are valid")
}

/// One completed checkout in the contract's format.
#[derive(Clone)]
struct Order {
    id: String,
    at_ms: i64,
    shop: u64,
    shop_country: &'static str,
    buyer: String,
    buyer_country: &'static str,
    city: Option<&'static str>,
    /// Buyer coordinates; `None` for a pickup order (no arc).
    coords: Option<(f64, f64)>,
    total: &'static str,
    currency: &'static str,
    channel: &'static str,
    items: Vec<(&'static str, u32)>,
    test: bool,
}

impl Order {
    fn new(id: impl Into<String>, at_ms: i64) -> Order {
        Order {
            id: id.into(),
            at_ms,
            shop: 1_000,
            shop_country: "CA",
            buyer: "buyer-0".into(),
            buyer_country: "US",
            city: None,
            coords: None,
            total: "10.00",
            currency: "USD",
            channel: "online_store",
            items: vec![("Media > Books", 1)],
            test: false,
        }
    }

    fn json(&self) -> Vec<u8> {
        let mut buyer = json!({"id": self.buyer, "country": self.buyer_country});
        if let Some(city) = self.city {
            buyer["city"] = json!(city);
        }
        if let Some((lat, lon)) = self.coords {
            buyer["lat"] = json!(lat);
            buyer["lon"] = json!(lon);
        }
        // Yen have no minor unit: "1.00" would be rejected as too precise.
        let price = if self.currency == "JPY" {
            "100"
        } else {
            "1.00"
        };
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|(c, q)| json!({"product_category": c, "quantity": q, "price": price}))
            .collect();
        json!({
            "event_id": self.id,
            "type": "checkout.completed",
            "occurred_at": format_rfc3339_ms(self.at_ms),
            "shop": {"id": self.shop, "country": self.shop_country, "lat": 43.6532, "lon": -79.3832},
            "buyer": buyer,
            "order": {
                "id": format!("order-{}", self.id),
                "total": self.total,
                "currency": self.currency,
                "channel": self.channel,
                "test": self.test,
                "line_items": items,
            },
            "shipping": {"carbon_kg": 0.25},
        })
        .to_string()
        .into_bytes()
    }
}

/// The engine and the stages after it, driven by the script's clock.
struct Pipeline {
    engine: Engine,
    snapshotter: Snapshotter,
}

impl Pipeline {
    fn new(start_ms: i64) -> Pipeline {
        Pipeline {
            engine: Engine::new(config()),
            snapshotter: Snapshotter::new(start_ms, 200),
        }
    }

    /// Feeds one message as it arrives at `now_ms`.
    fn feed(&mut self, message: &[u8], now_ms: i64) {
        self.engine.ingest(Some(message), None, now_ms);
    }

    /// Builds and encodes a snapshot at `now_ms`: both JSON documents.
    fn snapshot(&mut self, now_ms: i64) -> (Value, Value) {
        let frame = Frame::encode(
            &self.snapshotter.build(&mut self.engine, now_ms, false, 0),
            None,
        );
        let doc = serde_json::from_slice(&frame.json.raw).expect("snapshot JSON");
        let history = serde_json::from_slice(&frame.history.json()).expect("history JSON");
        (doc, history)
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        seed: 7,
        ..EngineConfig::default()
    }
}

/// Compares with (or, under `LIVEMAP_BLESS=1`, writes) a golden file.
fn check_golden(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let text = render(actual, 0) + "\n";
    if std::env::var_os("LIVEMAP_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with LIVEMAP_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != text {
        let line = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(text.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n  expected: {}\n  actual:   {}\n\
             (run with LIVEMAP_BLESS=1 to accept the new output, then review the diff)",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            text.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

/// Pretty JSON, except that arrays of plain values stay on one line, so a
/// day of per-minute history is one line per series rather than thousands.
fn render(v: &Value, indent: usize) -> String {
    let pad = "  ".repeat(indent + 1);
    let end = "  ".repeat(indent);
    match v {
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
            let inner: Vec<String> = items.iter().map(Value::to_string).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|i| format!("{pad}{}", render(i, indent + 1)))
                .collect();
            format!("[\n{}\n{end}]", inner.join(",\n"))
        }
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{pad}{}: {}",
                        Value::from(k.as_str()),
                        render(v, indent + 1)
                    )
                })
                .collect();
            format!("{{\n{}\n{end}}}", inner.join(",\n"))
        }
        other => other.to_string(),
    }
}

const T0: &str = "2026-11-27T14:00:00Z";

/// The first ten minutes of a sale: 30 orders in three cities and
/// currencies, then every hazard the contract names, and two late orders,
/// one within the allowed lateness (five minutes) and one past it.
fn first_ten_minutes() -> Vec<(Vec<u8>, i64)> {
    let t0 = at(T0);
    let mut script: Vec<(Vec<u8>, i64)> = Vec::new();
    let cities = [
        ("Austin", "US", "USD", "19.99", (30.2672, -97.7431)),
        ("Lyon", "FR", "EUR", "25.00", (45.764, 4.8357)),
        ("Osaka", "JP", "JPY", "3000", (34.6937, 135.5023)),
    ];
    let channels = [
        "online_store",
        "mobile_app",
        "pos",
        "social",
        "carrier_pigeon",
    ];
    let categories = [
        "Apparel & Accessories > Shoes > Sneakers",
        "Home & Garden > Kitchen & Dining",
        "Electronics",
    ];
    let mut orders = Vec::new();
    for i in 0..30u32 {
        let (city, country, currency, total, coords) = cities[i as usize % 3];
        let mut o = Order::new(format!("evt-{i:03}"), t0 + i64::from(i) * 20_000);
        o.shop = 1_000 + u64::from(i % 2);
        o.buyer = format!("buyer-{}", i % 24);
        o.buyer_country = country;
        o.city = Some(city);
        o.coords = (i % 5 == 0).then_some(coords);
        o.total = total;
        o.currency = currency;
        o.channel = channels[i as usize % channels.len()];
        o.items = vec![(categories[i as usize % 3], 1 + i % 2)];
        orders.push(o);
    }
    for o in &orders {
        // Each arrives a second after it happened.
        script.push((o.json(), o.at_ms + 1_000));
    }
    let newest = orders[29].at_ms + 1_000;
    // A redelivery of an order, minutes later: a duplicate.
    script.push((orders[3].json(), newest));
    // A test order, another event type, broken JSON, an unknown currency.
    let mut test = Order::new("evt-test", newest);
    test.test = true;
    script.push((test.json(), newest));
    script.push((
        br#"{"event_id":"evt-view","type":"page.viewed","occurred_at":"2026-11-27T14:09:00Z"}"#
            .to_vec(),
        newest,
    ));
    script.push((b"{\"event_id\":".to_vec(), newest));
    let mut doubloons = Order::new("evt-xxx", newest);
    doubloons.currency = "XXX";
    script.push((doubloons.json(), newest));
    // Late: 4 min 40 s behind the newest event time, so in its own minute...
    let mut late_ok = Order::new("evt-late-ok", t0 + 5 * MINUTE);
    late_ok.total = "100.00";
    script.push((late_ok.json(), newest + 1_000));
    // ...and 7 min 40 s behind it: counted, flagged late, not in minute 2.
    let mut late = Order::new("evt-late", t0 + 2 * MINUTE);
    late.total = "1000.00";
    script.push((late.json(), newest + 2_000));
    script
}

#[test]
fn a_sales_first_ten_minutes_with_hazards_and_late_orders() {
    let script = first_ten_minutes();
    let mut p = Pipeline::new(at(T0));
    let mut steps = Vec::new();
    for (i, (message, now)) in script.iter().enumerate() {
        p.feed(message, *now);
        if i == 14 {
            let (doc, _) = p.snapshot(*now);
            steps.push(json!({"after": "15 orders", "snapshot": doc}));
        }
    }
    let end = script.last().map_or(0, |(_, now)| *now);
    let (doc, history) = p.snapshot(end);
    // Things the golden file must show, asserted here too so that a bad
    // blessing cannot hide them.
    assert_eq!(doc["totals"]["orders"], 32);
    assert_eq!(doc["ingest"]["duplicates"], 1);
    assert_eq!(doc["ingest"]["late"], 1);
    assert_eq!(doc["ingest"]["filtered"], 2);
    assert_eq!(
        doc["ingest"]["rejected"],
        json!({"bad_json": 1, "unknown_currency": 1})
    );
    let minute = |m: usize| history["orders"][m].as_u64().expect("a count");
    assert_eq!(
        (minute(2), minute(5)),
        (3, 4),
        "late-ok in minute 5, late not in minute 2"
    );
    assert_eq!(doc["breakdowns"]["top_cities"][0]["orders"], 10);
    steps.push(json!({"after": "everything", "snapshot": doc, "history": history}));
    check_golden("first_ten_minutes", &Value::Array(steps));
}

/// The same script with the process restarted in the middle: the state
/// goes through a checkpoint (export, restore) after the 20th message, and
/// the rest arrives at the new process, which must still recognise the
/// duplicate, the watermark and every total.
#[test]
fn a_restart_in_the_middle_changes_nothing_but_the_version_and_arcs() {
    let script = first_ten_minutes();
    let mut whole = Pipeline::new(at(T0));
    for (message, now) in &script {
        whole.feed(message, *now);
    }
    let mut first = Pipeline::new(at(T0));
    for (message, now) in &script[..20] {
        first.feed(message, *now);
    }
    let saved = first.engine.export("demo");
    let restart_ms = script[19].1 + 500;
    let mut second = Pipeline {
        engine: Engine::restore(config(), "demo", &saved).expect("restores"),
        snapshotter: Snapshotter::new(restart_ms, 200),
    };
    for (message, now) in &script[20..] {
        second.feed(message, *now);
    }
    let end = script.last().map_or(0, |(_, now)| *now);
    let (mut doc, history) = second.snapshot(end);
    let (mut expected, expected_history) = whole.snapshot(end);
    assert_eq!(history["orders"], expected_history["orders"]);
    assert_eq!(history["gmv_usd_cents"], expected_history["gmv_usd_cents"]);
    let golden = json!({"snapshot": doc.clone(), "history": history});
    // Arcs are a per-tick sample, not state, and versions start afresh at
    // a restart's clock; the restarted process lists only the moments
    // since it started, each one the uninterrupted run had too (no first
    // sale is celebrated twice). Everything else is equal.
    let moments = |d: &serde_json::Value| d["moments"].as_array().cloned().unwrap_or_default();
    let (after, all) = (moments(&doc), moments(&expected));
    assert!(
        after.iter().all(|m| all.contains(m)),
        "{after:?} within {all:?}"
    );
    for d in [&mut doc, &mut expected] {
        let map = d.as_object_mut().expect("an object");
        map.remove("arcs");
        map.remove("version");
        map.remove("moments");
    }
    assert_eq!(doc, expected);
    check_golden("restart", &golden);
}

/// Product trends at the edges of their windows. Three categories sell
/// through seven hours; snapshots are taken just before the first whole
/// hour, at it, at three hours, at six (the first full baseline), at six
/// hours five minutes (the window slides) and at seven.
#[test]
fn trends_at_the_edges_of_the_six_hour_window() {
    let t1 = at("2026-11-28T00:00:00Z");
    const BUCKET: i64 = 5 * MINUTE;
    let mut p = Pipeline::new(t1);
    let mut id = 0;
    let mut order = |at_ms: i64, category: &'static str, quantity: u32| {
        id += 1;
        let mut o = Order::new(format!("trend-{id}"), at_ms);
        o.items = vec![(category, quantity)];
        o.buyer = format!("buyer-{}", id % 50);
        o.json()
    };
    let mut script = Vec::new();
    for b in 0..=84i64 {
        let t = t1 + b * BUCKET + MINUTE;
        let hour = b / 12;
        // Steady: 2 per bucket throughout.
        script.push((order(t, "Home & Garden > Decor > Candles", 2), t));
        // Surging: 1 per bucket, then 4 per bucket in the sixth hour.
        let q = if hour == 5 { 4 } else { 1 };
        script.push((order(t, "Electronics > Audio > Headphones", q), t));
        // Gone: sells only in the first hour, then falls out of the window.
        if hour == 0 {
            script.push((order(t, "Toys & Games > Puzzles", 3), t));
        }
        // New: first sold in the sixth hour.
        if hour >= 5 {
            script.push((order(t, "Media > Books > Cookbooks", 1), t));
        }
    }
    let marks = [
        ("59 min 59 s", t1 + HOUR - 1_000),
        ("1 h", t1 + HOUR + MINUTE),
        ("3 h", t1 + 3 * HOUR + MINUTE),
        ("6 h", t1 + 6 * HOUR + MINUTE),
        ("6 h 5 min", t1 + 6 * HOUR + BUCKET + MINUTE),
        ("7 h", t1 + 7 * HOUR + MINUTE),
    ];
    let mut steps = Vec::new();
    let mut next = 0;
    for (label, until) in marks {
        while next < script.len() && script[next].1 <= until {
            p.feed(&script[next].0, script[next].1);
            next += 1;
        }
        let (doc, _) = p.snapshot(until);
        steps.push(json!({"at": label, "trends": doc["trends"], "totals": doc["totals"]}));
    }
    let trends = |i: usize| steps[i]["trends"].as_array().map_or(0, Vec::len);
    assert_eq!(trends(0), 0, "no trends before one whole hour");
    assert!(trends(1) > 0);
    let names = |i: usize| -> Vec<String> {
        steps[i]["trends"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["category"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        names(3)[0],
        "Media > Books",
        "new in the window's last hour"
    );
    assert_eq!(names(4)[1], "Electronics > Audio", "the surge");
    assert!(names(3).contains(&"Toys & Games > Puzzles".to_owned()));
    assert!(
        !names(5).contains(&"Toys & Games > Puzzles".to_owned()),
        "nothing sold in the last six hours: no trend"
    );
    check_golden("trend_windows", &Value::Array(steps));
}

/// Milestones of the total: passed ones are celebrated once, the largest
/// when a tick passes several, and a restarted process celebrates none it
/// already passed. Orders of $300 against milestones from $1,000.
#[test]
fn milestones_are_celebrated_once_and_never_again_after_a_restart() {
    let t0 = at("2026-11-27T14:00:00Z");
    let mut p = Pipeline::new(t0);
    p.snapshotter = Snapshotter::new(t0, 200).with_first_milestone(100_000);
    let milestones = |doc: &Value| -> Vec<u64> {
        doc["moments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["kind"] == "milestone")
            .filter_map(|m| m["usd_cents"].as_u64())
            .collect()
    };
    let order = |p: &mut Pipeline, i: u32, now: i64| {
        let mut o = Order::new(format!("m-{i}"), now - 1_000);
        o.total = "300.00";
        p.feed(&o.json(), now);
    };
    // $1,200 before the first tick: taken as passed, not celebrated.
    for i in 0..4 {
        order(&mut p, i, t0 + 100);
    }
    assert!(milestones(&p.snapshot(t0 + 200).0).is_empty());
    // $9,900 by the next tick: $1,000 was passed already, $10,000 not yet.
    for i in 4..33 {
        order(&mut p, i, t0 + 300);
    }
    assert!(milestones(&p.snapshot(t0 + 400).0).is_empty());
    // $10,200, then $105,000 in one tick: $10,000, then only $100,000.
    order(&mut p, 33, t0 + 500);
    assert_eq!(milestones(&p.snapshot(t0 + 600).0), vec![1_000_000]);
    for i in 34..350 {
        order(&mut p, i, t0 + 700);
    }
    assert_eq!(
        milestones(&p.snapshot(t0 + 800).0),
        vec![10_000_000, 1_000_000],
        "most recent first, the JSON lists the last few"
    );
    // A restart over the same state: nothing passed is celebrated again.
    let saved = p.engine.export("demo");
    let mut q = Pipeline {
        engine: Engine::restore(config(), "demo", &saved).expect("restores"),
        snapshotter: Snapshotter::new(t0 + 5_000, 200).with_first_milestone(100_000),
    };
    assert!(milestones(&q.snapshot(t0 + 5_200).0).is_empty());
    assert!(milestones(&q.snapshot(t0 + 5_400).0).is_empty());
    // Passed while stale (catching up): history, not news, then or after.
    for i in 350..3_700 {
        order(&mut q, i, t0 + 5_500);
    }
    let built = q.snapshotter.build(&mut q.engine, t0 + 5_600, true, 0);
    assert!(
        built.snapshot.moments.is_empty(),
        "{:?}",
        built.snapshot.moments
    );
    assert!(milestones(&q.snapshot(t0 + 5_800).0).is_empty());
}

/// The anomaly flags reach the public JSON only where the operator shows
/// them (`--public-anomalies`): a sale an hour old whose orders fall 80 %.
#[test]
fn anomaly_flags_reach_the_public_only_when_the_operator_shows_them() {
    let t0 = at("2026-11-27T14:00:00Z");
    let mut shown = Pipeline::new(t0);
    shown.snapshotter = Snapshotter::new(t0, 200).with_public_alerts(true);
    let mut hidden = Pipeline::new(t0);
    let mut n = 0;
    let mut flagged = None;
    for minute in 0..80 {
        // 100 orders a minute, a fifth of that from minute 60 on.
        let orders = if minute < 60 { 100 } else { 20 };
        for k in 0..orders {
            let when = t0 + minute * MINUTE + k * (MINUTE / orders);
            let o = Order::new(format!("a-{n}"), when);
            n += 1;
            shown.feed(&o.json(), when + 500);
            hidden.feed(&o.json(), when + 500);
        }
        let now = t0 + (minute + 1) * MINUTE + 1_000;
        let (doc, _) = shown.snapshot(now);
        let (plain, _) = hidden.snapshot(now);
        assert!(plain.get("alerts").is_none(), "minute {minute}: {plain}");
        if minute < 60 {
            assert!(
                doc.get("alerts").is_none(),
                "minute {minute}: {}",
                doc["alerts"]
            );
        } else if flagged.is_none()
            && doc["alerts"] == json!(["orders_per_minute", "sales_per_minute"])
        {
            flagged = Some(minute);
        }
    }
    // The first minute of the fall closes at minute 61.
    let flagged = flagged.expect("the fall reached the public JSON");
    assert!(flagged <= 63, "flagged at minute {flagged}");
}
