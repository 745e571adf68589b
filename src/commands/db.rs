//! `kart db up|init|teardown|down|create-db|clean-cdc|status`.

use serde_json::json;

use crate::catalog;
use crate::cli::DbCommand;
use crate::context::Context;
use crate::db::schema;
use crate::exit::Result;
use crate::printer::{Table, Tone};

pub async fn run(command: DbCommand, ctx: &Context) -> Result<()> {
    let pg = ctx.postgres()?;
    let p = &ctx.printer;
    match command {
        DbCommand::Up => {
            let (products, source) = catalog::configured(&ctx.settings)?;
            let created = schema::create_db(&pg).await?;
            let init = schema::init(&pg, &products).await?;
            if p.is_json() {
                return p.json(json!({ "endpoint": pg.endpoint(), "database": pg.database, "created": created.created, "init": init }));
            }
            p.status(if created.created { "Created" } else { "Exists" }, &format!("database {} on {}", pg.database, pg.endpoint()));
            print_init(ctx, &init, &source.to_string())
        }
        DbCommand::CreateDb => {
            let created = schema::create_db(&pg).await?;
            if p.is_json() {
                return p.json(json!({ "endpoint": pg.endpoint(), "database": created.database, "created": created.created }));
            }
            let verb = if created.created { "created" } else { "already exists" };
            p.out(&format!("database {} {verb} on {}", pg.database, pg.endpoint()))
        }
        DbCommand::Init => {
            let (products, source) = catalog::configured(&ctx.settings)?;
            let init = schema::init(&pg, &products).await?;
            if p.is_json() {
                return p.json(json!({ "endpoint": pg.endpoint(), "database": pg.database, "init": init }));
            }
            print_init(ctx, &init, &source.to_string())
        }
        DbCommand::Teardown => {
            ctx.confirm(&format!("drop the workshop's tables and publication in database {} on {}", pg.database, pg.endpoint()))?;
            let report = schema::teardown(&pg).await?;
            if p.is_json() {
                return p.json(json!({ "endpoint": pg.endpoint(), "database": report.database, "dropped": report.dropped }));
            }
            if report.dropped.is_empty() {
                p.out(&format!("nothing to tear down in database {}", pg.database))
            } else {
                p.out(&format!("dropped {} in database {}", report.dropped.join(", "), pg.database))
            }
        }
        DbCommand::Down => {
            ctx.confirm(&format!("drop database {} on {}", pg.database, pg.endpoint()))?;
            let report = schema::down(&pg).await?;
            if p.is_json() {
                return p.json(json!({ "endpoint": pg.endpoint(), "database": report.database, "dropped": report.dropped, "droppedSlots": report.dropped_slots }));
            }
            for slot in &report.dropped_slots {
                p.status("Dropped", &format!("replication slot {slot}"));
            }
            if report.dropped {
                p.out(&format!("dropped database {} on {}", pg.database, pg.endpoint()))
            } else {
                p.out(&format!("database {} does not exist on {}; nothing to drop", pg.database, pg.endpoint()))
            }
        }
        DbCommand::CleanCdc => {
            ctx.confirm(&format!("drop replication slot {} on {}", pg.slot, pg.endpoint()))?;
            let report = schema::clean_cdc(&pg).await?;
            if p.is_json() {
                return p.json(json!({ "endpoint": pg.endpoint(), "slot": report.slot, "dropped": report.dropped }));
            }
            if report.dropped {
                p.out(&format!("dropped replication slot {}", report.slot))
            } else {
                p.out(&format!("no replication slot {}; nothing to drop", report.slot))
            }
        }
        DbCommand::Status => {
            let status = schema::status(&pg).await?;
            if p.is_json() {
                return p.json(serde_json::to_value(&status).unwrap_or_default());
            }
            let wal = if status.wal_level == "logical" {
                p.paint(&status.wal_level, Tone::Good)
            } else {
                p.paint(&format!("{} (CDC needs logical)", status.wal_level), Tone::Bad)
            };
            p.out(&format!("database   {} on {} (PostgreSQL {})", status.database, status.endpoint, status.server_version))?;
            p.out(&format!("wal_level  {wal}"))?;
            if !status.exists {
                p.out(&p.paint("the database does not exist: create it with `kart db up`", Tone::Warn))?;
            } else {
                let mut table = Table::new(["TABLE", "ROWS"]);
                for t in &status.tables {
                    table.row([t.name.clone(), t.rows.to_string()]);
                }
                for t in &status.missing_tables {
                    table.row([t.clone(), p.paint("missing", Tone::Bad)]);
                }
                p.out("")?;
                p.out(&table.render(p))?;
                let publication = if status.publication.exists {
                    format!("{} ({})", status.publication.name, status.publication.tables.join(", "))
                } else {
                    p.paint(&format!("{} missing: run `kart db init`", status.publication.name), Tone::Bad)
                };
                p.out("")?;
                p.out(&format!("publication  {publication}"))?;
            }
            if status.slots.is_empty() {
                p.out(&format!("slots        none (CDC slot {} not created yet)", pg.slot))?;
            } else {
                let mut table = Table::new(["SLOT", "PLUGIN", "DATABASE", "ACTIVE", "CONFIRMED", "RETAINED WAL"]);
                for s in &status.slots {
                    table.row([
                        if s.configured { format!("{} *", s.name) } else { s.name.clone() },
                        s.plugin.clone().unwrap_or_default(),
                        s.database.clone().unwrap_or_default(),
                        if s.active { format!("yes (pid {})", s.active_pid.unwrap_or_default()) } else { "no".into() },
                        s.confirmed_flush_lsn.clone().unwrap_or_default(),
                        s.retained_wal_bytes.map(|b| format!("{b} B")).unwrap_or_default(),
                    ]);
                }
                p.out("")?;
                p.out(&table.render(p))?;
            }
            Ok(())
        }
    }
}

fn print_init(ctx: &Context, init: &schema::InitReport, catalog_source: &str) -> Result<()> {
    let p = &ctx.printer;
    if init.already_initialised {
        p.out(&format!("database {} is already initialised; nothing to do", init.database))
    } else {
        p.out(&format!("initialised database {}: {}", init.database, init.applied.join(", ")))?;
        p.status("Seeded", &format!("from {catalog_source}"));
        Ok(())
    }
}
