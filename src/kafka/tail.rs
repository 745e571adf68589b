//! `kart tail`: follow one or more topics and print their records.
//!
//! The pieces, each testable on its own:
//!
//! - [`Position`]: where reading starts (`end`, `beginning`, `-N`, `@TIME`,
//!   `-DURATION`), parsed from the flag;
//! - [`TailRecord`]: the record shape of design §2 (`--format json`, and what
//!   jq filters see): the value as parsed JSON, else UTF-8 text, else base64,
//!   with its encoding named;
//! - [`JqFilter`]: `--filter` / `--until`, evaluated by jaq, so Kpow's kJQ
//!   filters (`.value.productId == "PROD_0001"`) work unchanged;
//! - [`open_streams`]: one reading thread per topic that turns positions into
//!   exactly the records asked for, shared with `kart watch`;
//! - [`run`]: the loop that filters, prints, and stops on `--until`, `--max`,
//!   `--until-end`, `--timeout` or Ctrl-C.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::reader::{partitions_of, serve_errors, Record};
use super::{wait_until_reachable, KafkaSettings, KartClientContext};
use crate::exit::{KartError, Result};
use crate::inventory::ValueEncoding;
use crate::printer::{Printer, Tone};

// ---- positions ---------------------------------------------------------------

/// Where reading starts in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// After the last record present at the start: only new records.
    End,
    /// The first record kept by the broker.
    Beginning,
    /// The last N records of each partition.
    Last(u64),
    /// The first record stamped at or after this time (epoch ms).
    Since(i64),
}

impl Position {
    /// Parses `--from`: `end`, `beginning`, `-N` (a count), `@RFC3339`
    /// (`@2026-11-21T10:00:00Z`) or `-DURATION` (`-5m`, relative to `now_ms`).
    pub fn parse(text: &str, now_ms: i64) -> std::result::Result<Position, String> {
        let text = text.trim();
        match text {
            "end" | "latest" | "newest" => return Ok(Position::End),
            "beginning" | "start" | "earliest" | "oldest" => return Ok(Position::Beginning),
            _ => {}
        }
        if let Some(time) = text.strip_prefix('@') {
            let at = humantime::parse_rfc3339_weak(time.trim())
                .map_err(|e| format!("{time:?} is not a time like 2026-11-21T10:00:00Z ({e})"))?;
            return Ok(Position::Since(epoch_ms(at)));
        }
        if let Some(rest) = text.strip_prefix('-') {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return rest
                    .parse()
                    .map(Position::Last)
                    .map_err(|e| format!("{rest:?}: {e}"));
            }
            let ago = humantime::parse_duration(rest).map_err(|e| {
                format!("{text:?} is neither -N (a count) nor -DURATION like -5m ({e})")
            })?;
            let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
            // No record is older than 1970: before it is the beginning.
            return Ok(Position::Since(now_ms.saturating_sub(ago).max(0)));
        }
        Err(format!(
            "{text:?}: expected end, beginning, -N, @2026-11-21T10:00:00Z or -5m"
        ))
    }

    /// For status lines: "from the end", "from the last 5 of each partition".
    pub fn describe(&self) -> String {
        match self {
            Position::End => "from the end".into(),
            Position::Beginning => "from the beginning".into(),
            Position::Last(n) => format!("from the last {n} of each partition"),
            Position::Since(ms) => format!("from {}", format_time(*ms)),
        }
    }
}

fn epoch_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

pub fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

/// RFC 3339 with milliseconds, UTC.
pub fn format_time(ms: i64) -> String {
    // humantime formats the years 1970 to 9999 only, and panics outside
    // them; a producer can stamp anything (microseconds by mistake), and
    // the number itself is the honest answer then.
    const LAST_MS: i64 = 253_402_300_799_999;
    if !(0..=LAST_MS).contains(&ms) {
        return format!("{ms}ms");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// The `HH:MM:SS.mmmZ` of a timestamp, or all of [`format_time`]'s answer
/// when that is not a date.
pub fn time_of_day(ms: i64) -> String {
    let text = format_time(ms);
    match text.get(10..11) {
        Some("T") => text[11..].to_string(),
        _ => text,
    }
}

// ---- the record shape ---------------------------------------------------------

/// A key or value as it appears in the record shape: JSON when the bytes
/// are JSON, else a string.
#[derive(Debug)]
pub enum Field<'a> {
    /// The bytes were JSON and are embedded as they are (no reparse, no
    /// reformatting: the fast path for `tail -o json`).
    Json(&'a RawValue),
    /// JSON that had to be rewritten compactly (it spanned lines, which
    /// would break one-record-per-line output).
    CompactJson(Box<RawValue>),
    /// UTF-8 text that is not JSON.
    Text(&'a str),
    /// Neither: standard base64 of the bytes.
    Base64(String),
    /// No bytes at all (a null key, a tombstone).
    Null,
}

impl Field<'_> {
    pub fn encoding(&self) -> ValueEncoding {
        match self {
            Field::Json(_) | Field::CompactJson(_) => ValueEncoding::Json,
            Field::Text(_) => ValueEncoding::Text,
            Field::Base64(_) => ValueEncoding::Base64,
            Field::Null => ValueEncoding::Null,
        }
    }

    /// The JSON text of a JSON field.
    pub fn json_text(&self) -> Option<&str> {
        match self {
            Field::Json(raw) => Some(raw.get()),
            Field::CompactJson(raw) => Some(raw.get()),
            _ => None,
        }
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Field::Json(raw) => raw.serialize(serializer),
            Field::CompactJson(raw) => raw.serialize(serializer),
            Field::Text(text) => serializer.serialize_str(text),
            Field::Base64(text) => serializer.serialize_str(text),
            Field::Null => serializer.serialize_none(),
        }
    }
}

/// Decodes bytes for the record shape: JSON if they parse as one JSON
/// value, else UTF-8 text, else base64. Never fails, whatever the bytes.
pub fn decode(bytes: Option<&[u8]>) -> Field<'_> {
    let Some(bytes) = bytes else {
        return Field::Null;
    };
    if let Ok(raw) = serde_json::from_slice::<&RawValue>(bytes) {
        let text = raw.get();
        if !text.contains(['\n', '\r']) {
            return Field::Json(raw);
        }
        // Pretty-printed JSON: rewrite compactly. A value that validated as
        // raw JSON but does not parse into a tree (a number out of f64's
        // range) is still JSON: keep it, minus its line breaks, which can
        // only be insignificant whitespace outside strings.
        let compact = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| serde_json::value::to_raw_value(&v).ok())
            .or_else(|| RawValue::from_string(text.replace(['\n', '\r'], " ")).ok());
        if let Some(compact) = compact {
            return Field::CompactJson(compact);
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Field::Text(text),
        Err(_) => Field::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

/// A header value: UTF-8 text as a string, anything else as `{"base64": …}`
/// so that no bytes are lost and a string always means text.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum HeaderValue<'a> {
    Text(&'a str),
    Binary { base64: String },
    Null,
}

/// One record as `--format json` prints it and as jq filters see it
/// (design §2, "Tail records"). Field names and order are the documented
/// schema; a snapshot test pins them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TailRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Epoch milliseconds; `null` when the broker gave none.
    pub timestamp: Option<i64>,
    pub key: Field<'a>,
    pub key_encoding: ValueEncoding,
    pub value: Field<'a>,
    pub value_encoding: ValueEncoding,
    /// `[name, value]` pairs in record order (names may repeat).
    pub headers: Vec<(&'a str, HeaderValue<'a>)>,
}

impl<'a> TailRecord<'a> {
    pub fn new(record: &'a Record) -> Self {
        let key = decode(record.key.as_deref());
        let value = decode(record.value.as_deref());
        TailRecord {
            topic: &record.topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key_encoding: key.encoding(),
            key,
            value_encoding: value.encoding(),
            value,
            headers: record
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = match value.as_deref() {
                        None => HeaderValue::Null,
                        Some(bytes) => match std::str::from_utf8(bytes) {
                            Ok(text) => HeaderValue::Text(text),
                            Err(_) => HeaderValue::Binary {
                                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                            },
                        },
                    };
                    (name.as_str(), value)
                })
                .collect(),
        }
    }

    /// Appends the record as one line of JSON (without the newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serialising borrowed strings and raw JSON into a Vec cannot fail.
        serde_json::to_writer(out, self).expect("a tail record always serialises");
    }
}

