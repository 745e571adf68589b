//! `kart demo`: built by a later milestone (see the README's roadmap).

use crate::cli::DemoArgs;
use crate::context::Context;
use crate::exit::{KartError, Result};

pub async fn run(_args: DemoArgs, _ctx: &Context) -> Result<()> {
    Err(KartError::not_implemented("demo"))
}
