//! The Docker backend: kart drives the Engine API itself (bollard), with the
//! labels `docker compose` uses, so `docker compose -f compose-local.yml ps`
//! and `down` see kart's containers, plus `io.kart.*` labels by which kart
//! finds, and only ever touches, what it created.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings, HealthConfig, HealthStatusEnum,
    HostConfig, Mount as DockerMount, MountType, NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use serde::Serialize;

use super::compose::{Condition, Mount, Project, ServiceSpec};
use super::endpoint::{self, Endpoint};
use super::ports;
use super::readiness::{Probe, ProbeResult, Prober, Roles};
use crate::cli::PullPolicy;
use crate::config::Mode;
use crate::exit::{KartError, Result};
use crate::printer::Printer;

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_KART_PROJECT: &str = "io.kart.project";
pub const LABEL_KART_MODE: &str = "io.kart.mode";

/// How long a container without any probe must stay up to count as ready.
const STABLE_FOR: Duration = Duration::from_secs(2);

/// How many log lines a failure shows.
const FAILURE_LOG_LINES: usize = 20;

pub struct Engine {
    docker: Docker,
    pub endpoint: Endpoint,
    pub version: String,
}

/// What `up` did to one service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOutcome {
    pub service: String,
    pub container: String,
    pub container_id: String,
    /// `created`, `recreated`, `started`, `up to date`, `completed`.
    pub action: String,
    pub probe: String,
    pub ready_ms: u64,
}

/// One service as the engine sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub container_id: Option<String>,
    /// `running`, `exited`, `created`, `missing`, or `held by another` …
    pub state: String,
    pub health: Option<String>,
    pub exit_code: Option<i64>,
    pub up_to_date: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Create,
    Recreate(String),
    Start(String),
    UpToDate(String),
}

