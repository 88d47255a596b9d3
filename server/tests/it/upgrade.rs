//! Upgrades mid-sale: a release reads what the previous release wrote.
//!
//! `tests/fixtures/v<N>/` holds a checkpoint file and a partial-state
//! record written by the release whose checkpoint format was N (gzipped:
//! the sketches are mostly zeros), with the totals they hold
//! (`expected.json`); `v<N>-r<R>/` also says which partial-record format
//! (R), and holds a change record that follows the whole state
//! (`changes.bin.gz`): the totals are those of the whole state and the
//! changes together. The files are committed and never
//! rewritten: when a format changes, the new release writes a new folder
//! (`LIVEMAP_WRITE_FIXTURES=1 cargo test -p livemap-server --test it
//! upgrade::write_fixtures -- --ignored`) and the old ones stay, so every
//! release proves it restores the one before it.

use std::path::PathBuf;

use livemap_engine::checkpoint::StateDir;
use livemap_engine::ingest::{Engine, EngineConfig};
use livemap_events::demo::{DemoMix, Generator};
use livemap_server::kafka::partials::{Kind, PartialRecord};
use livemap_server::source::Position;

/// The source id the fixtures were written under.
const SOURCE: &str = "kafka:checkouts";
/// A minute boundary on Black Friday 2026.
const T0: i64 = 1_795_788_000_000;
const PARTITIONS: i32 = 3;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// What a fixture's state holds, as `expected.json` records it.
fn summary(e: &Engine) -> serde_json::Value {
    serde_json::json!({
        "accepted": e.counts().accepted,
        "duplicates": e.counts().duplicates,
        "filtered": e.counts().filtered,
        "rejected": e.counts().rejected.iter().sum::<u64>(),
        "late": e.counts().late,
        "orders": e.aggregate().orders,
        "gmv_usd_cents": e.aggregate().gmv_usd_cents,
        "carbon_grams": e.aggregate().carbon_grams,
        "unique_shoppers": e.aggregate().shoppers.estimate(),
        "minutes": e.aggregate().minutes.minutes().len(),
        "trend_buckets": e.trends().buckets().len(),
        "countries": e.breakdowns().by_country().count(),
        "positions": e.positions(),
        "shops_selling": e.first_sales().estimate(),
    })
}

/// Checks a restored engine against the totals the fixture was written with.
fn assert_holds(restored: &Engine, expected: &serde_json::Value, what: &str) {
    let got = summary(restored);
    for (key, want) in expected.as_object().expect("expected.json is an object") {
        if key == "format" {
            continue;
        }
        assert_eq!(&got[key], want, "{what}: {key}");
    }
}

/// Every fixture folder: the previous releases' formats.
fn versions() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixture folders in tests/fixtures");
    dirs
}

#[test]
fn every_previous_checkpoint_format_is_restored_with_its_totals() {
    for dir in versions() {
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("expected.json")).expect("expected.json"),
        )
        .expect("expected.json parses");
        let unpacked = std::env::temp_dir().join(format!(
            "livemap-fixture-{}-{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("v"),
            std::process::id()
        ));
        let state = StateDir::new(&unpacked).expect("temp dir");
        std::fs::write(state.path(), gunzip(&dir.join("checkpoint.bin.gz"))).expect("unpacked");
        // What a start does with a state directory.
        let restored = livemap_server::persist::restore_from_dir(
            &state,
            &EngineConfig::default(),
            SOURCE,
            false,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .expect("the fixture has a checkpoint");
        assert!(
            restored.aggregate().orders > 1_000,
            "a fixture worth the name"
        );
        assert_holds(
            &restored,
            &expected,
            &format!("{} checkpoint", dir.display()),
        );
        // The de-duplication filter came back too: replaying the stream's
        // first messages counts nothing.
        assert!(restored.dedup_entries() > 1_000);
        // A state from before the first-sales filter learns its shops for
        // an hour before it announces any: nearly all sold before.
        let mut after = restored;
        assert_first_sales(
            &mut after,
            &expected,
            &format!("{} checkpoint", dir.display()),
        );

        let _ = std::fs::remove_dir_all(&unpacked);
        let record = gunzip(&dir.join("partial.bin.gz"));
        let record = PartialRecord::decode(&record)
            .unwrap_or_else(|e| panic!("{} partial record: {e}", dir.display()));
        assert_eq!(record.aggregator, "agg-fixture");
        assert!(!record.arcs.is_empty());
        let mut view = Engine::restore_format(
            EngineConfig::default(),
            SOURCE,
            &record.state,
            record.state_format,
        )
        .unwrap_or_else(|e| panic!("{} partial state: {e}", dir.display()));
        let changes = dir.join("changes.bin.gz");
        if changes.exists() {
            let changes = PartialRecord::decode(&gunzip(&changes))
                .unwrap_or_else(|e| panic!("{} change record: {e}", dir.display()));
            assert_eq!(changes.kind, Kind::Changes);
            assert_eq!(changes.prev_seq, record.seq, "it follows the whole state");
            view.apply_changes_format(SOURCE, &changes.state, changes.state_format, None)
                .unwrap_or_else(|e| panic!("{} changes: {e}", dir.display()));
        }
        assert_holds(
            &view,
            &expected,
            &format!("{} partial record", dir.display()),
        );
        // The record's state learns too when it predates the filter, its
        // change records applied (an aggregator restores from them).
        assert_first_sales(
            &mut view,
            &expected,
            &format!("{} partial record", dir.display()),
        );
    }
}