// ---- jq -------------------------------------------------------------------------

type JqData = jaq_core::data::JustLut<jaq_json::Val>;

/// A compiled jq program: a record matches when one of the program's outputs
/// is truthy (neither `false` nor `null`), as in Kpow's kJQ filters.
pub struct JqFilter {
    source: String,
    filter: jaq_core::Filter<JqData>,
}

impl JqFilter {
    /// Compiles `code` with jq's standard library (jaq's).
    pub fn compile(code: &str) -> std::result::Result<Self, String> {
        use jaq_core::load::{Arena, File, Loader};
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let reasons: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, error)| match error {
                        jaq_core::load::Error::Io(items) => {
                            items.into_iter().map(|(_, e)| e).collect::<Vec<_>>()
                        }
                        jaq_core::load::Error::Lex(items) => items
                            .into_iter()
                            .map(|(expect, at)| {
                                format!("expected {} at {}", expect.as_str(), column(code, at))
                            })
                            .collect(),
                        jaq_core::load::Error::Parse(items) => items
                            .into_iter()
                            .map(|(expect, at)| {
                                format!("expected {} at {}", expect.as_str(), column(code, at))
                            })
                            .collect(),
                    })
                    .collect();
                reasons.join("; ")
            })?;
        let filter = jaq_core::Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| {
                let reasons: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, items)| {
                        items
                            .into_iter()
                            .map(|(name, what)| format!("undefined {} {name}", what.as_str()))
                    })
                    .collect();
                reasons.join("; ")
            })?;
        Ok(JqFilter {
            source: code.to_string(),
            filter,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program on one JSON document (a record as [`TailRecord`]
    /// writes it). `Err` carries jq's error when no output was truthy
    /// before it (e.g. `.value.x` on a string value).
    pub fn matches(&self, json: &[u8]) -> std::result::Result<bool, String> {
        use jaq_core::ValT as _;
        let input = jaq_json::read::parse_single(json)
            .map_err(|e| format!("cannot read the record as JSON: {e}"))?;
        let ctx = jaq_core::Ctx::<JqData>::new(&self.filter.lut, jaq_core::Vars::new([]));
        let mut first_error = None;
        for output in self.filter.id.run((ctx, input)).map(jaq_core::unwrap_valr) {
            match output {
                Ok(value) if value.as_bool() => return Ok(true),
                Ok(_) => {}
                Err(error) => {
                    first_error.get_or_insert_with(|| error.to_string());
                    // A program that fails keeps failing: do not walk the
                    // rest of a possibly long stream of errors.
                    break;
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(false),
        }
    }
}

/// "column N" of the spot `at` (a slice of `code`) points to.
fn column(code: &str, at: &str) -> String {
    let span = jaq_core::load::span(code, at);
    if span.start >= code.len() {
        "the end".into()
    } else {
        format!("column {}", code[..span.start].chars().count() + 1)
    }
}

// ---- reading ----------------------------------------------------------------------

/// What reading threads report to the loop.
pub enum Event {
    /// Records of one topic, each partition in offset order.
    Records(Vec<Record>),
    /// Every partition of the topic has been read up to the broker's end
    /// once (what existed at the start has been delivered).
    CaughtUp(String),
    /// `--until-end`: every partition of the topic reached the end seen at
    /// the start; the thread has stopped.
    Finished(String),
    Failed(KartError),
}

/// How streams read.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub from: Position,
    pub until_end: bool,
    /// A consumer group to read as (offsets committed); `None` = assign
    /// partitions without a group, commit nothing.
    pub group: Option<String>,
    /// Whether `from` was given explicitly; with a group, an implicit start
    /// resumes from the group's committed offsets.
    pub from_explicit: bool,
    /// `fetch.wait.max.ms`: tansu answers an idle fetch only after it.
    pub fetch_wait: Duration,
    pub client_id: String,
}

/// With a group: the next offset to commit per topic and partition.
pub type Handled = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// Reading threads, one per topic, and the channel they report to.
pub struct Streams {
    pub events: Receiver<Event>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// With a group: the next offset to commit per topic and partition,
    /// written by the loop once records are handled.
    pub handled: Option<Handled>,
    /// What `--from end`/`-N` resolved to, for the status line.
    pub summary: Vec<String>,
}

impl Streams {
    /// Asks the threads to stop; with a group, waits (bounded) for their
    /// final commit.
    pub fn stop(self) {
        let Streams {
            events,
            stop,
            threads,
            handled,
            ..
        } = self;
        stop.store(true, Ordering::SeqCst);
        // A reader blocked on a full channel wakes up when it is gone.
        drop(events);
        if handled.is_some() {
            let deadline = Instant::now() + Duration::from_secs(5);
            for thread in threads {
                while !thread.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // Without a group nothing needs saying to the broker: the threads
        // notice the flag within a poll and the process exits meanwhile.
    }

    /// Records handled (printed or filtered out) up to `record`: the next
    /// offset to commit. Called once per batch with its last records.
    pub fn mark_handled(&self, records: &[Record]) {
        if let Some(handled) = &self.handled {
            if let Ok(mut map) = handled.lock() {
                for record in records {
                    map.insert((record.topic.clone(), record.partition), record.offset + 1);
                }
            }
        }
    }
}

/// One partition's plan, resolved before reading starts.
#[derive(Debug, Clone)]
struct PartitionPlan {
    id: i32,
    start: Offset,
    /// The end offset the broker reported at the start.
    end_at_start: i64,
    /// Skip records stamped before this until the partition first catches
    /// up (`End`) or until the first record at or after it (`Since`).
    skip_before: Option<i64>,
    skip_until_caught_up: bool,
    /// `-N`: hold the last N records until the partition first catches up.
    ring: Option<usize>,
}

/// Connects, resolves positions and starts one reading thread per topic.
/// Errors (unreachable, authentication, missing topic) come back before
/// any thread starts.
pub fn open_streams(
    settings: &KafkaSettings,
    printer: &Printer,
    topics: &[String],
    options: &StreamOptions,
) -> Result<Streams> {
    let (sender, events) = std::sync::mpsc::sync_channel::<Event>(64);
    let stop = Arc::new(AtomicBool::new(false));
    let handled = options
        .group
        .as_ref()
        .map(|_| Arc::new(Mutex::new(HashMap::new())));
    let mut threads = Vec::new();
    let mut summary = Vec::new();
    let mut prepared = Vec::new();
    // Prepare every topic before starting any thread: a missing second
    // topic must fail the command before the first one prints anything.
    for topic in topics {
        prepared.push(prepare_topic(settings, printer, topic, options)?);
    }
    for (topic, consumer, context, plans) in prepared {
        summary.push(describe_plans(&topic, &plans));
        let thread = {
            let (sender, stop, handled, settings) = (
                sender.clone(),
                stop.clone(),
                handled.clone(),
                settings.clone(),
            );
            let until_end = options.until_end;
            let printer = printer.clone();
            std::thread::Builder::new()
                .name(format!("tail {topic}"))
                .spawn(move || {
                    let reader = TopicReader {
                        topic,
                        consumer,
                        context,
                        settings,
                        printer,
                        plans,
                        until_end,
                        handled,
                    };
                    reader.run(&sender, &stop);
                })
                .map_err(|e| {
                    KartError::infra("internal", format!("cannot start a reading thread: {e}"))
                })?
        };
        threads.push(thread);
    }
    Ok(Streams {
        events,
        stop,
        threads,
        handled,
        summary,
    })
}

impl PartitionPlan {
    /// From the end on. tansu can report the end short (the first offset of
    /// the last batch + 1): records of that batch still arrive, but they
    /// were there before the start, so until the partition catches up,
    /// records stamped before the start are old.
    fn start_at_end(&mut self, started_ms: i64) {
        self.start = Offset::Offset(self.end_at_start);
        self.skip_before = Some(started_ms);
        self.skip_until_caught_up = true;
    }
}

/// A group resuming: each partition starts at the group's committed offset,
/// as a number (never `Stored`, which librdkafka reports as an invalid
/// position until a record arrives, so `--until-end` could not tell that a
/// partition with nothing new is done). A partition the group never
/// committed starts at the end, as `auto.offset.reset=latest` would; a
/// committed offset the broker no longer keeps, at the first it keeps.
fn resolve_committed(
    settings: &KafkaSettings,
    consumer: &BaseConsumer<KartClientContext>,
    context: &KartClientContext,
    topic: &str,
    plans: &mut [PartitionPlan],
    lows: &HashMap<i32, i64>,
    started_ms: i64,
) -> Result<()> {
    let mut wanted = TopicPartitionList::new();
    for plan in plans.iter() {
        wanted.add_partition(topic, plan.id);
    }
    let committed = wait_until_reachable(settings, context, |slice| {
        serve_errors(consumer, context);
        consumer.committed_offsets(wanted.clone(), slice)
    })?;
    for plan in plans.iter_mut() {
        match committed.find_partition(topic, plan.id).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => {
                let low = lows.get(&plan.id).copied().unwrap_or(0);
                plan.start = Offset::Offset(o.max(low));
            }
            _ => plan.start_at_end(started_ms),
        }
    }
    Ok(())
}

fn describe_plans(topic: &str, plans: &[PartitionPlan]) -> String {
    let offsets: Vec<String> = plans
        .iter()
        .map(|p| match p.start {
            Offset::Offset(o) => format!("{}@{o}", p.id),
            Offset::Stored => format!("{}@committed", p.id),
            Offset::Beginning => format!("{}@beginning", p.id),
            _ => format!("{}@?", p.id),
        })
        .collect();
    format!("{topic}[{}]", offsets.join(","))
}

type Prepared = (
    String,
    ManuallyDrop<BaseConsumer<KartClientContext>>,
    KartClientContext,
    Vec<PartitionPlan>,
);

fn prepare_topic(
    settings: &KafkaSettings,
    printer: &Printer,
    topic: &str,
    options: &StreamOptions,
) -> Result<Prepared> {
    let context = KartClientContext::new(printer.clone());
    let mut config = settings.reader_config(&options.client_id);
    config
        .set(
            "fetch.wait.max.ms",
            options.fetch_wait.as_millis().clamp(1, 60_000).to_string(),
        )
        // A following reader: keep a good amount prefetched, so printing
        // never waits on a round trip while the broker has more.
        .set("queued.min.messages", "200000");
    if let Some(group) = &options.group {
        // Partitions are still assigned, not balanced: tansu's group joins
        // take seconds, and a tail reads every partition anyway. The group
        // only keeps the offsets; kart commits what it handled.
        config
            .set("group.id", group)
            .set("auto.offset.reset", "latest");
    }
    let consumer: BaseConsumer<KartClientContext> =
        config.create_with_context(context.clone()).map_err(|e| {
            KartError::user(
                "kafka-config",
                format!("invalid Kafka client configuration: {e}"),
            )
        })?;
    // Dropping a consumer waits for librdkafka's threads; the process is
    // about to exit when a tail ends.
    let consumer = ManuallyDrop::new(consumer);

    let metadata = wait_until_reachable(settings, &context, |slice| {
        serve_errors(&consumer, &context);
        consumer.fetch_metadata(Some(topic), slice)
    })?;
    let (_, ids) = partitions_of(&metadata, &[topic], &settings.bootstrap)?.remove(0);
    let started_ms = now_ms();

    let mut plans = Vec::new();
    let mut lows = HashMap::new();
    let mut times = TopicPartitionList::new();
    for id in ids {
        let (low, high) = wait_until_reachable(settings, &context, |slice| {
            serve_errors(&consumer, &context);
            consumer.fetch_watermarks(topic, id, slice)
        })?;
        printer.debug(&format!(
            "{topic}[{id}]: offsets {low}..{high} at the start"
        ));
        let mut plan = PartitionPlan {
            id,
            start: Offset::Offset(high),
            end_at_start: high,
            skip_before: None,
            skip_until_caught_up: false,
            ring: None,
        };
        lows.insert(id, low);
        let resume = options.group.is_some() && !options.from_explicit;
        match options.from {
            // Resolved to the committed offsets below, all partitions at once.
            _ if resume => plan.start = Offset::Stored,
            Position::End => plan.start_at_end(started_ms),
            Position::Beginning => plan.start = Offset::Offset(low),
            Position::Last(n) => {
                // The same short end could hide the true last N, so read
                // from N before the reported end up to where the broker
                // really ends, keeping only the last N seen.
                let n_i64 = i64::try_from(n).unwrap_or(i64::MAX);
                plan.start = Offset::Offset(high.saturating_sub(n_i64).max(low));
                plan.ring = Some(usize::try_from(n).unwrap_or(usize::MAX));
            }
            Position::Since(ms) => {
                plan.skip_before = Some(ms);
                // Before 1970 is before any record; brokers refuse a
                // negative time.
                times
                    .add_partition_offset(topic, id, Offset::Offset(ms.max(0)))
                    .map_err(|e| {
                        KartError::infra(
                            "kafka-error",
                            format!("cannot look up {topic}[{id}] by time: {e}"),
                        )
                    })?;
            }
        }
        plans.push(plan);
    }
    if times.count() > 0 {
        // The earliest offset stamped at or after the time; a broker that
        // cannot answer means reading from the beginning and skipping what
        // is older, which gives the same records, only slower.
        let found = wait_until_reachable(settings, &context, |slice| {
            serve_errors(&consumer, &context);
            consumer.offsets_for_times(times.clone(), slice)
        });
        for plan in &mut plans {
            let answer = found
                .as_ref()
                .ok()
                .and_then(|list| list.find_partition(topic, plan.id))
                .map(|e| e.offset());
            plan.start = match answer {
                Some(Offset::Offset(o)) if o >= 0 => Offset::Offset(o),
                // No record at or after the time: from the end on.
                Some(Offset::End) => Offset::Offset(plan.end_at_start),
                // A real offset, not `Beginning`: `--until-end` needs a
                // number to tell that an empty partition is done.
                _ => Offset::Offset(lows[&plan.id]),
            };
        }
        if let Err(e) = &found {
            printer.debug(&format!(
                "{topic}: offsets by time failed ({e}); reading from the beginning"
            ));
        }
    }

    if plans.iter().any(|p| p.start == Offset::Stored) {
        resolve_committed(settings, &consumer, &context, topic, &mut plans, &lows, started_ms)?;
    }

    let mut assignment = TopicPartitionList::new();
    for plan in &plans {
        assignment
            .add_partition_offset(topic, plan.id, plan.start)
            .map_err(|e| {
                KartError::infra(
                    "kafka-error",
                    format!("cannot assign {topic}[{}]: {e}", plan.id),
                )
            })?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| read_error(settings, &context, topic, e))?;
    Ok((topic.to_string(), consumer, context, plans))
}

struct TopicReader {
    topic: String,
    consumer: ManuallyDrop<BaseConsumer<KartClientContext>>,
    context: KartClientContext,
    settings: KafkaSettings,
    printer: Printer,
    plans: Vec<PartitionPlan>,
    until_end: bool,
    handled: Option<Handled>,
}

/// A partition's progress while reading.
struct PartitionState {
    plan: PartitionPlan,
    caught_up: bool,
    finished: bool,
    skipping: bool,
    ring: VecDeque<Record>,
}

/// Records sent to the loop at once: one channel message per batch keeps
/// the hand-over cheap at hundreds of thousands of records a second.
const BATCH: usize = 1024;

impl TopicReader {
    fn run(self, sender: &SyncSender<Event>, stop: &AtomicBool) {
        if let Err(error) = self.read(sender, stop) {
            let _ = sender.send(Event::Failed(error));
        }
        self.commit();
    }

    fn read(&self, sender: &SyncSender<Event>, stop: &AtomicBool) -> Result<()> {
        let mut states: HashMap<i32, PartitionState> = self
            .plans
            .iter()
            .map(|plan| {
                let state = PartitionState {
                    skipping: plan.skip_before.is_some(),
                    // Nothing to read up to the end seen at the start: done.
                    finished: self.until_end
                        && matches!(plan.start, Offset::Offset(o) if o >= plan.end_at_start),
                    caught_up: false,
                    ring: VecDeque::new(),
                    plan: plan.clone(),
                };
                (plan.id, state)
            })
            .collect();
        let mut caught_up_sent = false;
        let mut last_commit = Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if self.until_end && states.values().all(|s| s.finished) {
                if !batch.is_empty() {
                    send(sender, Event::Records(std::mem::take(&mut batch)))?;
                }
                send(sender, Event::Finished(self.topic.clone()))?;
                return Ok(());
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut eof_seen = false;
            // Wait for the first record, then take whatever else is ready.
            let mut timeout = Duration::from_millis(100);
            while batch.len() < BATCH {
                let Some(result) = self.consumer.poll(timeout) else {
                    break;
                };
                timeout = Duration::ZERO;
                match result {
                    Ok(message) => {
                        let Some(state) = states.get_mut(&message.partition()) else {
                            continue;
                        };
                        if state.finished {
                            continue;
                        }
                        let record = Record::from_message(&message);
                        if state.skipping {
                            let before = state.plan.skip_before.unwrap_or(i64::MIN);
                            if record.timestamp.is_some_and(|t| t < before) {
                                continue;
                            }
                            if !state.plan.skip_until_caught_up {
                                state.skipping = false;
                            }
                        }
                        if let Some(n) = state.plan.ring.filter(|_| !state.caught_up) {
                            state.ring.push_back(record);
                            while state.ring.len() > n {
                                state.ring.pop_front();
                            }
                        } else {
                            batch.push(record);
                        }
                    }
                    Err(KafkaError::PartitionEOF(id)) => {
                        eof_seen = true;
                        if let Some(state) = states.get_mut(&id) {
                            if !state.caught_up {
                                state.caught_up = true;
                                state.skipping &= !state.plan.skip_until_caught_up;
                                batch.extend(state.ring.drain(..));
                            }
                        }
                        break;
                    }
                    Err(error) => {
                        ClientContext::error(&self.context, error.clone(), &error.to_string());
                        if self.context.auth_failed() {
                            return Err(self.settings.auth_failed());
                        }
                        self.printer
                            .debug(&format!("while reading {}: {error}", self.topic));
                        break;
                    }
                }
            }
            if eof_seen && self.until_end {
                self.finish_partitions(&mut states)?;
            }
            if !batch.is_empty() {
                send(
                    sender,
                    Event::Records(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))),
                )?;
            }
            if !caught_up_sent && states.values().all(|s| s.caught_up || s.finished) {
                caught_up_sent = true;
                send(sender, Event::CaughtUp(self.topic.clone()))?;
            }
            if self.handled.is_some() && last_commit.elapsed() > Duration::from_secs(1) {
                last_commit = Instant::now();
                self.commit();
            }
        }
    }

    /// `--until-end`: a partition is done once it caught up with the broker
    /// and its position passed the end seen at the start. Neither alone is
    /// enough (see `reader.rs`): tansu's end can be short, and transaction
    /// markers move the position without being delivered.
    fn finish_partitions(&self, states: &mut HashMap<i32, PartitionState>) -> Result<()> {
        let positions = self
            .consumer
            .position()
            .map_err(|e| read_error(&self.settings, &self.context, &self.topic, e))?;
        let mut done = TopicPartitionList::new();
        for element in positions.elements() {
            if let (Offset::Offset(position), Some(state)) =
                (element.offset(), states.get_mut(&element.partition()))
            {
                if state.caught_up && !state.finished && position >= state.plan.end_at_start {
                    state.finished = true;
                    let _ = done.add_partition(&self.topic, element.partition());
                }
            }
        }
        if done.count() > 0 {
            // Stop fetching what will not be printed.
            let _ = self.consumer.pause(&done);
        }
        Ok(())
    }

    /// With a group: commits the offsets the loop has handled.
    fn commit(&self) {
        let Some(handled) = &self.handled else { return };
        let mut list = TopicPartitionList::new();
        if let Ok(map) = handled.lock() {
            for ((topic, partition), offset) in map.iter() {
                if *topic == self.topic {
                    let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
                }
            }
        }
        if list.count() > 0 {
            if let Err(e) = self.consumer.commit(&list, CommitMode::Sync) {
                self.printer
                    .warn(&format!("cannot commit the offsets of {}: {e}", self.topic));
            }
        }
    }
}

fn send(sender: &SyncSender<Event>, event: Event) -> Result<()> {
    // The loop went away: it has finished, nothing to report.
    sender.send(event).map_err(|_| KartError::interrupted())
}

fn read_error(
    settings: &KafkaSettings,
    context: &KartClientContext,
    topic: &str,
    error: KafkaError,
) -> KartError {
    if context.auth_failed() {
        return settings.auth_failed();
    }
    KartError::infra(
        "kafka-error",
        format!("cannot read {topic} from {}: {error}", settings.bootstrap),
    )
}

// ---- printing -------------------------------------------------------------------

/// How `tail` prints each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One coloured line: time, topic[partition]@offset, key, a badge for
    /// inventory events, alerts and order outcomes, the value as compact JSON.
    Pretty,
    /// One [`TailRecord`] per line.
    Json,
    /// The value's bytes, then a newline.
    Raw,
}

/// Appends one pretty line (without the newline).
pub fn write_pretty(
    record: &TailRecord<'_>,
    topic_index: usize,
    printer: &Printer,
    out: &mut String,
) {
    use std::fmt::Write as _;
    let time = record.timestamp.map(time_of_day).unwrap_or_else(|| "-".into());
    let _ = write!(out, "{} ", printer.paint(&time, Tone::Dim));
    let place = format!("{}[{}]@{}", record.topic, record.partition, record.offset);
    let _ = write!(out, "{} ", printer.paint(&place, Tone::Topic(topic_index)));
    match &record.key {
        Field::Null => {}
        key => {
            let text = field_text(key);
            let _ = write!(out, "{} ", printer.paint(&text, Tone::Strong));
        }
    }
    if let Some((badge, tone)) = badge(&record.value) {
        let _ = write!(out, "{} ", printer.paint(&badge, tone));
    }
    match &record.value {
        Field::Null => out.push_str(&printer.paint("(null)", Tone::Dim)),
        Field::Base64(b64) => {
            let _ = write!(out, "{} {b64}", printer.paint("base64:", Tone::Dim));
        }
        value => out.push_str(&field_text(value)),
    }
}

fn field_text(field: &Field<'_>) -> String {
    match field {
        Field::Json(raw) => compact(raw.get()),
        Field::CompactJson(raw) => raw.get().to_string(),
        // Control characters would break the one-line promise.
        Field::Text(text) => text
            .escape_debug()
            .to_string()
            .replace("\\\"", "\"")
            .replace("\\'", "'"),
        Field::Base64(b64) => b64.clone(),
        Field::Null => String::new(),
    }
}

/// Compact JSON: producers sometimes pad with spaces.
fn compact(json: &str) -> String {
    if !json.contains([' ', '\t']) {
        return json.to_string();
    }
    serde_json::from_str::<serde_json::Value>(json)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| json.to_string())
}

