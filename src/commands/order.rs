//! `kart order place|flush`: orders like the workshop's checkout, one or
//! many, and the outbox's unsent events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{OrderCommand, OrderPlaceArgs};
use crate::context::{duration_flag, Context};
use crate::exit::{KartError, Result};
use crate::inventory::model::{OrderOutcome, Outcome};
use crate::jobs::inventory::JOB_NAME as INVENTORY_JOB;
use crate::orders::outcomes::{self, OutcomeWatch};
use crate::orders::{self, parse_lines, Line, Placed};
use crate::supervise::{Liveness, Supervisor};

pub async fn run(command: OrderCommand, ctx: &Context) -> Result<()> {
    match command {
        OrderCommand::Place(args) if args.count.is_some() => load(args, ctx).await,
        OrderCommand::Place(args) => place(args, ctx).await,
        OrderCommand::Flush => flush(ctx).await,
    }
}

async fn place(args: OrderPlaceArgs, ctx: &Context) -> Result<()> {
    let lines = parse_lines(args.product.as_deref(), args.quantity, &args.items)?;
    let wait_timeout = duration_flag("--wait-timeout", &args.wait_timeout)?;
    let pg = ctx.postgres()?;
    let kafka = if !args.cdc || args.wait { Some(ctx.kafka()?) } else { None };
    let mut writer = ctx.interruptible(orders::OrderWriter::connect(&pg)).await?;
    // The outcome reader starts before anything is published, so no
    // outcome can arrive before it looks.
    let watch = match (&kafka, args.wait) {
        (Some(kafka), true) => {
            let (kafka, printer) = (kafka.clone(), ctx.printer.clone());
            Some(blocking(move || OutcomeWatch::start(&kafka, &printer)).await?)
        }
        _ => None,
    };
    let placed = writer.place(&lines, &args.customer, !args.cdc).await?;
    let client = &mut writer.client;
    ctx.printer.status("Placed", &describe(&placed));
    let mut published = None;
    if let (Some(kafka), false) = (&kafka, args.cdc) {
        match orders::flush_outbox(client, kafka, &ctx.printer).await {
            Ok(flushed) => {
                if flushed.orders.len() > 1 {
                    ctx.printer.status("Published", &format!("{} earlier unsent order(s) too", flushed.orders.len() - 1));
                }
                published = Some(flushed);
            }
            Err(error) => {
                let pending = orders::pending(client).await.unwrap_or(0);
                if ctx.printer.is_json() {
                    ctx.printer.json(json!({ "order": placed, "published": null, "pending": pending, "outcomes": null }))?;
                }
                return Err(KartError::infra(
                    "order-unpublished",
                    format!("order {} is committed, but its events are not published: {}", placed.order_id, error.message),
                )
                .with_hint(format!(
                    "{pending} event(s) wait in the outbox; `kart order flush` publishes them once Kafka is reachable (so does the next `kart order place`)"
                )));
            }
        }
    }
    let mut outcomes = Vec::new();
    let mut failure = None;
    if let Some(watch) = watch {
        let expected: Vec<(String, String)> = placed.lines.iter().map(|l| (placed.order_id.clone(), l.product_id.clone())).collect();
        let (found, missing) = outcomes::collect(Arc::new(watch), expected, wait_timeout, &ctx.shutdown).await?;
        for line in &placed.lines {
            if let Some(outcome) = found.iter().find(|o| o.product_id == line.product_id) {
                if !ctx.printer.is_json() {
                    ctx.printer.out(&outcome_line(outcome))?;
                }
                if matches!(outcome.outcome, Outcome::Rejected | Outcome::Dlq) {
                    failure.get_or_insert_with(|| {
                        KartError::user("order-rejected", format!("order {}: {} was not applied", placed.order_id, outcome.product_id))
                            .with_hint("a rejected line deducts nothing; `kart products list` shows the stock")
                    });
                }
            }
        }
        outcomes = found;
        if !missing.is_empty() {
            failure = Some(wait_timed_out(ctx, &placed.order_id, missing.len(), wait_timeout)?);
        }
    }
    if ctx.printer.is_json() {
        ctx.printer.json(json!({
            "order": placed,
            "published": published,
            "pending": 0,
            "outcomes": if args.wait { json!(outcomes) } else { Value::Null },
        }))?;
    } else if !args.wait {
        ctx.printer.out(&placed.order_id)?;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn describe(placed: &Placed) -> String {
    let lines: Vec<String> = placed.lines.iter().map(|l| format!("{} × {}", l.quantity, l.product_id)).collect();
    let path = if placed.direct { "direct" } else { "CDC: the order-cdc job publishes it" };
    format!("order {} ({}), total ${} [{path}]", placed.order_id, lines.join(", "), placed.total)
}

/// `PROD_0001 10 → 8`, or the reason a line was not applied.
fn outcome_line(outcome: &OrderOutcome) -> String {
    match (outcome.outcome, outcome.previous_inventory, outcome.current_inventory) {
        (Outcome::Applied, Some(before), Some(after)) => format!("{} {before} → {after}", outcome.product_id),
        (kind, _, _) => format!(
            "{} {}: {}",
            outcome.product_id,
            match kind {
                Outcome::Applied => "applied",
                Outcome::Rejected => "rejected",
                Outcome::Duplicate => "duplicate",
                Outcome::Dlq => "not processed",
            },
            outcome.reason.as_deref().unwrap_or("")
        ),
    }
}

fn wait_timed_out(ctx: &Context, order_id: &str, missing: usize, timeout: Duration) -> Result<KartError> {
    let running = matches!(Supervisor::new(&ctx.project_dir).liveness(INVENTORY_JOB)?, Liveness::Running(_));
    let why = if running {
        "the inventory job is running but has not decided them yet (is it far behind? `kart job status inventory`)".to_string()
    } else {
        "the inventory job is not running: `kart job deploy inventory` starts it".to_string()
    };
    Ok(KartError::user(
        "order-wait-timeout",
        format!("no outcome for {missing} line(s) of order {order_id} within {}; {why}", humantime::format_duration(timeout)),
    ))
}

async fn flush(ctx: &Context) -> Result<()> {
    let pg = ctx.postgres()?;
    let kafka = ctx.kafka()?;
    let mut client = ctx.interruptible(orders::connect(&pg)).await?;
    let flushed = orders::flush_outbox(&mut client, &kafka, &ctx.printer).await?;
    if ctx.printer.is_json() {
        return ctx.printer.json(json!({ "published": flushed.published, "orders": flushed.orders, "pending": flushed.pending }));
    }
    if flushed.published == 0 {
        ctx.printer.out("nothing to publish: every order's events are out")
    } else {
        ctx.printer.out(&format!("published {} event(s) of {} order(s)", flushed.published, flushed.orders.len()))
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| KartError::infra("internal", format!("a background task failed: {e}")))?
}

// ----- load mode ------------------------------------------------------------

/// Connections placing orders at once in load mode.
const POOL: usize = 8;
/// How often load mode publishes the outbox (many orders per publish).
const PUBLISH_EVERY: Duration = Duration::from_millis(20);

/// `--count N [--rate R] [--products P,…] [--wait]`: N one-line orders of
/// one unit each, spread over the products, at R per second (as fast as
/// possible without `--rate`).
async fn load(args: OrderPlaceArgs, ctx: &Context) -> Result<()> {
    let count = args.count.unwrap_or(0);
    if count == 0 {
        return Err(KartError::user("bad-count", "--count must be at least 1"));
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(KartError::user("bad-rate", "--rate must be a positive number of orders per second"));
    }
    if args.product.is_some() || !args.items.is_empty() {
        return Err(KartError::user("bad-load", "load mode picks products itself: use --products P,… instead of --product/--item"));
    }
    let wait_timeout = duration_flag("--wait-timeout", &args.wait_timeout)?;
    let pg = ctx.postgres()?;
    let kafka = if !args.cdc || args.wait { Some(ctx.kafka()?) } else { None };
    let first = ctx.interruptible(orders::OrderWriter::connect(&pg)).await?;
    let products: Vec<String> = if args.products.is_empty() {
        first
            .client
            .query("SELECT product_id FROM products ORDER BY product_id", &[])
            .await
            .map_err(|e| crate::db::query_error("reading the products", e))?
            .iter()
            .map(|row| row.get(0))
            .collect()
    } else {
        args.products.iter().map(|p| p.trim().to_string()).collect()
    };
    if products.is_empty() {
        return Err(KartError::user("no-products", "no products to order").with_hint("`kart db init` seeds the catalog"));
    }

    let placed_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = match (&kafka, args.wait) {
        (Some(kafka), true) => {
            let (kafka, printer) = (kafka.clone(), ctx.printer.clone());
            Some(blocking(move || OutcomeWatch::start(&kafka, &printer)).await?)
        }
        _ => None,
    };
    // With --wait, a thread matches outcomes to orders as they arrive.
    let collector_done = Arc::new(AtomicBool::new(false));
    let collector = watch.map(|watch| {
        let (placed_at, done) = (placed_at.clone(), collector_done.clone());
        std::thread::spawn(move || -> Result<(Vec<f64>, HashMap<&'static str, u64>)> {
            let mut latencies = Vec::new();
            let mut kinds: HashMap<&'static str, u64> = HashMap::new();
            let mut waiting_since: Option<Instant> = None;
            loop {
                let outstanding = placed_at.lock().map(|m| m.len()).unwrap_or(0);
                if done.load(Ordering::Relaxed) && outstanding == 0 {
                    break;
                }
                if done.load(Ordering::Relaxed) && waiting_since.get_or_insert_with(Instant::now).elapsed() > wait_timeout {
                    break;
                }
                let Some(outcome) = watch.next(Duration::from_millis(100))? else { continue };
                let Some(at) = placed_at.lock().ok().and_then(|mut m| m.remove(&outcome.order_id)) else { continue };
                latencies.push(at.elapsed().as_secs_f64() * 1e3);
                let kind = match outcome.outcome {
                    Outcome::Applied => "applied",
                    Outcome::Rejected => "rejected",
                    Outcome::Duplicate => "duplicate",
                    Outcome::Dlq => "dlq",
                };
                *kinds.entry(kind).or_default() += 1;
            }
            Ok((latencies, kinds))
        })
    });

    // The publisher: one connection flushing the outbox every few ms.
    let stop_publisher = Arc::new(AtomicBool::new(false));
    let publish_errors = Arc::new(Mutex::new(None::<String>));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = match (&kafka, args.cdc) {
        (Some(kafka), false) => {
            let mut client = orders::connect(&pg).await?;
            let (kafka, printer, stop, errors, published) =
                (kafka.clone(), ctx.printer.clone(), stop_publisher.clone(), publish_errors.clone(), published.clone());
            Some(tokio::spawn(async move {
                loop {
                    let last = stop.load(Ordering::Relaxed);
                    match orders::flush_outbox(&mut client, &kafka, &printer).await {
                        Ok(flushed) => {
                            published.fetch_add(flushed.published as u64, Ordering::Relaxed);
                        }
                        Err(error) => {
                            *errors.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.message);
                        }
                    }
                    if last {
                        break;
                    }
                    tokio::time::sleep(PUBLISH_EVERY).await;
                }
            }))
        }
        _ => None,
    };

    let mut pool = vec![first];
    for _ in 1..POOL {
        pool.push(orders::OrderWriter::connect(&pg).await?);
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<u64>(POOL * 2);
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let failures = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for client in pool {
        let (receiver, failures, placed_at, products, printer, customer) =
            (receiver.clone(), failures.clone(), placed_at.clone(), products.clone(), ctx.printer.clone(), args.customer.clone());
        let (direct, wait) = (!args.cdc, args.wait);
        workers.push(tokio::spawn(async move {
            loop {
                let Some(n) = receiver.lock().await.recv().await else { break };
                let product = &products[(n as usize) % products.len()];
                let line = Line { product_id: product.clone(), quantity: 1 };
                let started = Instant::now();
                match client.place(std::slice::from_ref(&line), &customer, direct).await {
                    Ok(placed) => {
                        if wait {
                            if let Ok(mut map) = placed_at.lock() {
                                map.insert(placed.order_id.clone(), started);
                            }
                        }
                        if printer.is_json() {
                            let _ = printer.json_line(&json!({"orderId": placed.order_id, "productId": product, "quantity": 1, "placedAt": placed.placed_at}));
                        }
                    }
                    Err(error) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        printer.warn(&format!("order {n} failed: {}", error.message));
                    }
                }
            }
        }));
    }

    let started = Instant::now();
    let interval = args.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut last_progress = Instant::now();
    for n in 0..count {
        if let Some(interval) = interval {
            let due = started + interval.mul_f64(n as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        tokio::select! {
            sent = sender.send(n) => { if sent.is_err() { break; } }
            _ = ctx.shutdown.cancelled() => { break; }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) && !ctx.printer.is_json() {
            last_progress = Instant::now();
            ctx.printer.status("Placing", &format!("{n} of {count} orders"));
        }
    }
    drop(sender);
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();
    stop_publisher.store(true, Ordering::Relaxed);
    if let Some(publisher) = publisher {
        let _ = publisher.await;
    }
    collector_done.store(true, Ordering::Relaxed);
    let (mut latencies, kinds) = match collector {
        Some(handle) => handle.join().map_err(|_| KartError::infra("internal", "the outcome reader panicked"))??,
        None => (Vec::new(), HashMap::new()),
    };
    let failures = failures.load(Ordering::Relaxed);
    let placed = count - failures;
    let client = orders::connect(&pg).await?;
    let pending = orders::pending(&client).await.unwrap_or(0);
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied();
    let rate = placed as f64 / elapsed.as_secs_f64().max(1e-9);
    let missing = if args.wait { placed.saturating_sub(latencies.len() as u64) } else { 0 };
    let summary = json!({
        "orders": placed,
        "failures": failures,
        "seconds": elapsed.as_secs_f64(),
        "ordersPerSecond": rate,
        "published": published.load(Ordering::Relaxed),
        "pending": pending,
        "latencyMs": if args.wait { json!({"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": latencies.last()}) } else { Value::Null },
        "outcomes": if args.wait { json!({"applied": kinds.get("applied").copied().unwrap_or(0), "rejected": kinds.get("rejected").copied().unwrap_or(0), "duplicate": kinds.get("duplicate").copied().unwrap_or(0), "dlq": kinds.get("dlq").copied().unwrap_or(0), "missing": missing}) } else { Value::Null },
    });
    if ctx.printer.is_json() {
        ctx.printer.json_line(&json!({"schemaVersion": 1, "summary": summary}))?;
    } else {
        let mut text = format!("{placed} orders in {:.2} s: {rate:.0} orders/s, {failures} failed", elapsed.as_secs_f64());
        if !args.cdc {
            text.push_str(&format!(", {pending} event(s) unpublished"));
        }
        if args.wait {
            text.push_str(&format!(
                "; place → outcome p50 {:.1} ms, p99 {:.1} ms; {} without an outcome",
                pct(0.5).unwrap_or(f64::NAN),
                pct(0.99).unwrap_or(f64::NAN),
                missing
            ));
        }
        ctx.printer.out(&text)?;
    }
    if let Some(error) = publish_errors.lock().ok().and_then(|e| e.clone()).filter(|_| pending > 0) {
        return Err(KartError::infra("order-unpublished", format!("{pending} order event(s) are not published: {error}"))
            .with_hint("`kart order flush` publishes them once Kafka is reachable"));
    }
    if ctx.shutdown.is_cancelled() {
        return Err(KartError::interrupted());
    }
    if failures > 0 || missing > 0 {
        return Err(KartError::user("load-incomplete", format!("{failures} order(s) failed, {missing} without an outcome")));
    }
    Ok(())
}
