//! Kafka clients: their configuration in one place (bootstrap, SASL SCRAM,
//! deadlines), and a client context that turns librdkafka's error callbacks
//! into messages a person can act on.

pub mod admin;
pub mod producer;
pub mod reader;
pub mod tail;
pub mod topics;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Settings;
use crate::exit::{KartError, Result};
use crate::printer::Printer;

/// Everything needed to reach the cluster, resolved once from the settings.
#[derive(Clone)]
pub struct KafkaSettings {
    pub bootstrap: String,
    pub user: String,
    password: String,
    pub security_protocol: String,
    pub sasl_mechanism: String,
    pub connect_timeout: Duration,
    /// Where KAFKA_BOOTSTRAP_SERVERS came from, for hints.
    pub bootstrap_source: String,
    pub credentials_source: String,
}

impl std::fmt::Debug for KafkaSettings {
    // Hand-written so that the password can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("bootstrap", &self.bootstrap)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "" } else { "***" })
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .finish()
    }
}

impl KafkaSettings {
    pub fn from_settings(settings: &Settings, connect_timeout: Duration) -> Result<Self> {
        let bootstrap = settings.require("KAFKA_BOOTSTRAP_SERVERS")?.trim().to_string();
        let user = settings.get("KAFKA_USER")?.to_string();
        let password = settings.get("KAFKA_PASSWORD")?.to_string();
        // SASL is on exactly when both are set: the workshop's rule.
        let sasl = !user.is_empty() && !password.is_empty();
        let explicit_protocol = settings.get("KAFKA_SECURITY_PROTOCOL")?.trim().to_string();
        let security_protocol = if !explicit_protocol.is_empty() {
            explicit_protocol
        } else if sasl {
            "SASL_PLAINTEXT".into()
        } else {
            "PLAINTEXT".into()
        };
        let explicit_mechanism = settings.get("KAFKA_SASL_MECHANISM")?.trim().to_string();
        let sasl_mechanism = if explicit_mechanism.is_empty() { "SCRAM-SHA-256".into() } else { explicit_mechanism };
        let source_of = |name: &str| settings.setting(name).map(|s| s.source.location()).unwrap_or_default();
        Ok(Self {
            bootstrap,
            user,
            password,
            security_protocol,
            sasl_mechanism,
            connect_timeout,
            bootstrap_source: source_of("KAFKA_BOOTSTRAP_SERVERS"),
            credentials_source: source_of("KAFKA_PASSWORD"),
        })
    }

    pub fn uses_sasl(&self) -> bool {
        self.security_protocol.starts_with("SASL")
    }

    /// The base librdkafka configuration every kart client starts from.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        let timeout_ms = self.connect_timeout.as_millis().clamp(1000, i32::MAX as u128).to_string();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "kart")
            .set("security.protocol", &self.security_protocol)
            .set("socket.connection.setup.timeout.ms", &timeout_ms)
            // A student's broker may be starting: retry soon, but not in a tight loop.
            // Small admin requests and replies: never wait for Nagle/delayed ACKs.
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "3")
            .set_log_level(RDKafkaLogLevel::Error);
        // librdkafka's own debug contexts (e.g. `broker,security`), for
        // diagnosing a broker; it redacts passwords in what it prints.
        if let Ok(contexts) = std::env::var("KART_KAFKA_DEBUG") {
            if !contexts.trim().is_empty() {
                config.set("debug", contexts.trim()).set("log_level", "7").set_log_level(RDKafkaLogLevel::Debug);
            }
        }
        if self.uses_sasl() {
            config
                .set("sasl.mechanisms", &self.sasl_mechanism)
                .set("sasl.username", &self.user)
                .set("sasl.password", &self.password);
        }
        config
    }

    /// A consumer that reads partitions it assigns itself from start to end:
    /// read_committed, nothing committed, the end of each partition reported.
    /// librdkafka refuses `assign` without a group id; this one never joins.
    pub fn reader_config(&self, client_id: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("client.id", client_id)
            .set("group.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true");
        config
    }

    pub fn unreachable(&self, deadline: Duration, last_error: Option<&str>) -> KartError {
        let cause = last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default();
        KartError::infra(
            "kafka-unreachable",
            format!("cannot reach Kafka at {} within {}{cause}", self.bootstrap, humantime::format_duration(deadline)),
        )
        .with_hint(format!(
            "check that the broker runs (`kart platform status`) and that KAFKA_BOOTSTRAP_SERVERS (from {}) is right; raise --connect-timeout on a slow network",
            self.bootstrap_source
        ))
    }

    pub fn auth_failed(&self) -> KartError {
        KartError::infra(
            "kafka-auth-failed",
            format!("authentication failed for user {} at {} ({})", self.user, self.bootstrap, self.sasl_mechanism),
        )
        .with_hint(format!("check KAFKA_USER and KAFKA_PASSWORD (from {})", self.credentials_source))
    }
}

/// Remembers librdkafka's error callbacks: a wrong SCRAM password reaches the
/// caller only as a timeout, while the real cause arrives here.
#[derive(Clone)]
pub struct KartClientContext {
    state: Arc<Mutex<ErrorLog>>,
    printer: Printer,
}

#[derive(Default)]
struct ErrorLog {
    auth_failed: bool,
    last: Option<String>,
}

impl KartClientContext {
    /// librdkafka's logs and errors reach the printer's `-v` output.
    pub fn new(printer: Printer) -> Self {
        Self { state: Arc::default(), printer }
    }

    pub fn auth_failed(&self) -> bool {
        self.state.lock().map(|s| s.auth_failed).unwrap_or(false)
    }

    pub fn last_error(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.last.clone())
    }
}

impl ClientContext for KartClientContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.printer.debug(&format!("librdkafka {level:?} {fac}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let auth = error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication)
            || reason.contains("SASL authentication")
            || reason.contains("Authentication failed");
        if let Ok(mut state) = self.state.lock() {
            state.auth_failed |= auth;
            state.last = Some(reason.to_string());
        }
        self.printer.debug(&format!("librdkafka error: {reason}"));
    }
}

impl rdkafka::producer::ProducerContext for KartClientContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _result: &rdkafka::producer::DeliveryResult<'_>, _opaque: ()) {}
}

/// Polls `probe` until it succeeds, authentication fails or the deadline
/// passes; short slices let a bad password fail fast.
pub fn wait_until_reachable<T>(
    settings: &KafkaSettings,
    context: &KartClientContext,
    mut probe: impl FnMut(Duration) -> std::result::Result<T, KafkaError>,
) -> Result<T> {
    let started = Instant::now();
    let deadline = settings.connect_timeout;
    let mut last_error: Option<String> = None;
    loop {
        if context.auth_failed() {
            return Err(settings.auth_failed());
        }
        let remaining = deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            let last = context.last_error().or(last_error);
            return Err(settings.unreachable(deadline, last.as_deref()));
        }
        match probe(remaining.min(Duration::from_millis(250))) {
            Ok(value) => return Ok(value),
            Err(e) => last_error = Some(e.to_string()),
        }
    }
}
