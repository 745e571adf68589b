//! Reading topics from the beginning to "now", for commands that need the
//! current state of a topic rather than a stream: `products list`, later
//! `tail --until-end`, `watch`'s first screen and `order place --wait`.
//!
//! The reader assigns partitions itself instead of joining a consumer group:
//! nothing is committed (reading must not disturb anyone's offsets), and
//! tansu's group joins take seconds. It reads `read_committed` (design §2),
//! so records of transactions the inventory job aborted never show up.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{wait_until_reachable, KafkaSettings, KartClientContext};
use crate::exit::{KartError, Result};
use crate::printer::Printer;

/// One record as read, with owned bytes so it outlives the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Epoch milliseconds (create or log-append time); `None` when the
    /// broker did not say.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// Copies a consumed message out of librdkafka's buffers.
    pub fn from_message<M: Message>(message: &M) -> Record {
        Record {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                .unwrap_or_default(),
        }
    }

    /// The key as text, when it is UTF-8 (keys in this system are product
    /// or order ids).
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }
}

// A consumer needs a consumer context; kart's only exists to remember
// librdkafka's errors, which it does for every kind of client.
impl ConsumerContext for KartClientContext {}

/// The error for a topic the broker does not have. Consumers would
/// otherwise wait for it forever, and producers could auto-create it with
/// the wrong settings, so both check first.
pub fn missing_topic(topic: &str, bootstrap: &str) -> KartError {
    KartError::user("topic-missing", format!("topic {topic} does not exist on {bootstrap}"))
        .with_hint("create the workshop's topics with `kart topics create`")
}

/// Partition ids of `topics` in `metadata`, or the missing-topic error for
/// the first one the broker does not have.
pub fn partitions_of(metadata: &Metadata, topics: &[&str], bootstrap: &str) -> Result<Vec<(String, Vec<i32>)>> {
    topics
        .iter()
        .map(|name| {
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == *name && !t.partitions().is_empty())
                .map(|t| (name.to_string(), t.partitions().iter().map(|p| p.id()).collect()))
                .ok_or_else(|| missing_topic(name, bootstrap))
        })
        .collect()
}

/// Reads every committed record of `topics` from the beginning to their
/// end, then returns them: topics in the order given, each partition in
/// offset order, partitions of one topic interleaved as they arrived
/// (callers that need one order across topics sort, e.g. by timestamp).
///
/// "The end" is where the reader catches up with the broker, and at least
/// the end offsets seen at the start; records produced meanwhile may be
/// included. Reaching the broker is bounded by `--connect-timeout` (an
/// unreachable broker names the host and the deadline; a wrong SCRAM
/// password says "authentication failed"); a topic that does not exist is a
/// user error pointing at `kart topics create`.
pub async fn read_to_end(settings: &KafkaSettings, printer: &Printer, topics: &[&str]) -> Result<Vec<Record>> {
    // One consumer per topic, in parallel: librdkafka reports the end of a
    // partition by partition number only, which is unambiguous only within
    // one topic.
    let tasks: Vec<_> = topics
        .iter()
        .map(|topic| {
            let (settings, printer, topic) = (settings.clone(), printer.clone(), topic.to_string());
            tokio::task::spawn_blocking(move || read_topic(&settings, &printer, &topic))
        })
        .collect();
    let mut records = Vec::new();
    for result in futures::future::join_all(tasks).await {
        records.extend(result.map_err(|e| KartError::infra("internal", format!("reader task failed: {e}")))??);
    }
    Ok(records)
}

/// Per partition of the topic: the end seen at the start, and whether the
/// consumer has caught up with the broker since.
struct PartitionEnd {
    start_end: i64,
    caught_up: bool,
}

