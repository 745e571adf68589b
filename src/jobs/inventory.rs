//! The Kafka driver around the pure inventory core (design §6): restore state
//! from the changelog, bootstrap the catalog once per state, then consume
//! `product-updates` and `order-events` and produce every output, the state
//! changes and the input offsets in one Kafka transaction at a time.
//!
//! Exactly-once for `read_committed` readers follows from three things: the
//! transactional id `kart-inventory-<group>` fences any older copy and aborts
//! its open transaction on start; the changelog and the input offsets commit
//! with the outputs or not at all; and a failed transaction throws the
//! in-memory state away and rebuilds it from what was committed.
//!
//! The loop runs on its own thread with librdkafka's blocking calls: the
//! transaction API is blocking anyway, and one thread owning the processor
//! keeps the hot path free of locks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
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

/// How often the shared status is refreshed from the loop's counters.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// Longest wait in one poll when idle, so a stop request is seen quickly.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Sessions that fail one after the other before the job gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 5;

/// Everything the job runs with, resolved once from the settings.
#[derive(Debug, Clone)]
pub struct InventorySettings {
    pub kafka: KafkaSettings,
    pub group: String,
    pub core: Config,
    pub commit_interval: Duration,
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
        let (catalog, source) = catalog::configured(settings)?;
        Ok(InventorySettings { kafka, group, core, commit_interval, catalog, catalog_source: source.to_string() })
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

/// Why a session ended early.
enum SessionError {
    /// The transaction failed in a way a fresh session can recover from:
    /// abort, throw the in-memory state away, restore and resume.
    Retry(String),
    /// Nothing to retry (fenced by another instance, misconfiguration).
    Fatal(KartError),
}

impl From<KartError> for SessionError {
    fn from(error: KartError) -> Self {
        SessionError::Fatal(error)
    }
}

type SessionResult<T> = std::result::Result<T, SessionError>;

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
        let kafka = &self.settings.kafka;
        let producer: BaseProducer<KartClientContext> = kafka
            .client_config()
            .set("client.id", "kart-inventory")
            .set("transactional.id", self.settings.transactional_id())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Commits flush anyway; a short linger batches the outputs of
            // one input without adding latency an order would notice.
            .set("linger.ms", "1")
            .set("transaction.timeout.ms", "60000")
            .create_with_context(context.clone())
            .map_err(|e| KartError::infra("kafka-client", format!("cannot create the Kafka producer: {e}")))?;
        let metadata = wait_until_reachable(kafka, &context, |timeout| producer.client().fetch_metadata(None, timeout))?;
        check_topics(&metadata)?;
        self.printer.status("Fencing", &format!("older copies (transactional id {})", self.settings.transactional_id()));
        producer
            .init_transactions(kafka.connect_timeout.max(Duration::from_secs(30)))
            .map_err(|e| KartError::infra("kafka-transactions", format!("cannot start transactions at {}: {e}", kafka.bootstrap)))?;

