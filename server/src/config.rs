//! Command-line flags and environment, turned into a validated [`Config`]
//! in one step.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use livemap_events::money::FxTable;

use crate::kafka::partials::PartialsConfig;
use crate::kafka::source::{KafkaConfig, StartFrom};
use livemap_engine::ingest::EngineConfig;

/// The live sales map server.
///
/// With no arguments it serves the globe at http://127.0.0.1:8080 fed by the
/// embedded demo source. With --kafka-brokers it reads the checkout topic
/// instead, checkpointing its state to --state-dir.
#[derive(Debug, Parser)]
#[command(name = "livemap", version, about, long_about = None)]
pub struct Args {
    /// Address to serve the page, the streams and the API on.
    #[arg(long, env = "LIVEMAP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Demo source rate in messages per second, all event types together
    /// (about 1 in 10 is a completed checkout).
    #[arg(long, env = "LIVEMAP_DEMO_RATE", default_value_t = 3_000)]
    pub demo_rate: u64,

    /// Seed for the demo generator; random when not given.
    #[arg(long, env = "LIVEMAP_DEMO_SEED")]
    pub demo_seed: Option<u64>,

    /// Minutes of sale the demo source generates at start, before it goes
    /// live, so the timeline and the product trends (which need an hour of
    /// history) have something to show at once. 0 starts empty.
    #[arg(long, env = "LIVEMAP_DEMO_BACKFILL_MINUTES", default_value_t = 120)]
    pub demo_backfill_minutes: u32,

    /// Rehearses an outage on the demo source: its orders fall 80 % from
    /// this many minutes before it goes live until as many after, so the
    /// anomaly warnings, their alerts and webhook can be checked end to
    /// end (the fall's first minutes are in the backfill, and judged at
    /// once). 0: none.
    #[arg(long, env = "LIVEMAP_DEMO_OUTAGE_MINUTES", default_value_t = 0)]
    pub demo_outage_minutes: u32,

    /// How often a new snapshot is built and sent, in milliseconds.
    #[arg(long, env = "LIVEMAP_TICK_MS", default_value_t = 200)]
    pub tick_ms: u32,

    /// Most arcs sent per tick (12 a tick is 60 new arcs a second on every
    /// screen, and keeps a browser's stream to a few KB/s).
    #[arg(long, env = "LIVEMAP_ARCS_PER_TICK", default_value_t = 12)]
    pub arcs_per_tick: usize,

    /// De-duplication horizon in minutes of event time.
    #[arg(long, env = "LIVEMAP_DEDUP_HORIZON_MINUTES", default_value_t = 60)]
    pub dedup_horizon_minutes: u32,

    /// Most event ids the de-duplication filter remembers (about 25 bytes each).
    #[arg(long, env = "LIVEMAP_DEDUP_MAX_ENTRIES", default_value_t = 10_000_000)]
    pub dedup_max_entries: usize,

    /// JSON file of currency rates that override the built-in table:
    /// {"EUR": "1.0812", ...} in US dollars per unit.
    #[arg(long, env = "LIVEMAP_FX_RATES")]
    pub fx_rates: Option<PathBuf>,

    /// Reject events whose time is more than this many seconds ahead of the clock.
    #[arg(long, env = "LIVEMAP_FUTURE_TOLERANCE_SECS", default_value_t = 300)]
    pub future_tolerance_secs: u32,

    /// An order up to this many minutes behind the newest event time still
    /// lands in its own minute; later ones count in the totals and as
    /// `ingest.late`.
    #[arg(long, env = "LIVEMAP_ALLOWED_LATENESS_MINUTES", default_value_t = 5)]
    pub allowed_lateness_minutes: u32,

    /// One order's total above this many US dollars is not plausible: it
    /// is rejected (`implausible_total`) and counted, never added.
    #[arg(long, env = "LIVEMAP_MAX_ORDER_USD", default_value_t = 1_000_000)]
    pub max_order_usd: u64,

