//! The `berth` command line. It sits on top of everything else: it parses arguments, calls
//! the model and the store, and prints. Errors end here, as one line on stderr and a non-zero
//! exit code.
//!
//! A closed stdout or stderr (`berth status | head -3`, a daemon whose terminal went away)
//! is never an error: a daemon keeps running and writes nothing there (see [`Forgiving`] and
//! `say!`), and a one-shot command ends quietly with status 141, as a program killed by
//! SIGPIPE would (kubectl's behaviour).

/// `eprintln!` that cannot fail: a line for the person watching, dropped when stderr is
/// closed (`eprintln!` panics there, which would take a daemon down with its terminal).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod apply;
mod attribute;
mod chart;
mod cluster;
mod console;
mod edit;
mod rollout;
mod show;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::model::Bundle;
use crate::model::manifest::{self, Parsed};
use crate::store::{DEFAULT_ENDPOINT, DEFAULT_PREFIX, Store, StoreConfig};

/// berth: Pacemaker container bundles on plain Docker hosts, with desired state in etcd.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Log lines on stderr as text or as one JSON object each (for log collectors).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "BERTH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Where a daemon serves Prometheus metrics, /healthz and /readyz.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Address for /metrics, /healthz and /readyz (loopback by default: other hosts
    /// reach it only when you choose an address they can reach).
    #[arg(long, value_name = "ADDR")]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Serve no metrics or health endpoints.
    #[arg(long, conflicts_with = "metrics_address")]
    pub no_metrics: bool,
}

/// The default metrics address of `berth controller`; `berth node` (and `berth up`) use the
/// next port.
pub const CONTROLLER_METRICS: &str = "127.0.0.1:9461";
pub const NODE_METRICS: &str = "127.0.0.1:9462";

impl MetricsArgs {
    /// The address to serve on, or None (`--no-metrics`); `default` when none is given.
    fn address_or(&self, default: &str) -> Option<std::net::SocketAddr> {
        if self.no_metrics {
            return None;
        }
        Some(
            self.metrics_address
                .unwrap_or_else(|| default.parse().expect("a valid default address")),
        )
    }

    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.address_or(CONTROLLER_METRICS)
    }

    pub fn node_address(&self) -> Option<std::net::SocketAddr> {
        self.address_or(NODE_METRICS)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where etcd is, and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma separated (host:port or URL).
    #[arg(long = "etcd", env = "BERTH_ETCD", default_value = DEFAULT_ENDPOINT, global = true)]
    pub endpoints: String,
    /// Key prefix under which berth keeps everything.
    #[arg(long, env = "BERTH_PREFIX", default_value = DEFAULT_PREFIX, global = true)]
    pub prefix: String,
    /// etcd user (its password from BERTH_ETCD_PASSWORD or --etcd-password-file).
    #[arg(long, env = "BERTH_ETCD_USER", global = true)]
    pub etcd_user: Option<String>,
    /// The etcd password, from the environment only: a password on the command line is
    /// visible to every user of the host (ps, /proc).
    #[arg(skip = std::env::var("BERTH_ETCD_PASSWORD").ok())]
    pub etcd_password: Option<String>,
    /// A file holding the etcd password (its first line).
    #[arg(long, env = "BERTH_ETCD_PASSWORD_FILE", global = true)]
    pub etcd_password_file: Option<PathBuf>,
    /// CA certificate (PEM) for TLS to etcd.
    #[arg(long, env = "BERTH_ETCD_CA", global = true)]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for TLS to etcd.
    #[arg(long, env = "BERTH_ETCD_CERT", global = true)]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for TLS to etcd.
    #[arg(long, env = "BERTH_ETCD_KEY", global = true)]
    pub etcd_key: Option<PathBuf>,
}

