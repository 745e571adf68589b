//! `kart job deploy --jar` and Flink jobs in `job list|status|logs|stop`,
//! against a real Flink 1.20.1 session cluster (`scripts/services.sh
//! flink-up`, REST on localhost:18581) and test jobs compiled here with
//! `javac` from `tests/flink/`.
//!
//! The cluster is shared by every test: each uses its own job names and
//! project directory, and counts only its own jobs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{redact, unique, Kart};

const HOW_TO_START_FLINK: &str =
    "start it with `bash scripts/services.sh flink-up` (or run `bash scripts/test.sh`)";
const SLEEPER: &str = "kart.testjobs.SleeperJob";
const THROWER: &str = "kart.testjobs.ThrowingJob";
const WORKSHOP_INVENTORY_JOB: &str = "Inventory Management Job WITH ORDER DEDUCTION";

fn flink_url() -> String {
    std::env::var("KART_TEST_FLINK_URL").unwrap_or_else(|_| "http://localhost:18581".into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// GET on the test cluster's REST API.
fn rest(path: &str) -> Value {
    let url = format!("{}{path}", flink_url());
    runtime().block_on(async {
        let response = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the test Flink cluster at {} is not reachable ({e}); {HOW_TO_START_FLINK}",
                    flink_url()
                )
            });
        response
            .json::<Value>()
            .await
            .unwrap_or_else(|e| panic!("{url}: not JSON: {e}"))
    })
}

/// Fails (never skips) when the cluster is not there.
fn require_cluster() {
    let overview = rest("/overview");
    let tms = overview["taskmanagers"].as_u64().unwrap_or(0);
    assert!(
        tms >= 1,
        "the test Flink cluster at {} has no TaskManager ({overview}); {HOW_TO_START_FLINK}",
        flink_url()
    );
}

fn job_state(id: &str) -> String {
    rest(&format!("/jobs/{id}"))["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// The cluster's jobs whose Flink name is `name` and that still run.
fn active_jobs_named(name: &str) -> Vec<String> {
    rest("/jobs/overview")["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| {
            j["name"] == name
                && !matches!(
                    j["state"].as_str(),
                    Some("FINISHED" | "CANCELED" | "FAILED")
                )
        })
        .map(|j| j["jid"].as_str().unwrap().to_string())
        .collect()
}

fn flink_lib() -> PathBuf {
    let cache = std::env::var_os("KART_FLINK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
                });
            base.join("kart/flink")
        });
    let lib = cache.join("flink-1.20.1/lib");
    assert!(
        lib.join("flink-dist-1.20.1.jar").is_file(),
        "Flink's jars are not in {}; {HOW_TO_START_FLINK}",
        lib.display()
    );
    lib
}

/// The test jobs of tests/flink/, compiled once per source version (tests
/// run as separate processes: a file lock keeps them from all compiling).
fn test_jar() -> PathBuf {
    let sources_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flink/kart/testjobs");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&sources_dir)
        .expect("tests/flink sources")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "java"))
        .collect();
    sources.sort();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for source in &sources {
        sha2::Digest::update(&mut hasher, std::fs::read(source).unwrap());
    }
    let hash: String = sha2::Digest::finalize(hasher)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = std::env::temp_dir().join("kart-flink-testjobs").join(&hash);
    let jar = dir.join("kart-test-jobs.jar");
    std::fs::create_dir_all(&dir).unwrap();
    let lock_file = std::fs::File::create(dir.join(".lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock");
    if jar.is_file() {
        return jar;
    }
    let classes = dir.join("classes");
    let status = Command::new("javac")
        .args(["--release", "11", "-nowarn", "-cp"])
        .arg(flink_lib().join("flink-dist-1.20.1.jar"))
        .arg("-d")
        .arg(&classes)
        .args(&sources)
        .status()
        .expect("run javac (Java 17's JDK)");
    assert!(status.success(), "javac failed on tests/flink");
    let tmp = dir.join("building.jar");
    let status = Command::new("jar")
        .arg("cf")
        .arg(&tmp)
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .status()
        .expect("run jar");
    assert!(status.success(), "jar failed");
    std::fs::rename(&tmp, &jar).unwrap();
    jar
}

