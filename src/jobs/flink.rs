//! Flink jobs through the JobManager REST API (design §9): upload a jar once
//! per content hash, run it, wait until it runs, find it again by name, stop
//! it (cancel or stop with a savepoint), and turn the REST API's stacks of
//! wrapped exceptions into the one cause a student can act on.
//!
//! Flink has no notion of "the job called X": names are not unique and a
//! second submission starts a second copy (workshop pain point 15). kart
//! records `name → job id` in `.kart/flink/jobs.json` and also treats a Flink
//! job whose own name equals the name as that job, so a job deployed by the
//! workshop's scripts (or from a lost `.kart/`) is still found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{is_secret, Mode, Settings};
use crate::exit::{KartError, Result};
use crate::supervise::{now_ms, write_json_atomically};

/// The job name the workshop's own inventory job passes to `execute(…)`.
pub const WORKSHOP_INVENTORY_JOB: &str = "Inventory Management Job WITH ORDER DEDUCTION";

/// Why the workshop's Flink inventory job and kart's embedded one must not
/// run together (said by `job deploy` and `doctor`).
pub const DOUBLE_DEDUCTION: &str = "two inventory jobs on the same topics deduct every order twice";

/// How often kart looks at a job while waiting for it.
const POLL: Duration = Duration::from_millis(250);

/// A JobManager's REST endpoint.
#[derive(Clone)]
pub struct FlinkClient {
    base: String,
    http: reqwest::Client,
    connect_timeout: Duration,
}

/// A job as `/jobs/overview` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct JobOverview {
    pub jid: String,
    pub name: String,
    pub state: String,
    #[serde(rename = "start-time")]
    pub start_time: i64,
    #[serde(rename = "end-time")]
    pub end_time: i64,
    #[serde(default)]
    pub tasks: BTreeMap<String, u64>,
}

impl JobOverview {
    /// Not (yet) in a globally terminal state: it holds slots, reads its
    /// inputs, or will again after a restart.
    pub fn is_active(&self) -> bool {
        is_active_state(&self.state)
    }
}

pub fn is_active_state(state: &str) -> bool {
    !matches!(state, "FINISHED" | "CANCELED" | "FAILED" | "SUSPENDED")
}

#[derive(Debug, Clone, Deserialize)]
struct JarFile {
    id: String,
    name: String,
}

/// What `.kart/flink/jobs.json` remembers of a deploy. No program arguments:
/// they may hold passwords.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub job_id: String,
    pub jar_id: String,
    pub entry_class: String,
    pub flink_url: String,
    pub deployed_at: i64,
}

/// `.kart/flink/jars.json`: uploaded jars by content hash, per JobManager.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JarRecord {
    pub jar_id: String,
    pub file: String,
    pub flink_url: String,
    pub uploaded_at: i64,
}

/// kart's memory of its Flink deploys, under `.kart/flink/`.
pub struct FlinkState {
    dir: PathBuf,
}

impl FlinkState {
    pub fn new(project_dir: &Path) -> Self {
        Self {
            dir: project_dir.join(".kart").join("flink"),
        }
    }

    pub fn jobs(&self) -> BTreeMap<String, JobRecord> {
        read_map(&self.dir.join("jobs.json"))
    }

    pub fn record_job(&self, name: &str, record: JobRecord) -> Result<()> {
        let mut jobs = self.jobs();
        jobs.insert(name.to_string(), record);
        self.write("jobs.json", &jobs)
    }

    pub fn jars(&self) -> BTreeMap<String, JarRecord> {
        read_map(&self.dir.join("jars.json"))
    }

    pub fn record_jar(&self, sha256: &str, record: JarRecord) -> Result<()> {
        let mut jars = self.jars();
        jars.insert(sha256.to_string(), record);
        self.write("jars.json", &jars)
    }

    fn write<T: Serialize>(&self, file: &str, value: &T) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            KartError::infra("io", format!("cannot create {}: {e}", self.dir.display()))
        })?;
        write_json_atomically(&self.dir.join(file), value)
    }
}

fn read_map<T: for<'de> Deserialize<'de>>(path: &Path) -> BTreeMap<String, T> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Whether `job` is the job called `name`: its id, the id kart recorded for
/// that name, or Flink's own name for it.
pub fn matches_name(name: &str, job: &JobOverview, records: &BTreeMap<String, JobRecord>) -> bool {
    job.jid == name || job.name == name || records.get(name).is_some_and(|r| r.job_id == job.jid)
}

/// The name kart shows for a Flink job: the `--name` it was deployed under,
/// else Flink's own.
pub fn display_name(job: &JobOverview, records: &BTreeMap<String, JobRecord>) -> String {
    records
        .iter()
        .find(|(_, r)| r.job_id == job.jid)
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| job.name.clone())
}

pub fn looks_like_job_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An exception as a student should read it: the innermost cause of a Java
/// stack trace (`Caused by:` chains), class and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCause {
    pub class: String,
    pub message: String,
}

impl RootCause {
    pub fn short_class(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }
}

