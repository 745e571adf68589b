//! One file per command group: parse the arguments, call the domain, print.

pub mod completions;
pub mod config;
pub mod db;
pub mod demo;
pub mod doctor;
pub mod init;
pub mod job;
pub mod order;
pub mod platform;
pub mod produce;
pub mod products;
pub mod tail;
pub mod topics;
pub mod watch;

use crate::cli::Command;
use crate::context::Context;
use crate::exit::Result;

pub async fn dispatch(command: Command, ctx: &Context) -> Result<()> {
    match command {
        Command::Init => init::run(ctx),
        Command::Platform(cmd) => platform::run(cmd, ctx).await,
        Command::Config(args) => config::run(&args, ctx),
        Command::Doctor => doctor::run(ctx).await,
        Command::Topics(cmd) => ctx.interruptible(topics::run(cmd, ctx)).await,
        Command::Db(cmd) => ctx.interruptible(db::run(cmd, ctx)).await,
        Command::Products(cmd) => products::run(cmd, ctx).await,
        Command::Produce(args) => produce::run(args, ctx).await,
        Command::Job(cmd) => job::run(cmd, ctx).await,
        Command::Order(cmd) => order::run(cmd, ctx).await,
        Command::Tail(args) => tail::run(args, ctx).await,
        Command::Watch => watch::run(ctx).await,
        Command::Demo(args) => demo::run(args, ctx).await,
        Command::Completions(args) => completions::run(&args),
    }
}
