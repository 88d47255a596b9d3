//! Source stage: where raw messages come from. Every source delivers the
//! same thing, batches of message values, into one bounded channel, so the
//! rest of the pipeline cannot tell the demo from Kafka.
//!
//! Next stage: [`crate::ingest`], through the pipeline's ingest thread.

pub mod demo;

use bytes::Bytes;

/// One message value as the source read it; `None` is a Kafka tombstone.
#[derive(Debug, Clone)]
pub struct Message {
    pub payload: Option<Bytes>,
}

/// Messages travel in batches so the channel and the engine lock are paid
/// per batch, not per message.
pub type Batch = Vec<Message>;

/// Batches queued between a source and the engine; past this the source
/// waits (back-pressure) instead of buffering without bound.
pub const CHANNEL_BATCHES: usize = 64;