/// The test jobs in a jar whose content is this test's own (one extra file),
/// so its upload is not shared with other tests.
fn unique_jar(dir: &Path) -> PathBuf {
    let jar = dir.join("own-jobs.jar");
    std::fs::copy(test_jar(), &jar).unwrap();
    let extra = dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("kart-test-id.txt"), unique("id")).unwrap();
    let status = Command::new("jar")
        .arg("uf")
        .arg(&jar)
        .arg("-C")
        .arg(&extra)
        .arg("kart-test-id.txt")
        .status()
        .expect("run jar");
    assert!(status.success());
    jar
}

fn kart() -> Kart {
    Kart::new().env("KART_FLINK_URL", flink_url())
}

fn deploy_sleeper(kart: &Kart, jar: &Path, name: &str, extra: &[&str]) -> crate::support::Run {
    let jar = jar.display().to_string();
    let mut args = vec![
        "-o",
        "json",
        "job",
        "deploy",
        "--jar",
        &jar,
        "--class",
        SLEEPER,
        "--name",
        name,
        "--arg",
        "--job-name",
        "--arg",
        name,
    ];
    args.extend_from_slice(extra);
    kart.run(&args)
}

/// Cancels the test's jobs even when an assertion failed first.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            for id in active_jobs_named(name) {
                let _ = runtime().block_on(async {
                    reqwest::Client::new()
                        .patch(format!("{}/jobs/{id}?mode=cancel", flink_url()))
                        .send()
                        .await
                });
            }
        }
    }
}

