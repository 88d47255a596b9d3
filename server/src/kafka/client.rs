//! What every Kafka client the process makes starts from: the brokers and
//! the operator's `--kafka-option`s, so security and SASL settings reach
//! consumers, producers, the partial-state reader and admin clients alike.

use rdkafka::ClientConfig;

/// Settings of `--kafka-option` that only a group consumer understands:
/// not passed to other clients, which would warn.
const GROUP_CONSUMER_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "group.",
    "auto.offset.reset",
    "enable.auto.",
];

/// The settings of a client that is not a group consumer (a producer,
/// the partial-state reader, an admin client): the brokers and every
/// operator's option (security, SASL, ...) but the group consumer's own.
pub fn plain_client_config(brokers: &str, options: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000");
    for (k, v) in options {
        if !GROUP_CONSUMER_ONLY.iter().any(|g| k.starts_with(g)) {
            c.set(k, v);
        }
    }
    c
}
