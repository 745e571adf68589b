//! `kart produce TOPIC [--key K] [--header k=v]… [--file F]`: raw records,
//! one per line, from stdin or a file (the workshop's "produce from Kpow"
//! step). Every record is acknowledged by the broker before kart says so.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};

use serde_json::json;

use crate::cli::ProduceArgs;
use crate::context::Context;
use crate::exit::{KartError, Result};
use crate::kafka::producer::{parse_header, publish, records_from_lines};

pub async fn run(args: ProduceArgs, ctx: &Context) -> Result<()> {
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h).map_err(|why| KartError::user("bad-header", why).with_hint("e.g. `--header source=kart`")))
        .collect::<Result<Vec<_>>>()?;
    if args.topic.trim().is_empty() {
        return Err(KartError::user("bad-topic", "the topic name is empty"));
    }
    let kafka = ctx.kafka()?;
    let input = match &args.file {
        Some(path) => std::fs::read(path).map_err(|e| {
            KartError::user("file-unreadable", format!("cannot read {}: {e}", path.display())).with_hint("--file takes a file with one record per line")
        })?,
        None => {
            if std::io::stdin().is_terminal() {
                ctx.printer.status("Reading", &format!("records for {} from the terminal, one per line; Ctrl-D ends, Ctrl-C abandons", args.topic));
            }
            let read = tokio::task::spawn_blocking(|| {
                let mut input = Vec::new();
                std::io::stdin().read_to_end(&mut input).map(|_| input)
            });
            let read = async { read.await.map_err(|e| KartError::infra("internal", format!("a background task failed: {e}"))) };
            ctx.interruptible(read)
                .await?
                .map_err(|e| KartError::infra("io", format!("cannot read stdin: {e}")))?
        }
    };
    let (records, blank) = records_from_lines(&input, args.key.as_deref(), &headers);
    if blank > 0 {
        ctx.printer.status("Skipped", &format!("{blank} empty line(s): they are not records"));
    }
    if records.is_empty() {
        return Err(KartError::user("no-records", "no records to produce: the input has no non-empty line")
            .with_hint("give one record per line, e.g. `echo '{\"productId\":\"PROD_0001\"}' | kart produce product-updates`"));
    }
    let delivered = ctx.interruptible(publish(&kafka, &ctx.printer, &args.topic, &records)).await?;
    // Offsets per partition: where the records landed, for `kart tail`.
    let mut partitions: BTreeMap<i32, (i64, i64, usize)> = BTreeMap::new();
    for d in &delivered {
        let entry = partitions.entry(d.partition).or_insert((d.offset, d.offset, 0));
        entry.0 = entry.0.min(d.offset);
        entry.1 = entry.1.max(d.offset);
        entry.2 += 1;
    }
    if ctx.printer.is_json() {
        let partitions: Vec<_> = partitions
            .iter()
            .map(|(p, (first, last, count))| json!({ "partition": p, "firstOffset": first, "lastOffset": last, "records": count }))
            .collect();
        return ctx.printer.json(json!({ "topic": args.topic, "produced": delivered.len(), "skippedEmptyLines": blank, "partitions": partitions }));
    }
    let places: Vec<String> = partitions.iter().map(|(p, (first, last, _))| if first == last { format!("{p}@{first}") } else { format!("{p}@{first}-{last}") }).collect();
    ctx.printer.out(&format!("produced {} record(s) to {} (partition@offsets {})", delivered.len(), args.topic, places.join(", ")))
}
