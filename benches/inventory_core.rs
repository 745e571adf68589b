//! Inventory core benchmarks (issue 3, targets (a) and (d)):
//!
//! (a) events/s of the pure core for a mixed stream of orders and product
//!     updates over 200 products, on one core — target ≥ 1,000,000/s;
//! (d) resident memory after 1,000,000 events over 200 products — target
//!     ≤ 50 MB + 32 bytes per order line inside the de-duplication window.
//!
//! `cargo bench --bench inventory_core`. Inputs are generated before the
//! timed loop (parsing is the driver's cost, not the core's).

use std::time::Instant;

use kart::inventory::{Config, Input, OrderLine, Outputs, Processor, Product};

const PRODUCTS: usize = 200;
const EVENTS: usize = 1_000_000;

fn product(i: usize, inventory: i64, price: f64) -> Product {
    Product {
        product_id: format!("PROD_{:04}", i + 1),
        name: format!("Bench product {i}"),
        description: "A product used by the benchmark".into(),
        price,
        category: "Electronics".into(),
        brand: Some("Bench".into()),
        image_url: String::new(),
        inventory,
        tags: vec!["bench".into()],
        rating: 4.5,
        review_count: 10,
    }
}

/// Every 20th event is a product update (a restock, sometimes a price
/// change); the rest are order lines with unique order ids.
fn event(n: usize) -> Input {
    let p = n % PRODUCTS;
    if n % 20 == 0 {
        let price = if n % 40 == 0 { 99.99 } else { 89.99 };
        Input::Product(product(p, 1_000_000, price))
    } else {
        Input::Order(OrderLine { quantity: 1 + (n % 3) as i64, product_id: format!("PROD_{:04}", p + 1), order_id: format!("order-{n:08}"), timestamp: n as i64 })
    }
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn bootstrap() -> Processor {
    let mut processor = Processor::new(Config::default());
    let mut out = Outputs::default();
    processor.apply(Input::Products((0..PRODUCTS).map(|i| product(i, 1_000_000, 99.99)).collect()), 1, &mut out);
    processor
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("inventory core benches: run with `cargo bench --bench inventory_core`");
        return;
    }

    // (d) memory: generate on the fly so only the processor's state stays resident.
    let before = rss_bytes().unwrap_or(0);
    let mut processor = bootstrap();
    let mut out = Outputs::default();
    let mut lines = 0usize;
    for n in 0..EVENTS {
        let input = event(n);
        if matches!(input, Input::Order(_)) {
            lines += 1;
        }
        processor.apply(input, 1_000 + n as i64, &mut out);
        out.clear();
    }
    let after = rss_bytes().unwrap_or(0);
    let window = processor.dedup_len();
    let limit = 50.0 * 1024.0 * 1024.0 + 32.0 * window as f64;
    println!(
        "(d) resident memory after {EVENTS} events ({lines} order lines, {window} in the dedup window): {:.1} MB (process; {:.1} MB above start); \
         dedup estimate {:.1} B/line | target ≤ {:.1} MB | ratio {:.2} {}",
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / 1048576.0,
        processor.dedup_memory_bytes() as f64 / window.max(1) as f64,
        limit / 1048576.0,
        after as f64 / limit,
        if (after as f64) <= limit { "MET" } else { "MISSED" }
    );
    drop(processor);

    // (a) throughput, best of 5 runs over pre-generated inputs.
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut processor = bootstrap();
        let inputs: Vec<Input> = (0..EVENTS).map(event).collect();
        let mut out = Outputs::default();
        let started = Instant::now();
        for (n, input) in inputs.into_iter().enumerate() {
            processor.apply(input, 1_000 + n as i64, &mut out);
            if n % 64 == 0 {
                out.clear(); // the driver drains outputs once per batch
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    let rate = EVENTS as f64 / best;
    println!(
        "(a) core throughput, mixed stream over {PRODUCTS} products: {:.0} events/s (best of 5, {EVENTS} events in {:.1} ms) | target ≥ 1000000/s | ratio {:.2} {}",
        rate,
        best * 1e3,
        rate / 1e6,
        if rate >= 1e6 { "MET" } else { "MISSED" }
    );
}
