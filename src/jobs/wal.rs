//! The inventory job's commit protocol: exactly-once outputs without Kafka
//! transactions.
//!
//! Why not transactions: the broker kart is tested against (tansu 0.6.0)
//! does not implement `EndTxn` — it is missing from its ApiVersions and from
//! its request router, so librdkafka refuses `commit_transaction` ("EndTxn
//! not supported by broker"). A protocol that needs only an idempotent
//! producer works on tansu, Redpanda and managed Kafka alike.
//!
//! Each batch of inputs becomes, in this order:
//!
//! 1. one **batch record** on the changelog (key [`BATCH_KEY`]): the batch's
//!    sequence number, the next input offset of every input partition, every
//!    state change (key, value) and every output record. Once the broker has
//!    it, the batch is committed — this record is the write-ahead log entry;
//! 2. the batch's keyed state records on the changelog (compaction keeps the
//!    latest per product and per remembered order line);
//! 3. the batch's output records, each with the headers `kart-batch` and
//!    `kart-index`.
//!
//! The next batch starts only after all of that is acknowledged. So after a
//! crash at most the *last* batch is incomplete, and its record says what
//! it should have written: a restart applies the keyed records, then the
//! last batch record's state changes, re-writes them, and re-sends those of
//! its outputs that are not on their topics yet (found by their headers at
//! the topics' ends). Every output is written once as far as any reader can
//! tell, and the inputs resume from the batch record's offsets. Compaction is
//! safe: every batch's keyed records are acknowledged before the next batch
//! record supersedes the previous one.

use std::collections::{BTreeMap, HashSet};

use rdkafka::message::Headers;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Changelog key of the batch records; the parser refuses product ids
/// starting with `kart:`, so it never collides with a product.
pub const BATCH_KEY: &str = "kart:batch";
pub const BATCH_HEADER: &str = "kart-batch";
pub const INDEX_HEADER: &str = "kart-index";

/// One output record of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputRecord {
    pub topic: String,
    pub key: Option<String>,
    pub value: Box<RawValue>,
}

/// One state change: a changelog key and its new value (`None` = tombstone).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRecord {
    pub key: String,
    pub value: Option<Box<RawValue>>,
}

/// The write-ahead record of one batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    pub seq: u64,
    /// Epoch ms when the batch was committed.
    pub committed_at: i64,
    /// Every input partition's next offset, not only those this batch read.
    pub positions: BTreeMap<String, i64>,
    pub state: Vec<StateRecord>,
    pub outputs: Vec<OutputRecord>,
}

/// `topic/partition`, the key of [`BatchRecord::positions`].
pub fn position_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

pub fn split_position_key(key: &str) -> Option<(&str, i32)> {
    let (topic, partition) = key.rsplit_once('/')?;
    Some((topic, partition.parse().ok()?))
}

/// JSON bytes as a raw JSON value (every value kart writes is JSON).
pub fn raw_json(bytes: Vec<u8>) -> Result<Box<RawValue>, String> {
    let text = String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    RawValue::from_string(text).map_err(|e| format!("not JSON: {e}"))
}

/// `(batch, index)` of an output record read back, from its headers.
pub fn batch_position<H: Headers>(headers: Option<&H>) -> Option<(u64, usize)> {
    let headers = headers?;
    let mut batch = None;
    let mut index = None;
    for header in headers.iter() {
        let value = header.value.and_then(|v| std::str::from_utf8(v).ok());
        match header.key {
            BATCH_HEADER => batch = value.and_then(|v| v.parse().ok()),
            INDEX_HEADER => index = value.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    Some((batch?, index?))
}

/// The indices of `batch`'s outputs that are still to be sent, given the
/// `(batch, index)` pairs found at the ends of the output topics.
pub fn missing_outputs(batch: &BatchRecord, found: &HashSet<(u64, usize)>) -> Vec<usize> {
    (0..batch.outputs.len()).filter(|i| !found.contains(&(batch.seq, *i))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch() -> BatchRecord {
        BatchRecord {
            seq: 7,
            committed_at: 1,
            positions: BTreeMap::from([(position_key("order-events", 0), 42)]),
            state: vec![StateRecord { key: "PROD_1".into(), value: Some(raw_json(br#"{"a":1}"#.to_vec()).unwrap()) }],
            outputs: vec![
                OutputRecord { topic: "products".into(), key: Some("PROD_1".into()), value: raw_json(b"{}".to_vec()).unwrap() },
                OutputRecord { topic: "inventory-events".into(), key: None, value: raw_json(b"[1]".to_vec()).unwrap() },
            ],
        }
    }

    #[test]
    fn a_batch_record_round_trips_byte_for_byte() {
        let record = batch();
        let bytes = serde_json::to_vec(&record).unwrap();
        let back: BatchRecord = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.outputs[0].value.get(), "{}");
        assert_eq!(back.state[0].value.as_ref().unwrap().get(), r#"{"a":1}"#);
        assert_eq!(back.positions, record.positions);
        assert_eq!(serde_json::to_vec(&back).unwrap(), bytes);
    }

    #[test]
    fn only_outputs_not_found_are_resent() {
        let record = batch();
        assert_eq!(missing_outputs(&record, &HashSet::new()), vec![0, 1]);
        assert_eq!(missing_outputs(&record, &HashSet::from([(7, 0)])), vec![1]);
        assert_eq!(missing_outputs(&record, &HashSet::from([(6, 1), (7, 0), (7, 1)])), Vec::<usize>::new());
    }

    #[test]
    fn position_keys_split_at_the_last_slash() {
        assert_eq!(split_position_key("order-events/3"), Some(("order-events", 3)));
        assert_eq!(split_position_key("a/b/12"), Some(("a/b", 12)));
        assert_eq!(split_position_key("nope"), None);
    }

    proptest! {
        /// A batch record read back from the changelog is outside input: any
        /// bytes are an error or a record, never a panic.
        #[test]
        fn batch_records_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = serde_json::from_slice::<BatchRecord>(&bytes);
        }
    }
}
