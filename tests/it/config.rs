//! Configuration from env files, environment and flags, as users meet it.

use crate::support::{redact, Kart};

#[test]
fn config_json_names_every_source() {
    let mut kart = Kart::new();
    kart.write(".env.local", "# mine\nexport POSTGRES_DB=\"shop\"\nexport POSTGRES_USER=\"from_file\"\nexport POSTGRES_PASSWORD=\"s3cret-file\"\n");
    let extra = kart.write("extra.env", "export KART_LOW_STOCK_THRESHOLD=\"7\"\n");
    kart.set_env("POSTGRES_USER", "from_env");
    let run = kart.run(&["-o", "json", "--env-file", extra.to_str().unwrap(), "--connect-timeout", "3s", "config"]);
    run.ok();
    assert!(!run.stdout.contains("s3cret-file"), "a password was printed");
    let dir = kart.dir().display().to_string();
    let text = redact(&run.stdout, &[(&dir, "<project>")]);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    insta::assert_json_snapshot!("config-json", json);
}

#[test]
fn config_text_masks_secrets_and_marks_shadowing() {
    let mut kart = Kart::new();
    kart.write(".env.local", "export POSTGRES_PASSWORD=\"hunter2-local\"\nexport POSTGRES_PORT=\"6543\"\n");
    kart.set_env("POSTGRES_PORT", "7777");
    let run = kart.run(&["config"]);
    run.ok();
    assert!(!run.stdout.contains("hunter2-local") && !run.stderr.contains("hunter2-local"));
    let port_line = run.stdout.lines().find(|l| l.starts_with("POSTGRES_PORT")).expect("port line");
    assert!(port_line.contains("7777") && port_line.contains("environment (overrides") && port_line.contains(".env.local:2"), "{port_line}");

    let env = kart.run(&["-o", "env", "config"]);
    env.ok();
    assert!(env.stdout.contains("export POSTGRES_PORT=\"7777\""));
    assert!(env.stdout.contains("# POSTGRES_PASSWORD omitted"), "{}", env.stdout);
    assert!(!env.stdout.contains("hunter2-local"));
    let shown = kart.run(&["-o", "env", "config", "--show-secrets"]);
    assert!(shown.stdout.contains("export POSTGRES_PASSWORD=\"hunter2-local\""));
}

#[test]
fn a_placeholder_names_the_variable_and_the_file() {
    let kart = Kart::new();
    let path = kart.write(".env.remote", "export KAFKA_BOOTSTRAP_SERVERS=\"[REPLACE_WITH_KAFKA_BOOTSTRAP_SERVERS]\"\n");
    let run = kart.run(&["--mode", "remote", "topics", "list"]);
    run.code(1);
    assert!(run.stderr.contains("KAFKA_BOOTSTRAP_SERVERS"), "{}", run.stderr);
    assert!(run.stderr.contains(&path.display().to_string()), "{}", run.stderr);
    assert!(run.stderr.contains("line 1"), "{}", run.stderr);
}

#[test]
fn a_malformed_env_file_line_names_file_and_line() {
    let kart = Kart::new();
    let path = kart.write(".env", "export A=\"1\"\n\nthis line is broken\n");
    let run = kart.run(&["config"]);
    run.code(1);
    assert!(run.stderr.contains(&path.display().to_string()) && run.stderr.contains("line 3"), "{}", run.stderr);
}

#[test]
fn a_remote_looking_env_draws_a_warning_in_local_mode() {
    let kart = Kart::new();
    kart.write(".env", "export KAFKA_USER=\"[REPLACE_WITH_KAFKA_USER]\"\n");
    let run = kart.run(&["config"]);
    run.ok();
    assert!(run.stderr.contains("warning:") && run.stderr.contains("remote"), "{}", run.stderr);
}

#[test]
fn a_bad_connect_timeout_is_a_user_error() {
    let run = Kart::new().run(&["--connect-timeout", "soon", "config"]);
    run.code(1);
    assert!(run.stderr.contains("KART_CONNECT_TIMEOUT"), "{}", run.stderr);
}
