//! The command line: clap definitions only. Every command and flag has help
//! text; `tests/it/cli.rs` pins all of it with snapshots.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Mode;
use crate::printer::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "kart",
    version,
    about = "Run the KartShoppe workshop (Kafka, Flink, Postgres) from one terminal",
    long_about = "Run the KartShoppe workshop (Kafka, Flink, Postgres) from one terminal.\n\n\
kart starts the workshop's services, creates its topics and database, runs a Rust version of \
the inventory and CDC jobs, deploys Flink jobs, places orders and shows the streams.",
    after_help = "Exit codes: 0 ok, 1 request failed (bad input, not found, rejected, timed out, refused), \
2 infrastructure or usage error, 130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Local services (compose-local.yml) or managed remote Kafka and Postgres
    #[arg(long, global = true, env = "KART_MODE", hide_env_values = true, value_enum, default_value_t = Mode::Local)]
    pub mode: Mode,

    /// Extra env file read after .env.<mode> and .env (repeatable; later wins)
    #[arg(long = "env-file", global = true, value_name = "PATH")]
    pub env_files: Vec<PathBuf>,

    /// Output format: text for people, json for scripts, env where a command offers it
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Print only results and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print more detail about what kart does
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Never use colour (also NO_COLOR)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Answer yes to confirmations (required for destructive actions without a terminal)
    #[arg(long, global = true)]
    pub yes: bool,

    /// Project directory (default: nearest directory upwards with compose-local.yml or .kart/)
    #[arg(long, global = true, env = "KART_PROJECT_DIR", hide_env_values = true, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    /// Deadline for reaching a broker, database, engine or REST endpoint [default: 10s]
    #[arg(long, global = true, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write kart's compose and env files into the project directory (never overwrites)
    Init,
    /// Start, stop, inspect and reset the workshop's services
    #[command(subcommand)]
    Platform(PlatformCommand),
    /// Show the effective settings and where each came from
    Config(ConfigArgs),
    /// Check this machine, the configuration and the services, with a fix for each problem
    Doctor,
    /// Create, list, describe and delete the workshop's Kafka topics
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Create, initialise, inspect and remove the workshop's database
    #[command(subcommand)]
    Db(DbCommand),
    /// Publish the catalog or a product update to product-updates; list current stock
    #[command(subcommand)]
    Products(ProductsCommand),
    /// Produce raw records to a topic, one per line from stdin or a file
    Produce(ProduceArgs),
    /// Deploy, list, inspect and stop the embedded jobs and Flink jobs
    #[command(subcommand)]
    Job(JobCommand),
    /// Place orders like the workshop's checkout, or publish unsent ones
    #[command(subcommand)]
    Order(OrderCommand),
    /// Consume topics and print their records, with jq filters
    Tail(TailArgs),
    /// A live table of products: stock, price, last event, alerts
    Watch,
    /// The whole workshop in one command: platform, inventory job, orders, live stock
    Demo(DemoArgs),
    /// Print shell completions
    Completions(CompletionsArgs),
}

#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// Start the services of the mode, wait until usable, then create topics and init the database
    Start(PlatformStartArgs),
    /// Stop and remove kart's containers or processes (data is kept unless --volumes)
    Stop(PlatformStopArgs),
    /// Every service of the mode: state, health, ports, URLs
    Status(PlatformStatusArgs),
    /// The clean slate: stop jobs, delete topics and groups, tear down the schema, drop the CDC slot, re-init
    Reset,
    /// Show a service's container or process logs
    Logs(PlatformLogsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Docker when an engine answers and every image is present or pullable, else native
    Auto,
    /// Containers through the Docker Engine API
    Docker,
    /// Local processes: Postgres from this machine, tansu as the broker
    Native,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    /// Pull images that are not present
    Missing,
    /// Pull every image, even when present
    Always,
    /// Never pull; fail if an image is missing
    Never,
}

#[derive(Debug, Args)]
pub struct PlatformStartArgs {
    /// Only these services (comma-separated compose service names)
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub services: Vec<String>,
    /// Where the services run
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// When to pull images
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// How long to wait for every service to become ready
    #[arg(long, default_value = "3m", value_name = "DURATION")]
    pub wait_timeout: String,
    /// Do not create topics or initialise the database after starting
    #[arg(long)]
    pub no_init: bool,
}