impl std::fmt::Display for RootCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.class)
        } else {
            write!(f, "{}: {}", self.class, self.message)
        }
    }
}

/// The innermost cause in a Java stack trace (or several, as the REST API's
/// `errors` list holds them). Only top-level `Caused by:` lines count: the
/// indented ones belong to suppressed exceptions.
pub fn root_cause(trace: &str) -> Option<RootCause> {
    let lines: Vec<&str> = trace.lines().collect();
    let mut found: Option<RootCause> = None;
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim_end();
        let candidate = line.strip_prefix("Caused by: ").or_else(|| {
            // The first throwable line of a trace (no cause seen yet), maybe
            // after the REST API's "<Exception on server side:" marker.
            found
                .is_none()
                .then_some(line.trim_start_matches("<Exception on server side:").trim())
        });
        let Some(candidate) = candidate else { continue };
        if let Some(mut cause) = parse_throwable_line(candidate) {
            // A message may span lines, up to the first stack frame.
            for next in lines.iter().skip(i + 1).take(5) {
                if next.starts_with('\t')
                    || next.starts_with("Caused by:")
                    || next.trim().is_empty()
                    || next.starts_with("End of exception")
                {
                    break;
                }
                cause.message.push('\n');
                cause.message.push_str(next.trim_end());
            }
            found = Some(cause);
        }
    }
    found
}

fn parse_throwable_line(line: &str) -> Option<RootCause> {
    let (class, message) = match line.split_once(": ") {
        Some((class, message)) => (class, message),
        None => (line, ""),
    };
    let is_class = class.contains('.')
        && class.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        });
    let last = class.rsplit('.').next().unwrap_or("");
    if is_class
        && (last.ends_with("Exception") || last.ends_with("Error") || last.ends_with("Throwable"))
    {
        Some(RootCause {
            class: class.to_string(),
            message: message.trim().to_string(),
        })
    } else {
        None
    }
}

/// The REST API's error body (`{"errors": [...]}`) as one text.
fn error_text(body: &Value) -> String {
    match body.get("errors").and_then(Value::as_array) {
        Some(errors) => errors
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        None => body.to_string(),
    }
}

/// A failed REST call, its trace kept for `-v`.
#[derive(Debug)]
pub struct RestFailure {
    pub status: StatusCode,
    pub text: String,
}

impl RestFailure {
    pub fn cause(&self) -> Option<RootCause> {
        root_cause(&self.text)
    }

    /// The cause, or the first line of the answer when it holds no trace.
    pub fn summary(&self) -> String {
        match self.cause() {
            Some(cause) => cause.to_string(),
            None => self
                .text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
        }
    }
}

impl FlinkClient {
    pub fn new(url: &str, connect_timeout: Duration) -> Result<Self> {
        let base = url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || base.len() <= "https://".len()
        {
            return Err(KartError::user("bad-flink-url", format!("the Flink URL {url:?} is not an http:// or https:// address"))
                .with_hint("set KART_FLINK_URL or --flink-url to the JobManager's REST address, e.g. http://localhost:18081"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| {
                KartError::infra("internal", format!("cannot build an HTTP client: {e}"))
            })?;
        Ok(Self {
            base,
            http,
            connect_timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The web UI's page for a job.
    pub fn web_url(&self, job_id: &str, state: &str) -> String {
        let section = if is_active_state(state) {
            "running"
        } else {
            "completed"
        };
        format!("{}/#/job/{section}/{job_id}/overview", self.base)
    }

    fn unreachable(&self, within: Duration, error: &reqwest::Error) -> KartError {
        let cause = error_chain(error);
        KartError::infra(
            "flink-unreachable",
            format!(
                "cannot reach the Flink JobManager at {} within {}: {cause}",
                self.base,
                humantime::format_duration(within)
            ),
        )
        .with_hint(
            "start Flink (the workshop's `docker compose up -d jobmanager taskmanager`), or point KART_FLINK_URL / --flink-url at its REST address",
        )
    }

    /// One REST call: the JSON answer, or the REST API's error. Transport
    /// failures (unreachable, no answer within `timeout`) are errors of
    /// their own, naming the URL and the deadline.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<std::result::Result<Value, RestFailure>> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(path, timeout, &e))?;
        self.answer(path, timeout, response).await
    }

    fn transport_error(&self, path: &str, timeout: Duration, error: &reqwest::Error) -> KartError {
        if error.is_connect() {
            return self.unreachable(self.connect_timeout, error);
        }
        if error.is_timeout() {
            return KartError::infra(
                "flink-timeout",
                format!("the Flink JobManager at {} did not answer {path} within {}", self.base, humantime::format_duration(timeout)),
            )
            .with_hint("the JobManager may be overloaded or not a JobManager at all; check KART_FLINK_URL / --flink-url");
        }
        KartError::infra(
            "flink-error",
            format!(
                "request to the Flink JobManager at {}{path} failed: {}",
                self.base,
                error_chain(error)
            ),
        )
    }

    async fn answer(
        &self,
        path: &str,
        timeout: Duration,
        response: reqwest::Response,
    ) -> Result<std::result::Result<Value, RestFailure>> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(path, timeout, &e))?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(_) if status.is_success() => {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }
                Err(_) => json!({ "errors": [String::from_utf8_lossy(&bytes)] }),
            }
        };
        if status.is_success() {
            Ok(Ok(body))
        } else {
            Ok(Err(RestFailure {
                status,
                text: error_text(&body),
            }))
        }
    }

