//! `kart tail` and `kart watch` against a tansu of the test's own.
//!
//! Records are produced one at a time (each its own batch), so the offsets
//! and timestamps a test expects are exactly the ones it wrote.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::streams::TestProducer;
use crate::support::{closed_port, Broker, Kart, Terminal};

const EVENTS: &str = "inventory-events";

fn setup(topics: &[&str]) -> (Broker, Kart) {
    let broker = Broker::start();
    let kart = Kart::new().with_broker(&broker);
    let mut args = vec!["topics", "create"];
    args.extend_from_slice(topics);
    kart.run(&args).ok();
    (broker, kart)
}

fn event(product: &str, n: i64) -> Vec<u8> {
    json!({"productId": product, "eventType": "INVENTORY_DECREASED", "currentInventory": n})
        .to_string()
        .into_bytes()
}

/// The JSON lines of a run's stdout.
fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn offsets(stdout: &str) -> Vec<i64> {
    lines(stdout)
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect()
}

/// A kart running in the background, its stderr collected line by line.
struct Background {
    child: Child,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    fn start(kart: &Kart, args: &[&str]) -> Background {
        let mut child = kart
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kart");
        let (tx, stderr) = channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Background {
            child,
            stderr,
            seen: Vec::new(),
        }
    }

    #[track_caller]
    fn wait_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no {needle:?} on stderr within 30 s; saw {:#?}", self.seen),
            }
        }
    }

    /// Waits for the exit (at most 30 s): code, stdout, stderr.
    fn finish(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("kart did not exit within 30 s; stderr {:#?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).unwrap();
        }
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), stdout, self.seen.join("\n"))
    }
}

#[test]
fn tail_positions_return_exactly_the_expected_records() {
    let (broker, kart) = setup(&[EVENTS, "products"]);
    let producer = TestProducer::new(&broker);
    for n in 0..3 {
        producer.send(EVENTS, Some("PROD_0001"), &event("PROD_0001", n));
    }
    // A clear gap in time between the first three records and the next.
    std::thread::sleep(Duration::from_millis(3000));
    let between = SystemTime::now();
    std::thread::sleep(Duration::from_millis(20));
    for n in 3..6 {
        producer.send(EVENTS, Some("PROD_0002"), &event("PROD_0002", n));
    }

    // -DURATION first, while the second group is still young.
    let run = kart.run(&["-o", "json", "tail", EVENTS, "--from", "-2s", "--until-end"]);
    run.ok();
    assert_eq!(offsets(&run.stdout), vec![3, 4, 5], "{}", run.stderr);

    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--from",
        "beginning",
        "--until-end",
    ]);
    run.ok();
    assert_eq!(offsets(&run.stdout), vec![0, 1, 2, 3, 4, 5]);
    let values: Vec<i64> = lines(&run.stdout)
        .iter()
        .map(|r| r["value"]["currentInventory"].as_i64().unwrap())
        .collect();
    assert_eq!(values, vec![0, 1, 2, 3, 4, 5]);

    let run = kart.run(&["-o", "json", "tail", EVENTS, "--from", "-2", "--until-end"]);
    run.ok();
    assert_eq!(offsets(&run.stdout), vec![4, 5]);
    // More than there are: all of them.
    let run = kart.run(&["-o", "json", "tail", EVENTS, "--from", "-50", "--until-end"]);
    assert_eq!(offsets(&run.ok().stdout), vec![0, 1, 2, 3, 4, 5]);

    let at = format!("@{}", humantime::format_rfc3339_millis(between));
    let run = kart.run(&["-o", "json", "tail", EVENTS, "--from", &at, "--until-end"]);
    run.ok();
    assert_eq!(offsets(&run.stdout), vec![3, 4, 5], "{at}: {}", run.stderr);
    // A time before 1970 (brokers refuse negative times): every record.
    let run = kart.run(&["-o", "json", "tail", EVENTS, "--from", "-100y", "--until-end"]);
    assert_eq!(offsets(&run.ok().stdout), vec![0, 1, 2, 3, 4, 5], "{}", run.stderr);
    // A time after every record: nothing, and the end is reached at once.
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--from",
        "@2100-01-01T00:00:00Z",
        "--until-end",
    ]);
    assert_eq!(run.ok().stdout, "");

    // --from end (the default): only what is produced after the start.
    let mut follow = Background::start(&kart, &["-o", "json", "tail", EVENTS, "--max", "2"]);
    follow.wait_stderr("Tailing");
    producer.send(EVENTS, Some("PROD_0003"), &event("PROD_0003", 6));
    producer.send(EVENTS, Some("PROD_0003"), &event("PROD_0003", 7));
    let (code, stdout, stderr) = follow.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(offsets(&stdout), vec![6, 7], "{stderr}");

    // Several topics at once; --from end with --until-end is empty.
    producer.send("products", None, br#"{"productId":"PROD_0001"}"#);
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "products",
        "--from",
        "beginning",
        "--until-end",
    ]);
    let records = lines(&run.ok().stdout);
    assert_eq!(records.iter().filter(|r| r["topic"] == EVENTS).count(), 8);
    assert_eq!(
        records.iter().filter(|r| r["topic"] == "products").count(),
        1
    );
    assert_eq!(
        kart.run(&["tail", EVENTS, "products", "--until-end"])
            .ok()
            .stdout,
        ""
    );
}

