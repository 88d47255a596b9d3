//! Scale-out: aggregators publish their partial state to a Kafka topic of
//! their own; edges merge the partials and serve browsers.
//!
//! Previous stage: [`livemap_engine::ingest`] (on an aggregator). Next stage:
//! [`crate::snapshot`] (on an edge). In the single process (`--role all`)
//! neither runs: the engine feeds the snapshot directly.
//!
//! - [`publish`]: an aggregator's state, every `--publish-ms`, as one
//!   record keyed by its `--aggregator-id`, acknowledged by the brokers
//!   before the offsets it reflects are committed to the group.
//! - [`follow`]: the topic read from the beginning, the newest record of
//!   each aggregator kept. Edges merge them; an aggregator reads them to
//!   restore its own state and to take partitions over from another.
//!
//! The topic is compacted: the newest record per aggregator is all that
//! matters, and it is all a late edge needs to catch up.

pub mod follow;
pub mod publish;

use livemap_wire::{Arc, Channel, LatLon};

use livemap_engine::checkpoint::{CheckpointError, Reader, Writer};
use livemap_engine::first_sales::FirstSale;

/// Records larger than this are refused when read: a state record is a few
/// hundred KB to a few MB (the rankings' sketches dominate).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

const MAGIC: &[u8; 4] = b"LMPS";
/// The record format this release writes. 4: states in checkpoint
/// format 6 (with the first-sales filter), and first sales beside the
/// arcs; 3: a record is a whole state or a change record ([`Kind`]). A
/// release reads its own records and its predecessors' (2: whole states
/// in checkpoint format 5; 1: in format 4), so edges upgraded first keep
/// merging the aggregators that are not upgraded yet.
pub const FORMAT_VERSION: u32 = 4;

/// The checkpoint format of the state in a record of `record_format`.
fn state_format(record_format: u32) -> Option<u32> {
    match record_format {
        1 => Some(4),
        2 | 3 => Some(5),
        4 => Some(6),
        _ => None,
    }
}

/// Most first sales a reader keeps of one record: more than a tick shows.
pub const MAX_RECORD_FIRST_SALES: usize = livemap_engine::ingest::PENDING_FIRST_SALES;

/// Where partial states travel.
#[derive(Debug, Clone)]
pub struct PartialsConfig {
    pub brokers: String,
    /// The partial-state topic, `<topic>.livemap-partials` by default.
    pub topic: String,
    /// librdkafka settings passed through as they are (security, SASL, ...).
    pub options: Vec<(String, String)>,
    /// How long an aggregator id must be silent before another process
    /// may publish under it: a start watches this long, and a follower
    /// takes a new process's records under a live id for a twin's.
    pub quiet: std::time::Duration,
    /// An aggregator id whose newest state record is this much older than
    /// a newer record on the topic is retired: its counts are folded into
    /// one retired sum and its per-id state freed (see `follow.rs`).
    pub retire_after: std::time::Duration,
}

/// The sequence number of a claim: an empty record that a starting
/// aggregator publishes while it watches whether its id is taken.
pub const CLAIM_SEQ: u64 = u64::MAX;

const VIEWERS_MAGIC: &[u8; 4] = b"LMVW";
const VIEWERS_FORMAT: u32 = 1;

/// How many browsers one edge serves, published every second on the
/// partial-state topic (keyed `edge/<id>`), so that every edge shows the
/// sum: the viewers watching now. A record of its own kind (its own
/// magic), which a reader tells apart before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewersRecord {
    pub edge: String,
    /// Random per process start.
    pub instance: u64,
    pub published_ms: i64,
    pub viewers: u64,
}

impl ViewersRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        for b in VIEWERS_MAGIC {
            w.u8(*b);
        }
        w.u32(VIEWERS_FORMAT);
        w.str(&self.edge);
        w.u64(self.instance);
        w.i64(self.published_ms);
        w.u64(self.viewers);
        w.buf
    }

    /// Whether `bytes` are a viewers record (of any format).
    pub fn is_one(bytes: &[u8]) -> bool {
        bytes.starts_with(VIEWERS_MAGIC)
    }

    /// Reads a viewers record: untrusted bytes, every length checked.
    pub fn decode(bytes: &[u8]) -> Result<ViewersRecord, CheckpointError> {
        let mut r = Reader::new(bytes);
        if r.bytes(4)? != VIEWERS_MAGIC {
            return Err(CheckpointError::Payload("not a viewers record"));
        }
        if r.u32()? != VIEWERS_FORMAT {
            return Err(CheckpointError::Payload(
                "viewers record of an unknown format",
            ));
        }
        let edge = r.string()?;
        if edge.len() > 256 {
            return Err(CheckpointError::Payload("edge id too long"));
        }
        let record = ViewersRecord {
            edge,
            instance: r.u64()?,
            published_ms: r.i64()?,
            viewers: r.u64()?,
        };
        if !r.is_empty() {
            return Err(CheckpointError::Payload("trailing bytes"));
        }
        Ok(record)
    }
}

