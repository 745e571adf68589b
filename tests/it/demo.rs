//! `kart demo`: the whole workshop from nothing, verified, twice in a row
//! (idempotent), with the native backend (this machine's PostgreSQL and
//! tansu) and with the Docker backend (the locally served test images); and
//! once on a terminal, where the orders run under the live table.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::platform::{native_kart, Stack};
use crate::support::{Kart, Terminal};

/// Writes the project's `catalog.json`: the workshop's product shape, with
/// these ids and stocks.
fn write_catalog(kart: &Kart, products: &[(&str, i64)]) -> PathBuf {
    let products: Vec<Value> = products
        .iter()
        .map(|(id, inventory)| {
            serde_json::json!({
                "productId": id, "name": format!("Demo {id}"), "description": "d", "category": "c", "brand": "b",
                "price": 10.0, "inventory": inventory, "imageUrl": "https://example.com/x.png", "tags": [], "rating": 4.0, "reviewCount": 1
            })
        })
        .collect();
    kart.write("catalog.json", &Value::Array(products).to_string())
}

/// A native-backend project whose catalog (`INITIAL_PRODUCTS_FILE`) is
/// `catalog.json` with these products.
fn native_kart_with_catalog(products: &[(&str, i64)]) -> Kart {
    let (mut kart, _, _) = native_kart();
    let file = write_catalog(&kart, products);
    kart.set_env("INITIAL_PRODUCTS_FILE", file.display().to_string());
    kart
}

/// Stops what a demo left running, even when the test failed half-way:
/// the background inventory job first, then the platform and its data.
struct Cleanup<'a>(&'a Kart);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["job", "stop", "inventory"]);
        let _ = self.0.run(&["platform", "stop", "--volumes", "--yes"]);
    }
}

/// The JSON lines of a `demo -o json` run.
fn steps(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect()
}

/// Checks a passed `demo --ci -o json` run: every step verified, in order,
/// the two orders that fit applied with their arithmetic, the third
/// rejected with the stock unchanged, the table's stock what the job said.
#[track_caller]
fn assert_verified(stdout: &str) -> Vec<Value> {
    let steps = steps(stdout);
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["platform", "job", "catalog", "order", "order", "order", "stock", "done"], "{stdout}");
    for step in &steps {
        assert_eq!(step["schemaVersion"], 1, "{step}");
        assert_eq!(step["verified"], true, "{step}");
    }
    let orders: Vec<&Value> = steps.iter().filter(|s| s["step"] == "order").collect();
    for order in &orders[..2] {
        assert_eq!(order["expected"], "applied", "{order}");
        let outcome = &order["outcome"];
        assert_eq!(outcome["outcome"], "applied", "{order}");
        assert_eq!(outcome["orderId"], order["orderId"]);
        let dropped = outcome["previousInventory"].as_i64().unwrap() - outcome["currentInventory"].as_i64().unwrap();
        assert_eq!(dropped, order["quantity"].as_i64().unwrap(), "{order}");
    }
    let rejected = orders[2];
    assert_eq!(rejected["expected"], "rejected", "{rejected}");
    assert_eq!(rejected["outcome"]["outcome"], "rejected", "{rejected}");
    assert_eq!(rejected["outcome"]["previousInventory"], rejected["outcome"]["currentInventory"]);
    assert!(rejected["quantity"].as_i64().unwrap() > rejected["outcome"]["previousInventory"].as_i64().unwrap(), "{rejected}");
    for product in steps[6]["products"].as_array().unwrap() {
        assert_eq!(product["shown"], product["expected"], "{}", steps[6]);
    }
    assert!(steps[7]["next"].as_array().unwrap().iter().any(|n| n["command"] == "kart platform stop"));
    steps
}

/// The schema of each step's line: its keys, pinned.
fn schema(steps: &[Value]) -> String {
    let mut lines: Vec<String> = steps
        .iter()
        .map(|s| {
            let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
            format!("{}: {}", s["step"].as_str().unwrap(), keys.join(", "))
        })
        .collect();
    lines.dedup();
    lines.join("\n")
}

