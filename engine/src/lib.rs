//! The live map's engine: everything that turns checkout messages into
//! counts, in plain Rust (no async runtime, no Kafka, no HTTP), so it
//! builds, tests and benchmarks on its own.
//!
//! The path of one message, one module per step:
//! [`decode`] (bytes → a checkout, filtered, or rejected with a reason) →
//! [`ingest`] (the [`ingest::Engine`]: partition offsets, then
//! [`dedup`] → [`event_time`] → [`aggregate`] with [`hll`], [`trends`],
//! [`rankings`], [`first_sales`] → [`arcs`] sampling). The state exports to and restores
//! from the [`checkpoint`] format; [`position`] is where a message was
//! read. [`anomaly`] judges the per-minute history for operators. The server (`livemap-server`) feeds messages in and reads the
//! state out into snapshots.

pub mod aggregate;
pub mod anomaly;
pub mod arcs;
pub mod checkpoint;
pub mod decode;
pub mod dedup;
pub mod event_time;
pub mod first_sales;
pub mod hll;
pub mod ingest;
pub mod position;
pub mod rankings;
pub mod trends;
