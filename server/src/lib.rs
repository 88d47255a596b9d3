//! The live sales map server as a library: `main` only parses flags and
//! calls [`run`], so tests start the real thing on a port-0 listener.
//! `run/` has one small function per role (all, aggregator, edge), built
//! from shared pieces.
//!
//! The data path, one module per stage:
//! [`source`] → the engine (`livemap_engine`: decode, de-duplicate,
//! aggregate, sample arcs) → [`snapshot`] → [`encode`] →
//! [`http::fanout`]; [`persist`] checkpoints the engine, and
//! [`kafka::partials`] carries it between aggregators and edges.
//! `ARCHITECTURE.md` at the repository root has the map and invariants.

pub mod clock;
pub mod config;
pub mod encode;
pub mod http;
pub mod kafka;
pub mod persist;
mod run;
pub mod snapshot;
pub mod source;

use tokio::net::TcpListener;

pub use crate::config::{Args, Config, Role};
use crate::kafka::partials::PartialsError;
use crate::kafka::router::RouterError;
use crate::kafka::source::KafkaSourceError;
pub use crate::run::{run, run_with_clock};
use livemap_engine::checkpoint::CheckpointError;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
    #[error("a pipeline thread panicked: {0}")]
    Thread(&'static str),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Kafka(#[from] KafkaSourceError),
    #[error(transparent)]
    Partials(#[from] PartialsError),
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("the partial-state topic could not be read to its end: not starting, lest this aggregator's record be overwritten")]
    PartialsBehind,
    #[error("aggregator id {0:?} is in use: another live process publishes under it (give each aggregator its own --aggregator-id)")]
    AggregatorIdInUse(String),
    #[error("--role {0} needs Kafka (--kafka-brokers)")]
    NeedsKafka(&'static str),
}

/// The sockets the server answers on: the public one (page, streams, API)
/// and the operator's admin one (metrics, health), if any.
#[derive(Debug)]
pub struct Listeners {
    pub public: TcpListener,
    pub admin: Option<TcpListener>,
}
