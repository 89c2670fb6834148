//! The node agent's settings and why it stops.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::engine::EngineError;
use crate::model::policy::Permits;
use crate::store::StoreError;

/// The node agent's settings. Defaults are documented on each field.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name: its key, its assignments prefix, and the ownership label of its
    /// containers.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// TTL of the registration lease (default 5 s; etcd counts whole seconds). It is renewed
    /// every quarter of it.
    pub lease_ttl: Duration,
    /// Where per-replica files live (/etc/hosts copies): default `/var/lib/berth/node/<name>`.
    pub state_dir: PathBuf,
    /// A full reconcile this often even without events: the safety net, not the main path
    /// (default 60 s).
    pub resync: Duration,
    /// First restart delay after repeated failures; it doubles up to `max_backoff`. The
    /// first failure restarts at once (default 100 ms, max 30 s).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A container that ran this long before dying starts its backoff afresh (default 10 s).
    pub stable_after: Duration,
    /// The berth binary to bind-mount into containers of bundles with a primitive, where
    /// `berth remote` runs as PID 1 (default: this executable). It must run in the bundle's
    /// image: build it statically (scripts/build-image.sh) for images without glibc.
    pub remote_binary: Option<PathBuf>,
    /// Copy `remote_binary` into `<state_dir>/.bin/berth` at start and mount that copy (off
    /// by default; berth's image turns it on). For an agent run in a container: a path inside
    /// its container is not a host path (Docker would create an empty directory at it on
    /// the host and mount that), while the state directory is mounted from the host at the
    /// same path, so the copy is a host file.
    pub install_remote_binary: bool,
    /// What this node permits bundles (host policy): nothing privileged, and host
    /// directories under `/srv` and `/var/log/pacemaker`, by default.
    pub permits: Permits,
    /// The berth binary run as the node's watchdog (`berth watchdog`, see
    /// [`super::watchdog`]; default: this executable). None runs no watchdog: then nothing
    /// fences the node when the agent itself is killed or stopped.
    pub watchdog: Option<PathBuf>,
    /// How long fenced replicas stay frozen waiting for the lease to come back (an etcd
    /// outage) before they are killed (default 60 s; zero kills at the fence).
    pub freeze_for: Duration,
    /// What a clean stop does with the node's replicas (default: drain).
    pub on_stop: OnStop,
    /// Set before the shutdown is cancelled (`berth node` does on SIGUSR2, as the Debian
    /// package's upgrade does) to leave the replicas running whatever `on_stop` says: the
    /// node goes into maintenance and the agent's next run adopts them.
    pub maintenance_on_stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Where to serve /metrics, /healthz and /readyz (none by default; the CLI gives one).
    pub metrics: Option<std::net::SocketAddr>,
}

/// What a clean stop of the agent (SIGTERM, Ctrl-C) does with the node's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnStop {
    /// Stop the replicas (with their stop timeouts), drop their addresses, then leave: the
    /// controller places them elsewhere once the node is gone.
    #[default]
    Drain,
    /// Leave the replicas running, unsupervised and unfenced, and mark the node in
    /// maintenance (`<prefix>/maintenance/<node>`): the controller keeps them assigned here
    /// until the agent is back (Pacemaker's node maintenance mode).
    Maintenance,
}

impl NodeConfig {
    /// Defaults for a node named `name`.
    pub fn new(name: impl Into<String>) -> NodeConfig {
        let name = name.into();
        NodeConfig {
            state_dir: PathBuf::from("/var/lib/berth/node").join(&name),
            name,
            labels: BTreeMap::new(),
            lease_ttl: Duration::from_secs(5),
            resync: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            remote_binary: std::env::current_exe().ok(),
            install_remote_binary: false,
            permits: Permits::default(),
            watchdog: std::env::current_exe().ok(),
            freeze_for: Duration::from_secs(60),
            on_stop: OnStop::Drain,
            maintenance_on_stop: Default::default(),
            metrics: None,
        }
    }
}

/// Why the agent stopped. Set-up failures are fatal; everything after start is retried.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another agent runs under this node name (its registration is live). Give up.
    #[error(
        "node {name:?} is already online ({key} is held by another agent's lease): stop that agent or choose another --name"
    )]
    NameTaken { name: String, key: String },
    /// The node name is not a host name. Give up.
    #[error(transparent)]
    BadName(crate::model::validate::NodeNameError),
    /// `--lease-ttl` cannot be used. Give up.
    #[error("lease TTL {0:?}: must be a whole number of seconds, at least 1")]
    BadLeaseTtl(Duration),
    #[error("cannot copy the remote agent {from} into {to}: {source}")]
    RemoteBinary {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
