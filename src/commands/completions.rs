//! `kart completions SHELL`: shell completion scripts.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::Result;

pub fn run(args: &CompletionsArgs) -> Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "kart", &mut std::io::stdout());
    Ok(())
}
