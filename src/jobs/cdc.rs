//! The CDC job (design §7): every insert into `order_items` becomes one
//! `order-events` record in the workshop's CDC format
//! (`{"quantity","productId","orderId","timestamp"}`, workshop spec §3.2),
//! keyed by productId and stamped with the transaction's commit time.
//!
//! It reads logical replication (`pgoutput`, publication `workshop_cdc`)
//! from slot `POSTGRES_REPLICATION_SLOT` over plain SQL — the design's
//! fallback: poll `pg_logical_slot_peek_binary_changes` (which returns whole
//! transactions from the slot's confirmed position), publish the order
//! lines, wait for Kafka's acknowledgement (idempotent producer, acks=all),
//! then `pg_replication_slot_advance` to the end of the last published
//! transaction. A crash between publishing and advancing replays those
//! transactions (the inventory processor de-duplicates them); nothing is
//! confirmed before Kafka has it, so no order is lost. When nothing is
//! pending the slot is advanced to the server's flushed WAL position, so a
//! running job never holds WAL back.
//!
//! The SQL interface holds the slot only while a call runs, so the slot
//! looks inactive between polls; one copy per slot is guaranteed by a
//! session advisory lock derived from the slot name, held for the job's
//! lifetime.

pub mod pgoutput;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::PgLsn;
use tokio_postgres::Client;

use crate::config::{Mode, Settings};
use crate::db::schema::PUBLICATION;
use crate::db::{db_message, PgSettings};
use crate::exit::{KartError, Result};
use crate::inventory::model::OrderLine;
use crate::kafka::{wait_until_reachable, KafkaSettings, KartClientContext};
use crate::printer::Printer;
use crate::supervise::now_ms;

use super::status::{JobState, JobStatus};

pub const JOB_NAME: &str = "order-cdc";

/// The topic the job writes.
pub const ORDER_EVENTS: &str = "order-events";
/// The table whose inserts it captures (the records-in key).
pub const ORDER_ITEMS: &str = "order_items";
/// The workshop's default slot name: refused in remote mode (design §3).
pub const WORKSHOP_SLOT: &str = "flink_order_cdc_slot";

/// Poll interval when the slot had nothing new (the design allows ≤ 50 ms).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Changes per peek: bounds memory; the server still returns whole transactions.
const MAX_CHANGES_PER_PEEK: i32 = 10_000;
/// How often an idle slot is moved to the server's flushed WAL position.
const IDLE_ADVANCE_EVERY: Duration = Duration::from_secs(1);

/// Everything the job runs with, resolved once from the settings.
#[derive(Debug, Clone)]
pub struct CdcSettings {
    pub kafka: KafkaSettings,
    pub pg: PgSettings,
    pub slot: String,
    pub publication: String,
    pub topic: String,
    pub poll_interval: Duration,
}