/// A short coloured label for the records of the inventory flow: an
/// inventory event's type, an alert's severity and type, an order outcome.
fn badge(value: &Field<'_>) -> Option<(String, Tone)> {
    let json = value.json_text()?;
    if !json.starts_with('{') {
        return None;
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        event_type: Option<String>,
        severity: Option<String>,
        alert_type: Option<String>,
        outcome: Option<String>,
    }
    let peek: Peek = serde_json::from_str(json).ok()?;
    if let (Some(severity), Some(kind)) = (&peek.severity, &peek.alert_type) {
        let tone = match severity.as_str() {
            "CRITICAL" => Tone::Bad,
            "WARNING" => Tone::Warn,
            _ => Tone::Info,
        };
        return Some((format!("{severity} {kind}"), tone));
    }
    if let Some(kind) = &peek.event_type {
        let tone = match kind.as_str() {
            "OUT_OF_STOCK" | "ORDER_REJECTED" => Tone::Bad,
            "INVENTORY_DECREASED" => Tone::Warn,
            "INVENTORY_INCREASED" | "BACK_IN_STOCK" => Tone::Good,
            "STALE_INVENTORY" => Tone::Dim,
            _ => Tone::Info,
        };
        return Some((kind.clone(), tone));
    }
    if let Some(outcome) = &peek.outcome {
        let tone = match outcome.as_str() {
            "applied" => Tone::Good,
            "duplicate" => Tone::Dim,
            _ => Tone::Bad,
        };
        return Some((outcome.to_uppercase(), tone));
    }
    None
}