#[test]
fn demo_ci_verifies_every_step_from_nothing_and_again_with_the_native_backend() {
    let (kart, _, _) = native_kart();
    let _cleanup = Cleanup(&kart);

    let first = kart.run(&["-o", "json", "demo", "--ci", "--backend", "native"]);
    first.ok();
    let steps = assert_verified(&first.stdout);
    assert_eq!(steps[0]["backend"], "native");
    assert_eq!(steps[1]["result"], "started");
    // The job bootstraps the catalog on its first start, before it reports
    // running: nothing is left for the demo to publish.
    assert_eq!(steps[2]["products"], 16, "{}", steps[2]);
    assert_eq!(steps[2]["published"], 0, "{}", steps[2]);
    insta::assert_snapshot!("demo-json-schema", schema(&steps));

    // Right after: everything is reused, the orders come from the stock
    // as the first run left it, and every step verifies again.
    let again = kart.run(&["-o", "json", "demo", "--ci", "--backend", "native"]);
    again.ok();
    let steps = assert_verified(&again.stdout);
    assert_eq!(steps[1]["result"], "already-running");
    assert_eq!(steps[2]["published"], 0);

    // For people: one line per step and what to do next.
    let text = kart.run(&["demo", "--ci", "--backend", "native"]);
    text.ok();
    assert_eq!(text.stdout.lines().filter(|l| l.starts_with("✓ order")).count(), 3, "{}", text.stdout);
    let rejection = text.stdout.lines().find(|l| l.starts_with("✓ order") && l.contains("3/3")).unwrap_or_default();
    assert!(rejection.contains("rejected: ") && rejection.contains(" in stock, ") && rejection.ends_with(" requested"), "{}", text.stdout);
    assert!(text.stdout.contains("kart platform stop"), "{}", text.stdout);
    assert!(!text.stdout.contains('✗'), "{}", text.stdout);

    // The suggested `kart platform stop` takes the demo's job down too.
    let stop = kart.run(&["-o", "json", "platform", "stop"]);
    stop.ok();
    assert_eq!(stop.json()["jobsStopped"], serde_json::json!(["inventory"]), "{}", stop.stdout);
}

#[test]
fn demo_ci_verifies_every_step_from_nothing_and_again_with_the_docker_backend() {
    let stack = Stack::new("");
    let kart = &stack.kart;
    let _cleanup = Cleanup(kart);
    for run in 0..2 {
        let demo = kart.run(&["-o", "json", "demo", "--ci", "--backend", "docker"]);
        demo.ok();
        let steps = assert_verified(&demo.stdout);
        assert_eq!(steps[0]["backend"], "docker", "run {run}");
        assert_eq!(steps[1]["result"], if run == 0 { "started" } else { "already-running" });
    }
    assert_eq!(crate::platform::project_containers(&stack.project).len(), 2, "the broker and PostgreSQL run as containers");
}

/// On a terminal the orders run under the live table: the stock is seen
/// dropping, `q` leaves the table, and the record and next steps follow.
#[test]
fn demo_on_a_terminal_shows_the_stock_dropping_in_the_live_table() {
    let (kart, _, _) = native_kart();
    let _cleanup = Cleanup(&kart);
    let mut terminal = Terminal::spawn(&kart, &["demo", "--backend", "native"]);
    terminal.wait_for("\x1b[?1049h", Duration::from_secs(120));
    terminal.wait_for("order 1/3", Duration::from_secs(60));
    // A row of the table with its stock change, e.g. "48 (-2)".
    terminal.wait_for(" (-2)", Duration::from_secs(60));
    terminal.wait_for("press q to continue", Duration::from_secs(60));
    terminal.press(b"q");
    assert_eq!(terminal.exit_code(Duration::from_secs(30)), Some(0), "{}", terminal.seen());
    let seen = terminal.seen();
    let after_table = &seen[seen.rfind("\x1b[?1049l").expect("the alternate screen is left")..];
    assert!(after_table.contains("order"), "the orders' record follows the table: {after_table:?}");
    assert!(after_table.contains("kart platform stop"), "{after_table:?}");
}