    /// Longest a long-poll request waits for a new snapshot, in seconds.
    #[arg(long, env = "LIVEMAP_POLL_TIMEOUT_SECS", default_value_t = 25)]
    pub poll_timeout_secs: u32,

    /// Most client sockets held at once on the public port, whatever they
    /// carry (page loads, API calls, WebSockets, event streams, long-polls),
    /// counted from accept; past it a socket is answered 503 with a
    /// jittered Retry-After and closed. Lowered at start to fit the
    /// open-file limit.
    #[arg(long, env = "LIVEMAP_MAX_CONNECTIONS", default_value_t = 150_000)]
    pub max_connections: usize,

    /// Most client sockets held at once from one client address, counted
    /// from accept; past it 429 (0: no limit, e.g. behind a load balancer
    /// that hides client addresses).
    #[arg(long, env = "LIVEMAP_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: usize,

    /// An origin (`scheme://host[:port]`) whose pages may open the WebSocket,
    /// besides the server's own; matched exactly (docs/API.md). Repeatable.
    #[arg(
        long = "allowed-origin",
        env = "LIVEMAP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// A client whose socket takes no data for this many seconds (it
    /// stopped reading) is dropped.
    #[arg(long, env = "LIVEMAP_WRITE_TIMEOUT_SECS", default_value_t = 10)]
    pub write_timeout_secs: u32,

    /// A client socket must send a request's whole head within this many
    /// seconds of connecting, and of its previous response (so an idle
    /// keep-alive socket is closed after it too).
    #[arg(long, env = "LIVEMAP_HEADER_TIMEOUT_SECS", default_value_t = 5)]
    pub header_timeout_secs: u32,

    /// On SIGTERM the process exits within this many seconds, even when
    /// the broker is away: what is not durable by then (a last checkpoint,
    /// an offset commit) is read again after the restart, as after a
    /// crash. Below an orchestrator's usual 30 s grace period.
    #[arg(long, env = "LIVEMAP_SHUTDOWN_GRACE_SECS", default_value_t = 8)]
    pub shutdown_grace_secs: u32,

    /// Kafka bootstrap servers (HOST:PORT[,HOST:PORT..]). Without it the
    /// server runs on the embedded demo source.
    #[arg(long, env = "LIVEMAP_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// The checkout topic.
    #[arg(long, env = "LIVEMAP_KAFKA_TOPIC", default_value = "checkouts")]
    pub topic: String,

    /// Consumer group id; members of one group share the topic's partitions.
    #[arg(long, env = "LIVEMAP_KAFKA_GROUP_ID", default_value = "livemap")]
    pub group_id: String,

    /// Where to start in partitions that neither the checkpoint nor the
    /// group has seen.
    #[arg(long, env = "LIVEMAP_START_FROM", value_enum, default_value_t = StartFrom::Earliest)]
    pub start_from: StartFrom,

    /// A librdkafka setting passed through as is, KEY=VALUE (repeatable),
    /// e.g. security.protocol=SASL_SSL, sasl.mechanisms=SCRAM-SHA-512.
    #[arg(long = "kafka-option", env = "LIVEMAP_KAFKA_OPTIONS", value_delimiter = ';', value_parser = parse_key_value)]
    pub kafka_options: Vec<(String, String)>,

    /// Directory for checkpoints of the state and the offsets it reflects.
    #[arg(long, env = "LIVEMAP_STATE_DIR", default_value = "livemap-state")]
    pub state_dir: PathBuf,

    /// When checkpoints exist in --state-dir but none can be restored
    /// (corrupt, or written by a release this one cannot read), start
    /// counting from zero instead of refusing to start. The files are
    /// kept aside as *.unreadable.
    #[arg(long, env = "LIVEMAP_DISCARD_UNREADABLE_CHECKPOINT")]
    pub discard_unreadable_checkpoint: bool,

    /// Seconds between checkpoints.
    #[arg(long, env = "LIVEMAP_CHECKPOINT_SECS", default_value_t = 5)]
    pub checkpoint_secs: u32,