#[test]
fn flink_deploy_runs_once_by_name_replaces_and_stops() {
    require_cluster();
    let kart = kart();
    let jar = test_jar();
    let name = unique("kart-sleeper");
    let _cleanup = Cleanup(vec![name.clone()]);

    let first = deploy_sleeper(&kart, &jar, &name, &[]);
    first.ok();
    let report = first.json();
    assert_eq!(report["result"], "started", "{report}");
    assert_eq!(report["state"], "running");
    assert_eq!(report["engine"], "flink");
    let id = report["jobId"].as_str().unwrap().to_string();
    assert!(report["webUrl"].as_str().unwrap().contains(&id), "{report}");
    assert_eq!(job_state(&id), "RUNNING");

    // Visible in `job list`, with the engine column.
    let list = kart.run(&["job", "list"]);
    list.ok();
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{}", list.stdout));
    assert!(
        row.contains("flink") && row.contains("running") && row.contains(&id),
        "{row}"
    );

    // Again: reported, nothing started.
    let again = deploy_sleeper(&kart, &jar, &name, &[]);
    again.ok();
    assert_eq!(again.json()["result"], "already-running");
    assert_eq!(again.json()["jobId"], id.as_str());
    let text = kart.run(&[
        "job",
        "deploy",
        "--jar",
        &jar.display().to_string(),
        "--class",
        SLEEPER,
        "--name",
        &name,
    ]);
    text.ok();
    assert!(
        text.stdout.contains("already running") && text.stdout.contains(&id),
        "{}",
        text.stdout
    );
    assert_eq!(active_jobs_named(&name), vec![id.clone()]);

    // --replace: savepoint, then a new job from it; still one.
    let replaced = deploy_sleeper(&kart, &jar, &name, &["--replace"]);
    replaced.ok();
    let replaced = replaced.json();
    let new_id = replaced["jobId"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(replaced["replaced"][0]["jobId"], id.as_str(), "{replaced}");
    assert_eq!(replaced["replaced"][0]["how"], "stopped", "{replaced}");
    assert!(
        replaced["savepoint"]
            .as_str()
            .is_some_and(|s| s.contains("savepoint")),
        "{replaced}"
    );
    assert_eq!(active_jobs_named(&name), vec![new_id.clone()]);
    assert_eq!(job_state(&id), "FINISHED");

    let status = kart.run(&["-o", "json", "job", "status", &name]);
    status.ok();
    assert_eq!(status.json()["state"], "running");
    assert_eq!(status.json()["jobId"], new_id.as_str());

    // The JobManager's log, which mentions the job.
    let logs = kart.run(&["job", "logs", &name]);
    logs.ok();
    assert!(
        logs.stdout.contains(&new_id),
        "the JobManager log does not mention {new_id}"
    );

    let stop = kart.run(&["job", "stop", &name]);
    stop.ok();
    assert!(stop.stdout.contains("canceled"), "{}", stop.stdout);
    assert_eq!(job_state(&new_id), "CANCELED");
    let again = kart.run(&["-o", "json", "job", "stop", &name]);
    again.ok();
    assert_eq!(again.json()["result"], "not-running");
    let by_id = kart.run(&["job", "stop", &new_id]);
    by_id.ok();
    assert!(by_id.stdout.contains("not running"), "{}", by_id.stdout);
}

#[test]
fn flink_stop_with_savepoint_and_resume_from_it() {
    require_cluster();
    let kart = kart();
    let jar = test_jar();
    let name = unique("kart-savepoint");
    let _cleanup = Cleanup(vec![name.clone()]);
    deploy_sleeper(&kart, &jar, &name, &[]).ok();
    let stop = kart.run(&["-o", "json", "job", "stop", &name, "--savepoint"]);
    stop.ok();
    let stop = stop.json();
    assert_eq!(stop["result"], "stopped", "{stop}");
    let savepoint = stop["savepoint"].as_str().unwrap().to_string();
    let old = stop["jobIds"][0].as_str().unwrap().to_string();
    assert_eq!(job_state(&old), "FINISHED");
    let resumed = deploy_sleeper(&kart, &jar, &name, &["--savepoint", &savepoint]);
    resumed.ok();
    assert_eq!(resumed.json()["savepoint"], savepoint.as_str());
    assert_eq!(resumed.json()["state"], "running");
    kart.run(&["job", "stop", &name]).ok();
}

#[test]
fn flink_same_jar_is_uploaded_once() {
    require_cluster();
    let kart = kart();
    let jar = unique_jar(kart.dir());
    let (a, b) = (unique("kart-upload-a"), unique("kart-upload-b"));
    let _cleanup = Cleanup(vec![a.clone(), b.clone()]);
    let first = deploy_sleeper(&kart, &jar, &a, &[]);
    first.ok();
    assert_eq!(first.json()["uploaded"], true);
    let jar_id = first.json()["jarId"].as_str().unwrap().to_string();
    // Another job from the same jar, from a project that lost its .kart/.
    let other = self::kart();
    let second = deploy_sleeper(&other, &jar, &b, &[]);
    second.ok();
    assert_eq!(second.json()["uploaded"], false);
    assert_eq!(second.json()["jarId"], jar_id.as_str());
    let prefix = jar_id
        .split('_')
        .nth(1)
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_string();
    let copies = rest("/jars")["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"].as_str().unwrap().starts_with(&prefix))
        .count();
    assert_eq!(copies, 1, "the jar {prefix} was uploaded {copies} times");
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(kart.dir().join(".kart/flink/jars.json")).unwrap())
            .unwrap();
    assert_eq!(recorded.as_object().unwrap().len(), 1, "{recorded}");
    kart.run(&["job", "stop", &a]).ok();
    other.run(&["job", "stop", &b]).ok();
}

#[test]
fn flink_main_exception_is_shown_without_wrappers() {
    require_cluster();
    let kart = kart();
    let jar = test_jar().display().to_string();
    let message = format!("kart test refuses to start {}", unique("x"));
    let run = kart.run(&[
        "job", "deploy", "--jar", &jar, "--class", THROWER, "--arg", &message,
    ]);
    run.code(1);
    assert!(
        run.stderr
            .contains(&format!("java.lang.IllegalStateException: {message}")),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("RestHandlerException") && !run.stderr.contains("\tat "),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let wrong = kart.run(&[
        "-o",
        "json",
        "job",
        "deploy",
        "--jar",
        &jar,
        "--class",
        "kart.testjobs.NoSuchJob",
    ]);
    wrong.code(1);
    // Progress lines come first; the error is the last line.
    let last = wrong.stderr.trim().lines().last().unwrap_or("");
    let error: Value = serde_json::from_str(last).unwrap_or_else(|_| panic!("{}", wrong.stderr));
    assert_eq!(error["error"]["code"], "class-not-found");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kart.testjobs.NoSuchJob was not found"),
        "{error}"
    );
}