impl EtcdArgs {
    /// The store configuration these flags describe.
    pub fn config(&self) -> Result<StoreConfig> {
        let password = match (&self.etcd_password_file, &self.etcd_password) {
            (Some(f), _) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("--etcd-password-file {}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            (None, p) => p.clone(),
        };
        let user = match (&self.etcd_user, password) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (None, None) => None,
            (Some(_), None) => {
                bail!("--etcd-user needs a password: BERTH_ETCD_PASSWORD or --etcd-password-file")
            }
            (None, Some(_)) => bail!("an etcd password needs --etcd-user"),
        };
        Ok(StoreConfig {
            user,
            ca_file: self.etcd_ca.clone(),
            cert_file: self.etcd_cert.clone(),
            key_file: self.etcd_key.clone(),
            ..StoreConfig::default()
        }
        .with_endpoints(&self.endpoints)
        .with_prefix(&self.prefix))
    }

    async fn store(&self) -> Result<Store> {
        let cfg = self.config()?;
        Ok(Store::connect(&cfg).await?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update bundles from manifests (YAML, JSON or Pacemaker XML).
    Apply(ApplyArgs),
    /// List bundles, or show one.
    Get(GetArgs),
    /// Show one bundle in detail.
    Describe {
        /// `bundle`.
        kind: Kind,
        name: String,
    },
    /// Delete bundles by name or by manifest. Host directories are never touched.
    Delete(DeleteArgs),
    /// Stream every change under the prefix, one line per change.
    Watch {
        /// Output: text lines, or one JSON object per line.
        #[arg(short, long, value_enum, default_value = "text")]
        output: WatchOutput,
    },
    /// Pacemaker CIB XML: import to manifests, export stored bundles.
    #[command(subcommand)]
    Cib(CibCommand),
    /// Run the node agent: converge this host's container engine to its assignments.
    Node(NodeArgs),
    /// Helm-style charts: template, install, upgrade, rollback, uninstall, list, history.
    #[command(subcommand)]
    Chart(chart::ChartCommand),
    /// Run a controller (one leads through an etcd election, the others stand by).
    Controller {
        /// Name in the election (default: host name and pid).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        metrics: MetricsArgs,
        /// Serve the web console on this address too (as `berth console`).
        #[arg(long, value_name = "ADDR")]
        console: Option<std::net::SocketAddr>,
        #[command(flatten)]
        console_options: console::ConsoleOptions,
    },
    /// The web console: the cluster live in a browser, with the everyday actions (each
    /// needs a token from --console-token-file). Loopback only unless given TLS and a token.
    Console {
        /// Where to serve it.
        #[arg(long, default_value = console::CONSOLE_ADDRESS)]
        address: std::net::SocketAddr,
        #[command(flatten)]
        options: console::ConsoleOptions,
    },
    /// Show the cluster the way crm_mon does: nodes, bundles, replicas.
    Status,
    /// Read, set or delete a node attribute, a transient one, a cluster property or a
    /// promotion score (crm_attribute's flags; without --name, list them).
    Attribute(attribute::AttributeArgs),
    /// Put a node in standby (pcs node standby): no replica runs there, and those it has
    /// move to other nodes. Its agent keeps running.
    Standby { node: String },
    /// Take a node out of standby (pcs node unstandby).
    Unstandby { node: String },
    /// Keep a bundle off a node (crm_resource --ban): its replicas there move elsewhere,
    /// until `berth clear`.
    Ban { bundle: String, node: String },
    /// Send one of a bundle's replicas to a node (crm_resource --move): a preference that
    /// moves it there and keeps it there, until `berth clear`.
    Move { bundle: String, node: String },
    /// Remove the bans `berth ban` and the preference `berth move` set on a bundle
    /// (crm_resource --clear).
    Clear { bundle: String },
    /// Set a bundle's number of replicas (kubectl scale): a new generation, rolled out.
    Scale {
        /// `bundle`.
        kind: Kind,
        name: String,
        #[arg(long)]
        replicas: u32,
    },
    /// Let a bundle run again (crm resource start, pcs resource enable): removes its
    /// target-role meta attribute.
    Start { bundle: String },
    /// Stop a bundle's replicas and keep them stopped (crm resource stop, pcs resource
    /// disable): sets its target-role meta attribute to Stopped.
    Stop { bundle: String },
    /// Forget a bundle's failures so far and try its replicas again (crm_resource
    /// --cleanup): fail counts, migration-threshold bans, restart backoff.
    Cleanup { bundle: String },
    /// Events (what happened to bundles, replicas and nodes, and why), oldest first; they
    /// expire 50 to 60 minutes after their last write.
    Events {
        /// Only these: `bundle/NAME` (with its replicas), `replica/NAME`, `node/NAME`, or
        /// a bundle's name.
        object: Option<String>,
        /// Then print each new or repeated event as it is written.
        #[arg(short, long)]
        watch: bool,
    },
    /// What applying manifests or losing nodes would do (start, stop, move, replace,
    /// promote), from the live cluster and the controller's own placement; writes nothing.
    Plan {
        /// Manifests as `apply -f` takes them.
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// A node to take as lost (repeatable).
        #[arg(long = "node-down", value_name = "NAME")]
        node_down: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completion { shell: clap_complete::Shell },
    /// Write man pages (berth.1 and one per command) into a directory.
    Man {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// A bundle's rollout: status, pause, resume, undo, history (as kubectl rollout).
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// The remote agent: supervise a bundle's primitive inside its container (as PID 1).
    Remote {
        /// The JSON file naming the primitive to supervise (written by the node agent).
        #[arg(long)]
        config: PathBuf,
        /// Run this one action (start, stop, monitor, promote, demote, notify, meta-data,
        /// validate-all) with the environment supervision gives it, print its output and exit
        /// with its exit code, instead of supervising.
        #[arg(long)]
        action: Option<String>,
    },
    /// The node's watchdog (started by `berth node`): fences the node when its agent stops
    /// vouching for it (killed, stopped, cut off from etcd).
    #[command(hide = true)]
    Watchdog {
        /// The node agent's state directory (the socket `watchdog.sock` is made there).
        #[arg(long)]
        state_dir: PathBuf,
        /// The node's cgroup parent (`/berth/<node>`); without it only addresses are dropped.
        #[arg(long)]
        scope: Option<String>,
        /// How long a freeze waits for the agent to thaw it before it kills.
        #[arg(long, default_value = "60s")]
        freeze_for: String,
    },
    /// Everything on this host for a first run: etcd (reused when one answers), a
    /// controller and a node agent; applies the manifests given and waits for them.
    Up {
        /// Manifests to apply once up.
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// This node's name (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// etcd data (when berth up starts it) and node state.
        #[arg(long, default_value = "/var/lib/berth/up")]
        data_dir: PathBuf,
        /// One server for the controller's and the node's metrics (the node's address).
        #[command(flatten)]
        metrics: MetricsArgs,
        /// Serve the web console on this address too (as `berth console`).
        #[arg(long, value_name = "ADDR")]
        console: Option<std::net::SocketAddr>,
        #[command(flatten)]
        console_options: console::ConsoleOptions,
    },
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's name (default: the host name).
    #[arg(long, env = "BERTH_NODE_NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// A node label, key=value (repeatable); placement can select on labels.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Registration lease TTL (whole seconds; Pacemaker time syntax: 5s, 10). The node
    /// fences itself two thirds of it after its last renewal; its replicas move elsewhere
    /// once it has passed.
    #[arg(long, default_value = "5s")]
    pub lease_ttl: String,
    /// What Ctrl-C or SIGTERM does with this node's replicas: drain (stop them, then leave;
    /// they move elsewhere) or maintenance (leave them running, unsupervised; the controller
    /// keeps them here until the agent is back). SIGUSR2 always stops in maintenance (a
    /// package upgrade sends it; the next agent adopts the replicas).
    #[arg(long, value_enum, default_value = "drain")]
    pub on_stop: crate::node::config::OnStop,
    /// How long replicas fenced for a lease that could not be renewed stay frozen, waiting
    /// for the lease to come back (etcd out of reach), before they are killed; 0 kills at
    /// the fence. Longer rides out longer etcd outages without a restart.
    #[arg(long, default_value = "60s")]
    pub freeze_for: String,
    /// Per-replica state files (default `/var/lib/berth/node/<name>`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The engine's API socket: unix:///var/run/docker.sock (default), or podman's
    /// Docker-compatible socket, unix:///run/podman/podman.sock.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// The berth binary to mount into containers as their remote agent (default: this
    /// executable). Give a statically linked build when this one is not, so that it runs in
    /// images without this host's C library.
    #[arg(long)]
    pub remote_binary: Option<PathBuf>,
    /// Copy the remote-agent binary into `<state-dir>/.bin/berth` at start and mount that
    /// copy: for an agent run in a container, whose own files are not the host's (berth's
    /// image sets it).
    #[arg(long, env = "BERTH_COPY_REMOTE_BINARY")]
    pub copy_remote_binary: bool,
    /// Host policy: let bundles run privileged (`--privileged`, unconfined security
    /// options). Off by default.
    #[arg(long)]
    pub allow_privileged: bool,
    /// Host policy: let bundles use the host's namespaces (network `host`).
    #[arg(long)]
    pub allow_host_namespaces: bool,
    /// Host policy: let bundles map host devices (`--device`).
    #[arg(long)]
    pub allow_devices: bool,
    /// Host policy: let bundles add capabilities (`--cap-add`).
    #[arg(long)]
    pub allow_capabilities: bool,
    /// Host policy: a host directory prefix storage mappings may use (repeatable; replaces
    /// the default /srv and /var/log/pacemaker).
    #[arg(long = "allow-source-dir", value_name = "PREFIX")]
    pub allow_source_dirs: Vec<String>,
}

/// Resource kinds the CLI knows.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    #[value(alias = "bundles", alias = "b")]
    Bundle,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory of them (*.yaml, *.yml, *.json, *.xml), or - for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until the bundles have converged (every replica ready) or failed.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (Pacemaker time syntax).
    #[arg(long, default_value = "5m")]
    pub timeout: String,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// `bundles`.
    pub kind: Kind,
    /// One bundle; all when left out.
    pub name: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum)]
    pub output: Option<Output>,
    /// After listing, print a row each time a bundle or its status changes.
    #[arg(short, long)]
    pub watch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Wide,
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// `bundle`, when deleting by name.
    pub kind: Option<Kind>,
    pub names: Vec<String>,
    /// Delete the bundles these manifests name.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// A bundle that is not there is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Debug, Subcommand)]
pub enum CibCommand {
    /// Print the manifests of the bundles in a CIB or `<bundle>` file (- for stdin).
    Import {
        file: String,
        #[arg(short, long, value_enum, default_value = "yaml")]
        output: ImportOutput,
    },
    /// Print stored bundles (or the bundles of manifest files) as Pacemaker XML.
    Export {
        /// Bundles to export; all when left out.
        names: Vec<String>,
        /// Read manifests from these files instead of etcd.
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        /// Print `<bundle>` fragments instead of a whole `<cib>`.
        #[arg(long)]
        fragment: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportOutput {
    Yaml,
    Json,
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    // Run as crm_attribute, crm_master or crm_node (inside a container): those tools.
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let tool = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if crate::remote::attrs::is_tool(tool) {
        let code = crate::remote::attrs::main(tool, &args.collect::<Vec<_>>());
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written is dropped; reporting that on the same closed
        // stderr would panic.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing to say, and no one to say it to.
        Err(e) if closed_pipe(&e) => ExitCode::from(141),
        // An outcome with an exit code of its own (crm_attribute's 105 for no such
        // attribute).
        Err(e) if e.downcast_ref::<Exit>().is_some() => {
            let exit = e.downcast_ref::<Exit>().expect("checked");
            say!("{}", exit.message);
            ExitCode::from(exit.code)
        }
        Err(e) => {
            say!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An error that ends the command with an exit code of its own (Pacemaker's, where a
/// command mirrors one of its tools).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Whether `e` comes from writing to a pipe whose reader is gone.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A writer for what a person reads in a terminal: control characters other than newline
/// and tab (an escape sequence that clears the screen or sets the title, a carriage return
/// that hides what came before) are written escaped (`\x1b`, `\u{9b}`), as kubectl does with
/// what containers said. Agents' output and reasons reach `status`, `describe`, `get` and
/// `events` from containers, which are untrusted.
pub struct Escaped<W> {
    inner: W,
}

impl<W: std::io::Write> Escaped<W> {
    pub fn new(inner: W) -> Escaped<W> {
        Escaped { inner }
    }
}

/// `text` with control characters (but newline and tab) escaped; see [`Escaped`].
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let control = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !control(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

impl<W: std::io::Write> std::io::Write for Escaped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // What berth formats arrives as whole UTF-8 pieces; anything else is written lossily.
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(escape_controls(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A writer for a daemon's own output: once a write fails (stdout closed), everything after
/// it is dropped and reported as written, so a closed pipe never stops the daemon.
pub struct Forgiving<W> {
    inner: W,
    broken: bool,
}

impl<W: std::io::Write> Forgiving<W> {
    pub fn new(inner: W) -> Forgiving<W> {
        Forgiving {
            inner,
            broken: false,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Forgiving<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.broken && self.inner.write_all(buf).is_err() {
            self.broken = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.broken && self.inner.flush().is_err() {
            self.broken = true;
        }
        Ok(())
    }
}

async fn run(cli: Cli) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    match cli.command {
        Command::Chart(cmd) => {
            let etcd = cli.etcd.clone();
            chart::run(cmd, async || etcd.store().await, out).await
        }
        Command::Completion { shell } => {
            // Into memory first: the generator panics on a write error (a closed pipe).
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut buf);
            std::io::Write::write_all(out, &buf)?;
            Ok(())
        }
        Command::Man { dir } => man_pages(&dir, out),
        Command::Remote { config, action } => remote(&config, action.as_deref()).await,
        Command::Watchdog {
            state_dir,
            scope,
            freeze_for,
        } => watchdog(state_dir, scope, &freeze_for).await,
        Command::Up {
            files,
            name,
            data_dir,
            metrics,
            console,
            console_options,
        } => {
            let console = console.map(|addr| (addr, console_options));
            let metrics = metrics.node_address();
            cluster::up(&cli.etcd, files, name, data_dir, metrics, console).await
        }
        Command::Cib(CibCommand::Import { file, output }) => show::cib_import(&file, output, out),
        Command::Cib(CibCommand::Export {
            names,
            files,
            fragment,
        }) => cib_export(&cli.etcd, &names, &files, fragment, out).await,
        cmd => on_cluster(cli.etcd.store().await?, cmd, out).await,
    }
}

/// The commands that read or change the cluster's state in etcd, on `store`.
async fn on_cluster(store: Store, cmd: Command, out: &mut std::io::StdoutLock<'_>) -> Result<()> {
    match cmd {
        Command::Apply(args) => apply::apply(&store, &args, out).await,
        Command::Get(args) => show::get(&store, &args, &mut Escaped::new(out)).await,
        Command::Describe {
            kind: Kind::Bundle,
            name,
        } => show::describe(&store, &name, &mut Escaped::new(out)).await,
        Command::Delete(args) => apply::delete(&store, &args, out).await,
        Command::Watch { output } => show::watch(&store, output, out).await,
        Command::Node(args) => node(store, args).await,
        Command::Controller {
            name,
            metrics,
            console,
            console_options,
        } => {
            let console = console.map(|addr| (addr, console_options));
            cluster::controller(store, name, metrics.address(), console).await
        }
        Command::Console { address, options } => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            console::serve(store, address, &options, shutdown).await
        }
        Command::Attribute(args) => attribute::run(&store, &args, &mut Escaped::new(out)).await,
        Command::Status => cluster::status(&store, &mut Escaped::new(out)).await,
        Command::Standby { node } => cluster::standby(&store, &node, true, out).await,
        Command::Ban { bundle, node } => {
            let change = cluster::BanChange::Ban(&node);
            cluster::ban(&store, &bundle, change, out).await
        }
        Command::Move { bundle, node } => {
            let change = cluster::BanChange::Move(&node);
            cluster::ban(&store, &bundle, change, out).await
        }
        Command::Clear { bundle } => {
            let change = cluster::BanChange::Clear;
            cluster::ban(&store, &bundle, change, out).await
        }
        Command::Cleanup { bundle } => cluster::cleanup(&store, &bundle, out).await,
        Command::Scale {
            kind: Kind::Bundle,
            name,
            replicas,
        } => edit::scale(&store, &name, replicas, out).await,
        Command::Start { bundle } => edit::target_role(&store, &bundle, true, out).await,
        Command::Stop { bundle } => edit::target_role(&store, &bundle, false, out).await,
        Command::Unstandby { node } => cluster::standby(&store, &node, false, out).await,
        Command::Events { object, watch } => {
            let out = &mut Escaped::new(out);
            show::events(&store, object.as_deref(), watch, out).await
        }
        Command::Plan { files, node_down } => cluster::plan(&store, &files, &node_down, out).await,
        Command::Rollout(cmd) => rollout::run(&store, cmd, &mut Escaped::new(out)).await,
        other => anyhow::bail!("{other:?}: not a command on the cluster's state"),
    }
}

/// `berth watchdog`: the process that fences this node's replicas if the agent dies.
async fn watchdog(
    state_dir: std::path::PathBuf,
    scope: Option<String>,
    freeze_for: &str,
) -> Result<()> {
    let freeze_for = crate::model::duration::parse(freeze_for)
        .map_err(|e| anyhow::anyhow!("--freeze-for: {e}"))?;
    let scope = match scope {
        Some(s) => Some(
            crate::node::fence::Scope::for_parent(&s)
                .with_context(|| format!("--scope {s}: no cgroup hierarchy to fence in"))?,
        ),
        None => None,
    };
    // The agent's terminal is not the watchdog's: it stops only when told.
    use tokio::signal::unix::{SignalKind, signal};
    let _hup = signal(SignalKind::hangup());
    let _int = signal(SignalKind::interrupt());
    crate::node::watchdog::serve(crate::node::watchdog::WatchdogConfig {
        state_dir,
        scope,
        freeze_for,
    })
    .await
    .context("watchdog")
}

/// `berth cib export`: stored bundles (or those in manifest files) as CIB XML.
async fn cib_export(
    etcd: &EtcdArgs,
    names: &[String],
    files: &[String],
    fragment: bool,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let bundles = if files.is_empty() {
        let store = etcd.store().await?;
        show::stored(&store, names).await?
    } else {
        let mut b = read_manifests(files)?.bundles;
        b.retain(|b| names.is_empty() || names.iter().any(|n| n == b.name()));
        b
    };
    show::cib_export(&bundles, fragment, out)
}

async fn node(store: Store, args: NodeArgs) -> Result<()> {
    use crate::node::{NodeConfig, engine::DockerEngine};
    let name = match args.name {
        Some(n) => n,
        None => cluster::hostname().context("give --name")?,
    };
    let mut cfg = NodeConfig::new(&name);
    cfg.metrics = args.metrics.node_address();
    cfg.permits.privileged = args.allow_privileged;
    cfg.permits.host_namespaces = args.allow_host_namespaces;
    cfg.permits.devices = args.allow_devices;
    cfg.permits.capabilities = args.allow_capabilities;
    if !args.allow_source_dirs.is_empty() {
        for p in &args.allow_source_dirs {
            anyhow::ensure!(
                p.starts_with('/') && !p.split('/').any(|s| s == ".."),
                "--allow-source-dir {p}: must be an absolute path without '..'"
            );
        }
        cfg.permits.source_dirs = args.allow_source_dirs.clone();
    }
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l}: expected key=value"))?;
        cfg.labels.insert(k.to_string(), v.to_string());
    }
    cfg.lease_ttl = crate::model::duration::parse(&args.lease_ttl)
        .map_err(|e| anyhow::anyhow!("--lease-ttl: {e}"))?;
    anyhow::ensure!(
        !cfg.lease_ttl.is_zero() && cfg.lease_ttl.subsec_nanos() == 0,
        "--lease-ttl {}: must be a whole number of seconds, at least 1 (etcd grants whole seconds)",
        args.lease_ttl
    );
    cfg.freeze_for = crate::model::duration::parse(&args.freeze_for)
        .map_err(|e| anyhow::anyhow!("--freeze-for: {e}"))?;
    cfg.on_stop = args.on_stop;
    if let Some(d) = args.state_dir {
        cfg.state_dir = d;
    }
    if let Some(bin) = args.remote_binary {
        anyhow::ensure!(
            bin.is_file(),
            "--remote-binary {}: no such file",
            bin.display()
        );
        cfg.remote_binary = Some(bin);
    }
    cfg.install_remote_binary = args.copy_remote_binary;
    let engine = DockerEngine::connect(args.docker_host.as_deref()).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tokio::spawn(maintenance_on_signal(
        cfg.maintenance_on_stop.clone(),
        shutdown.clone(),
    ));
    say!(
        "berth node {name}: running (etcd {}); Ctrl-C stops",
        store.endpoints()
    );
    crate::node::run(store, engine, cfg, shutdown).await?;
    Ok(())
}

/// `berth remote`: supervises the primitive until SIGTERM/SIGINT, then exits with the
/// supervisor's code (see `remote::supervisor::exit`).
async fn remote(config: &std::path::Path, action: Option<&str>) -> Result<()> {
    use crate::remote::{ocf::Action, reaper::Reaper, supervisor};
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("{}: cannot read", config.display()))?;
    let cfg: crate::model::remote::RemoteConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a remote agent configuration", config.display()))?;
    let reaper = Reaper::global();
    if let Some(name) = action {
        let action = Action::parse(name).with_context(|| {
            let all: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            format!("--action {name}: not an OCF action ({})", all.join(", "))
        })?;
        let o = supervisor::run_once(&cfg, reaper, action).await?;
        print!("{}", o.output);
        say!("{}: {} ({})", action.as_str(), o.rc.name(), o.rc.code());
        // The agent's exit code; a timeout or a signal counts as a generic error.
        std::process::exit(match o.rc.code() {
            c if c >= 0 => c.min(255),
            _ => 1,
        });
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let state = std::sync::Arc::new(supervisor::Shared::new(cfg.state_file.clone()));
    if cfg.control_socket.is_some() || cfg.control_port.is_some() {
        use crate::remote::channel;
        let file = cfg
            .authkey_file
            .as_ref()
            .context("a control channel needs authkeyFile")?;
        let key = std::fs::read_to_string(file)
            .with_context(|| format!("{}: cannot read the authkey", file.display()))?
            .trim()
            .to_string();
        anyhow::ensure!(!key.is_empty(), "{}: empty authkey", file.display());
        // The tools' way to the cluster's attributes: a node agent polls the channel.
        if let (Some(file), Some(node)) = (&cfg.attributes_file, &cfg.node) {
            let attrd = crate::remote::attrd::Attrd::new(node, Some(file.clone()));
            state.set_attrd(attrd.clone());
            tokio::spawn(crate::remote::attrd::serve(
                crate::remote::attrd::socket_beside(file),
                attrd,
                shutdown.clone(),
            ));
        }
        if let Some(sock) = &cfg.control_socket {
            tokio::spawn(channel::serve_unix(
                sock.clone(),
                key.clone(),
                state.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(port) = cfg.control_port {
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
                .await
                .with_context(|| format!("listening on control port {port}"))?;
            tokio::spawn(channel::serve_tcp(
                listener,
                key,
                state.clone(),
                shutdown.clone(),
            ));
        }
    }
    let code = supervisor::run(&cfg, reaper, state, shutdown).await;
    std::process::exit(code)
}

/// Cancels `token` on SIGINT or SIGTERM.
pub(crate) async fn stop_on_signal(token: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = token.cancelled() => {}
    }
    token.cancel();
}

/// SIGUSR2 stops the node agent leaving its replicas running (the node in maintenance,
/// whatever `--on-stop` says): what a package upgrade sends before it starts the new agent,
/// which adopts them.
async fn maintenance_on_signal(
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    token: tokio_util::sync::CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
        return;
    };
    tokio::select! {
        _ = usr2.recv() => {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            token.cancel();
        }
        _ = token.cancelled() => {}
    }
}

/// `berth man`: a page for berth and one for each command (and subcommand), from the same
/// clap definitions as `--help`.
fn man_pages(dir: &std::path::Path, out: &mut impl std::io::Write) -> Result<()> {
    fn write_page(
        dir: &std::path::Path,
        name: &str,
        cmd: clap::Command,
        out: &mut impl std::io::Write,
    ) -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone().name(name.to_string())).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "{}", path.display())?;
        // clap's generated `help` subcommands get no page (each command's page is its help).
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            write_page(dir, &format!("{name}-{}", sub.get_name()), sub.clone(), out)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    write_page(dir, "berth", cmd, out)
}

/// Reads and parses manifests from files, directories (their *.yaml, *.yml, *.json and *.xml
/// files, in name order) and `-` (stdin).
pub fn read_manifests(inputs: &[String]) -> Result<Parsed> {
    let mut all = Parsed::default();
    for input in inputs {
        for (origin, text) in read_inputs(input)? {
            let parsed = manifest::parse(&text).with_context(|| origin.clone())?;
            all.warnings.extend(
                parsed
                    .warnings
                    .into_iter()
                    .map(|w| format!("{origin}: {w}")),
            );
            all.bundles.extend(parsed.bundles);
        }
    }
    Ok(all)
}

fn read_inputs(input: &str) -> Result<Vec<(String, String)>> {
    if input == "-" {
        let text = std::io::read_to_string(std::io::stdin()).context("reading stdin")?;
        return Ok(vec![("stdin".into(), text)]);
    }
    let path = PathBuf::from(input);
    let meta = std::fs::metadata(&path).with_context(|| format!("{input}: cannot read"))?;
    let files = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .with_context(|| format!("{input}: cannot list"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json" | "xml")
                    )
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path]
    };
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("{}: cannot read", f.display()))?;
            Ok((f.display().to_string(), text))
        })
        .collect()
}

/// The bundle names a list of bundles holds more than once.
fn duplicate_names(bundles: &[Bundle]) -> Vec<&str> {
    let mut seen = std::collections::BTreeSet::new();
    let mut dups: Vec<&str> = bundles
        .iter()
        .map(Bundle::name)
        .filter(|n| !seen.insert(*n))
        .collect();
    dups.dedup();
    dups
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the whole command tree (unique names and flags, …), which it
    /// otherwise runs only when that subcommand is parsed in a debug build.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// Issue 31, item 7: what a container said reaches a terminal with its control
    /// characters escaped (no screen clearing, no title setting, no carriage return).
    #[test]
    fn control_characters_reach_the_terminal_escaped() {
        use std::io::Write;
        let mut buf = Vec::new();
        let mut w = super::Escaped::new(&mut buf);
        write!(w, "ok\tfine\n\x1b[2J\x1b]0;owned\x07\rhidden\u{9b}31m").unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "ok\tfine\n\\x1b[2J\\x1b]0;owned\\x07\\x0dhidden\\u{9b}31m"
        );
        assert!(matches!(
            super::escape_controls("plain é"),
            std::borrow::Cow::Borrowed("plain é")
        ));
    }
}