impl CdcSettings {
    pub fn from_settings(settings: &Settings, connect_timeout: Duration) -> Result<Self> {
        let kafka = KafkaSettings::from_settings(settings, connect_timeout)?;
        let pg = PgSettings::from_settings(settings, connect_timeout)?;
        let slot = settings.require("POSTGRES_REPLICATION_SLOT")?.trim().to_string();
        if let Err(why) = valid_slot_name(&slot) {
            return Err(settings.bad_value("POSTGRES_REPLICATION_SLOT", &why));
        }
        check_slot_name(settings.mode, &slot, &pg.database)?;
        Ok(CdcSettings {
            kafka,
            pg,
            slot,
            publication: PUBLICATION.to_string(),
            topic: ORDER_EVENTS.to_string(),
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// A fingerprint of what the job's behaviour depends on (never a
    /// password), so a deploy can say that a running copy is out of date.
    pub fn config_hash(&self) -> String {
        let text = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{:?}",
            self.kafka.bootstrap,
            self.kafka.user,
            self.kafka.security_protocol,
            self.pg.endpoint(),
            self.pg.database,
            self.pg.user,
            self.pg.ssl_mode,
            self.slot,
            self.publication,
            self.topic,
            self.poll_interval
        );
        Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// PostgreSQL's rule for slot names: 1–63 of `a-z`, `0-9`, `_`.
pub fn valid_slot_name(slot: &str) -> std::result::Result<(), String> {
    if slot.is_empty() || slot.len() > 63 {
        return Err("a replication slot name has 1 to 63 characters".into());
    }
    if !slot.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err("a replication slot name may contain only lower-case letters, digits and underscores".into());
    }
    Ok(())
}

/// The slot name suggested for a student on a shared database.
pub fn suggested_slot_name(database: &str) -> String {
    let db: String = database
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    let name = format!("kart_{db}_cdc");
    if name.len() <= 63 {
        name
    } else {
        format!("kart_{}_cdc", &db[..63 - "kart__cdc".len()])
    }
}

/// In remote mode several students share one Postgres: the workshop's
/// default slot name would make their CDC jobs steal each other's changes
/// (design §3).
pub fn check_slot_name(mode: Mode, slot: &str, database: &str) -> Result<()> {
    if mode == Mode::Remote && slot == WORKSHOP_SLOT {
        let suggestion = suggested_slot_name(database);
        return Err(KartError::user(
            "shared-slot-name",
            format!("POSTGRES_REPLICATION_SLOT={WORKSHOP_SLOT} is the workshop's default; on a shared remote database every student's CDC job would read the same slot"),
        )
        .with_hint(format!("give yours its own name, e.g. `export POSTGRES_REPLICATION_SLOT=\"{suggestion}\"` in .env.remote")));
    }
    Ok(())
}

/// `wal_level` must be `logical` for a logical replication slot.
pub fn check_wal_level(wal_level: &str, endpoint: &str) -> Result<()> {
    if wal_level.trim() == "logical" {
        return Ok(());
    }
    Err(KartError::user(
        "wal-level",
        format!("PostgreSQL at {endpoint} runs with wal_level={wal_level}; the CDC job needs wal_level=logical"),
    )
    .with_hint(
        "run `ALTER SYSTEM SET wal_level = logical;` as a superuser and restart PostgreSQL (kart's own Postgres already runs with it); \
         on a managed service enable logical replication in its parameters (e.g. rds.logical_replication = 1)",
    ))
}

use crate::db::cdc_slot_lock_key as lock_key;

use super::session::{SessionError, SessionResult, MAX_CONSECUTIVE_FAILURES, STATUS_EVERY};

#[derive(Default)]
struct Counters {
    records_in: u64,
    records_out: u64,
    /// Order lines read but not yet confirmed.
    pending: i64,
    batches: u64,
    last_commit_at: Option<i64>,
}

/// Runs the CDC job until `stop` is set.
pub struct CdcDriver {
    settings: CdcSettings,
    printer: Printer,
    status: Arc<Mutex<JobStatus>>,
    stop: Arc<AtomicBool>,
    counters: Counters,
}

impl CdcDriver {
    pub fn new(settings: CdcSettings, printer: Printer, status: Arc<Mutex<JobStatus>>, stop: Arc<AtomicBool>) -> Self {
        CdcDriver { settings, printer, status, stop, counters: Counters::default() }
    }

    /// Runs until `stop` is set (graceful: the poll in flight is published
    /// and confirmed first), or fails.
    pub async fn run(mut self) -> Result<()> {
        let result = self.run_sessions().await;
        self.publish_status();
        if let Ok(mut status) = self.status.lock() {
            match &result {
                Ok(()) => status.state = JobState::Stopped,
                Err(error) => {
                    status.state = JobState::Failed;
                    status.error = Some(error.message.clone());
                }
            }
        }
        result
    }

    async fn run_sessions(&mut self) -> Result<()> {
        let context = KartClientContext::new(self.printer.clone());
        let producer = self.producer(&context)?;
        let mut failures = 0;
        let mut verified_kafka = false;
        let mut sessions = 0u32;
        loop {
            sessions += 1;
            match self.session(&producer, &context, &mut verified_kafka, &mut failures, sessions > 1).await {
                Ok(()) => return Ok(()),
                Err(SessionError::Fatal(error)) => return Err(error),
                Err(SessionError::Retry(why)) => {
                    failures += 1;
                    if failures >= MAX_CONSECUTIVE_FAILURES {
                        return Err(KartError::infra(
                            "cdc-job-failed",
                            format!("the CDC job failed {failures} times in a row; last error: {why}"),
                        )
                        .with_hint("check the database and the broker (`kart platform status`); nothing unconfirmed was lost: a restart reads it again"));
                    }
                    let backoff = Duration::from_millis(250 * (1 << failures.min(4)));
                    self.printer.warn(&format!("{why}; retrying in {backoff:?} (unconfirmed changes are read again)"));
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn producer(&self, context: &KartClientContext) -> Result<FutureProducer<KartClientContext>> {
        let delivery_timeout = self.settings.kafka.connect_timeout.max(Duration::from_secs(10));
        self.settings
            .kafka
            .client_config()
            .set("client.id", "kart-order-cdc")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", delivery_timeout.as_millis().min(i32::MAX as u128).to_string())
            .create_with_context(context.clone())
            .map_err(|e| KartError::user("kafka-config", format!("invalid Kafka client configuration: {e}")))
    }

    /// The broker answers and the topic exists.
    async fn check_kafka(&self, producer: &FutureProducer<KartClientContext>, context: &KartClientContext) -> Result<()> {
        let probe = producer.clone();
        let kafka = self.settings.kafka.clone();
        let context = context.clone();
        let topic = self.settings.topic.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            wait_until_reachable(&kafka, &context, |slice| probe.client().fetch_metadata(Some(&topic), slice))
        })
        .await
        .map_err(|e| KartError::infra("internal", format!("metadata task failed: {e}")))??;
        let exists = metadata.topics().iter().any(|t| t.name() == self.settings.topic && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            return Err(KartError::user("topics-missing", format!("the CDC job writes to {}, which does not exist on {}", self.settings.topic, self.settings.kafka.bootstrap))
                .with_hint("create it with `kart topics create`"));
        }
        Ok(())
    }

    async fn session(
        &mut self,
        producer: &FutureProducer<KartClientContext>,
        context: &KartClientContext,
        verified_kafka: &mut bool,
        failures: &mut u32,
        is_retry: bool,
    ) -> SessionResult<()> {
        let pg = &self.settings.pg;
        let client = match pg.connect().await {
            Ok(client) => client,
            // Unreachable databases are retried; a wrong password or a
            // missing database are not.
            Err(e) if e.code == "postgres-unreachable" => return Err(SessionError::Retry(e.message)),
            Err(e) => return Err(SessionError::Fatal(e)),
        };
        let (server, mut confirmed) = self.prepare(&client, is_retry).await?;
        if !*verified_kafka {
            self.check_kafka(producer, context).await?;
            *verified_kafka = true;
        }
        set_state(&self.status, JobState::Running);
        self.printer.status(
            "Running",
            &format!(
                "{JOB_NAME}: slot {} on {server} (primary), publication {} → {}",
                self.settings.slot, self.settings.publication, self.settings.topic
            ),
        );

        let mut decoder = pgoutput::Decoder::default();
        let mut last_status = Instant::now() - STATUS_EVERY;
        let mut last_idle_advance = Instant::now() - IDLE_ADVANCE_EVERY;
        loop {
            if last_status.elapsed() >= STATUS_EVERY {
                last_status = Instant::now();
                self.publish_status();
            }
            if self.stop.load(Ordering::Relaxed) {
                set_state(&self.status, JobState::Stopping);
                return Ok(());
            }
            let flushed: PgLsn = client
                .query_one("SELECT pg_current_wal_flush_lsn()", &[])
                .await
                .map_err(|e| self.pg_error("cannot read the WAL position", &e))?
                .get(0);
            let rows = client
                .query(
                    "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, 'proto_version', '1', 'publication_names', $3)
                         WITH ORDINALITY AS c(lsn, xid, data, n)
                     ORDER BY n",
                    &[&self.settings.slot, &MAX_CHANGES_PER_PEEK, &self.settings.publication],
                )
                .await
                .map_err(|e| self.pg_error("cannot read the replication slot", &e))?;
            decoder.start_session();
            let mut lines: Vec<OrderLine> = Vec::new();
            let mut last_end: Option<u64> = None;
            for row in &rows {
                let data: &[u8] = row.get(0);
                let message = pgoutput::parse(data).map_err(|e| decode_error(&self.settings.slot, &e))?;
                if let Some(transaction) = decoder.feed(message).map_err(|e| decode_error(&self.settings.slot, &e))? {
                    last_end = Some(transaction.end_lsn);
                    lines.extend(transaction.lines);
                }
            }
            let target = if !lines.is_empty() {
                self.counters.records_in += lines.len() as u64;
                self.counters.pending = lines.len() as i64;
                self.publish(producer, context, &lines).await?;
                self.counters.records_out += lines.len() as u64;
                self.counters.pending = 0;
                last_end
            } else if rows.is_empty() {
                // Nothing of the publication up to the flushed position:
                // let the server recycle that WAL (at most once a second).
                (last_idle_advance.elapsed() >= IDLE_ADVANCE_EVERY).then_some(u64::from(flushed))
            } else {
                // Transactions without order lines (other tables).
                last_end
            };
            if let Some(target) = target.filter(|t| *t > confirmed) {
                let advanced: Option<PgLsn> = client
                    .query_one("SELECT end_lsn FROM pg_replication_slot_advance($1, $2)", &[&self.settings.slot, &PgLsn::from(target)])
                    .await
                    .map_err(|e| self.pg_error("cannot advance the replication slot", &e))?
                    .get(0);
                confirmed = advanced.map(u64::from).unwrap_or(target).max(confirmed);
                if !lines.is_empty() || !rows.is_empty() {
                    self.counters.batches += 1;
                }
                self.counters.last_commit_at = Some(now_ms());
                if rows.is_empty() {
                    last_idle_advance = Instant::now();
                }
            }
            // A step went through end to end.
            *failures = 0;
            // Caught up (or nothing complete to confirm): wait for more.
            if rows.is_empty() || last_end.is_none() {
                tokio::time::sleep(self.settings.poll_interval).await;
            }
        }
    }

    /// Checks the server, the publication and the slot, creating the slot
    /// if absent, and takes the slot's lock. Returns the server's address
    /// and the slot's confirmed position.
    ///
    /// A retry may find the lock still held by this job's own previous
    /// session, whose server process is just exiting: it waits a moment.
    async fn prepare(&self, client: &Client, is_retry: bool) -> SessionResult<(String, u64)> {
        let pg = &self.settings.pg;
        let slot = &self.settings.slot;
        let row = client
            .query_one(
                "SELECT current_setting('wal_level'),
                        coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'local socket'),
                        EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
                        EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = 'public' AND tablename = $2)",
                &[&self.settings.publication, &ORDER_ITEMS],
            )
            .await
            .map_err(|e| self.pg_error("cannot read the server's settings", &e))?;
        let wal_level: String = row.get(0);
        let server: String = row.get(1);
        check_wal_level(&wal_level, &pg.endpoint())?;
        let (publication_exists, covers_order_items): (bool, bool) = (row.get(2), row.get(3));
        if !publication_exists {
            return Err(KartError::user(
                "publication-missing",
                format!("publication {} does not exist in database {} on {}", self.settings.publication, pg.database, pg.endpoint()),
            )
            .with_hint("create the schema and publication with `kart db init`")
            .into());
        }
        if !covers_order_items {
            return Err(KartError::user(
                "publication-incomplete",
                format!("publication {} does not include table public.{ORDER_ITEMS}", self.settings.publication),
            )
            .with_hint(format!(
                "run `ALTER PUBLICATION {} ADD TABLE public.{ORDER_ITEMS};`, or `kart db teardown` then `kart db init`",
                self.settings.publication
            ))
            .into());
        }

        let key = lock_key(slot);
        // The session of a copy that was just killed holds the lock until
        // Postgres notices its client is gone (milliseconds on loopback,
        // longer across a network): a restart waits that out before
        // calling the slot taken.
        let lock_deadline = Instant::now() + if is_retry { Duration::from_secs(2) } else { Duration::from_secs(3) };
        let locked = loop {
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(|e| self.pg_error("cannot lock the replication slot", &e))?
                .get(0);
            if locked || Instant::now() >= lock_deadline {
                break locked;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !locked {
            let holder = client
                .query_opt(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted
                        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        AND classid::int8 = $1 AND objid::int8 = $2 LIMIT 1",
                    &[&((key as u64 >> 32) as i64), &((key as u64 & 0xffff_ffff) as i64)],
                )
                .await
                .ok()
                .flatten()
                .map(|r| r.get::<_, i32>(0));
            return Err(slot_in_use(slot, holder, "another kart CDC job").into());
        }

        let existing = client
            .query_opt(
                "SELECT plugin::text, database::text, active, active_pid, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[slot],
            )
            .await
            .map_err(|e| self.pg_error("cannot read the replication slots", &e))?;
        let confirmed = match existing {
            Some(row) => {
                let plugin: Option<String> = row.get(0);
                let database: Option<String> = row.get(1);
                let active: bool = row.get(2);
                let active_pid: Option<i32> = row.get(3);
                let confirmed: Option<PgLsn> = row.get(4);
                if plugin.as_deref() != Some("pgoutput") {
                    return Err(KartError::user(
                        "slot-wrong-plugin",
                        format!("replication slot {slot} uses {}, not pgoutput", plugin.as_deref().unwrap_or("physical replication")),
                    )
                    .with_hint("drop it with `kart db clean-cdc` (kart creates it again), or choose another POSTGRES_REPLICATION_SLOT")
                    .into());
                }
                if database.as_deref() != Some(pg.database.as_str()) {
                    return Err(KartError::user(
                        "slot-other-database",
                        format!("replication slot {slot} belongs to database {}, not {}", database.unwrap_or_default(), pg.database),
                    )
                    .with_hint("choose another POSTGRES_REPLICATION_SLOT for this database")
                    .into());
                }
                if active {
                    return Err(slot_in_use(slot, active_pid, "another process").into());
                }
                confirmed.map(u64::from).unwrap_or(0)
            }
            None => {
                match client.query_one("SELECT lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')", &[slot]).await {
                    Ok(row) => {
                        self.printer.status("Created", &format!("replication slot {slot} (pgoutput)"));
                        row.get::<_, PgLsn>(0).into()
                    }
                    Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {
                        return Err(SessionError::Retry(format!("replication slot {slot} was created meanwhile")))
                    }
                    Err(e) => {
                        return Err(KartError::user("slot-create-failed", format!("cannot create replication slot {slot}: {}", db_message(&e)))
                            .with_hint("the user needs the REPLICATION attribute (or rds_replication on RDS), and max_replication_slots must leave room")
                            .into())
                    }
                }
            }
        };
        Ok((server, confirmed))
    }

    /// Publishes every line and waits until Kafka acknowledged all of them.
    async fn publish(&self, producer: &FutureProducer<KartClientContext>, context: &KartClientContext, lines: &[OrderLine]) -> SessionResult<()> {
        let mut pending = Vec::with_capacity(lines.len());
        for line in lines {
            let value = serde_json::to_vec(line).map_err(|e| KartError::infra("internal", format!("cannot encode an order line: {e}")))?;
            let mut record = FutureRecord::to(&self.settings.topic).key(&line.product_id).payload(&value);
            let delivery = loop {
                match producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(SessionError::Retry(format!("cannot produce to {}: {error}", self.settings.topic))),
                }
            };
            pending.push(delivery);
        }
        let mut failed = 0;
        let mut first: Option<String> = None;
        for outcome in futures::future::join_all(pending).await {
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    failed += 1;
                    first.get_or_insert_with(|| error.to_string());
                }
                Err(_) => {
                    failed += 1;
                    first.get_or_insert_with(|| "the producer went away".into());
                }
            }
        }
        if failed == 0 {
            return Ok(());
        }
        if context.auth_failed() {
            return Err(SessionError::Fatal(self.settings.kafka.auth_failed()));
        }
        Err(SessionError::Retry(format!(
            "{failed} of {} order lines not acknowledged by {} (first: {}); the slot was not advanced",
            lines.len(),
            self.settings.kafka.bootstrap,
            first.unwrap_or_default()
        )))
    }

    /// Errors while the job runs: a slot taken or dropped and a publication
    /// gone are fatal; anything else (a lost connection) is retried.
    fn pg_error(&self, what: &str, error: &tokio_postgres::Error) -> SessionError {
        let slot = &self.settings.slot;
        match error.code() {
            Some(code) if *code == SqlState::OBJECT_IN_USE => {
                SessionError::Fatal(slot_in_use(slot, None, "another process").with_hint(format!(
                    "stop the other reader ({}), or give this job its own POSTGRES_REPLICATION_SLOT",
                    db_message(error)
                )))
            }
            Some(code) if *code == SqlState::UNDEFINED_OBJECT => SessionError::Fatal(
                KartError::user("cdc-object-missing", format!("{what}: {}", db_message(error)))
                    .with_hint("the slot or publication was dropped while the job ran: `kart db init` restores the publication; redeploy the job to recreate the slot (orders in between are not captured)"),
            ),
            // Connection exceptions and operator intervention (a restart,
            // a failover): reconnect.
            Some(code) if code.code().starts_with("08") || code.code().starts_with("57") => {
                SessionError::Retry(format!("{what}: {}", db_message(error)))
            }
            Some(_) => SessionError::Fatal(KartError::infra("postgres-error", format!("{what}: {}", db_message(error)))),
            None => SessionError::Retry(format!("{what}: {}", self.settings.pg.classify(&self.settings.pg.database, error).message)),
        }
    }

    fn publish_status(&self) {
        let Ok(mut status) = self.status.lock() else { return };
        let counters = &self.counters;
        status.records_in = BTreeMap::from([(ORDER_ITEMS.to_string(), counters.records_in)]);
        status.records_out = BTreeMap::from([(self.settings.topic.clone(), counters.records_out)]);
        status.lag = BTreeMap::from([(ORDER_ITEMS.to_string(), counters.pending)]);
        status.batches = counters.batches;
        status.last_commit_at = counters.last_commit_at;
        status.updated_at = now_ms();
    }
}

fn slot_in_use(slot: &str, pid: Option<i32>, who: &str) -> KartError {
    let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    KartError::user("slot-in-use", format!("replication slot {slot} is already in use by {who}{pid}"))
        .with_hint(format!(
            "only one reader per slot: stop the other one (`kart job stop {JOB_NAME}`, or the workshop's Flink CDC job), or set POSTGRES_REPLICATION_SLOT to a slot of this job's own"
        ))
}

fn decode_error(slot: &str, error: &pgoutput::ParseError) -> SessionError {
    SessionError::Fatal(KartError::infra("cdc-decode", format!("cannot decode a change from replication slot {slot}: {error}")))
}

fn set_state(status: &Mutex<JobStatus>, state: JobState) {
    if let Ok(mut status) = status.lock() {
        status.state = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdc_remote_mode_refuses_the_workshops_slot_name() {
        let error = check_slot_name(Mode::Remote, WORKSHOP_SLOT, "student-7").unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(error.hint.as_deref().unwrap().contains("kart_student_7_cdc"), "{error:?}");
        check_slot_name(Mode::Local, WORKSHOP_SLOT, "ecommerce").unwrap();
        check_slot_name(Mode::Remote, "kart_ecommerce_cdc", "ecommerce").unwrap();
        assert_eq!(suggested_slot_name("Shop"), "kart_shop_cdc");
        assert!(valid_slot_name(&suggested_slot_name(&"x".repeat(100))).is_ok());
    }

    #[test]
    fn cdc_slot_names_follow_postgres_rules() {
        assert!(valid_slot_name("flink_order_cdc_slot").is_ok());
        assert!(valid_slot_name("Bad-Name").is_err());
        assert!(valid_slot_name("").is_err());
        assert!(valid_slot_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn cdc_wal_level_error_says_how_to_fix_it() {
        check_wal_level("logical", "db:5432").unwrap();
        let error = check_wal_level("replica", "db:5432").unwrap_err();
        assert_eq!(error.code, "wal-level");
        assert_eq!(error.exit_code(), 1);
        assert!(error.message.contains("wal_level=replica") && error.message.contains("db:5432"), "{}", error.message);
        assert!(error.hint.as_deref().unwrap().contains("ALTER SYSTEM SET wal_level = logical"));
    }

    #[test]
    fn cdc_slot_in_use_error_names_the_holder() {
        let error = slot_in_use("s1", Some(42), "another kart CDC job");
        assert_eq!((error.code, error.exit_code()), ("slot-in-use", 1));
        assert!(error.message.contains("s1") && error.message.contains("pid 42"), "{}", error.message);
        assert_ne!(lock_key("a"), lock_key("b"));
    }
}
