//! PostgreSQL connections: the workshop's variables, a comma list of hosts
//! (read-write session wanted), `PGSSLMODE`, and kart's connect deadline.

pub mod schema;

use std::time::Duration;

use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::{SslMode, TargetSessionAttrs};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::config::Settings;
use crate::exit::{KartError, Result};

#[derive(Clone)]
pub struct PgSettings {
    pub hosts: Vec<String>,
    pub port: u16,
    pub database: String,
    pub user: String,
    password: String,
    pub ssl_mode: String,
    pub slot: String,
    pub connect_timeout: Duration,
    pub host_source: String,
    pub credentials_source: String,
}

impl std::fmt::Debug for PgSettings {
    // Hand-written so that the password can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("hosts", &self.hosts)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

impl PgSettings {
    pub fn from_settings(settings: &Settings, connect_timeout: Duration) -> Result<Self> {
        let hosts: Vec<String> = settings
            .require("POSTGRES_HOST")?
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        let port_text = settings.require("POSTGRES_PORT")?;
        let port = port_text.trim().parse::<u16>().map_err(|e| settings.bad_value("POSTGRES_PORT", &e.to_string()))?;
        let source_of = |name: &str| settings.setting(name).map(|s| s.source.location()).unwrap_or_default();
        Ok(Self {
            hosts,
            port,
            database: settings.require("POSTGRES_DB")?.to_string(),
            user: settings.require("POSTGRES_USER")?.to_string(),
            password: settings.get("POSTGRES_PASSWORD")?.to_string(),
            ssl_mode: settings.get("PGSSLMODE")?.trim().to_lowercase(),
            slot: settings.get("POSTGRES_REPLICATION_SLOT")?.to_string(),
            connect_timeout,
            host_source: source_of("POSTGRES_HOST"),
            credentials_source: source_of("POSTGRES_PASSWORD"),
        })
    }

    /// `host:port` of every host, for messages.
    pub fn endpoint(&self) -> String {
        self.hosts.iter().map(|h| format!("{h}:{}", self.port)).collect::<Vec<_>>().join(",")
    }

    fn config(&self, database: &str) -> Result<tokio_postgres::Config> {
        let mut config = tokio_postgres::Config::new();
        for host in &self.hosts {
            config.host(host);
        }
        config
            .port(self.port)
            .user(&self.user)
            .dbname(database)
            .application_name("kart")
            .connect_timeout(self.connect_timeout)
            // With several hosts (a managed primary and replica) only the
            // primary accepts writes.
            .target_session_attrs(TargetSessionAttrs::ReadWrite);
        if !self.password.is_empty() {
            config.password(&self.password);
        }
        let mode = match self.ssl_mode.as_str() {
            "" | "prefer" | "allow" => SslMode::Prefer,
            "disable" => SslMode::Disable,
            // verify-ca / verify-full are checked by the connector below.
            "require" | "verify-ca" | "verify-full" => SslMode::Require,
            other => {
                return Err(KartError::user("bad-setting", format!("PGSSLMODE={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full")))
            }
        };
        config.ssl_mode(mode);
        Ok(config)
    }

