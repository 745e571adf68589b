//! `kart doctor`: what stands between this machine and a working workshop,
//! each finding with its fix (design §2). Every check is read-only and
//! bounded by `--connect-timeout` (most by less), and independent groups run
//! concurrently, so doctor answers quickly even when everything is down —
//! the moment people need it most.
//!
//! A check whose prerequisite failed is left out (no `wal-level` without a
//! database connection): its absence is explained by the failure before it.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Mode, Source};
use crate::context::Context;
use crate::db::PgSettings;
use crate::exit::KartError;
use crate::jobs::{cdc, flink, inventory};
use crate::kafka::admin::Admin;
use crate::platform::compose::Project;
use crate::platform::docker::Engine;
use crate::platform::native::Binaries;
use crate::platform::{self, ports};
use crate::supervise::{Liveness, Supervisor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One finding. `fix` is what to do about a warn or fail (`None` when ok).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, message: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    /// A kart error as a failed check: its message, its hint as the fix.
    fn from_error(name: &'static str, error: &KartError, fallback_fix: &str) -> Check {
        Check::fail(
            name,
            error.message.clone(),
            error
                .hint
                .clone()
                .unwrap_or_else(|| fallback_fix.to_string()),
        )
    }
}

/// The whole report, in a fixed order whatever finished first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub checks: Vec<Check>,
    pub ok: bool,
}

impl Report {
    pub fn failed(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .collect()
    }
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}

/// The short bound for probes that either answer at once or not at all
/// (a TCP connect, the Docker socket, the JobManager).
fn short(ctx: &Context) -> Duration {
    ctx.connect_timeout.min(Duration::from_secs(3))
}

/// A backstop around a whole group of checks: each step has its own
/// deadline, this only guarantees that doctor never hangs on one we missed.
fn backstop(ctx: &Context) -> Duration {
    ctx.connect_timeout * 3 + Duration::from_secs(5)
}

async fn bounded(
    ctx: &Context,
    name: &'static str,
    work: impl std::future::Future<Output = Vec<Check>>,
) -> Vec<Check> {
    let limit = backstop(ctx);
    match tokio::time::timeout(limit, work).await {
        Ok(checks) => checks,
        Err(_) => vec![Check::fail(
            name,
            format!("did not finish within {}", humantime::format_duration(limit)),
            "raise --connect-timeout on a slow network, or run `kart -v doctor` to see where it waits",
        )],
    }
}

/// Runs every check.
pub async fn run(ctx: &Context) -> Report {
    // Local facts first: they need no network and feed the other checks.
    let project = platform::load_project(ctx);
    let binaries = Binaries::find(
        ctx.settings.raw("KART_PG_BINDIR"),
        ctx.settings.raw("KART_TANSU_BIN"),
    );
    let native_ok = binaries.missing().is_none();

    let (docker, kafka, postgres, flink) = tokio::join!(
        bounded(ctx, "docker", docker_checks(ctx, &project, native_ok)),
        bounded(ctx, "kafka", kafka_checks(ctx)),
        bounded(ctx, "postgres", postgres_checks(ctx)),
        bounded(ctx, "flink-inventory", async {
            vec![flink_check(ctx).await]
        }),
    );
    let mut checks = Vec::new();
    checks.extend(docker);
    checks.push(env_check(ctx));
    checks.extend(kafka);
    checks.extend(postgres);
    checks.push(licence_check(ctx));
    checks.push(binaries_check(ctx, &binaries));
    checks.extend(flink);
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    Report { checks, ok }
}

// ---- Docker: engine, images, ports ---------------------------------------