#[test]
fn flink_job_failing_at_start_shows_its_root_cause() {
    require_cluster();
    let kart = kart();
    let jar = test_jar();
    let name = unique("kart-failing");
    let message = format!("open failed {}", unique("x"));
    let run = deploy_sleeper(
        &kart,
        &jar,
        &name,
        &["--arg", "--fail-in-open", "--arg", &message],
    );
    run.code(1);
    assert!(run.stderr.contains("failed at start"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("IllegalStateException: {message}")),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("NoRestartBackoffTimeStrategy"),
        "{}",
        run.stderr
    );
    let status = kart.run(&["-o", "json", "job", "status", &name]);
    status.ok();
    assert_eq!(status.json()["state"], "failed");
    assert!(
        status.json()["exception"]
            .as_str()
            .unwrap()
            .contains(&message),
        "{}",
        status.stdout
    );
    // Stopping a job that is not running is fine.
    kart.run(&["job", "stop", &name]).ok();
}

#[test]
fn flink_pass_env_passes_settings_and_kart_never_prints_the_password() {
    require_cluster();
    let secret = unique("s3cret");
    let kart = kart()
        .env("KAFKA_BOOTSTRAP_SERVERS", "broker.example:9092")
        .env("POSTGRES_PASSWORD", secret.clone());
    let jar = test_jar();
    let name = unique("kart-passenv");
    let _cleanup = Cleanup(vec![name.clone()]);
    let run = deploy_sleeper(
        &kart,
        &jar,
        &name,
        &[
            "-v",
            "--pass-env",
            "KAFKA_BOOTSTRAP_SERVERS,POSTGRES_PASSWORD",
        ],
    );
    run.ok();
    assert!(
        !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
        "the password was printed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("--postgres-password ***"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("visible in the Flink web UI"),
        "{}",
        run.stderr
    );
    let id = run.json()["jobId"].as_str().unwrap().to_string();
    let config = rest(&format!("/jobs/{id}/config"));
    let user = &config["execution-config"]["user-config"];
    assert_eq!(
        user["kafka-bootstrap-servers"], "broker.example:9092",
        "{config}"
    );
    assert!(user.get("postgres-password").is_some(), "{config}");
    let unknown = kart.run(&[
        "job",
        "deploy",
        "--jar",
        &jar.display().to_string(),
        "--class",
        SLEEPER,
        "--name",
        &name,
        "--pass-env",
        "NO_SUCH_VAR",
    ]);
    unknown.code(1);
    assert!(unknown.stderr.contains("NO_SUCH_VAR"), "{}", unknown.stderr);
    kart.run(&["job", "stop", &name]).ok();
}

#[test]
fn flink_unreachable_jobmanager_fails_fast_naming_the_url() {
    let kart = Kart::new().env("KART_FLINK_URL", "http://127.0.0.1:1");
    let jar = kart.dir().join("job.jar");
    std::fs::write(&jar, b"PK\x03\x04 not really a jar, but it starts like one").unwrap();
    let jar = jar.display().to_string();
    let run = kart.run(&["job", "deploy", "--jar", &jar, "--class", SLEEPER]);
    run.code(2);
    assert!(
        run.elapsed < Duration::from_secs(30),
        "took {:?}",
        run.elapsed
    );
    assert!(
        run.stderr.contains("http://127.0.0.1:1") && run.stderr.contains("within 10s"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("KART_FLINK_URL"), "{}", run.stderr);

    // A JobManager address that accepts connections but never answers: the
    // connect timeout is the deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let run = kart.run(&[
        "--connect-timeout",
        "1s",
        "job",
        "deploy",
        "--jar",
        &jar,
        "--class",
        SLEEPER,
        "--flink-url",
        &url,
    ]);
    run.code(2);
    assert!(
        run.elapsed < Duration::from_secs(30),
        "took {:?}",
        run.elapsed
    );
    assert!(
        run.stderr.contains(&url) && run.stderr.contains("within 1s"),
        "{}",
        run.stderr
    );

    // job list still shows the embedded jobs; a Flink job name cannot be looked up.
    kart.run(&["job", "list"]).ok();
    let status = kart.run(&["job", "status", "0123456789abcdef0123456789abcdef"]);
    status.code(2);
    assert!(
        status.stderr.contains("http://127.0.0.1:1"),
        "{}",
        status.stderr
    );
}