    /// What this process does: `all` reads the checkout topic and serves
    /// browsers; past one machine, `aggregator`s share the checkout topic
    /// and publish their partial states, and `edge`s merge those and serve
    /// browsers. See docs/SCALE-OUT.md.
    #[arg(long, env = "LIVEMAP_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// An aggregator's name, stable across its restarts (a StatefulSet's
    /// pod name, say): its partial state is published under it and
    /// restored from it. Two live aggregators must never share one.
    /// Defaults to the host name.
    #[arg(long, env = "LIVEMAP_AGGREGATOR_ID")]
    pub aggregator_id: Option<String>,

    /// The topic where aggregators publish partial states
    /// (default: `<topic>.livemap-partials`).
    #[arg(long, env = "LIVEMAP_PARTIALS_TOPIC")]
    pub partials_topic: Option<String>,

    /// Milliseconds between an aggregator's partial-state records: the
    /// edges' totals trail the aggregators' by up to this much (arcs go
    /// out every tick regardless).
    #[arg(long, env = "LIVEMAP_PUBLISH_MS", default_value_t = 1_000)]
    pub publish_ms: u32,

    /// An aggregator id that has published no state for this many seconds
    /// (while others publish) is retired: its counts stay in the totals,
    /// folded into one retired sum, and every edge frees its state. An
    /// aggregator restarting under its id restores its own record only
    /// within half this time; later it counts from zero, as a new
    /// lineage. Rollouts that give aggregators new ids (host names) no
    /// longer grow every edge.
    #[arg(long, env = "LIVEMAP_RETIRE_AFTER_SECS", default_value_t = 3_600)]
    pub retire_after_secs: u32,

    /// Where to POST each anomaly flag raised or cleared (orders or sales
    /// per minute fallen below half of what the sale expects), as JSON:
    /// a plain `http://host[:port]/path` (put a relay in front for
    /// https). Off when unset. Operators only: nothing reaches the
    /// public page.
    #[arg(long, env = "LIVEMAP_ANOMALY_WEBHOOK")]
    pub anomaly_webhook: Option<String>,

    /// Shows the anomaly flags on the public page too (a banner, and
    /// `alerts` in `/api/snapshot`): for a screen in an operations room.
    /// Off by default: the public sees no flag.
    #[arg(long, env = "LIVEMAP_PUBLIC_ANOMALIES")]
    pub public_anomalies: bool,

    /// The first milestone of the sale's total that the page celebrates,
    /// in whole US dollars; each next one is ten times the last ($1M,
    /// $10M, $100M, $1B, ... by default).
    #[arg(long, env = "LIVEMAP_FIRST_MILESTONE_USD", default_value_t = 1_000_000)]
    pub first_milestone_usd: u64,

    /// Snapshots are marked stale while the consumer is more than this many
    /// messages behind (summed over partitions), or the broker is unreachable.
    #[arg(long, env = "LIVEMAP_LAG_LIMIT", default_value_t = 100_000)]
    pub lag_limit: i64,

    /// Snapshots are marked stale (and /readyz fails) while the newest
    /// message read in a partition with a backlog is older than this many
    /// seconds, by the broker's timestamps.
    #[arg(long, env = "LIVEMAP_LAG_LIMIT_SECS", default_value_t = 30)]
    pub lag_limit_secs: u32,

    /// Admin listener: /metrics, /healthz, /readyz.
    #[arg(long, env = "LIVEMAP_ADMIN_LISTEN", default_value = "127.0.0.1:9091")]
    pub admin_listen: SocketAddr,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

/// The machine's name, where it has one.
fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The role of this process in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// One process: reads the checkouts and serves browsers.
    All,
    /// Reads its share of the checkout topic; publishes its partial state.
    Aggregator,
    /// Merges the aggregators' partial states; serves browsers.
    Edge,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--tick-ms must be between 10 and 10000, got {0}")]
    Tick(u32),
    #[error("--dedup-horizon-minutes must be at least 1")]
    Horizon,
    #[error("--role {0} needs --kafka-brokers")]
    RoleNeedsKafka(&'static str),
    #[error("--anomaly-webhook {0}: an http://host[:port]/path URL is needed")]
    Webhook(String),
    #[error("--role aggregator needs --aggregator-id (no host name to default to)")]
    AggregatorId,
    #[error("--publish-ms must be between 100 and 60000, got {0}")]
    Publish(u32),
    #[error("--allowed-origin {0:?} is not an origin: expected http(s)://host[:port]")]
    AllowedOrigin(String),
    #[error("reading --fx-rates {path}: {source}")]
    FxFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing --fx-rates {path}: {source}")]
    FxJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("in --fx-rates {path}: {source}")]
    FxValue {
        path: PathBuf,
        source: livemap_events::money::FxError,
    },
}

