//! The Kafka driver around the pure inventory core (design §6): restore state
//! from the changelog, bootstrap the catalog once per state, then consume
//! `product-updates` and `order-events` and produce every output, the state
//! changes and the input offsets batch by batch, exactly once, with the
//! write-ahead protocol of [`super::wal`].
//!
//! A failed batch (a delivery error) throws the in-memory state away and
//! rebuilds it from what was committed, so memory never runs ahead of the log.
//!
//! The loop runs on its own thread with librdkafka's blocking calls: one
//! thread owning the processor keeps the hot path free of locks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, Statistics, TopicPartitionList};
use sha2::{Digest, Sha256};

use crate::catalog;
use crate::config::Settings;
use crate::exit::{KartError, Result};
use crate::inventory::model::{DlqEntry, EventType, Outcome, SourcePosition, WebsocketEnvelope};
use crate::inventory::{parse_order, parse_products, Config, Input, OnInsufficient, Outputs, Processor, Product, StateChange};
use crate::kafka::{wait_until_reachable, KafkaSettings, KartClientContext};
use crate::printer::Printer;
use crate::supervise::now_ms;

use super::status::{JobState, JobStatus};
use super::wal;

pub const JOB_NAME: &str = "inventory";

pub const PRODUCT_UPDATES: &str = "product-updates";
pub const ORDER_EVENTS: &str = "order-events";
pub const PRODUCTS: &str = "products";
pub const INVENTORY_EVENTS: &str = "inventory-events";
pub const WEBSOCKET_FANOUT: &str = "websocket_fanout";
pub const INVENTORY_ALERTS: &str = "inventory-alerts";
pub const INVENTORY_DLQ: &str = "inventory-dlq";
pub const ORDER_OUTCOMES: &str = "kart-order-outcomes";
pub const STATE_CHANGELOG: &str = "kart-inventory-state";

const INPUTS: [&str; 2] = [PRODUCT_UPDATES, ORDER_EVENTS];
const OUTPUTS: [&str; 7] =
    [PRODUCTS, INVENTORY_EVENTS, WEBSOCKET_FANOUT, INVENTORY_ALERTS, INVENTORY_DLQ, ORDER_OUTCOMES, STATE_CHANGELOG];

/// How often the input positions are committed to the consumer group.
const GROUP_COMMIT_EVERY: Duration = Duration::from_secs(60);

/// Longest wait in one poll when idle, so a stop request is seen quickly.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Everything the job runs with, resolved once from the settings.
#[derive(Debug, Clone)]
pub struct InventorySettings {
    pub kafka: KafkaSettings,
    pub group: String,
    pub core: Config,
    pub commit_interval: Duration,
    /// `KART_FETCH_WAIT`: the input consumer's `fetch.wait.max.ms`.
    pub fetch_wait: Duration,
    pub catalog: Vec<Product>,
    pub catalog_source: String,
}

impl InventorySettings {
    pub fn from_settings(settings: &Settings, connect_timeout: Duration) -> Result<Self> {
        let kafka = KafkaSettings::from_settings(settings, connect_timeout)?;
        let group = settings.require("KAFKA_GROUP_ID")?.trim().to_string();
        let low_stock_threshold = settings.integer("KART_LOW_STOCK_THRESHOLD")?;
        if low_stock_threshold < 0 {
            return Err(settings.bad_value("KART_LOW_STOCK_THRESHOLD", "must be 0 or more"));
        }
        let on_insufficient = match settings.get("KART_ON_INSUFFICIENT")?.trim().to_ascii_lowercase().as_str() {
            "reject" => OnInsufficient::Reject,
            "clamp" => OnInsufficient::Clamp,
            _ => return Err(settings.bad_value("KART_ON_INSUFFICIENT", "must be `reject` or `clamp`")),
        };
        let millis = |name: &str| -> Result<i64> {
            let duration = settings.duration(name)?;
            if duration.is_zero() {
                return Err(settings.bad_value(name, "must be longer than 0"));
            }
            Ok(duration.as_millis().min(i64::MAX as u128) as i64)
        };
        let core = Config {
            low_stock_threshold,
            stale_timeout_ms: millis("KART_STALE_TIMEOUT")?,
            on_insufficient,
            dedup_window_ms: millis("KART_DEDUP_WINDOW")?,
        };
        let commit_interval = settings.duration("KART_COMMIT_INTERVAL")?;
        let fetch_wait = settings.duration("KART_FETCH_WAIT")?;
        let (catalog, source) = catalog::configured(settings)?;
        Ok(InventorySettings { kafka, group, core, commit_interval, fetch_wait, catalog, catalog_source: source.to_string() })
    }

