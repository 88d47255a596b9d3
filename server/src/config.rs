//! Command-line flags and environment, turned into a validated [`Config`]
//! in one step.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use livemap_events::money::FxTable;

use crate::ingest::EngineConfig;

/// The live sales map server.
///
/// With no arguments it serves the globe at http://127.0.0.1:8080 fed by the
/// embedded demo source.
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

    /// How often a new snapshot is built and sent, in milliseconds.
    #[arg(long, env = "LIVEMAP_TICK_MS", default_value_t = 200)]
    pub tick_ms: u32,

    /// Most arcs sent per tick.
    #[arg(long, env = "LIVEMAP_ARCS_PER_TICK", default_value_t = 40)]
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

    /// Longest a long-poll request waits for a new snapshot, in seconds.
    #[arg(long, env = "LIVEMAP_POLL_TIMEOUT_SECS", default_value_t = 25)]
    pub poll_timeout_secs: u32,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--tick-ms must be between 10 and 10000, got {0}")]
    Tick(u32),
    #[error("--dedup-horizon-minutes must be at least 1")]
    Horizon,
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
    pub tick: Duration,
    pub poll_timeout: Duration,
}

impl Config {
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        if !(10..=10_000).contains(&args.tick_ms) {
            return Err(ConfigError::Tick(args.tick_ms));
        }
        if args.dedup_horizon_minutes == 0 {
            return Err(ConfigError::Horizon);
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
        let seed = args.demo_seed.unwrap_or_else(rand::random);
        Ok(Config {
            engine: EngineConfig {
                fx,
                dedup_horizon_ms: i64::from(args.dedup_horizon_minutes) * 60_000,
                dedup_max_entries: args.dedup_max_entries,
                arcs_per_tick: args.arcs_per_tick,
                future_tolerance_ms: i64::from(args.future_tolerance_secs) * 1000,
                seed,
            },
            demo_rate: args.demo_rate,
            demo_seed: seed,
            tick: Duration::from_millis(u64::from(args.tick_ms)),
            poll_timeout: Duration::from_secs(u64::from(args.poll_timeout_secs)),
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