impl PartialsConfig {
    fn client_config(&self) -> rdkafka::ClientConfig {
        crate::kafka::client::plain_client_config(&self.brokers, &self.options)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PartialsError {
    #[error("creating a Kafka client for {topic}: {source}")]
    Client {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("reading {topic}: {source}")]
    Metadata {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("publishing to {topic}: {source}")]
    Publish {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("publishing to {topic}: no acknowledgement in time")]
    Unacknowledged { topic: String },
    #[error("creating topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
}

/// What a state record's `state` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// The whole state ([`livemap_engine::ingest::Engine::export_view`]),
    /// keyed by the aggregator id: what compaction keeps, and where a
    /// reader starts. Sent every [`publish::WHOLE_EVERY`] records, and
    /// whenever the previous record may not have arrived.
    #[default]
    Whole,
    /// What changed since record `prev_seq` of the same process
    /// ([`livemap_engine::ingest::Engine::export_changes`]), keyed
    /// `<id>/c<n>` where `n` counts from the last whole state, so that
    /// compaction keeps every change record since it.
    Changes,
}

/// One aggregator's partial state as published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialRecord {
    pub aggregator: String,
    /// Random per process start: two live processes publishing under one
    /// id (a misconfiguration that loses counts) show up as two instances.
    pub instance: u64,
    /// Grows by one per record of an instance.
    pub seq: u64,
    pub published_ms: i64,
    /// Random when an aggregator starts counting from zero, kept when it
    /// restores its own record: a record of a new lineage under an id
    /// does not hold the old one's counts, which stay in the totals. 0 in
    /// records of format 1.
    pub lineage: u64,
    pub kind: Kind,
    /// For [`Kind::Changes`], the record its changes are taken against.
    pub prev_seq: u64,
    /// The sequence number of the newest whole state this process
    /// published up to this record (this one's own, for a whole state).
    pub whole_seq: u64,
    /// Arcs sampled since the previous record, oldest first.
    pub arcs: Vec<Arc>,
    /// Shops this aggregator saw sell for the first time since its
    /// previous record (none in records before format 4).
    pub first_sales: Vec<FirstSale>,
    /// [`livemap_engine::ingest::Engine::export_view`]; empty in a record that
    /// carries only arcs (sent every tick between states).
    pub state: Vec<u8>,
    /// The checkpoint format `state` is in: set when a record is read
    /// (a record is always written in this release's format).
    pub state_format: u32,
}

