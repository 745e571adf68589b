//! The one `Context` every command gets: mode, project directory, resolved
//! settings, the printer, deadlines, and the shutdown signal.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::config::{parse_duration, Mode, ResolveInputs, Settings};
use crate::db::PgSettings;
use crate::exit::{KartError, Result};
use crate::kafka::KafkaSettings;
use crate::printer::Printer;

pub struct Context {
    pub mode: Mode,
    pub project_dir: PathBuf,
    pub settings: Settings,
    pub printer: Printer,
    pub connect_timeout: Duration,
    pub assume_yes: bool,
    /// Cancelled on Ctrl-C or SIGTERM; long operations watch it.
    pub shutdown: CancellationToken,
    /// The global flags that rebuild this configuration in a kart process
    /// started by this one (a background job): mode, env files, deadline,
    /// verbosity and colour. The project directory goes by environment.
    pub child_args: Vec<String>,
}

impl Context {
    pub fn build(global: &GlobalArgs, printer: Printer, shutdown: CancellationToken) -> Result<Context> {
        let cwd = std::env::current_dir().map_err(|e| KartError::infra("io", format!("cannot read the current directory: {e}")))?;
        let project_dir = match &global.project_dir {
            Some(dir) => {
                let dir = if dir.is_absolute() { dir.clone() } else { cwd.join(dir) };
                if !dir.is_dir() {
                    return Err(KartError::user("project-dir-missing", format!("project directory {} does not exist", dir.display())));
                }
                dir
            }
            None => discover_project_dir(&cwd),
        };
        let mut flags = Vec::new();
        if let Some(timeout) = &global.connect_timeout {
            flags.push(("KART_CONNECT_TIMEOUT", "--connect-timeout", timeout.clone()));
        }
        let inputs = ResolveInputs {
            mode: global.mode,
            project_dir: project_dir.clone(),
            env_files: global.env_files.clone(),
            process_env: std::env::vars().collect::<HashMap<_, _>>(),
            flags,
        };
        let settings = Settings::resolve(&inputs)?;
        for warning in &settings.warnings {
            printer.warn(warning);
        }
        let connect_timeout = settings.duration("KART_CONNECT_TIMEOUT")?;
        if connect_timeout.is_zero() {
            return Err(settings.bad_value("KART_CONNECT_TIMEOUT", "must be longer than 0"));
        }
        printer.debug(&format!("mode {}, project directory {}", global.mode.as_str(), project_dir.display()));
        for file in &settings.files_read {
            printer.debug(&format!("read {}", file.display()));
        }
        let child_args = child_args(global, &cwd);
        Ok(Context { mode: global.mode, project_dir, settings, printer, connect_timeout, assume_yes: global.yes, shutdown, child_args })
    }

    pub fn kafka(&self) -> Result<KafkaSettings> {
        KafkaSettings::from_settings(&self.settings, self.connect_timeout)
    }

    pub fn postgres(&self) -> Result<PgSettings> {
        PgSettings::from_settings(&self.settings, self.connect_timeout)
    }

    /// Asks before a destructive action. Without a terminal only `--yes` lets
    /// it run, so a script never hangs on a prompt nor destroys by accident.
    pub fn confirm(&self, action: &str) -> Result<()> {
        if self.assume_yes {
            return Ok(());
        }
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        if !interactive {
            return Err(KartError::user("confirmation-required", format!("refusing to {action} without confirmation"))
                .with_hint("pass --yes to confirm"));
        }
        eprint!("{action}? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| KartError::infra("io", format!("cannot read the answer: {e}")))?;
        if matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            Ok(())
        } else {
            Err(KartError::user("aborted", "aborted: nothing was changed"))
        }
    }

    /// Runs `work` unless Ctrl-C comes first.
    pub async fn interruptible<T>(&self, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            result = work => result,
            _ = self.shutdown.cancelled() => Err(KartError::interrupted()),
        }
    }
}

/// Global flags for a kart child process; relative env files are made
/// absolute so the child may run from any directory.
fn child_args(global: &GlobalArgs, cwd: &Path) -> Vec<String> {
    let mut args = vec!["--mode".to_string(), global.mode.as_str().to_string()];
    for file in &global.env_files {
        args.push("--env-file".into());
        args.push(cwd.join(file).display().to_string());
    }
    if let Some(timeout) = &global.connect_timeout {
        args.push("--connect-timeout".into());
        args.push(timeout.clone());
    }
    for (set, flag) in [(global.verbose, "--verbose"), (global.no_color, "--no-color")] {
        if set {
            args.push(flag.into());
        }
    }
    args
}

/// The nearest directory, from `start` upwards, that holds `compose-local.yml`
/// or `.kart/`; else `start` itself.
pub fn discover_project_dir(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|dir| dir.join("compose-local.yml").is_file() || dir.join(".kart").is_dir())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| start.to_path_buf())
}

/// Parses a duration flag, naming the flag on error.
pub fn duration_flag(flag: &str, value: &str) -> Result<Duration> {
    parse_duration(value).map_err(|e| KartError::user("bad-flag", format!("{flag} {value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn a_background_job_gets_the_flags_that_shape_the_configuration_and_nothing_else() {
        let argv = ["kart", "--env-file", "x.env", "-o", "json", "--connect-timeout", "3s", "-v", "--mode", "remote", "--yes", "demo", "--ci"];
        let cli = Cli::try_parse_from(argv).expect("valid command line");
        let args = child_args(&cli.global, Path::new("/work"));
        assert_eq!(args, ["--mode", "remote", "--env-file", "/work/x.env", "--connect-timeout", "3s", "--verbose"]);
    }
}
