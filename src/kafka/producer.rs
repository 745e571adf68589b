//! Publishing a batch of records and waiting for every acknowledgement: for
//! commands whose records must all land or the user must hear which did not
//! (`products load|update`, `produce` and `order place`).

use std::mem::ManuallyDrop;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
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
    /// Kafka record headers, in order (`kart produce --header k=v`).
    pub headers: Vec<(String, String)>,
}

impl OutRecord {
    /// A keyed record without headers, what most commands publish.
    pub fn keyed(key: impl Into<String>, value: Vec<u8>) -> OutRecord {
        OutRecord { key: Some(key.into()), value, headers: Vec::new() }
    }
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
        if !record.headers.is_empty() {
            let headers = record
                .headers
                .iter()
                .fold(OwnedHeaders::new_with_capacity(record.headers.len()), |h, (key, value)| h.insert(Header { key, value: Some(value) }));
            future_record = future_record.headers(headers);
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

// ---- `kart produce` input ------------------------------------------------------

/// `--header k=v`: split at the first `=`; the name must not be empty, the
/// value may be (and may itself contain `=`).
pub fn parse_header(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.to_string())),
        Some(_) => Err(format!("--header {text:?} has no name before '='")),
        None => Err(format!("--header {text:?} is not NAME=VALUE")),
    }
}

/// One record per line of `input` (`\n` or `\r\n` ends a line, the last
/// line needs no end), each with `key` and `headers`. Empty lines are not
/// records: they are counted and left out, since an empty Kafka value is
/// almost never what a line-per-record file means.
pub fn records_from_lines(input: &[u8], key: Option<&str>, headers: &[(String, String)]) -> (Vec<OutRecord>, usize) {
    let mut records = Vec::new();
    let mut blank = 0;
    for line in input.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            blank += 1;
            continue;
        }
        records.push(OutRecord { key: key.map(str::to_string), value: line.to_vec(), headers: headers.to_vec() });
    }
    // The newline that ends the last line does not start an empty one.
    if input.ends_with(b"\n") || input.is_empty() {
        blank -= 1;
    }
    (records, blank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_split_at_the_first_equals_sign() {
        assert_eq!(parse_header("source=kart"), Ok(("source".into(), "kart".into())));
        assert_eq!(parse_header("q=a=b"), Ok(("q".into(), "a=b".into())));
        assert_eq!(parse_header("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_header("=v").is_err());
        assert!(parse_header("novalue").is_err());
    }

    #[test]
    fn one_record_per_line_crlf_and_blank_lines_handled() {
        let headers = vec![("h".to_string(), "v".to_string())];
        let (records, blank) = records_from_lines(b"{\"a\":1}\r\n\nplain text\n\xff\xfe\n", Some("k"), &headers);
        let values: Vec<&[u8]> = records.iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(values, [&b"{\"a\":1}"[..], b"plain text", b"\xff\xfe"]);
        assert_eq!(blank, 1);
        assert!(records.iter().all(|r| r.key.as_deref() == Some("k") && r.headers == headers));
        assert_eq!(records_from_lines(b"last line without newline", None, &[]).0.len(), 1);
        let (records, blank) = records_from_lines(b"", None, &[]);
        assert!(records.is_empty() && blank == 0);
        assert_eq!(records_from_lines(b"\n", None, &[]).1, 1);
    }

    proptest! {
        #[test]
        fn header_parsing_never_panics_and_keeps_the_value(text in ".*") {
            if let Ok((name, value)) = parse_header(&text) {
                prop_assert!(!name.is_empty());
                prop_assert!(text.ends_with(&value));
            }
        }

        /// Every non-empty line is a record, in order, byte for byte.
        #[test]
        fn lines_become_records_in_order(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..20), 0..20)) {
            let input = lines.join(&b'\n');
            let (records, _) = records_from_lines(&input, None, &[]);
            let expected: Vec<Vec<u8>> = lines
                .iter()
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                .filter(|l| !l.is_empty())
                .collect();
            let got: Vec<Vec<u8>> = records.into_iter().map(|r| r.value).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
