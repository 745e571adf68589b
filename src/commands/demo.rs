//! `kart demo`: the workshop in one command, for a newcomer and for CI.
//!
//! Five steps, each verified and reported as it ends: the platform (started
//! with whatever backend this machine offers, topics and database
//! initialised), the inventory job, the catalog on `products`, three orders
//! (two that fit, one beyond the stock) with the job's answer to each, and
//! the stock the table shows afterwards. On a terminal the orders run under
//! the live table of `kart watch`, so the stock is seen dropping.
//!
//! Every step is idempotent: a running platform is left as it is, a running
//! job is reused, the catalog is published only where it is missing, and
//! the orders are chosen from the stock as it is now ([`crate::demo::plan`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::catalog;
use crate::cli::{DemoArgs, PullPolicy};
use crate::context::Context;
use crate::demo::{self, Expect, PlannedOrder, Stock, Verdict};
use crate::exit::{KartError, Result};
use crate::inventory::model::{OrderOutcome, Product};
use crate::jobs::embedded::{self, DeployOptions, Deployed, JobSpec};
use crate::jobs::inventory::{InventorySettings, JOB_NAME as INVENTORY_JOB};
use crate::kafka::KafkaSettings;
use crate::orders::outcomes::{self, OutcomeWatch};
use crate::orders::{self, Line, OrderWriter};
use crate::platform::{self, StartOptions};
use crate::printer::{Tone, BROKEN_PIPE};
use crate::products::{self, Snapshot};
use crate::supervise::{Liveness, Supervisor};
use crate::watch::{self, Caption};

/// How long the services may take to become ready (first image pulls
/// included).
const PLATFORM_WAIT: Duration = Duration::from_secs(180);
/// How long the job may take to put the catalog on `products`.
const CATALOG_WAIT: Duration = Duration::from_secs(60);
/// How long the job may take to decide one order line.
const OUTCOME_WAIT: Duration = Duration::from_secs(60);
/// On a terminal, a pause between orders so each change is seen.
const PACE: Duration = Duration::from_millis(1500);
/// The customer of the demo's orders, so they are easy to find.
const CUSTOMER: &str = "kart-demo";