impl Engine {
    /// Connects to the engine found like the docker CLI finds it and checks
    /// that it answers within `timeout`.
    pub async fn connect(timeout: Duration) -> Result<Engine> {
        let env = |k: &str| std::env::var(k).ok();
        let endpoint = endpoint::discover(&endpoint::Lookup { env: &env, home: std::env::var_os("HOME").map(Into::into) });
        let secs = timeout.as_secs().max(1);
        let host = endpoint.host.clone();
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(&host, 120, bollard::API_DEFAULT_VERSION)
        } else {
            return Err(KartError::user("docker-endpoint", format!("unsupported Docker endpoint {host} (from {})", endpoint.source))
                .with_hint("kart speaks to unix:// and tcp:// endpoints; ssh:// contexts are not supported"));
        };
        let unreachable = |why: String| {
            KartError::infra("docker-unreachable", format!("cannot reach the Docker engine at {} ({}): {why}", endpoint.host, endpoint.source))
                .with_hint(endpoint::unreachable_hint(&endpoint))
        };
        let docker = docker.map_err(|e| unreachable(e.to_string()))?;
        let docker = match tokio::time::timeout(Duration::from_secs(secs), docker.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {secs}s"))),
        };
        let version = match tokio::time::timeout(Duration::from_secs(secs), docker.version()).await {
            Ok(Ok(v)) => v.version.unwrap_or_default(),
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {secs}s"))),
        };
        Ok(Engine { docker, endpoint, version })
    }

    pub async fn image_present(&self, image: &str) -> bool {
        self.docker.inspect_image(image).await.is_ok()
    }

    /// Whether the registry serves `image`, without pulling it.
    pub async fn image_pullable(&self, image: &str) -> std::result::Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(10), self.docker.inspect_registry_image(image, None)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(engine_message(&e)),
            Err(_) => Err("the registry did not answer within 10s".into()),
        }
    }

    /// Images of `project` that are neither present nor pullable, with why.
    pub async fn unavailable_images(&self, project: &Project, pull: PullPolicy) -> Vec<(String, String)> {
        let mut missing = Vec::new();
        let mut seen = Vec::new();
        for service in &project.services {
            if seen.contains(&service.image) {
                continue;
            }
            seen.push(service.image.clone());
            let present = self.image_present(&service.image).await;
            let problem = match (pull, present) {
                (PullPolicy::Never, false) => Some("not present, and --pull never".to_string()),
                (PullPolicy::Never, true) | (PullPolicy::Missing, true) => None,
                _ => self.image_pullable(&service.image).await.err(),
            };
            if let Some(problem) = problem {
                missing.push((service.image.clone(), problem));
            }
        }
        missing
    }

    async fn inspect(&self, name: &str) -> Option<ContainerInspectResponse> {
        self.docker.inspect_container(name, None::<bollard::query_parameters::InspectContainerOptions>).await.ok()
    }

    /// Brings `project` up: converge, preflight, pull, create, start in
    /// dependency order, and wait until every service is ready.
    pub async fn up(&self, project: &Project, mode: Mode, pull: PullPolicy, wait_timeout: Duration, prober: Arc<Prober>, roles: &Roles, printer: &Printer) -> Result<Vec<ServiceOutcome>> {
        self.remove_other_mode(project, mode, printer).await?;
        // 1. What to do with each service.
        let mut actions: HashMap<String, Action> = HashMap::new();
        let mut problems: Vec<String> = Vec::new();
        for service in &project.services {
            let action = match self.inspect(&service.container_name).await {
                None => Action::Create,
                Some(existing) => {
                    let labels = existing.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
                    let id = existing.id.clone().unwrap_or_default();
                    let ours = labels.get(LABEL_KART_PROJECT) == Some(&project.name) && labels.get(LABEL_SERVICE) == Some(&service.name);
                    if !ours {
                        let owner = labels.get(LABEL_PROJECT).map(|p| format!(" (compose project {p})")).unwrap_or_default();
                        problems.push(format!(
                            "container name {} (service {}) is taken by a container kart did not create{owner}: remove it with `docker rm -f {}` or rename it",
                            service.container_name, service.name, service.container_name
                        ));
                        continue;
                    }
                    let running = existing.state.as_ref().and_then(|s| s.running).unwrap_or(false);
                    let exit_code = existing.state.as_ref().and_then(|s| s.exit_code);
                    let same = labels.get(LABEL_CONFIG_HASH) == Some(&service.config_hash());
                    match (same, running) {
                        (false, _) => Action::Recreate(id),
                        (true, true) => Action::UpToDate(id),
                        (true, false) if service.one_shot && exit_code == Some(0) => Action::UpToDate(id),
                        (true, false) => Action::Start(id),
                    }
                }
            };
            actions.insert(service.name.clone(), action);
        }
        // 2. Ports of what will be (re)started must be free now.
        let own_running: Vec<String> = project
            .services
            .iter()
            .filter(|s| matches!(actions.get(&s.name), Some(Action::Recreate(_))))
            .flat_map(|s| s.ports.iter().map(|p| format!("{}:{}", p.host_ip, p.host_port)))
            .collect();
        for service in &project.services {
            if !matches!(actions.get(&service.name), Some(Action::Create | Action::Start(_) | Action::Recreate(_))) {
                continue;
            }
            for port in &service.ports {
                if own_running.contains(&format!("{}:{}", port.host_ip, port.host_port)) {
                    continue;
                }
                if !ports::is_free(&port.host_ip, port.host_port) {
                    problems.push(self.port_problem(&service.name, port.host_port).await);
                }
            }
        }
        // 3. Images.
        let needs_image: Vec<&ServiceSpec> =
            project.services.iter().filter(|s| matches!(actions.get(&s.name), Some(Action::Create | Action::Recreate(_)))).collect();
        let mut to_pull: Vec<(String, Option<String>)> = Vec::new();
        for service in &needs_image {
            if to_pull.iter().any(|(i, _)| *i == service.image) {
                continue;
            }
            let present = self.image_present(&service.image).await;
            match (pull, present) {
                (PullPolicy::Never, false) => problems.push(format!(
                    "image {} (service {}) is not present and --pull never forbids pulling it",
                    service.image, service.name
                )),
                (PullPolicy::Always, _) | (PullPolicy::Missing, false) => to_pull.push((service.image.clone(), service.platform.clone())),
                _ => {}
            }
        }
        if !problems.is_empty() {
            return Err(KartError::user("preflight-failed", format!("cannot start; nothing was created:\n  - {}", problems.join("\n  - ")))
                .with_hint("fix the above and run `kart platform start` again; `KART_PORT_OFFSET=100` moves every published port"));
        }
        // 4. Pull, all images at once.
        let pulls = to_pull.iter().map(|(image, platform)| self.pull(image, platform.as_deref(), printer));
        let results = futures::future::join_all(pulls).await;
        let failures: Vec<String> = results.into_iter().filter_map(|r| r.err()).collect();
        if !failures.is_empty() {
            return Err(KartError::infra("image-pull-failed", format!("cannot pull:\n  - {}", failures.join("\n  - ")))
                .with_hint("check the image names and your network or registry login; `--backend native` runs without images"));
        }
        // 5. Network and volumes.
        self.ensure_network(project, mode).await?;
        for volume in &project.volumes {
            self.ensure_volume(project, mode, volume).await?;
        }
        // 6. Start in dependency order, independent services in parallel.
        let states: HashMap<String, tokio::sync::watch::Sender<Stage>> =
            project.services.iter().map(|s| (s.name.clone(), tokio::sync::watch::channel(Stage::Pending).0)).collect();
        let waiting: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let started = Instant::now();
        let tasks = project.start_order().into_iter().map(|service| {
            let action = actions.get(&service.name).cloned().unwrap_or(Action::Create);
            let states = &states;
            let waiting = waiting.clone();
            let prober = prober.clone();
            async move {
                for dep in &service.depends_on {
                    let Some(sender) = states.get(&dep.service) else { continue };
                    let mut rx = sender.subscribe();
                    let wanted = match dep.condition {
                        Condition::ServiceStarted => Stage::Started,
                        _ => Stage::Ready,
                    };
                    set_waiting(&waiting, &service.name, &format!("waiting for {}", dep.service));
                    rx.wait_for(|s| *s >= wanted).await.map_err(|_| KartError::infra("internal", "dependency tracking ended"))?;
                }
                let outcome = self.bring_up(project, mode, service, action, &prober, roles, &waiting, printer, started).await;
                match &outcome {
                    Ok(_) => {
                        let _ = states[&service.name].send(Stage::Ready);
                    }
                    Err(_) => {
                        let _ = states[&service.name].send(Stage::Failed);
                    }
                }
                outcome
            }
        });
        let all = futures::future::try_join_all(tasks);
        match tokio::time::timeout(wait_timeout, all).await {
            Ok(result) => result,
            Err(_) => {
                let waiting = waiting.lock().map(|w| w.clone()).unwrap_or_default();
                let mut lines = Vec::new();
                for service in &project.services {
                    if let Some(why) = waiting.get(&service.name) {
                        lines.push(format!("{} ({}): {why}", service.name, service.container_name));
                        for line in self.log_tail(&service.container_name, FAILURE_LOG_LINES).await {
                            lines.push(format!("    | {line}"));
                        }
                    }
                }
                Err(KartError::infra(
                    "readiness-timeout",
                    format!("not ready within {} (--wait-timeout):\n  {}", humantime::format_duration(wait_timeout), lines.join("\n  ")),
                )
                .with_hint("see `kart platform logs SERVICE`; a slow machine may need a longer --wait-timeout"))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn bring_up(&self, project: &Project, mode: Mode, service: &ServiceSpec, action: Action, prober: &Prober, roles: &Roles, waiting: &Mutex<HashMap<String, String>>, printer: &Printer, started: Instant) -> Result<ServiceOutcome> {
        let name = &service.container_name;
        let (verb, id) = match action {
            Action::UpToDate(id) => ("up to date", id),
            Action::Start(id) => {
                self.start(name).await?;
                ("started", id)
            }
            Action::Recreate(old) => {
                printer.status("Recreating", &format!("{} (its configuration changed)", service.name));
                self.remove(&old).await?;
                ("recreated", self.create_and_start(project, mode, service).await?)
            }
            Action::Create => ("created", self.create_and_start(project, mode, service).await?),
        };
        if verb != "up to date" {
            printer.status("Started", &format!("{} ({name})", service.name));
        }
        let probe = roles.probe_for(service);
        let mut last_note = Instant::now();
        let first_seen = Instant::now();
        loop {
            let Some(info) = self.inspect(name).await else {
                return Err(KartError::infra("container-vanished", format!("container {name} of service {} disappeared", service.name)));
            };
            let state = info.state.clone().unwrap_or_default();
            let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
            if matches!(status, ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) {
                let code = state.exit_code.unwrap_or(-1);
                if service.one_shot && code == 0 {
                    clear_waiting(waiting, &service.name);
                    return Ok(self.outcome(service, &id, if verb == "up to date" { verb } else { "completed" }, &probe, started));
                }
                return Err(self.failure(service, &format!("exited with code {code}")).await);
            }
            let health = state.health.and_then(|h| h.status).unwrap_or(HealthStatusEnum::EMPTY);
            if health == HealthStatusEnum::UNHEALTHY {
                return Err(self.failure(service, "turned unhealthy (its healthcheck failed)").await);
            }
            // kart's own probe (Kafka metadata, SELECT 1, HTTP, TCP) is
            // stronger evidence than the container's healthcheck and answers
            // up to one healthcheck interval sooner; the healthcheck decides
            // only where kart has nothing to probe. Unhealthy fails either way.
            let healthy = service.healthcheck.is_none() || health == HealthStatusEnum::HEALTHY || probe != Probe::Container;
            if service.one_shot {
                set_waiting(waiting, &service.name, "one-shot still running");
            } else if !healthy {
                set_waiting(waiting, &service.name, "healthcheck not passing yet");
            } else if probe == Probe::Container && service.healthcheck.is_none() && verb != "up to date" && first_seen.elapsed() < STABLE_FOR {
                // Nothing to probe: "ready" means it stayed up a moment, so
                // a container that crashes at once fails the start instead
                // of passing it.
                set_waiting(waiting, &service.name, "just started");
            } else {
                match prober.probe(&probe, service).await {
                    ProbeResult::Ready => {
                        clear_waiting(waiting, &service.name);
                        let outcome = self.outcome(service, &id, verb, &probe, started);
                        if verb != "up to date" {
                            printer.status("Ready", &format!("{} after {:.1}s ({})", service.name, outcome.ready_ms as f64 / 1000.0, probe.describe()));
                        }
                        return Ok(outcome);
                    }
                    ProbeResult::Fatal(e) => return Err(e),
                    ProbeResult::NotYet(why) => set_waiting(waiting, &service.name, &format!("{}: {why}", probe.describe())),
                }
            }
            if last_note.elapsed() > Duration::from_secs(10) {
                let why = waiting.lock().ok().and_then(|w| w.get(&service.name).cloned()).unwrap_or_default();
                printer.status("Waiting", &format!("for {} ({why})", service.name));
                last_note = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn outcome(&self, service: &ServiceSpec, id: &str, action: &str, probe: &Probe, started: Instant) -> ServiceOutcome {
        ServiceOutcome {
            service: service.name.clone(),
            container: service.container_name.clone(),
            container_id: id.chars().take(12).collect(),
            action: action.to_string(),
            probe: probe.describe(),
            ready_ms: started.elapsed().as_millis() as u64,
        }
    }

    async fn failure(&self, service: &ServiceSpec, what: &str) -> KartError {
        let logs = self.log_tail(&service.container_name, FAILURE_LOG_LINES).await;
        let shown = if logs.is_empty() { "    (no log output)".to_string() } else { logs.iter().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n") };
        KartError::infra(
            "service-failed",
            format!("service {} ({}) {what}; its last log lines:\n{shown}", service.name, service.container_name),
        )
        .with_hint(format!("see `kart platform logs {}`; fix the cause, then `kart platform start` again", service.name))
    }

    /// The running container that publishes `port`, if any: its name and
    /// the kart or compose project it belongs to.
    pub async fn port_holder(&self, port: u16) -> Option<(String, Option<String>)> {
        let options = ListContainersOptions { all: false, ..Default::default() };
        let containers = self.docker.list_containers(Some(options)).await.ok()?;
        containers.into_iter().find(|c| c.ports.iter().flatten().any(|p| p.public_port == Some(port))).map(|c| {
            let name = c.names.unwrap_or_default().first().cloned().unwrap_or_default().trim_start_matches('/').to_string();
            let labels = c.labels.unwrap_or_default();
            (name, labels.get(LABEL_KART_PROJECT).or(labels.get(LABEL_PROJECT)).cloned())
        })
    }

    /// How to free a port a container holds.
    pub fn container_port_fix(name: &str, project: Option<&str>) -> String {
        match project {
            Some(other) => format!("stop that stack (`docker compose -p {other} down`, or `kart platform stop` in its project) or `docker stop {name}`"),
            None => format!("`docker stop {name}`"),
        }
    }

    async fn port_problem(&self, service: &str, port: u16) -> String {
        // Another container publishing it: name it, it is the usual case.
        if let Some((name, project)) = self.port_holder(port).await {
            let fix = Self::container_port_fix(&name, project.as_deref());
            return format!("port {port} (service {service}) is held by container {name}: {fix}");
        }
        match ports::process_holding(port) {
            Some((pid, name)) => format!("port {port} (service {service}) is held by process {name} (pid {pid}): stop it, or move kart's ports with KART_PORT_OFFSET"),
            None => format!("port {port} (service {service}) is in use by another program: free it, or move kart's ports with KART_PORT_OFFSET"),
        }
    }

    async fn pull(&self, image: &str, platform: Option<&str>, printer: &Printer) -> std::result::Result<(), String> {
        let (repo, tag) = split_image(image);
        let options = CreateImageOptions { from_image: Some(repo), tag: Some(tag), platform: platform.unwrap_or_default().to_string(), ..Default::default() };
        let started = Instant::now();
        let bar = printer.progress_bar(&format!("Pulling {image}"));
        if bar.is_none() {
            printer.status("Pulling", image);
        }
        let mut layers: HashMap<String, (i64, i64)> = HashMap::new();
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| format!("{image}: {}", engine_message(&e)))?;
            if let Some(detail) = event.error_detail.and_then(|d| d.message) {
                return Err(format!("{image}: {detail}"));
            }
            if let (Some(id), Some(progress)) = (event.id.clone(), event.progress_detail) {
                if event.status.as_deref() == Some("Downloading") {
                    if let (Some(current), Some(total)) = (progress.current, progress.total) {
                        layers.insert(id, (current, total));
                    }
                }
            }
            if event.status.as_deref().is_some_and(|s| s == "Download complete" || s == "Pull complete" || s == "Already exists") {
                if let Some(id) = &event.id {
                    if let Some(entry) = layers.get_mut(id) {
                        entry.0 = entry.1;
                    }
                }
            }
            if let Some(bar) = &bar {
                let (done, total) = layers.values().fold((0, 0), |(d, t), (c, n)| (d + c, t + n));
                bar.set_length(total.max(1) as u64);
                bar.set_position(done.max(0) as u64);
            }
        }
        let total: i64 = layers.values().map(|(_, t)| t).sum();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        printer.status("Pulled", &format!("{image} ({:.1} MB in {:.1}s)", total as f64 / 1e6, started.elapsed().as_secs_f64()));
        Ok(())
    }

    fn labels(&self, project: &Project, mode: Mode) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_PROJECT.to_string(), project.name.clone()),
            (LABEL_KART_PROJECT.to_string(), project.name.clone()),
            (LABEL_KART_MODE.to_string(), mode.as_str().to_string()),
            ("io.kart.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ])
    }

    fn network_name(project: &Project) -> String {
        format!("{}_default", project.name)
    }

    async fn ensure_network(&self, project: &Project, mode: Mode) -> Result<()> {
        let name = Self::network_name(project);
        if self.docker.inspect_network(&name, None::<bollard::query_parameters::InspectNetworkOptions>).await.is_ok() {
            return Ok(());
        }
        let mut labels = self.labels(project, mode);
        labels.insert("com.docker.compose.network".into(), "default".into());
        let request = NetworkCreateRequest { name: name.clone(), driver: Some("bridge".into()), labels: Some(labels), ..Default::default() };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Created by a concurrent start in the meantime.
            Err(e) if engine_message(&e).contains("already exists") => Ok(()),
            Err(e) => Err(engine_error(&format!("cannot create network {name}"), &e)),
        }
    }

    fn volume_name(project: &Project, volume: &str) -> String {
        format!("{}_{volume}", project.name)
    }

    async fn ensure_volume(&self, project: &Project, mode: Mode, volume: &str) -> Result<()> {
        let name = Self::volume_name(project, volume);
        if self.docker.inspect_volume(&name).await.is_ok() {
            return Ok(());
        }
        let mut labels = self.labels(project, mode);
        labels.insert("com.docker.compose.volume".into(), volume.into());
        let request = VolumeCreateRequest { name: Some(name.clone()), labels: Some(labels), ..Default::default() };
        self.docker.create_volume(request).await.map(|_| ()).map_err(|e| engine_error(&format!("cannot create volume {name}"), &e))
    }

    async fn create_and_start(&self, project: &Project, mode: Mode, service: &ServiceSpec) -> Result<String> {
        let mut labels = self.labels(project, mode);
        labels.extend(service.labels.clone());
        for (k, v) in [
            (LABEL_SERVICE, service.name.clone()),
            (LABEL_CONFIG_HASH, service.config_hash()),
            ("com.docker.compose.container-number", "1".into()),
            ("com.docker.compose.oneoff", "False".into()),
            ("com.docker.compose.project.working_dir", project.working_dir.display().to_string()),
            ("com.docker.compose.project.config_files", project.file.display().to_string()),
            ("com.docker.compose.version", "2.0.0".into()),
            ("com.docker.compose.image", service.image.clone()),
        ] {
            labels.insert(k.to_string(), v);
        }
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in &service.ports {
            bindings
                .entry(format!("{}/{}", port.container_port, port.protocol))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding { host_ip: Some(port.host_ip.clone()), host_port: Some(port.host_port.to_string()) });
        }
        let mounts = service
            .mounts
            .iter()
            .map(|m| match m {
                Mount::Volume { source, target, read_only } => DockerMount {
                    target: Some(target.clone()),
                    source: Some(Self::volume_name(project, source)),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(*read_only),
                    ..Default::default()
                },
                Mount::Bind { source, target, read_only } => DockerMount {
                    target: Some(target.clone()),
                    source: Some(source.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(*read_only),
                    ..Default::default()
                },
            })
            .collect();
        let restart = service.restart.as_deref().map(|r| RestartPolicy {
            name: Some(match r {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            }),
            maximum_retry_count: None,
        });
        let nanos = |d: Option<Duration>| d.map(|d| d.as_nanos() as i64);
        let healthcheck = service.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            retries: h.retries,
            start_period: nanos(h.start_period),
            start_interval: None,
        });
        let network = Self::network_name(project);
        let body = ContainerCreateBody {
            image: Some(service.image.clone()),
            cmd: service.command.clone(),
            entrypoint: service.entrypoint.clone(),
            env: Some(service.environment.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            user: service.user.clone(),
            working_dir: service.working_dir.clone(),
            hostname: service.hostname.clone(),
            healthcheck,
            exposed_ports: Some(service.ports.iter().map(|p| format!("{}/{}", p.container_port, p.protocol)).collect()),
            stop_timeout: service.stop_grace_period.map(|d| d.as_secs() as i64),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                mounts: Some(mounts),
                network_mode: Some(network.clone()),
                restart_policy: restart,
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network,
                    EndpointSettings { aliases: Some(vec![service.name.clone(), service.container_name.clone()]), ..Default::default() },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(service.container_name.clone()), platform: service.platform.clone().unwrap_or_default() };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| engine_error(&format!("cannot create container {} (service {})", service.container_name, service.name), &e))?;
        self.start(&service.container_name).await?;
        Ok(created.id)
    }

    async fn start(&self, name: &str) -> Result<()> {
        match self.docker.start_container(name, None::<StartContainerOptions>).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = engine_message(&e);
                let hint = if message.contains("port is already allocated") || message.contains("address already in use") {
                    "another program took the port after the preflight check; free it and start again"
                } else {
                    "see `kart platform logs SERVICE`"
                };
                Err(KartError::infra("container-start-failed", format!("cannot start container {name}: {message}")).with_hint(hint))
            }
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: false, link: false };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Another remove of the same container is under way.
            Err(e) if engine_message(&e).contains("already in progress") => Ok(()),
            Err(e) => Err(engine_error(&format!("cannot remove container {id}"), &e)),
        }
    }

    /// Containers kart created for this project.
    async fn own_containers(&self, project: &str) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_KART_PROJECT}={project}")])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        self.docker.list_containers(Some(options)).await.map_err(|e| engine_error("cannot list containers", &e))
    }

    /// Local and remote stacks share container names: starting one mode
    /// removes the other mode's containers first.
    async fn remove_other_mode(&self, project: &Project, mode: Mode, printer: &Printer) -> Result<()> {
        for c in self.own_containers(&project.name).await? {
            let labels = c.labels.clone().unwrap_or_default();
            if labels.get(LABEL_KART_MODE).is_some_and(|m| m != mode.as_str()) {
                let name = c.names.unwrap_or_default().first().cloned().unwrap_or_default();
                printer.status("Removing", &format!("{} (it belongs to the {} stack)", name.trim_start_matches('/'), labels[LABEL_KART_MODE]));
                self.stop_and_remove(&c.id.unwrap_or_default()).await?;
            }
        }
        Ok(())
    }

    async fn stop_and_remove(&self, id: &str) -> Result<()> {
        let options = StopContainerOptions { t: Some(10), signal: None };
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(e) => return Err(engine_error(&format!("cannot stop container {id}"), &e)),
        }
        self.remove(id).await
    }

    /// Stops and removes every container, the network and (with `volumes`)
    /// the volumes kart created for `project`. Returns what it removed.
    pub async fn down(&self, project: &Project, volumes: bool, printer: &Printer) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        // A start interrupted mid-request can leave the engine finishing a
        // create or start after we listed: look again until nothing is left.
        for _round in 0..5 {
            let containers = self.own_containers(&project.name).await?;
            if containers.is_empty() {
                break;
            }
            let stops = containers.iter().map(|c| async move {
                let name = c.names.clone().unwrap_or_default().first().cloned().unwrap_or_default().trim_start_matches('/').to_string();
                self.stop_and_remove(c.id.as_deref().unwrap_or_default()).await.map(|_| name)
            });
            for name in futures::future::try_join_all(stops).await? {
                let entry = format!("container {name}");
                if !removed.contains(&entry) {
                    printer.status("Removed", &entry);
                    removed.push(entry);
                }
            }
        }
        let network = Self::network_name(project);
        if let Ok(info) = self.docker.inspect_network(&network, None::<bollard::query_parameters::InspectNetworkOptions>).await {
            if info.labels.unwrap_or_default().get(LABEL_KART_PROJECT) == Some(&project.name) {
                match self.docker.remove_network(&network).await {
                    Ok(()) => {
                        printer.status("Removed", &format!("network {network}"));
                        removed.push(format!("network {network}"));
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(engine_error(&format!("cannot remove network {network}"), &e)),
                }
            }
        }
        if volumes {
            let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_KART_PROJECT}={}", project.name)])]);
            let list = self
                .docker
                .list_volumes(Some(ListVolumesOptions { filters: Some(filters) }))
                .await
                .map_err(|e| engine_error("cannot list volumes", &e))?;
            for volume in list.volumes.unwrap_or_default() {
                match self.docker.remove_volume(&volume.name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
                    Ok(()) => {
                        printer.status("Removed", &format!("volume {}", volume.name));
                        removed.push(format!("volume {}", volume.name));
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(engine_error(&format!("cannot remove volume {}", volume.name), &e)),
                }
            }
        }
        Ok(removed)
    }

    /// Each service's container as the engine sees it.
    pub async fn status(&self, project: &Project, service: &ServiceSpec) -> ContainerStatus {
        match self.inspect(&service.container_name).await {
            None => ContainerStatus { container_id: None, state: "missing".into(), health: None, exit_code: None, up_to_date: false },
            Some(info) => {
                let labels = info.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
                if labels.get(LABEL_KART_PROJECT) != Some(&project.name) {
                    return ContainerStatus {
                        container_id: info.id.map(|i| i.chars().take(12).collect()),
                        state: "name taken by another container".into(),
                        health: None,
                        exit_code: None,
                        up_to_date: false,
                    };
                }
                let state = info.state.unwrap_or_default();
                ContainerStatus {
                    container_id: info.id.map(|i| i.chars().take(12).collect()),
                    state: state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                    health: state.health.and_then(|h| h.status).filter(|s| *s != HealthStatusEnum::EMPTY && *s != HealthStatusEnum::NONE).map(|s| s.to_string()),
                    exit_code: state.exit_code,
                    up_to_date: labels.get(LABEL_CONFIG_HASH) == Some(&service.config_hash()),
                }
            }
        }
    }

    /// The last `lines` lines of a container's output.
    pub async fn log_tail(&self, container: &str, lines: usize) -> Vec<String> {
        let options = LogsOptions { stdout: true, stderr: true, tail: lines.to_string(), ..Default::default() };
        let mut stream = self.docker.logs(container, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&chunk.to_string());
        }
        text.lines().map(str::to_string).collect()
    }

    /// Streams a container's logs to `sink` until the end (or forever with
    /// `follow`).
    pub async fn logs(&self, container: &str, follow: bool, tail: Option<usize>, mut sink: impl FnMut(&str) -> Result<()>) -> Result<()> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            follow,
            tail: tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into()),
            ..Default::default()
        };
        let mut stream = self.docker.logs(container, Some(options));
        let mut pending = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if is_not_found(&e) {
                    KartError::user("service-not-running", format!("there is no container {container}"))
                        .with_hint("start the platform with `kart platform start`")
                } else {
                    engine_error(&format!("cannot read the logs of {container}"), &e)
                }
            })?;
            pending.push_str(&chunk.to_string());
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                sink(line.trim_end_matches(['\n', '\r']))?;
            }
        }
        if !pending.is_empty() {
            sink(&pending)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Pending,
    Started,
    Ready,
    /// Sorts last so that waiting dependents wake up and fail with it.
    Failed,
}

