//! `kart tail TOPIC…`: parse the flags, run the tail (`kafka::tail`).

use crate::cli::{TailArgs, TailFormat};
use crate::context::{duration_flag, Context};
use crate::exit::{KartError, Result};
use crate::kafka::tail::{self, Format, Position, StreamOptions, TailOptions};

pub async fn run(args: TailArgs, ctx: &Context) -> Result<()> {
    let TailArgs {
        topics,
        from,
        until_end,
        filter,
        until,
        max,
        timeout,
        group,
        format,
    } = args;
    let position = match &from {
        Some(text) => Position::parse(text, tail::now_ms())
            .map_err(|e| KartError::user("bad-flag", format!("--from {e}")))?,
        None => Position::End,
    };
    let timeout = timeout
        .as_deref()
        .map(|t| duration_flag("--timeout", t))
        .transpose()?;
    let format = match format {
        Some(TailFormat::Pretty) => Format::Pretty,
        Some(TailFormat::Json) => Format::Json,
        Some(TailFormat::Raw) => Format::Raw,
        None if ctx.printer.is_json() => Format::Json,
        None => Format::Pretty,
    };
    // The same topic twice would be read twice.
    let mut unique = Vec::new();
    for topic in topics {
        if !unique.contains(&topic) {
            unique.push(topic);
        }
    }
    let kafka = ctx.kafka()?;
    let options = TailOptions {
        topics: unique,
        stream: StreamOptions {
            from: position,
            until_end,
            group,
            from_explicit: from.is_some(),
            fetch_wait: ctx.settings.duration("KART_FETCH_WAIT")?,
            client_id: "kart-tail".into(),
        },
        filter,
        until,
        max,
        timeout,
        format,
    };
    tail::run(&kafka, &ctx.printer, &ctx.shutdown, options)
        .await
        .map(|_| ())
}
