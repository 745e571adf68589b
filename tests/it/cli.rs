//! The command line as users see it: help text, usage errors, exit codes and
//! the JSON error contract.

use clap::CommandFactory;
use kart::cli::Cli;

use crate::support::Kart;

/// Every command's --help, pinned: a change to the interface shows up in review.
#[test]
fn help_of_every_command() {
    fn walk(cmd: &mut clap::Command, path: Vec<String>, out: &mut Vec<(String, String)>) {
        let name = path.join(" ");
        let help = cmd.render_long_help().to_string();
        out.push((name, help));
        let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
        for sub in subs {
            let mut child = cmd.find_subcommand_mut(&sub).expect("subcommand").clone();
            let mut next = path.clone();
            next.push(sub);
            walk(&mut child, next, out);
        }
    }
    let mut root = Cli::command();
    root.build();
    let mut helps = Vec::new();
    walk(&mut root, vec!["kart".into()], &mut helps);
    assert!(helps.len() >= 40, "expected the whole tree, got {}", helps.len());
    for (name, help) in helps {
        assert!(!help.trim().is_empty(), "{name} has no help");
        insta::assert_snapshot!(format!("help-{}", name.replace(' ', "-")), help);
    }
}

#[test]
fn every_command_and_argument_has_help_text() {
    fn check(cmd: &clap::Command, path: &str) {
        for arg in cmd.get_arguments() {
            if ["help", "version"].contains(&arg.get_id().as_str()) {
                continue;
            }
            assert!(arg.get_help().is_some(), "{path} --{} has no help text", arg.get_id());
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            assert!(sub.get_about().is_some(), "{path} {} has no help text", sub.get_name());
            check(sub, &format!("{path} {}", sub.get_name()));
        }
    }
    let mut root = Cli::command();
    root.build();
    check(&root, "kart");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let kart = Kart::new();
    kart.run(&["topics", "frobnicate"]).code(2);
    kart.run(&["order", "place", "--quantity", "2"]).code(2);
    let help = kart.run(&["--help"]);
    help.code(0);
    assert!(help.stdout.contains("Usage: kart"));
    kart.run(&["--version"]).code(0);
}

#[test]
fn json_errors_are_one_line_on_stderr_and_stdout_stays_empty() {
    let kart = Kart::new().env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1");
    let run = kart.run(&["-o", "json", "--connect-timeout", "1s", "topics", "list"]);
    run.code(2);
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {}", run.stderr);
    let error: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON error line");
    assert_eq!(error["error"]["code"], "kafka-unreachable");
    assert!(error["error"]["message"].as_str().unwrap().contains("127.0.0.1:1"));
    assert!(error["error"]["hint"].is_string());
}

#[test]
fn completions_are_generated() {
    let run = Kart::new().run(&["completions", "bash"]);
    run.ok();
    assert!(run.stdout.contains("kart"));
}

#[test]
fn init_writes_the_project_files_without_overwriting() {
    let kart = Kart::new();
    kart.write(".env.local", "export POSTGRES_DB=\"mine\"\n");
    let run = kart.run(&["-o", "json", "init"]);
    run.ok();
    let json = run.json();
    let created: Vec<String> = serde_json::from_value(json["created"].clone()).unwrap();
    let skipped: Vec<String> = serde_json::from_value(json["skipped"].clone()).unwrap();
    assert!(created.contains(&"compose-local.yml".to_string()), "{created:?}");
    assert_eq!(skipped, vec![".env.local".to_string()]);
    assert_eq!(std::fs::read_to_string(kart.dir().join(".env.local")).unwrap(), "export POSTGRES_DB=\"mine\"\n");
    for file in ["compose-local.yml", "compose-remote.yml", ".env.remote", "licence.env.example", ".gitignore"] {
        assert!(kart.dir().join(file).is_file(), "{file} missing");
    }
    // Running it again changes nothing.
    let again = kart.run(&["-o", "json", "init"]);
    again.ok();
    assert_eq!(again.json()["created"], serde_json::json!([]));
}
