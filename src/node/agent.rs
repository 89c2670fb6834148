//! The node agent's loop: register under a lease, watch this node's assignments and the
//! engine's events, and after each change read → [`plan`] → act → write status.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::address;
use super::container::{self, DesiredContainer, LABEL_HASH};
use super::engine::{Engine, EngineError, EngineEvent, Observed};
use super::files::Dir;
use super::plan::{Action, ReplicaKey, key_of, plan};
use crate::model::cluster::{
    Assignment, Capacity, Failure, NodeInfo, PrimitiveState, ReplicaState, ReplicaStatus,
};
use crate::model::cluster::{Phase, Role};
use crate::model::policy::{self, Permits};
use crate::remote::layout;
use crate::store::lease::{LeaseEnd, keep_alive};
use crate::store::watch::{Cache, WatchConfig, WatchEvent, watch_prefix};
use crate::store::{Keys, Store, StoreError};

/// The node agent's settings. Defaults are documented on each field.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name: its key, its assignments prefix, and the ownership label of its
    /// containers.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// TTL of the registration lease (default 5 s; etcd counts whole seconds). It is renewed
    /// every third of it.
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
    /// What this node permits bundles (host policy): nothing privileged, and host
    /// directories under `/srv` and `/var/log/pacemaker`, by default.
    pub permits: Permits,
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
            permits: Permits::default(),
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
    #[error("{0}")]
    BadName(String),
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the agent remembers about one replica between reconciles.
#[derive(Debug, Default)]
struct Runtime {
    restart_count: u32,
    /// Failures in a row (reset when the container ran `stable_after`).
    consecutive: u32,
    fail_counts: BTreeMap<String, u32>,
    last_failure: Option<Failure>,
    started_at: Option<Instant>,
    hold_until: Option<Instant>,
    /// Why creating or starting failed last time, cleared by a success.
    error: Option<String>,
    /// The primitive as its remote agent last reported it.
    primitive: Option<crate::model::cluster::PrimitiveState>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the agent until `shutdown` is cancelled; then deletes the node key (revokes the
/// lease) and leaves the containers running, to be adopted by the next start.
pub async fn run<E: Engine>(
    store: Store,
    engine: E,
    cfg: NodeConfig,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    crate::model::validate::node_name(&cfg.name).map_err(NodeError::BadName)?;
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| NodeError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let (engine_name, cpus, memory) = engine.describe().await?;
    let info = NodeInfo {
        name: cfg.name.clone(),
        labels: cfg.labels.clone(),
        capacity: Capacity {
            cpus,
            memory_bytes: memory,
        },
        engine: engine_name,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        permits: cfg.permits.clone(),
    };
    let node_key = store.keys().node(&cfg.name);
    let value = serde_json::to_vec(&info).expect("node info serializes");
    // One agent per name: a name that is online is refused. A registration left by this
    // node's previous agent (killed, not stopped) lapses within its lease TTL, so the key
    // is waited out for two of ours before giving up.
    let deadline = tokio::time::Instant::now() + cfg.lease_ttl * 2 + Duration::from_secs(1);
    let lease = loop {
        match store
            .create_with_new_lease(&node_key, value.clone(), cfg.lease_ttl)
            .await
        {
            Ok(l) => break l,
            Err(StoreError::AlreadyExists { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(NodeError::NameTaken {
                    name: cfg.name.clone(),
                    key: node_key,
                });
            }
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!(node = %cfg.name, "registered");
    let lease = Arc::new(AtomicI64::new(lease));
    let (renewed_tx, renewed) = watch::channel(tokio::time::Instant::now());
    let registration = tokio::spawn(register(
        store.clone(),
        node_key,
        value,
        cfg.lease_ttl,
        lease.clone(),
        renewed_tx,
        shutdown.clone(),
    ));
    let (primitive_tx, primitive_rx) = tokio::sync::mpsc::unbounded_channel();
    let added = load_addresses(&cfg.state_dir);
    let policy = HostPolicy::resolve(&cfg);
    let mut agent = Agent {
        keys: store.keys().clone(),
        store,
        engine,
        cfg,
        assignments: Cache::default(),
        assigned: BTreeMap::new(),
        unusable: BTreeSet::new(),
        policy,
        decoded_at: BTreeMap::new(),
        synced: false,
        fenced: false,
        seeded: BTreeSet::new(),
        runtime: BTreeMap::new(),
        expected_stops: HashSet::new(),
        event_state: BTreeMap::new(),
        written: BTreeMap::new(),
        added,
        wake_at: None,
        watchers: BTreeMap::new(),
        observed: Vec::new(),
        primitive_tx,
    };
    agent.run(&shutdown, renewed, primitive_rx).await;
    for w in agent.watchers.values() {
        w.token.cancel();
    }
    let _ = registration.await;
    if let Err(e) = agent.store.revoke_lease(lease.load(Ordering::SeqCst)).await {
        tracing::warn!("could not delete the node key on shutdown: {e}");
    }
    Ok(())
}

/// Keeps the registration alive; when the lease is lost (expired, or unreachable for a whole
/// TTL), registers again under a new one.
async fn register(
    store: Store,
    key: String,
    value: Vec<u8>,
    ttl: Duration,
    lease: Arc<AtomicI64>,
    renewed: watch::Sender<tokio::time::Instant>,
    shutdown: CancellationToken,
) {
    loop {
        let id = lease.load(Ordering::SeqCst);
        if keep_alive(&store, id, ttl, &renewed, &shutdown).await == LeaseEnd::Shutdown {
            return;
        }
        tracing::warn!(lease = id, "registration lease lost; registering again");
        loop {
            // Only while the name is free: another agent that took it meanwhile keeps it,
            // and this one stays fenced (it runs nothing without a registration).
            match store.create_with_new_lease(&key, value.clone(), ttl).await {
                Ok(new) => {
                    lease.store(new, Ordering::SeqCst);
                    renewed.send_replace(tokio::time::Instant::now());
                    break;
                }
                Err(StoreError::AlreadyExists { .. }) => tracing::error!(
                    "registration failed: {key} is held by another agent of the same name; staying fenced"
                ),
                Err(e) => tracing::warn!("registration failed: {e}"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(ttl / 3) => {}
            }
        }
    }
}

struct Agent<E> {
    store: Store,
    keys: Keys,
    engine: E,
    cfg: NodeConfig,
    /// This node's assignment keys, kept current by the watch.
    assignments: Cache,
    /// Each assignment key's last usable value, decoded and validated once per change (an
    /// unusable value keeps the last usable one: it is never taken as a removal).
    assigned: BTreeMap<String, Usable>,
    /// Assignment keys whose current value cannot be used; without a last usable value,
    /// their bundle's containers are left exactly as they are.
    unusable: BTreeSet<String>,
    /// The host policy as it resolves on this host: the permitted host directories and the
    /// state directory with their links resolved once, at start.
    policy: HostPolicy,
    /// The mod revision each assignment key was decoded at.
    decoded_at: BTreeMap<String, i64>,
    /// The first list of assignments arrived: nothing reconciles before it.
    synced: bool,
    /// The lease could not be renewed in time: every container was removed and nothing
    /// runs until the registration is renewed and the assignments listed afresh.
    fenced: bool,
    /// Replicas whose history was read back from their status keys (after an agent restart,
    /// or when a replica arrives from another node).
    seeded: BTreeSet<ReplicaKey>,
    runtime: BTreeMap<ReplicaKey, Runtime>,
    /// Containers this agent is stopping itself: their `die` is not a failure.
    expected_stops: HashSet<String>,
    /// Running or not, per container, as the last `start`/`die` event said. Docker emits
    /// `die` before its container list reflects it, so a list right after the event may
    /// still show the container running; the event wins.
    event_state: BTreeMap<String, bool>,
    /// The status bytes last written per replica, to write only changes.
    written: BTreeMap<ReplicaKey, Vec<u8>>,
    /// Addresses this agent added (to remove them when their replica leaves).
    added: BTreeSet<Ipv4Addr>,
    wake_at: Option<Instant>,
    /// Per replica with a primitive, a task long-polling its remote agent's control channel
    /// (reporting on `primitive_tx`) and one asking it for roles, in order.
    watchers: BTreeMap<ReplicaKey, Watcher>,
    /// This node's containers as the last reconcile left them (for status written between
    /// reconciles, when only a primitive's report changed).
    observed: Vec<Observed>,
    primitive_tx: tokio::sync::mpsc::UnboundedSender<(ReplicaKey, PrimitiveState)>,
}

type Desired = BTreeMap<ReplicaKey, Result<DesiredContainer, String>>;

/// What this node's assignments ask for.
struct Wanted {
    /// Every managed replica, with its container or why it cannot run.
    containers: Desired,
    /// Their addresses.
    addrs: BTreeMap<ReplicaKey, Option<Ipv4Addr>>,
    /// Bundles that are not managed (is-managed=false): left as they are.
    unmanaged: BTreeSet<String>,
    /// The role each replica of a promotable bundle must run in.
    roles: BTreeMap<ReplicaKey, Role>,
}

/// A replica's control-channel tasks.
struct Watcher {
    token: CancellationToken,
    /// The role to ask for; every send is one more request (the latest value wins).
    role: tokio::sync::watch::Sender<Role>,
    channel: Channel,
}

impl<E: Engine> Agent<E> {
    async fn run(
        &mut self,
        shutdown: &CancellationToken,
        mut renewed: watch::Receiver<tokio::time::Instant>,
        mut primitives: tokio::sync::mpsc::UnboundedReceiver<(ReplicaKey, PrimitiveState)>,
    ) {
        let node = self.cfg.name.clone();
        let watch_assignments = |store: &Store, keys: &Keys| {
            Box::pin(watch_prefix(
                store.client(),
                keys.assignments(&node),
                WatchConfig::default(),
            ))
        };
        let mut assign = watch_assignments(&self.store, &self.keys);
        let mut events = self.engine.events(&node);
        let mut resync = tokio::time::interval(self.cfg.resync);
        // Fence two thirds of a TTL after the last renewal: a renewal is tried every third,
        // so two have failed, and a third of the TTL is left to kill the containers before
        // etcd can expire the lease and the controller place the replicas elsewhere.
        let fence_after = self.cfg.lease_ttl * 2 / 3;
        loop {
            let wake = self.wake_at;
            let fence_at = *renewed.borrow() + fence_after;
            let mut dirty = true;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = renewed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    dirty = false;
                    if self.fenced {
                        tracing::warn!(node = %node, "registration renewed: unfencing, listing assignments afresh");
                        self.fenced = false;
                        self.synced = false;
                        self.assignments = Cache::default();
                        assign = watch_assignments(&self.store, &self.keys);
                    }
                }
                _ = tokio::time::sleep_until(fence_at), if !self.fenced => {
                    self.fence().await;
                    dirty = false;
                }
                ev = assign.next() => {
                    if let Some(ev) = ev {
                        self.on_assignment(ev);
                    }
                    // Take whatever else is already there before reconciling once.
                    while let Some(Some(ev)) = assign.next().now_or_never() {
                        self.on_assignment(ev);
                    }
                }
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        self.on_engine_event(ev);
                        while let Some(Some(Ok(ev))) = events.next().now_or_never() {
                            self.on_engine_event(ev);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!("engine events: {e}; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        events = self.engine.events(&node);
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        events = self.engine.events(&node);
                    }
                },
                Some((k, st)) = primitives.recv() => {
                    self.on_primitive(k, st);
                    while let Ok((k, st)) = primitives.try_recv() {
                        self.on_primitive(k, st);
                    }
                    // Nothing about the containers changed: report, and ask for roles,
                    // without listing the engine again.
                    dirty = false;
                    if self.synced && !self.fenced {
                        self.report_primitives().await;
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {}
                _ = resync.tick() => {}
            }
            if dirty && self.synced && !self.fenced {
                self.reconcile().await;
            }
        }
    }

    fn on_primitive(&mut self, k: ReplicaKey, st: PrimitiveState) {
        if let Some(rt) = self.runtime.get_mut(&k) {
            rt.primitive = Some(st);
        }
    }

    /// A remote agent reported its primitive: the replica statuses that changed are written
    /// from the containers as the last reconcile saw them, and roles are asked for.
    async fn report_primitives(&mut self) {
        let w = self.desired();
        let observed = std::mem::take(&mut self.observed);
        self.write_status(&w.containers, &w.addrs, &observed).await;
        self.observed = observed;
        self.converge_roles(&w.roles);
    }

    /// The lease could not be renewed: remove every container of this node at once (no
    /// grace period: the lease may expire soon and the replicas start elsewhere) and drop
    /// their addresses, so that a replica never runs twice. berth's fencing.
    async fn fence(&mut self) {
        tracing::error!(node = %self.cfg.name, "lease not renewed in time: fencing (removing every replica)");
        self.fenced = true;
        let node = self.cfg.name.clone();
        match self.engine.list(&node).await {
            Ok(owned) => {
                for o in owned {
                    self.expected_stops.insert(o.id.clone());
                    if let Err(e) = self.engine.remove(&o.id, Some(Duration::ZERO)).await {
                        tracing::warn!("fencing {}: {e}", o.name);
                    }
                }
            }
            Err(e) => tracing::error!("fencing: cannot list containers: {e}"),
        }
        let dropped = std::mem::take(&mut self.added);
        self.save_addresses();
        for ip in dropped {
            if let Err(e) = address::remove(ip).await {
                tracing::warn!("fencing: {e}");
            }
        }
        self.wake_at = None;
    }

    fn on_assignment(&mut self, ev: Result<WatchEvent, crate::store::watch::WatchError>) {
        match ev {
            Ok(ev) => {
                if matches!(ev, WatchEvent::Listed { .. }) {
                    self.synced = true;
                }
                self.assignments.apply(&ev);
                self.decode_assignments();
            }
            Err(e) => tracing::warn!("assignments: {e}"),
        }
    }

    /// Decodes the assignment keys that changed; forgets the deleted ones (only a delete
    /// removes replicas).
    fn decode_assignments(&mut self) {
        let items = &self.assignments.items;
        self.assigned.retain(|k, _| items.contains_key(k));
        self.unusable.retain(|k| items.contains_key(k));
        self.decoded_at.retain(|k, _| items.contains_key(k));
        for (key, kv) in items {
            if self.decoded_at.get(key) == Some(&kv.mod_revision) {
                continue;
            }
            self.decoded_at.insert(key.clone(), kv.mod_revision);
            let bundle = self
                .keys
                .assignment_bundle(key, &self.cfg.name)
                .unwrap_or_default();
            match usable_assignment(bundle, &kv.value) {
                Ok(a) => {
                    let refused = crate::model::validate::validate(&a.bundle)
                        .err()
                        .map(|e| e.to_string());
                    match (&refused, self.assigned.get(key)) {
                        // A bundle that does not validate: the last valid value stays.
                        (Some(why), Some(last)) if last.refused.is_none() => {
                            tracing::warn!(key = %key, "invalid bundle in assignment (keeping the last valid one): {why}");
                        }
                        // None to keep: its replicas report why, nothing starts, and
                        // containers it had are left as they are. Host policy is checked
                        // here too, once per change (the controller placed by what this
                        // node advertised; the agent checks again).
                        _ => {
                            let refused = refused.or_else(|| self.policy.denied(&a.bundle));
                            self.assigned.insert(key.clone(), Usable { a, refused });
                        }
                    }
                    self.unusable.remove(key);
                }
                Err(why) => {
                    let kept = if self.assigned.contains_key(key) {
                        "keeping the last usable one"
                    } else {
                        "leaving its containers as they are"
                    };
                    tracing::warn!(key = %key, "unusable assignment ({kept}): {why}");
                    self.unusable.insert(key.clone());
                }
            }
        }
    }

    fn on_engine_event(&mut self, ev: EngineEvent) {
        let now = Instant::now();
        let key = key_of(&Observed {
            id: ev.id.clone(),
            name: String::new(),
            labels: ev.attributes.clone(),
            running: false,
        });
        match ev.action.as_str() {
            "start" | "die" => {
                self.event_state.insert(ev.id.clone(), ev.action == "start");
            }
            "destroy" => {
                self.event_state.remove(&ev.id);
            }
            _ => {}
        }
        match ev.action.as_str() {
            "start" => {
                if let Some(k) = key {
                    self.runtime.entry(k).or_default().started_at = Some(now);
                }
            }
            "die" => {
                if self.expected_stops.contains(&ev.id) {
                    return;
                }
                let Some(k) = key else { return };
                let code = ev.attributes.get("exitCode").cloned().unwrap_or_default();
                let mut reason = format!("container {} exited with code {code}", short(&ev.id));
                // A primitive's remote agent leaves its state behind: say which operation
                // failed, with the agent's exit code and output.
                // The file is the container's: read without following links, bounded, and
                // cut to size.
                let left = self
                    .replica_files(&k.bundle, k.index)
                    .and_then(|d| d.sub(layout::RUN_SUBDIR))
                    .and_then(|d| d.read(layout::STATE_JSON, MAX_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<PrimitiveState>(&b).ok())
                    .map(PrimitiveState::bounded)
                    .or_else(|| self.runtime.get(&k).and_then(|rt| rt.primitive.clone()));
                if let Some(mut st) = left {
                    // Nothing runs in a dead container: the primitive is stopped (or failed)
                    // and holds no role, whatever its last report said.
                    if st.state != Phase::Failed {
                        st.state = Phase::Stopped;
                    }
                    st.role = None;
                    st.wanted_role = None;
                    if let Some(op) = st.last.iter().rev().find(|o| o.rc != 0) {
                        let out = op.output.lines().next().unwrap_or_default();
                        reason.push_str(&format!(
                            ": {} {} ({}){}",
                            op.action,
                            op.rc_name,
                            op.rc,
                            if out.is_empty() {
                                String::new()
                            } else {
                                format!(": {out}")
                            }
                        ));
                    }
                    self.runtime.entry(k.clone()).or_default().primitive = Some(st);
                }
                tracing::info!(replica = %k, "{reason}");
                self.failed(&k, reason, now);
            }
            "destroy" => {
                self.expected_stops.remove(&ev.id);
            }
            _ => {}
        }
    }

    /// Counts a failure of a replica and holds its restart for the backoff.
    fn failed(&mut self, k: &ReplicaKey, reason: String, now: Instant) {
        let cfg = &self.cfg;
        let rt = self.runtime.entry(k.clone()).or_default();
        let stable = rt
            .started_at
            .is_some_and(|t| now.duration_since(t) >= cfg.stable_after);
        rt.consecutive = if stable { 1 } else { rt.consecutive + 1 };
        *rt.fail_counts.entry(cfg.name.clone()).or_default() += 1;
        rt.last_failure = Some(Failure {
            reason,
            time: unix_now(),
        });
        rt.started_at = None;
        // The first failure restarts at once; then backoff, backoff*2, … up to the max.
        let delay = if rt.consecutive <= 1 {
            Duration::ZERO
        } else {
            let factor = 1u32 << (rt.consecutive - 2).min(16);
            (cfg.backoff * factor).min(cfg.max_backoff)
        };
        rt.hold_until = Some(now + delay);
    }

    /// Asks each promotable replica's remote agent for its role when it is neither in that
    /// role nor asked for it already. Requests go through the replica's own task, in order,
    /// so that a later request never overtakes an earlier one.
    fn converge_roles(&self, roles: &BTreeMap<ReplicaKey, Role>) {
        for (k, &role) in roles {
            let (Some(w), Some(p)) = (
                self.watchers.get(k),
                self.runtime.get(k).and_then(|rt| rt.primitive.as_ref()),
            ) else {
                continue;
            };
            let target = p.wanted_role.or(p.role);
            if p.state == Phase::Started && p.role.is_some() && target != Some(role) {
                w.role.send_replace(role);
            }
        }
    }

    /// What this node's assignments ask for, read from them in one pass.
    fn desired(&self) -> Wanted {
        let mut out = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        let mut unmanaged = BTreeSet::new();
        let mut roles = BTreeMap::new();
        for key in &self.unusable {
            if !self.assigned.contains_key(key) {
                let bundle = self.keys.assignment_bundle(key, &self.cfg.name);
                unmanaged.insert(bundle.unwrap_or_default().to_string());
            }
        }
        for Usable { a, refused } in self.assigned.values() {
            if !a.managed {
                unmanaged.insert(a.bundle.name().to_string());
                continue;
            }
            for &i in &a.replicas {
                let k = ReplicaKey {
                    bundle: a.bundle.name().to_string(),
                    index: i,
                };
                addrs.insert(k.clone(), a.bundle.spec.replica_address(i));
                if a.bundle.spec.promoted_max() > 0 {
                    let promoted = a.promoted.contains(&i);
                    let role = if promoted {
                        Role::Promoted
                    } else {
                        Role::Unpromoted
                    };
                    roles.insert(k.clone(), role);
                }
                let remote = self.cfg.remote_binary.as_deref();
                let d = container::desired(&a.bundle, i, &self.cfg.state_dir, remote);
                out.insert(
                    k,
                    match (d, refused) {
                        (Ok(_), Some(why)) => Err(why.clone()),
                        (d, _) => d,
                    },
                );
            }
        }
        Wanted {
            containers: out,
            addrs,
            unmanaged,
            roles,
        }
    }

    /// For replicas seen for the first time: failure history from their status keys (a
    /// replica that moved here keeps its failures on other nodes, for migration-threshold),
    /// and the restart count when this node wrote it (after an agent restart).
    async fn seed(&mut self, desired: &Desired) {
        let keys: Vec<ReplicaKey> = desired
            .keys()
            .filter(|k| !self.seeded.contains(*k))
            .cloned()
            .collect();
        if keys.is_empty() {
            return;
        }
        let names: Vec<String> = keys
            .iter()
            .map(|k| self.keys.replica(&k.bundle, k.index))
            .collect();
        let got = match self.store.get_many(&names).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!("reading replica status: {e}");
                return;
            }
        };
        for (k, kv) in keys.into_iter().zip(got) {
            self.seeded.insert(k.clone());
            let Some(kv) = kv else { continue };
            let Ok(st) = serde_json::from_slice::<ReplicaStatus>(&kv.value) else {
                continue;
            };
            let rt = self.runtime.entry(k.clone()).or_default();
            rt.fail_counts = st.fail_counts;
            rt.last_failure = st.last_failure;
            if st.node == self.cfg.name {
                rt.restart_count = st.restart_count;
                self.written.insert(k, kv.value);
            }
        }
    }

    async fn reconcile(&mut self) {
        let Wanted {
            containers: desired,
            addrs,
            unmanaged,
            roles,
        } = self.desired();
        self.seed(&desired).await;
        let node = self.cfg.name.clone();
        // Containers of unmanaged bundles (is-managed=false) are left exactly as they are.
        let mine = |o: &Observed| {
            !o.labels
                .get(container::LABEL_BUNDLE)
                .is_some_and(|b| unmanaged.contains(b))
        };
        let observed = match self.engine.list(&node).await {
            Ok(o) => {
                let o = o.into_iter().filter(mine).collect();
                self.with_event_state(o)
            }
            Err(e) => {
                tracing::warn!("{e}");
                self.wake_at = Some(Instant::now() + Duration::from_secs(1));
                return;
            }
        };
        // Files first: a container must find its directories and /etc/hosts at start, and
        // running ones get the current replica list. A replica whose files cannot be
        // prepared safely (a link where a directory must be) does not run.
        let mut desired = desired;
        for d in desired.values_mut() {
            if let Ok(c) = d
                && let Err(e) = self.prepare_files(c)
            {
                *d = Err(format!("preparing the replica's files: {e}"));
            }
        }
        // Addresses before containers: a port is published on the replica's address, so the
        // address must be there when the container starts.
        self.ensure_addresses(&mut desired).await;
        let now = Instant::now();
        let holds: BTreeMap<ReplicaKey, Instant> = self
            .runtime
            .iter()
            .filter_map(|(k, rt)| rt.hold_until.map(|t| (k.clone(), t)))
            .collect();
        let p = plan(&desired, &observed, &holds, now);
        self.wake_at = p.wake_at;
        self.act(p.actions, &desired).await;
        self.drop_stale_addresses(&addrs).await;
        match self.engine.list(&node).await {
            Ok(after) => {
                let after = after.into_iter().filter(mine).collect();
                let after = self.with_event_state(after);
                self.write_status(&desired, &addrs, &after).await;
                self.observed = after;
            }
            Err(e) => tracing::warn!("{e}"),
        }
        self.converge_watchers(&desired);
        self.converge_roles(&roles);
    }

    /// A control-channel watcher for every replica with a primitive, and none for others (a
    /// replica whose channel changed gets new ones).
    fn converge_watchers(&mut self, desired: &Desired) {
        let want: BTreeMap<ReplicaKey, Channel> = desired
            .iter()
            .filter_map(|(k, d)| {
                let d = d.as_ref().ok()?;
                d.remote_config.as_ref()?;
                let ch = Channel {
                    state_dir: self.cfg.state_dir.clone(),
                    key: k.clone(),
                    tcp: d.control_tcp,
                };
                Some((k.clone(), ch))
            })
            .collect();
        self.watchers.retain(|k, w| {
            let keep = want.get(k) == Some(&w.channel);
            if !keep {
                w.token.cancel();
            }
            keep
        });
        for (k, channel) in want {
            if self.watchers.contains_key(&k) {
                continue;
            }
            let token = CancellationToken::new();
            // The initial value is never sent: only later ones are.
            let (role, asked) = tokio::sync::watch::channel(Role::Unpromoted);
            tokio::spawn(watch_primitive(
                channel.clone(),
                k.clone(),
                self.primitive_tx.clone(),
                token.clone(),
            ));
            tokio::spawn(ask_roles(channel.clone(), k.clone(), asked, token.clone()));
            self.watchers.insert(
                k,
                Watcher {
                    token,
                    role,
                    channel,
                },
            );
        }
    }

    /// The listed containers, with running state corrected by newer events; forgets the
    /// events of containers no longer listed.
    fn with_event_state(&mut self, observed: Vec<Observed>) -> Vec<Observed> {
        overlay_events(&mut self.event_state, observed)
    }

    /// Creates what a replica's container needs before it starts: its `source-dir-root`
    /// subdirectories, its /etc/hosts, and for a primitive the remote agent's configuration
    /// and key. Nothing is written through a link (see [`files`]); the error is why the
    /// replica cannot run safely.
    fn prepare_files(&self, d: &DesiredContainer) -> Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        for (root, name) in &d.dirs {
            Dir::root(root).and_then(|r| r.sub(name)).map_err(io)?;
        }
        if d.hosts.is_none() && d.remote_config.is_none() {
            return Ok(());
        }
        let replica = self.replica_files(&d.bundle, d.index).map_err(io)?;
        if let Some(content) = &d.hosts
            && replica.read(layout::HOSTS_FILE, MAX_FILE).ok().as_deref()
                != Some(content.as_bytes())
        {
            // Rewritten in place (not renamed): the container's bind mount follows the
            // inode, so a new file would not be seen inside.
            replica
                .rewrite(layout::HOSTS_FILE, content.as_bytes())
                .map_err(io)?;
        }
        if let Some(cfg) = &d.remote_config {
            let conf = replica.sub(layout::CONFIG_SUBDIR).map_err(io)?;
            replica.sub(layout::RUN_SUBDIR).map_err(io)?;
            if conf.read(layout::REMOTE_JSON, MAX_FILE).ok().as_deref() != Some(cfg.as_bytes()) {
                conf.write(layout::REMOTE_JSON, cfg.as_bytes(), 0o644)
                    .map_err(io)?;
            }
            if !conf.exists(layout::AUTHKEY) {
                let key = crate::remote::channel::new_key().map_err(io)?;
                conf.write(layout::AUTHKEY, key.as_bytes(), 0o600)
                    .map_err(io)?;
            }
        }
        Ok(())
    }

    /// The replica's host directory (`<state dir>/<bundle>/<replica>`), opened without
    /// following links.
    fn replica_files(&self, bundle: &str, index: u32) -> std::io::Result<Dir> {
        replica_files(&self.cfg.state_dir, bundle, index)
    }

    async fn act(&mut self, actions: Vec<Action>, desired: &Desired) {
        let node = self.cfg.name.clone();
        for action in actions {
            match action {
                Action::Remove {
                    id,
                    name,
                    stop_timeout,
                    why,
                } => {
                    tracing::info!(container = %name, "removing: {why}");
                    self.expected_stops.insert(id.clone());
                    if let Err(e) = self.engine.remove(&id, stop_timeout).await {
                        tracing::warn!("{e}");
                    }
                }
                Action::Create(k) => {
                    let Some(Ok(d)) = desired.get(&k) else {
                        continue;
                    };
                    let result = match self.engine.create(d, &node).await {
                        Ok(id) => self.engine.start(&id).await.map(|()| id),
                        Err(e) => Err(e),
                    };
                    self.after_start(&k, result, false);
                }
                Action::Start { key, id } => {
                    let result = self.engine.start(&id).await.map(|()| id);
                    self.after_start(&key, result, true);
                }
            }
        }
    }

    fn after_start(&mut self, k: &ReplicaKey, result: Result<String, EngineError>, restart: bool) {
        match result {
            Ok(id) => {
                // Running now, whatever a list taken before the `start` event would say.
                self.event_state.insert(id, true);
                let rt = self.runtime.entry(k.clone()).or_default();
                rt.error = None;
                rt.hold_until = None;
                if restart {
                    rt.restart_count += 1;
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(replica = %k, "{reason}");
                if e.is_name_conflict() {
                    let rt = self.runtime.entry(k.clone()).or_default();
                    rt.hold_until = Some(Instant::now() + self.cfg.backoff * 2);
                } else {
                    self.failed(k, reason.clone(), Instant::now());
                }
                self.runtime.entry(k.clone()).or_default().error = Some(reason);
                let hold = self.runtime[k].hold_until;
                self.wake_at = match (self.wake_at, hold) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }

    /// Adds each replica's address (an address the host had before is refused: the
    /// replica reports why and does not start).
    async fn ensure_addresses(&mut self, desired: &mut Desired) {
        let mut changed = false;
        for d in desired.values_mut() {
            let Ok(c) = d else { continue };
            let Some(a) = c.address.clone() else { continue };
            match address::ensure(&a, self.added.contains(&a.ip)).await {
                Ok(true) => {
                    self.added.insert(a.ip);
                    changed = true;
                }
                Ok(false) => {}
                Err(e @ address::AddressError::HostOwned { .. }) => *d = Err(e.to_string()),
                Err(e) => tracing::warn!(replica = %c.name, "{e}"),
            }
        }
        if changed {
            self.save_addresses();
        }
    }

    /// Removes the addresses this agent added (or adopted) that no replica here needs.
    async fn drop_stale_addresses(&mut self, addrs: &BTreeMap<ReplicaKey, Option<Ipv4Addr>>) {
        let wanted: BTreeSet<Ipv4Addr> = addrs.values().flatten().copied().collect();
        let stale: Vec<Ipv4Addr> = self.added.difference(&wanted).copied().collect();
        if stale.is_empty() {
            return;
        }
        for ip in stale {
            match address::remove(ip).await {
                Ok(()) => {
                    self.added.remove(&ip);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        self.save_addresses();
    }

    /// Records the addresses this agent added in `<state dir>/addresses.json`, so that an
    /// agent restarted on this node adopts them (and removes them when their replicas
    /// leave) instead of taking them for the host's own.
    fn save_addresses(&self) {
        let value = serde_json::to_vec(&self.added).expect("addresses serialize");
        if let Err(e) =
            Dir::root(&self.cfg.state_dir).and_then(|d| d.write(ADDRESSES, &value, 0o644))
        {
            tracing::warn!("recording added addresses: {e}");
        }
    }

    async fn write_status(
        &mut self,
        desired: &Desired,
        addrs: &BTreeMap<ReplicaKey, Option<Ipv4Addr>>,
        observed: &[Observed],
    ) {
        let now = Instant::now();
        let mut puts = Vec::new();
        for (k, d) in desired {
            let rt = self.runtime.entry(k.clone()).or_default();
            if let Err(reason) = d
                && rt.last_failure.as_ref().map(|f| &f.reason) != Some(reason)
            {
                rt.last_failure = Some(Failure {
                    reason: reason.clone(),
                    time: unix_now(),
                });
            }
            let conforming = d.as_ref().ok().and_then(|d| {
                let hash = d.hash();
                let mut mine: Vec<&Observed> = observed
                    .iter()
                    .filter(|o| {
                        key_of(o).as_ref() == Some(k) && o.labels.get(LABEL_HASH) == Some(&hash)
                    })
                    .collect();
                mine.sort_by_key(|o| !o.running);
                mine.first().copied()
            });
            let held = rt.hold_until.is_some_and(|t| t > now);
            let state = match (d, conforming) {
                (Err(_), _) => ReplicaState::Failed,
                (Ok(_), Some(o)) if o.running => ReplicaState::Running,
                (Ok(_), _) if rt.error.is_some() || held => ReplicaState::Failed,
                (Ok(_), Some(_)) => ReplicaState::Starting,
                (Ok(_), None) => ReplicaState::Pending,
            };
            let status = ReplicaStatus {
                bundle: k.bundle.clone(),
                index: k.index,
                node: self.cfg.name.clone(),
                container_id: conforming.map(|o| o.id.clone()).unwrap_or_default(),
                container_name: d.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
                state,
                address: addrs.get(k).copied().flatten().map(|a| a.to_string()),
                ports: d
                    .as_ref()
                    .map(|d| d.ports.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
                restart_count: rt.restart_count,
                fail_counts: rt.fail_counts.clone(),
                last_failure: rt.last_failure.clone(),
                generation: match (d, conforming) {
                    (Ok(d), Some(_)) => d.generation,
                    _ => 0,
                },
                primitive: rt.primitive.clone(),
            };
            let bytes = serde_json::to_vec(&status).expect("status serializes");
            if self.written.get(k) != Some(&bytes) {
                puts.push((k.clone(), bytes));
            }
        }
        if !puts.is_empty() {
            let items = puts
                .iter()
                .map(|(k, v)| (self.keys.replica(&k.bundle, k.index), v.clone()))
                .collect();
            match self.store.put_many(items).await {
                Ok(()) => self.written.extend(puts),
                Err(e) => tracing::warn!("writing replica status: {e}"),
            }
        }
        // Replicas that left this node: drop their status, unless another node has written
        // it since (it then holds other bytes and is left alone).
        let gone: Vec<ReplicaKey> = self
            .written
            .keys()
            .filter(|k| !desired.contains_key(k))
            .cloned()
            .collect();
        for k in gone {
            let bytes = self.written.remove(&k).unwrap_or_default();
            self.runtime.remove(&k);
            self.seeded.remove(&k);
            let key = self.keys.replica(&k.bundle, k.index);
            if let Err(e) = self.store.delete_if_value(&key, &bytes).await {
                tracing::warn!("{e}");
            }
        }
    }
}

/// How the node agent reaches a replica's remote agent: the replica's host directory (the
/// authkey in `config/`, the unix socket in `run/`) and, when the bundle sets control-port,
/// a TCP address instead.
#[derive(Debug, Clone, PartialEq)]
struct Channel {
    state_dir: PathBuf,
    key: ReplicaKey,
    tcp: Option<std::net::SocketAddrV4>,
}

/// A stream to a remote agent, over either transport.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

impl Channel {
    /// A connection and the channel's key; none while the container is not up. The key is
    /// read from the read-only `config/`; the socket in the container's `run/` is dialled
    /// through its own inode, so a link planted in its place is never followed.
    async fn connect(&self) -> Option<(Box<dyn Stream>, String)> {
        let dir = replica_files(&self.state_dir, &self.key.bundle, self.key.index).ok()?;
        let authkey = dir
            .sub(layout::CONFIG_SUBDIR)
            .and_then(|c| c.read(layout::AUTHKEY, 4096))
            .ok()?;
        let authkey = String::from_utf8(authkey).ok()?.trim().to_string();
        let dial = async {
            let s: Box<dyn Stream> = match self.tcp {
                Some(addr) => Box::new(tokio::net::TcpStream::connect(addr).await.ok()?),
                None => {
                    let (_fd, path) = dir
                        .sub(layout::RUN_SUBDIR)
                        .and_then(|r| r.socket(layout::CONTROL_SOCKET))
                        .ok()?;
                    Box::new(tokio::net::UnixStream::connect(path).await.ok()?)
                }
            };
            Some(s)
        };
        let s = tokio::time::timeout(Duration::from_secs(5), dial)
            .await
            .ok()??;
        Some((s, authkey))
    }
}

/// The node's host policy as it resolves on this host (see [`policy`]).
#[derive(Debug)]
struct HostPolicy {
    name: String,
    /// The node's permits, host directory prefixes with their links resolved.
    permits: Permits,
    /// The agent's state directory, resolved: never given to a container.
    state_dir: PathBuf,
}

impl HostPolicy {
    fn resolve(cfg: &NodeConfig) -> HostPolicy {
        let mut permits = cfg.permits.clone();
        for p in &mut permits.source_dirs {
            *p = resolve_existing(Path::new(p.as_str()))
                .display()
                .to_string();
        }
        HostPolicy {
            name: cfg.name.clone(),
            permits,
            state_dir: resolve_existing(&cfg.state_dir),
        }
    }

    /// Why this node does not run `b`, or None. Host directories are checked as they
    /// resolve on this host (links in them followed).
    fn denied(&self, b: &crate::model::Bundle) -> Option<String> {
        let mut needs = policy::needs(b);
        let mut missing = Vec::new();
        for d in &mut needs.source_dirs {
            let real = resolve_existing(Path::new(d));
            if real.starts_with(&self.state_dir) || self.state_dir.starts_with(&real) {
                missing.push(format!(
                    "host directory {d}: it holds the node agent's state directory"
                ));
            }
            *d = real.display().to_string();
        }
        missing.extend(self.permits.missing(&needs));
        (!missing.is_empty()).then(|| {
            format!(
                "not permitted on node {}: {}",
                self.name,
                missing.join("; ")
            )
        })
    }
}

/// An assignment as the agent keeps it: the bundle, and why it cannot run here when it
/// cannot (it does not validate, or host policy refuses it: its replicas then report that
/// and nothing of it starts).
#[derive(Debug)]
struct Usable {
    a: Assignment,
    refused: Option<String>,
}

/// An assignment value as the agent can read it: JSON of an [`Assignment`] whose bundle is
/// the one its key names and whose ordinals exist. The error says why not.
fn usable_assignment(bundle: &str, value: &[u8]) -> Result<Assignment, String> {
    let a: Assignment = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if a.bundle.name() != bundle {
        return Err(format!(
            "it holds bundle {:?}, not {bundle:?}",
            a.bundle.name()
        ));
    }
    if let Some(i) = a.replicas.iter().find(|&&i| i >= a.bundle.spec.replicas()) {
        return Err(format!(
            "replica {i} is beyond the bundle's {} replicas",
            a.bundle.spec.replicas()
        ));
    }
    Ok(a)
}

/// `path` with its longest existing ancestor resolved (links followed), the rest appended:
/// where a bind mount of it would land once Docker creates the missing part.
fn resolve_existing(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// The file in the state directory listing the addresses this agent added.
const ADDRESSES: &str = "addresses.json";

/// The addresses an earlier run of this agent added, from [`ADDRESSES`].
fn load_addresses(state_dir: &Path) -> BTreeSet<Ipv4Addr> {
    Dir::root(state_dir)
        .and_then(|d| d.read(ADDRESSES, MAX_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The largest file the agent reads from a replica's directory.
const MAX_FILE: usize = 1024 * 1024;

/// A replica's host directory, `<state dir>/<bundle>/<replica>`, opened without following
/// links below the state directory.
fn replica_files(state_dir: &Path, bundle: &str, index: u32) -> std::io::Result<Dir> {
    Dir::root(state_dir)?
        .sub(bundle)?
        .sub(&crate::model::replica_name(bundle, index))
}

/// Long-polls a replica's remote agent for changes of its primitive (the control channel's
/// `watch`), reporting each; while the container is not up, retries every half second.
async fn watch_primitive(
    channel: Channel,
    key: ReplicaKey,
    tx: tokio::sync::mpsc::UnboundedSender<(ReplicaKey, PrimitiveState)>,
    token: CancellationToken,
) {
    let mut since = 0;
    loop {
        let attempt = async {
            let (s, authkey) = channel.connect().await?;
            crate::remote::channel::watch(s, &authkey, since).await.ok()
        };
        let got = tokio::select! {
            _ = token.cancelled() => return,
            got = attempt => got,
        };
        match got {
            Some(st) => {
                since = st.version;
                if tx.send((key.clone(), st)).is_err() {
                    return;
                }
            }
            None => {
                // A new remote agent (the container restarted) counts from 0 again.
                since = 0;
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Sends a replica's remote agent each role asked for on `asked`, in order, retrying every
/// half second while the channel is not up (a newer request replaces one not yet delivered).
async fn ask_roles(
    channel: Channel,
    key: ReplicaKey,
    mut asked: tokio::sync::watch::Receiver<Role>,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            r = asked.changed() => if r.is_err() { return },
        }
        loop {
            let role = *asked.borrow_and_update();
            let ask = async {
                let (s, authkey) = channel.connect().await?;
                crate::remote::channel::set_role(s, &authkey, role)
                    .await
                    .ok()
            };
            if ask.await.is_some() {
                break;
            }
            tracing::warn!(replica = %key, %role, "could not ask for the role; retrying");
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// Corrects a container list with the running state the latest events reported (Docker
/// emits `die` before its list reflects it), and forgets events of unlisted containers.
fn overlay_events(
    events: &mut BTreeMap<String, bool>,
    mut observed: Vec<Observed>,
) -> Vec<Observed> {
    let listed: HashSet<&str> = observed.iter().map(|o| o.id.as_str()).collect();
    events.retain(|id, _| listed.contains(id.as_str()));
    for o in &mut observed {
        if let Some(up) = events.get(&o.id) {
            o.running = *up;
        }
    }
    observed
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => futures::future::pending().await,
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, running: bool) -> Observed {
        Observed {
            id: id.into(),
            name: id.into(),
            labels: BTreeMap::new(),
            running,
        }
    }

    /// Docker reports `die` before its container list does: a restart must not wait for
    /// the next resync because the list still said "running".
    #[test]
    fn die_event_wins_over_a_stale_container_list() {
        let mut events = BTreeMap::from([("a".to_string(), false), ("gone".to_string(), false)]);
        let seen = overlay_events(
            &mut events,
            vec![container("a", true), container("b", true)],
        );
        assert_eq!(seen, vec![container("a", false), container("b", true)]);
        assert!(
            !events.contains_key("gone"),
            "events of unlisted containers are forgotten"
        );
    }
}
