//! Which Docker engine to talk to, found like the docker CLI finds it:
//! `DOCKER_HOST`, then `DOCKER_CONTEXT` or the current context of
//! `~/.docker/config.json`, then the default socket (and the sockets Docker
//! Desktop, Colima, rootless Docker and Podman use). The released bollard
//! has no context resolution, so it lives here.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// An engine address and how it was chosen (shown by `doctor` and in errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix:///path` or `tcp://host:port`.
    pub host: String,
    pub source: String,
}

/// Inputs of the discovery, so that tests can drive it without touching the
/// real environment.
pub struct Lookup<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub home: Option<PathBuf>,
}

pub fn discover(lookup: &Lookup<'_>) -> Endpoint {
    if let Some(host) = (lookup.env)("DOCKER_HOST").filter(|h| !h.trim().is_empty()) {
        return Endpoint { host: host.trim().to_string(), source: "DOCKER_HOST".into() };
    }
    let config_dir = (lookup.env)("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| lookup.home.as_ref().map(|h| h.join(".docker")));
    let context = (lookup.env)("DOCKER_CONTEXT").filter(|c| !c.trim().is_empty()).map(|c| (c, "DOCKER_CONTEXT")).or_else(|| {
        let config = std::fs::read(config_dir.as_ref()?.join("config.json")).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&config).ok()?;
        value.get("currentContext")?.as_str().map(|c| (c.to_string(), "current context"))
    });
    if let (Some((name, how)), Some(dir)) = (context, config_dir.as_ref()) {
        if name != "default" {
            if let Some(host) = context_host(dir, &name) {
                return Endpoint { host, source: format!("Docker context {name:?} ({how})") };
            }
        }
    }
    let mut candidates = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(home) = &lookup.home {
        candidates.push(home.join(".docker/run/docker.sock"));
        candidates.push(home.join(".colima/default/docker.sock"));
        candidates.push(home.join(".rd/docker.sock"));
    }
    if let Some(runtime) = (lookup.env)("XDG_RUNTIME_DIR") {
        candidates.push(Path::new(&runtime).join("docker.sock"));
        candidates.push(Path::new(&runtime).join("podman/podman.sock"));
    }
    for candidate in &candidates {
        if candidate.exists() {
            let source = if candidate == Path::new("/var/run/docker.sock") { "default socket" } else { "found socket" };
            return Endpoint { host: format!("unix://{}", candidate.display()), source: source.into() };
        }
    }
    Endpoint { host: "unix:///var/run/docker.sock".into(), source: "default socket".into() }
}

/// The docker CLI stores a context's metadata under the SHA-256 of its name.
fn context_host(config_dir: &Path, name: &str) -> Option<String> {
    let digest: String = Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let meta = std::fs::read(config_dir.join("contexts/meta").join(digest).join("meta.json")).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&meta).ok()?;
    value.pointer("/Endpoints/docker/Host")?.as_str().map(str::to_string)
}

/// What to try when the engine does not answer, by kind of endpoint.
pub fn unreachable_hint(endpoint: &Endpoint) -> String {
    if endpoint.host.starts_with("unix://") {
        let path = endpoint.host.trim_start_matches("unix://");
        if !Path::new(path).exists() {
            return format!(
                "no socket at {path}: start Docker Desktop (or `colima start`, or `sudo systemctl start docker`), \
                 or set DOCKER_HOST; `kart platform start --backend native` runs without Docker"
            );
        }
        if std::fs::metadata(path).is_ok() && std::os::unix::net::UnixStream::connect(path).is_err() {
            return format!(
                "cannot open {path}: add yourself to the `docker` group (`sudo usermod -aG docker $USER`, then log in again) \
                 or check that the engine runs; `--backend native` runs without Docker"
            );
        }
        return "the engine did not answer in time: is it starting or overloaded? `--backend native` runs without Docker".into();
    }
    format!("check that an engine listens at {} (DOCKER_HOST); `--backend native` runs without Docker", endpoint.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_wins() {
        let env = |k: &str| (k == "DOCKER_HOST").then(|| "tcp://10.0.0.1:2375".to_string());
        let e = discover(&Lookup { env: &env, home: None });
        assert_eq!(e, Endpoint { host: "tcp://10.0.0.1:2375".into(), source: "DOCKER_HOST".into() });
    }

    #[test]
    fn the_current_context_is_read_from_the_cli_config() {
        let home = tempfile::tempdir().unwrap();
        let docker = home.path().join(".docker");
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::write(docker.join("config.json"), r#"{"currentContext":"colima"}"#).unwrap();
        let digest: String = Sha256::digest(b"colima").iter().map(|b| format!("{b:02x}")).collect();
        let meta = docker.join("contexts/meta").join(digest);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join("meta.json"), r#"{"Name":"colima","Endpoints":{"docker":{"Host":"unix:///home/u/.colima/default/docker.sock"}}}"#).unwrap();
        let env = |_: &str| None;
        let e = discover(&Lookup { env: &env, home: Some(home.path().to_path_buf()) });
        assert_eq!(e.host, "unix:///home/u/.colima/default/docker.sock");
        assert!(e.source.contains("colima"), "{}", e.source);
        // DOCKER_CONTEXT overrides the config file's choice.
        let env = |k: &str| (k == "DOCKER_CONTEXT").then(|| "default".to_string());
        let e = discover(&Lookup { env: &env, home: Some(home.path().to_path_buf()) });
        assert!(e.host.starts_with("unix://"), "{e:?}");
        assert!(!e.source.contains("colima"));
    }
}