// ---- the loop ---------------------------------------------------------------------

/// Everything `kart tail` was asked for.
pub struct TailOptions {
    pub topics: Vec<String>,
    pub stream: StreamOptions,
    pub filter: Option<String>,
    pub until: Option<String>,
    pub max: Option<u64>,
    pub timeout: Option<Duration>,
    pub format: Format,
}

/// Why a tail ended well (each exits 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    UntilMatched,
    MaxReached,
    EndReached,
    /// stdout went away (`| head`).
    OutputClosed,
}

/// Runs a tail on a thread of its own until a stop condition, the timeout
/// (a user error, exit 1) or Ctrl-C (exit 130).
pub async fn run(
    settings: &KafkaSettings,
    printer: &Printer,
    shutdown: &CancellationToken,
    options: TailOptions,
) -> Result<Stop> {
    let (settings, printer, shutdown) = (settings.clone(), printer.clone(), shutdown.clone());
    tokio::task::spawn_blocking(move || run_blocking(&settings, &printer, &shutdown, options))
        .await
        .map_err(|e| KartError::infra("internal", format!("tail task failed: {e}")))?
}

fn compile(flag: &str, code: Option<&str>) -> Result<Option<JqFilter>> {
    code.map(|code| {
        JqFilter::compile(code).map_err(|reason| {
            KartError::user(
                "bad-jq",
                format!("{flag} {code:?} is not a jq program: {reason}"),
            )
            .with_hint(
                "write jq as in Kpow's kJQ, e.g. --filter '.value.productId == \"PROD_0001\"'",
            )
        })
    })
    .transpose()
}

