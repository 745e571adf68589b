//! kart: the KartShoppe workshop from one terminal.
//!
//! Layers, every import pointing down (design §11):
//! `cli` → `commands` → domain (`kafka`, `db`, `catalog`) → `context` →
//! ground floor (`inventory` core, `config`, `printer`, `exit`).

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod db;
pub mod demo;
pub mod doctor;
pub mod exit;
pub mod inventory;
pub mod jobs;
pub mod orders;
pub mod platform;
pub mod kafka;
pub mod printer;
pub mod products;
pub mod supervise;
pub mod watch;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::context::Context;
use crate::exit::KartError;
use crate::printer::{Printer, BROKEN_PIPE};

/// Parses the command line, runs the command and returns the exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap's convention: usage errors exit 2; --help and --version 0.
            let _ = error.print();
            return if error.use_stderr() { 2 } else { 0 };
        }
    };
    let printer = Printer::new(cli.global.output, cli.global.quiet, cli.global.verbose, cli.global.no_color);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            printer.error(&KartError::infra("runtime", format!("cannot start the async runtime: {e}")));
            return 2;
        }
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        spawn_signal_handler(shutdown.clone());
        let context = Context::build(&cli.global, printer.clone(), shutdown)?;
        commands::dispatch(cli.command, &context).await
    });
    // Background tasks (connections, librdkafka callbacks) must not hold the
    // exit hostage.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => 0,
        Err(error) if error.code == BROKEN_PIPE => 0,
        Err(error) => {
            printer.error(&error);
            error.exit_code()
        }
    }
}

/// Ctrl-C and SIGTERM cancel the shared token once; commands decide how to
/// wind down (finish a transaction, restore the terminal) and exit 130.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        shutdown.cancel();
    });
}
