//! Configuration: the workshop's variable names, resolved from several sources
//! (design §3). Later sources win:
//!
//! 1. built-in defaults (kart's own `.env.<mode>` compiled into the binary, and
//!    the `KART_*` defaults below),
//! 2. `.env.<mode>` in the project directory,
//! 3. `.env` in the project directory,
//! 4. each `--env-file`, in order,
//! 5. the process environment,
//! 6. flags.
//!
//! Every value remembers where it came from, so `kart config` can say so and
//! errors can name the file that holds a bad value.

pub mod envfile;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exit::{KartError, Result};

/// Local: the services of `compose-local.yml`. Remote: managed Kafka and Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Local,
    Remote,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Remote => "remote",
        }
    }

    pub fn env_file_name(self) -> &'static str {
        match self {
            Mode::Local => ".env.local",
            Mode::Remote => ".env.remote",
        }
    }

    /// kart's own env file for this mode, as `kart init` writes it.
    pub fn builtin_env_file(self) -> &'static str {
        match self {
            Mode::Local => include_str!("../../.env.local"),
            Mode::Remote => include_str!("../../.env.remote"),
        }
    }
}

/// kart's own settings that the workshop's env files do not carry.
pub const KART_DEFAULTS: &[(&str, &str)] = &[
    ("KAFKA_GROUP_ID", "kart-inventory"),
    ("KAFKA_SECURITY_PROTOCOL", ""),
    ("KAFKA_SASL_MECHANISM", ""),
    ("PGSSLMODE", "prefer"),
    ("COMPOSE_PROJECT_NAME", "kartshoppe"),
    ("FACTOR_HOUSE_CE_LICENSE", ""),
    ("KART_LOW_STOCK_THRESHOLD", "10"),
    ("KART_STALE_TIMEOUT", "1h"),
    ("KART_ON_INSUFFICIENT", "reject"),
    ("KART_DEDUP_WINDOW", "24h"),
    ("KART_COMMIT_INTERVAL", "20ms"),
    ("KART_FETCH_WAIT", "100ms"),
    ("KART_FLINK_URL", "http://localhost:18081"),
    ("KART_PORT_OFFSET", "0"),
    ("KART_CONNECT_TIMEOUT", "10s"),
    ("KART_PG_BINDIR", ""),
    ("KART_TANSU_BIN", ""),
];

/// Settings whose value is a path: relative paths in an env file are
/// resolved against that file's directory.
const PATH_SETTINGS: &[&str] = &["INITIAL_PRODUCTS_FILE", "FACTOR_HOUSE_CE_LICENSE", "KART_PG_BINDIR", "KART_TANSU_BIN"];

/// The text every unfilled value of `.env.remote` starts with.
pub const PLACEHOLDER_PREFIX: &str = "[REPLACE_WITH_";