async fn docker_checks(
    ctx: &Context,
    project: &crate::exit::Result<Project>,
    native_ok: bool,
) -> Vec<Check> {
    let project = match project {
        Ok(project) => project,
        Err(e) => {
            return vec![Check::from_error(
                "compose",
                e,
                "fix the compose file, or delete it to use kart's built-in one",
            )]
        }
    };
    let record = platform::read_record(ctx);
    // Without Docker, local mode falls back to the native backend; that is
    // a degraded workshop (no Kpow, Flex, Flink), not a broken one.
    let fallback = match ctx.mode {
        Mode::Local if native_ok => {
            Some("`kart platform start` will use the native backend (no Kpow, Flex or Flink)")
        }
        Mode::Local => None,
        Mode::Remote => {
            Some("remote mode then runs without its tooling containers (Kpow, Flex, Flink)")
        }
    };
    let docker_runs_kart = record
        .as_ref()
        .is_some_and(|r| r.backend == platform::Running::Docker);
    let mut checks = Vec::new();
    let engine = match Engine::connect(short(ctx)).await {
        Ok(engine) => {
            checks.push(Check::ok(
                "docker",
                format!(
                    "Docker engine {} at {} ({})",
                    engine.version, engine.endpoint.host, engine.endpoint.source
                ),
            ));
            Some(engine)
        }
        Err(e) => {
            let fix = e.hint.clone().unwrap_or_else(|| "start Docker".into());
            match fallback {
                Some(then) if !docker_runs_kart => {
                    checks.push(Check::warn("docker", format!("{}; {then}", e.message), fix))
                }
                _ => checks.push(Check::fail("docker", e.message.clone(), fix)),
            }
            None
        }
    };
    if let Some(engine) = &engine {
        checks.push(images_check(ctx, engine, project, fallback).await);
    }
    checks.push(ports_check(ctx, engine.as_ref(), project).await);
    checks
}

async fn images_check(
    ctx: &Context,
    engine: &Engine,
    project: &Project,
    fallback: Option<&str>,
) -> Check {
    let mut images: Vec<&str> = project.services.iter().map(|s| s.image.as_str()).collect();
    images.sort();
    images.dedup();
    if images.is_empty() {
        return Check::ok(
            "images",
            format!("{} names no images", project.file.display()),
        );
    }
    // All at once: a registry that does not answer costs one short bound.
    let within = short(ctx);
    let answers = futures::future::join_all(images.iter().map(|image| async move {
        if engine.image_present(image).await {
            return (image, Ok(true));
        }
        match tokio::time::timeout(within, engine.image_pullable(image)).await {
            Ok(Ok(())) => (image, Ok(false)),
            Ok(Err(why)) => (image, Err(why)),
            Err(_) => (
                image,
                Err(format!(
                    "the registry did not answer within {}",
                    humantime::format_duration(within)
                )),
            ),
        }
    }))
    .await;
    let present = answers
        .iter()
        .filter(|(_, a)| matches!(a, Ok(true)))
        .count();
    let pullable = answers
        .iter()
        .filter(|(_, a)| matches!(a, Ok(false)))
        .count();
    let problems: Vec<String> = answers
        .iter()
        .filter_map(|(image, a)| a.as_ref().err().map(|why| format!("{image}: {why}")))
        .collect();
    if problems.is_empty() {
        return Check::ok(
            "images",
            format!(
                "{} image(s) of {}: {present} present, {pullable} pullable",
                images.len(),
                file_name(&project.file)
            ),
        );
    }
    let message = format!(
        "{} of {} image(s) neither present nor pullable: {}",
        problems.len(),
        images.len(),
        problems.join("; ")
    );
    let fix = "check the image names in the compose file and your network or registry login (`docker login`)";
    match fallback.filter(|_| ctx.mode == Mode::Local) {
        Some(then) => Check::warn("images", format!("{message}; {then}"), fix),
        None if ctx.mode == Mode::Remote => Check::warn("images", message, fix),
        None => Check::fail(
            "images",
            message,
            format!("{fix}; or install PostgreSQL and tansu for `--backend native`"),
        ),
    }
}

