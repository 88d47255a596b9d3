//! Everything that talks to Kafka, one module per client the process
//! makes:
//!
//! - [`source`]: the group consumer that reads the checkout topic (or, on
//!   an aggregator, its share of the by-id topic) into the pipeline, and
//!   checkpoints and commits behind it;
//! - [`router`]: an aggregator's router, checkouts → the by-id topic;
//! - [`partials`]: the scale-out's state topic, its record format,
//!   publishing and following;
//! - [`topics`]: creating the topics the scale-out writes;
//! - [`client`]: the settings every one of those clients starts from.

pub mod client;
pub mod partials;
pub mod router;
pub mod source;
pub mod topics;
