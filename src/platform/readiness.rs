//! Is a service usable yet? Probed from this machine through the published
//! ports, the way kart itself will use the service: a Kafka metadata
//! request, `SELECT 1`, an HTTP GET or a TCP connect. A container's own
//! healthcheck is waited for as well when it has one (the Docker backend).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::compose::ServiceSpec;
use crate::db::PgSettings;
use crate::exit::KartError;
use crate::kafka::{KafkaSettings, KartClientContext};
use crate::printer::Printer;

/// How kart decides that a service is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A Kafka metadata request to `KAFKA_BOOTSTRAP_SERVERS`.
    Kafka,
    /// `SELECT 1` on the maintenance database with the configured user.
    Postgres,
    /// `GET path` on the first published port answers below 500.
    Http(String),
    /// The first published port accepts a connection.
    Tcp,
    /// Only the container's own healthcheck (or nothing: started is enough).
    Container,
}

impl Probe {
    pub fn describe(&self) -> String {
        match self {
            Probe::Kafka => "Kafka metadata".into(),
            Probe::Postgres => "SELECT 1".into(),
            Probe::Http(path) => format!("HTTP GET {path}"),
            Probe::Tcp => "TCP connect".into(),
            Probe::Container => "container state".into(),
        }
    }
}

/// The ports kart's own clients use, to tell which service is the broker
/// and which the database.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    pub kafka_port: Option<u16>,
    pub postgres_port: Option<u16>,
}

impl Roles {
    /// From `KAFKA_BOOTSTRAP_SERVERS` (its loopback entries) and
    /// `POSTGRES_HOST`/`POSTGRES_PORT` when the host is this machine.
    pub fn from_settings(kafka: Option<&KafkaSettings>, pg: Option<&PgSettings>) -> Roles {
        let local = |host: &str| matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]" | "0.0.0.0");
        let kafka_port = kafka.and_then(|k| {
            k.bootstrap.split(',').find_map(|entry| {
                let (host, port) = entry.trim().rsplit_once(':')?;
                local(host).then(|| port.parse().ok()).flatten()
            })
        });
        let postgres_port = pg.and_then(|p| p.hosts.iter().any(|h| local(h)).then_some(p.port));
        Roles { kafka_port, postgres_port }
    }

    /// A service's probe: its `io.kart.probe` label, else its role by
    /// published port, else a TCP connect when it publishes a port.
    pub fn probe_for(&self, service: &ServiceSpec) -> Probe {
        if let Some(label) = service.labels.get("io.kart.probe") {
            return match label.as_str() {
                "kafka" => Probe::Kafka,
                "postgres" => Probe::Postgres,
                "tcp" => Probe::Tcp,
                other => match other.strip_prefix("http:") {
                    Some(path) => Probe::Http(if path.is_empty() { "/".into() } else { path.into() }),
                    None => Probe::Container,
                },
            };
        }
        let publishes = |port: Option<u16>| port.is_some_and(|p| service.ports.iter().any(|s| s.host_port == p));
        if publishes(self.kafka_port) {
            Probe::Kafka
        } else if publishes(self.postgres_port) {
            Probe::Postgres
        } else if service.healthcheck.is_some() || service.ports.is_empty() {
            Probe::Container
        } else {
            Probe::Tcp
        }
    }
}

/// One answer of a probe.
#[derive(Debug)]
pub enum ProbeResult {
    Ready,
    /// Not yet, and why (shown at the deadline).
    NotYet(String),
    /// Waiting longer will not help (wrong password).
    Fatal(KartError),
}

/// Runs probes; holds the clients between attempts.
pub struct Prober {
    kafka: Option<KafkaSettings>,
    pg: Option<PgSettings>,
    printer: Printer,
    consumer: tokio::sync::Mutex<Option<Arc<BaseConsumer<KartClientContext>>>>,
}

impl Prober {
    pub fn new(kafka: Option<KafkaSettings>, pg: Option<PgSettings>, printer: Printer) -> Self {
        // Each attempt is short: the overall deadline is --wait-timeout.
        let pg = pg.map(|mut pg| {
            pg.connect_timeout = Duration::from_secs(2);
            pg
        });
        Prober { kafka, pg, printer, consumer: tokio::sync::Mutex::new(None) }
    }