#[test]
fn tail_filters_and_exit_codes() {
    let (broker, kart) = setup(&[EVENTS]);
    let producer = TestProducer::new(&broker);
    for (i, product) in [
        "PROD_0001",
        "PROD_0002",
        "PROD_0001",
        "PROD_0003",
        "PROD_0002",
    ]
    .iter()
    .enumerate()
    {
        producer.send(EVENTS, Some(product), &event(product, i as i64));
    }
    producer.send(EVENTS, None, b"not json at all");

    // Kpow's kJQ filter, unchanged.
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--from",
        "beginning",
        "--until-end",
        "--filter",
        r#".value.productId == "PROD_0001""#,
    ]);
    run.ok();
    assert_eq!(offsets(&run.stdout), vec![0, 2]);
    // A record the filter cannot look into (text) does not match; a warning says why.
    assert!(run.stderr.contains("does not match"), "{}", run.stderr);

    // --until: exit 0 after the first match, which is printed.
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--from",
        "beginning",
        "--until",
        r#".value.productId == "PROD_0003""#,
    ]);
    run.ok();
    assert_eq!(offsets(&run.stdout), vec![0, 1, 2, 3]);

    // --max: exit 0 after N printed records (after the filter).
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--from",
        "beginning",
        "--max",
        "2",
        "--filter",
        r#".value.productId == "PROD_0002""#,
    ]);
    run.ok();
    assert_eq!(offsets(&run.stdout), vec![1, 4]);

    // --timeout reached first: exit 1, and what came is still printed.
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--from",
        "beginning",
        "--timeout",
        "2s",
        "--until",
        r#".value.productId == "PROD_0999""#,
    ]);
    run.code(1);
    assert_eq!(offsets(&run.stdout).len(), 6);
    assert!(
        run.stderr
            .contains(r#"no record of inventory-events matched --until"#),
        "{}",
        run.stderr
    );
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    let run = kart.run(&["tail", EVENTS, "--max", "1", "--timeout", "1s"]);
    run.code(1);
    assert!(run.stderr.contains("only 0 of --max 1"), "{}", run.stderr);
    // -o json errors are one JSON line.
    let run = kart.run(&["-o", "json", "tail", EVENTS, "--timeout", "500ms"]);
    run.code(1);
    let error: Value = serde_json::from_str(run.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "timeout");
    // --timeout bounds connecting too: reached there, it is still exit 1,
    // saying why (the connect timeout alone would wait 10 s).
    let nowhere = Kart::new().env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", closed_port()));
    let run = nowhere.run(&["-o", "json", "tail", EVENTS, "--timeout", "1s"]);
    run.code(1);
    let error: Value = serde_json::from_str(run.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "timeout", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().starts_with("--timeout reached while connecting: cannot reach Kafka"), "{error}");

    // --until-end reached: exit 0 (the text record included, as text).
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--from",
        "beginning",
        "--until-end",
    ]);
    let records = lines(&run.ok().stdout);
    assert_eq!(records[5]["value"], "not json at all");
    assert_eq!(records[5]["valueEncoding"], "text");

    // Mistakes are the user's: a bad jq program, a missing topic, a bad position.
    let run = kart.run(&["tail", EVENTS, "--filter", ".value.productId =="]);
    run.code(1);
    assert!(run.stderr.contains("is not a jq program"), "{}", run.stderr);
    let run = kart.run(&["tail", "no-such-topic"]);
    run.code(1);
    assert!(run.stderr.contains("kart topics create"), "{}", run.stderr);
    let run = kart.run(&["tail", EVENTS, "--from", "yesterday"]);
    run.code(1);
    assert!(run.stderr.contains("--from"), "{}", run.stderr);
}

