//! `kart products load|update|list`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::cli::ProductsCommand;
use crate::context::Context;
use crate::exit::Result;
use crate::printer::{Table, Tone};
use crate::products::{self, UpdateRequest, PRODUCTS_TOPIC};

pub async fn run(command: ProductsCommand, ctx: &Context) -> Result<()> {
    ctx.interruptible(run_command(command, ctx)).await
}

async fn run_command(command: ProductsCommand, ctx: &Context) -> Result<()> {
    let p = &ctx.printer;
    match command {
        ProductsCommand::Load(args) => {
            let (catalog, source) = products::catalog_to_load(&ctx.settings, args.file.as_deref())?;
            let kafka = ctx.kafka()?;
            let report = products::load(&kafka, p, &catalog, &source).await?;
            if p.is_json() {
                return p.json(serde_json::to_value(&report).unwrap_or_default());
            }
            p.out(&format!("published {} products to {} from {}", report.published, report.topic, report.source))?;
            p.status("Next", "the inventory job applies them; `kart products list` shows the result");
            Ok(())
        }
        ProductsCommand::Update(args) => {
            let request = UpdateRequest::new(&args.product, args.inventory, args.price)?;
            let kafka = ctx.kafka()?;
            let report = products::update(&kafka, p, &ctx.settings, &request).await?;
            // Kafka first: the shop shows what the inventory job applies.
            // The database price only feeds the next checkout, so a database
            // that is down is a warning, never a failed update.
            let database = match request.price {
                Some(price) => {
                    let outcome = match ctx.postgres() {
                        Ok(pg) => products::set_db_price(&pg, &request.product_id, price).await,
                        Err(e) => products::DbPriceOutcome {
                            updated: false,
                            endpoint: String::new(),
                            database: String::new(),
                            error: Some(e.message),
                            hint: e.hint,
                        },
                    };
                    Some(outcome)
                }
                None => None,
            };
            let warn_db = |db: &products::DbPriceOutcome| {
                let reason = db.error.clone().unwrap_or_default();
                let hint = db.hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default();
                p.warn(&format!(
                    "published to {}, but the price in PostgreSQL is unchanged, and checkout prices orders from there: {reason}{hint}",
                    report.topic
                ));
            };
            if p.is_json() {
                if let Some(db) = database.as_ref().filter(|d| !d.updated) {
                    warn_db(db);
                }
                let mut value = serde_json::to_value(&report).unwrap_or_default();
                value["database"] = serde_json::to_value(&database).unwrap_or_default();
                return p.json(value);
            }
            let change = |before: String, after: String, given: bool| if given { format!("{before} → {after}") } else { before };
            p.out(&format!(
                "{} inventory {}, price {}",
                report.product_id,
                change(report.before.inventory.to_string(), report.after.inventory.to_string(), request.inventory.is_some()),
                change(money(report.before.price), money(report.after.price), request.price.is_some()),
            ))?;
            let basis = match report.based_on {
                products::Basis::Products => "the other fields from the products topic",
                products::Basis::Catalog => "the other fields from the catalog (not on the products topic yet)",
            };
            p.status("Published", &format!("{} to {}, {basis}", report.product_id, report.topic));
            match &database {
                Some(db) if db.updated => p.status("Updated", &format!("the price in PostgreSQL ({} on {})", db.database, db.endpoint)),
                Some(db) => warn_db(db),
                None => {}
            }
            Ok(())
        }
        ProductsCommand::List => {
            let kafka = ctx.kafka()?;
            let snapshot = products::snapshot(&kafka, p).await?;
            if snapshot.products.is_empty() {
                p.warn(&format!(
                    "the {PRODUCTS_TOPIC} topic holds no products yet: run the inventory job (`kart job deploy inventory`), which publishes the catalog there, and `kart products load` to send it updates"
                ));
            }
            if p.is_json() {
                let rows: Vec<_> = snapshot.products.values().collect();
                return p.json(json!({ "products": rows }));
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
            let mut table = Table::new(["PRODUCT", "NAME", "STOCK", "PRICE", "LAST EVENT", "WHEN"]);
            for state in snapshot.products.values() {
                let stock = match state.inventory {
                    Some(0) => p.paint("0", Tone::Bad),
                    Some(n) => n.to_string(),
                    None => "-".into(),
                };
                table.row([
                    state.product_id.clone(),
                    state.name.clone(),
                    stock,
                    state.price.map(money).unwrap_or_else(|| "-".into()),
                    state.last_event.clone().unwrap_or_else(|| "-".into()),
                    state.last_event_at.map(|at| ago(now, at)).unwrap_or_else(|| "-".into()),
                ]);
            }
            p.out(&table.render(p))
        }
    }
}

fn money(price: f64) -> String {
    format!("${price:.2}")
}

/// "5s ago", "3m ago", "2h ago", "4d ago": enough to tell fresh from stale.
fn ago(now_ms: i64, at_ms: i64) -> String {
    let seconds = (now_ms - at_ms).max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(ago(10_000, 10_000), "0s ago");
        assert_eq!(ago(70_000, 10_000), "1m ago");
        assert_eq!(ago(3_600_000 * 5, 0), "5h ago");
        assert_eq!(ago(86_400_000 * 2, 0), "2d ago");
        assert_eq!(ago(0, 5_000), "0s ago", "a clock ahead of ours is not the future");
    }
}