/// Everything the server needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub engine: EngineConfig,
    pub demo_rate: u64,
    pub demo_seed: u64,
    pub demo_backfill: Duration,
    /// See `--demo-outage-minutes`.
    pub demo_outage: Duration,
    pub tick: Duration,
    pub poll_timeout: Duration,
    pub write_timeout: Duration,
    /// See `--header-timeout-secs`.
    pub header_timeout: Duration,
    pub limits: crate::http::fanout::Limits,
    /// The Kafka source; `None` runs the demo source.
    pub kafka: Option<KafkaConfig>,
    /// Where checkpoints go (Kafka source only).
    pub state_dir: PathBuf,
    /// See `--discard-unreadable-checkpoint`.
    pub discard_unreadable_checkpoint: bool,
    pub checkpoint_every: Duration,
    pub lag_limit: i64,
    /// See `--lag-limit-secs`.
    pub lag_limit_secs: Duration,
    pub role: Role,
    /// Where partial states travel (aggregator and edge roles).
    pub partials: Option<PartialsConfig>,
    pub aggregator_id: String,
    pub publish_every: Duration,
    /// See `--anomaly-webhook`.
    pub anomaly_webhook: Option<String>,
    /// See `--public-anomalies`.
    pub public_anomalies: bool,
    /// `--first-milestone-usd`, in US cents.
    pub first_milestone_usd_cents: u64,
}

