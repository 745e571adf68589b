//! `kart order`: built by a later milestone (see the README's roadmap).

use crate::cli::OrderCommand;
use crate::context::Context;
use crate::exit::{KartError, Result};

pub async fn run(command: OrderCommand, _ctx: &Context) -> Result<()> {
    let name = format!("{command:?}").split(['(', ' ']).next().unwrap_or_default().to_lowercase();
    Err(KartError::not_implemented(&format!("order {name}")))
}