fn read_topic(settings: &KafkaSettings, printer: &Printer, topic: &str) -> Result<Vec<Record>> {
    let context = KartClientContext::new(printer.clone());
    let consumer: BaseConsumer<KartClientContext> = settings
        .reader_config("kart-reader")
        // An idle partition answers a fetch only after this long: keep the
        // last round trip short.
        .set("fetch.wait.max.ms", "50")
        .create_with_context(context.clone())
        .map_err(|e| KartError::user("kafka-config", format!("invalid Kafka client configuration: {e}")))?;
    // Dropping a consumer waits for librdkafka's threads to wind down (tens
    // of milliseconds for nothing: the command exits right after reading).
    let consumer = ManuallyDrop::new(consumer);

    let metadata = wait_until_reachable(settings, &context, |slice| {
        serve_errors(&consumer, &context);
        consumer.fetch_metadata(None, slice)
    })?;
    let (_, ids) = partitions_of(&metadata, &[topic], &settings.bootstrap)?.remove(0);

    // The end of each partition as of now. With read_committed the broker
    // answers the last stable offset, so an open transaction's records are
    // not waited for.
    let mut ends: HashMap<i32, PartitionEnd> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for id in ids {
        let (low, high) = wait_until_reachable(settings, &context, |slice| {
            serve_errors(&consumer, &context);
            consumer.fetch_watermarks(topic, id, slice)
        })?;
        printer.debug(&format!("{topic}[{id}]: offsets {low}..{high} at the start"));
        if high > low {
            ends.insert(id, PartitionEnd { start_end: high, caught_up: false });
            assignment
                .add_partition_offset(topic, id, Offset::Offset(low))
                .map_err(|e| KartError::infra("kafka-error", format!("cannot assign {topic}[{id}]: {e}")))?;
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment).map_err(|e| fetch_error(settings, &context, topic, e))?;

    let mut records = Vec::new();
    let stall_limit = settings.connect_timeout.max(Duration::from_secs(5));
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                records.push(Record::from_message(&message));
            }
            Some(Err(KafkaError::PartitionEOF(id))) => {
                last_progress = Instant::now();
                if let Some(end) = ends.get_mut(&id) {
                    end.caught_up = true;
                }
            }
            Some(Err(error)) => {
                ClientContext::error(&context, error.clone(), &error.to_string());
                if context.auth_failed() {
                    return Err(settings.auth_failed());
                }
                printer.debug(&format!("while reading {topic}: {error}"));
            }
            None => {}
        }
        // Done with a partition once the consumer caught up with the broker
        // *and* its position passed the end seen at the start. Neither alone
        // is enough: the end offsets of tansu 0.6 count a batch of records
        // as one (ListOffsets answers the last batch's first offset + 1), so
        // they stop short of the records; and the position, not the last
        // message's offset, because with read_committed the last offsets can
        // be transaction markers, which are never delivered but do move the
        // position past themselves.
        if ends.values().any(|end| end.caught_up) {
            let positions = consumer.position().map_err(|e| fetch_error(settings, &context, topic, e))?;
            for element in positions.elements() {
                if let (Offset::Offset(position), Some(end)) = (element.offset(), ends.get(&element.partition())) {
                    if end.caught_up && position >= end.start_end {
                        ends.remove(&element.partition());
                    }
                }
            }
        }
        if !ends.is_empty() && last_progress.elapsed() > stall_limit {
            let mut stuck: Vec<String> = ends.keys().map(|p| format!("{topic}[{p}]")).collect();
            stuck.sort();
            return Err(KartError::infra(
                "kafka-read-stalled",
                format!("reading {} from {} made no progress for {}", stuck.join(", "), settings.bootstrap, humantime::format_duration(stall_limit)),
            )
            .with_hint("check the broker's health (`kart platform status`) and run the command again"));
        }
    }
    Ok(records)
}

/// Hands error events to the client context (a clone shares its state): a
/// consumer returns them from `poll` instead of calling the context, and the
/// context is where a wrong password is recognised.
pub(super) fn serve_errors(consumer: &BaseConsumer<KartClientContext>, context: &KartClientContext) {
    while let Some(Err(error)) = consumer.poll(Duration::ZERO) {
        ClientContext::error(context, error.clone(), &error.to_string());
    }
}

fn fetch_error(settings: &KafkaSettings, context: &KartClientContext, topic: &str, error: KafkaError) -> KartError {
    if context.auth_failed() {
        return settings.auth_failed();
    }
    KartError::infra("kafka-error", format!("cannot read {topic} from {}: {error}", settings.bootstrap))
}
