//! `compose-local.yml` / `compose-remote.yml` → the services kart starts.
//!
//! Three passes: the subset check with line numbers (`subset`), the
//! `docker-compose-types` model over the YAML after `${VAR}` interpolation
//! from kart's resolved configuration, and a conversion into [`ServiceSpec`],
//! kart's own flat view that both backends and the config hash use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use docker_compose_types as dc;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::interpolate::interpolate;
use super::subset;
use crate::config::parse_duration;
use crate::exit::{KartError, Result};

/// A loaded compose file.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    /// `name:` of the file, unless `COMPOSE_PROJECT_NAME` says otherwise.
    pub name: String,
    pub file: PathBuf,
    pub working_dir: PathBuf,
    /// In file order.
    pub services: Vec<ServiceSpec>,
    /// Top-level named volumes, by their compose name.
    pub volumes: Vec<String>,
    /// Services left out, with why (a missing licence file, a profile).
    #[serde(skip)]
    pub skipped: Vec<(String, String)>,
    /// Variables the file references that are not set (compose warns too).
    #[serde(skip)]
    pub unset_variables: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    pub container_name: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub mounts: Vec<Mount>,
    pub healthcheck: Option<Healthcheck>,
    pub depends_on: Vec<Dependency>,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub platform: Option<String>,
    pub restart: Option<String>,
    pub stop_grace_period: Option<Duration>,
    /// Exit 0 means done (another service waits for it to complete).
    pub one_shot: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Where the port is published; kart defaults to loopback.
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Mount {
    /// A named volume of the project.
    Volume { source: String, target: String, read_only: bool },
    /// A host path, resolved against the compose file's directory.
    Bind { source: PathBuf, target: String, read_only: bool },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Healthcheck {
    /// Docker's form: `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<i64>,
    pub start_period: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
}

impl ServiceSpec {
    /// What decides whether a running container is out of date: a hash of
    /// everything kart sets on it.
    pub fn config_hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Project {
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Keeps only `names` and what they depend on (compose's behaviour for
    /// `up SERVICE`); an unknown name is an error listing the known ones.
    pub fn select(&mut self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            if self.service(name).is_none() && !self.skipped.iter().any(|(s, _)| s == name) {
                let known: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
                return Err(KartError::user(
                    "unknown-service",
                    format!("no service {name:?} in {}", self.file.display()),
                )
                .with_hint(format!("services: {}", known.join(", "))));
            }
        }
        let mut keep: Vec<String> = names.to_vec();
        let mut i = 0;
        while i < keep.len() {
            if let Some(service) = self.service(&keep[i]) {
                for dep in &service.depends_on {
                    if !keep.contains(&dep.service) {
                        keep.push(dep.service.clone());
                    }
                }
            }
            i += 1;
        }
        self.services.retain(|s| keep.contains(&s.name));
        Ok(())
    }

    /// Service names in an order where each comes after what it depends on.
    pub fn start_order(&self) -> Vec<&ServiceSpec> {
        let mut done: Vec<&str> = Vec::new();
        let mut order = Vec::new();
        while order.len() < self.services.len() {
            let before = order.len();
            for service in &self.services {
                if done.contains(&service.name.as_str()) {
                    continue;
                }
                let ready = service
                    .depends_on
                    .iter()
                    .all(|d| done.contains(&d.service.as_str()) || self.service(&d.service).is_none());
                if ready {
                    done.push(&service.name);
                    order.push(service);
                }
            }
            if order.len() == before {
                // A cycle is reported by `load`; never loop forever here.
                break;
            }
        }
        order
    }
}

/// Inputs of [`load`] that come from kart's configuration.
pub struct LoadOptions<'a> {
    /// A variable's value (`None` = unset).
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// `COMPOSE_PROJECT_NAME` when set explicitly.
    pub project_name: Option<String>,
    /// `KART_PORT_OFFSET`, added to every published host port.
    pub port_offset: u16,
    /// Where a service's `env_file: licence.env` may also be found
    /// (`license.env`, `FACTOR_HOUSE_CE_LICENSE`).
    pub licence_file: Option<PathBuf>,
}

/// Reads, checks and converts a compose file.
pub fn load(file: &Path, options: &LoadOptions<'_>) -> Result<Project> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| KartError::user("compose-missing", format!("cannot read {}: {e}", file.display()))
            .with_hint("run `kart init` to write kart's default compose files"))?;
    parse(&text, file, options)
}