/// Values that are never printed.
pub fn is_secret(name: &str) -> bool {
    name.ends_with("PASSWORD") || name.ends_with("SECRET") || matches!(name, "LICENSE_CODE" | "LICENSE_SIGNATURE")
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Compiled into kart: `file` names the built-in env file, if any.
    Default { builtin_file: Option<&'static str> },
    File { path: PathBuf, line: usize },
    /// The process environment; `shadows` is the env-file value it overrides.
    Environment { shadows: Option<Box<Source>> },
    Flag { flag: &'static str },
}

impl Source {
    /// `default`, `file`, `environment` or `flag`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Default { .. } => "default",
            Source::File { .. } => "file",
            Source::Environment { .. } => "environment",
            Source::Flag { .. } => "flag",
        }
    }

    /// Short label for people.
    pub fn describe(&self) -> String {
        match self {
            Source::Default { builtin_file: Some(f) } => format!("default (built-in {f})"),
            Source::Default { builtin_file: None } => "default".into(),
            Source::File { path, line } => format!("{}:{line}", path.display()),
            Source::Environment { shadows: Some(s) } => format!("environment (overrides {})", s.describe()),
            Source::Environment { shadows: None } => "environment".into(),
            Source::Flag { flag } => format!("flag {flag}"),
        }
    }

    /// Where to go to change the value, for error messages.
    pub fn location(&self) -> String {
        match self {
            Source::Default { builtin_file: Some(f) } => format!("kart's built-in {f} (create your own with `kart init`)"),
            Source::Default { builtin_file: None } => "kart's defaults".into(),
            Source::File { path, line } => format!("{} line {line}", path.display()),
            Source::Environment { .. } => "the process environment".into(),
            Source::Flag { flag } => format!("the {flag} flag"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub source: Source,
}

impl Setting {
    pub fn is_placeholder(&self) -> bool {
        self.value.contains(PLACEHOLDER_PREFIX)
    }

    /// The value as it may be shown: secrets become `***`.
    pub fn display_value(&self) -> String {
        if is_secret(&self.name) && !self.value.is_empty() { "***".into() } else { self.value.clone() }
    }
}

/// What resolution reads. The process environment is passed in so tests can
/// resolve without touching the real one.
#[derive(Debug, Clone)]
pub struct ResolveInputs {
    pub mode: Mode,
    pub project_dir: PathBuf,
    pub env_files: Vec<PathBuf>,
    pub process_env: HashMap<String, String>,
    pub flags: Vec<(&'static str, &'static str, String)>, // (setting, flag, value)
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    values: BTreeMap<String, Setting>,
    /// Env files that were read, in order.
    pub files_read: Vec<PathBuf>,
    /// Things worth a warning (a `.env` that looks like the other mode's).
    pub warnings: Vec<String>,
}

impl Settings {
    pub fn resolve(inputs: &ResolveInputs) -> Result<Settings> {
        let mode = inputs.mode;
        let mut values: BTreeMap<String, Setting> = BTreeMap::new();
        let mut warnings = Vec::new();
        let mut files_read = Vec::new();

        let builtin_name = mode.env_file_name();
        for entry in envfile::parse(mode.builtin_env_file(), Path::new(builtin_name))
            .map_err(|e| KartError::infra("internal", format!("built-in env file is invalid: {e}")))?
        {
            values.insert(
                entry.key.clone(),
                Setting { name: entry.key, value: entry.value, source: Source::Default { builtin_file: Some(builtin_name) } },
            );
        }
        for (name, value) in KART_DEFAULTS {
            values.entry((*name).to_string()).or_insert_with(|| Setting {
                name: (*name).to_string(),
                value: (*value).to_string(),
                source: Source::Default { builtin_file: None },
            });
        }

        let mut files: Vec<(PathBuf, bool)> = vec![
            (inputs.project_dir.join(mode.env_file_name()), false),
            (inputs.project_dir.join(".env"), false),
        ];
        files.extend(inputs.env_files.iter().map(|p| (absolute(&inputs.project_dir, p), true)));
        for (path, required) in files {
            if !path.exists() {
                if required {
                    return Err(KartError::user("env-file-missing", format!("env file {} does not exist", path.display()))
                        .with_hint("check the --env-file path (relative paths start at the current directory)"));
                }
                continue;
            }
            let entries = envfile::read(&path).map_err(|e| {
                KartError::user("env-file-invalid", format!("malformed env file {}, line {}: {}", e.path.display(), e.line, e.reason))
                    .with_hint("each line should read `export KEY=\"value\"`, `KEY=value`, a `#` comment or nothing")
            })?;
            if path.file_name().is_some_and(|n| n == ".env") {
                if let Some(w) = looks_like_other_mode(mode, &entries, &path) {
                    warnings.push(w);
                }
            }
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            for entry in entries {
                let mut value = entry.value;
                if PATH_SETTINGS.contains(&entry.key.as_str()) && !value.is_empty() && Path::new(&value).is_relative() {
                    value = dir.join(&value).display().to_string();
                }
                values.insert(
                    entry.key.clone(),
                    Setting { name: entry.key, value, source: Source::File { path: path.clone(), line: entry.line } },
                );
            }
            files_read.push(path);
        }

        // The process environment overrides files only for names kart knows:
        // the shell is full of unrelated variables.
        let names: Vec<String> = values.keys().cloned().collect();
        for name in names {
            if let Some(value) = inputs.process_env.get(&name) {
                let Some(previous) = values.get(&name) else { continue };
                if previous.value == *value && !matches!(previous.source, Source::Default { .. }) {
                    continue; // same value: the file stays the better explanation
                }
                let shadows = match &previous.source {
                    s @ Source::File { .. } => Some(Box::new(s.clone())),
                    _ => None,
                };
                values.insert(name.clone(), Setting { name, value: value.clone(), source: Source::Environment { shadows } });
            }
        }
        for (name, flag, value) in &inputs.flags {
            values.insert((*name).to_string(), Setting { name: (*name).to_string(), value: value.clone(), source: Source::Flag { flag } });
        }
        Ok(Settings { mode, values, files_read, warnings })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Setting> {
        self.values.values()
    }

    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.values.get(name)
    }

    /// The raw value, placeholders included (`""` when unknown).
    pub fn raw(&self, name: &str) -> &str {
        self.values.get(name).map(|s| s.value.as_str()).unwrap_or("")
    }

    /// A value a command needs: a placeholder is an error naming the
    /// variable and the file; empty is returned as is.
    pub fn get(&self, name: &str) -> Result<&str> {
        match self.values.get(name) {
            Some(s) if s.is_placeholder() => Err(KartError::user(
                "placeholder",
                format!("{name} is still the placeholder `{}` (from {})", s.value, s.source.location()),
            )
            .with_hint(format!("set {name} in {} or in the environment", self.mode.env_file_name()))),
            Some(s) => Ok(s.value.as_str()),
            None => Ok(""),
        }
    }

    /// A value that must be present and non-empty.
    pub fn require(&self, name: &str) -> Result<&str> {
        let value = self.get(name)?;
        if value.trim().is_empty() {
            let place = self.values.get(name).map(|s| s.source.location()).unwrap_or_else(|| "nowhere".into());
            return Err(KartError::user("missing-setting", format!("{name} is empty (from {place})"))
                .with_hint(format!("set {name} in {} or in the environment", self.mode.env_file_name())));
        }
        Ok(value)
    }

    pub fn duration(&self, name: &str) -> Result<Duration> {
        let value = self.require(name)?;
        parse_duration(value).map_err(|e| self.bad_value(name, &e))
    }

    pub fn integer(&self, name: &str) -> Result<i64> {
        let value = self.require(name)?;
        value.trim().parse::<i64>().map_err(|e| self.bad_value(name, &e.to_string()))
    }

    pub fn bad_value(&self, name: &str, why: &str) -> KartError {
        let place = self.values.get(name).map(|s| s.source.location()).unwrap_or_default();
        KartError::user("bad-setting", format!("{name}={:?} (from {place}) is invalid: {why}", self.raw(name)))
    }

    /// Every setting that still holds a placeholder.
    pub fn placeholders(&self) -> Vec<&Setting> {
        self.values.values().filter(|s| s.is_placeholder()).collect()
    }
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| base.join(path))
    }
}

fn looks_like_other_mode(mode: Mode, entries: &[envfile::Entry], path: &Path) -> Option<String> {
    match mode {
        Mode::Local => entries.iter().find(|e| e.value.contains(PLACEHOLDER_PREFIX)).map(|e| {
            format!(
                "{} looks like a remote-mode file ({} holds a placeholder at line {}) but the mode is local",
                path.display(),
                e.key,
                e.line
            )
        }),
        Mode::Remote => entries
            .iter()
            .find(|e| e.key == "KAFKA_BOOTSTRAP_SERVERS" && (e.value.contains("localhost") || e.value.contains("127.0.0.1")))
            .map(|e| format!("{} points KAFKA_BOOTSTRAP_SERVERS at {} (line {}) but the mode is remote", path.display(), e.value, e.line)),
    }
}

/// Durations as people write them: `500ms`, `10s`, `5m`, `1h`, `1h30m`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (write durations like 500ms, 10s, 5m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(dir: &Path) -> ResolveInputs {
        ResolveInputs {
            mode: Mode::Local,
            project_dir: dir.to_path_buf(),
            env_files: vec![],
            process_env: HashMap::new(),
            flags: vec![],
        }
    }

    #[test]
    fn built_in_defaults_match_the_workshop() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::resolve(&inputs(dir.path())).unwrap();
        assert_eq!(s.raw("KAFKA_BOOTSTRAP_SERVERS"), "localhost:19092");
        assert_eq!(s.raw("POSTGRES_DB"), "ecommerce");
        assert_eq!(s.raw("KART_LOW_STOCK_THRESHOLD"), "10");
        assert!(matches!(s.setting("POSTGRES_DB").unwrap().source, Source::Default { builtin_file: Some(".env.local") }));
    }

    #[test]
    fn precedence_and_shadowing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env.local"), "export POSTGRES_DB=\"fromlocal\"\nexport POSTGRES_PORT=\"6000\"\n").unwrap();
        std::fs::write(dir.path().join(".env"), "export POSTGRES_PORT=\"7000\"\n").unwrap();
        let extra = dir.path().join("extra.env");
        std::fs::write(&extra, "export POSTGRES_USER=\"extra\"\nexport INITIAL_PRODUCTS_FILE=\"data/p.json\"\n").unwrap();
        let mut i = inputs(dir.path());
        i.env_files.push(extra.clone());
        i.process_env.insert("POSTGRES_USER".into(), "shell".into());
        i.process_env.insert("UNRELATED".into(), "x".into());
        i.flags.push(("KART_CONNECT_TIMEOUT", "--connect-timeout", "3s".into()));
        let s = Settings::resolve(&i).unwrap();
        assert_eq!(s.raw("POSTGRES_DB"), "fromlocal");
        assert_eq!(s.raw("POSTGRES_PORT"), "7000");
        assert_eq!(s.raw("POSTGRES_USER"), "shell");
        assert!(matches!(&s.setting("POSTGRES_USER").unwrap().source, Source::Environment { shadows: Some(_) }));
        assert_eq!(s.raw("INITIAL_PRODUCTS_FILE"), dir.path().join("data/p.json").display().to_string());
        assert_eq!(s.duration("KART_CONNECT_TIMEOUT").unwrap(), Duration::from_secs(3));
        assert!(s.setting("UNRELATED").is_none());
    }

    #[test]
    fn remote_placeholders_name_variable_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = inputs(dir.path());
        i.mode = Mode::Remote;
        let s = Settings::resolve(&i).unwrap();
        let err = s.get("KAFKA_BOOTSTRAP_SERVERS").unwrap_err();
        assert!(err.message.contains("KAFKA_BOOTSTRAP_SERVERS") && err.message.contains(".env.remote"), "{}", err.message);
        assert_eq!(err.exit_code(), 1);
        assert!(s.placeholders().len() >= 6);
    }

    #[test]
    fn secrets_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::resolve(&inputs(dir.path())).unwrap();
        assert_eq!(s.setting("POSTGRES_PASSWORD").unwrap().display_value(), "***");
        assert_eq!(s.setting("KAFKA_PASSWORD").unwrap().display_value(), "");
    }
}