#[derive(Debug, Args)]
pub struct PlatformStopArgs {
    /// Also delete volumes and data (destructive)
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, Args)]
pub struct PlatformStatusArgs {
    /// With -o env: print passwords instead of a comment naming their source
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, Args)]
pub struct PlatformLogsArgs {
    /// Compose service name (e.g. postgres, redpanda, jobmanager)
    pub service: String,
    /// Keep printing new lines
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines from the end to show first
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// With -o env: print passwords instead of a comment naming their source
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create topics (default: the workshop's set); existing ones are reported, drift is a warning
    Create(TopicsCreateArgs),
    /// List topics with the topic map: what each carries, who writes and reads it
    List,
    /// Delete topics by name, or every non-internal topic with --all (destructive)
    Delete(TopicsDeleteArgs),
    /// Show a topic's partitions and configuration
    Describe(TopicsDescribeArgs),
}

#[derive(Debug, Args)]
pub struct TopicsCreateArgs {
    /// Topic names (default: the workshop's topics and kart's own)
    pub names: Vec<String>,
    /// Partitions per topic [default: 1]
    #[arg(long, value_name = "N")]
    pub partitions: Option<i32>,
    /// Replication factor [default: 1 locally, the cluster's default remotely]
    #[arg(long, value_name = "N")]
    pub replication_factor: Option<i32>,
    /// Topic configuration, e.g. retention.ms=86400000 (repeatable)
    #[arg(long = "config", value_name = "K=V")]
    pub configs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopicsDeleteArgs {
    /// Topics to delete
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every topic except internal ones (__*, _*, instaclustr*)
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct TopicsDescribeArgs {
    /// Topic name
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the database if missing, then initialise it
    Up,
    /// Create tables, indexes, trigger, publication workshop_cdc and seed rows (what is missing)
    Init,
    /// Drop the publication, tables and functions (destructive)
    Teardown,
    /// Drop the database (destructive)
    Down,
    /// Create the database if it does not exist
    CreateDb,
    /// Drop the CDC replication slot (destructive)
    CleanCdc,
    /// Tables and row counts, publication, replication slots and wal_level
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ProductsCommand {
    /// Publish the catalog (kart's, or --file) to product-updates
    Load(ProductsLoadArgs),
    /// Publish one product's new inventory and/or price to product-updates
    Update(ProductsUpdateArgs),
    /// Current stock and prices from the products topic and the latest inventory events
    List,
}

#[derive(Debug, Args)]
pub struct ProductsLoadArgs {
    /// A JSON array of products in the workshop's format
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProductsUpdateArgs {
    /// Product id, e.g. PROD_0001
    pub product: String,
    /// New absolute inventory
    // Negative numbers reach kart's own check (exit 1, with the reason)
    // instead of clap's "unexpected argument '-5'".
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub inventory: Option<i64>,
    /// New price
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub price: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to
    pub topic: String,
    /// Key for every record
    #[arg(long, value_name = "K")]
    pub key: Option<String>,
    /// Header for every record (repeatable)
    #[arg(long = "header", value_name = "K=V")]
    pub headers: Vec<String>,
    /// Read records from this file instead of stdin
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Start an embedded job (inventory, order-cdc) or deploy a Flink jar
    Deploy(JobDeployArgs),
    /// Embedded and Flink jobs in one table
    List(JobListArgs),
    /// One job's state and metrics
    Status(JobNameArgs),
    /// A job's log (the JobManager log for Flink jobs)
    Logs(JobLogsArgs),
    /// Stop a job gracefully; a job that is not running is not an error
    Stop(JobStopArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbeddedJob {
    /// The inventory processor (the workshop's inventory Flink job, in Rust)
    Inventory,
    /// Postgres order_items inserts to order-events (the workshop's CDC job, in Rust)
    OrderCdc,
}

#[derive(Debug, Args)]
pub struct JobDeployArgs {
    /// Embedded job to start (omit with --jar)
    #[arg(required_unless_present = "jar", conflicts_with = "jar")]
    pub job: Option<EmbeddedJob>,
    /// Run attached to this terminal with a live status line
    #[arg(long)]
    pub foreground: bool,
    /// Restart the job if it is running
    #[arg(long)]
    pub replace: bool,
    /// Start from empty state and re-read the bootstrap file (destructive)
    #[arg(long)]
    pub fresh: bool,
    /// Start even if the workshop's Flink inventory job is running
    #[arg(long)]
    pub force: bool,
    /// Flink job jar to upload and run
    #[arg(long, value_name = "PATH", requires = "class")]
    pub jar: Option<PathBuf>,
    /// Main class of the jar
    #[arg(long, value_name = "MAIN")]
    pub class: Option<String>,
    /// Job name used to find it again (default: the main class)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Program argument (repeatable)
    #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Job parallelism
    #[arg(long, value_name = "N")]
    pub parallelism: Option<u32>,
    /// Pass these settings as --kebab-case program arguments (visible in the Flink UI)
    #[arg(long, value_delimiter = ',', value_name = "VAR,…")]
    pub pass_env: Vec<String>,
    /// Start from this savepoint
    #[arg(long, value_name = "PATH")]
    pub savepoint: Option<String>,
    /// JobManager REST endpoint [env: KART_FLINK_URL, default: http://localhost:18081]
    #[arg(long, value_name = "URL")]
    pub flink_url: Option<String>,
    /// Internal: this process is the supervised background copy started by
    /// `job deploy` (skips the liveness checks the deploy already made).
    #[arg(long, hide = true)]
    pub supervised: bool,
}

#[derive(Debug, Args)]
pub struct JobListArgs {
    /// JobManager REST endpoint [env: KART_FLINK_URL, default: http://localhost:18081]
    #[arg(long, value_name = "URL")]
    pub flink_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct JobNameArgs {
    /// Job name (inventory, order-cdc, or a Flink job's name or id)
    pub name: String,
    /// JobManager REST endpoint [env: KART_FLINK_URL, default: http://localhost:18081]
    #[arg(long, value_name = "URL")]
    pub flink_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct JobLogsArgs {
    /// Job name (inventory, order-cdc, or a Flink job's name or id)
    pub name: String,
    /// Keep printing new lines
    #[arg(short, long)]
    pub follow: bool,
    /// JobManager REST endpoint [env: KART_FLINK_URL, default: http://localhost:18081]
    #[arg(long, value_name = "URL")]
    pub flink_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct JobStopArgs {
    /// Job name or Flink job id
    pub name: String,
    /// Flink jobs: stop with a savepoint instead of cancelling
    #[arg(long)]
    pub savepoint: bool,
    /// How long to wait for the job to stop (embedded jobs are killed after it)
    #[arg(long, value_name = "D", default_value = "15s")]
    pub timeout: String,
    /// JobManager REST endpoint [env: KART_FLINK_URL, default: http://localhost:18081]
    #[arg(long, value_name = "URL")]
    pub flink_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Place an order (or many with --count) like the workshop's checkout
    Place(OrderPlaceArgs),
    /// Publish order lines whose events were not sent yet
    Flush,
}

#[derive(Debug, Args)]
pub struct OrderPlaceArgs {
    /// Product to order (with --quantity)
    #[arg(long, value_name = "P", conflicts_with = "items")]
    pub product: Option<String>,
    /// Quantity of --product
    #[arg(long, value_name = "Q", requires = "product", allow_negative_numbers = true)]
    pub quantity: Option<i64>,
    /// An order line PRODUCT:QTY (repeatable; repeated products are merged)
    #[arg(long = "item", value_name = "P:Q")]
    pub items: Vec<String>,
    /// Customer id
    #[arg(long, default_value = "guest", value_name = "C")]
    pub customer: String,
    /// Publish nothing: the CDC job turns the database rows into events
    #[arg(long)]
    pub cdc: bool,
    /// Wait for each line's outcome from the inventory job
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub wait_timeout: String,
    /// Place this many orders (load mode)
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Orders per second in load mode
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Products to pick from in load mode (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "P,…")]
    pub products: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TailFormat {
    /// One coloured line per record
    Pretty,
    /// One JSON object per line (documented schema)
    Json,
    /// The value only
    Raw,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topics to read (several at once)
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Start: end (default) | beginning | -N (last N per partition) | @2026-11-21T10:00:00Z | -5m
    #[arg(long, allow_hyphen_values = true, value_name = "POS")]
    pub from: Option<String>,
    /// Stop (exit 0) at the end offsets seen at start
    #[arg(long)]
    pub until_end: bool,
    /// Print only records for which this jq expression is true (e.g. '.value.productId == "PROD_0001"')
    #[arg(long, value_name = "JQ")]
    pub filter: Option<String>,
    /// Stop (exit 0) after the first record for which this jq expression is true
    #[arg(long, value_name = "JQ")]
    pub until: Option<String>,
    /// Stop (exit 0) after N printed records
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Overall time limit; reaching it exits 1
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Read as this consumer group and commit what was read (default: no group, nothing committed; without --from, resume from the group's offsets)
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// Record format [default: pretty, json with -o json]
    #[arg(long, value_enum)]
    pub format: Option<TailFormat>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the services run
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// No terminal UI; exit 0 only when every step was verified
    #[arg(long)]
    pub ci: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate completions for
    pub shell: clap_complete::Shell,
}
