//! The node agent's shell: register under a lease, watch this node's assignments and the
//! engine's events, step each into the [`Core`], and carry out what its `ready` returns
//! (read back, list, act through the engine, write statuses, signal the replicas' agents)
//! until the pass is done; the host's own part (files, addresses) goes through [`Host`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::address;
use super::assigned::{Assigned, Wanted};
use super::config::OnStop;
use super::config::{NodeConfig, NodeError};
use super::core::{
    At, Core, Desired, Effects, Input, Listing, Results, Started, Timing, Unrunnable,
};
use super::engine::{Engine, EngineError, EngineEvent, Observed};
use super::fence::Scope;
use super::fencer::{FenceEvent, Fencer};
use super::gate::Gate;
use super::host::{Host, LocalHost};
use super::link::{Links, Report};
use super::local::HostPolicy;
use super::plan::{Action, ReplicaKey};
use super::watchdog::{Link, Request, Spawn};
use crate::model::cluster::ReplicaStatus;
use crate::model::cluster::{Capacity, NodeInfo};
use crate::model::container;
use crate::store::lease::{LeaseEnd, keep_alive};
use crate::store::watch::{Cache, WatchConfig, WatchEvent, watch_prefix};
use crate::store::{Expect, Keys, Store, StoreError};

/// Runs the agent until `shutdown` is cancelled; then, as `cfg.on_stop` says, drains the
/// node (stops its replicas, drops their addresses) or leaves it in maintenance (replicas
/// left running, the node marked so the controller keeps them here), and deletes the node
/// key (revokes the lease).
pub async fn run<E: Engine>(
    store: Store,
    engine: E,
    cfg: NodeConfig,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let host = LocalHost::new(&cfg.state_dir);
    run_on(store, engine, host, cfg, shutdown).await
}