/// What to try next, about `product` (one the demo ordered, so its events
/// are there to see).
fn next_steps(product: &str) -> [(String, &'static str); 4] {
    [
        ("kart watch".into(), "the live stock table (q quits)"),
        (format!("kart tail inventory-events --from beginning --filter '.value.productId == \"{product}\"'"), "one product's events, as in Kpow"),
        (format!("kart order place --product {product} --quantity 1 --wait"), "an order of your own, with the job's answer"),
        ("kart platform stop".into(), "stop the job and the services (data kept; --volumes deletes it)"),
    ]
}

pub async fn run(args: DemoArgs, ctx: &Context) -> Result<()> {
    match run_steps(args, ctx).await {
        // For most commands a closed stdout (`| head -1`) is the reader's
        // choice, not an error; the demo's exit code says that every step
        // was verified, and the steps after the close were not.
        Err(error) if error.code == BROKEN_PIPE => Err(unverified("stdout closed before every step was verified")),
        other => other,
    }
}

async fn run_steps(args: DemoArgs, ctx: &Context) -> Result<()> {
    let live = !args.ci && watch::draws_in_place(&ctx.printer);
    let report = Report { ctx };

    // 1. The platform, as `platform start` brings it up.
    let options = StartOptions { services: Vec::new(), backend: args.backend, pull: PullPolicy::Missing, wait_timeout: PLATFORM_WAIT };
    let started = ctx.interruptible(platform::start(ctx, &options)).await?;
    ctx.interruptible(platform::initialise(ctx)).await?;
    let ready = if started.services.iter().all(|s| s.action == "up to date") && !started.services.is_empty() {
        "already running".to_string()
    } else {
        format!("ready in {:.1}s", started.elapsed_ms as f64 / 1000.0)
    };
    report.step(
        "platform",
        true,
        format!("{ready} ({} backend, {} mode); topics and database initialised", started.backend, ctx.mode.as_str()),
        json!({ "backend": started.backend, "mode": ctx.mode, "elapsedMs": started.elapsed_ms }),
    )?;

    // 2. The inventory job, reused when it runs with this configuration.
    let settings = InventorySettings::from_settings(&ctx.settings, ctx.connect_timeout)?;
    let on_insufficient = settings.core.on_insufficient;
    let spec = JobSpec::Inventory(settings);
    embedded::refuse_beside_flink_inventory(ctx, None).await?;
    let supervisor = Supervisor::new(&ctx.project_dir);
    let stale = matches!(supervisor.liveness(INVENTORY_JOB)?, Liveness::Running(Some(record)) if record.config_hash != spec.config_hash());
    let options = DeployOptions {
        foreground: false,
        // A job running with other settings (another broker) would never
        // see the demo's orders.
        replace: stale,
        fresh: false,
        supervised: false,
        start_timeout: ctx.connect_timeout * 2 + Duration::from_secs(30),
        stop_timeout: Duration::from_secs(15),
    };
    let Deployed::Background(job) = embedded::deploy(ctx, spec, options).await? else {
        return Err(KartError::interrupted());
    };
    let what = match job.result {
        "already-running" => "already running",
        "starting" => "started, still restoring its state",
        _ if job.replaced => "restarted with this configuration",
        _ => "started",
    };
    report.step(
        "job",
        true,
        format!("inventory job {what} (pid {}; log: {})", job.pid, job.log.display()),
        json!({ "job": INVENTORY_JOB, "result": job.result, "pid": job.pid, "replaced": job.replaced }),
    )?;

    // 3. The catalog on `products`, published where it is missing.
    let kafka = ctx.kafka()?;
    let (catalog, source) = catalog::configured(&ctx.settings)?;
    let before = ctx.interruptible(products::snapshot(&kafka, &ctx.printer)).await?;
    let missing: Vec<Product> = catalog.iter().filter(|p| !on_products(&before, &p.product_id)).cloned().collect();
    if !missing.is_empty() {
        products::load(&kafka, &ctx.printer, &missing, &source).await?;
        ctx.printer.status("Published", &format!("{} catalog products to {}", missing.len(), products::UPDATES_TOPIC));
    }
    let ids: Vec<&str> = catalog.iter().map(|p| p.product_id.as_str()).collect();
    if !missing.is_empty() {
        ctx.printer.status("Waiting", "for the inventory job to put them on `products`");
    }
    let snapshot = ctx.interruptible(poll_snapshot(&kafka, ctx, CATALOG_WAIT, |s| ids.iter().all(|id| on_products(s, id)))).await?;
    let absent: Vec<&str> = ids.iter().copied().filter(|id| !on_products(&snapshot, id)).collect();
    let catalog_detail = if absent.is_empty() {
        format!("{} products on `products` ({} published now, from {source})", ids.len(), missing.len())
    } else {
        format!("{} of {} products not on `products` after {}s", absent.len(), ids.len(), CATALOG_WAIT.as_secs())
    };
    report.step(
        "catalog",
        absent.is_empty(),
        catalog_detail.clone(),
        json!({ "products": ids.len(), "published": missing.len(), "absent": absent }),
    )?;
    if !absent.is_empty() {
        return Err(unverified(&catalog_detail));
    }

    // 4. Orders: two that fit, one beyond the stock.
    let stock: Vec<Stock> = catalog
        .iter()
        .filter_map(|p| snapshot.products.get(&p.product_id))
        .map(|s| Stock { product_id: s.product_id.clone(), name: s.name.clone(), inventory: s.inventory.unwrap_or(-1) })
        .collect();
    let plan = demo::plan(&stock, on_insufficient).map_err(|why| {
        KartError::user("demo-no-stock", format!("cannot place the demo's orders: {why}"))
            .with_hint("`kart products load` restocks the catalog (it sets every product's stock back to the catalog's)")
    })?;
    let pg = ctx.postgres()?;
    let writer = ctx.interruptible(OrderWriter::connect(&pg)).await?;
    let (watch_kafka, watch_printer) = (kafka.clone(), ctx.printer.clone());
    let outcome_watch = tokio::task::spawn_blocking(move || OutcomeWatch::start(&watch_kafka, &watch_printer))
        .await
        .map_err(|e| KartError::infra("internal", format!("a background task failed: {e}")))??;
    let placing = Placing { ctx, kafka: &kafka, writer, watch: Arc::new(outcome_watch) };
    let results = if live { placing.under_the_table(plan).await? } else { placing.one_by_one(plan, &report).await? };
    if live {
        // The table is gone with the alternate screen; the record stays.
        for (i, result) in results.iter().enumerate() {
            report.order(i, results.len(), result)?;
        }
    }

    // 5. The stock the table shows: each product's number after its last
    // order (a product can be ordered twice, when the catalog is small).
    let mut expected: Vec<(String, i64)> = Vec::new();
    let decided = results.iter().filter(|r| r.verdict.verified);
    for (product, after) in decided.filter_map(|r| r.outcome.as_ref().and_then(|o| o.current_inventory.map(|after| (o.product_id.clone(), after)))) {
        match expected.iter_mut().find(|(p, _)| *p == product) {
            Some(known) => known.1 = after,
            None => expected.push((product, after)),
        }
    }
    let shows = |s: &Snapshot, product: &str, after: i64| s.products.get(product).and_then(|p| p.inventory) == Some(after);
    let latest = ctx
        .interruptible(poll_snapshot(&kafka, ctx, Duration::from_secs(10), |s| expected.iter().all(|(p, after)| shows(s, p, *after))))
        .await?;
    let stock_now: Vec<Value> = expected
        .iter()
        .map(|(p, after)| json!({ "productId": p, "expected": after, "shown": latest.products.get(p).and_then(|s| s.inventory) }))
        .collect();
    let stock_ok = expected.iter().all(|(p, after)| shows(&latest, p, *after));
    let stock_detail = expected
        .iter()
        .map(|(p, _)| format!("{p} {}", latest.products.get(p).and_then(|s| s.inventory).map_or("?".to_string(), |n| n.to_string())))
        .chain(std::iter::once(if stock_ok { "as the job decided".to_string() } else { "(not what the job decided)".to_string() }))
        .collect::<Vec<_>>()
        .join(", ");
    report.step("stock", stock_ok, format!("products and inventory-events show {stock_detail}"), json!({ "products": stock_now }))?;

    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.verdict.verified)
        .map(|r| format!("order of {} × {}: {}", r.order.quantity, r.order.product_id, r.verdict.detail))
        .chain((!stock_ok).then(|| format!("stock: {stock_detail}")))
        .collect();
    if !failed.is_empty() {
        return Err(unverified(&failed.join("; ")));
    }
    report.done(results.first().map_or("PROD_0001", |r| r.order.product_id.as_str()))
}