async fn ports_check(ctx: &Context, engine: Option<&Engine>, project: &Project) -> Check {
    // Ports held by kart's own running services are expected, not a clash.
    let own: Vec<u16> = match platform::read_record(ctx) {
        Some(_) => match tokio::time::timeout(ctx.connect_timeout, platform::status(ctx)).await {
            Ok(Ok(status)) => status
                .services
                .iter()
                .filter(|s| s.state == "running")
                .flat_map(|s| s.ports.clone())
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    let mut free = 0;
    let mut ours = 0;
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for service in &project.services {
        for port in &service.ports {
            if port.protocol != "tcp" {
                continue;
            }
            if own.contains(&port.host_port) {
                ours += 1;
                continue;
            }
            if ports::is_free(&port.host_ip, port.host_port) {
                free += 1;
                continue;
            }
            let container = match engine {
                Some(engine) => engine.port_holder(port.host_port).await,
                None => None,
            };
            let (holder, fix) = match (container, ports::process_holding(port.host_port)) {
                (Some((name, stack)), _) => (
                    format!("container {name}"),
                    Engine::container_port_fix(&name, stack.as_deref()),
                ),
                (None, Some((pid, name))) => (
                    format!("process {name} (pid {pid})"),
                    format!("stop {name} (pid {pid})"),
                ),
                (None, None) => (
                    "another program".to_string(),
                    "find it with `lsof -i :PORT` (or `ss -ltnp`) and stop it"
                        .replace("PORT", &port.host_port.to_string()),
                ),
            };
            problems.push(format!(
                "port {} (service {}) is held by {holder}",
                port.host_port, service.name
            ));
            fixes.push(fix);
        }
    }
    if problems.is_empty() {
        let own_text = if ours > 0 {
            format!(", {ours} in use by kart's own services")
        } else {
            String::new()
        };
        return Check::ok("ports", format!("{free} port(s) free{own_text}"));
    }
    // A clash makes `platform start` refuse: fix it before starting.
    Check::fail(
        "ports",
        problems.join("; "),
        format!(
            "{}; or move every published port with KART_PORT_OFFSET (e.g. 100)",
            fixes.join("; ")
        ),
    )
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

// ---- Configuration -------------------------------------------------------

fn env_check(ctx: &Context) -> Check {
    let placeholders = ctx.settings.placeholders();
    if !placeholders.is_empty() {
        // Grouped by where each value lives, since that is where to edit it.
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for setting in &placeholders {
            let (place, name) = match &setting.source {
                Source::File { path, line } => (
                    path.display().to_string(),
                    format!("{} (line {line})", setting.name),
                ),
                Source::Default { .. } => (
                    format!(
                        "kart's built-in {} (`kart init` writes one to edit)",
                        ctx.mode.env_file_name()
                    ),
                    setting.name.clone(),
                ),
                other => (other.location(), setting.name.clone()),
            };
            match groups.iter_mut().find(|(p, _)| *p == place) {
                Some((_, names)) => names.push(name),
                None => groups.push((place, vec![name])),
            }
        }
        let listed: Vec<String> = groups
            .iter()
            .map(|(place, names)| format!("{} in {place}", names.join(", ")))
            .collect();
        let places: Vec<&str> = groups.iter().map(|(place, _)| place.as_str()).collect();
        return Check::fail(
            "env",
            format!(
                "{} value(s) still hold a [REPLACE_WITH_…] placeholder: {}",
                placeholders.len(),
                listed.join("; ")
            ),
            format!(
                "fill in real values in {} (or set them in the environment)",
                places.join(", ")
            ),
        );
    }
    if let Some(warning) = ctx.settings.warnings.first() {
        return Check::warn(
            "env",
            warning.clone(),
            format!(
                "remove or rename that file, or run with --mode {}",
                other_mode(ctx.mode)
            ),
        );
    }
    let files = if ctx.settings.files_read.is_empty() {
        "kart's built-in defaults".to_string()
    } else {
        ctx.settings
            .files_read
            .iter()
            .map(|p| file_name(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Check::ok(
        "env",
        format!("{} mode, no placeholders left ({files})", ctx.mode.as_str()),
    )
}

fn other_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Local => "remote",
        Mode::Remote => "local",
    }
}

fn licence_check(ctx: &Context) -> Check {
    let setting = ctx
        .settings
        .raw("FACTOR_HOUSE_CE_LICENSE")
        .trim()
        .to_string();
    let path = if !setting.is_empty() {
        let path = PathBuf::from(&setting);
        if !path.is_file() {
            return Check::warn(
                "licence",
                format!("FACTOR_HOUSE_CE_LICENSE points at {}, which does not exist: Kpow and Flex will be skipped", path.display()),
                "correct FACTOR_HOUSE_CE_LICENSE, or copy licence.env.example to licence.env in the project directory and fill it in",
            );
        }
        path
    } else {
        match ["licence.env", "license.env"].iter().map(|n| ctx.project_dir.join(n)).find(|p| p.is_file()) {
            Some(path) => path,
            None => {
                return Check::warn(
                    "licence",
                    format!("no licence.env in {}: Kpow and Flex will be skipped", ctx.project_dir.display()),
                    "copy licence.env.example to licence.env and fill in your free Factor House community licence (or set FACTOR_HOUSE_CE_LICENSE to its path)",
                )
            }
        }
    };
    // A copied but unfilled example starts Kpow, which then refuses to run.
    match crate::config::envfile::read(&path) {
        Err(e) => Check::warn(
            "licence",
            format!("{} line {}: {}", path.display(), e.line, e.reason),
            "each line should read KEY=\"value\"",
        ),
        Ok(entries) => {
            let empty: Vec<String> = ["LICENSE_ID", "LICENSE_CODE", "LICENSE_SIGNATURE"]
                .iter()
                .filter(|k| {
                    !entries
                        .iter()
                        .any(|e| e.key == **k && !e.value.trim().is_empty())
                })
                .map(|k| k.to_string())
                .collect();
            if empty.is_empty() {
                Check::ok(
                    "licence",
                    format!("Kpow/Flex licence at {}", path.display()),
                )
            } else {
                Check::warn(
                    "licence",
                    format!("{} has no value for {}", path.display(), empty.join(", ")),
                    "fill in the licence values Factor House sent you",
                )
            }
        }
    }
}

fn binaries_check(ctx: &Context, binaries: &Binaries) -> Check {
    let found = |r: &Result<PathBuf, String>, what: &str| {
        r.as_ref().ok().map(|p| format!("{what} {}", p.display()))
    };
    let mut where_found: Vec<String> = Vec::new();
    where_found.extend(found(&binaries.pg_bindir, "PostgreSQL in"));
    where_found.extend(found(&binaries.tansu, "tansu at"));
    if ctx.mode == Mode::Remote {
        // Remote mode never runs the native backend: report, never complain.
        let text = if where_found.is_empty() {
            "none found".to_string()
        } else {
            where_found.join(", ")
        };
        return Check::ok(
            "native-binaries",
            format!("not used in remote mode ({text})"),
        );
    }
    match binaries.missing() {
        None => Check::ok(
            "native-binaries",
            format!("native backend ready: {}", where_found.join(", ")),
        ),
        Some(missing) => {
            let fix = [&binaries.pg_bindir, &binaries.tansu]
                .iter()
                .filter_map(|r| r.as_ref().err())
                .filter_map(|e| {
                    e.split_once(" (")
                        .map(|(_, fix)| fix.trim_end_matches(')').to_string())
                })
                .collect::<Vec<_>>()
                .join("; ");
            Check::warn(
                "native-binaries",
                format!("the native backend cannot run here: {missing}"),
                if fix.is_empty() { missing } else { fix },
            )
        }
    }
}

// ---- Kafka ---------------------------------------------------------------

async fn kafka_checks(ctx: &Context) -> Vec<Check> {
    let settings = match ctx.kafka() {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::from_error(
                "kafka",
                &e,
                "set KAFKA_BOOTSTRAP_SERVERS",
            )]
        }
    };
    let start_or_point = |address: &str| {
        format!(
            "nothing answers at {address}: start the broker (`kart platform start`), or point KAFKA_BOOTSTRAP_SERVERS (from {}) at one that runs",
            settings.bootstrap_source
        )
    };
    // Refused connections fail fast here; librdkafka would retry them until
    // the whole deadline passed. A timeout proves nothing, so then the real
    // client decides.
    let entries: Vec<String> = settings
        .bootstrap
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let probes = futures::future::join_all(entries.iter().map(|e| tcp_probe(e, short(ctx)))).await;
    if probes
        .iter()
        .all(|p| matches!(p, Err(TcpError::Refused(_))))
    {
        let why: Vec<String> = entries
            .iter()
            .zip(&probes)
            .map(|(e, p)| {
                format!(
                    "{e}: {}",
                    p.as_ref().err().map(TcpError::text).unwrap_or_default()
                )
            })
            .collect();
        return vec![Check::fail(
            "kafka",
            format!(
                "cannot reach Kafka at {} ({})",
                settings.bootstrap,
                why.join("; ")
            ),
            start_or_point(&settings.bootstrap),
        )];
    }
    let admin = match Admin::connect(&settings, &ctx.printer).await {
        Ok(admin) => admin,
        Err(e) if e.code == "kafka-unreachable" => {
            return vec![Check::fail(
                "kafka",
                e.message.clone(),
                start_or_point(&settings.bootstrap),
            )]
        }
        Err(e) => {
            return vec![Check::from_error(
                "kafka",
                &e,
                "check the Kafka settings (`kart config`)",
            )]
        }
    };
    let sasl = if settings.uses_sasl() {
        format!(", {} as {}", settings.sasl_mechanism, settings.user)
    } else {
        String::new()
    };
    let brokers = match admin.brokers().await {
        Ok(b) => b,
        Err(e) => return vec![Check::from_error("kafka", &e, "check the broker")],
    };
    let mut checks = vec![Check::ok(
        "kafka",
        format!(
            "Kafka at {} answers ({} broker(s){sasl})",
            settings.bootstrap,
            brokers.len()
        ),
    )];
    checks.push(listeners_check(ctx, &brokers).await);
    checks
}

/// Clients bootstrap from KAFKA_BOOTSTRAP_SERVERS and then connect to what
/// the brokers advertise; an address only other containers can resolve
/// (`redpanda:9092`) makes every later request hang.
async fn listeners_check(ctx: &Context, brokers: &[(i32, String, i32)]) -> Check {
    let probes = futures::future::join_all(
        brokers
            .iter()
            .map(|(_, host, port)| tcp_probe_host(host, *port, short(ctx))),
    )
    .await;
    let mut bad = Vec::new();
    for ((id, host, port), probe) in brokers.iter().zip(&probes) {
        if let Err(e) = probe {
            bad.push(format!(
                "broker {id} advertises {host}:{port}, which cannot be reached from here ({})",
                e.text()
            ));
        }
    }
    let listed: Vec<String> = brokers
        .iter()
        .map(|(id, h, p)| format!("{h}:{p} (broker {id})"))
        .collect();
    if bad.is_empty() {
        return Check::ok(
            "kafka-listeners",
            format!("advertised listeners reachable: {}", listed.join(", ")),
        );
    }
    Check::warn(
        "kafka-listeners",
        bad.join("; "),
        "the broker must advertise an address this machine can reach: point KAFKA_BOOTSTRAP_SERVERS at its external listener \
         (kart's compose file advertises external://localhost:19092 for Redpanda), fix the broker's advertised listeners, \
         or map the name in /etc/hosts (e.g. `127.0.0.1 redpanda`)",
    )
}

enum TcpError {
    /// Refused or unresolvable: nobody is there.
    Refused(String),
    Timeout(Duration),
}

impl TcpError {
    fn text(&self) -> String {
        match self {
            TcpError::Refused(why) => why.clone(),
            TcpError::Timeout(d) => format!("no answer within {}", humantime::format_duration(*d)),
        }
    }
}

async fn tcp_probe(entry: &str, within: Duration) -> Result<(), TcpError> {
    let entry = entry
        .trim_start_matches("PLAINTEXT://")
        .trim_start_matches("SASL_SSL://")
        .trim_start_matches("SASL_PLAINTEXT://")
        .trim_start_matches("SSL://");
    let Some((host, port)) = entry.rsplit_once(':') else {
        return Err(TcpError::Refused("no port".into()));
    };
    let Ok(port) = port.parse::<i32>() else {
        return Err(TcpError::Refused(format!("bad port {port:?}")));
    };
    tcp_probe_host(
        host.trim_start_matches('[').trim_end_matches(']'),
        port,
        within,
    )
    .await
}

async fn tcp_probe_host(host: &str, port: i32, within: Duration) -> Result<(), TcpError> {
    let port = u16::try_from(port).map_err(|_| TcpError::Refused(format!("bad port {port}")))?;
    let host = host.to_string();
    let attempt = async move {
        // Resolve first so that an unknown name reads as such.
        let addresses = tokio::task::spawn_blocking(move || {
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
        })
        .await
        .map_err(|e| TcpError::Refused(e.to_string()))?
        .map_err(|e| TcpError::Refused(format!("cannot resolve the name: {e}")))?;
        let mut last = TcpError::Refused("no address".into());
        for address in addresses {
            match tokio::net::TcpStream::connect(address).await {
                Ok(_) => return Ok(()),
                Err(e) => last = TcpError::Refused(e.to_string()),
            }
        }
        Err(last)
    };
    tokio::time::timeout(within, attempt)
        .await
        .unwrap_or(Err(TcpError::Timeout(within)))
}

// ---- PostgreSQL ----------------------------------------------------------

async fn postgres_checks(ctx: &Context) -> Vec<Check> {
    let pg = match ctx.postgres() {
        Ok(pg) => pg,
        Err(e) => {
            return vec![Check::from_error(
                "postgres",
                &e,
                "set the POSTGRES_* variables",
            )]
        }
    };
    let start_or_point = format!(
        "nothing answers at {}: start the database (`kart platform start`), or point POSTGRES_HOST/POSTGRES_PORT (from {}) at one that runs",
        pg.endpoint(),
        pg.host_source
    );
    let mut checks = Vec::new();
    let client = match pg.connect().await {
        Ok(client) => {
            let version = server_version(&client).await;
            checks.push(Check::ok(
                "postgres",
                format!(
                    "PostgreSQL {version} at {}, database {} as {}",
                    pg.endpoint(),
                    pg.database,
                    pg.user
                ),
            ));
            client
        }
        Err(e) if e.code == "database-missing" => {
            match pg.connect_maintenance().await {
                // Reachable with these credentials; only the database is missing.
                Ok(client) => {
                    let fix = match ctx.mode {
                    Mode::Local => "`kart db up` creates and initialises it".to_string(),
                    Mode::Remote => format!("check POSTGRES_DB, or ask whoever runs the server to create {} for you", pg.database),
                };
                    checks.push(Check::warn(
                        "postgres",
                        format!(
                            "PostgreSQL at {} accepts {}, but database {} does not exist yet",
                            pg.endpoint(),
                            pg.user,
                            pg.database
                        ),
                        fix,
                    ));
                    client
                }
                Err(e) => return vec![pg_failure(&e, &start_or_point)],
            }
        }
        Err(e) => return vec![pg_failure(&e, &start_or_point)],
    };
    checks.push(wal_level_check(ctx, &client, &pg).await);
    checks.push(slot_check(ctx, &client, &pg).await);
    checks
}

fn pg_failure(error: &KartError, start_or_point: &str) -> Check {
    if error.code == "postgres-unreachable" {
        Check::fail("postgres", error.message.clone(), start_or_point)
    } else {
        Check::from_error(
            "postgres",
            error,
            "check the POSTGRES_* settings (`kart config`)",
        )
    }
}

async fn server_version(client: &tokio_postgres::Client) -> String {
    match client.query_one("SHOW server_version", &[]).await {
        Ok(row) => row
            .get::<_, String>(0)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        Err(_) => "?".into(),
    }
}

async fn wal_level_check(ctx: &Context, client: &tokio_postgres::Client, pg: &PgSettings) -> Check {
    let wal_level =
        match tokio::time::timeout(ctx.connect_timeout, client.query_one("SHOW wal_level", &[]))
            .await
        {
            Ok(Ok(row)) => row.get::<_, String>(0),
            Ok(Err(e)) => {
                return Check::fail(
                    "wal-level",
                    format!("cannot read wal_level: {}", crate::db::db_message(&e)),
                    "check the user's rights",
                )
            }
            Err(_) => {
                return Check::fail(
                    "wal-level",
                    "SHOW wal_level did not answer in time",
                    "check the server's load",
                )
            }
        };
    match cdc::check_wal_level(&wal_level, &pg.endpoint()) {
        Ok(()) => Check::ok(
            "wal-level",
            "wal_level=logical (CDC can read the write-ahead log)",
        ),
        Err(e) => {
            let hint = e.hint.unwrap_or_default();
            let fix = match ctx.mode {
                Mode::Local => format!("kart's compose-local.yml starts PostgreSQL with `-c wal_level=logical`; for another server: {hint}"),
                Mode::Remote => hint,
            };
            Check::fail("wal-level", e.message, fix)
        }
    }
}

/// Whether POSTGRES_REPLICATION_SLOT can be kart's: not another database's,
/// not read by someone else, and not the workshop's shared default on a
/// shared server.
async fn slot_check(ctx: &Context, client: &tokio_postgres::Client, pg: &PgSettings) -> Check {
    let slot = pg.slot.trim();
    let suggestion = cdc::suggested_slot_name(&pg.database);
    let own_name = format!(
        "give kart its own, e.g. `export POSTGRES_REPLICATION_SLOT=\"{suggestion}\"` in {}",
        ctx.mode.env_file_name()
    );
    if slot.is_empty() {
        return Check::warn(
            "replication-slot",
            "POSTGRES_REPLICATION_SLOT is empty: the order-cdc job needs a slot name",
            own_name,
        );
    }
    if let Err(why) = cdc::valid_slot_name(slot) {
        return Check::fail(
            "replication-slot",
            format!("POSTGRES_REPLICATION_SLOT={slot}: {why}"),
            own_name,
        );
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&slot];
    let query = client.query_opt(
        "SELECT database::text, active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
        &params,
    );
    let row = match tokio::time::timeout(ctx.connect_timeout, query).await {
        Ok(Ok(row)) => row,
        Ok(Err(e)) => {
            return Check::fail(
                "replication-slot",
                format!(
                    "cannot list replication slots: {}",
                    crate::db::db_message(&e)
                ),
                "check the user's rights",
            )
        }
        Err(_) => {
            return Check::fail(
                "replication-slot",
                "listing replication slots did not answer in time",
                "check the server's load",
            )
        }
    };
    let shared_default = ctx.mode == Mode::Remote && slot == cdc::WORKSHOP_SLOT;
    let Some(row) = row else {
        if shared_default {
            return shared_default_warning(slot, &own_name);
        }
        return Check::ok(
            "replication-slot",
            format!("slot {slot} is free (the order-cdc job creates it)"),
        );
    };
    let database: Option<String> = row.get(0);
    let active: bool = row.get(1);
    let active_pid: Option<i32> = row.get(2);
    if database.as_deref() != Some(pg.database.as_str()) {
        let owner = database
            .map(|d| format!("database {d}"))
            .unwrap_or_else(|| "physical replication".into());
        return Check::fail(
            "replication-slot",
            format!("replication slot {slot} already exists for {owner}, not for {}", pg.database),
            format!("{own_name}; or drop the other one if it is stale (`kart db clean-cdc` from its project)"),
        );
    }
    // kart's CDC job holds an advisory lock named after its slot; it reads
    // with SQL functions, so the slot may look idle between reads.
    let holder = crate::db::cdc_slot_holder(client, slot)
        .await
        .ok()
        .flatten();
    if active && active_pid.is_some() && active_pid != holder {
        let pid = active_pid.unwrap_or_default();
        let who = match client.query_opt("SELECT application_name, usename::text, client_addr::text FROM pg_stat_activity WHERE pid = $1", &[&pid]).await {
            Ok(Some(r)) => {
                let app: Option<String> = r.get(0);
                let user: Option<String> = r.get(1);
                let addr: Option<String> = r.get(2);
                format!(
                    " ({}user {}{})",
                    app.filter(|a| !a.is_empty()).map(|a| format!("{a}, ")).unwrap_or_default(),
                    user.unwrap_or_default(),
                    addr.map(|a| format!(" from {a}")).unwrap_or_default()
                )
            }
            _ => String::new(),
        };
        return Check::warn(
            "replication-slot",
            format!("replication slot {slot} is being read by process {pid}{who}, which is not kart's CDC job: kart's order-cdc job cannot read it meanwhile"),
            format!("stop that reader (the workshop's Flink CDC job?), or {own_name}"),
        );
    }
    if shared_default {
        return shared_default_warning(slot, &own_name);
    }
    let state = if holder.is_some() {
        "in use by kart's CDC job"
    } else {
        "idle"
    };
    Check::ok(
        "replication-slot",
        format!("slot {slot} belongs to {} ({state})", pg.database),
    )
}

fn shared_default_warning(slot: &str, own_name: &str) -> Check {
    Check::warn(
        "replication-slot",
        format!("POSTGRES_REPLICATION_SLOT={slot} is the workshop's default: on a shared remote database every student's CDC job would read the same slot"),
        own_name.to_string(),
    )
}

// ---- Flink ---------------------------------------------------------------

/// The workshop's Flink inventory job and kart's embedded one on the same
/// topics deduct every order twice; `job deploy` refuses to start the second,
/// doctor catches the pair however it came about.
async fn flink_check(ctx: &Context) -> Check {
    let url = ctx.settings.raw("KART_FLINK_URL").trim().to_string();
    let embedded = matches!(
        Supervisor::new(&ctx.project_dir).liveness(inventory::JOB_NAME),
        Ok(Liveness::Running(_))
    );
    let embedded_text = if embedded {
        "kart's embedded inventory job runs"
    } else {
        "kart's embedded inventory job does not run"
    };
    match flink::workshop_inventory_running(&url, short(ctx)).await {
        // No JobManager is the normal case without Docker: nothing to clash with.
        Err(why) => {
            ctx.printer.debug(&format!("Flink: {why}"));
            Check::ok("flink-inventory", format!("no Flink JobManager at {url}; {embedded_text}"))
        }
        Ok(None) => Check::ok("flink-inventory", format!("no workshop inventory job on the JobManager at {url}; {embedded_text}")),
        Ok(Some(job)) if embedded => Check::fail(
            "flink-inventory",
            format!(
                "the workshop's Flink job \"{}\" (job {}) runs on {url} while kart's embedded inventory job runs too: {}",
                job.name,
                job.jid,
                flink::DOUBLE_DEDUCTION
            ),
            format!("stop one of them: `kart job stop inventory` (embedded) or `kart job stop {}` (Flink)", job.jid),
        ),
        Ok(Some(job)) => Check::ok(
            "flink-inventory",
            format!("the workshop's Flink inventory job runs on {url} (job {}); {embedded_text}", job.jid),
        ),
    }
}
