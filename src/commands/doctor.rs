//! `kart doctor`: built by a later milestone (see the README's roadmap).

use crate::context::Context;
use crate::exit::{KartError, Result};

pub async fn run(_ctx: &Context) -> Result<()> {
    Err(KartError::not_implemented("doctor"))
}