/// A step that did not check out: exit 1, with where to look.
fn unverified(what: &str) -> KartError {
    KartError::user("demo-unverified", format!("the demo did not verify: {what}"))
        .with_hint(format!("`kart job status {INVENTORY_JOB}` and `kart job logs {INVENTORY_JOB}` show the job; `kart doctor` checks the set-up"))
}

fn on_products(snapshot: &Snapshot, product_id: &str) -> bool {
    snapshot.products.get(product_id).is_some_and(|p| p.record.is_some())
}

/// Reads the product state until `done` holds or `within` passes; returns
/// the last reading either way.
async fn poll_snapshot(kafka: &KafkaSettings, ctx: &Context, within: Duration, done: impl Fn(&Snapshot) -> bool) -> Result<Snapshot> {
    let deadline = Instant::now() + within;
    loop {
        let snapshot = products::snapshot(kafka, &ctx.printer).await?;
        if done(&snapshot) || Instant::now() >= deadline {
            return Ok(snapshot);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One placed order and the job's answer.
struct OrderResult {
    order: PlannedOrder,
    order_id: String,
    outcome: Option<OrderOutcome>,
    verdict: Verdict,
}

impl OrderResult {
    fn line(&self) -> String {
        format!("{} × {} ({}) → {}", self.order.quantity, self.order.product_id, self.order.name, self.verdict.detail)
    }
}

struct Placing<'a> {
    ctx: &'a Context,
    kafka: &'a KafkaSettings,
    writer: OrderWriter,
    watch: Arc<OutcomeWatch>,
}

impl Placing<'_> {
    /// Without a table: each order reported as its answer arrives.
    async fn one_by_one(mut self, plan: Vec<PlannedOrder>, report: &Report<'_>) -> Result<Vec<OrderResult>> {
        let token = self.ctx.shutdown.clone();
        let total = plan.len();
        let mut results = Vec::new();
        for (i, order) in plan.into_iter().enumerate() {
            let result = self.place(order, &token).await?;
            report.order(i, total, &result)?;
            results.push(result);
        }
        Ok(results)
    }

    /// On a terminal: the live table of `kart watch` with the orders'
    /// progress under it, until the user presses q. Ctrl-C in the table
    /// stops the orders too.
    async fn under_the_table(mut self, plan: Vec<PlannedOrder>) -> Result<Vec<OrderResult>> {
        let ctx = self.ctx;
        let token = ctx.shutdown.child_token();
        let caption: Caption = Arc::new(std::sync::Mutex::new(vec![format!("kart demo · placing {} orders…", plan.len())]));
        let set_caption = |lines: Vec<String>| {
            if let Ok(mut c) = caption.lock() {
                *c = lines;
            }
        };
        let fetch_wait = ctx.settings.duration("KART_FETCH_WAIT")?;
        let table = watch::run_with_caption(self.kafka, &ctx.printer, &token, fetch_wait, caption.clone());
        let total = plan.len();
        let orders = async {
            let mut results: Vec<OrderResult> = Vec::new();
            let mut lines = Vec::new();
            for (i, order) in plan.into_iter().enumerate() {
                // Also before the first: the table has caught up by then,
                // so every drop is seen happening.
                tokio::select! {
                    _ = tokio::time::sleep(PACE) => {}
                    _ = token.cancelled() => return Err(KartError::interrupted()),
                }
                let mut progress = lines.clone();
                progress.push(format!("order {}/{total}: {} × {} …", i + 1, order.quantity, order.product_id));
                set_caption(progress);
                let result = self.place(order, &token).await?;
                let mark = if result.verdict.verified { ctx.printer.paint("✓", Tone::Good) } else { ctx.printer.paint("✗", Tone::Bad) };
                lines.push(format!("{mark} order {}/{total}: {}", i + 1, result.line()));
                set_caption(lines.clone());
                results.push(result);
            }
            let all = results.iter().all(|r| r.verdict.verified);
            lines.push(if all {
                ctx.printer.paint("every order got the answer expected · press q to continue", Tone::Good)
            } else {
                ctx.printer.paint("some answers were not the ones expected · press q to see why", Tone::Bad)
            });
            set_caption(lines);
            Ok(results)
        };
        tokio::pin!(table);
        tokio::pin!(orders);
        let (mut table_done, mut orders_done): (Option<Result<()>>, Option<Result<Vec<OrderResult>>>) = (None, None);
        while table_done.is_none() || orders_done.is_none() {
            tokio::select! {
                result = &mut table, if table_done.is_none() => {
                    if result.is_err() {
                        token.cancel();
                    } else if orders_done.is_none() {
                        // `q` before the orders were decided: the caption
                        // that showed their progress is gone with the table.
                        ctx.printer.status("Waiting", "for the rest of the orders' answers (Ctrl-C stops)");
                    }
                    table_done = Some(result);
                }
                result = &mut orders, if orders_done.is_none() => {
                    if let Err(error) = &result {
                        set_caption(vec![ctx.printer.paint(&format!("the orders failed: {} · press q", error.message), Tone::Bad)]);
                    }
                    orders_done = Some(result);
                }
            }
        }
        table_done.unwrap_or(Ok(()))?;
        orders_done.unwrap_or_else(|| Err(KartError::interrupted()))
    }

    /// Places one single-line order on the direct path and waits for the
    /// job's answer.
    async fn place(&mut self, order: PlannedOrder, token: &CancellationToken) -> Result<OrderResult> {
        let lines = [Line { product_id: order.product_id.clone(), quantity: order.quantity }];
        let placed = cancellable(token, self.writer.place(&lines, CUSTOMER, true)).await?;
        cancellable(token, orders::flush_outbox(&mut self.writer.client, self.kafka, &self.ctx.printer)).await?;
        let expected = vec![(placed.order_id.clone(), order.product_id.clone())];
        let (found, _) = outcomes::collect(self.watch.clone(), expected, OUTCOME_WAIT, token).await?;
        let outcome = found.into_iter().next();
        let verdict = demo::verify(&order, outcome.as_ref());
        Ok(OrderResult { order, order_id: placed.order_id, outcome, verdict })
    }
}

async fn cancellable<T>(token: &CancellationToken, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        result = work => result,
        _ = token.cancelled() => Err(KartError::interrupted()),
    }
}

