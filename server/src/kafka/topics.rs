//! The topics the scale-out writes, created when missing: the by-id
//! topic (aggregators' routers → counters) and the partial-state topic
//! (aggregators → edges). Creating an existing topic is not an error, so
//! every process may try.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Creates `name` with `partitions` partitions and `settings`, replicated
/// as the brokers' default, unless it exists.
pub async fn ensure(
    config: ClientConfig,
    name: &str,
    partitions: i32,
    settings: &[(&str, &str)],
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| e.to_string())?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (k, v) in settings {
        topic = topic.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&[topic], &options)
        .await
        .map_err(|e| e.to_string())?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(code.to_string()),
        }
    }
    Ok(())
}

/// The largest record batch `topic` takes (its `max.message.bytes`), or
/// `None` when the brokers do not say.
pub async fn max_message_bytes(config: ClientConfig, name: &str) -> Result<Option<usize>, String> {
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| e.to_string())?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &options)
        .await
        .map_err(|e| e.to_string())?;
    Ok(results
        .into_iter()
        .filter_map(Result::ok)
        .find_map(|r| r.get("max.message.bytes")?.value.as_deref()?.parse().ok()))
}

/// How many partitions `topic` has (blocking: a metadata request).
pub fn partition_count(config: &ClientConfig, topic: &str) -> Result<i32, String> {
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let n = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .sum::<usize>();
    match i32::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("topic {topic} has no partitions (does it exist?)")),
    }
}
