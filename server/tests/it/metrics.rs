//! The admin listener's `/metrics` as Prometheus reads it: the text
//! exposition format (0.0.4), one HELP and one TYPE per family, samples
//! under their family, unique label sets, and the names that scripts,
//! benchmarks and docs read. `scripts/test.sh` also runs promtool's linter
//! over a real scrape; this test needs nothing but the server.

use std::collections::{BTreeMap, BTreeSet};

use crate::util::{eventually, TestServer};

/// One metric family as scraped.
#[derive(Debug)]
struct Family {
    kind: String,
    /// Label sets (as `name=value` pairs, in order) and values.
    samples: Vec<(Vec<(String, String)>, f64)>,
}

/// Parses the Prometheus text format strictly enough to catch what a
/// hand-written exposition gets wrong: a family described twice, a sample
/// outside its family, a counter not named `_total`, a label set twice.
fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families = BTreeMap::new();
    let mut current: Option<(String, Family)> = None;
    let mut lines = text.lines().enumerate();
    if !text.ends_with('\n') {
        return Err("the text does not end in a newline".into());
    }
    while let Some((n, line)) = lines.next() {
        let at = |what: &str| format!("line {}: {what}: {line}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text"))?;
            if help.trim().is_empty() {
                return Err(at("empty HELP"));
            }
            if let Some((done, family)) = current.take() {
                families.insert(done, family);
            }
            if families.contains_key(name) {
                return Err(at("a second HELP for one family"));
            }
            let (_, type_line) = lines.next().ok_or_else(|| at("HELP without TYPE"))?;
            let kind = type_line
                .strip_prefix(&format!("# TYPE {name} "))
                .ok_or_else(|| at("HELP not followed by its TYPE"))?;
            match kind {
                "counter" if !name.ends_with("_total") => {
                    return Err(at("a counter not named _total"))
                }
                "gauge" if name.ends_with("_total") => return Err(at("a gauge named _total")),
                "counter" | "gauge" => {}
                other => return Err(at(&format!("unexpected type {other}"))),
            }
            current = Some((
                name.to_owned(),
                Family {
                    kind: kind.to_owned(),
                    samples: Vec::new(),
                },
            ));
        } else if line.starts_with('#') {
            return Err(at("a comment that is neither HELP nor its TYPE"));
        } else {
            let (name, family) = current
                .as_mut()
                .ok_or_else(|| at("a sample before any family"))?;
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
            let value: f64 = value.parse().map_err(|_| at("a value that is no number"))?;
            let labels = match series.strip_prefix(name.as_str()) {
                Some("") => Vec::new(),
                Some(rest) => parse_labels(rest).ok_or_else(|| at("labels that do not parse"))?,
                None => return Err(at(&format!("a sample outside family {name}"))),
            };
            if family.samples.iter().any(|(l, _)| *l == labels) {
                return Err(at("a label set twice in one family"));
            }
            family.samples.push((labels, value));
        }
    }
    if let Some((done, family)) = current {
        families.insert(done, family);
    }
    Ok(families)
}

/// `{a="x",b="y\"z"}` → `[(a, x), (b, y"z)]`; `None` on anything else.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut chars = text.strip_prefix('{')?.chars().peekable();
    let mut labels = Vec::new();
    loop {
        let mut name = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid || chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return None,
                },
                c => value.push(c),
            }
        }
        labels.push((name, value));
        match chars.next()? {
            ',' => continue,
            '}' => return chars.next().is_none().then_some(labels),
            _ => return None,
        }
    }
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"v\\\"}\"} 1\n";
    let parsed = parse(good).expect("a valid family");
    assert_eq!(
        parsed["a_total"].samples,
        vec![(vec![("k".to_owned(), "v\"}".to_owned())], 1.0)]
    );
    for bad in [
        "# HELP a A.\n# TYPE a counter\na 1\n",
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP a A.\n# TYPE a gauge\n",
        "# HELP a A.\n# TYPE a gauge\nb 1\n",
        "# HELP a A.\n# TYPE a gauge\na{k=\"1\"} 1\na{k=\"1\"} 2\n",
        "# HELP a A.\n# TYPE a gauge\na{k=\"1\",seq} 1\n",
        "# HELP a A.\na 1\n",
        "a 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted:\n{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_prometheus_text_with_typed_families() {
    let server = TestServer::start(|_| {}).await;
    let scrape = || async {
        let response = reqwest::get(server.admin_url("/metrics")).await.ok()?;
        let content_type = response
            .headers()
            .get("content-type")?
            .to_str()
            .ok()?
            .to_owned();
        Some((content_type, response.text().await.ok()?))
    };
    // Wait for a counted order, so that the engine's families carry values.
    let (content_type, text) = eventually("an order counted", || async {
        let (content_type, text) = scrape().await?;
        let families = parse(&text).ok()?;
        let accepted = families
            .get("livemap_events_total")?
            .samples
            .iter()
            .find_map(|(labels, v)| {
                (labels == &[("outcome".to_owned(), "accepted".to_owned())]).then_some(*v)
            })?;
        (accepted > 0.0).then_some((content_type, text))
    })
    .await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    // The names that tests, benchmarks, scripts and docs read, with their
    // types (the scale-out's, the router's and the checkpoints' need Kafka).
    for (name, kind) in [
        ("livemap_events_total", "counter"),
        ("livemap_strings_truncated_total", "counter"),
        ("livemap_replayed_messages_total", "counter"),
        ("livemap_resume_skipped_offsets_total", "counter"),
        ("livemap_orders", "gauge"),
        ("livemap_gmv_usd_cents", "gauge"),
        ("livemap_dedup_entries", "gauge"),
        ("livemap_event_time_lag_seconds", "gauge"),
        ("livemap_source_connected", "gauge"),
        ("livemap_stale", "gauge"),
        ("livemap_snapshots_total", "counter"),
        ("livemap_keyframe_bytes", "gauge"),
        ("livemap_delta_bytes", "gauge"),
        ("livemap_sockets_open", "gauge"),
        ("livemap_sockets_limit", "gauge"),
        ("livemap_sockets_accepted_total", "counter"),
        ("livemap_sockets_header_timeouts_total", "counter"),
        ("livemap_sockets_refused_total", "counter"),
        ("livemap_connections", "gauge"),
        ("livemap_connections_accepted_total", "counter"),
        ("livemap_connections_refused_origin_total", "counter"),
        ("livemap_clients_dropped_slow_total", "counter"),
    ] {
        let family = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert_eq!(family.kind, kind, "{name}");
        assert!(!family.samples.is_empty(), "{name} has no series");
    }

    // Labels take values from fixed lists only: a reason only beside a
    // rejection, and one series per transport.
    let events = &families["livemap_events_total"].samples;
    let mut reasons = BTreeSet::new();
    for (labels, _) in events {
        match labels.as_slice() {
            [(o, outcome)] if o == "outcome" => {
                assert!(["accepted", "duplicate", "filtered"].contains(&outcome.as_str()))
            }
            [(o, outcome), (r, reason)] if o == "outcome" && r == "reason" => {
                assert_eq!(outcome, "rejected");
                reasons.insert(reason.clone());
            }
            other => panic!("unexpected labels {other:?}"),
        }
    }
    assert_eq!(reasons.len(), 10, "{reasons:?}");
    let transports: BTreeSet<&str> = families["livemap_connections"]
        .samples
        .iter()
        .flat_map(|(labels, _)| labels.iter().map(|(_, v)| v.as_str()))
        .collect();
    assert_eq!(transports, BTreeSet::from(["ws", "sse", "longpoll"]));
    server.stop().await.expect("clean stop");
}
