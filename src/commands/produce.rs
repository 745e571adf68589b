//! `kart produce`: built by a later milestone (see the README's roadmap).

use crate::cli::ProduceArgs;
use crate::context::Context;
use crate::exit::{KartError, Result};

pub async fn run(_args: ProduceArgs, _ctx: &Context) -> Result<()> {
    Err(KartError::not_implemented("produce"))
}