        let mut failures = 0;
        loop {
            match self.session(&producer, &context, &metadata) {
                Ok(()) => return Ok(()),
                Err(SessionError::Fatal(error)) => return Err(error),
                Err(SessionError::Retry(why)) => {
                    failures += 1;
                    // Abort whatever is open; the next session starts from
                    // the last committed transaction.
                    let _ = producer.abort_transaction(Duration::from_secs(30));
                    if failures >= MAX_CONSECUTIVE_FAILURES {
                        return Err(KartError::infra(
                            "inventory-job-failed",
                            format!("the inventory job failed {failures} times in a row; last error: {why}"),
                        ));
                    }
                    let backoff = Duration::from_millis(250 * (1 << failures.min(4)));
                    self.printer.warn(&format!("transaction aborted ({why}); restoring state and retrying in {backoff:?}"));
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
        producer: &BaseProducer<KartClientContext>,
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

        let lag = Arc::new(Mutex::new(BTreeMap::new()));
        let consumer: BaseConsumer<JobClientContext> = kafka
            .client_config()
            .set("client.id", "kart-inventory")
            .set("group.id", &self.settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            // A fetch returns as soon as there is data; the cap bounds the
            // wait of a broker that does not wake long polls early.
            .set("fetch.wait.max.ms", "10")
            .set("statistics.interval.ms", "1000")
            .create_with_context(JobClientContext { inner: context.clone(), lag: lag.clone() })
            .map_err(|e| KartError::infra("kafka-client", format!("cannot create the Kafka consumer: {e}")))?;

        // Start positions (design §6): committed offsets; the beginning on a
        // group's first start; the current end with --fresh.
        let mut assignment = TopicPartitionList::new();
        for topic in INPUTS {
            for partition in partitions_of(metadata, topic) {
                assignment.add_partition(topic, partition);
            }
        }
        let mut pending_offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut positions = TopicPartitionList::new();
        if self.fresh {
            for element in assignment.elements() {
                let (_, high) = consumer
                    .fetch_watermarks(element.topic(), element.partition(), timeout)
                    .map_err(|e| SessionError::Retry(format!("cannot read the end of {}: {e}", element.topic())))?;
                positions
                    .add_partition_offset(element.topic(), element.partition(), Offset::Offset(high))
                    .map_err(|e| KartError::infra("kafka", e.to_string()))?;
                pending_offsets.insert((element.topic().to_string(), element.partition()), high);
            }
        } else {
            let committed = consumer
                .committed_offsets(assignment.clone(), timeout)
                .map_err(|e| SessionError::Retry(format!("cannot read the committed offsets of group {}: {e}", self.settings.group)))?;
            for element in committed.elements() {
                let offset = match element.offset() {
                    Offset::Offset(offset) if offset >= 0 => Offset::Offset(offset),
                    _ => Offset::Beginning,
                };
                positions
                    .add_partition_offset(element.topic(), element.partition(), offset)
                    .map_err(|e| KartError::infra("kafka", e.to_string()))?;
            }
        }
        consumer
            .assign(&positions)
            .map_err(|e| SessionError::Retry(format!("cannot assign the input partitions: {e}")))?;
        let group_metadata = consumer.group_metadata().ok_or_else(|| {
            KartError::infra("kafka-group", format!("no consumer group metadata for group {}", self.settings.group))
        })?;

        let mut session = Session {
            producer,
            processor,
            out: Outputs::default(),
            dirty_products: HashSet::new(),
            pending_offsets,
            transaction_started: None,
            counters: &mut self.counters,
            group_metadata,
            commit_timeout: timeout,
            restored_records: restored.records,
        };

        if restored.records == 0 || self.fresh {
            session.begin()?;
            for key in &restored.live_keys {
                session.send(STATE_CHANGELOG, key, None)?;
            }
            let catalog = self.settings.catalog.clone();
            self.printer.status(
                "Bootstrap",
                &format!("{} products from {}", catalog.len(), self.settings.catalog_source),
            );
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
                if session.transaction_started.is_some() {
                    session.commit()?;
                }
                publish(&self.status, &session, &lag);
                return Ok(());
            }
            let now = now_ms();
            if session.processor.next_deadline().is_some_and(|deadline| deadline <= now) {
                session.begin()?;
                session.processor.apply(Input::Tick, now, &mut session.out);
                session.emit(None)?;
            }
            // With a transaction open, only take what is already here:
            // an empty poll means the input is drained, so commit now.
            let wait = if session.transaction_started.is_some() {
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
                    if session.transaction_started.is_some() {
                        session.commit()?;
                    }
                }
                Some(Err(error)) => {
                    self.printer.warn(&format!("consumer: {error}"));
                }
                Some(Ok(message)) => {
                    session.begin()?;
                    session.handle(&message)?;
                    let age = session.transaction_started.map(|t| t.elapsed()).unwrap_or_default();
                    if age >= self.settings.commit_interval {
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
        status.transactions = counters.transactions;
        status.last_commit_at = counters.last_commit_at;
        if let Ok(lag) = lag.lock() {
            status.lag = lag.iter().filter(|(k, _)| INPUTS.iter().any(|t| k.starts_with(&format!("{t}/")))).map(|(k, v)| (k.clone(), *v)).collect();
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
    transactions: u64,
    last_commit_at: Option<i64>,
}

/// The input record an output came from, for dead-lettering it as it was.
#[derive(Clone, Copy)]
struct RawInput<'a> {
    source: SourcePosition<'a>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// One run of the loop between a restore and a stop or failure.
struct Session<'a> {
    producer: &'a BaseProducer<KartClientContext>,
    processor: Processor,
    out: Outputs,
    /// Products whose changelog record is written at commit time: one
    /// record per product per transaction, however many orders touched it.
    dirty_products: HashSet<String>,
    /// Next offset to read per input partition, committed with the
    /// transaction.
    pending_offsets: HashMap<(String, i32), i64>,
    transaction_started: Option<Instant>,
    counters: &'a mut Counters,
    group_metadata: rdkafka::consumer::ConsumerGroupMetadata,
    commit_timeout: Duration,
    restored_records: u64,
}

impl Session<'_> {
    fn begin(&mut self) -> SessionResult<()> {
        if self.transaction_started.is_none() {
            self.producer.begin_transaction().map_err(transaction_error)?;
            self.transaction_started = Some(Instant::now());
        }
        Ok(())
    }

    fn commit(&mut self) -> SessionResult<()> {
        let dirty: Vec<String> = self.dirty_products.drain().collect();
        for product_id in dirty {
            let (key, value) = self.processor.changelog_record(&StateChange::Product(product_id));
            self.send(STATE_CHANGELOG, &key, value.as_deref())?;
        }
        if !self.pending_offsets.is_empty() {
            let mut offsets = TopicPartitionList::new();
            for ((topic, partition), offset) in &self.pending_offsets {
                offsets
                    .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(|e| KartError::infra("kafka", e.to_string()))?;
            }
            self.producer
                .send_offsets_to_transaction(&offsets, &self.group_metadata, self.commit_timeout)
                .map_err(transaction_error)?;
        }
        self.producer.commit_transaction(self.commit_timeout).map_err(transaction_error)?;
        self.pending_offsets.clear();
        self.transaction_started = None;
        self.counters.last_commit_at = Some(now_ms());
        self.counters.transactions += 1;
        Ok(())
    }

    fn handle(&mut self, message: &BorrowedMessage<'_>) -> SessionResult<()> {
        let topic = message.topic();
        let (topic, is_order) = match topic {
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
                self.send_dlq(&entry, message.key())?;
            }
        }
        self.pending_offsets.insert((topic.to_string(), message.partition()), message.offset() + 1);
        Ok(())
    }

    fn send_dlq(&mut self, entry: &DlqEntry, key: Option<&[u8]>) -> SessionResult<()> {
        let value = to_json(entry)?;
        self.counters.dlq += 1;
        match key {
            Some(key) => self.send_bytes(INVENTORY_DLQ, Some(key), Some(&value)),
            None => self.send_bytes(INVENTORY_DLQ, None, Some(&value)),
        }
    }

    /// Turns what the processor produced into records, then clears it.
    fn emit(&mut self, raw: Option<RawInput<'_>>) -> SessionResult<()> {
        let out = std::mem::take(&mut self.out);
        for product in &out.products {
            self.send(PRODUCTS, &product.product_id, Some(&to_json(product)?))?;
        }
        for event in &out.events {
            let value = to_json(event)?;
            self.send(INVENTORY_EVENTS, &event.product_id, Some(&value))?;
            let envelope = to_json(&WebsocketEnvelope::inventory_update(event, event.timestamp))?;
            self.send(WEBSOCKET_FANOUT, &event.product_id, Some(&envelope))?;
            if event.event_type == EventType::OrderRejected {
                self.counters.rejected += 1;
            }
        }
        for alert in &out.alerts {
            self.send(INVENTORY_ALERTS, &alert.product_id, Some(&to_json(alert)?))?;
        }
        for outcome in &out.outcomes {
            match outcome.outcome {
                Outcome::Applied => self.counters.applied += 1,
                Outcome::Duplicate => self.counters.duplicates += 1,
                Outcome::Rejected | Outcome::Dlq => {}
            }
            self.send(ORDER_OUTCOMES, &outcome.order_id, Some(&to_json(outcome)?))?;
        }
        for (line, reason) in &out.unknown_product_orders {
            let Some(raw) = raw else { continue };
            let entry = DlqEntry::from_raw(raw.source, raw.key, raw.value, reason.clone(), line.timestamp.max(0));
            let key = raw.key.unwrap_or(line.product_id.as_bytes());
            self.send_dlq(&entry, Some(key))?;
        }
        for change in &out.changes {
            match change {
                StateChange::Product(product_id) => {
                    self.dirty_products.insert(product_id.clone());
                }
                other => {
                    let (key, value) = self.processor.changelog_record(other);
                    self.send(STATE_CHANGELOG, &key, value.as_deref())?;
                }
            }
        }
        self.out = out;
        self.out.clear();
        Ok(())
    }

    fn send(&mut self, topic: &'static str, key: &str, value: Option<&[u8]>) -> SessionResult<()> {
        self.send_bytes(topic, Some(key.as_bytes()), value)
    }

    fn send_bytes(&mut self, topic: &'static str, key: Option<&[u8]>, value: Option<&[u8]>) -> SessionResult<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The local queue is full: let deliveries drain it.
                    self.producer.poll(Duration::from_millis(10));
                    record = returned;
                }
                Err((error, _)) => return Err(SessionError::Retry(format!("cannot produce to {topic}: {error}"))),
            }
        }
        *self.counters.records_out.entry(topic).or_default() += 1;
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> SessionResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| SessionError::Fatal(KartError::infra("internal", format!("cannot encode JSON: {e}"))))
}

fn transaction_error(error: KafkaError) -> SessionError {
    if let KafkaError::Transaction(rd) = &error {
        if rd.is_fatal() {
            let fenced = matches!(rd.code(), RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch);
            return SessionError::Fatal(if fenced {
                KartError::infra("inventory-job-fenced", "another copy of the inventory job with the same KAFKA_GROUP_ID took over")
                    .with_hint("two inventory jobs on the same group cannot run at once; `kart job status inventory` shows the running one")
            } else {
                KartError::infra("kafka-transactions", format!("fatal transaction error: {rd}"))
            });
        }
    }
    SessionError::Retry(error.to_string())
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

struct Restored {
    records: u64,
    /// Keys with a live value, for `--fresh` to tombstone.
    live_keys: Vec<String>,
}

/// Reads the whole changelog (read_committed) into `processor`, or with
/// `fresh` only collects its live keys. Reading every record rather than
/// relying on compaction gives the same state either way.
fn restore(
    kafka: &KafkaSettings,
    context: &KartClientContext,
    metadata: &Metadata,
    processor: &mut Processor,
    fresh: bool,
    timeout: Duration,
) -> SessionResult<Restored> {
    let consumer: BaseConsumer<KartClientContext> = kafka
        .client_config()
        .set("client.id", "kart-inventory-restore")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create_with_context(context.clone())
        .map_err(|e| KartError::infra("kafka-client", format!("cannot create the changelog reader: {e}")))?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions_of(metadata, STATE_CHANGELOG) {
        let (low, high) = consumer
            .fetch_watermarks(STATE_CHANGELOG, partition, timeout)
            .map_err(|e| SessionError::Retry(format!("cannot read the end of {STATE_CHANGELOG}: {e}")))?;
        if high > low {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(STATE_CHANGELOG, partition, Offset::Beginning)
                .map_err(|e| KartError::infra("kafka", e.to_string()))?;
        }
    }
    let mut restored = Restored { records: 0, live_keys: Vec::new() };
    if ends.is_empty() {
        return Ok(restored);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| SessionError::Retry(format!("cannot assign {STATE_CHANGELOG}: {e}")))?;
    let mut live: HashSet<String> = HashSet::new();
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                restored.records += 1;
                let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                if fresh {
                    if message.payload().is_some() {
                        live.insert(key);
                    } else {
                        live.remove(&key);
                    }
                } else if let Err(why) = processor.restore_record(&key, message.payload()) {
                    return Err(SessionError::Fatal(
                        KartError::infra(
                            "changelog-corrupt",
                            format!("{STATE_CHANGELOG} partition {} offset {}: {why}", message.partition(), message.offset()),
                        )
                        .with_hint("start from empty state with `kart job deploy inventory --fresh`"),
                    ));
                }
                if message.offset() + 1 >= ends.get(&message.partition()).copied().unwrap_or(i64::MAX) {
                    ends.remove(&message.partition());
                }
            }
            Some(Err(error)) => return Err(SessionError::Retry(format!("cannot read {STATE_CHANGELOG}: {error}"))),
            None => {
                // Transaction markers take offsets without being delivered:
                // the position, not the last record, tells where we are.
                if let Ok(position) = consumer.position() {
                    for element in position.elements() {
                        if let Offset::Offset(offset) = element.offset() {
                            if offset >= ends.get(&element.partition()).copied().unwrap_or(i64::MAX) {
                                ends.remove(&element.partition());
                            }
                        }
                    }
                }
                if last_progress.elapsed() > timeout {
                    return Err(SessionError::Retry(format!(
                        "reading {STATE_CHANGELOG} made no progress for {}",
                        humantime::format_duration(timeout)
                    )));
                }
            }
        }
    }
    restored.live_keys = live.into_iter().collect();
    restored.live_keys.sort();
    Ok(restored)
}
