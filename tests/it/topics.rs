//! `kart topics` against a real broker (a tansu of the test's own).

use std::time::Duration;

use crate::support::{closed_port, redact, Broker, Kart};

const DEFAULT_SET: usize = 19;

fn names(json: &serde_json::Value, status: &str) -> Vec<String> {
    json["topics"]
        .as_array()
        .expect("topics array")
        .iter()
        .filter(|t| status.is_empty() || t["status"] == status)
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn create_list_describe_delete_the_default_set() {
    let broker = Broker::start();
    let kart = Kart::new().with_broker(&broker);

    let first = kart.run(&["-o", "json", "topics", "create"]);
    first.ok();
    let created = names(&first.json(), "created");
    assert_eq!(created.len(), DEFAULT_SET, "{}", first.stdout);
    for expected in ["products", "order-events", "inventory-events", "inventory-alerts", "websocket_fanout", "inventory-dlq", "kart-order-outcomes", "kart-inventory-state"] {
        assert!(created.iter().any(|n| n == expected), "{expected} not created");
    }

    let second = kart.run(&["-o", "json", "topics", "create"]);
    second.ok();
    assert_eq!(names(&second.json(), "exists").len(), DEFAULT_SET, "{}", second.stdout);
    let text = kart.run(&["topics", "create"]);
    text.ok();
    assert!(text.stderr.contains("0 created, 19 already existed"), "{}", text.stderr);

    let list = kart.run(&["-o", "json", "topics", "list"]);
    list.ok();
    let listed = list.json();
    assert_eq!(listed["missing"], serde_json::json!([]));
    let products = listed["topics"].as_array().unwrap().iter().find(|t| t["name"] == "products").expect("products listed");
    assert_eq!(products["writers"], "inventory job");
    let human = kart.run(&["topics", "list"]);
    human.ok();
    assert!(human.stdout.contains("CARRIES") && human.stdout.contains("one order line"), "{}", human.stdout);

    let describe = kart.run(&["-o", "json", "topics", "describe", "kart-inventory-state"]);
    describe.ok();
    let description = describe.json();
    assert_eq!(description["partitions"].as_array().unwrap().len(), 1);
    let compact = description["configs"].as_array().expect("tansu describes configs").iter().any(|c| c["name"] == "cleanup.policy" && c["value"] == "compact");
    assert!(compact, "the state changelog is compacted: {description}");
    let described = kart.run(&["topics", "describe", "order-events"]);
    described.ok();
    assert!(described.stdout.contains("PARTITION"), "{}", described.stdout);
    kart.run(&["topics", "describe", "no-such-topic"]).code(1);

    // Destructive without a terminal and without --yes: refused.
    let refused = kart.run(&["topics", "delete", "--all"]);
    refused.code(1);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);

    // Internal topics survive --all.
    kart.run(&["topics", "create", "__kart_internal", "_schemas"]).ok();
    let deleted = kart.run(&["-o", "json", "--yes", "topics", "delete", "--all"]);
    deleted.ok();
    assert_eq!(names(&deleted.json(), "deleted").len(), DEFAULT_SET, "{}", deleted.stdout);
    let after = kart.run(&["-o", "json", "topics", "list"]);
    let remaining: Vec<String> = after.json()["topics"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    assert!(remaining.contains(&"__kart_internal".to_string()) && remaining.contains(&"_schemas".to_string()), "{remaining:?}");
    assert!(!remaining.iter().any(|n| n == "products"), "{remaining:?}");

    // Deleting what is gone is not an error.
    let again = kart.run(&["-o", "json", "--yes", "topics", "delete", "products"]);
    again.ok();
    assert_eq!(names(&again.json(), "missing"), vec!["products".to_string()]);
}

#[test]
fn flags_set_partitions_and_config_and_drift_is_reported() {
    let broker = Broker::start();
    let kart = Kart::new().with_broker(&broker);
    let run = kart.run(&["-o", "json", "topics", "create", "kart-test-a", "--partitions", "2", "--config", "retention.ms=86400000"]);
    run.ok();
    assert_eq!(names(&run.json(), "created"), vec!["kart-test-a".to_string()]);
    let describe = kart.run(&["-o", "json", "topics", "describe", "kart-test-a"]);
    assert_eq!(describe.json()["partitions"].as_array().unwrap().len(), 2);

    let drift = kart.run(&["topics", "create", "kart-test-a", "--partitions", "3"]);
    drift.ok();
    assert!(drift.stderr.contains("partitions: wanted 3, has 2"), "{}", drift.stderr);

    kart.run(&["topics", "create", "x", "--config", "novalue"]).code(1);
    kart.run(&["topics", "create", "x", "--partitions", "0"]).code(1);
}

#[test]
fn topics_list_json_schema() {
    let broker = Broker::start();
    let kart = Kart::new().with_broker(&broker);
    kart.run(&["topics", "create"]).ok();
    let run = kart.run(&["-o", "json", "topics", "list"]);
    run.ok();
    let text = redact(&run.stdout, &[(&broker.bootstrap(), "<bootstrap>")]);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    insta::assert_json_snapshot!("topics-list-json", json);
}

#[test]
fn an_unreachable_broker_fails_at_the_connect_timeout() {
    let port = closed_port();
    let kart = Kart::new().env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{port}"));
    let run = kart.run(&["--connect-timeout", "2s", "topics", "create"]);
    run.code(2);
    assert!(run.stderr.contains(&format!("127.0.0.1:{port}")), "{}", run.stderr);
    assert!(run.stderr.contains("within 2s"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(run.elapsed >= Duration::from_millis(1500) && run.elapsed < Duration::from_secs(30), "took {:?}", run.elapsed);
}

#[test]
fn remote_mode_with_scram_authentication() {
    let password = "kart-scram-Pa55word";
    let broker = Broker::start_scram("student", password);
    let env_remote = format!(
        "export KAFKA_BOOTSTRAP_SERVERS=\"{}\"\nexport KAFKA_USER=\"student\"\nexport KAFKA_PASSWORD=\"{password}\"\n",
        broker.bootstrap()
    );

    let good = Kart::new();
    good.write(".env.remote", &env_remote);
    let created = good.run(&["--mode", "remote", "-o", "json", "topics", "create", "remote-a"]);
    created.ok();
    assert_eq!(names(&created.json(), "created"), vec!["remote-a".to_string()]);
    good.run(&["--mode", "remote", "topics", "list"]).ok();

    let wrong = "not-the-Pa55word";
    let bad = Kart::new();
    bad.write(".env.remote", &env_remote.replace(password, wrong));
    for extra in [&[][..], &["-v"][..]] {
        let mut args = vec!["--mode", "remote", "--connect-timeout", "5s"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["topics", "list"]);
        let run = bad.run(&args);
        run.code(2);
        assert!(run.stderr.contains("authentication failed"), "{}", run.stderr);
        assert!(run.stderr.contains(&broker.bootstrap()), "{}", run.stderr);
        assert!(run.elapsed < Duration::from_secs(30), "took {:?}", run.elapsed);
        for output in [&run.stdout, &run.stderr] {
            assert!(!output.contains(wrong) && !output.contains(password), "the password was printed:\n{output}");
        }
    }
}