/// [`run`] on a given [`Host`] (a [`super::host::MemoryHost`] in tests: addresses and
/// files in memory, no root needed for them).
pub async fn run_on<E: Engine, H: Host>(
    store: Store,
    engine: E,
    host: H,
    mut cfg: NodeConfig,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    prepare(&mut cfg)?;
    // Ready once registered (a node that cannot register serves 503 on /readyz).
    let ready = crate::metrics::Ready::default();
    crate::metrics::spawn(cfg.metrics, ready.clone());
    let engine_info = engine.describe(&cfg.name).await?;
    let info = NodeInfo {
        name: cfg.name.clone(),
        labels: cfg.labels.clone(),
        capacity: Capacity {
            cpus: engine_info.cpus,
            memory_bytes: engine_info.memory,
        },
        engine: engine_info.name.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        permits: cfg.permits.clone(),
    };
    let value = serde_json::to_vec(&info).expect("node info serializes");
    let Some((lease, granted_at)) = register_first(&store, &cfg, &value, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(node = %cfg.name, "registered");
    ready.set(true);
    leave_maintenance(&store, &cfg.name).await;
    let lease = Arc::new(AtomicI64::new(lease));
    let scope = engine_info
        .cgroup_parent
        .as_deref()
        .and_then(Scope::for_parent);
    let fence = FenceOn {
        scope: &scope,
        parent: engine_info.cgroup_parent.clone(),
        host: &host,
    };
    let guards = Guards::start(&store, &cfg, &value, &lease, granted_at, fence);
    let mut agent = Agent::new(store, engine, host, cfg, scope, &guards, &lease);
    agent
        .run(&shutdown, guards.fence_events, guards.reports)
        .await;
    agent.links.stop();
    agent.stop(value).await;
    // Drained, or in maintenance: nothing left to fence.
    if let Some(w) = &guards.watchdog
        && !w.send_wait(Request::Exit, Duration::from_secs(2)).await
    {
        tracing::warn!("the watchdog did not answer; it fences the node at its deadline");
    }
    guards.leave.cancel();
    let _ = guards.registration.await;
    let _ = guards.fencer.await;
    if let Err(e) = agent.store.revoke_lease(lease.load(Ordering::SeqCst)).await {
        tracing::warn!("could not delete the node key on shutdown: {e}");
    }
    Ok(())
}

/// Checks the name and the lease TTL, makes the state directory, and copies the remote
/// agent's binary into it when asked to.
fn prepare(cfg: &mut NodeConfig) -> Result<(), NodeError> {
    crate::model::validate::node_name(&cfg.name).map_err(NodeError::BadName)?;
    // etcd grants whole seconds: a fraction would be granted rounded down while the fence
    // counted with it.
    if cfg.lease_ttl.is_zero() || cfg.lease_ttl.subsec_nanos() != 0 {
        return Err(NodeError::BadLeaseTtl(cfg.lease_ttl));
    }
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| NodeError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    if cfg.install_remote_binary
        && let Some(from) = cfg.remote_binary.take()
    {
        let to = cfg
            .state_dir
            .join(super::files::REMOTE_BIN_SUBDIR)
            .join("berth");
        let installed = super::files::install_remote_binary(&cfg.state_dir, &from)
            .map_err(|source| NodeError::RemoteBinary { from, to, source })?;
        tracing::info!(path = %installed.display(), "remote agent binary copied into the state directory (--copy-remote-binary)");
        cfg.remote_binary = Some(installed);
    }
    Ok(())
}

/// Registers the node under a new lease: its id and when the grant was asked for, or None
/// when `shutdown` came first. One agent per name: a name that is online is refused. A
/// registration left by this node's previous agent (killed, not stopped) lapses within its
/// lease TTL, so the key is waited out for two of ours before giving up.
async fn register_first(
    store: &Store,
    cfg: &NodeConfig,
    value: &[u8],
    shutdown: &CancellationToken,
) -> Result<Option<(i64, tokio::time::Instant)>, NodeError> {
    let node_key = store.keys().node(&cfg.name);
    let deadline = tokio::time::Instant::now() + cfg.lease_ttl * 2 + Duration::from_secs(1);
    loop {
        let sent = tokio::time::Instant::now();
        match store
            .create_with_new_lease(&node_key, value.to_vec(), cfg.lease_ttl)
            .await
        {
            Ok(l) => return Ok(Some((l, sent))),
            Err(StoreError::AlreadyExists { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
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
    }
}

/// Back from maintenance: the node is managed again.
async fn leave_maintenance(store: &Store, node: &str) {
    match store
        .delete(&store.keys().maintenance(node), Expect::Any)
        .await
    {
        Ok(_) => tracing::info!(node = %node, "out of maintenance"),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => tracing::warn!("leaving maintenance: {e}"),
    }
}

/// What keeps a registered node safe while the agent runs: the registration's renewals, the
/// fence and its watchdog. They outlive the agent's loop (a drain runs under the lease), and
/// are aborted with it (an agent embedded in a process and dropped renews nothing any more,
/// as a dead one would).
struct Guards {
    /// Cancelled to stop the registration and the fence.
    leave: CancellationToken,
    registration: AbortOnDropHandle<()>,
    fencer: AbortOnDropHandle<()>,
    watchdog: Option<Link>,
    gate: Gate,
    fence_events: tokio::sync::mpsc::UnboundedReceiver<FenceEvent>,
    reports_tx: tokio::sync::mpsc::UnboundedSender<Report>,
    reports: tokio::sync::mpsc::UnboundedReceiver<Report>,
}

/// What the fence works on: the node's cgroup scope (and its parent's name, for the
/// watchdog), and the host that freezes, thaws and kills it.
struct FenceOn<'a, H> {
    scope: &'a Option<Scope>,
    parent: Option<String>,
    host: &'a H,
}

impl Guards {
    fn start<H: Host>(
        store: &Store,
        cfg: &NodeConfig,
        value: &[u8],
        lease: &Arc<AtomicI64>,
        granted_at: tokio::time::Instant,
        fence: FenceOn<'_, H>,
    ) -> Guards {
        let scope = fence.scope;
        let (renewed_tx, renewed) = watch::channel(granted_at);
        let leave = CancellationToken::new();
        let registration = AbortOnDropHandle::new(tokio::spawn(register(
            store.clone(),
            store.keys().node(&cfg.name),
            value.to_vec(),
            cfg.lease_ttl,
            lease.clone(),
            renewed_tx,
            leave.clone(),
        )));
        let watchdog = match (&cfg.watchdog, scope) {
            (Some(binary), Some(_)) => Some(Link::start(Spawn {
                binary: binary.clone(),
                state_dir: cfg.state_dir.clone(),
                scope: fence.parent.clone(),
                freeze_for: cfg.freeze_for,
            })),
            _ => {
                tracing::warn!(
                    "no watchdog (no cgroup scope or no binary): nothing fences this node if the agent itself dies"
                );
                None
            }
        };
        let (fence_tx, fence_events) = tokio::sync::mpsc::unbounded_channel();
        let gate = Gate::default();
        // Fence two thirds of a TTL after the last renewal was sent: a renewal is tried
        // every quarter, so two have failed (or waited out an etcd leader election), and a
        // third of the TTL is left to freeze the containers before etcd can expire the
        // lease and the controller place the replicas elsewhere.
        let fencer = AbortOnDropHandle::new(tokio::spawn(
            Fencer {
                scope: scope.clone(),
                host: fence.host.clone(),
                watchdog: watchdog.clone(),
                fence_after: cfg.lease_ttl * 2 / 3,
                freeze_for: cfg.freeze_for,
                lease: lease.clone(),
                renewed,
                events: fence_tx,
                gate: gate.clone(),
            }
            .run(leave.clone()),
        ));
        let (reports_tx, reports) = tokio::sync::mpsc::unbounded_channel();
        Guards {
            leave,
            registration,
            fencer,
            watchdog,
            gate,
            fence_events,
            reports_tx,
            reports,
        }
    }
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
        if keep_alive(&store, id, ttl, None, &renewed, &shutdown).await == LeaseEnd::Shutdown {
            return;
        }
        tracing::warn!(lease = id, "registration lease lost; registering again");
        loop {
            // Only while the name is free: another agent that took it meanwhile keeps it,
            // and this one stays fenced (it runs nothing without a registration).
            let sent = tokio::time::Instant::now();
            match store.create_with_new_lease(&key, value.clone(), ttl).await {
                Ok(new) => {
                    lease.store(new, Ordering::SeqCst);
                    renewed.send_replace(sent);
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

struct Agent<E, H> {
    store: Store,
    keys: Keys,
    engine: E,
    /// Addresses and replica files.
    host: H,
    cfg: NodeConfig,
    /// This node's assignment keys, kept current by the watch.
    assignments: Cache,
    /// The assignments, decoded and checked once per change.
    assigned: Assigned,
    /// The host policy as it resolves on this host: the permitted host directories and the
    /// state directory with their links resolved once, at start.
    policy: HostPolicy,
    /// The first list of assignments arrived: nothing reconciles before it.
    synced: bool,
    /// Closed by the fence task at a fence: nothing is created, started or given an address
    /// until the same lease is renewed, or a new one is and the assignments were listed
    /// afresh.
    gate: Gate,
    /// Registered anew after a fence: the gate's epoch to open once the fresh list arrives.
    reopen: Option<u64>,
    /// Per-replica memory and every decision.
    core: Core,
    /// Addresses this agent added (to remove them when their replica leaves).
    added: BTreeSet<Ipv4Addr>,
    /// The replicas' control channels.
    links: Links,
    /// The cgroup holding every container of this node (None: the engine fences).
    scope: Option<Scope>,
    events: crate::events::Recorder,
    /// Each replica's status as last written, to tell what changed (for events).
    last_status: BTreeMap<ReplicaKey, ReplicaStatus>,
}

impl<E: Engine, H: Host> Agent<E, H> {
    fn new(
        store: Store,
        engine: E,
        host: H,
        cfg: NodeConfig,
        scope: Option<Scope>,
        guards: &Guards,
        lease: &AtomicI64,
    ) -> Self {
        let timing = Timing {
            backoff: cfg.backoff,
            max_backoff: cfg.max_backoff,
            stable_after: cfg.stable_after,
        };
        let mut core = Core::new(cfg.name.clone(), timing);
        core.step(Input::Registered(lease.load(Ordering::SeqCst)), At::now());
        Agent {
            keys: store.keys().clone(),
            links: Links::new(
                &cfg.state_dir,
                guards.reports_tx.clone(),
                Some(store.clone()),
            ),
            events: crate::events::Recorder::spawn(
                store.clone(),
                format!("node/{}", cfg.name),
                crate::events::EventConfig::default(),
            ),
            store,
            engine,
            assignments: Cache::default(),
            assigned: Assigned::default(),
            policy: HostPolicy::resolve(&cfg.name, &cfg.permits, &cfg.state_dir),
            synced: false,
            gate: guards.gate.clone(),
            reopen: None,
            core,
            added: host.load_addresses(),
            host,
            scope,
            last_status: BTreeMap::new(),
            cfg,
        }
    }

    /// The agent is stopping: as `cfg.on_stop` says (or maintenance, when asked for since),
    /// drains the node, or marks it in maintenance with `value`, its registration's.
    async fn stop(&mut self, value: Vec<u8>) {
        let on_stop = if self.cfg.maintenance_on_stop.load(Ordering::SeqCst) {
            OnStop::Maintenance
        } else {
            self.cfg.on_stop
        };
        match on_stop {
            OnStop::Drain => {
                tracing::info!(node = %self.cfg.name, "draining: stopping every replica");
                self.remove_all(None).await;
                self.drop_stale_addresses(&BTreeMap::new()).await;
            }
            OnStop::Maintenance => {
                tracing::info!(node = %self.cfg.name, "leaving the replicas running: node in maintenance");
                // Only while the registration holds: a node whose lease is gone has been
                // fenced, and its replicas may run elsewhere already.
                let registration = self.keys.node(&self.cfg.name);
                let mark = vec![crate::store::Write::Put {
                    key: self.keys.maintenance(&self.cfg.name),
                    value,
                    expect: Expect::Any,
                }];
                match self.store.commit_guarded(&mark, Some(&registration)).await {
                    Ok(_) => {}
                    Err(StoreError::TxnConflict { .. }) => tracing::error!(
                        "not marking the node in maintenance: its registration is gone (fenced)"
                    ),
                    Err(e) => tracing::error!("marking the node in maintenance: {e}"),
                }
            }
        }
    }

    async fn run(
        &mut self,
        shutdown: &CancellationToken,
        mut fence_events: tokio::sync::mpsc::UnboundedReceiver<FenceEvent>,
        mut reports: tokio::sync::mpsc::UnboundedReceiver<Report>,
    ) {
        let node = self.cfg.name.clone();
        let watch_assignments = |store: &Store, keys: &Keys| {
            Box::pin(watch_prefix(
                store.members().clone(),
                keys.assignments(&node),
                WatchConfig::default(),
            ))
        };
        let mut assign = watch_assignments(&self.store, &self.keys);
        // What the replicas' tools see of the cluster (see `node::link`): followed while this
        // node runs a replica with a primitive (a node without any watches nothing more).
        let mut following = Following::new();
        let mut events = self.engine.events(&node);
        let mut resync = tokio::time::interval(self.cfg.resync);
        loop {
            let wake = self.core.wake_at();
            let mut dirty = true;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(ev) = fence_events.recv() => {
                    // Running again under the same lease: the fence dropped the addresses,
                    // and a change that came while the gate was closed was not acted on.
                    dirty = matches!(ev, FenceEvent::Resumed);
                    if self.on_fence(ev).await {
                        assign = watch_assignments(&self.store, &self.keys);
                    }
                }
                ev = assign.next() => {
                    if let Some(ev) = ev {
                        self.on_assignment(ev);
                    }
                    // Take whatever else is already there before reconciling once.
                    while let Some(Some(ev)) = assign.next().now_or_never() {
                        self.on_assignment(ev);
                    }
                    self.decode_assignments();
                }
                changed = following.changed() => {
                    dirty = false;
                    self.on_followed(&following, changed);
                }
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        self.on_engine_event(ev);
                        while let Some(Some(Ok(ev))) = events.next().now_or_never() {
                            self.on_engine_event(ev);
                        }
                    }
                    lost => {
                        if let Some(Err(e)) = lost {
                            tracing::warn!("engine events: {e}; reconnecting");
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        events = self.engine.events(&node);
                    }
                },
                Some(report) = reports.recv() => {
                    // Nothing about the containers changed: report, and ask for roles,
                    // without listing the engine again.
                    dirty = false;
                    self.on_reports(report, &mut reports).await;
                }
                _ = crate::sleep_until(wake), if wake.is_some() => {}
                _ = resync.tick() => {}
            }
            if dirty && self.synced && self.gate.is_open() {
                self.reconcile().await;
            }
            following.converge(&self.store, Followed::wanted(self.links.member_bundles()));
        }
    }

    /// A fence, its end, or a new registration. True when the assignments are to be listed
    /// afresh (a new lease: what was assigned meanwhile is not known).
    async fn on_fence(&mut self, ev: FenceEvent) -> bool {
        let node = self.cfg.name.clone();
        match ev {
            FenceEvent::Fenced => {
                crate::metrics::get().fences.inc();
                self.events.warning("Fenced", format!("node/{node}"), "registration lease not renewed in time: replicas frozen and their addresses dropped");
                self.core.step(Input::Fenced, At::now());
                // Again: an address added by a reconcile that was under way when the fence
                // task dropped them.
                self.host.drop_addresses().await;
                if self.scope.is_none() {
                    // Nothing froze them: the engine must remove them.
                    self.remove_all(Some(Duration::ZERO)).await;
                }
                false
            }
            FenceEvent::Killed => {
                self.events.warning(
                    "Fenced",
                    format!("node/{node}"),
                    "the lease ran out while frozen: replicas killed",
                );
                self.core.step(Input::Fenced, At::now());
                self.remove_all(Some(Duration::ZERO)).await;
                self.host.drop_addresses().await;
                false
            }
            FenceEvent::Resumed => {
                tracing::warn!(node = %node, "lease renewed after a fence: running again");
                self.events.normal(
                    "Unfenced",
                    format!("node/{node}"),
                    "lease renewed after a fence: running again",
                );
                false
            }
            FenceEvent::Relist { epoch, lease } => {
                self.core.step(Input::Registered(lease), At::now());
                tracing::warn!(node = %node, "registered anew: listing assignments afresh");
                self.events.normal(
                    "Registered",
                    format!("node/{node}"),
                    "registered anew under a new lease",
                );
                self.reopen = Some(epoch);
                self.synced = false;
                self.assignments = Cache::default();
                true
            }
        }
    }

    /// What the replicas' tools see of the cluster changed: it goes to their links.
    fn on_followed(&mut self, following: &Following, changed: BTreeSet<Followed>) {
        for f in changed {
            let cache = following.cache(&f);
            match &f {
                Followed::Attributes => {
                    self.links.attributes(decode_attributes(&self.keys, cache));
                }
                Followed::Hosts => self.links.hosts(decode_hosts(&self.keys, cache)),
                Followed::Standby => {
                    self.links.standby(decode_node_names(&self.keys, cache));
                }
                Followed::Maintenance => {
                    self.links.maintenance(decode_node_names(&self.keys, cache));
                }
                Followed::Replicas(b) => {
                    self.links.replicas(b, decode_statuses(&self.keys, cache));
                }
            }
        }
    }

    /// Remote agents reported their primitives (`first`, and whatever else is queued).
    async fn on_reports(
        &mut self,
        first: Report,
        reports: &mut tokio::sync::mpsc::UnboundedReceiver<Report>,
    ) {
        let (k, st) = first;
        self.core.step(Input::Primitive(k, st), At::now());
        while let Ok((k, st)) = reports.try_recv() {
            self.core.step(Input::Primitive(k, st), At::now());
        }
        if self.synced && self.gate.is_open() {
            self.report_primitives().await;
        }
    }

    /// A remote agent reported its primitive: the replica statuses that changed are written
    /// from the containers as the last reconcile saw them, and roles are asked for.
    async fn report_primitives(&mut self) {
        self.core
            .step(Input::Report(Arc::new(self.wanted())), At::now());
        let fx = self.core.ready(At::now());
        self.report(fx).await;
    }

    /// Removes every container of this node, all at once: with `stop_timeout` (zero for a
    /// fence: the lease may expire soon and the replicas start elsewhere), or each
    /// container's own (a drain).
    async fn remove_all(&mut self, stop_timeout: Option<Duration>) {
        match self.engine.list(&self.cfg.name).await {
            Ok(owned) => {
                let ids = owned.iter().map(|o| o.id.clone()).collect();
                self.core.step(Input::Stopping(ids), At::now());
                let engine = &self.engine;
                let removals = owned.iter().map(|o| async move {
                    if let Err(e) = engine.remove(&o.id, stop_timeout).await {
                        tracing::warn!("removing {}: {e}", o.name);
                    }
                });
                futures::future::join_all(removals).await;
            }
            Err(e) => tracing::error!("cannot list containers to remove them: {e}"),
        }
    }

    fn on_assignment(&mut self, ev: Result<WatchEvent, crate::store::watch::WatchError>) {
        match ev {
            Ok(ev) => {
                if matches!(ev, WatchEvent::Listed { .. }) {
                    self.synced = true;
                    // Listed afresh under the new lease: the node may act again (unless it
                    // was fenced once more meanwhile).
                    if let Some(epoch) = self.reopen.take() {
                        self.gate.open(epoch);
                    }
                }
                self.assignments.apply(&ev);
            }
            Err(e) => tracing::warn!("assignments: {e}"),
        }
    }

    /// Decodes the assignment keys that changed (see [`Assigned::update`]).
    fn decode_assignments(&mut self) {
        let (keys, node, policy) = (&self.keys, self.cfg.name.as_str(), &self.policy);
        self.assigned.update(
            &self.assignments.items,
            |k| keys.assignment_bundle(k, node),
            |b| policy.denied(b),
        );
    }

    fn on_engine_event(&mut self, ev: EngineEvent) {
        // A primitive's remote agent leaves its state behind: the core says which
        // operation failed, with the agent's exit code and output.
        let left = self
            .core
            .failure_of(&ev)
            .and_then(|k| self.host.left_state(&k.bundle, k.index));
        self.core.step(Input::Event { event: ev, left }, At::now());
    }

    fn wanted(&self) -> Wanted {
        self.assigned
            .wanted(&self.cfg.state_dir, self.cfg.remote_binary.as_deref())
    }

    /// Reads back the stored statuses of replicas seen for the first time, for the core.
    async fn read_back(&mut self, keys: Vec<ReplicaKey>) {
        let names: Vec<String> = keys
            .iter()
            .map(|k| self.keys.replica(&k.bundle, k.index))
            .collect();
        match self.store.get_many(&names).await {
            Ok(got) => {
                let stored = keys
                    .into_iter()
                    .zip(got)
                    .map(|(k, kv)| (k, kv.map(|kv| kv.value)))
                    .collect();
                self.core.step(Input::Stored(stored), At::now());
            }
            Err(e) => tracing::warn!("reading replica status: {e}"),
        }
    }

    /// Lists this node's containers for the core, less those of unmanaged bundles (left
    /// exactly as they are); false when the list failed.
    async fn look(&mut self, unmanaged: &BTreeSet<String>) -> bool {
        let metrics = crate::metrics::get();
        let listed = match metrics
            .engine("list", self.engine.list(&self.cfg.name))
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!("{e}");
                self.core.step(Input::ListFailed, At::now());
                return false;
            }
        };
        let mine: Vec<Observed> = listed
            .into_iter()
            .filter(|o| {
                !o.labels
                    .get(container::LABEL_BUNDLE)
                    .is_some_and(|b| unmanaged.contains(b))
            })
            .collect();
        self.core.step(Input::Listed(mine), At::now());
        true
    }

    /// One reconcile pass: the host prepares each replica's files and address, then the
    /// core's stages are carried out one by one (read back, list, act, list again, write
    /// and signal).
    #[tracing::instrument(name = "reconcile", skip_all, fields(node = %self.cfg.name))]
    async fn reconcile(&mut self) {
        let mut wanted = self.wanted();
        let (added, host_refused) = self.prepare_host(&mut wanted.containers).await;
        let mut added = Some(added);
        let wanted = Arc::new(wanted);
        let pass = Input::Reconcile {
            wanted: Arc::clone(&wanted),
            host_refused,
        };
        self.core.step(pass, At::now());
        loop {
            let mut fx = self.core.ready(At::now());
            if !fx.read.is_empty() {
                self.read_back(std::mem::take(&mut fx.read)).await;
            }
            match fx.list {
                Some(Listing::ToPlan) => {
                    self.look(&wanted.unmanaged).await;
                }
                Some(Listing::AfterActing) => {
                    // Announced once the containers behind them run (see
                    // [`address::Added::announce`]).
                    for a in added.take().into_iter().flatten() {
                        self.host.announce(a).await;
                    }
                    self.drop_stale_addresses(&wanted.addrs).await;
                    if self.look(&wanted.unmanaged).await {
                        let metrics = crate::metrics::get();
                        let refused = wanted.containers.values().filter(|d| d.is_err());
                        // As the core sees them: a `die` event wins over a list that lags.
                        metrics.set_replicas("running", self.core.running());
                        metrics.set_replicas("refused", refused.count());
                        metrics.set_replicas("assigned", wanted.containers.len());
                    }
                }
                None => {}
            }
            if !fx.engine.is_empty() {
                let n = fx.engine.len();
                let started = self.act(std::mem::take(&mut fx.engine), &wanted.containers);
                let started = started.await;
                self.core.advance(
                    Results {
                        started,
                        wrote: false,
                    },
                    At::now(),
                );
                tracing::debug!("reconcile: {n} engine actions done");
            }
            if fx.done {
                self.links.converge(&wanted.containers);
                self.report(fx).await;
                return;
            }
        }
    }

    /// Files first: a container must find its directories and /etc/hosts at start, and
    /// running ones get the current replica list; then addresses, before containers: a port
    /// is published on the replica's address, so the address must be there when the
    /// container starts. A replica whose files cannot be prepared safely (a link where a
    /// directory must be), or whose address cannot be added, does not run. The addresses
    /// added (not yet announced), and whether the host refused any replica.
    async fn prepare_host(&mut self, desired: &mut Desired) -> (Vec<address::Added>, bool) {
        let ready = desired.values().filter(|d| d.is_ok()).count();
        for d in desired.values_mut() {
            if let Ok(c) = d
                && let Err(e) = self.host.prepare_files(c, &self.cfg.name)
            {
                *d = Err(Unrunnable::Files(e.to_string()));
            }
        }
        let added = self.ensure_addresses(desired).await;
        let refused = desired.values().filter(|d| d.is_ok()).count() < ready;
        (added, refused)
    }

    /// The end of a pass or a report: the statuses that changed written, roles asked for,
    /// notifications delivered.
    async fn report(&mut self, fx: Effects) {
        let wrote = self.write_status(fx.puts, fx.deletes).await;
        self.core.advance(
            Results {
                started: Vec::new(),
                wrote,
            },
            At::now(),
        );
        for (k, role) in fx.roles {
            self.links.ask(&k, role);
        }
        for (k, n) in &fx.notify {
            self.links.notify(k, n);
        }
    }

    /// Takes the plan's engine actions (removals were counted as this agent's own stops):
    /// every container's lane run side by side; what came of each create and start.
    async fn act(
        &self,
        actions: Vec<Action>,
        desired: &Desired,
    ) -> Vec<(ReplicaKey, Started, bool)> {
        /// Engine calls in flight at once: independent replicas are created, started and
        /// removed together, so removing ten costs one stop grace, not ten.
        const PARALLEL: usize = 16;
        tracing::debug!("acting: {actions:?}");
        let lanes = lanes(actions, desired);
        let ctx = Lane {
            engine: &self.engine,
            gate: &self.gate,
            policy: &self.policy,
            node: &self.cfg.name,
            events: &self.events,
            desired,
        };
        let outcomes: Vec<Vec<Outcome>> =
            futures::stream::iter(lanes.into_values().map(|lane| ctx.run(lane)))
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
        self.record_starts(outcomes.into_iter().flatten())
    }

    /// What came of each create and start, as the core takes it, with an event for each
    /// replica started or restarted (one for the node when many) and each that failed.
    fn record_starts(
        &self,
        outcomes: impl Iterator<Item = Outcome>,
    ) -> Vec<(ReplicaKey, Started, bool)> {
        let node = self.cfg.name.clone();
        let (mut created, mut restarted) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        for (key, result, restart) in outcomes {
            let object = format!("replica/{key}");
            let started = match result {
                Ok(id) => {
                    if restart {
                        crate::metrics::get().restarts.inc();
                        restarted.push(object);
                    } else {
                        created.push(object);
                    }
                    Started::Ok(id)
                }
                Err(e) => {
                    let conflict = matches!(&e, StartError::Engine(e) if e.is_name_conflict());
                    // A name taken by a container this node does not own stays taken: said
                    // once per streak, not at every retry.
                    if conflict && self.core.conflicts(&key) > 0 {
                        tracing::debug!(replica = %key, "{e}");
                    } else {
                        tracing::warn!(replica = %key, "{e}");
                    }
                    if conflict {
                        Started::NameConflict(e.to_string())
                    } else {
                        self.events.warning("FailedStart", object, e.to_string());
                        Started::Failed(e.to_string())
                    }
                }
            };
            out.push((key, started, restart));
        }
        let whole = format!("node/{node}");
        let restarted_msg = format!("container restarted on {node}");
        self.events
            .normal_each("Restarted", &whole, restarted, &restarted_msg);
        let created_msg = format!("container created and started on {node}");
        self.events
            .normal_each("Started", &whole, created, &created_msg);
        out
    }

    /// Adds each replica's address (an address the host had before is refused: the
    /// replica reports why and does not start). Returns those added, not yet announced.
    async fn ensure_addresses(&mut self, desired: &mut Desired) -> Vec<address::Added> {
        let mut added_now = Vec::new();
        for d in desired.values_mut() {
            let Ok(c) = d else { continue };
            let Some(a) = c.address.clone() else { continue };
            // Fenced: no address comes back until the gate opens (the containers are not
            // started either).
            if !self.gate.is_open() {
                continue;
            }
            let ours = self.added.contains(&a.ip);
            // Recorded before it is added: a fence drops every recorded address.
            let (added, host) = (&mut self.added, &self.host);
            // An address that cannot be recorded (a full disk) is not added: the replica
            // reports why and does not start.
            let record = || {
                added.insert(a.ip);
                host.save_addresses(added).inspect_err(|_| {
                    added.remove(&a.ip);
                })
            };
            match self.host.ensure_address(&a, ours, record).await {
                Ok(added) => added_now.extend(added),
                Err(
                    e @ (address::AddressError::HostOwned { .. }
                    | address::AddressError::NetworkOrBroadcast { .. }
                    | address::AddressError::NotRecorded { .. }),
                ) => *d = Err(Unrunnable::Address(e.to_string())),
                Err(e) => tracing::warn!(replica = %c.name, "{e}"),
            }
        }
        added_now
    }

    /// Removes the addresses this agent added (or adopted) that no replica here needs.
    async fn drop_stale_addresses(&mut self, addrs: &BTreeMap<ReplicaKey, Option<Ipv4Addr>>) {
        let wanted: BTreeSet<Ipv4Addr> = addrs.values().flatten().copied().collect();
        let stale: Vec<Ipv4Addr> = self.added.difference(&wanted).copied().collect();
        if stale.is_empty() {
            return;
        }
        for ip in stale {
            match self.host.remove_address(ip).await {
                Ok(()) => {
                    self.added.remove(&ip);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        if let Err(e) = self.host.save_addresses(&self.added) {
            tracing::warn!("recording added addresses: {e}");
        }
    }

    /// Writes the statuses the core says changed, and deletes those of replicas that left
    /// (only while they hold the bytes this node wrote). True when the puts were stored.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn write_status(
        &mut self,
        puts: Vec<(ReplicaKey, Vec<u8>)>,
        deletes: Vec<(ReplicaKey, Vec<u8>)>,
    ) -> bool {
        for (k, bytes) in &puts {
            let Ok(new) = serde_json::from_slice::<ReplicaStatus>(bytes) else {
                continue;
            };
            for (kind, reason, message) in status_events(self.last_status.get(k), &new) {
                self.events
                    .record(kind, reason, format!("replica/{k}"), message);
            }
            self.last_status.insert(k.clone(), new);
        }
        for (k, _) in &deletes {
            self.last_status.remove(k);
        }
        let mut wrote = false;
        if !puts.is_empty() {
            let items = puts
                .into_iter()
                .map(|(k, v)| (self.keys.replica(&k.bundle, k.index), v))
                .collect();
            match self.store.put_many(items).await {
                Ok(_) => wrote = true,
                Err(e) => tracing::warn!("writing replica status: {e}"),
            }
        }
        for (k, bytes) in deletes {
            let key = self.keys.replica(&k.bundle, k.index);
            if let Err(e) = self.store.delete_if_value(&key, &bytes).await {
                tracing::warn!("{e}");
            }
        }
        wrote
    }
}

/// The actions on one container name (an outdated copy removed, then its replacement
/// created) stay in order, in one lane; different names' lanes run side by side.
fn lanes(actions: Vec<Action>, desired: &Desired) -> BTreeMap<String, Vec<Action>> {
    let mut lanes: BTreeMap<String, Vec<Action>> = BTreeMap::new();
    for a in actions {
        let name = match &a {
            Action::Remove { name, .. } => name.clone(),
            Action::Create(k) | Action::Start { key: k, .. } => desired
                .get(k)
                .and_then(|d| d.as_ref().ok())
                .map(|d| d.name.clone())
                .unwrap_or_else(|| k.to_string()),
        };
        lanes.entry(name).or_default().push(a);
    }
    lanes
}

/// A replica's create-and-start (restart false) or start (true), and its outcome.
type Outcome = (ReplicaKey, Result<String, StartError>, bool);

/// What one lane of engine actions works with.
struct Lane<'a, E> {
    engine: &'a E,
    gate: &'a Gate,
    policy: &'a HostPolicy,
    node: &'a str,
    events: &'a crate::events::Recorder,
    desired: &'a Desired,
}

impl<E: Engine> Lane<'_, E> {
    /// Runs one lane's actions in order: the outcome of each create and start.
    async fn run(&self, lane: Vec<Action>) -> Vec<Outcome> {
        let mut out = Vec::new();
        for action in lane {
            match action {
                Action::Remove {
                    id,
                    name,
                    replica,
                    stop_timeout,
                    why,
                } => self.remove(&id, &name, replica, stop_timeout, why).await,
                Action::Create(k) => {
                    if let Some(result) = self.create(&k).await {
                        out.push((k, result, false));
                    }
                }
                Action::Start { key, id } => {
                    if let Some(result) = self.start(&key, id).await {
                        out.push((key, result, true));
                    }
                }
            }
        }
        out
    }

    #[tracing::instrument(name = "remove", skip_all, fields(container = %name))]
    async fn remove(
        &self,
        id: &str,
        name: &str,
        replica: Option<ReplicaKey>,
        stop_timeout: Option<Duration>,
        why: &str,
    ) {
        tracing::info!(container = %name, "removing: {why}");
        let removed = crate::metrics::get().engine("remove", self.engine.remove(id, stop_timeout));
        let object = match &replica {
            Some(k) => format!("replica/{k}"),
            None => format!("node/{}", self.node),
        };
        match removed.await {
            Ok(()) => self.events.normal(
                "Killed",
                object,
                format!("container {name} stopped and removed: {why}"),
            ),
            Err(e) => {
                tracing::warn!("{e}");
                self.events.warning(
                    "FailedKill",
                    object,
                    format!("removing container {name}: {e}"),
                );
            }
        }
    }

    /// Creates and starts replica `k`'s container; None when nothing was tried (fenced, maybe
    /// while this lane waited for a stop, or no longer wanted).
    #[tracing::instrument(name = "create", skip_all, fields(replica = %k))]
    async fn create(&self, k: &ReplicaKey) -> Option<Result<String, StartError>> {
        let Some(Ok(d)) = self.desired.get(k) else {
            return None;
        };
        let pass = self.gate.pass()?;
        if let Some(why) = self.policy.sources_denied(&d.host_sources) {
            return Some(Err(StartError::Refused(why)));
        }
        let metrics = crate::metrics::get();
        let result = match metrics
            .engine("create", self.engine.create(d, self.node))
            .await
        {
            Ok(id) => start_gated(self.engine, self.gate, pass, id).await,
            Err(e) => Some(Err(e)),
        };
        result.map(|r| r.map_err(StartError::Engine))
    }

    /// Starts replica `key`'s stopped container `id`; None when fenced.
    #[tracing::instrument(name = "start", skip_all, fields(replica = %key))]
    async fn start(&self, key: &ReplicaKey, id: String) -> Option<Result<String, StartError>> {
        let pass = self.gate.pass()?;
        // Docker resolves the bind sources again at every start.
        let sources = self.desired.get(key).and_then(|d| d.as_ref().ok());
        if let Some(why) = sources.and_then(|d| self.policy.sources_denied(&d.host_sources)) {
            return Some(Err(StartError::Refused(why)));
        }
        let result = start_gated(self.engine, self.gate, pass, id).await?;
        Some(result.map_err(StartError::Engine))
    }
}

/// Why a replica's container was not created or started.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Engine(EngineError),
    /// The host policy refuses its host directories as they resolve now.
    #[error("{0}")]
    Refused(String),
}

/// What the node agent follows of the cluster for its replicas' tools.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Followed {
    /// `<prefix>/attributes/`.
    Attributes,
    /// `<prefix>/nodes/`: the hosts online.
    Hosts,
    /// `<prefix>/standby/`: the hosts in standby.
    Standby,
    /// `<prefix>/maintenance/`: the hosts left in maintenance.
    Maintenance,
    /// `<prefix>/replicas/<bundle>/`: a bundle's replica statuses.
    Replicas(String),
}

impl Followed {
    /// Everything to follow for replicas of `bundles` with a primitive here (nothing without).
    fn wanted(bundles: BTreeSet<String>) -> BTreeSet<Followed> {
        if bundles.is_empty() {
            return BTreeSet::new();
        }
        bundles
            .into_iter()
            .map(Followed::Replicas)
            .chain([
                Followed::Attributes,
                Followed::Hosts,
                Followed::Standby,
                Followed::Maintenance,
            ])
            .collect()
    }

    fn prefix(&self, keys: &Keys) -> String {
        match self {
            Followed::Attributes => keys.all_attributes(),
            Followed::Hosts => keys.nodes(),
            Followed::Standby => keys.standbys(),
            Followed::Maintenance => keys.maintenances(),
            Followed::Replicas(b) => keys.replicas(b),
        }
    }
}

type FollowedEvent = (
    Followed,
    Result<WatchEvent, crate::store::watch::WatchError>,
);

/// One watch task per followed prefix, their events on one channel, a cache each.
struct Following {
    tx: tokio::sync::mpsc::UnboundedSender<FollowedEvent>,
    rx: tokio::sync::mpsc::UnboundedReceiver<FollowedEvent>,
    watches: BTreeMap<Followed, (AbortOnDropHandle<()>, Cache)>,
}

impl Following {
    fn new() -> Following {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Following {
            tx,
            rx,
            watches: BTreeMap::new(),
        }
    }

    /// Follows exactly `wanted`: new watches started, those no longer wanted stopped.
    fn converge(&mut self, store: &Store, wanted: BTreeSet<Followed>) {
        self.watches.retain(|f, _| wanted.contains(f));
        for f in wanted {
            if self.watches.contains_key(&f) {
                continue;
            }
            let (tx, members, prefix) = (
                self.tx.clone(),
                store.members().clone(),
                f.prefix(store.keys()),
            );
            let tag = f.clone();
            let task = tokio::spawn(async move {
                let mut s = Box::pin(watch_prefix(members, prefix, WatchConfig::default()));
                while let Some(ev) = s.next().await {
                    if tx.send((tag.clone(), ev)).is_err() {
                        return;
                    }
                }
            });
            self.watches
                .insert(f, (AbortOnDropHandle::new(task), Cache::default()));
        }
    }

    /// Waits for events, takes every one already there, and says what they changed.
    async fn changed(&mut self) -> BTreeSet<Followed> {
        let mut changed = BTreeSet::new();
        let Some(first) = self.rx.recv().await else {
            return changed;
        };
        let mut next = Some(first);
        while let Some((f, ev)) = next.take() {
            match (self.watches.get_mut(&f), ev) {
                (Some((_, cache)), Ok(ev)) => {
                    cache.apply(&ev);
                    changed.insert(f);
                }
                (_, Err(e)) => tracing::warn!("following {f:?}: {e}"),
                // A watch stopped since: its late events are dropped.
                (None, Ok(_)) => {}
            }
            next = self.rx.try_recv().ok();
        }
        changed
    }

    fn cache(&self, f: &Followed) -> &Cache {
        &self.watches[f].1
    }
}

/// The hosts online in `cache` (the watch of `<prefix>/nodes/`): name → registration lease.
fn decode_hosts(keys: &Keys, cache: &Cache) -> BTreeMap<String, i64> {
    cache
        .items
        .values()
        .filter_map(|kv| match keys.parse(&kv.key)? {
            crate::store::keys::Key::Node(name) => Some((name.to_string(), kv.lease)),
            _ => None,
        })
        .collect()
}

/// The nodes named by the keys in `cache` (the watch of `<prefix>/standby/` or
/// `<prefix>/maintenance/`).
fn decode_node_names(keys: &Keys, cache: &Cache) -> BTreeSet<String> {
    cache
        .items
        .values()
        .filter_map(|kv| match keys.parse(&kv.key)? {
            crate::store::keys::Key::Standby(n) | crate::store::keys::Key::Maintenance(n) => {
                Some(n.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The replica statuses in `cache` (the watch of one bundle's `<prefix>/replicas/<b>/`).
fn decode_statuses(keys: &Keys, cache: &Cache) -> BTreeMap<u32, ReplicaStatus> {
    cache
        .items
        .values()
        .filter_map(|kv| match keys.parse(&kv.key)? {
            crate::store::keys::Key::Replica { index, .. } => {
                Some((index, serde_json::from_slice(&kv.value).ok()?))
            }
            _ => None,
        })
        .collect()
}

/// Every attribute in `cache` (the watch of `<prefix>/attributes/`), by key.
fn decode_attributes(
    keys: &Keys,
    cache: &Cache,
) -> BTreeMap<crate::model::attributes::AttrKey, String> {
    cache
        .items
        .values()
        .filter_map(|kv| match keys.parse(&kv.key)? {
            crate::store::keys::Key::Attribute {
                section,
                owner,
                name,
            } => Some((
                crate::model::attributes::AttrKey {
                    section,
                    owner: owner.to_string(),
                    name: name.to_string(),
                },
                String::from_utf8(kv.value.clone()).ok()?,
            )),
            _ => None,
        })
        .collect()
}

/// Starts container `id` (created with `pass`) unless the node was fenced since `pass` was
/// taken; a start that was in flight when the fence fired is undone at once (removed without
/// a grace period). `None`: fenced, nothing runs.
async fn start_gated<E: Engine>(
    engine: &E,
    gate: &Gate,
    pass: super::gate::Pass,
    id: String,
) -> Option<Result<String, EngineError>> {
    let metrics = crate::metrics::get();
    let started = if gate.holds(pass) {
        Some(metrics.engine("start", engine.start(&id)).await)
    } else {
        None
    };
    if gate.holds(pass) {
        return started.map(|r| r.map(|()| id));
    }
    tracing::warn!(container = %id, "fenced while starting: removing it");
    if let Err(e) = engine.remove(&id, Some(Duration::ZERO)).await {
        tracing::warn!("removing {id} after a fence: {e}");
    }
    None
}

/// What changed between a replica's last written status and its new one, as events: the
/// primitive promoted or demoted, failed (a new failure recorded), or recovered by its
/// agent (its restart count rose).
fn status_events(
    old: Option<&ReplicaStatus>,
    new: &ReplicaStatus,
) -> Vec<(crate::events::EventType, &'static str, String)> {
    use crate::events::EventType::{Normal, Warning};
    use crate::model::cluster::Role;
    let mut out = Vec::new();
    let role = |s: Option<&ReplicaStatus>| s.and_then(|s| s.primitive.as_ref()?.role);
    match (role(old), role(Some(new))) {
        (was, Some(Role::Promoted)) if was != Some(Role::Promoted) => {
            out.push((Normal, "Promoted", format!("promoted on {}", new.node)))
        }
        (Some(Role::Promoted), Some(Role::Unpromoted)) => {
            out.push((Normal, "Demoted", format!("demoted on {}", new.node)))
        }
        _ => {}
    }
    if let Some(f) = &new.last_failure
        && old.and_then(|o| o.last_failure.as_ref()) != Some(f)
    {
        out.push((Warning, "Failed", f.reason.clone()));
    }
    let restarts = |s: Option<&ReplicaStatus>| {
        s.and_then(|s| s.primitive.as_ref())
            .map_or(0, |p| p.restarts)
    };
    if restarts(Some(new)) > restarts(old) {
        let last = new
            .primitive
            .as_ref()
            .and_then(|p| p.last.iter().rev().find(|op| !op.succeeded()))
            .map(|op| format!(": {} {} ({})", op.action, op.rc_name, op.output.trim()))
            .unwrap_or_default();
        out.push((
            Warning,
            "Unhealthy",
            format!("the primitive failed and was recovered{last}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::status_events;
    use crate::model::cluster::{Failure, PrimitiveState, ReplicaStatus, Role};

    fn st(role: Option<Role>, restarts: u32, failure: Option<u64>) -> ReplicaStatus {
        ReplicaStatus {
            node: "n1".into(),
            last_failure: failure.map(|time| Failure {
                reason: "exited with 1".into(),
                time,
            }),
            primitive: Some(PrimitiveState {
                role,
                restarts,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn reasons(old: Option<&ReplicaStatus>, new: &ReplicaStatus) -> Vec<&'static str> {
        status_events(old, new)
            .into_iter()
            .map(|(_, r, _)| r)
            .collect()
    }

    #[test]
    fn status_changes_are_events_and_the_same_status_is_none() {
        let unpromoted = st(Some(Role::Unpromoted), 0, None);
        let promoted = st(Some(Role::Promoted), 0, None);
        assert_eq!(reasons(Some(&unpromoted), &promoted), ["Promoted"]);
        assert_eq!(reasons(Some(&promoted), &unpromoted), ["Demoted"]);
        assert!(reasons(Some(&promoted), &promoted).is_empty());
        assert!(reasons(None, &unpromoted).is_empty());
        let failed = st(Some(Role::Unpromoted), 0, Some(5));
        assert_eq!(reasons(Some(&unpromoted), &failed), ["Failed"]);
        assert!(reasons(Some(&failed), &failed).is_empty());
        let recovered = st(Some(Role::Unpromoted), 1, Some(5));
        assert_eq!(reasons(Some(&failed), &recovered), ["Unhealthy"]);
    }
}