    fn tls(&self) -> Result<MakeTlsConnector> {
        use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
        let mut builder = SslConnector::builder(SslMethod::tls())
            .map_err(|e| KartError::infra("tls", format!("cannot set up TLS: {e}")))?;
        // libpq's prefer/require encrypt without checking the certificate.
        if !self.ssl_mode.starts_with("verify") {
            builder.set_verify(SslVerifyMode::NONE);
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        if self.ssl_mode == "verify-ca" {
            connector.set_callback(|config, _| {
                config.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
    }

    /// Connects to the workshop database.
    pub async fn connect(&self) -> Result<Client> {
        self.connect_to(&self.database.clone()).await
    }

    /// Connects to a maintenance database to create or drop the workshop's.
    pub async fn connect_maintenance(&self) -> Result<Client> {
        match self.connect_to("postgres").await {
            Err(e) if e.code == "database-missing" => self.connect_to("template1").await,
            other => other,
        }
    }

    pub async fn connect_to(&self, database: &str) -> Result<Client> {
        let config = self.config(database)?;
        // Building an OpenSSL context loads the system's CA bundle (tens of
        // milliseconds); skip it when TLS is off.
        let attempt = if self.ssl_mode == "disable" {
            tokio::time::timeout(self.connect_timeout, async {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                Ok::<_, tokio_postgres::Error>(client)
            })
            .await
        } else {
            let tls = self.tls()?;
            tokio::time::timeout(self.connect_timeout, async {
                let (client, connection) = config.connect(tls).await?;
                tokio::spawn(connection);
                Ok::<_, tokio_postgres::Error>(client)
            })
            .await
        };
        match attempt {
            Err(_) => Err(self.unreachable(None)),
            Ok(Err(e)) => Err(self.classify(database, &e)),
            Ok(Ok(client)) => Ok(client),
        }
    }

    fn unreachable(&self, cause: Option<&str>) -> KartError {
        let cause = cause.map(|c| format!(" ({c})")).unwrap_or_default();
        KartError::infra(
            "postgres-unreachable",
            format!("cannot reach PostgreSQL at {} within {}{cause}", self.endpoint(), humantime::format_duration(self.connect_timeout)),
        )
        .with_hint(format!(
            "check that the database server runs (`kart platform status`) and POSTGRES_HOST/POSTGRES_PORT (from {}); raise --connect-timeout on a slow network",
            self.host_source
        ))
    }

    pub fn classify(&self, database: &str, error: &tokio_postgres::Error) -> KartError {
        match error.code() {
            Some(code) if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                KartError::infra("postgres-auth-failed", format!("authentication failed for user {} at {}", self.user, self.endpoint()))
                    .with_hint(format!("check POSTGRES_USER and POSTGRES_PASSWORD (from {})", self.credentials_source))
            }
            Some(code) if *code == SqlState::INVALID_CATALOG_NAME => {
                KartError::user("database-missing", format!("database {database} does not exist on {}", self.endpoint()))
                    .with_hint("create it with `kart db up` (or `kart db create-db`)")
            }
            Some(_) => KartError::infra("postgres-error", format!("PostgreSQL at {}: {}", self.endpoint(), db_message(error))),
            None => {
                let text = error.to_string();
                if text.contains("read-write") || text.contains("session") {
                    KartError::infra("postgres-no-primary", format!("none of {} accepts writes ({text})", self.endpoint()))
                        .with_hint("POSTGRES_HOST should list the primary; a replica alone is read-only")
                } else {
                    self.unreachable(Some(&source_text(error)))
                }
            }
        }
    }
}

/// The server's message without tokio-postgres's generic wrapper.
pub fn db_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.hint() {
            Some(hint) => format!("{} ({hint})", db.message()),
            None => db.message().to_string(),
        },
        None => source_text(error),
    }
}

fn source_text(error: &tokio_postgres::Error) -> String {
    use std::error::Error;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Maps a query error with what was being done.
pub fn query_error(what: &str, error: tokio_postgres::Error) -> KartError {
    KartError::infra("postgres-error", format!("{what}: {}", db_message(&error)))
}

/// Quotes an identifier for SQL text (database names cannot be bind parameters).
/// The session advisory lock a running CDC job holds for its slot (it reads
/// the slot with SQL functions, so the slot itself looks inactive between
/// reads); `db clean-cdc` and `db down` check it before dropping a slot.
pub fn cdc_slot_lock_key(slot: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("kart-cdc:{slot}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The pid of the session holding a CDC job's slot lock, if any (in any
/// database of the server).
pub async fn cdc_slot_holder(client: &Client, slot: &str) -> Result<Option<i32>> {
    let key = cdc_slot_lock_key(slot);
    let row = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted
                AND classid::int8 = $1 AND objid::int8 = $2 LIMIT 1",
            &[&((key as u64 >> 32) as i64), &((key as u64 & 0xffff_ffff) as i64)],
        )
        .await
        .map_err(|e| query_error("cannot read the server's locks", e))?;
    Ok(row.map(|r| r.get(0)))
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
