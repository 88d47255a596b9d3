//! Where a message was read, and where a routed message was first
//! written: what makes counting idempotent per partition offset. Sources
//! (in the server) fill these in; the engine only reads them.

/// A routed message's place in the checkout topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub partition: i32,
    /// The message's offset; for a filtered-block marker, the last offset
    /// it counts.
    pub offset: i64,
    /// For a marker: the filtered messages it counts.
    pub filtered: Option<FilteredBlock>,
}

/// How many messages of a block of origin offsets the router filtered, from
/// the block's start up to the marker's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilteredBlock {
    pub block: i64,
    pub count: u32,
}

/// A message's place in a partitioned source, and the assignment it was
/// fetched under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
    pub generation: u64,
}