    /// A call whose REST failure is an infrastructure error.
    async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        self.call(method, path, body, timeout)
            .await?
            .map_err(|failure| self.rest_error(path, &failure))
    }

    fn rest_error(&self, path: &str, failure: &RestFailure) -> KartError {
        KartError::infra(
            "flink-error",
            format!(
                "the Flink JobManager at {} refused {path} ({}): {}",
                self.base,
                failure.status,
                failure.summary()
            ),
        )
    }

    fn short(&self) -> Duration {
        self.connect_timeout + Duration::from_secs(20)
    }

    /// Checks that a JobManager answers, within the connect timeout.
    pub async fn probe(&self) -> Result<Value> {
        let response = self
            .http
            .get(format!("{}/overview", self.base))
            .timeout(self.connect_timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(self.connect_timeout, &e))?;
        let value = self
            .answer("/overview", self.connect_timeout, response)
            .await?
            .map_err(|f| self.rest_error("/overview", &f))?;
        if value.get("flink-version").is_none() {
            return Err(KartError::infra("flink-unreachable", format!("{} answers, but not as a Flink JobManager", self.base))
                .with_hint("point KART_FLINK_URL / --flink-url at the JobManager's REST address (the workshop's is http://localhost:18081)"));
        }
        Ok(value)
    }

    pub async fn jobs(&self) -> Result<Vec<JobOverview>> {
        let value = self
            .call_ok(Method::GET, "/jobs/overview", None, self.short())
            .await?;
        let jobs = value
            .get("jobs")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        serde_json::from_value(jobs).map_err(|e| {
            KartError::infra(
                "flink-error",
                format!("unexpected /jobs/overview answer from {}: {e}", self.base),
            )
        })
    }

    /// `/jobs/ID`, or None when the JobManager does not know the job.
    pub async fn job(&self, id: &str) -> Result<Option<Value>> {
        let path = format!("/jobs/{id}");
        match self.call(Method::GET, &path, None, self.short()).await? {
            Ok(value) => Ok(Some(value)),
            Err(failure) if failure.status == StatusCode::NOT_FOUND => Ok(None),
            Err(failure) => Err(self.rest_error(&path, &failure)),
        }
    }

    /// The job's root exception trace, if it has one.
    pub async fn exception_trace(&self, id: &str) -> Result<Option<String>> {
        let path = format!("/jobs/{id}/exceptions");
        match self.call(Method::GET, &path, None, self.short()).await? {
            Ok(value) => {
                let root = value
                    .get("root-exception")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let history = value
                    .pointer("/exceptionHistory/entries/0/stacktrace")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ok(root.or(history).filter(|t| !t.trim().is_empty()))
            }
            Err(failure) if failure.status == StatusCode::NOT_FOUND => Ok(None),
            Err(failure) => Err(self.rest_error(&path, &failure)),
        }
    }

    /// The id of an uploaded jar whose file name starts with `prefix`.
    async fn find_jar(&self, prefix: &str) -> Result<Option<String>> {
        let value = self
            .call_ok(Method::GET, "/jars", None, self.short())
            .await?;
        let files: Vec<JarFile> = serde_json::from_value(
            value
                .get("files")
                .cloned()
                .unwrap_or(Value::Array(Vec::new())),
        )
        .map_err(|e| {
            KartError::infra(
                "flink-error",
                format!("unexpected /jars answer from {}: {e}", self.base),
            )
        })?;
        Ok(files
            .into_iter()
            .find(|f| f.name.starts_with(prefix))
            .map(|f| f.id))
    }

    async fn upload(&self, file_name: &str, bytes: Vec<u8>) -> Result<String> {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_string())
            .mime_str("application/x-java-archive")
            .map_err(|e| KartError::infra("internal", e.to_string()))?;
        let form = reqwest::multipart::Form::new().part("jarfile", part);
        // Large shaded jars over a slow link to a remote JobManager.
        let timeout = self.connect_timeout + Duration::from_secs(600);
        let response = self
            .http
            .post(format!("{}/jars/upload", self.base))
            .multipart(form)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.transport_error("/jars/upload", timeout, &e))?;
        let value = self
            .answer("/jars/upload", timeout, response)
            .await?
            .map_err(|f| self.rest_error("/jars/upload", &f))?;
        // The answer names the stored file; its file name is the jar id.
        value
            .get("filename")
            .and_then(Value::as_str)
            .and_then(|path| path.rsplit('/').next())
            .map(str::to_string)
            .ok_or_else(|| {
                KartError::infra(
                    "flink-error",
                    format!("unexpected /jars/upload answer from {}: {value}", self.base),
                )
            })
    }

    /// Runs an uploaded jar's main method on the JobManager.
    async fn run(
        &self,
        jar_id: &str,
        body: Value,
    ) -> Result<std::result::Result<String, RestFailure>> {
        let path = format!("/jars/{jar_id}/run");
        // The job's main method runs inside this request.
        let timeout = self.connect_timeout + Duration::from_secs(180);
        match self.call(Method::POST, &path, Some(body), timeout).await? {
            Ok(value) => match value.get("jobid").and_then(Value::as_str) {
                Some(id) => Ok(Ok(id.to_string())),
                None => Err(KartError::infra(
                    "flink-error",
                    format!("unexpected {path} answer from {}: {value}", self.base),
                )),
            },
            Err(failure) => Ok(Err(failure)),
        }
    }

    /// Asks Flink to cancel a job. False when it had ended already.
    pub async fn cancel(&self, id: &str) -> Result<bool> {
        let path = format!("/jobs/{id}?mode=cancel");
        match self.call(Method::PATCH, &path, None, self.short()).await? {
            Ok(_) => Ok(true),
            Err(failure)
                if matches!(failure.status, StatusCode::NOT_FOUND | StatusCode::CONFLICT) =>
            {
                Ok(false)
            }
            Err(failure) => Err(self.rest_error(&path, &failure)),
        }
    }

    /// Stops a job with a savepoint (in the cluster's savepoint directory)
    /// and returns where the savepoint is. A job that cannot take one fails
    /// here with Flink's reason.
    pub async fn stop_with_savepoint(
        &self,
        id: &str,
        within: Duration,
    ) -> Result<std::result::Result<String, String>> {
        let path = format!("/jobs/{id}/stop");
        let trigger = match self
            .call(
                Method::POST,
                &path,
                Some(json!({ "drain": false })),
                self.short(),
            )
            .await?
        {
            Ok(value) => value
                .get("request-id")
                .and_then(Value::as_str)
                .map(str::to_string),
            Err(failure) => return Ok(Err(failure.summary())),
        };
        let Some(trigger) = trigger else {
            return Ok(Err("the JobManager returned no savepoint request id".into()));
        };
        let status_path = format!("/jobs/{id}/savepoints/{trigger}");
        let started = Instant::now();
        loop {
            let value = self
                .call_ok(Method::GET, &status_path, None, self.short())
                .await?;
            if value.pointer("/status/id").and_then(Value::as_str) == Some("COMPLETED") {
                if let Some(location) = value.pointer("/operation/location").and_then(Value::as_str)
                {
                    return Ok(Ok(location.to_string()));
                }
                let trace = value
                    .pointer("/operation/failure-cause/stack-trace")
                    .and_then(Value::as_str)
                    .unwrap_or("the savepoint failed without a reason");
                let reason = root_cause(trace)
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| trace.lines().next().unwrap_or("").to_string());
                return Ok(Err(reason));
            }
            if started.elapsed() >= within {
                return Ok(Err(format!(
                    "no savepoint within {}",
                    humantime::format_duration(within)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until a job reaches a terminal state; its last state.
    pub async fn wait_terminal(&self, id: &str, within: Duration) -> Result<Option<String>> {
        let started = Instant::now();
        loop {
            let state = self
                .job(id)
                .await?
                .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_string));
            match &state {
                Some(s) if is_active_state(s) && started.elapsed() < within => {
                    tokio::time::sleep(POLL).await
                }
                _ => return Ok(state),
            }
        }
    }

    /// The JobManager's log file.
    pub async fn jobmanager_log(&self) -> Result<String> {
        let path = "/jobmanager/log";
        let timeout = self.connect_timeout + Duration::from_secs(60);
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(path, timeout, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.transport_error(path, timeout, &e))?;
        if !status.is_success() {
            return Err(KartError::infra("flink-error", format!("the JobManager at {} has no log to show ({status})", self.base))
                .with_hint("its log file is only served when it was started with log.file set (Flink's scripts and images do that)"));
        }
        Ok(text)
    }
}

/// reqwest's errors say little at the top ("error sending request for url
/// …"); the innermost cause says what happened ("Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut innermost = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        innermost = cause.to_string();
        source = cause.source();
    }
    innermost
}