#[test]
fn flink_jar_mistakes_are_the_users_to_fix() {
    let kart = Kart::new().env("KART_FLINK_URL", "http://127.0.0.1:1");
    let missing = kart.run(&[
        "job",
        "deploy",
        "--jar",
        "build/libs/nope-all.jar",
        "--class",
        SLEEPER,
    ]);
    missing.code(1);
    assert!(
        missing.stderr.contains("no jar at build/libs/nope-all.jar"),
        "{}",
        missing.stderr
    );
    let text = kart.write("notes.txt", "not a jar\n");
    let not_jar = kart.run(&[
        "job",
        "deploy",
        "--jar",
        &text.display().to_string(),
        "--class",
        SLEEPER,
    ]);
    not_jar.code(1);
    assert!(
        not_jar.stderr.contains("is not a jar"),
        "{}",
        not_jar.stderr
    );
    let bad_url = kart.run(&[
        "job",
        "deploy",
        "--jar",
        &text.display().to_string(),
        "--class",
        SLEEPER,
        "--flink-url",
        "localhost:8081",
    ]);
    bad_url.code(1);
    assert!(bad_url.stderr.contains("not an http"), "{}", bad_url.stderr);
}

#[test]
fn flink_job_list_json_schema() {
    require_cluster();
    let kart = kart();
    let jar = test_jar();
    let name = unique("kart-list");
    let _cleanup = Cleanup(vec![name.clone()]);
    let deployed = deploy_sleeper(&kart, &jar, &name, &[]);
    deployed.ok();
    let id = deployed.json()["jobId"].as_str().unwrap().to_string();
    let list = kart.run(&["-o", "json", "job", "list"]);
    list.ok();
    let mut value = list.json();
    // Other tests' jobs share the cluster: keep the embedded jobs and ours.
    let jobs = value["jobs"].as_array_mut().unwrap();
    jobs.retain(|j| j["engine"] == "embedded" || j["jobId"] == id.as_str());
    assert_eq!(jobs.len(), 3, "{value}");
    let ours = &value["jobs"][2];
    assert!(
        ours["startedAt"].as_i64().unwrap() > 0 && ours["uptimeMs"].as_i64().is_some(),
        "{ours}"
    );
    let mut ours = ours.clone();
    ours["startedAt"] = Value::from(0);
    ours["uptimeMs"] = Value::from(0);
    value["jobs"][2] = ours;
    let dir = kart.dir().display().to_string();
    let text = redact(
        &value.to_string(),
        &[
            (&dir, "[project]"),
            (&id, "[jobId]"),
            (&name, "[name]"),
            (&flink_url(), "[flinkUrl]"),
        ],
    );
    insta::assert_snapshot!("flink-job-list-json", text);
    kart.run(&["job", "stop", &name]).ok();
}

/// Tests that run a job under the workshop's name take turns: each expects
/// the only such job on the shared cluster to be its own.
fn workshop_name_turn() -> nix::fcntl::Flock<std::fs::File> {
    let path = std::env::temp_dir().join("kart-flink-workshop-name.lock");
    let file = std::fs::File::create(path).expect("lock file");
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock")
}