/// A catalog with nothing in stock leaves no order to show: the demo says
/// so, with the fix, and exits 1 after the steps it could verify.
#[test]
fn demo_with_everything_sold_out_says_how_to_restock_and_exits_1() {
    let kart = native_kart_with_catalog(&[("SOLD_1", 0), ("SOLD_2", 0)]);
    let _cleanup = Cleanup(&kart);
    let run = kart.run(&["-o", "json", "demo", "--ci", "--backend", "native"]);
    run.code(1);
    let names: Vec<String> = steps(&run.stdout).iter().map(|s| s["step"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["platform", "job", "catalog"], "{}", run.stdout);
    let error: Value = serde_json::from_str(run.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "demo-no-stock", "{}", run.stderr);
    assert!(error["error"]["message"].as_str().unwrap().contains("every product is sold out"), "{error}");
    assert!(error["error"]["hint"].as_str().unwrap().contains("kart products load"), "{error}");
}

/// The job bootstraps the catalog only into an empty state: a product added
/// to the catalog later reaches `products` because the demo publishes it to
/// `product-updates`, and the job (restarted for the new catalog) applies it.
#[test]
fn demo_publishes_the_catalog_products_the_job_has_not_seen() {
    let kart = native_kart_with_catalog(&[("DEMO_A", 10), ("DEMO_B", 10)]);
    let _cleanup = Cleanup(&kart);

    let first = kart.run(&["-o", "json", "demo", "--ci", "--backend", "native"]);
    first.ok();
    let steps = assert_verified(&first.stdout);
    assert_eq!((steps[2]["products"].as_i64(), steps[2]["published"].as_i64()), (Some(2), Some(0)), "{}", steps[2]);

    write_catalog(&kart, &[("DEMO_A", 10), ("DEMO_B", 10), ("DEMO_C", 7)]);
    let grown = kart.run(&["-o", "json", "demo", "--ci", "--backend", "native"]);
    grown.ok();
    let steps = assert_verified(&grown.stdout);
    assert_eq!(steps[1]["replaced"], true, "a new catalog is a new configuration: {}", steps[1]);
    assert_eq!((steps[2]["products"].as_i64(), steps[2]["published"].as_i64()), (Some(3), Some(1)), "{}", steps[2]);
    // DEMO_C is now the scarcest product: the one the demo overdraws.
    let rejected = steps.iter().filter(|s| s["step"] == "order").nth(2).unwrap();
    assert_eq!((rejected["productId"].as_str(), rejected["quantity"].as_i64()), (Some("DEMO_C"), Some(8)), "{rejected}");
}

/// With the workshop's behaviour (`KART_ON_INSUFFICIENT=clamp`) and only two
/// products, the order beyond the stock goes to a product already ordered:
/// its stock ends at 0, and the stock check expects that, not the number
/// after its first order.
#[test]
fn demo_in_clamp_mode_with_two_products_verifies() {
    let mut kart = native_kart_with_catalog(&[("CLAMP_A", 5), ("CLAMP_B", 5)]);
    kart.set_env("KART_ON_INSUFFICIENT", "clamp");
    let _cleanup = Cleanup(&kart);
    let run = kart.run(&["-o", "json", "demo", "--ci", "--backend", "native"]);
    run.ok();
    let steps = steps(&run.stdout);
    assert!(steps.iter().all(|s| s["verified"] == true), "{}", run.stdout);
    let clamped = steps.iter().filter(|s| s["step"] == "order").nth(2).unwrap();
    assert_eq!((clamped["productId"].as_str(), clamped["expected"].as_str()), (Some("CLAMP_B"), Some("clamped")), "{clamped}");
    let stock = steps.iter().find(|s| s["step"] == "stock").unwrap();
    let shown: Vec<(&str, i64)> = stock["products"].as_array().unwrap().iter().map(|p| (p["productId"].as_str().unwrap(), p["shown"].as_i64().unwrap())).collect();
    assert_eq!(shown, [("CLAMP_A", 3), ("CLAMP_B", 0)], "{stock}");

    // stdout closed before the steps are reported: not verified, exit 1.
    let mut child = kart.command(&["demo", "--ci", "--backend", "native"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(closed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stdout closed before every step was verified"), "{stderr}");
}
