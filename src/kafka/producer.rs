//! Publishing a batch of records and waiting for every acknowledgement: for
//! commands whose records must all land or the user must hear which did not
//! (`products load|update`, later `produce` and `order place`).

use std::mem::ManuallyDrop;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::reader::partitions_of;
use super::{wait_until_reachable, KafkaSettings, KartClientContext};
use crate::exit::{KartError, Result};
use crate::printer::Printer;

/// A record to publish.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub key: Option<String>,
    pub value: Vec<u8>,
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Publishes `records` to `topic` in order and waits until the broker has
/// acknowledged every one (`acks=all`, idempotent, so a retry inside
/// librdkafka never duplicates or reorders).
///
/// The broker must be reachable within `--connect-timeout` and the topic
/// must exist (checked first: a broker that auto-creates topics would
/// otherwise create it with its own defaults). If any record fails, the
/// error says how many were delivered and why the first failure happened.
pub async fn publish(settings: &KafkaSettings, printer: &Printer, topic: &str, records: &[OutRecord]) -> Result<Vec<Delivered>> {
    let context = KartClientContext::new(printer.clone());
    // Once reachable, a delivery should take milliseconds; the allowance
    // covers a leader moving or a busy broker, never a dead one.
    let delivery_timeout = settings.connect_timeout.max(Duration::from_secs(10));
    let producer: FutureProducer<KartClientContext> = settings
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", delivery_timeout.as_millis().min(i32::MAX as u128).to_string())
        // Records go out as soon as they are handed over: a command publishes
        // a handful and waits for them.
        .set("linger.ms", "0")
        .create_with_context(context.clone())
        .map_err(|e| KartError::user("kafka-config", format!("invalid Kafka client configuration: {e}")))?;
    // Dropping the producer joins its polling thread; the command exits
    // right after publishing, so that wait buys nothing.
    let producer = ManuallyDrop::new(producer);

    let probe = (*producer).clone();
    let probe_settings = settings.clone();
    let probe_context = context.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        wait_until_reachable(&probe_settings, &probe_context, |slice| probe.client().fetch_metadata(None, slice))
    })
    .await
    .map_err(|e| KartError::infra("internal", format!("metadata task failed: {e}")))??;
    partitions_of(&metadata, &[topic], &settings.bootstrap)?;

    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        let mut future_record = FutureRecord::to(topic).payload(&record.value);
        if let Some(key) = &record.key {
            future_record = future_record.key(key);
        }
        // A full local queue drains as the broker acknowledges: wait for
        // room rather than fail a large batch.
        let delivery = loop {
            match producer.send_result(future_record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    future_record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(produce_error(settings, &context, topic, 0, records.len(), &error)),
            }
        };
        pending.push(delivery);
    }

    let mut delivered = Vec::with_capacity(records.len());
    let mut first_failure: Option<KafkaError> = None;
    for outcome in futures::future::join_all(pending).await {
        match outcome {
            Ok(Ok(d)) => delivered.push(Delivered { partition: d.partition, offset: d.offset }),
            Ok(Err((error, _))) => {
                first_failure.get_or_insert(error);
            }
            // The producer went away before answering; cannot happen while
            // we hold it, but it is a failure, never a success.
            Err(_) => {
                first_failure.get_or_insert(KafkaError::Canceled);
            }
        }
    }
    match first_failure {
        None => Ok(delivered),
        Some(error) => Err(produce_error(settings, &context, topic, delivered.len(), records.len(), &error)),
    }
}

fn produce_error(settings: &KafkaSettings, context: &KartClientContext, topic: &str, done: usize, total: usize, error: &KafkaError) -> KartError {
    if context.auth_failed() {
        return settings.auth_failed();
    }
    KartError::infra(
        "kafka-produce-failed",
        format!("only {done} of {total} records reached {topic} on {}: {error}", settings.bootstrap),
    )
    .with_hint("check the broker (`kart platform status`) and run the command again")
}