impl Config {
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        if !(10..=10_000).contains(&args.tick_ms) {
            return Err(ConfigError::Tick(args.tick_ms));
        }
        if args.dedup_horizon_minutes == 0 {
            return Err(ConfigError::Horizon);
        }
        let anomaly_webhook = args.anomaly_webhook.clone();
        if let Some(url) = &anomaly_webhook {
            crate::http::webhook::target(url).map_err(|_| ConfigError::Webhook(url.clone()))?;
        }
        let mut fx = FxTable::default();
        if let Some(path) = &args.fx_rates {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FxFile {
                path: path.clone(),
                source,
            })?;
            let overrides: HashMap<String, String> =
                serde_json::from_str(&text).map_err(|source| ConfigError::FxJson {
                    path: path.clone(),
                    source,
                })?;
            fx.apply_overrides(&overrides)
                .map_err(|source| ConfigError::FxValue {
                    path: path.clone(),
                    source,
                })?;
        }
        let role_name = match args.role {
            Role::All => "all",
            Role::Aggregator => "aggregator",
            Role::Edge => "edge",
        };
        if args.role != Role::All && args.kafka_brokers.is_none() {
            return Err(ConfigError::RoleNeedsKafka(role_name));
        }
        if !(100..=60_000).contains(&args.publish_ms) {
            return Err(ConfigError::Publish(args.publish_ms));
        }
        let aggregator_id = match args.aggregator_id.clone().or_else(host_name) {
            Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ if args.role == Role::Aggregator => return Err(ConfigError::AggregatorId),
            _ => String::new(),
        };
        let partials = match (&args.kafka_brokers, args.role) {
            (Some(brokers), Role::Aggregator | Role::Edge) => Some(PartialsConfig {
                brokers: brokers.clone(),
                topic: args
                    .partials_topic
                    .clone()
                    .unwrap_or_else(|| format!("{}.livemap-partials", args.topic)),
                options: args.kafka_options.clone(),
                quiet: (Duration::from_millis(u64::from(args.publish_ms)) * 3)
                    .max(Duration::from_secs(2)),
                retire_after: Duration::from_secs(u64::from(args.retire_after_secs.max(10))),
            }),
            _ => None,
        };
        if let Some(bad) = args
            .allowed_origins
            .iter()
            .find(|o| crate::http::fanout::Origin::parse_allowed(o).is_none())
        {
            return Err(ConfigError::AllowedOrigin(bad.clone()));
        }
        let publish_every = Duration::from_millis(u64::from(args.publish_ms));
        let seed = args.demo_seed.unwrap_or_else(rand::random);
        Ok(Config {
            engine: EngineConfig {
                fx,
                dedup_horizon_ms: i64::from(args.dedup_horizon_minutes) * 60_000,
                dedup_max_entries: args.dedup_max_entries,
                arcs_per_tick: args.arcs_per_tick,
                future_tolerance_ms: i64::from(args.future_tolerance_secs) * 1000,
                allowed_lateness_ms: i64::from(args.allowed_lateness_minutes) * 60_000,
                max_order_usd_cents: args.max_order_usd.saturating_mul(100),
                seed,
                totals_only: false,
            },
            demo_rate: args.demo_rate,
            demo_seed: seed,
            demo_backfill: Duration::from_secs(u64::from(args.demo_backfill_minutes) * 60),
            demo_outage: Duration::from_secs(u64::from(args.demo_outage_minutes) * 60),
            tick: Duration::from_millis(u64::from(args.tick_ms)),
            poll_timeout: Duration::from_secs(u64::from(args.poll_timeout_secs)),
            write_timeout: Duration::from_secs(u64::from(args.write_timeout_secs.max(1))),
            header_timeout: Duration::from_secs(u64::from(args.header_timeout_secs.max(1))),
            limits: crate::http::fanout::Limits {
                max_connections: args.max_connections,
                max_per_address: args.max_connections_per_ip,
                allowed_origins: args.allowed_origins.clone(),
            },
            kafka: args.kafka_brokers.as_ref().map(|brokers| KafkaConfig {
                brokers: brokers.clone(),
                topic: args.topic.clone(),
                group_id: args.group_id.clone(),
                start_from: args.start_from,
                options: args.kafka_options.clone(),
                routed: false,
            }),
            state_dir: args.state_dir.clone(),
            discard_unreadable_checkpoint: args.discard_unreadable_checkpoint,
            checkpoint_every: Duration::from_secs(u64::from(args.checkpoint_secs.max(1))),
            lag_limit: args.lag_limit,
            lag_limit_secs: Duration::from_secs(u64::from(args.lag_limit_secs.max(1))),
            role: args.role,
            partials,
            aggregator_id,
            publish_every,
            anomaly_webhook,
            public_anomalies: args.public_anomalies,
            first_milestone_usd_cents: args.first_milestone_usd.saturating_mul(100).max(1),
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        // The defaults of the flags are valid by construction.
        let args = Args::parse_from(["livemap"]);
        Config::from_args(&args).unwrap_or_else(|e| unreachable!("default flags are valid: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: &[&str]) -> Result<Config, ConfigError> {
        let args = Args::parse_from(std::iter::once("livemap").chain(flags.iter().copied()));
        Config::from_args(&args)
    }

    #[test]
    fn an_anomaly_webhook_must_be_a_plain_http_url() {
        let ok = config(&["--anomaly-webhook", "http://hooks.example:8080/livemap"]);
        assert_eq!(
            ok.ok().and_then(|c| c.anomaly_webhook).as_deref(),
            Some("http://hooks.example:8080/livemap")
        );
        for bad in [
            "https://hooks.example/x",
            "hooks.example/x",
            "http:///x",
            "",
        ] {
            assert!(
                matches!(
                    config(&["--anomaly-webhook", bad]),
                    Err(ConfigError::Webhook(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(config(&[]).map(|c| c.anomaly_webhook).ok(), Some(None));
    }
}
