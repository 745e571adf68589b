//! Kafka from the tests' side: produce records, read topics back the way
//! the workshop's API would (read_committed), and keep an embedded job from
//! outliving its test.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::support::{Broker, Kart, HOW_TO_START};

/// One record as a test sees it.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<String>)>,
}

impl Record {
    #[track_caller]
    pub fn json(&self) -> Value {
        let bytes = self.value.as_deref().expect("a value");
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
    }
}

pub struct TestProducer {
    producer: BaseProducer,
}

impl TestProducer {
    pub fn new(broker: &Broker) -> Self {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("linger.ms", "0")
            .set("acks", "all")
            .create()
            .expect("test producer");
        TestProducer { producer }
    }

    /// Sends and waits until the broker has it.
    pub fn send(&self, topic: &str, key: Option<&str>, value: &[u8]) {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.producer.send(record).map_err(|(e, _)| e).expect("enqueue");
        self.producer
            .flush(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("cannot produce to {topic} ({e}); {HOW_TO_START}"));
    }

    /// Sends with headers, and waits until the broker has it.
    pub fn send_with_headers(&self, topic: &str, key: &str, value: &[u8], headers: &[(&str, &str)]) {
        let mut owned = rdkafka::message::OwnedHeaders::new();
        for (name, value) in headers {
            owned = owned.insert(rdkafka::message::Header { key: name, value: Some(*value) });
        }
        let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key).payload(value).headers(owned);
        self.producer.send(record).map_err(|(e, _)| e).expect("enqueue");
        self.producer.flush(Duration::from_secs(10)).expect("flush");
    }

    pub fn order(&self, order_id: &str, product_id: &str, quantity: i64) {
        let value = serde_json::json!({"orderId": order_id, "productId": product_id, "quantity": quantity, "timestamp": 1_700_000_000_000i64});
        self.send("order-events", Some(product_id), value.to_string().as_bytes());
    }
}

/// Everything committed on `topic` right now (read_committed, from the
/// beginning to the end offsets seen at the start).
pub fn read_all(broker: &Broker, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("isolation.level", "read_committed")
        .set("group.id", "kart-test-reader")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("test consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).expect("watermarks");
        if high > low {
            ends.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return records;
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} to its end took over 30 s");
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                records.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m.headers().map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()))).collect()).unwrap_or_default(),
                });
            }
            // The end: librdkafka says so and the position passed the end
            // seen at the start (tansu's offset query may answer less than
            // the real end; control records take offsets too).
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                for element in consumer.position().expect("position").elements() {
                    if let Offset::Offset(o) = element.offset() {
                        if element.partition() == partition && ends.get(&partition).is_some_and(|end| o >= *end) {
                            ends.remove(&partition);
                        }
                    }
                }
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    records
}

/// The JSON values of `topic`.
pub fn values(broker: &Broker, topic: &str) -> Vec<Value> {
    read_all(broker, topic).iter().filter(|r| r.value.is_some()).map(Record::json).collect()
}

/// Polls `check` over `topic`'s values until it returns `Some`, or fails.
#[track_caller]
pub fn wait_for<T>(broker: &Broker, topic: &str, within: Duration, mut check: impl FnMut(&[Value]) -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        let values = values(broker, topic);
        if let Some(found) = check(&values) {
            return found;
        }
        if Instant::now() > deadline {
            let tail: Vec<String> = values.iter().rev().take(5).map(|v| v.to_string()).collect();
            panic!("{topic}: condition not met within {within:?}; last records: {tail:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops (or kills) the project's embedded inventory job when the test ends,
/// pass or fail, so no job outlives its broker.
pub struct JobGuard<'a> {
    pub kart: &'a Kart,
}

impl Drop for JobGuard<'_> {
    fn drop(&mut self) {
        let _ = self.kart.command(&["job", "stop", "inventory", "--timeout", "3s"]).output();
    }
}

/// The pid the running job recorded.
pub fn job_pid(kart: &Kart) -> u32 {
    let record: Value = serde_json::from_slice(&std::fs::read(kart.dir().join(".kart/jobs/inventory.json")).expect("job record"))
        .expect("job record JSON");
    record["pid"].as_u64().expect("pid") as u32
}

pub fn process_alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie (exited, not reaped) counts as gone.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.split(") ").nth(1).unwrap_or("").starts_with('Z')
}