fn set_waiting(waiting: &Mutex<HashMap<String, String>>, service: &str, why: &str) {
    if let Ok(mut w) = waiting.lock() {
        w.insert(service.to_string(), why.to_string());
    }
}

fn clear_waiting(waiting: &Mutex<HashMap<String, String>>, service: &str) {
    if let Ok(mut w) = waiting.lock() {
        w.remove(service);
    }
}

/// `repo[:tag]` → (repo, tag); a registry port is not a tag, and no tag
/// means `latest` (an empty tag would pull every tag of the repository).
pub fn split_image(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].rfind(':') {
        Some(colon) => (image[..last_slash + colon].to_string(), image[last_slash + colon + 1..].to_string()),
        None => (image.to_string(), "latest".to_string()),
    }
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// The engine's own message, without bollard's wrapping.
pub fn engine_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn engine_error(what: &str, error: &bollard::errors::Error) -> KartError {
    KartError::infra("docker-error", format!("{what}: {}", engine_message(error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_repository_and_tag() {
        assert_eq!(split_image("postgres:15-alpine"), ("postgres".into(), "15-alpine".into()));
        assert_eq!(split_image("flink"), ("flink".into(), "latest".into()));
        assert_eq!(split_image("127.0.0.1:5000/kart-test/postgres:15"), ("127.0.0.1:5000/kart-test/postgres".into(), "15".into()));
        assert_eq!(split_image("127.0.0.1:5000/kart-test/postgres"), ("127.0.0.1:5000/kart-test/postgres".into(), "latest".into()));
        assert_eq!(split_image("r/i@sha256:abc"), ("r/i".into(), "sha256:abc".into()));
    }
}