#[test]
fn flink_workshop_inventory_job_blocks_the_embedded_one_unless_forced() {
    require_cluster();
    let _turn = workshop_name_turn();
    let kart = kart().env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1");
    let jar = test_jar().display().to_string();
    let name = unique("kart-workshop-inventory");
    let _cleanup = Cleanup(vec![WORKSHOP_INVENTORY_JOB.to_string()]);
    kart.run(&[
        "job",
        "deploy",
        "--jar",
        &jar,
        "--class",
        SLEEPER,
        "--name",
        &name,
        "--arg",
        "--job-name",
        "--arg",
        WORKSHOP_INVENTORY_JOB,
    ])
    .ok();
    let refused = kart.run(&["job", "deploy", "inventory"]);
    refused.code(1);
    assert!(
        refused.stderr.contains(WORKSHOP_INVENTORY_JOB)
            && refused.stderr.contains("deduct every order twice"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    // --force goes past the check (and then fails on the closed broker).
    let forced = kart.run(&[
        "--connect-timeout",
        "1s",
        "job",
        "deploy",
        "inventory",
        "--force",
    ]);
    assert!(
        !forced.stderr.contains("deduct every order twice"),
        "{}",
        forced.stderr
    );
    assert!(forced.stderr.contains("127.0.0.1:1"), "{}", forced.stderr);
    kart.run(&["job", "stop", &name]).ok();
    assert!(active_jobs_named(WORKSHOP_INVENTORY_JOB).is_empty());

    // An unreachable JobManager is no reason to refuse.
    let no_flink = Kart::new()
        .env("KART_FLINK_URL", "http://127.0.0.1:1")
        .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1");
    let run = no_flink.run(&["--connect-timeout", "1s", "job", "deploy", "inventory"]);
    assert!(
        !run.stderr.contains("deduct every order twice") && !run.stderr.contains("Flink"),
        "{}",
        run.stderr
    );
    let _ = std::io::stderr().flush();
}

#[test]
fn flink_inventory_jar_warns_while_the_embedded_inventory_job_runs() {
    require_cluster();
    let kart = kart();
    // The embedded job counts as running while its lock is held: this test
    // holds it instead of starting the job (which would need Kafka).
    let supervisor = kart::supervise::Supervisor::new(kart.dir());
    let _lock = supervisor.try_lock("inventory").unwrap().expect("lock");
    let name = unique("kart-inventory-jar");
    let _cleanup = Cleanup(vec![name.clone()]);
    let run = deploy_sleeper(&kart, &test_jar(), &name, &[]);
    run.ok();
    assert!(
        run.stderr.contains("embedded inventory job is running")
            && run.stderr.contains("deduct every order twice"),
        "{}",
        run.stderr
    );
    // A job that is no inventory job deploys without the warning.
    let other = unique("kart-other");
    let _cleanup_other = Cleanup(vec![other.clone()]);
    let quiet = deploy_sleeper(&kart, &test_jar(), &other, &[]);
    quiet.ok();
    assert!(
        !quiet.stderr.contains("deduct every order twice"),
        "{}",
        quiet.stderr
    );
    kart.run(&["job", "stop", &name]).ok();
    kart.run(&["job", "stop", &other]).ok();
}

#[test]
fn flink_doctor_fails_while_the_workshop_job_runs_beside_the_embedded_one() {
    require_cluster();
    let _turn = workshop_name_turn();
    let kart = kart()
        .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env("POSTGRES_PORT", "1");
    let name = unique("kart-doctor-workshop");
    let _cleanup = Cleanup(vec![WORKSHOP_INVENTORY_JOB.to_string()]);
    // A sleeper that calls itself what the workshop's job does.
    let jar = test_jar().display().to_string();
    kart.run(&[
        "job",
        "deploy",
        "--jar",
        &jar,
        "--class",
        SLEEPER,
        "--name",
        &name,
        "--arg",
        "--job-name",
        "--arg",
        WORKSHOP_INVENTORY_JOB,
    ])
    .ok();
    let flink_check = |run: &crate::support::Run| -> Value {
        run.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "flink-inventory")
            .cloned()
            .unwrap_or_else(|| panic!("no flink-inventory check: {}", run.stdout))
    };
    // The Flink job alone is fine.
    let alone = kart.run(&["-o", "json", "--connect-timeout", "2s", "doctor"]);
    let check = flink_check(&alone);
    assert_eq!(check["status"], "ok", "{check:#}");
    // With the embedded job running too (its lock held here), every order
    // would be deducted twice.
    let supervisor = kart::supervise::Supervisor::new(kart.dir());
    let lock = supervisor.try_lock("inventory").unwrap().expect("lock");
    let both = kart.run(&["-o", "json", "--connect-timeout", "2s", "doctor"]);
    both.code(1);
    let check = flink_check(&both);
    assert_eq!(check["status"], "fail", "{check:#}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains(WORKSHOP_INVENTORY_JOB)
            && check["message"]
                .as_str()
                .unwrap()
                .contains("deduct every order twice"),
        "{check:#}"
    );
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("kart job stop inventory"),
        "{check:#}"
    );
    drop(lock);
    kart.run(&["job", "stop", &name]).ok();
    assert!(active_jobs_named(WORKSHOP_INVENTORY_JOB).is_empty());
}