/// The demo's record: one line per step on stdout (a JSON object per line
/// with `-o json`), as each step ends.
struct Report<'a> {
    ctx: &'a Context,
}

impl Report<'_> {
    fn step(&self, step: &str, verified: bool, detail: String, data: Value) -> Result<()> {
        let p = &self.ctx.printer;
        if p.is_json() {
            let mut line = json!({ "schemaVersion": 1, "step": step, "verified": verified, "detail": detail });
            if let (Some(line), Value::Object(data)) = (line.as_object_mut(), data) {
                line.extend(data);
            }
            return p.json_line(&line);
        }
        let mark = if verified { p.paint("✓", Tone::Good) } else { p.paint("✗", Tone::Bad) };
        p.out(&format!("{mark} {step:<9} {detail}"))
    }

    fn order(&self, index: usize, total: usize, result: &OrderResult) -> Result<()> {
        let expect = match result.order.expect {
            Expect::Applied => "applied",
            Expect::Rejected => "rejected",
            Expect::Clamped => "clamped",
        };
        self.step(
            "order",
            result.verdict.verified,
            format!("{}/{total}: {}", index + 1, result.line()),
            json!({
                "orderId": result.order_id,
                "productId": result.order.product_id,
                "quantity": result.order.quantity,
                "expected": expect,
                "outcome": result.outcome,
            }),
        )
    }

    fn done(&self, product: &str) -> Result<()> {
        let p = &self.ctx.printer;
        let next_steps = next_steps(product);
        if p.is_json() {
            let next: Vec<Value> = next_steps.iter().map(|(command, what)| json!({ "command": command, "does": what })).collect();
            return p.json_line(&json!({ "schemaVersion": 1, "step": "done", "verified": true, "detail": "every step verified", "next": next }));
        }
        p.out(&format!("{} every step verified: the inventory job decides the orders and the stock follows", p.paint("✓", Tone::Good)))?;
        p.out("")?;
        p.out("Next:")?;
        let width = next_steps.iter().map(|(c, _)| c.chars().count()).max().unwrap_or(0);
        for (command, what) in next_steps {
            p.out(&format!("  {command:<width$}  {what}"))?;
        }
        Ok(())
    }
}