fn run_blocking(
    settings: &KafkaSettings,
    printer: &Printer,
    shutdown: &CancellationToken,
    options: TailOptions,
) -> Result<Stop> {
    let started = Instant::now();
    let filter = compile("--filter", options.filter.as_deref())?;
    let until = compile("--until", options.until.as_deref())?;
    if options.max == Some(0) {
        return Ok(Stop::MaxReached);
    }
    // A timeout too long to represent is no deadline at all.
    let deadline = options.timeout.and_then(|t| started.checked_add(t));
    // --timeout bounds the whole command, connecting included; reached
    // while connecting, it is still a timeout (exit 1), saying why.
    let connect_bounded = options.timeout.is_some_and(|timeout| timeout < settings.connect_timeout);
    let connect_timeout = options.timeout.map_or(settings.connect_timeout, |timeout| timeout.min(settings.connect_timeout));
    let settings = &KafkaSettings { connect_timeout, ..settings.clone() };
    let streams = match open_streams(settings, printer, &options.topics, &options.stream) {
        Err(error) if error.code == "kafka-unreachable" && connect_bounded => {
            let timeout = KartError::user("timeout", format!("--timeout reached while connecting: {}", error.message));
            return Err(match error.hint {
                Some(hint) => timeout.with_hint(hint),
                None => timeout,
            });
        }
        other => other?,
    };
    let what = if options.stream.until_end {
        "to the end"
    } else {
        "following; Ctrl-C stops"
    };
    let from = if options.stream.group.is_some() && !options.stream.from_explicit {
        "from the group's committed offsets".to_string()
    } else {
        options.stream.from.describe()
    };
    printer.status(
        "Tailing",
        &format!("{} {from} ({what})", streams.summary.join(" ")),
    );
    let mut run = Loop {
        printer,
        format: options.format,
        filter,
        until,
        max: options.max,
        printed: 0,
        out: Vec::with_capacity(1 << 16),
        scratch: Vec::with_capacity(1024),
        line: String::new(),
        topic_index: options
            .topics
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect(),
        jq_errors: 0,
    };
    let result = run.drive(&streams, deadline, shutdown);
    // Whatever ended the loop, what was printed must reach stdout.
    let flushed = run.flush();
    streams.stop();
    printer.debug(&format!(
        "tail ended after {} records printed: {result:?}",
        run.printed
    ));
    match (result, flushed) {
        (Err(e), _) if e.code != crate::printer::BROKEN_PIPE => Err(e),
        (Ok(_), Err(e)) if e.code != crate::printer::BROKEN_PIPE => Err(e),
        // `| head` went away: not an error (design §2).
        (Err(_), _) | (_, Err(_)) => Ok(Stop::OutputClosed),
        (Ok(stop), Ok(())) => Ok(stop),
    }
}

