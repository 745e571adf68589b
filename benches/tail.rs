//! `kart tail --from beginning --max N -o json > /dev/null` over N small
//! records (issue 6), against a plain rdkafka consumer loop that only counts
//! them, in the same run on the same fresh in-memory tansu. Target: kart at
//! ≥ 0.8 of the plain loop's rate.
//!
//! Both read the same topic from the beginning with the same fetch settings
//! (kart's defaults); kart's time is the whole process, start-up and
//! connecting included, as a user sees it, and so is the plain loop's
//! (client created, metadata, assign, read N).
//!
//! Run with `cargo bench --bench tail`; `KART_BENCH_TAIL` sets N (default
//! 1,000,000).

mod common;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use common::{kart, start_tansu, time};

const TOPIC: &str = "inventory-events";

fn main() {
    if !common::requested() {
        println!("tail bench: run with `cargo bench --bench tail`");
        return;
    }
    let count: u64 = std::env::var("KART_BENCH_TAIL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (mut broker, port) = start_tansu("benchtail");
    let bootstrap = format!("127.0.0.1:{port}");
    let project = tempfile::tempdir().expect("tempdir");
    let env = [("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone())];
    time(kart(project.path(), &env, &["topics", "create", TOPIC]));

    let started = Instant::now();
    produce(&bootstrap, count);
    println!(
        "produced {count} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Alternate, best of two each: the machine is shared and tansu warms up.
    let mut plain_best = f64::MIN;
    let mut kart_best = f64::MIN;
    for round in 1..=2 {
        let plain = plain_consumer(&bootstrap, count);
        let plain_rate = count as f64 / plain.as_secs_f64();
        let count_text = count.to_string();
        let elapsed = time(kart(
            project.path(),
            &env,
            &[
                "-q",
                "-o",
                "json",
                "tail",
                TOPIC,
                "--from",
                "beginning",
                "--max",
                &count_text,
            ],
        ));
        let kart_rate = count as f64 / elapsed.as_secs_f64();
        println!(
            "round {round}: plain rdkafka loop {plain_rate:.0} records/s ({:.2} s), kart tail -o json {kart_rate:.0} records/s ({:.2} s)",
            plain.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        plain_best = plain_best.max(plain_rate);
        kart_best = kart_best.max(kart_rate);
    }
    let ratio = kart_best / plain_best;
    println!(
        "tail --from beginning --max {count} -o json > /dev/null: kart {kart_best:.0} records/s, plain consumer {plain_best:.0} records/s | ratio {ratio:.2} (target ≥ 0.80) {}",
        if ratio >= 0.8 { "MET" } else { "MISSED" }
    );
    let _ = broker.kill();
    let _ = broker.wait();
}

/// Small inventory-event-like records, produced in large batches.
fn produce(bootstrap: &str, count: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .create()
        .expect("producer");
    for i in 0..count {
        let value = format!(
            r#"{{"productId":"PROD_{:04}","eventType":"INVENTORY_DECREASED","currentInventory":{},"timestamp":{i}}}"#,
            i % 16 + 1,
            i % 100
        );
        let key = format!("PROD_{:04}", i % 16 + 1);
        let mut record = BaseRecord::to(TOPIC).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// The baseline: assign partition 0 from the beginning and count records,
/// with kart's reader settings (read_committed, fetch.wait.max.ms 100).
fn plain_consumer(bootstrap: &str, count: u64) -> Duration {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-plain")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .set("queued.min.messages", "200000")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).expect("assign");
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < count {
        assert!(
            Instant::now() < deadline,
            "the plain consumer read only {seen} of {count} in 600 s"
        );
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            seen += 1;
        }
    }
    started.elapsed()
}
