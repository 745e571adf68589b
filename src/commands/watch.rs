//! `kart watch`: the live product table (`crate::watch`).

use crate::context::Context;
use crate::exit::Result;

pub async fn run(ctx: &Context) -> Result<()> {
    let kafka = ctx.kafka()?;
    let fetch_wait = ctx.settings.duration("KART_FETCH_WAIT")?;
    crate::watch::run(&kafka, &ctx.printer, &ctx.shutdown, fetch_wait).await
}