    pub fn transactional_id(&self) -> String {
        format!("kart-inventory-{}", self.group)
    }

    /// A fingerprint of what the job's behaviour depends on (never the
    /// password), so a deploy can say that a running copy is out of date.
    pub fn config_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let catalog = serde_json::to_vec(&self.catalog).unwrap_or_default();
        let text = format!(
            "{}|{}|{}|{}|{:?}|{:?}|{}",
            self.kafka.bootstrap, self.kafka.user, self.group, self.core.low_stock_threshold, self.core, self.commit_interval, self.catalog_source
        );
        hasher.update(text.as_bytes());
        hasher.update(&catalog);
        hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// librdkafka's client context for the job's consumers: errors as for every
/// kart client, plus the per-partition lag from its statistics.
#[derive(Clone)]
struct JobClientContext {
    inner: KartClientContext,
    lag: Arc<Mutex<BTreeMap<String, i64>>>,
}

impl ClientContext for JobClientContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let mut lag = BTreeMap::new();
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition < 0 || p.app_offset < 0 {
                    continue;
                }
                // read_committed readers stop at the last stable offset.
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                if end >= 0 {
                    lag.insert(format!("{topic}/{partition}"), (end - p.app_offset).max(0));
                }
            }
        }
        if let Ok(mut shared) = self.lag.lock() {
            *shared = lag;
        }
    }
}

impl ConsumerContext for JobClientContext {}

use super::session::{SessionError, SessionResult, MAX_CONSECUTIVE_FAILURES, STATUS_EVERY};

/// The producer's context: errors as for every kart client, plus delivery
/// failures, which decide whether a batch was written.
#[derive(Clone)]
struct JobProducerContext {
    inner: KartClientContext,
    failures: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for JobProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ProducerContext for JobProducerContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, message)) = result {
            if let Ok(mut failures) = self.failures.lock() {
                failures.push(format!("{}: {error}", message.topic()));
            }
        }
    }
}

type JobProducer = BaseProducer<JobProducerContext>;

/// Runs the inventory processor until `stop` is set.
pub struct Driver {
    settings: InventorySettings,
    fresh: bool,
    printer: Printer,
    status: Arc<Mutex<JobStatus>>,
    stop: Arc<AtomicBool>,
    /// Kept across sessions so a retry does not reset the metrics.
    counters: Counters,
}

impl Driver {
    pub fn new(
        settings: InventorySettings,
        fresh: bool,
        printer: Printer,
        status: Arc<Mutex<JobStatus>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Driver { settings, fresh, printer, status, stop, counters: Counters::default() }
    }