    pub async fn probe(&self, probe: &Probe, service: &ServiceSpec) -> ProbeResult {
        match probe {
            Probe::Kafka => self.kafka().await,
            Probe::Postgres => self.postgres().await,
            Probe::Http(path) => match first_port(service) {
                Some((host, port)) => http_get(&host, port, path).await,
                None => ProbeResult::Ready,
            },
            Probe::Tcp => match first_port(service) {
                Some((host, port)) => match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect((host.as_str(), port))).await {
                    Ok(Ok(_)) => ProbeResult::Ready,
                    Ok(Err(e)) => ProbeResult::NotYet(format!("{host}:{port}: {e}")),
                    Err(_) => ProbeResult::NotYet(format!("{host}:{port}: no answer")),
                },
                None => ProbeResult::Ready,
            },
            Probe::Container => ProbeResult::Ready,
        }
    }

    async fn kafka(&self) -> ProbeResult {
        let Some(settings) = &self.kafka else {
            return ProbeResult::NotYet("KAFKA_BOOTSTRAP_SERVERS is not set".into());
        };
        let consumer = {
            let mut slot = self.consumer.lock().await;
            if slot.is_none() {
                let context = KartClientContext::new(self.printer.clone());
                let mut config = settings.client_config();
                config.set("client.id", "kart-readiness");
                match config.create_with_context::<_, BaseConsumer<KartClientContext>>(context) {
                    Ok(c) => *slot = Some(Arc::new(c)),
                    Err(e) => return ProbeResult::Fatal(KartError::infra("kafka-client", format!("cannot create a Kafka client: {e}"))),
                }
            }
            slot.clone().expect("set above")
        };
        let answer = tokio::task::spawn_blocking(move || {
            let result = consumer.fetch_metadata(None, Duration::from_secs(1));
            let auth = consumer.context().auth_failed();
            let last = consumer.context().last_error();
            (result.map(|m| m.brokers().len()), auth, last)
        })
        .await;
        match answer {
            Ok((_, true, _)) => ProbeResult::Fatal(settings.auth_failed()),
            Ok((Ok(brokers), _, _)) if brokers > 0 => ProbeResult::Ready,
            Ok((Ok(_), _, _)) => ProbeResult::NotYet("the broker lists no brokers yet".into()),
            Ok((Err(e), _, last)) => ProbeResult::NotYet(last.unwrap_or_else(|| e.to_string())),
            Err(e) => ProbeResult::NotYet(e.to_string()),
        }
    }

    async fn postgres(&self) -> ProbeResult {
        let Some(pg) = &self.pg else {
            return ProbeResult::NotYet("POSTGRES_HOST is not set".into());
        };
        match pg.connect_maintenance().await {
            Ok(client) => match client.simple_query("SELECT 1").await {
                Ok(_) => ProbeResult::Ready,
                Err(e) => ProbeResult::NotYet(crate::db::db_message(&e)),
            },
            Err(e) if e.code == "postgres-auth-failed" => ProbeResult::Fatal(e.with_hint(
                "the database accepted no login with POSTGRES_USER/POSTGRES_PASSWORD; if its data was created with other credentials, \
                 `kart platform stop --volumes` deletes it (and its data)",
            )),
            Err(e) => ProbeResult::NotYet(e.message),
        }
    }
}

fn first_port(service: &ServiceSpec) -> Option<(String, u16)> {
    service.ports.iter().find(|p| p.protocol == "tcp").map(|p| {
        let host = if p.host_ip == "0.0.0.0" || p.host_ip.is_empty() { "127.0.0.1".to_string() } else { p.host_ip.clone() };
        (host, p.host_port)
    })
}

/// A GET that needs no HTTP client: the readiness question is only "does
/// it answer with a status below 500".
pub async fn http_get(host: &str, port: u16, path: &str) -> ProbeResult {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).to_string())
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(head)) => {
            let status = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
            match status {
                Some(code) if code < 500 => ProbeResult::Ready,
                Some(code) => ProbeResult::NotYet(format!("http://{host}:{port}{path} answered {code}")),
                None => ProbeResult::NotYet(format!("http://{host}:{port}{path} answered no HTTP status")),
            }
        }
        Ok(Err(e)) => ProbeResult::NotYet(format!("http://{host}:{port}{path}: {e}")),
        Err(_) => ProbeResult::NotYet(format!("http://{host}:{port}{path}: no answer")),
    }
}