/// Feeds a restored engine fresh orders past its newest: a state of a
/// format before the first-sales filter (6) announces no first sale (it
/// learns for an hour), one with the filter announces the new shops.
fn assert_first_sales(engine: &mut Engine, expected: &serde_json::Value, what: &str) {
    let newest = engine.newest_event_ms().expect("orders counted");
    let mut g = Generator::new(4242, DemoMix::default());
    let mut buf = Vec::new();
    for i in 0..2_000i64 {
        let at = newest + 1_000 + i * 10;
        g.next_message(at, &mut buf);
        engine.ingest(Some(&buf), None, at + 500);
    }
    let announced = engine.take_first_sales().len();
    if expected["format"].as_u64() < Some(6) {
        assert_eq!(announced, 0, "{what}: learning");
    } else {
        assert!(announced > 0, "{what}: new shops announced");
    }
}

fn gunzip(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

fn gzip(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    let file = std::fs::File::create(path).expect("fixture file");
    let mut z = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    z.write_all(bytes).expect("written");
    z.finish().expect("finished");
}

/// Feeds the fixture's stream: demo traffic over 20 minutes of event time
/// on three partitions, with duplicates and malformed messages.
fn fixture_engine() -> Engine {
    let mut g = Generator::new(
        2026,
        DemoMix {
            malformed: 0.01,
            ..DemoMix::default()
        },
    );
    let mut e = Engine::new(EngineConfig::default());
    let all: Vec<_> = (0..PARTITIONS).map(|p| (p, None)).collect();
    e.assign(&all, 1);
    let mut buf = Vec::new();
    for i in 0..60_000i64 {
        let at = T0 + i * 20;
        g.next_message(at, &mut buf);
        let p = (i % i64::from(PARTITIONS)) as i32;
        let position = Position {
            partition: p,
            offset: i / i64::from(PARTITIONS),
            generation: 1,
        };
        e.ingest(Some(&buf), Some(position), at + 500);
    }
    e
}

/// Writes the fixtures of the current formats into
/// `tests/fixtures/v<checkpoint format>/`. Run by hand when a format
/// changes; never overwrites a folder that exists.
#[test]
#[ignore = "writes fixtures; run by hand when a format changes"]
fn write_fixtures() {
    if std::env::var_os("LIVEMAP_WRITE_FIXTURES").is_none() {
        return;
    }
    let dir = fixtures().join(format!(
        "v{}-r{}",
        livemap_engine::checkpoint::FORMAT_VERSION,
        livemap_server::kafka::partials::FORMAT_VERSION
    ));
    assert!(
        !dir.exists(),
        "{} exists: fixtures are never rewritten",
        dir.display()
    );
    let mut e = fixture_engine();
    // A whole state, then a minute more of traffic and the change record
    // that follows it; the checkpoint and the totals are of the end.
    let whole = PartialRecord {
        aggregator: "agg-fixture".into(),
        instance: 7,
        seq: 3,
        whole_seq: 3,
        published_ms: T0 + 1_200_500,
        arcs: e.take_arcs(),
        first_sales: e.take_first_sales(),
        state: e.export_view(SOURCE),
        ..PartialRecord::default()
    };
    let before = e.view_clone();
    let mut g = Generator::new(2027, DemoMix::default());
    let mut buf = Vec::new();
    for i in 0..3_000i64 {
        let at = T0 + 1_200_000 + i * 20;
        g.next_message(at, &mut buf);
        let position = Position {
            partition: (i % i64::from(PARTITIONS)) as i32,
            offset: 20_000 + i / i64::from(PARTITIONS),
            generation: 1,
        };
        e.ingest(Some(&buf), Some(position), at + 500);
    }
    let changes = PartialRecord {
        kind: Kind::Changes,
        seq: 4,
        prev_seq: 3,
        whole_seq: 3,
        published_ms: T0 + 1_260_500,
        state: e.export_changes(&before, SOURCE),
        ..whole.clone()
    };
    let scratch = std::env::temp_dir().join(format!("livemap-fixture-w-{}", std::process::id()));
    let state = StateDir::new(&scratch).expect("scratch dir");
    state.store(&e.export(SOURCE)).expect("checkpoint written");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    gzip(
        &dir.join("checkpoint.bin.gz"),
        &std::fs::read(state.path()).expect("checkpoint read"),
    );
    let _ = std::fs::remove_dir_all(&scratch);
    gzip(&dir.join("partial.bin.gz"), &whole.encode());
    gzip(&dir.join("changes.bin.gz"), &changes.encode());
    let mut expected = summary(&e);
    expected["format"] = serde_json::json!(livemap_engine::checkpoint::FORMAT_VERSION);
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&expected).expect("json") + "\n",
    )
    .expect("expected.json");
}