impl PartialRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        for b in MAGIC {
            w.u8(*b);
        }
        w.u32(FORMAT_VERSION);
        w.str(&self.aggregator);
        w.u64(self.instance);
        w.u64(self.seq);
        w.i64(self.published_ms);
        w.u64(self.lineage);
        w.u8(match self.kind {
            Kind::Whole => 0,
            Kind::Changes => 1,
        });
        w.u64(self.prev_seq);
        w.u64(self.whole_seq);
        w.u64(self.arcs.len() as u64);
        for a in &self.arcs {
            for p in [a.from, a.to] {
                w.u32(p.lat.to_bits());
                w.u32(p.lon.to_bits());
            }
            w.u64(a.usd_cents);
            w.i64(a.at_ms);
            w.u8(a.channel as u8);
        }
        w.u64(self.first_sales.len() as u64);
        for s in &self.first_sales {
            w.u64(s.shop_hash);
            w.u32(s.lat.to_bits());
            w.u32(s.lon.to_bits());
            w.u8(s.country[0]);
            w.u8(s.country[1]);
            w.i64(s.at_ms);
        }
        w.bytes(&self.state);
        w.buf
    }

    /// Reads a record from the topic: untrusted bytes, so every length is
    /// checked against what is left and a bad record is an error.
    pub fn decode(bytes: &[u8]) -> Result<PartialRecord, CheckpointError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(CheckpointError::Payload("partial record too large"));
        }
        let mut r = Reader::new(bytes);
        if r.bytes(4)? != MAGIC {
            return Err(CheckpointError::Payload("not a partial-state record"));
        }
        let record_format = r.u32()?;
        let state_format = state_format(record_format).ok_or(CheckpointError::Payload(
            "partial record of a format this release cannot read",
        ))?;
        let aggregator = r.string()?;
        let (instance, seq, published_ms) = (r.u64()?, r.u64()?, r.i64()?);
        let lineage = if record_format >= 2 { r.u64()? } else { 0 };
        let (kind, prev_seq, whole_seq) = if record_format >= 3 {
            let kind = match r.u8()? {
                0 => Kind::Whole,
                1 => Kind::Changes,
                _ => return Err(CheckpointError::Payload("unknown kind of partial record")),
            };
            (kind, r.u64()?, r.u64()?)
        } else {
            (Kind::Whole, 0, seq)
        };
        let n = r.count(33)?;
        let mut arcs = Vec::with_capacity(n);
        for _ in 0..n {
            let mut point = || -> Result<LatLon, CheckpointError> {
                Ok(LatLon {
                    lat: f32::from_bits(r.u32()?),
                    lon: f32::from_bits(r.u32()?),
                })
            };
            let (from, to) = (point()?, point()?);
            let (usd_cents, at_ms) = (r.u64()?, r.i64()?);
            let channel = Channel::ALL
                .get(usize::from(r.u8()?))
                .copied()
                .unwrap_or_default();
            arcs.push(Arc {
                from,
                to,
                usd_cents,
                at_ms,
                channel,
            });
        }
        let mut first_sales = Vec::new();
        if record_format >= 4 {
            // Another process's bytes: a sale whose place is not a cell of
            // the wire's grid is dropped, and past MAX_RECORD_FIRST_SALES
            // the rest are; the record's state still counts.
            for _ in 0..r.count(26)? {
                let sale = FirstSale {
                    shop_hash: r.u64()?,
                    lat: f32::from_bits(r.u32()?),
                    lon: f32::from_bits(r.u32()?),
                    country: [r.u8()?, r.u8()?],
                    at_ms: r.i64()?,
                };
                if first_sales.len() < MAX_RECORD_FIRST_SALES
                    && livemap_engine::arcs::is_coarsened(sale.lat, sale.lon)
                {
                    first_sales.push(sale);
                }
            }
        }
        let state = r.len_prefixed()?.to_vec();
        if !r.is_empty() {
            return Err(CheckpointError::Payload("trailing bytes"));
        }
        Ok(PartialRecord {
            aggregator,
            instance,
            seq,
            published_ms,
            lineage,
            kind,
            prev_seq,
            whole_seq,
            arcs,
            first_sales,
            state,
            state_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PartialRecord {
        PartialRecord {
            aggregator: "agg-1".into(),
            instance: 7,
            seq: 42,
            published_ms: 1_795_788_000_000,
            lineage: 99,
            kind: Kind::Changes,
            prev_seq: 41,
            whole_seq: 30,
            arcs: vec![Arc {
                from: LatLon {
                    lat: 45.5,
                    lon: -73.5,
                },
                to: LatLon {
                    lat: 51.5,
                    lon: -0.1,
                },
                usd_cents: 12_345,
                at_ms: 1_795_787_999_000,
                channel: Channel::MobileApp,
            }],
            first_sales: vec![FirstSale {
                shop_hash: 0xDEAD_BEEF,
                lat: livemap_engine::arcs::coarsen(45.55, -73.5).0 as f32,
                lon: livemap_engine::arcs::coarsen(45.55, -73.5).1 as f32,
                country: *b"CA",
                at_ms: 1_795_787_999_500,
            }],
            state: vec![1, 2, 3, 4, 5],
            state_format: livemap_engine::checkpoint::FORMAT_VERSION,
        }
    }

    #[test]
    fn a_record_round_trips() {
        let r = record();
        assert_eq!(PartialRecord::decode(&r.encode()).expect("decodes"), r);
    }

    #[test]
    fn a_viewers_record_round_trips_and_is_told_apart() {
        let v = ViewersRecord {
            edge: "edge-1".into(),
            instance: 9,
            published_ms: 1_795_788_000_000,
            viewers: 12_345,
        };
        let bytes = v.encode();
        assert!(ViewersRecord::is_one(&bytes));
        assert!(!ViewersRecord::is_one(&record().encode()));
        assert_eq!(ViewersRecord::decode(&bytes).expect("decodes"), v);
        assert!(PartialRecord::decode(&bytes).is_err());
        for cut in [0, 4, 10, bytes.len() - 1] {
            assert!(
                ViewersRecord::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_bad_first_sale_is_dropped_and_the_record_kept() {
        let mut r = record();
        r.first_sales[0].lat = f32::NAN;
        let good = record().first_sales[0];
        r.first_sales.extend(vec![good; MAX_RECORD_FIRST_SALES + 5]);
        let read = PartialRecord::decode(&r.encode()).expect("decodes");
        assert_eq!(read.first_sales, vec![good; MAX_RECORD_FIRST_SALES]);
        assert_eq!(read.state, r.state);
    }

    #[test]
    fn a_cut_or_foreign_record_is_refused() {
        let bytes = record().encode();
        for cut in [0, 3, 8, 20, bytes.len() - 1] {
            assert!(
                PartialRecord::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut foreign = bytes.clone();
        foreign[0] = b'X';
        assert!(PartialRecord::decode(&foreign).is_err());
        let mut longer = bytes;
        longer.push(0);
        assert!(PartialRecord::decode(&longer).is_err());
    }
}
