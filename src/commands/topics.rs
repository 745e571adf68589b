//! `kart topics create|list|delete|describe`.

use serde_json::json;

use crate::cli::TopicsCommand;
use crate::config::Mode;
use crate::context::Context;
use crate::exit::{KartError, Result};
use crate::kafka::admin::Admin;
use crate::kafka::topics::{self, CreateRequest};
use crate::printer::{Table, Tone};

pub async fn run(command: TopicsCommand, ctx: &Context) -> Result<()> {
    let settings = ctx.kafka()?;
    match command {
        TopicsCommand::Create(args) => {
            let configs = args
                .configs
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| KartError::user("bad-flag", format!("--config {kv:?}: expected KEY=VALUE")))
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(p) = args.partitions.filter(|p| *p < 1) {
                return Err(KartError::user("bad-flag", format!("--partitions {p}: must be at least 1")));
            }
            if let Some(r) = args.replication_factor.filter(|r| *r < 1) {
                return Err(KartError::user("bad-flag", format!("--replication-factor {r}: must be at least 1")));
            }
            let admin = Admin::connect(&settings, &ctx.printer).await?;
            let request = CreateRequest {
                names: args.names,
                partitions: args.partitions,
                replication_factor: args.replication_factor,
                configs,
                local: ctx.mode == Mode::Local,
            };
            let (outcomes, failure) = topics::create(&admin, &request).await?;
            let p = &ctx.printer;
            for o in &outcomes {
                for d in &o.drift {
                    p.warn(&format!("topic {} differs from what was asked: {d}", o.name));
                }
            }
            if p.is_json() {
                p.json(json!({ "bootstrap": settings.bootstrap, "topics": outcomes }))?;
            } else {
                let created = outcomes.iter().filter(|o| o.status == "created").count();
                let existing = outcomes.iter().filter(|o| o.status == "exists").count();
                for o in &outcomes {
                    let status = match o.status {
                        "created" => p.paint("created", Tone::Good),
                        "exists" if !o.drift.is_empty() => p.paint("exists (drift)", Tone::Warn),
                        "exists" => p.paint("exists", Tone::Dim),
                        _ => p.paint("failed", Tone::Bad),
                    };
                    let detail = o.error.clone().unwrap_or_default();
                    p.out(format!("{status:>16}  {}{}", o.name, if detail.is_empty() { String::new() } else { format!("  {detail}") }).trim_end())?;
                }
                p.status("Topics", &format!("{created} created, {existing} already existed on {}", settings.bootstrap));
            }
            failure.map_or(Ok(()), Err)
        }
        TopicsCommand::List => {
            let admin = Admin::connect(&settings, &ctx.printer).await?;
            let list = topics::list(&admin).await?;
            let p = &ctx.printer;
            if p.is_json() {
                return p.json(json!({ "bootstrap": settings.bootstrap, "topics": list.topics, "missing": list.missing }));
            }
            let mut table = Table::new(["TOPIC", "PARTITIONS", "CARRIES", "WRITTEN BY", "READ BY"]);
            for t in &list.topics {
                table.row([
                    t.name.clone(),
                    t.partitions.to_string(),
                    t.carries.unwrap_or(if t.internal { "(internal)" } else { "" }).to_string(),
                    t.writers.unwrap_or("").to_string(),
                    t.readers.unwrap_or("").to_string(),
                ]);
            }
            if table.is_empty() {
                p.out(&format!("no topics on {}", settings.bootstrap))?;
            } else {
                p.out(&table.render(p))?;
            }
            if !list.missing.is_empty() {
                p.warn(&format!("{} workshop topics are missing ({}); create them with `kart topics create`", list.missing.len(), list.missing.join(", ")));
            }
            Ok(())
        }
        TopicsCommand::Delete(args) => {
            let what = if args.all { format!("delete every topic on {} (internal ones spared)", settings.bootstrap) } else { format!("delete topics {}", args.names.join(", ")) };
            ctx.confirm(&what)?;
            let admin = Admin::connect(&settings, &ctx.printer).await?;
            let (outcomes, failure) = topics::delete(&admin, &args.names, args.all).await?;
            let p = &ctx.printer;
            if p.is_json() {
                p.json(json!({ "bootstrap": settings.bootstrap, "topics": outcomes }))?;
            } else {
                for o in &outcomes {
                    let status = match o.status {
                        "deleted" => p.paint("deleted", Tone::Good),
                        "missing" => p.paint("not found", Tone::Dim),
                        _ => p.paint("failed", Tone::Bad),
                    };
                    p.out(&format!("{status:>10}  {}", o.name))?;
                }
                let deleted = outcomes.iter().filter(|o| o.status == "deleted").count();
                p.status("Topics", &format!("{deleted} deleted from {}", settings.bootstrap));
            }
            failure.map_or(Ok(()), Err)
        }
        TopicsCommand::Describe(args) => {
            let admin = Admin::connect(&settings, &ctx.printer).await?;
            let description = topics::describe(&admin, &args.name).await?;
            let p = &ctx.printer;
            if p.is_json() {
                return p.json(serde_json::to_value(&description).unwrap_or_default());
            }
            p.out(&format!("{}{}", p.paint(&description.name, Tone::Strong), description.carries.map(|c| format!(" — {c}")).unwrap_or_default()))?;
            let mut table = Table::new(["PARTITION", "LEADER", "REPLICAS", "IN-SYNC"]);
            for part in &description.partitions {
                let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                table.row([part.partition.to_string(), part.leader.to_string(), ids(&part.replicas), ids(&part.isr)]);
            }
            p.out(&table.render(p))?;
            match &description.configs {
                Some(configs) => {
                    let mut table = Table::new(["CONFIG", "VALUE", "SOURCE"]);
                    for c in configs {
                        table.row([c.name.clone(), c.value.clone().unwrap_or_default(), if c.is_default { "default".into() } else { "topic".to_string() }]);
                    }
                    p.out("")?;
                    p.out(&table.render(p))?;
                }
                None => p.warn("the broker did not describe this topic's configuration"),
            }
            Ok(())
        }
    }
}