/// A jar on disk, checked and hashed.
pub struct LocalJar {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl LocalJar {
    pub fn read(path: &Path) -> Result<LocalJar> {
        let missing = || {
            KartError::user("jar-missing", format!("no jar at {}", path.display()))
                .with_hint("build it first (the workshop: `./gradlew :flink-inventory:shadowJar`, then build/libs/…-all.jar), or fix the --jar path")
        };
        let meta = std::fs::metadata(path).map_err(|_| missing())?;
        if !meta.is_file() {
            return Err(missing());
        }
        let bytes = std::fs::read(path)
            .map_err(|e| KartError::infra("io", format!("cannot read {}: {e}", path.display())))?;
        // Every jar is a zip: local file header, or an empty archive's end record.
        if !(bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")) {
            return Err(KartError::user(
                "not-a-jar",
                format!("{} is not a jar (not a zip archive)", path.display()),
            )
            .with_hint(
                "pass the jar the build produced (for a Gradle shadow build: build/libs/*-all.jar)",
            ));
        }
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Ok(LocalJar {
            path: path.to_path_buf(),
            bytes,
            sha256,
        })
    }

    /// The name kart uploads it under: `<sha256-12>-<file>.jar`, so "this
    /// content is already uploaded" is visible in `/jars` itself.
    pub fn upload_name(&self) -> String {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job".into());
        let stem: String = stem
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}-{stem}.jar", &self.sha256[..12])
    }
}