#[test]
fn tail_json_records_follow_the_documented_schema() {
    let (broker, kart) = setup(&[EVENTS]);
    let producer = TestProducer::new(&broker);
    producer.send_with_headers(
        EVENTS,
        "PROD_0001",
        br#"{"productId":"PROD_0001","productName":"FutureTech UltraBook Pro 15","eventType":"INVENTORY_DECREASED","previousInventory":10,"currentInventory":8}"#,
        &[("kart-batch", "7"), ("kart-index", "0")],
    );
    producer.send(EVENTS, None, &[0xff, 0x00, 0xfe]);
    producer.send(EVENTS, Some("k"), b"{\n  \"pretty\": true\n}");
    let run = kart.run(&[
        "tail",
        EVENTS,
        "--from",
        "beginning",
        "--until-end",
        "--format",
        "json",
    ]);
    // The lines as printed, byte for byte, only the timestamps redacted:
    // field names, their order and the encodings are the schema.
    let printed: Vec<String> = run
        .ok()
        .stdout
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            let timestamp = record["timestamp"].as_i64().unwrap();
            assert!(timestamp > 1_700_000_000_000);
            line.replace(
                &format!("\"timestamp\":{timestamp},"),
                "\"timestamp\":\"[timestamp]\",",
            )
        })
        .collect();
    insta::assert_snapshot!("tail-json-records", printed.join("\n"));
}

#[test]
fn tail_pretty_and_raw_never_crash_on_binary_values() {
    let (broker, kart) = setup(&[EVENTS]);
    let producer = TestProducer::new(&broker);
    producer.send(EVENTS, Some("PROD_0001"), &event("PROD_0001", 3));
    producer.send(EVENTS, None, &[0x00, 0x9f, 0x92, 0x96, 0xff]);
    producer.send(EVENTS, None, b"two\nlines");
    let run = kart.run(&["tail", EVENTS, "--from", "beginning", "--until-end"]);
    let out = run.ok().stdout.clone();
    let printed: Vec<&str> = out.lines().collect();
    assert_eq!(printed.len(), 3, "{out}");
    assert!(
        printed[0].contains(
            "inventory-events[0]@0 PROD_0001 INVENTORY_DECREASED {\"productId\":\"PROD_0001\""
        ),
        "{out}"
    );
    assert!(printed[1].ends_with("base64: AJ+Slv8="), "{out}");
    assert!(printed[2].ends_with(r"two\nlines"), "{out}");
    let run = kart.run(&[
        "tail",
        EVENTS,
        "--from",
        "beginning",
        "--until-end",
        "--format",
        "raw",
    ]);
    assert_eq!(
        run.ok().stdout.lines().next().unwrap(),
        r#"{"productId":"PROD_0001","eventType":"INVENTORY_DECREASED","currentInventory":3}"#
    );
}

#[test]
fn tail_into_head_exits_0_without_an_error() {
    let (broker, kart) = setup(&[EVENTS]);
    let producer = TestProducer::new(&broker);
    for n in 0..50 {
        producer.send(EVENTS, Some("PROD_0001"), &event("PROD_0001", n));
    }
    let kart_bin = env!("CARGO_BIN_EXE_kart");
    let dir = kart.dir().display().to_string();
    // Records keep coming after head exits: the next write fails (EPIPE).
    // Then a following tail with nothing more to print: kart notices the
    // closed pipe by itself.
    for (args, produce_later) in [("--from beginning", false), ("", true)] {
        let script = format!(
            "{kart_bin} --project-dir {dir} tail {EVENTS} {args} | head -1; echo \"exit=${{PIPESTATUS[0]}}\" >&2"
        );
        let mut child = std::process::Command::new("bash")
            .args(["-c", &script])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if produce_later {
            std::thread::sleep(Duration::from_secs(3));
            producer.send(EVENTS, Some("PROD_0002"), &event("PROD_0002", 1));
        }
        let started = Instant::now();
        let out = loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "kart tail | head -1 did not end"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stderr.contains("exit=0"), "args {args:?}: {stderr}");
        assert!(!stderr.contains("error"), "args {args:?}: {stderr}");
    }
}