struct Loop<'a> {
    printer: &'a Printer,
    format: Format,
    filter: Option<JqFilter>,
    until: Option<JqFilter>,
    max: Option<u64>,
    printed: u64,
    /// Output waiting to be written: flushed when the readers have nothing
    /// more ready, so a burst costs one write and a lone record is not held.
    out: Vec<u8>,
    scratch: Vec<u8>,
    line: String,
    topic_index: HashMap<String, usize>,
    jq_errors: u64,
}

impl Loop<'_> {
    fn drive(
        &mut self,
        streams: &Streams,
        deadline: Option<Instant>,
        shutdown: &CancellationToken,
    ) -> Result<Stop> {
        let topics = self.topic_index.len();
        let mut finished = 0;
        let mut last_check = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                return Err(KartError::interrupted());
            }
            let now = Instant::now();
            if let Some(deadline) = deadline {
                if now >= deadline {
                    return Err(self.timeout_error());
                }
            }
            let event = match streams.events.try_recv() {
                Ok(event) => event,
                Err(TryRecvError::Disconnected) => {
                    return Err(KartError::infra("internal", "every reading thread stopped"));
                }
                Err(TryRecvError::Empty) => {
                    // Nothing ready: write out what is pending, then wait.
                    self.flush()?;
                    if last_check.elapsed() > Duration::from_millis(200) {
                        last_check = Instant::now();
                        if stdout_closed() {
                            return Ok(Stop::OutputClosed);
                        }
                    }
                    let wait = deadline
                        .map(|d| d.saturating_duration_since(Instant::now()))
                        .unwrap_or(Duration::MAX)
                        .min(Duration::from_millis(100));
                    match streams.events.recv_timeout(wait) {
                        Ok(event) => event,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => {
                            return Err(KartError::infra(
                                "internal",
                                "every reading thread stopped",
                            ));
                        }
                    }
                }
            };
            match event {
                Event::Records(records) => {
                    for (index, record) in records.iter().enumerate() {
                        if let Some(stop) = self.handle(record)? {
                            streams.mark_handled(&records[..=index]);
                            return Ok(stop);
                        }
                    }
                    streams.mark_handled(&records);
                }
                Event::CaughtUp(topic) => self.printer.debug(&format!("{topic}: caught up")),
                Event::Finished(topic) => {
                    self.printer
                        .debug(&format!("{topic}: reached the end seen at the start"));
                    finished += 1;
                    if finished == topics {
                        return Ok(Stop::EndReached);
                    }
                }
                Event::Failed(error) => return Err(error),
            }
            if self.out.len() >= 1 << 16 {
                self.flush()?;
            }
        }
    }

    fn timeout_error(&self) -> KartError {
        let mut names: Vec<&str> = self.topic_index.keys().map(String::as_str).collect();
        names.sort();
        let topics = names.join(", ");
        let message = if let Some(until) = &self.until {
            format!(
                "no record of {topics} matched --until {:?} before --timeout",
                until.source()
            )
        } else if let Some(max) = self.max {
            format!(
                "only {} of --max {max} records of {topics} came before --timeout",
                self.printed
            )
        } else {
            format!("--timeout reached while reading {topics}")
        };
        KartError::user("timeout", message)
    }

    /// Filters and prints one record; `Some` when it ends the tail.
    fn handle(&mut self, record: &Record) -> Result<Option<Stop>> {
        let shaped = TailRecord::new(record);
        let needs_json =
            self.format == Format::Json || self.filter.is_some() || self.until.is_some();
        self.scratch.clear();
        if needs_json {
            shaped.write_json(&mut self.scratch);
        }
        let passes = match &self.filter {
            Some(filter) => evaluate(
                filter,
                "--filter",
                &self.scratch,
                self.printer,
                &mut self.jq_errors,
            ),
            None => true,
        };
        if passes {
            match self.format {
                Format::Json => self.out.extend_from_slice(&self.scratch),
                Format::Raw => self
                    .out
                    .extend_from_slice(record.value.as_deref().unwrap_or_default()),
                Format::Pretty => {
                    self.line.clear();
                    let index = self.topic_index.get(&record.topic).copied().unwrap_or(0);
                    write_pretty(&shaped, index, self.printer, &mut self.line);
                    self.out.extend_from_slice(self.line.as_bytes());
                }
            }
            self.out.push(b'\n');
            self.printed += 1;
        }
        if let Some(until) = &self.until {
            if evaluate(
                until,
                "--until",
                &self.scratch,
                self.printer,
                &mut self.jq_errors,
            ) {
                return Ok(Some(Stop::UntilMatched));
            }
        }
        if self.max.is_some_and(|max| self.printed >= max) {
            return Ok(Some(Stop::MaxReached));
        }
        Ok(None)
    }

    fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.printer.out_bytes(&self.out);
        self.out.clear();
        result
    }
}