/// [`load`] over text already read (tests, the built-in defaults).
pub fn parse(text: &str, file: &Path, options: &LoadOptions<'_>) -> Result<Project> {
    let display = file.display();
    if let Err(errors) = subset::check(text) {
        let lines: Vec<String> = errors.iter().map(|e| format!("{display}:{}: {}", e.line, e.message)).collect();
        return Err(KartError::user("compose-unsupported", lines.join("\n"))
            .with_hint("kart reads a subset of the Compose format; see the README's \"Compose files\" section"));
    }
    let mut value: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| KartError::user("compose-invalid", format!("{display}: {e}")))?;
    let mut unset = Vec::new();
    interpolate_value(&mut value, options.lookup, &mut unset)
        .map_err(|e| KartError::user("compose-variable", format!("{display}: {e}")))?;
    // `platform` is in kart's subset but not in the model: take it out first.
    let mut platforms = BTreeMap::new();
    if let Some(services) = value.get_mut("services").and_then(|s| s.as_mapping_mut()) {
        for (name, body) in services.iter_mut() {
            if let (Some(name), Some(body)) = (name.as_str(), body.as_mapping_mut()) {
                if let Some(platform) = body.remove("platform") {
                    platforms.insert(name.to_string(), platform.as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    let compose: dc::Compose = serde_yaml::from_value(value)
        .map_err(|e| KartError::user("compose-invalid", format!("{display}: {e}")))?;
    let working_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = options
        .project_name
        .clone()
        .or(compose.name.clone())
        .or_else(|| working_dir.file_name().map(|n| n.to_string_lossy().to_lowercase()))
        .unwrap_or_else(|| "kartshoppe".into());
    let volumes: Vec<String> = compose.volumes.0.keys().cloned().collect();
    let mut project = Project {
        name: name.clone(),
        file: file.to_path_buf(),
        working_dir: working_dir.clone(),
        services: Vec::new(),
        volumes,
        skipped: Vec::new(),
        unset_variables: unset,
    };
    // Which services others wait for to complete.
    let mut completed: Vec<String> = Vec::new();
    for (_, service) in compose.services.0.iter() {
        if let Some(service) = service {
            for dep in dependencies(&service.depends_on) {
                if dep.condition == Condition::ServiceCompletedSuccessfully {
                    completed.push(dep.service);
                }
            }
        }
    }
    for (service_name, service) in compose.services.0.iter() {
        let bad = |why: String| KartError::user("compose-invalid", format!("{display}: service {service_name}: {why}"));
        let Some(service) = service else {
            return Err(bad("is empty".into()));
        };
        if !service.profiles.is_empty() {
            project.skipped.push((service_name.clone(), format!("only in profile(s) {}", service.profiles.join(", "))));
            continue;
        }
        let Some(image) = service.image.clone() else {
            return Err(bad("has no `image:` (kart does not build images)".into()));
        };
        let mut environment = BTreeMap::new();
        let mut missing_env_file = None;
        for env_file in string_or_list(service.env_file.as_ref()) {
            let path = working_dir.join(&env_file);
            let path = if !path.exists() && is_licence_file(&env_file) {
                options.licence_file.clone().filter(|p| p.exists()).unwrap_or(path)
            } else {
                path
            };
            if !path.is_file() {
                missing_env_file = Some(env_file);
                break;
            }
            let entries = crate::config::envfile::read(&path)
                .map_err(|e| bad(format!("{}:{}: {}", e.path.display(), e.line, e.reason)))?;
            for entry in entries {
                environment.insert(entry.key, entry.value);
            }
        }
        if let Some(env_file) = missing_env_file {
            let why = if is_licence_file(&env_file) {
                format!("{env_file} not found (Kpow and Flex need a licence: copy licence.env.example to licence.env and fill it in)")
            } else {
                format!("its env_file {env_file} is missing")
            };
            project.skipped.push((service_name.clone(), why));
            continue;
        }
        match &service.environment {
            dc::Environment::List(items) => {
                for item in items {
                    let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                    environment.insert(k.to_string(), v.to_string());
                }
            }
            dc::Environment::KvPair(map) => {
                for (k, v) in map {
                    environment.insert(k.clone(), v.as_ref().map(|v| v.to_string()).unwrap_or_default());
                }
            }
        }
        let healthcheck = match &service.healthcheck {
            Some(h) if !h.disable => {
                let test = match &h.test {
                    Some(dc::HealthcheckTest::Single(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
                    Some(dc::HealthcheckTest::Multiple(v)) => v.clone(),
                    None => Vec::new(),
                };
                if test.first().map(String::as_str) == Some("NONE") || test.is_empty() {
                    None
                } else {
                    Some(Healthcheck {
                        test,
                        interval: duration(h.interval.as_deref()).map_err(&bad)?,
                        timeout: duration(h.timeout.as_deref()).map_err(&bad)?,
                        retries: (h.retries > 0).then_some(h.retries),
                        start_period: duration(h.start_period.as_deref()).map_err(&bad)?,
                    })
                }
            }
            _ => None,
        };
        let labels = match &service.labels {
            dc::Labels::List(items) => items
                .iter()
                .map(|i| {
                    let (k, v) = i.split_once('=').unwrap_or((i.as_str(), ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            dc::Labels::Map(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let spec = ServiceSpec {
            name: service_name.clone(),
            image,
            container_name: service.container_name.clone().unwrap_or_else(|| format!("{name}-{service_name}-1")),
            command: command(service.command.as_ref()).map_err(&bad)?,
            entrypoint: entrypoint(service.entrypoint.as_ref()).map_err(&bad)?,
            environment,
            ports: ports(&service.ports, options.port_offset).map_err(&bad)?,
            mounts: mounts(&service.volumes, &working_dir, &project.volumes).map_err(&bad)?,
            healthcheck,
            depends_on: dependencies(&service.depends_on),
            labels,
            user: service.user.clone(),
            working_dir: service.working_dir.clone(),
            hostname: service.hostname.clone(),
            platform: platforms.get(service_name).cloned(),
            restart: service.restart.clone(),
            stop_grace_period: duration(service.stop_grace_period.as_deref()).map_err(&bad)?,
            one_shot: completed.contains(service_name),
        };
        project.services.push(spec);
    }
    // Dependencies on skipped services are dropped (a skipped Kpow must not
    // stop the rest); on unknown ones they are an error.
    let known: Vec<String> = project.services.iter().map(|s| s.name.clone()).collect();
    let skipped: Vec<String> = project.skipped.iter().map(|(s, _)| s.clone()).collect();
    let mut newly_skipped = Vec::new();
    for service in &mut project.services {
        for dep in &service.depends_on {
            if skipped.contains(&dep.service) {
                newly_skipped.push((service.name.clone(), format!("it depends on {}, which is skipped", dep.service)));
            } else if !known.contains(&dep.service) {
                return Err(KartError::user(
                    "compose-invalid",
                    format!("{display}: service {} depends on unknown service {}", service.name, dep.service),
                ));
            }
        }
    }
    for (name, why) in newly_skipped {
        project.services.retain(|s| s.name != name);
        project.skipped.push((name, why));
    }
    if project.start_order().len() != project.services.len() {
        return Err(KartError::user("compose-invalid", format!("{display}: depends_on has a cycle")));
    }
    Ok(project)
}

fn is_licence_file(name: &str) -> bool {
    matches!(Path::new(name).file_name().and_then(|n| n.to_str()), Some("licence.env" | "license.env"))
}

fn interpolate_value(
    value: &mut serde_yaml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> std::result::Result<(), super::interpolate::InterpolateError> {
    match value {
        serde_yaml::Value::String(s) => {
            *s = interpolate(s, lookup, unset)?;
        }
        serde_yaml::Value::Sequence(items) => {
            for item in items {
                interpolate_value(item, lookup, unset)?;
            }
        }
        serde_yaml::Value::Mapping(map) => {
            for (_, v) in map.iter_mut() {
                interpolate_value(v, lookup, unset)?;
            }
        }
        serde_yaml::Value::Tagged(tagged) => interpolate_value(&mut tagged.value, lookup, unset)?,
        _ => {}
    }
    Ok(())
}

fn string_or_list(value: Option<&dc::StringOrList>) -> Vec<String> {
    match value {
        None => Vec::new(),
        Some(dc::StringOrList::Simple(s)) => vec![s.clone()],
        Some(dc::StringOrList::List(v)) => v.clone(),
    }
}

fn duration(text: Option<&str>) -> std::result::Result<Option<Duration>, String> {
    text.map(|t| parse_duration(t).map_err(|e| format!("duration {t:?}: {e}"))).transpose()
}

fn split_words(text: &str) -> std::result::Result<Vec<String>, String> {
    shell_words::split(text).map_err(|e| format!("cannot split {text:?} into words: {e}"))
}

fn command(value: Option<&dc::Command>) -> std::result::Result<Option<Vec<String>>, String> {
    match value {
        None => Ok(None),
        Some(dc::Command::Simple(s)) => split_words(s).map(Some),
        Some(dc::Command::Args(v)) => Ok(Some(v.clone())),
    }
}

fn entrypoint(value: Option<&dc::Entrypoint>) -> std::result::Result<Option<Vec<String>>, String> {
    match value {
        None => Ok(None),
        Some(dc::Entrypoint::Simple(s)) => split_words(s).map(Some),
        Some(dc::Entrypoint::List(v)) => Ok(Some(v.clone())),
    }
}

fn dependencies(value: &dc::DependsOnOptions) -> Vec<Dependency> {
    match value {
        dc::DependsOnOptions::Simple(names) => {
            names.iter().map(|s| Dependency { service: s.clone(), condition: Condition::ServiceStarted }).collect()
        }
        dc::DependsOnOptions::Conditional(map) => map
            .iter()
            .map(|(s, c)| Dependency {
                service: s.clone(),
                condition: match c.condition.as_str() {
                    "service_healthy" => Condition::ServiceHealthy,
                    "service_completed_successfully" => Condition::ServiceCompletedSuccessfully,
                    _ => Condition::ServiceStarted,
                },
            })
            .collect(),
    }
}

/// Short syntax: `"HOST:CONTAINER"`, `"IP:HOST:CONTAINER"`, `"CONTAINER"`,
/// each with an optional `/tcp|/udp`. A port without a host side is not
/// published (kart publishes only what the file asks for).
pub fn parse_port(text: &str, offset: u16) -> std::result::Result<Option<PortSpec>, String> {
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((p, proto)) if proto == "tcp" || proto == "udp" => (p, proto),
        Some(_) => return Err(format!("port {text:?}: protocol must be tcp or udp")),
        None => (text, "tcp"),
    };
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    let number = |s: &str| s.parse::<u16>().map_err(|_| format!("port {text:?}: {s:?} is not a port number (ranges are not supported)"));
    let (host_ip, host, container) = match parts.as_slice() {
        [container] => {
            number(container)?;
            return Ok(None);
        }
        [container, host] => ("127.0.0.1".to_string(), *host, *container),
        [container, host, ip] => (ip.trim_matches(['[', ']']).to_string(), *host, *container),
        _ => return Err(format!("port {text:?} is not HOST:CONTAINER")),
    };
    let host_port = number(host)?;
    let host_port = host_port.checked_add(offset).ok_or_else(|| format!("port {text:?} + KART_PORT_OFFSET {offset} exceeds 65535"))?;
    Ok(Some(PortSpec { host_ip, host_port, container_port: number(container)?, protocol: protocol.to_string() }))
}

fn ports(value: &dc::Ports, offset: u16) -> std::result::Result<Vec<PortSpec>, String> {
    let mut out = Vec::new();
    match value {
        dc::Ports::Short(items) => {
            for item in items {
                out.extend(parse_port(item, offset)?);
            }
        }
        dc::Ports::Long(items) => {
            for port in items {
                let host = match &port.published {
                    None => continue,
                    Some(dc::PublishedPort::Single(p)) => *p,
                    Some(dc::PublishedPort::Range(r)) => r.parse::<u16>().map_err(|_| format!("published port {r:?}: ranges are not supported"))?,
                };
                out.push(PortSpec {
                    host_ip: port.host_ip.clone().unwrap_or_else(|| "127.0.0.1".into()),
                    host_port: host.checked_add(offset).ok_or_else(|| format!("port {host} + KART_PORT_OFFSET exceeds 65535"))?,
                    container_port: port.target,
                    protocol: port.protocol.clone().unwrap_or_else(|| "tcp".into()),
                });
            }
        }
    }
    Ok(out)
}

fn mounts(items: &[dc::Volumes], working_dir: &Path, named: &[String]) -> std::result::Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for item in items {
        let (source, target, read_only, kind) = match item {
            dc::Volumes::Simple(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [source, target] => (source.to_string(), target.to_string(), false, None),
                    [source, target, mode] => (source.to_string(), target.to_string(), mode.split(',').any(|m| m == "ro"), None),
                    _ => return Err(format!("volume {text:?}: expected SOURCE:TARGET[:ro] (anonymous volumes are not supported)")),
                }
            }
            dc::Volumes::Advanced(v) => {
                let source = v.source.clone().ok_or_else(|| format!("volume for {}: `source` is required", v.target))?;
                (source, v.target.clone(), v.read_only, Some(v._type.clone()))
            }
        };
        let is_path = source.starts_with('.') || source.starts_with('/') || source.starts_with('~');
        match kind.as_deref() {
            Some("bind") => {}
            Some("volume") | None => {}
            Some(other) => return Err(format!("volume type {other:?} is not supported (volume, bind)")),
        }
        if kind.as_deref() == Some("bind") || (kind.is_none() && is_path) {
            let path = if let Some(rest) = source.strip_prefix("~/") {
                std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest)
            } else {
                working_dir.join(&source)
            };
            out.push(Mount::Bind { source: path, target, read_only });
        } else {
            if !named.contains(&source) {
                return Err(format!("volume {source:?} is not declared under the top-level `volumes:`"));
            }
            out.push(Mount::Volume { source, target, read_only });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "POSTGRES_USER" => Some("kart".into()),
            "KAFKA_BOOTSTRAP_SERVERS_DOCKER" => Some("redpanda:9092".into()),
            _ => None,
        }
    }

    fn options(offset: u16) -> LoadOptions<'static> {
        LoadOptions { lookup: &lookup, project_name: None, port_offset: offset, licence_file: None }
    }

    #[test]
    fn kart_s_local_file_loads_with_its_services_in_dependency_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose-local.yml");
        let project = parse(include_str!("../../compose-local.yml"), &file, &options(0)).unwrap();
        assert_eq!(project.name, "kartshoppe");
        // No licence.env here: Kpow and Flex are skipped, the rest stays.
        let skipped: Vec<&str> = project.skipped.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(skipped, ["kpow", "flex"]);
        let order: Vec<&str> = project.start_order().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["redpanda", "postgres", "jobmanager", "taskmanager"]);
        let postgres = project.service("postgres").unwrap();
        assert_eq!(postgres.container_name, "postgres-cdc");
        assert_eq!(postgres.environment["POSTGRES_USER"], "kart");
        assert_eq!(postgres.environment["POSTGRES_DB"], "ecommerce");
        assert_eq!(postgres.ports, vec![PortSpec { host_ip: "127.0.0.1".into(), host_port: 5432, container_port: 5432, protocol: "tcp".into() }]);
        assert_eq!(postgres.healthcheck.as_ref().unwrap().test, ["CMD-SHELL", "pg_isready -U kart -d ecommerce"]);
        assert!(matches!(&postgres.mounts[0], Mount::Volume { source, .. } if source == "postgres-data"));
        assert!(postgres.command.as_ref().unwrap().contains(&"wal_level=logical".to_string()));
    }

    #[test]
    fn a_licence_file_brings_kpow_and_flex_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("licence.env"), "LICENSE_ID=abc\n").unwrap();
        let file = dir.path().join("compose-local.yml");
        let project = parse(include_str!("../../compose-local.yml"), &file, &options(0)).unwrap();
        assert!(project.skipped.is_empty(), "{:?}", project.skipped);
        assert_eq!(project.service("kpow").unwrap().environment["LICENSE_ID"], "abc");
        assert_eq!(project.service("kpow").unwrap().environment["BOOTSTRAP"], "redpanda:9092");
    }

    #[test]
    fn the_port_offset_moves_every_published_port() {
        let dir = tempfile::tempdir().unwrap();
        let project = parse(include_str!("../../compose-local.yml"), &dir.path().join("c.yml"), &options(100)).unwrap();
        let ports: Vec<u16> = project.service("redpanda").unwrap().ports.iter().map(|p| p.host_port).collect();
        assert_eq!(ports, [19192, 18182, 19744]);
    }

    #[test]
    fn selecting_a_service_keeps_its_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let mut project = parse(include_str!("../../compose-local.yml"), &dir.path().join("c.yml"), &options(0)).unwrap();
        project.select(&["taskmanager".into()]).unwrap();
        let names: Vec<&str> = project.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["jobmanager", "taskmanager"]);
        assert!(project.select(&["nope".into()]).is_err());
    }

    #[test]
    fn the_config_hash_changes_with_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let a = parse(include_str!("../../compose-local.yml"), &dir.path().join("c.yml"), &options(0)).unwrap();
        let b = parse(include_str!("../../compose-local.yml"), &dir.path().join("c.yml"), &options(1)).unwrap();
        assert_eq!(a.services[0].config_hash(), a.services[0].config_hash());
        assert_ne!(a.services[0].config_hash(), b.services[0].config_hash());
    }

    #[test]
    fn errors_name_the_file_and_what_is_wrong() {
        let file = Path::new("/p/compose.yml");
        let err = parse("services:\n  a:\n    image: x\n    build: .\n", file, &options(0)).unwrap_err();
        assert!(err.message.contains("/p/compose.yml:4: unsupported key `services.a.build`"), "{}", err.message);
        let err = parse("services:\n  a:\n    image: x\n    depends_on: [b]\n", file, &options(0)).unwrap_err();
        assert!(err.message.contains("unknown service b"), "{}", err.message);
        let err = parse("services:\n  a:\n    image: ${IMG:?set IMG}\n", file, &options(0)).unwrap_err();
        assert!(err.message.contains("IMG: set IMG"), "{}", err.message);
        let err = parse("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n", file, &options(0)).unwrap_err();
        assert!(err.message.contains("cycle"), "{}", err.message);
    }

    #[test]
    fn one_shots_are_services_others_wait_to_complete() {
        let text = "services:\n  init:\n    image: x\n  app:\n    image: y\n    depends_on:\n      init:\n        condition: service_completed_successfully\n";
        let project = parse(text, Path::new("/p/c.yml"), &options(0)).unwrap();
        assert!(project.service("init").unwrap().one_shot);
        assert!(!project.service("app").unwrap().one_shot);
        assert_eq!(project.service("init").unwrap().container_name, "p-init-1");
    }

    #[test]
    fn port_forms() {
        assert_eq!(parse_port("5432", 0).unwrap(), None);
        assert_eq!(parse_port("15432:5432", 0).unwrap().unwrap().host_ip, "127.0.0.1");
        let p = parse_port("0.0.0.0:8080:80/udp", 1).unwrap().unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port, p.container_port, p.protocol.as_str()), ("0.0.0.0", 8081, 80, "udp"));
        assert!(parse_port("80-90:80-90", 0).is_err());
        assert!(parse_port("65535:1", 1).is_err());
    }

    proptest! {
        #[test]
        fn port_parsing_never_panics(text in "\\PC{0,24}", offset in 0u16..1000) {
            let _ = parse_port(&text, offset);
        }

        /// Arbitrary text as a compose file: an error or a project, never a panic.
        #[test]
        fn loading_never_panics(text in "(services:\n  [a-z]{1,4}:\n    [a-z_]{1,10}: [\\PC]{0,20}\n){0,3}") {
            let _ = parse(&text, Path::new("/p/c.yml"), &options(0));
        }
    }
}