/// `--pass-env VAR,…` as program arguments: `--var-name value`.
/// The values come from kart's settings (env files, environment); the
/// `*_DOCKER` variant is taken when the JobManager is the workshop's
/// container, which reaches Kafka and Postgres by their container names.
pub fn pass_env_args(vars: &[String], settings: &Settings, docker: bool) -> Result<Vec<PassedArg>> {
    let mut out = Vec::new();
    for var in vars.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let docker_name = format!("{var}_DOCKER");
        let chosen = if docker
            && settings
                .setting(&docker_name)
                .is_some_and(|s| !s.value.is_empty())
        {
            docker_name
        } else {
            var.to_string()
        };
        let Some(setting) = settings.setting(&chosen).or_else(|| settings.setting(var)) else {
            return Err(KartError::user(
                "unknown-setting",
                format!("--pass-env {var}: kart has no setting {var}"),
            )
            .with_hint("`kart config` lists the settings kart knows"));
        };
        let value = settings.get(&setting.name)?.to_string();
        out.push(PassedArg {
            flag: format!("--{}", var.to_lowercase().replace('_', "-")),
            value,
            secret: is_secret(var),
            from: setting.name.clone(),
        });
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct PassedArg {
    pub flag: String,
    pub value: String,
    pub secret: bool,
    /// The setting the value came from (`KAFKA_BOOTSTRAP_SERVERS_DOCKER`, …).
    pub from: String,
}

/// Whether the JobManager at `url` is the workshop's compose container (local
/// mode, the compose file's published port), whose jobs reach Kafka and
/// Postgres by container name.
pub fn is_compose_jobmanager(url: &str, mode: Mode, port_offset: i64) -> bool {
    if mode != Mode::Local {
        return false;
    }
    let port = 18081 + port_offset;
    let url = url.trim_end_matches('/');
    [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ]
    .iter()
    .any(|u| u == url)
}

/// What `job deploy --jar` is asked to do.
pub struct DeployRequest {
    pub jar: LocalJar,
    pub entry_class: String,
    pub name: String,
    pub args: Vec<String>,
    pub passed: Vec<PassedArg>,
    pub parallelism: Option<u32>,
    pub savepoint: Option<String>,
    pub replace: bool,
    pub start_timeout: Duration,
}

/// How a deploy ended (`job deploy -o json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    pub name: String,
    pub engine: &'static str,
    /// `started`, `already-running` or `starting` (not running yet at the deadline).
    pub result: &'static str,
    pub job_id: String,
    pub flink_name: String,
    pub state: String,
    pub web_url: String,
    pub flink_url: String,
    pub jar_id: Option<String>,
    /// False when the same content was already on the JobManager.
    pub uploaded: bool,
    pub replaced: Vec<ReplacedJob>,
    /// The savepoint the job started from.
    pub savepoint: Option<String>,
    pub started_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplacedJob {
    pub job_id: String,
    /// `stopped` (with a savepoint) or `canceled`.
    pub how: &'static str,
    pub savepoint: Option<String>,
}

/// Progress for the command to print (kept out of this layer's output).
pub trait Progress {
    fn status(&self, verb: &str, message: &str);
    fn warn(&self, message: &str);
    fn debug(&self, message: &str);
}

impl Progress for crate::printer::Printer {
    fn status(&self, verb: &str, message: &str) {
        crate::printer::Printer::status(self, verb, message)
    }
    fn warn(&self, message: &str) {
        crate::printer::Printer::warn(self, message)
    }
    fn debug(&self, message: &str) {
        crate::printer::Printer::debug(self, message)
    }
}

/// Deploys a jar by name: reports a running job of that name and leaves it
/// alone, unless `replace` (stop it with a savepoint when it can take one,
/// else cancel it, then start from that savepoint).
pub async fn deploy(
    client: &FlinkClient,
    state: &FlinkState,
    request: DeployRequest,
    progress: &dyn Progress,
) -> Result<DeployReport> {
    client.probe().await?;
    let records = state.jobs();
    let running: Vec<JobOverview> = client
        .jobs()
        .await?
        .into_iter()
        .filter(|j| j.is_active() && matches_name(&request.name, j, &records))
        .collect();
    let mut replaced = Vec::new();
    let mut savepoint = request.savepoint.clone();
    if let Some(first) = running.first() {
        if !request.replace {
            return Ok(DeployReport {
                name: request.name.clone(),
                engine: "flink",
                result: "already-running",
                job_id: first.jid.clone(),
                flink_name: first.name.clone(),
                state: first.state.to_lowercase(),
                web_url: client.web_url(&first.jid, &first.state),
                flink_url: client.url().to_string(),
                jar_id: records
                    .get(&request.name)
                    .filter(|r| r.job_id == first.jid)
                    .map(|r| r.jar_id.clone()),
                uploaded: false,
                replaced,
                savepoint: None,
                started_at: Some(first.start_time),
            });
        }
        for job in &running {
            progress.status(
                "Stopping",
                &format!("{} (job {}) with a savepoint", request.name, job.jid),
            );
            match client
                .stop_with_savepoint(&job.jid, Duration::from_secs(120))
                .await?
            {
                Ok(location) => {
                    progress.status("Savepoint", &location);
                    client
                        .wait_terminal(&job.jid, Duration::from_secs(60))
                        .await?;
                    savepoint.get_or_insert(location.clone());
                    replaced.push(ReplacedJob {
                        job_id: job.jid.clone(),
                        how: "stopped",
                        savepoint: Some(location),
                    });
                }
                Err(reason) => {
                    progress.warn(&format!(
                        "job {} could not take a savepoint ({reason}); cancelling it instead, so the new job starts without its state",
                        job.jid
                    ));
                    client.cancel(&job.jid).await?;
                    client
                        .wait_terminal(&job.jid, Duration::from_secs(60))
                        .await?;
                    replaced.push(ReplacedJob {
                        job_id: job.jid.clone(),
                        how: "canceled",
                        savepoint: None,
                    });
                }
            }
        }
    }

    let prefix = format!("{}-", &request.jar.sha256[..12]);
    let (jar_id, uploaded) = match client.find_jar(&prefix).await? {
        Some(id) => {
            progress.debug(&format!(
                "{} is already on the JobManager as {id}",
                request.jar.path.display()
            ));
            (id, false)
        }
        None => {
            let size = request.jar.bytes.len();
            progress.status(
                "Uploading",
                &format!(
                    "{} ({:.1} MB)",
                    request.jar.path.display(),
                    size as f64 / 1e6
                ),
            );
            let name = request.jar.upload_name();
            let id = client.upload(&name, request.jar.bytes.clone()).await?;
            (id, true)
        }
    };
    state.record_jar(
        &request.jar.sha256,
        JarRecord {
            jar_id: jar_id.clone(),
            file: request.jar.path.display().to_string(),
            flink_url: client.url().to_string(),
            uploaded_at: now_ms(),
        },
    )?;

    let mut program_args = request.args.clone();
    for passed in &request.passed {
        program_args.push(passed.flag.clone());
        program_args.push(passed.value.clone());
    }
    let mut body = json!({ "entryClass": request.entry_class, "programArgsList": program_args });
    if let Some(p) = request.parallelism {
        body["parallelism"] = json!(p);
    }
    if let Some(path) = &savepoint {
        body["savepointPath"] = json!(path);
    }
    progress.status(
        "Running",
        &format!(
            "{} from {}{}",
            request.entry_class,
            jar_id,
            savepoint
                .as_ref()
                .map(|s| format!(" (from savepoint {s})"))
                .unwrap_or_default()
        ),
    );
    let job_id = match client.run(&jar_id, body).await? {
        Ok(id) => id,
        Err(failure) => return Err(run_error(&request, &failure, progress)),
    };
    state.record_job(
        &request.name,
        JobRecord {
            job_id: job_id.clone(),
            jar_id: jar_id.clone(),
            entry_class: request.entry_class.clone(),
            flink_url: client.url().to_string(),
            deployed_at: now_ms(),
        },
    )?;
    progress.status("Submitted", &format!("job {job_id}; waiting until it runs"));
    let (result, details) = wait_running(
        client,
        &request.name,
        &job_id,
        request.start_timeout,
        progress,
    )
    .await?;
    let state_now = details
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN")
        .to_string();
    Ok(DeployReport {
        name: request.name.clone(),
        engine: "flink",
        result,
        flink_name: details
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        web_url: client.web_url(&job_id, &state_now),
        state: state_now.to_lowercase(),
        job_id,
        flink_url: client.url().to_string(),
        jar_id: Some(jar_id),
        uploaded,
        replaced,
        savepoint,
        started_at: details.get("start-time").and_then(Value::as_i64),
    })
}

/// Turns a failed `/jars/ID/run` into what the student must fix.
fn run_error(request: &DeployRequest, failure: &RestFailure, progress: &dyn Progress) -> KartError {
    progress.debug(&format!(
        "the JobManager's answer ({}):\n{}",
        failure.status, failure.text
    ));
    let class = &request.entry_class;
    let jar = request.jar.path.display();
    if failure.text.contains("ClassNotFoundException") || failure.text.contains("entry point class")
    {
        return KartError::user("class-not-found", format!("the main class {class} was not found in {jar}"))
            .with_hint(format!("--class takes the fully qualified name of the class with the main method; `jar tf {jar} | grep '\\.class$'` lists the jar's classes"));
    }
    let cause = failure.summary();
    if failure.text.contains("The main method caused an error") {
        return KartError::user("job-main-failed", format!("the main method of {class} failed: {cause}"))
            .with_hint("fix the job (its arguments: --arg, --pass-env) and deploy again; `-v` shows the whole stack trace");
    }
    if failure.text.contains("savepoint") || failure.text.contains("Savepoint") {
        return KartError::user("savepoint-failed", format!("the job could not start from the savepoint: {cause}"))
            .with_hint("check the --savepoint path (it must be readable by the JobManager), or deploy without it");
    }
    if failure.status.is_server_error() && failure.cause().is_none() {
        return KartError::infra(
            "flink-error",
            format!("the Flink JobManager could not run {class}: {cause}"),
        );
    }
    KartError::user(
        "job-run-failed",
        format!("the Flink JobManager could not run {class}: {cause}"),
    )
    .with_hint("`-v` shows the JobManager's whole answer")
}

/// Polls a freshly submitted job until all its tasks run. A job that fails,
/// or restarts after failing, ends the wait with its root cause.
async fn wait_running(
    client: &FlinkClient,
    name: &str,
    job_id: &str,
    within: Duration,
    progress: &dyn Progress,
) -> Result<(&'static str, Value)> {
    let started = Instant::now();
    loop {
        let details = client.job(job_id).await?.unwrap_or(Value::Null);
        let state = details
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("INITIALIZING");
        let vertices_running = details
            .get("vertices")
            .and_then(Value::as_array)
            .is_some_and(|vs| {
                !vs.is_empty()
                    && vs.iter().all(|v| {
                        matches!(
                            v.get("status").and_then(Value::as_str),
                            Some("RUNNING" | "FINISHED")
                        )
                    })
            });
        match state {
            "RUNNING" if vertices_running => return Ok(("started", details)),
            "FINISHED" => {
                progress.warn(&format!("{name} finished right away (a bounded job?)"));
                return Ok(("started", details));
            }
            "FAILED" | "FAILING" | "RESTARTING" | "CANCELED" | "CANCELLING" => {
                let trace = client.exception_trace(job_id).await?;
                if let Some(trace) = &trace {
                    progress.debug(&format!("job {job_id}'s exception:\n{trace}"));
                }
                let cause = trace.as_deref().and_then(root_cause).map(|c| c.to_string());
                let what = match state {
                    "RESTARTING" => "keeps failing (Flink restarts it)",
                    "CANCELED" | "CANCELLING" => "was cancelled while starting",
                    _ => "failed at start",
                };
                let message = match cause {
                    Some(cause) => format!("{name} (job {job_id}) {what}: {cause}"),
                    None => format!("{name} (job {job_id}) {what}"),
                };
                let hint = if state == "RESTARTING" {
                    format!("`kart job stop {name}` stops it; `kart job logs {name}` shows the JobManager's log")
                } else {
                    format!("`kart job logs {name}` shows the JobManager's log; fix the job and deploy again")
                };
                return Err(KartError::user("job-failed", message).with_hint(hint));
            }
            _ => {}
        }
        if started.elapsed() >= within {
            progress.warn(&format!(
                "{name} (job {job_id}) is still {} after {}; follow it with `kart job status {name}`",
                state.to_lowercase(),
                humantime::format_duration(within)
            ));
            return Ok(("starting", details));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The Flink jobs a name or id stands for, newest first.
pub fn find(
    name: &str,
    jobs: &[JobOverview],
    records: &BTreeMap<String, JobRecord>,
) -> Vec<JobOverview> {
    let mut found: Vec<JobOverview> = jobs
        .iter()
        .filter(|j| matches_name(name, j, records))
        .cloned()
        .collect();
    found.sort_by(|a, b| {
        b.is_active()
            .cmp(&a.is_active())
            .then(b.start_time.cmp(&a.start_time))
    });
    found
}

/// The workshop's Flink inventory job, if it runs on this JobManager; Err
/// (why) when the JobManager cannot be asked within `within` — the caller
/// decides what that means.
pub async fn workshop_inventory_running(
    url: &str,
    within: Duration,
) -> std::result::Result<Option<JobOverview>, String> {
    let client = FlinkClient::new(url, within).map_err(|e| e.message)?;
    let jobs = tokio::time::timeout(within, client.jobs())
        .await
        .map_err(|_| {
            format!(
                "no answer from {url} within {}",
                humantime::format_duration(within)
            )
        })?
        .map_err(|e| e.message)?;
    Ok(jobs
        .into_iter()
        .find(|j| j.is_active() && j.name == WORKSHOP_INVENTORY_JOB))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cause_is_the_innermost_top_level_cause() {
        let trace = "org.apache.flink.runtime.rest.handler.RestHandlerException: Could not execute application.\n\
\tat org.apache.flink.runtime.webmonitor.handlers.JarRunHandler.lambda$handleRequest$1(JarRunHandler.java:114)\n\
Caused by: org.apache.flink.client.program.ProgramInvocationException: The main method caused an error: boom here\n\
\tat org.apache.flink.client.program.PackagedProgram.callMainMethod(PackagedProgram.java:373)\n\
\tSuppressed: java.io.IOException: not this one\n\
\t\tCaused by: java.lang.RuntimeException: nor this\n\
Caused by: java.lang.IllegalStateException: boom here\n\
\tat kart.testjobs.ThrowingJob.main(ThrowingJob.java:11)\n\
\t... 7 more\n";
        let cause = root_cause(trace).unwrap();
        assert_eq!(
            cause,
            RootCause {
                class: "java.lang.IllegalStateException".into(),
                message: "boom here".into()
            }
        );
        assert_eq!(cause.short_class(), "IllegalStateException");
    }

    #[test]
    fn root_cause_without_causes_is_the_first_exception_and_keeps_multiline_messages() {
        let trace = "<Exception on server side:\norg.apache.flink.runtime.JobException: Recovery is suppressed\nsecond line\n\tat x.y(Z.java:1)\n";
        let cause = root_cause(trace).unwrap();
        assert_eq!(cause.class, "org.apache.flink.runtime.JobException");
        assert_eq!(cause.message, "Recovery is suppressed\nsecond line");
        assert_eq!(root_cause("Internal server error."), None);
        let bare = root_cause("java.lang.NullPointerException\n\tat a.b(C.java:1)").unwrap();
        assert_eq!(bare.to_string(), "java.lang.NullPointerException");
    }

    #[test]
    fn names_match_by_id_record_or_flink_name() {
        let job = JobOverview {
            jid: "0ec52a7fd281110533fa9fdfbcea0938".into(),
            name: "Flink's name".into(),
            state: "RUNNING".into(),
            start_time: 1,
            end_time: -1,
            tasks: BTreeMap::new(),
        };
        let mut records = BTreeMap::new();
        records.insert(
            "mine".to_string(),
            JobRecord {
                job_id: job.jid.clone(),
                jar_id: "j".into(),
                entry_class: "C".into(),
                flink_url: "u".into(),
                deployed_at: 0,
            },
        );
        assert!(matches_name("mine", &job, &records));
        assert!(matches_name("Flink's name", &job, &records));
        assert!(matches_name(&job.jid, &job, &records));
        assert!(!matches_name("other", &job, &records));
        assert_eq!(display_name(&job, &records), "mine");
        assert!(looks_like_job_id(&job.jid));
        assert!(!looks_like_job_id("inventory"));
    }

    #[test]
    fn compose_jobmanager_is_the_local_published_port() {
        assert!(is_compose_jobmanager(
            "http://localhost:18081/",
            Mode::Local,
            0
        ));
        assert!(is_compose_jobmanager(
            "http://127.0.0.1:18091",
            Mode::Local,
            10
        ));
        assert!(!is_compose_jobmanager(
            "http://localhost:18581",
            Mode::Local,
            0
        ));
        assert!(!is_compose_jobmanager(
            "http://localhost:18081",
            Mode::Remote,
            0
        ));
    }

    #[test]
    fn pass_env_takes_the_docker_variant_for_the_compose_jobmanager() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = crate::config::ResolveInputs {
            mode: Mode::Local,
            project_dir: dir.path().to_path_buf(),
            env_files: Vec::new(),
            process_env: [("POSTGRES_PASSWORD".to_string(), "pw".to_string())]
                .into_iter()
                .collect(),
            flags: Vec::new(),
        };
        let settings = Settings::resolve(&inputs).unwrap();
        let vars = vec![
            "KAFKA_BOOTSTRAP_SERVERS".to_string(),
            "POSTGRES_PASSWORD".to_string(),
        ];
        let host = pass_env_args(&vars, &settings, false).unwrap();
        assert_eq!(
            (host[0].flag.as_str(), host[0].value.as_str()),
            ("--kafka-bootstrap-servers", "localhost:19092")
        );
        assert_eq!(
            (
                host[1].flag.as_str(),
                host[1].value.as_str(),
                host[1].secret
            ),
            ("--postgres-password", "pw", true)
        );
        let docker = pass_env_args(&vars, &settings, true).unwrap();
        assert_eq!(docker[0].value, "redpanda:9092");
        assert_eq!(docker[0].from, "KAFKA_BOOTSTRAP_SERVERS_DOCKER");
        // No *_DOCKER variant: the plain value.
        assert_eq!(docker[1].value, "pw");
        assert!(pass_env_args(&["NO_SUCH".to_string()], &settings, false).is_err());
    }

    #[test]
    fn upload_names_start_with_the_content_hash() {
        let jar = LocalJar {
            path: PathBuf::from("/x/my job.jar"),
            bytes: vec![],
            sha256: "0123456789abcdef".repeat(4),
        };
        assert_eq!(jar.upload_name(), "0123456789ab-my_job.jar");
    }
}