/// A program that fails on a record (e.g. `.value.x` on a text value)
/// does not match it; the first few failures are reported.
fn evaluate(
    filter: &JqFilter,
    flag: &str,
    json: &[u8],
    printer: &Printer,
    errors: &mut u64,
) -> bool {
    match filter.matches(json) {
        Ok(matched) => matched,
        Err(error) => {
            *errors += 1;
            if *errors <= 3 || printer.verbose() {
                printer.warn(&format!(
                    "{flag} {:?} failed on a record, which does not match: {error}",
                    filter.source()
                ));
            }
            false
        }
    }
}

/// Whether the reader of stdout went away (`| head` exited): a following
/// tail with nothing to print would otherwise never learn it.
pub(crate) fn stdout_closed() -> bool {
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return false;
    }
    let mut fds = [nix::poll::PollFd::new(
        stdout.as_fd(),
        nix::poll::PollFlags::empty(),
    )];
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
        Ok(n) if n > 0 => fds[0].revents().is_some_and(|r| {
            r.intersects(nix::poll::PollFlags::POLLERR | nix::poll::PollFlags::POLLHUP)
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    #[test]
    fn positions_parse() {
        assert_eq!(Position::parse("end", NOW), Ok(Position::End));
        assert_eq!(Position::parse("beginning", NOW), Ok(Position::Beginning));
        assert_eq!(Position::parse("-5", NOW), Ok(Position::Last(5)));
        assert_eq!(
            Position::parse("-5m", NOW),
            Ok(Position::Since(NOW - 300_000))
        );
        assert_eq!(
            Position::parse("@2026-11-21T10:00:00Z", NOW),
            Ok(Position::Since(1_795_255_200_000))
        );
        assert!(Position::parse("soon", NOW).is_err());
        assert!(Position::parse("-", NOW).is_err());
        assert!(Position::parse("@yesterday", NOW).is_err());
        // Before 1970 is the beginning of every partition.
        assert_eq!(Position::parse("-100y", NOW), Ok(Position::Since(0)));
        assert_eq!(Position::parse("-100y", NOW).unwrap().describe(), "from 1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn any_timestamp_a_producer_sets_is_shown_without_panicking() {
        assert_eq!(time_of_day(1_771_550_000_123), "01:13:20.123Z");
        // Negative, microseconds by mistake, beyond the year 9999.
        for ms in [-1, i64::MIN, 1_771_550_000_123_000, 253_402_300_800_000, i64::MAX] {
            assert_eq!(time_of_day(ms), format!("{ms}ms"));
        }
    }

    fn record(key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
        Record {
            topic: "inventory-events".into(),
            partition: 0,
            offset: 7,
            timestamp: Some(1_771_550_000_123),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: vec![
                ("kart-batch".into(), Some(b"3".to_vec())),
                ("bin".into(), Some(vec![0xff, 0])),
            ],
        }
    }

    fn json_of(record: &Record) -> serde_json::Value {
        let mut out = Vec::new();
        TailRecord::new(record).write_json(&mut out);
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn values_are_json_text_or_base64() {
        let json = json_of(&record(
            Some(b"PROD_0001"),
            Some(br#" {"productId":"PROD_0001", "currentInventory":7} "#),
        ));
        assert_eq!(json["value"]["productId"], "PROD_0001");
        assert_eq!(json["valueEncoding"], "json");
        assert_eq!(json["key"], "PROD_0001");
        assert_eq!(json["keyEncoding"], "text");
        assert_eq!(
            json["headers"],
            serde_json::json!([["kart-batch", "3"], ["bin", {"base64": "/wA="}]])
        );
        let text = json_of(&record(None, Some(b"hello world")));
        assert_eq!(
            (text["value"].as_str(), text["valueEncoding"].as_str()),
            (Some("hello world"), Some("text"))
        );
        assert_eq!(
            (text["key"].is_null(), text["keyEncoding"].as_str()),
            (true, Some("null"))
        );
        let binary = json_of(&record(None, Some(&[0xde, 0xad, 0xbe, 0xef])));
        assert_eq!(
            (binary["value"].as_str(), binary["valueEncoding"].as_str()),
            (Some("3q2+7w=="), Some("base64"))
        );
        let tombstone = json_of(&record(None, None));
        assert_eq!(
            (
                tombstone["value"].is_null(),
                tombstone["valueEncoding"].as_str()
            ),
            (true, Some("null"))
        );
    }

    #[test]
    fn pretty_printed_json_becomes_one_line() {
        let rec = record(None, Some(b"{\n  \"a\": 1,\n  \"b\": \"x\\ny\"\n}\n"));
        let mut out = Vec::new();
        TailRecord::new(&rec).write_json(&mut out);
        assert!(!out.contains(&b'\n'));
        assert_eq!(
            json_of(&rec)["value"],
            serde_json::json!({"a": 1, "b": "x\ny"})
        );
    }

    #[test]
    fn kpow_filter_works_unchanged() {
        let filter = JqFilter::compile(r#".value.productId == "PROD_0001""#).unwrap();
        let mut yes = Vec::new();
        TailRecord::new(&record(None, Some(br#"{"productId":"PROD_0001"}"#))).write_json(&mut yes);
        let mut no = Vec::new();
        TailRecord::new(&record(None, Some(br#"{"productId":"PROD_0002"}"#))).write_json(&mut no);
        assert_eq!(filter.matches(&yes), Ok(true));
        assert_eq!(filter.matches(&no), Ok(false));
        // Standard library functions work too.
        let select = JqFilter::compile(
            r#".value | select(.productId | startswith("PROD_")) | .productId | test("01$")"#,
        )
        .unwrap();
        assert_eq!(select.matches(&yes), Ok(true));
    }

    #[test]
    fn failing_filters_do_not_match_and_say_why() {
        let filter = JqFilter::compile(".value.productId").unwrap();
        let mut text = Vec::new();
        TailRecord::new(&record(None, Some(b"plain"))).write_json(&mut text);
        assert!(filter.matches(&text).is_err());
        let error = JqFilter::compile(".value.productId ==").err().unwrap();
        assert!(!error.is_empty());
        assert!(JqFilter::compile("nosuchfunction(1)")
            .err()
            .unwrap()
            .contains("undefined"));
    }

    #[test]
    fn pretty_lines_show_badges() {
        let printer = Printer::plain(crate::printer::OutputFormat::Text);
        let rec = record(
            Some(b"PROD_0001"),
            Some(br#"{"productId":"PROD_0001","eventType":"INVENTORY_DECREASED","currentInventory":7}"#),
        );
        let mut line = String::new();
        write_pretty(&TailRecord::new(&rec), 0, &printer, &mut line);
        assert_eq!(
            line,
            r#"01:13:20.123Z inventory-events[0]@7 PROD_0001 INVENTORY_DECREASED {"productId":"PROD_0001","eventType":"INVENTORY_DECREASED","currentInventory":7}"#
        );
        let alert = record(None, Some(br#"{"alertType":"LOW_STOCK","productId":"PROD_0003","message":"Low","severity":"WARNING","timestamp":1}"#));
        line.clear();
        write_pretty(&TailRecord::new(&alert), 1, &printer, &mut line);
        assert!(line.contains(" WARNING LOW_STOCK {"), "{line}");
        let text = record(None, Some(b"two\nlines"));
        line.clear();
        write_pretty(&TailRecord::new(&text), 0, &printer, &mut line);
        assert!(line.ends_with(r"two\nlines"), "{line}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                (-1e12f64..1e12).prop_map(serde_json::Value::from),
                "\\PC{0,12}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(serde_json::Value::from),
                    proptest::collection::btree_map("[a-zA-Z]{1,6}", inner, 0..4)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn arbitrary_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
            prop_oneof![
                Just(None),
                proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
                "\\PC{0,40}".prop_map(|s| Some(s.into_bytes())),
                json_value().prop_map(|v| Some(serde_json::to_vec_pretty(&v).unwrap())),
                json_value().prop_map(|v| Some(serde_json::to_vec(&v).unwrap())),
            ]
        }

        proptest! {
            /// Whatever the bytes, the record is one line of valid JSON,
            /// and no bytes are lost: text and base64 decode back to them.
            #[test]
            fn any_bytes_make_one_lossless_json_line(
                key in arbitrary_bytes(),
                value in arbitrary_bytes(),
                header in proptest::collection::vec(any::<u8>(), 0..16),
            ) {
                let mut rec = record(key.as_deref(), value.as_deref());
                rec.headers.push(("h".into(), Some(header.clone())));
                let mut out = Vec::new();
                TailRecord::new(&rec).write_json(&mut out);
                prop_assert!(!out.contains(&b'\n'));
                let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
                for (field, encoding, bytes) in [("key", "keyEncoding", &key), ("value", "valueEncoding", &value)] {
                    let got = &json[field];
                    match json[encoding].as_str().unwrap() {
                        "null" => prop_assert!(bytes.is_none() && got.is_null()),
                        "text" => prop_assert_eq!(got.as_str().unwrap().as_bytes(), bytes.as_deref().unwrap()),
                        "base64" => prop_assert_eq!(
                            base64::engine::general_purpose::STANDARD.decode(got.as_str().unwrap()).unwrap(),
                            bytes.clone().unwrap()
                        ),
                        "json" => {
                            let original: serde_json::Value = serde_json::from_slice(bytes.as_deref().unwrap()).unwrap();
                            prop_assert_eq!(got, &original);
                        }
                        other => prop_assert!(false, "unknown encoding {}", other),
                    }
                }
                // jq sees the same object and never panics on it.
                let filter = JqFilter::compile(r#".value.productId == "PROD_0001" or (.value | type) == "string""#).unwrap();
                let _ = filter.matches(&out);
                let mut line = String::new();
                write_pretty(&TailRecord::new(&rec), 0, &Printer::plain(crate::printer::OutputFormat::Text), &mut line);
                prop_assert!(!line.contains('\n'));
            }

            #[test]
            fn positions_never_panic(text in "\\PC{0,30}") {
                let _ = Position::parse(&text, NOW);
            }
        }
    }
}