#[test]
fn tail_ctrl_c_exits_130() {
    let (_broker, kart) = setup(&[EVENTS]);
    let mut tail = Background::start(&kart, &["tail", EVENTS]);
    tail.wait_stderr("Tailing");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tail.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (code, _, stderr) = tail.finish();
    assert_eq!(code, 130, "{stderr}");
}

#[test]
fn tail_with_a_group_commits_and_resumes() {
    let (broker, kart) = setup(&[EVENTS]);
    let producer = TestProducer::new(&broker);
    for n in 0..4 {
        producer.send(EVENTS, Some("PROD_0001"), &event("PROD_0001", n));
    }
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--group",
        "kart-test-tail",
        "--from",
        "beginning",
        "--max",
        "3",
    ]);
    assert_eq!(offsets(&run.ok().stdout), vec![0, 1, 2]);
    // Without --from, a group resumes where it stopped.
    let run = kart.run(&[
        "-o",
        "json",
        "tail",
        EVENTS,
        "--group",
        "kart-test-tail",
        "--max",
        "1",
        "--timeout",
        "20s",
    ]);
    assert_eq!(offsets(&run.ok().stdout), vec![3], "{}", run.stderr);
    // Nothing new since the group's commit: --until-end ends at once, with
    // nothing, for that group and for a group that never committed.
    for group in ["kart-test-tail", "kart-test-tail-new"] {
        let run = kart.run(&["-o", "json", "tail", EVENTS, "--group", group, "--until-end", "--timeout", "20s"]);
        assert_eq!(run.ok().stdout, "", "{group}: {}", run.stderr);
    }
}

// ---- watch -------------------------------------------------------------------------

fn product(id: &str, inventory: i64) -> Vec<u8> {
    json!({"productId": id, "name": format!("Product {id}"), "description": "", "price": 19.99, "category": "Electronics",
           "brand": null, "imageUrl": "", "inventory": inventory, "tags": [], "rating": 4.0, "reviewCount": 1})
    .to_string()
    .into_bytes()
}

fn inventory_event(id: &str, before: i64, after: i64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    json!({"productId": id, "productName": format!("Product {id}"), "eventType": "INVENTORY_DECREASED",
           "previousInventory": before, "currentInventory": after, "previousPrice": 19.99, "currentPrice": 19.99,
           "timestamp": now, "changeReason": "Deducted for order", "alertLevel": null,
           "inventoryChange": after - before, "priceChange": 0.0, "critical": false})
    .to_string()
    .into_bytes()
}

const WATCH_TOPICS: [&str; 3] = ["products", "inventory-events", "inventory-alerts"];

#[test]
fn watch_without_a_terminal_prints_one_line_per_change() {
    let (broker, kart) = setup(&WATCH_TOPICS);
    let producer = TestProducer::new(&broker);
    producer.send("products", None, &product("PROD_0001", 10));
    producer.send("products", None, &product("PROD_0002", 50));
    let mut watch = Background::start(&kart, &["-o", "json", "watch"]);
    let mut out = BufReader::new(watch.child.stdout.take().unwrap());
    let mut read_line = || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    // The state once caught up, one line per product, by id.
    let first = read_line();
    assert_eq!(
        (first["productId"].as_str(), first["inventory"].as_i64()),
        (Some("PROD_0001"), Some(10))
    );
    assert_eq!(first["schemaVersion"], 1);
    assert_eq!(read_line()["productId"], "PROD_0002");
    // An order's inventory event: the product's line with the new stock.
    producer.send(
        "inventory-events",
        Some("PROD_0001"),
        &inventory_event("PROD_0001", 10, 8),
    );
    let change = read_line();
    assert_eq!(
        (change["productId"].as_str(), change["inventory"].as_i64()),
        (Some("PROD_0001"), Some(8))
    );
    assert_eq!(change["lastEvent"], "INVENTORY_DECREASED");
    producer.send(
        "inventory-alerts",
        None,
        br#"{"alertType":"LOW_STOCK","productId":"PROD_0001","message":"Low stock: only 8 items remaining","severity":"WARNING","timestamp":4102444800000}"#,
    );
    let alert = read_line();
    assert_eq!(alert["alert"]["alertType"], "LOW_STOCK");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (code, _, stderr) = watch.finish();
    assert_eq!(code, 130, "{stderr}");
}

