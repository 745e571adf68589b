//! `kart tail`: built by a later milestone (see the README's roadmap).

use crate::cli::TailArgs;
use crate::context::Context;
use crate::exit::{KartError, Result};

pub async fn run(_args: TailArgs, _ctx: &Context) -> Result<()> {
    Err(KartError::not_implemented("tail"))
}