    /// Blocking: call from a thread of its own.
    pub fn run(mut self) -> Result<()> {
        let context = KartClientContext::new(self.printer.clone());
        let kafka = self.settings.kafka.clone();
        let producer_context = JobProducerContext { inner: context.clone(), failures: Arc::default() };
        let producer: JobProducer = kafka
            .client_config()
            .set("client.id", "kart-inventory")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Each batch ends with a flush, so lingering only delays it.
            .set("linger.ms", "0")
            // The batch record repeats every output; JSON compresses well.
            .set("compression.type", "lz4")
            .create_with_context(producer_context.clone())
            .map_err(|e| KartError::infra("kafka-client", format!("cannot create the Kafka producer: {e}")))?;
        let metadata = wait_until_reachable(&kafka, &context, |timeout| producer.client().fetch_metadata(None, timeout))?;
        check_topics(&metadata)?;

        let mut failures = 0;
        loop {
            match self.session(&producer, &producer_context, &context, &metadata) {
                Ok(()) => return Ok(()),
                Err(SessionError::Fatal(error)) => return Err(error),
                Err(SessionError::Retry(why)) => {
                    failures += 1;
                    if failures >= MAX_CONSECUTIVE_FAILURES {
                        return Err(KartError::infra(
                            "inventory-job-failed",
                            format!("the inventory job failed {failures} times in a row; last error: {why}"),
                        ));
                    }
                    let backoff = Duration::from_millis(250 * (1 << failures.min(4)));
                    self.printer.warn(&format!("batch not written ({why}); restoring state and retrying in {backoff:?}"));
                    self.sleep_unless_stopped(backoff);
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn sleep_unless_stopped(&self, total: Duration) {
        let until = Instant::now() + total;
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn session(
        &mut self,
        producer: &JobProducer,
        producer_context: &JobProducerContext,
        context: &KartClientContext,
        metadata: &Metadata,
    ) -> SessionResult<()> {
        set_state(&self.status, JobState::Restoring);
        let kafka = &self.settings.kafka;
        let timeout = kafka.connect_timeout.max(Duration::from_secs(10));
        let mut processor = Processor::new(self.settings.core.clone());
        let restored = restore(kafka, context, metadata, &mut processor, self.fresh, timeout)?;
        self.printer.status(
            "Restored",
            &format!(
                "{} changelog records: {} products, {} remembered order lines",
                restored.records,
                processor.product_count(),
                processor.dedup_len()
            ),
        );
        // Failures of an earlier session were handled by its retry.
        producer_context.failures.lock().unwrap_or_else(|e| e.into_inner()).clear();

        let lag = Arc::new(Mutex::new(BTreeMap::new()));
        let consumer: BaseConsumer<JobClientContext> = kafka
            .client_config()
            .set("client.id", "kart-inventory")
            .set("group.id", &self.settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            // Kafka and Redpanda answer a waiting fetch as soon as data
            // arrives, so this only bounds an idle poll there; tansu waits
            // it out, so on tansu it is every order's added latency — and a
            // short one keeps tansu busy (10 ms: ~40 % of a core while idle).
            .set("fetch.wait.max.ms", self.settings.fetch_wait.as_millis().clamp(1, 60_000).to_string())
            // tansu sometimes answers a fetch with a retriable error; the
            // default 500 ms back-off would stall every order behind it.
            .set("fetch.error.backoff.ms", "20")
            .set("statistics.interval.ms", "1000")
            .create_with_context(JobClientContext { inner: context.clone(), lag: lag.clone() })
            .map_err(|e| KartError::infra("kafka-client", format!("cannot create the Kafka consumer: {e}")))?;

        // Start positions (design §6): where the last committed batch left
        // off; the beginning on the first start; the current end with --fresh.
        let mut positions: BTreeMap<String, i64> = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for topic in INPUTS {
            for partition in partitions_of(metadata, topic) {
                let key = wal::position_key(topic, partition);
                let offset = if self.fresh {
                    let (_, high) = consumer
                        .fetch_watermarks(topic, partition, timeout)
                        .map_err(|e| SessionError::Retry(format!("cannot read the end of {topic}: {e}")))?;
                    Offset::Offset(high)
                } else {
                    match restored.positions.get(&key) {
                        Some(offset) => Offset::Offset(*offset),
                        None => Offset::Beginning,
                    }
                };
                if let Offset::Offset(offset) = offset {
                    positions.insert(key, offset);
                }
                assignment
                    .add_partition_offset(topic, partition, offset)
                    .map_err(|e| KartError::infra("kafka", e.to_string()))?;
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|e| SessionError::Retry(format!("cannot assign the input partitions: {e}")))?;

        let mut session = Session {
            printer: &self.printer,
            kafka,
            context,
            producer,
            producer_context,
            consumer: &consumer,
            processor,
            out: Outputs::default(),
            dirty_products: HashSet::new(),
            batch: Vec::new(),
            state: Vec::new(),
            positions,
            seq: restored.next_seq,
            batch_started: None,
            positions_dirty: false,
            last_group_commit: Instant::now(),
            batch_bytes: 0,
            counters: &mut self.counters,
            timeout,
            restored_records: restored.records,
        };

        if let Some(last) = restored.last_batch.as_ref().filter(|_| !self.fresh) {
            session.redo(last, metadata)?;
        }
        if restored.last_batch.is_none() || self.fresh {
            session.begin();
            for key in &restored.live_keys {
                session.state.push(wal::StateRecord { key: key.clone(), value: None });
            }
            let catalog = self.settings.catalog.clone();
            self.printer.status("Bootstrap", &format!("{} products from {}", catalog.len(), self.settings.catalog_source));
            session.processor.apply(Input::Products(catalog), now_ms(), &mut session.out);
            session.emit(None)?;
            session.commit()?;
            // --fresh applies once: a retry after this commit must restore.
            self.fresh = false;
        }

        set_state(&self.status, JobState::Running);
        self.printer.status("Running", &format!("inventory job, group {}", self.settings.group));
        let mut last_status = Instant::now() - STATUS_EVERY;
        loop {
            if last_status.elapsed() >= STATUS_EVERY {
                last_status = Instant::now();
                publish(&self.status, &session, &lag);
            }
            if self.stop.load(Ordering::Relaxed) {
                set_state(&self.status, JobState::Stopping);
                if session.batch_started.is_some() {
                    session.commit()?;
                }
                session.commit_group_offsets();
                // Give the asynchronous offset commit a moment to be sent.
                consumer.poll(Duration::from_millis(100));
                publish(&self.status, &session, &lag);
                return Ok(());
            }
            let now = now_ms();
            if session.processor.next_deadline().is_some_and(|deadline| deadline <= now) {
                session.begin();
                session.processor.apply(Input::Tick, now, &mut session.out);
                session.emit(None)?;
            }
            // With a batch open, only take what is already here: an empty
            // poll means the input is drained, so commit now.
            let wait = if session.batch_started.is_some() {
                Duration::ZERO
            } else {
                let until_deadline = session
                    .processor
                    .next_deadline()
                    .map(|deadline| Duration::from_millis(deadline.saturating_sub(now).max(0) as u64))
                    .unwrap_or(IDLE_POLL);
                IDLE_POLL.min(until_deadline)
            };
            match consumer.poll(wait) {
                None => {
                    if session.batch_started.is_some() {
                        session.commit()?;
                    }
                }
                Some(Err(error)) => {
                    self.printer.warn(&format!("consumer: {error}"));
                }
                Some(Ok(message)) => {
                    session.begin();
                    session.handle(&message)?;
                    if session.is_due(self.settings.commit_interval) {
                        session.commit()?;
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
    }
}

fn set_state(status: &Mutex<JobStatus>, state: JobState) {
    if let Ok(mut status) = status.lock() {
        status.state = state;
    }
}

/// Copies the loop's counters into the shared status (a few times a second,
/// so the hot path never takes a lock).
fn publish(status: &Mutex<JobStatus>, session: &Session<'_>, lag: &Mutex<BTreeMap<String, i64>>) {
    let Ok(mut status) = status.lock() else { return };
    let counters = &session.counters;
    status.records_in = counters.records_in.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    status.records_out = counters.records_out.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    status.applied = counters.applied;
    status.rejected = counters.rejected;
    status.duplicates = counters.duplicates;
    status.dlq = counters.dlq;
    status.products = session.processor.product_count();
    status.dedup_entries = session.processor.dedup_len();
    status.restored_records = session.restored_records;
    status.batches = counters.batches;
    status.last_commit_at = counters.last_commit_at;
    if let Ok(lag) = lag.lock() {
        status.lag = lag
            .iter()
            .filter(|(k, _)| INPUTS.iter().any(|t| k.starts_with(&format!("{t}/"))))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
    }
    status.updated_at = now_ms();
}

#[derive(Default)]
struct Counters {
    records_in: BTreeMap<&'static str, u64>,
    records_out: BTreeMap<&'static str, u64>,
    applied: u64,
    rejected: u64,
    duplicates: u64,
    dlq: u64,
    batches: u64,
    last_commit_at: Option<i64>,
}

/// The input record an output came from, for dead-lettering it as it was.
#[derive(Clone, Copy)]
struct RawInput<'a> {
    source: SourcePosition<'a>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// Largest batch (bytes of outputs) before it is committed regardless of
/// the interval: the batch record must stay well under the broker's 1 MB
/// default message size.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One run of the loop between a restore and a stop or failure.
struct Session<'a> {
    printer: &'a Printer,
    kafka: &'a KafkaSettings,
    context: &'a KartClientContext,
    producer: &'a JobProducer,
    producer_context: &'a JobProducerContext,
    consumer: &'a BaseConsumer<JobClientContext>,
    processor: Processor,
    out: Outputs,
    /// Products whose changelog record is written at commit time: one
    /// record per product per batch, however many orders touched it.
    dirty_products: HashSet<String>,
    /// The open batch's outputs and state records.
    batch: Vec<wal::OutputRecord>,
    state: Vec<wal::StateRecord>,
    /// Next offset of every input partition, as of the open batch.
    positions: BTreeMap<String, i64>,
    seq: u64,
    batch_started: Option<Instant>,
    /// Committed positions not yet committed to the consumer group.
    positions_dirty: bool,
    last_group_commit: Instant,
    /// Bytes of the open batch's outputs.
    batch_bytes: usize,
    counters: &'a mut Counters,
    timeout: Duration,
    restored_records: u64,
}

impl Session<'_> {
    fn begin(&mut self) {
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
    }

    fn is_due(&self, interval: Duration) -> bool {
        self.batch_started.is_some_and(|t| t.elapsed() >= interval) || self.batch_bytes >= MAX_BATCH_BYTES
    }

    /// Writes the open batch: its record, then its state and outputs (see
    /// [`super::wal`]); returns when the broker has acknowledged all of it.
    fn commit(&mut self) -> SessionResult<()> {
        for product_id in self.dirty_products.drain() {
            let (key, value) = self.processor.changelog_record(&StateChange::Product(product_id));
            let value = value.map(wal::raw_json).transpose().map_err(internal)?;
            self.state.push(wal::StateRecord { key, value });
        }
        let record = wal::BatchRecord {
            seq: self.seq,
            committed_at: now_ms(),
            positions: self.positions.clone(),
            state: std::mem::take(&mut self.state),
            outputs: std::mem::take(&mut self.batch),
        };
        let started = Instant::now();
        let bytes = serde_json::to_vec(&record).map_err(|e| internal(e.to_string()))?;
        self.send(STATE_CHANGELOG, Some(wal::BATCH_KEY.as_bytes()), Some(&bytes), None)?;
        self.flush()?;
        let logged = started.elapsed();
        self.write_batch(&record, None)?;
        self.flush()?;
        if self.printer.verbose() {
            self.printer.debug(&format!(
                "batch {} at {}: {} outputs, {} state records, record {} bytes; logged in {:?}, written in {:?}, open for {:?}",
                record.seq,
                record.committed_at,
                record.outputs.len(),
                record.state.len(),
                bytes.len(),
                logged,
                started.elapsed(),
                self.batch_started.map(|t| t.elapsed()).unwrap_or_default()
            ));
        }
        self.positions_dirty = true;
        if self.last_group_commit.elapsed() >= GROUP_COMMIT_EVERY {
            self.commit_group_offsets();
        }
        self.seq += 1;
        self.batch_started = None;
        self.batch_bytes = 0;
        self.counters.batches += 1;
        self.counters.last_commit_at = Some(record.committed_at);
        Ok(())
    }

    /// Commits the input positions to the consumer group. They are for
    /// tools (group lag in Kpow, `rpk group describe`); a restart trusts the
    /// batch record. Rarely, because tansu stalls fetches for up to a second
    /// around each offset commit, which every order would feel.
    fn commit_group_offsets(&mut self) {
        if !self.positions_dirty {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        for (key, offset) in &self.positions {
            if let Some((topic, partition)) = wal::split_position_key(key) {
                let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(*offset));
            }
        }
        let _ = self.consumer.commit(&offsets, CommitMode::Async);
        self.positions_dirty = false;
        self.last_group_commit = Instant::now();
    }

    /// Sends a batch's state records and its outputs (all, or only `only`).
    fn write_batch(&mut self, record: &wal::BatchRecord, only: Option<&[usize]>) -> SessionResult<()> {
        for state in &record.state {
            let value = state.value.as_ref().map(|v| v.get().as_bytes());
            self.send(STATE_CHANGELOG, Some(state.key.as_bytes()), value, None)?;
        }
        let all: Vec<usize>;
        let indices = match only {
            Some(indices) => indices,
            None => {
                all = (0..record.outputs.len()).collect();
                &all
            }
        };
        for &index in indices {
            let output = &record.outputs[index];
            let topic = output_topic(&output.topic);
            let headers = OwnedHeaders::new()
                .insert(Header { key: wal::BATCH_HEADER, value: Some(&record.seq.to_string()) })
                .insert(Header { key: wal::INDEX_HEADER, value: Some(&index.to_string()) });
            self.send(topic, output.key.as_deref().map(str::as_bytes), Some(output.value.get().as_bytes()), Some(headers))?;
        }
        Ok(())
    }

    /// Completes the last batch a previous run committed: its state again
    /// (absolute values, so applying twice is harmless) and whichever of its
    /// outputs did not reach their topics.
    fn redo(&mut self, record: &wal::BatchRecord, metadata: &Metadata) -> SessionResult<()> {
        let mut found = HashSet::new();
        let topics: BTreeSet<&str> = record.outputs.iter().map(|o| o.topic.as_str()).collect();
        for topic in topics {
            let expected = record.outputs.iter().filter(|o| o.topic == topic).count() as i64;
            found.extend(read_batch_headers(self.kafka, self.context, metadata, topic, expected, self.timeout)?);
        }
        let missing = wal::missing_outputs(record, &found);
        if !missing.is_empty() {
            self.printer.status(
                "Completing",
                &format!("batch {} of the last run: {} of its {} outputs were not written", record.seq, missing.len(), record.outputs.len()),
            );
        }
        self.write_batch(record, Some(&missing))?;
        self.flush()?;
        Ok(())
    }

    /// Waits until the broker acknowledged every record sent so far.
    ///
    /// Not `Producer::flush`: rdkafka's flush polls in slices of 100 ms and
    /// each slice runs to its end, so every flush took 100 ms. Nor a timed
    /// `poll`: it keeps polling until its deadline, with waits that round
    /// down to 0 ms, spinning a core the broker needs. Non-blocking polls
    /// between short sleeps serve the delivery reports soon after they come.
    fn flush(&mut self) -> SessionResult<()> {
        let deadline = Instant::now() + self.timeout;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(SessionError::Retry(format!(
                    "the broker did not acknowledge the batch within {}",
                    humantime::format_duration(self.timeout)
                )));
            }
            self.producer.poll(Duration::ZERO);
            if self.producer.in_flight_count() > 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let failures = std::mem::take(&mut *self.producer_context.failures.lock().unwrap_or_else(|e| e.into_inner()));
        match failures.first() {
            None => Ok(()),
            Some(first) => Err(SessionError::Retry(format!("{} records not delivered, first: {first}", failures.len()))),
        }
    }

    fn handle(&mut self, message: &BorrowedMessage<'_>) -> SessionResult<()> {
        let (topic, is_order) = match message.topic() {
            ORDER_EVENTS => (ORDER_EVENTS, true),
            _ => (PRODUCT_UPDATES, false),
        };
        *self.counters.records_in.entry(topic).or_default() += 1;
        let source = SourcePosition { topic, partition: message.partition(), offset: message.offset() };
        let now = now_ms();
        let payload = message.payload();
        let parsed = match payload {
            None => Err("the record has no value".to_string()),
            Some(bytes) if is_order => parse_order(bytes).map(Input::Order).map_err(|e| e.message),
            Some(bytes) => match parse_products(bytes) {
                Ok(products) if products.is_empty() => Err("the message holds no products".to_string()),
                Ok(products) => Ok(Input::Products(products)),
                Err(e) => Err(e.message),
            },
        };
        match parsed {
            Ok(input) => {
                self.processor.apply(input, now, &mut self.out);
                self.emit(Some(RawInput { source, key: message.key(), value: payload }))?;
            }
            Err(reason) => {
                let entry = DlqEntry::from_raw(source, message.key(), payload, reason, now);
                self.push_dlq(&entry, message.key());
            }
        }
        self.positions.insert(wal::position_key(topic, message.partition()), message.offset() + 1);
        Ok(())
    }

    fn push_dlq(&mut self, entry: &DlqEntry, key: Option<&[u8]>) {
        self.counters.dlq += 1;
        // Keys in this system are ids; a key that is not UTF-8 is carried
        // lossily (the entry itself holds the raw key losslessly).
        let key = key.map(|k| String::from_utf8_lossy(k).into_owned());
        self.push(INVENTORY_DLQ, key, entry);
    }

    fn push<T: serde::Serialize>(&mut self, topic: &'static str, key: Option<String>, value: &T) {
        match serde_json::value::to_raw_value(value) {
            Ok(value) => {
                *self.counters.records_out.entry(topic).or_default() += 1;
                self.batch_bytes += value.get().len();
                self.batch.push(wal::OutputRecord { topic: topic.to_string(), key, value });
            }
            // Plain structs with string keys: cannot fail.
            Err(error) => debug_assert!(false, "cannot encode an output: {error}"),
        }
    }

    /// Turns what the processor produced into the batch's records, then
    /// clears it.
    fn emit(&mut self, raw: Option<RawInput<'_>>) -> SessionResult<()> {
        let out = std::mem::take(&mut self.out);
        for product in &out.products {
            self.push(PRODUCTS, Some(product.product_id.clone()), product);
        }
        for event in &out.events {
            self.push(INVENTORY_EVENTS, Some(event.product_id.clone()), event);
            self.push(WEBSOCKET_FANOUT, Some(event.product_id.clone()), &WebsocketEnvelope::inventory_update(event, event.timestamp));
            if event.event_type == EventType::OrderRejected {
                self.counters.rejected += 1;
            }
        }
        for alert in &out.alerts {
            self.push(INVENTORY_ALERTS, Some(alert.product_id.clone()), alert);
        }
        for outcome in &out.outcomes {
            match outcome.outcome {
                Outcome::Applied => self.counters.applied += 1,
                Outcome::Duplicate => self.counters.duplicates += 1,
                Outcome::Rejected | Outcome::Dlq => {}
            }
            self.push(ORDER_OUTCOMES, Some(outcome.order_id.clone()), outcome);
        }
        for (line, reason) in &out.unknown_product_orders {
            let Some(raw) = raw else { continue };
            let entry = DlqEntry::from_raw(raw.source, raw.key, raw.value, reason.clone(), out_timestamp(&out));
            let key = raw.key.unwrap_or(line.product_id.as_bytes());
            self.push_dlq(&entry, Some(key));
        }
        for change in &out.changes {
            match change {
                StateChange::Product(product_id) => {
                    self.dirty_products.insert(product_id.clone());
                }
                other => {
                    let (key, value) = self.processor.changelog_record(other);
                    let value = value.map(wal::raw_json).transpose().map_err(internal)?;
                    self.state.push(wal::StateRecord { key, value });
                }
            }
        }
        self.out = out;
        self.out.clear();
        Ok(())
    }

    fn send(&mut self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, headers: Option<OwnedHeaders>) -> SessionResult<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The local queue is full: let deliveries drain it.
                    self.producer.poll(Duration::from_millis(10));
                    record = returned;
                }
                Err((error, _)) => return Err(SessionError::Retry(format!("cannot produce to {topic}: {error}"))),
            }
        }
    }
}

/// The timestamp the processor stamped on this input's outputs.
fn out_timestamp(out: &Outputs) -> i64 {
    out.outcomes.first().map(|o| o.timestamp).unwrap_or_else(now_ms)
}

/// The `&'static` name of an output topic read back from a batch record.
fn output_topic(name: &str) -> &'static str {
    OUTPUTS.iter().copied().find(|t| *t == name).unwrap_or(INVENTORY_DLQ)
}

fn internal(why: impl std::fmt::Display) -> SessionError {
    SessionError::Fatal(KartError::infra("internal", format!("cannot encode a record: {why}")))
}

/// The `(batch, index)` headers of the last records of `topic` (the last
/// `expected` plus a margin per partition: the job is these topics' only
/// writer, so its last batch sits at their ends).
fn read_batch_headers(
    kafka: &KafkaSettings,
    context: &KartClientContext,
    metadata: &Metadata,
    topic: &str,
    expected: i64,
    timeout: Duration,
) -> SessionResult<HashSet<(u64, usize)>> {
    let mut found = HashSet::new();
    for partition in partitions_of(metadata, topic) {
        let reader = assigned_reader(kafka, context, "kart-inventory-redo")?;
        read_partition(&reader, topic, partition, |low, high| (high - expected - 64).max(low), timeout, |message| {
            if let Some(position) = wal::batch_position(message.headers()) {
                found.insert(position);
            }
            Ok(())
        })?;
    }
    Ok(found)
}

/// A consumer for reading partitions by assignment: no group membership,
/// nothing committed (librdkafka still wants a group id for `assign`).
fn assigned_reader(kafka: &KafkaSettings, context: &KartClientContext, client_id: &str) -> SessionResult<BaseConsumer<KartClientContext>> {
    kafka
        .reader_config(client_id)
        .set("fetch.wait.max.ms", "10")
        .create_with_context(context.clone())
        .map_err(|e| SessionError::Fatal(KartError::infra("kafka-client", format!("cannot create a Kafka reader: {e}"))))
}

/// Reads one partition from `start(low, high)` to its end, handing each
/// record to `each`. The end is where librdkafka reports the partition's end
/// *and* the position has passed the end offset seen at the start: tansu's
/// offset query can answer less than the real end, and the position, not
/// the last record, counts offsets of control records.
fn read_partition(
    reader: &BaseConsumer<KartClientContext>,
    topic: &str,
    partition: i32,
    start: impl FnOnce(i64, i64) -> i64,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> SessionResult<()>,
) -> SessionResult<()> {
    let (low, high) = reader
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|e| SessionError::Retry(format!("cannot read the end of {topic}: {e}")))?;
    let from = start(low, high);
    if from >= high {
        return Ok(());
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| KartError::infra("kafka", e.to_string()))?;
    reader
        .assign(&assignment)
        .map_err(|e| SessionError::Retry(format!("cannot assign {topic}: {e}")))?;
    let mut last_progress = Instant::now();
    loop {
        match reader.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                each(&message)?;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                let position = reader.position().ok().and_then(|positions| {
                    positions.elements().first().and_then(|element| match element.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    })
                });
                if position.is_some_and(|position| position >= high) {
                    return Ok(());
                }
            }
            Some(Err(error)) => return Err(SessionError::Retry(format!("cannot read {topic}: {error}"))),
            None => {
                if last_progress.elapsed() > timeout {
                    return Err(SessionError::Retry(format!(
                        "reading {topic} made no progress for {}",
                        humantime::format_duration(timeout)
                    )));
                }
            }
        }
    }
}