/// `watch` on a real pseudo-terminal (util-linux `script` provides it): the
/// table is drawn, an inventory event redraws the product's row with the
/// new stock, `q` quits with 0 and the terminal is restored.
#[test]
fn watch_on_a_terminal_redraws_the_row_and_quits_on_q() {
    let (broker, kart) = setup(&WATCH_TOPICS);
    let producer = TestProducer::new(&broker);
    producer.send("products", None, &product("PROD_0001", 10));
    let mut terminal = Terminal::spawn(&kart, &["watch"]);
    terminal.wait_for("PROD_0001", Duration::from_secs(30));
    // Alternate screen on.
    assert!(terminal.seen().contains("\x1b[?1049h"));
    producer.send(
        "inventory-events",
        None,
        &inventory_event("PROD_0001", 10, 7),
    );
    terminal.wait_for("7 (-3)", Duration::from_secs(30));
    terminal.press(b"q");
    assert_eq!(terminal.exit_code(Duration::from_secs(15)), Some(0), "watch did not quit on q with 0");
    // Alternate screen off and the cursor shown again.
    terminal.wait_for("\x1b[?1049l", Duration::from_secs(5));
    terminal.wait_for("\x1b[?25h", Duration::from_secs(5));
}

/// `kart produce`: one record per line (CRLF and blank lines handled,
/// binary-safe), with the key and headers given, from a file or stdin;
/// `tail` reads back exactly what was written.
#[test]
fn produce_writes_one_record_per_line_that_tail_reads_back() {
    let (_broker, kart) = setup(&[EVENTS]);
    let file = kart.write("records.txt", "{\"productId\":\"PROD_0001\"}\r\n\nnot json\n");
    let run = kart.run(&["-o", "json", "produce", EVENTS, "--key", "PROD_0001", "--header", "source=kart", "--header", "q=a=b", "--file", file.to_str().unwrap()]);
    run.ok();
    let report = run.json();
    assert_eq!(report["produced"], 2, "{report}");
    assert_eq!(report["skippedEmptyLines"], 1, "{report}");
    assert_eq!(report["schemaVersion"], 1);

    let mut child = kart.command(&["produce", EVENTS]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"from stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("produced 1 record(s) to inventory-events"), "{}", String::from_utf8_lossy(&out.stdout));

    let tail = kart.run(&["tail", EVENTS, "--from", "beginning", "--until-end", "--format", "json"]);
    tail.ok();
    let records = lines(&tail.stdout);
    assert_eq!(records.len(), 3, "{}", tail.stdout);
    assert_eq!(records[0]["value"], json!({"productId": "PROD_0001"}));
    assert_eq!(records[0]["key"], "PROD_0001");
    assert_eq!(records[0]["headers"], json!([["source", "kart"], ["q", "a=b"]]));
    assert_eq!(records[1]["value"], "not json");
    assert_eq!(records[1]["valueEncoding"], "text");
    assert_eq!(records[2]["value"], "from stdin");
    assert_eq!(records[2]["key"], Value::Null);

    // Bad input says what is wrong and writes nothing.
    let bad = kart.run(&["produce", EVENTS, "--header", "novalue", "--file", file.to_str().unwrap()]);
    bad.code(1);
    assert!(bad.stderr.contains("NAME=VALUE"), "{}", bad.stderr);
    let empty = kart.write("empty.txt", "\n\n");
    kart.run(&["produce", EVENTS, "--file", empty.to_str().unwrap()]).code(1);
    kart.run(&["produce", "no-such-topic", "--file", file.to_str().unwrap()]).code(1);
}