struct Restored {
    records: u64,
    /// Keys with a live value, for `--fresh` to tombstone.
    live_keys: Vec<String>,
    /// The last committed batch, to complete; its positions are where the
    /// inputs resume.
    last_batch: Option<wal::BatchRecord>,
    positions: BTreeMap<String, i64>,
    next_seq: u64,
}

/// Reads the whole changelog into `processor`, or with `fresh` only collects
/// its live keys. Reading every record rather than relying on compaction
/// gives the same state either way; the last batch record's state is
/// applied last, since its keyed records may not all have been written.
fn restore(
    kafka: &KafkaSettings,
    context: &KartClientContext,
    metadata: &Metadata,
    processor: &mut Processor,
    fresh: bool,
    timeout: Duration,
) -> SessionResult<Restored> {
    let mut restored = Restored { records: 0, live_keys: Vec::new(), last_batch: None, positions: BTreeMap::new(), next_seq: 0 };
    let corrupt = |partition: i32, offset: i64, why: String| {
        SessionError::Fatal(
            KartError::infra("changelog-corrupt", format!("{STATE_CHANGELOG} partition {partition} offset {offset}: {why}"))
                .with_hint("start from empty state with `kart job deploy inventory --fresh --replace`"),
        )
    };
    let mut live: HashSet<String> = HashSet::new();
    for partition in partitions_of(metadata, STATE_CHANGELOG) {
        let reader = assigned_reader(kafka, context, "kart-inventory-restore")?;
        read_partition(&reader, STATE_CHANGELOG, partition, |low, _| low, timeout, |message| {
            restored.records += 1;
            let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
            if key == wal::BATCH_KEY {
                let bytes = message.payload().unwrap_or_default();
                let batch: wal::BatchRecord = serde_json::from_slice(bytes)
                    .map_err(|e| corrupt(message.partition(), message.offset(), format!("bad batch record: {e}")))?;
                if restored.last_batch.as_ref().is_none_or(|last| batch.seq > last.seq) {
                    restored.last_batch = Some(batch);
                }
            } else if fresh {
                if message.payload().is_some() {
                    live.insert(key);
                } else {
                    live.remove(&key);
                }
            } else {
                processor
                    .restore_record(&key, message.payload())
                    .map_err(|why| corrupt(message.partition(), message.offset(), why))?;
            }
            Ok(())
        })?;
    }
    if let Some(batch) = &restored.last_batch {
        restored.next_seq = batch.seq + 1;
        restored.positions = batch.positions.clone();
        if !fresh {
            for state in &batch.state {
                processor
                    .restore_record(&state.key, state.value.as_ref().map(|v| v.get().as_bytes()))
                    .map_err(|why| corrupt(-1, -1, format!("batch {}: {why}", batch.seq)))?;
            }
        }
    }
    restored.live_keys = live.into_iter().collect();
    restored.live_keys.sort();
    Ok(restored)
}

fn partitions_of(metadata: &Metadata, topic: &str) -> Vec<i32> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect()
}

fn check_topics(metadata: &Metadata) -> Result<()> {
    let missing: Vec<&str> = INPUTS
        .iter()
        .chain(OUTPUTS.iter())
        .copied()
        .filter(|topic| partitions_of(metadata, topic).is_empty())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(KartError::user("topics-missing", format!("the inventory job needs topics that do not exist: {}", missing.join(", ")))
        .with_hint("create them with `kart topics create`"))
}
