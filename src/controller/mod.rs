//! The controller (`berth controller`): turns bundles into per-node assignments, keeps them
//! right as nodes and replicas come and go, and writes each bundle's status. Several may run;
//! one leads through an etcd election, the others wait in it.
//!
//! - [`placement`]: where every replica runs (pure, deterministic);
//! - this file: the election, one watch of the whole prefix into a cache, and a reconcile
//!   that reads the cache, places, and writes only what changed.

pub mod placement;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::cluster::{
    Assignment, NodeInfo, Phase, PrimitiveState, ReplicaState, ReplicaStatus, Role,
};
use crate::model::{Bundle, BundleStatus, Condition, ReplicaRow};
use crate::store::keys::Key;
use crate::store::lease::{LeaseEnd, keep_alive};
use crate::store::watch::{Cache, WatchConfig, watch_prefix};
use crate::store::{Expect, Keys, Store, StoreError, Write, batches, decode_entry};
use placement::{History, NodeView, Placement, Replica, managed, place, wanted_running};

/// The first retry of a failed reconcile, and the longest wait between retries.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => futures::future::pending().await,
    }
}

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This controller's name in the election (default: host name and pid).
    pub name: String,
    /// Leadership lease TTL (default 5 s): a standby takes over this long after a leader
    /// dies.
    pub lease_ttl: Duration,
    /// A full reconcile this often without events (default 10 s): failure-timeout expiry
    /// needs a clock, the rest is event driven.
    pub resync: Duration,
}

impl ControllerConfig {
    pub fn new(name: impl Into<String>) -> Self {
        ControllerConfig {
            name: name.into(),
            lease_ttl: Duration::from_secs(5),
            resync: Duration::from_secs(10),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Campaigns for leadership and leads until `shutdown`; a controller that loses its lease
/// stops acting and campaigns again.
pub async fn run(
    store: Store,
    cfg: ControllerConfig,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let election = format!("{}election/controller", store.keys().root());
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let lease = match store.grant_lease(cfg.lease_ttl).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("controller: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(cfg.lease_ttl / 3) => continue,
                }
            }
        };
        let (renewed_tx, _renewed) = watch::channel(tokio::time::Instant::now());
        let leading = CancellationToken::new();
        let lease_task = {
            let (store, shutdown, leading) = (store.clone(), shutdown.clone(), leading.clone());
            let ttl = cfg.lease_ttl;
            tokio::spawn(async move {
                let end = keep_alive(&store, lease, ttl, &renewed_tx, &shutdown).await;
                leading.cancel();
                end
            })
        };
        let mut client = store.client();
        tracing::info!(name = %cfg.name, "campaigning for leadership");
        let won = tokio::select! {
            _ = leading.cancelled() => None,
            r = client.campaign(election.clone(), cfg.name.clone(), lease) => r.ok(),
        };
        if let Some(resp) = won {
            tracing::info!(name = %cfg.name, "leading");
            let mut c = Controller::new(store.clone(), cfg.clone());
            c.leader_key = resp
                .leader()
                .map(|k| String::from_utf8_lossy(k.key()).into_owned());
            c.lead(&leading).await;
            if let Some(key) = resp.leader().cloned() {
                let _ = client
                    .resign(Some(etcd_client::ResignOptions::new().with_leader(key)))
                    .await;
            }
            tracing::info!(name = %cfg.name, "no longer leading");
        }
        leading.cancel();
        if lease_task.await.ok() == Some(LeaseEnd::Shutdown) || shutdown.is_cancelled() {
            let _ = store.revoke_lease(lease).await;
            return Ok(());
        }
        let _ = store.revoke_lease(lease).await;
    }
}

/// The leader's state: a cache of everything under the prefix, and what it wrote last.
struct Controller {
    store: Store,
    keys: Keys,
    cfg: ControllerConfig,
    cache: Cache,
    /// This leader's election key: every write is guarded by its existence.
    leader_key: Option<String>,
    /// Bundle values decoded once per write, not once per reconcile.
    decoded: Decoded,
}

impl Controller {
    fn new(store: Store, cfg: ControllerConfig) -> Self {
        Controller {
            keys: store.keys().clone(),
            store,
            cfg,
            cache: Cache::default(),
            leader_key: None,
            decoded: Decoded::default(),
        }
    }

    async fn lead(&mut self, leading: &CancellationToken) {
        let mut events = Box::pin(watch_prefix(
            self.store.client(),
            self.keys.root(),
            WatchConfig::default(),
        ));
        let mut synced = false;
        let mut resync = tokio::time::interval(self.cfg.resync);
        // A failed reconcile is retried with backoff (100 ms doubling to 5 s, reset by a
        // success), not left to the next event or resync.
        let mut retry: Option<(tokio::time::Instant, Duration)> = None;
        loop {
            let retry_at = retry.map(|(at, _)| at);
            tokio::select! {
                _ = leading.cancelled() => return,
                _ = sleep_until(retry_at), if retry_at.is_some() => {}
                ev = events.next() => {
                    let mut take = |ev: Option<Result<_, _>>| match ev {
                        Some(Ok(ev)) => {
                            if matches!(ev, crate::store::watch::WatchEvent::Listed { .. }) {
                                synced = true;
                            }
                            self.cache.apply(&ev);
                        }
                        Some(Err(e)) => tracing::warn!("controller watch: {e}"),
                        None => {}
                    };
                    take(ev);
                    while let Some(ev) = events.next().now_or_never() {
                        take(ev);
                    }
                }
                _ = resync.tick() => {}
            }
            if synced && !leading.is_cancelled() {
                match self.reconcile().await {
                    Ok(()) => retry = None,
                    Err(e) => {
                        let wait = retry.map_or(RETRY_FIRST, |(_, w)| (w * 2).min(RETRY_MAX));
                        tracing::warn!("controller reconcile: {e}; retrying in {wait:?}");
                        retry = Some((tokio::time::Instant::now() + wait, wait));
                    }
                }
            }
        }
    }

    /// Reads the cache, places, writes the assignments and statuses that changed, and
    /// cleans up after deleted bundles.
    async fn reconcile(&mut self) -> Result<(), StoreError> {
        let view = View::read_with(&self.keys, &self.cache, &mut self.decoded);
        let now = unix_now();
        let managed_bundles: Vec<Bundle> = view
            .bundles
            .values()
            .filter(|b| managed(b))
            .cloned()
            .collect();
        let placement = place(
            &managed_bundles,
            &view.nodes,
            &view.current,
            &view.history,
            now,
        );
        let mut writes = Vec::new();

        // Assignments: placed replicas grouped per (node, bundle); unmanaged bundles keep
        // theirs, marked unmanaged.
        let mut desired: BTreeMap<(String, String), Assignment> = BTreeMap::new();
        for (bundle, replicas) in &placement.placed {
            let b = &view.bundles[bundle];
            let promoted = choose_promoted(b, replicas, &view);
            for (i, node) in replicas {
                desired
                    .entry((node.clone(), bundle.clone()))
                    .or_insert_with(|| Assignment {
                        bundle: b.desired_with_generation(),
                        replicas: Vec::new(),
                        managed: true,
                        promoted: vec![],
                    })
                    .replicas
                    .push(*i);
                if promoted.contains(i) {
                    desired
                        .get_mut(&(node.clone(), bundle.clone()))
                        .expect("just inserted")
                        .promoted
                        .push(*i);
                }
            }
        }
        for ((node, bundle), a) in &view.assignments {
            if let Some(b) = view.bundles.get(bundle)
                && !managed(b)
            {
                let mut kept = a.clone();
                kept.managed = false;
                desired.insert((node.clone(), bundle.clone()), kept);
            }
        }
        for ((node, bundle), a) in &desired {
            let value = serde_json::to_vec(a).expect("an assignment serializes");
            let key = self.keys.assignment(node, bundle);
            if self.cache.items.get(&key).map(|kv| &kv.value) != Some(&value) {
                writes.push(Write::Put {
                    key,
                    value,
                    expect: Expect::Any,
                });
            }
        }
        for (node, bundle) in view.assignments.keys() {
            if !desired.contains_key(&(node.clone(), bundle.clone())) {
                writes.push(Write::Delete {
                    key: self.keys.assignment(node, bundle),
                    expect: Expect::Any,
                });
            }
        }

        // Status of every bundle; one whose stored value cannot be used says why (with the
        // rows of its last good value, when it has one).
        let mut statuses: BTreeMap<&str, BundleStatus> = view
            .bundles
            .values()
            .map(|b| (b.name(), bundle_status(b, &placement, &view)))
            .collect();
        for (name, why) in &view.invalid {
            let st = statuses.entry(name.as_str()).or_default();
            st.invalid = Some(why.clone());
            st.conditions.push(Condition {
                kind: "Valid".into(),
                status: "False".into(),
                reason: "Invalid".into(),
                message: why.clone(),
            });
        }
        for (name, status) in &statuses {
            let value = serde_json::to_vec(&status).expect("a status serializes");
            let key = self.keys.bundle_status(name);
            if self.cache.items.get(&key).map(|kv| &kv.value) != Some(&value) {
                writes.push(Write::Put {
                    key,
                    value,
                    expect: Expect::Any,
                });
            }
        }

        // Deleted bundles: their assignments are gone (above). Replica keys of nodes that are
        // offline have no agent left to drop them; once no replica key remains, the status
        // goes too.
        let online: BTreeSet<&str> = view.nodes.iter().map(|n| n.name.as_str()).collect();
        let exists = |b: &str| view.bundles.contains_key(b) || view.invalid.contains_key(b);
        for ((bundle, i), st) in &view.statuses {
            if !exists(bundle) && !online.contains(st.node.as_str()) {
                writes.push(Write::Delete {
                    key: self.keys.replica(bundle, *i),
                    expect: Expect::Any,
                });
            }
        }
        for name in &view.status_keys {
            let replicas_left = view
                .statuses
                .iter()
                .any(|((b, _), st)| b == name && online.contains(st.node.as_str()));
            if !exists(name) && !replicas_left {
                writes.push(Write::Delete {
                    key: self.keys.bundle_status(name),
                    expect: Expect::Any,
                });
            }
        }

        self.commit(writes).await
    }

    /// Writes in transactions bounded by operations and bytes. A transaction etcd refuses
    /// is retried one write at a time, so that one bundle's write (too large, say) fails
    /// alone and every other one is still written; each write that still fails is logged
    /// with its key, and the first is returned after the rest went through, so that the
    /// loop retries. A conflict is the election guard gone: this leader is deposed, and
    /// writes nothing more.
    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let guard = self.leader_key.as_deref();
        let mut first_err = None;
        // Keeps a write's failure (logged with its key); a conflict ends the writing.
        let mut failed = |w: &Write, e: StoreError| match e {
            StoreError::TxnConflict { .. } => Err(e),
            e => {
                tracing::warn!(key = %w.key(), "controller write failed: {e}");
                first_err.get_or_insert(e);
                Ok(())
            }
        };
        for batch in batches(writes) {
            let Err(e) = self.store.commit_guarded(batch.clone(), guard).await else {
                continue;
            };
            if batch.len() == 1 {
                failed(&batch[0], e)?;
                continue;
            }
            for w in batch {
                if let Err(e) = self.store.commit_guarded(vec![w.clone()], guard).await {
                    failed(&w, e)?;
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Bundle {
    /// The bundle as an assignment carries it: desired state and its generation.
    fn desired_with_generation(&self) -> Bundle {
        let mut b = self.desired();
        b.metadata.generation = self.metadata.generation;
        b
    }
}

/// The cluster as the cache shows it.
pub struct View {
    pub bundles: BTreeMap<String, Bundle>,
    /// Bundles whose stored value cannot be used, and why. Such a value is never taken as a
    /// delete: [`View::keep_last_good`] puts the last good value back into `bundles`.
    pub invalid: BTreeMap<String, String>,
    /// The mod revision of each bundle's spec key (to tell which of two was written later).
    pub revisions: BTreeMap<String, i64>,
    /// Online (registered) nodes.
    pub nodes: Vec<NodeView>,
    /// (node, bundle) → assignment.
    pub assignments: BTreeMap<(String, String), Assignment>,
    pub current: BTreeMap<Replica, String>,
    pub statuses: BTreeMap<Replica, ReplicaStatus>,
    pub history: BTreeMap<Replica, History>,
    /// Bundles with a status key.
    pub status_keys: Vec<String>,
    /// Bundle statuses as the controller wrote them.
    pub bundle_statuses: BTreeMap<String, BundleStatus>,
}

/// Bundle values decoded and validated, kept across reconciles: a value is parsed once per
/// write of its key (its mod revision), not on every pass.
#[derive(Debug, Default)]
pub struct Decoded {
    items: BTreeMap<String, (i64, Result<Bundle, String>)>,
}

impl Decoded {
    /// The bundle in `kv` (a `bundles/<name>` key), or why it cannot be used.
    fn get(&mut self, keys: &Keys, kv: &crate::store::Kv) -> Result<Bundle, String> {
        if let Some((rev, got)) = self.items.get(&kv.key)
            && *rev == kv.mod_revision
        {
            return got.clone();
        }
        let got = match decode_entry(keys, kv, None) {
            Ok(b) => Ok(b.value),
            Err(StoreError::Decode { source, .. }) => Err(source.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.items
            .insert(kv.key.clone(), (kv.mod_revision, got.clone()));
        got
    }

    /// Forgets keys no longer in the cache.
    fn retain(&mut self, cache: &Cache) {
        self.items.retain(|k, _| cache.items.contains_key(k));
    }
}

impl View {
    /// Reads everything berth keeps under the prefix from a cache (or a one-off list). A
    /// bundle whose value cannot be used, or whose addresses overlap an older bundle's, is
    /// in `invalid`, and in `bundles` as last placed when it has been placed.
    pub fn read(keys: &Keys, cache: &Cache) -> View {
        View::read_with(keys, cache, &mut Decoded::default())
    }

    /// [`View::read`], decoding only the bundle values `decoded` has not seen at their
    /// current revision.
    pub fn read_with(keys: &Keys, cache: &Cache, decoded: &mut Decoded) -> View {
        decoded.retain(cache);
        let mut v = View {
            bundles: BTreeMap::new(),
            invalid: BTreeMap::new(),
            revisions: BTreeMap::new(),
            nodes: Vec::new(),
            assignments: BTreeMap::new(),
            current: BTreeMap::new(),
            statuses: BTreeMap::new(),
            history: BTreeMap::new(),
            status_keys: Vec::new(),
            bundle_statuses: BTreeMap::new(),
        };
        for (key, kv) in &cache.items {
            let Some(parsed) = keys.parse(key) else {
                continue;
            };
            match parsed {
                Key::Bundle(name) => {
                    v.revisions.insert(name.to_string(), kv.mod_revision);
                    match decoded.get(keys, kv) {
                        Ok(b) => {
                            v.bundles.insert(name.to_string(), b);
                        }
                        Err(why) => {
                            v.invalid.insert(name.to_string(), why);
                        }
                    }
                }
                Key::Node(_) => {
                    if let Ok(n) = serde_json::from_slice::<NodeInfo>(&kv.value) {
                        v.nodes.push(NodeView {
                            name: n.name,
                            labels: n.labels,
                            permits: n.permits,
                        });
                    }
                }
                Key::Assignment { node, bundle } => {
                    if let Ok(a) = serde_json::from_slice::<Assignment>(&kv.value) {
                        for i in &a.replicas {
                            v.current.insert((bundle.to_string(), *i), node.to_string());
                        }
                        v.assignments
                            .insert((node.to_string(), bundle.to_string()), a);
                    }
                }
                Key::Replica { bundle, index: i } => {
                    if let Ok(st) = serde_json::from_slice::<ReplicaStatus>(&kv.value) {
                        v.history.insert(
                            (bundle.to_string(), i),
                            History {
                                fail_counts: st.fail_counts.clone(),
                                last_failure: st.last_failure.as_ref().map(|f| f.time),
                            },
                        );
                        v.statuses.insert((bundle.to_string(), i), st);
                    }
                }
                Key::BundleStatus(name) => {
                    v.status_keys.push(name.to_string());
                    if let Ok(st) = serde_json::from_slice::<BundleStatus>(&kv.value) {
                        v.bundle_statuses.insert(name.to_string(), st);
                    }
                }
            }
        }
        v.refuse_overlaps();
        v.keep_last_good();
        v
    }
}

impl View {
    /// Refuses bundles whose replica addresses overlap a bundle written before them: they
    /// become invalid (and keep their last good value, see [`View::keep_last_good`]).
    fn refuse_overlaps(&mut self) {
        let overlaps = crate::model::address_overlaps(
            self.bundles
                .values()
                .map(|b| (b, self.revisions.get(b.name()).copied().unwrap_or(0))),
        );
        for (newer, older) in overlaps {
            self.bundles.remove(&newer);
            self.invalid.insert(
                newer,
                format!(
                    "spec.network.ipRangeStart: the replicas' addresses overlap bundle {older:?}'s"
                ),
            );
        }
    }

    /// Puts back, for each invalid bundle, the value it was last placed with (the bundle an
    /// assignment carries, the newest generation when several do): an unusable value leaves
    /// running replicas as they are. A last good value whose addresses collide with a valid
    /// bundle is not put back. An invalid bundle never placed stays out.
    fn keep_last_good(&mut self) {
        for name in self.invalid.keys() {
            let good = self
                .assignments
                .iter()
                .filter(|((_, b), _)| b == name)
                .map(|(_, a)| &a.bundle)
                .max_by_key(|b| b.metadata.generation);
            if let Some(good) = good {
                let collides = crate::model::address_overlaps(
                    self.bundles
                        .values()
                        .map(|b| (b, 0))
                        .chain(std::iter::once((good, 1))),
                )
                .iter()
                .any(|(newer, _)| newer == name);
                if !collides {
                    self.bundles.insert(name.clone(), good.clone());
                }
            }
        }
    }
}

/// For a promotable bundle, the replicas to run promoted: at most promoted-max, among those
/// whose primitive has started on the node they are placed on; the ones promoted now keep
/// it (no flapping), then the lowest ordinals. (The agents report no promotion scores yet.)
fn choose_promoted(b: &Bundle, placed: &BTreeMap<u32, String>, view: &View) -> BTreeSet<u32> {
    if b.spec.promoted_max() == 0 {
        return BTreeSet::new();
    }
    let running: Vec<Candidate> = placed
        .iter()
        .filter_map(|(i, node)| {
            let st = view.statuses.get(&(b.name().to_string(), *i))?;
            let asked = view
                .assignments
                .get(&(node.clone(), b.name().to_string()))
                .is_some_and(|a| a.promoted.contains(i));
            (st.node == *node).then_some(Candidate {
                ordinal: *i,
                primitive: st.primitive.as_ref()?,
                asked,
            })
        })
        .collect();
    pick_promoted(b.spec.promoted_max() as usize, &running)
}

/// A placed replica of a promotable bundle, as [`pick_promoted`] weighs it.
pub struct Candidate<'a> {
    pub ordinal: u32,
    /// What its remote agent reports.
    pub primitive: &'a PrimitiveState,
    /// The controller's assignment already asks for it to be promoted.
    pub asked: bool,
}

impl Candidate<'_> {
    /// Promoted, or on its way there: reported promoted, a promotion requested of its
    /// remote agent, or one asked for in its assignment. Such a replica counts against
    /// promoted-max until it reports itself unpromoted with no promotion requested.
    pub fn holds_promotion(&self) -> bool {
        let p = self.primitive;
        let promoted = Some(Role::Promoted);
        p.state != Phase::Stopped && (p.role == promoted || p.wanted_role == promoted || self.asked)
    }
}

/// Which of a bundle's replicas to promote: at most `max` of those started. When the agents
/// report promotion scores (`crm_master`), the highest scores win, and a replica with a
/// negative score or none is never promoted, as in Pacemaker. When no replica reports one,
/// every started replica may be promoted (berth's rule, for agents that do not use scores).
/// Ties go to a replica that holds its promotion already, so that a promotion does not move
/// for nothing, then to the lowest ordinal.
///
/// Demotions come first: while a replica that is to lose its promotion still holds it (see
/// [`Candidate::holds_promotion`]), no other is newly promoted, so there are never more than
/// `max` promoted at once.
pub fn pick_promoted(max: usize, replicas: &[Candidate]) -> BTreeSet<u32> {
    let started: Vec<&Candidate> = replicas
        .iter()
        .filter(|c| c.primitive.state == Phase::Started)
        .collect();
    let scored = started.iter().any(|c| c.primitive.score.is_some());
    let mut ranked: Vec<(std::cmp::Reverse<i64>, bool, u32)> = started
        .iter()
        .filter_map(|c| {
            let score = match c.primitive.score {
                Some(s) if s >= 0 => s,
                Some(_) => return None,
                None if scored => return None,
                None => 0,
            };
            Some((std::cmp::Reverse(score), !c.holds_promotion(), c.ordinal))
        })
        .collect();
    ranked.sort();
    let mut chosen: BTreeSet<u32> = ranked.into_iter().take(max).map(|(_, _, i)| i).collect();
    let holding: BTreeSet<u32> = replicas
        .iter()
        .filter(|c| c.holds_promotion())
        .map(|c| c.ordinal)
        .collect();
    if !holding.is_subset(&chosen) {
        chosen.retain(|i| holding.contains(i));
    }
    chosen
}

/// A bundle's status from the placement and the replicas' own reports.
fn bundle_status(b: &Bundle, placement: &Placement, view: &View) -> BundleStatus {
    let generation = b.metadata.generation.unwrap_or(0);
    let running_wanted = wanted_running(b);
    let desired = if running_wanted { b.spec.replicas() } else { 0 };
    let placed = placement.placed.get(b.name());
    let pending = placement.pending.get(b.name());
    let mut rows = Vec::new();
    let mut ready = 0;
    let (mut failed, mut unplaced) = (0, 0);
    for i in 0..b.spec.replicas() {
        let node = placed.and_then(|p| p.get(&i)).cloned().unwrap_or_default();
        let st = view
            .statuses
            .get(&(b.name().to_string(), i))
            .filter(|s| !node.is_empty() && s.node == node);
        let (state, reason) = match (running_wanted, st, pending.and_then(|p| p.get(&i))) {
            (false, _, _) => ("stopped".to_string(), "target-role is Stopped".to_string()),
            (_, _, Some(why)) => {
                unplaced += 1;
                ("pending".to_string(), why.clone())
            }
            (_, None, _) => ("pending".to_string(), String::new()),
            (_, Some(s), _) => {
                // Ready: running at this generation and, with a primitive, the primitive
                // started by the remote agent.
                let primitive_up = b.spec.primitive.is_none()
                    || s.primitive
                        .as_ref()
                        .is_some_and(|p| p.state == Phase::Started);
                if s.state == ReplicaState::Running && s.generation == generation && primitive_up {
                    ready += 1;
                }
                if s.state == ReplicaState::Failed {
                    failed += 1;
                }
                let why = s
                    .last_failure
                    .as_ref()
                    .filter(|_| s.state == ReplicaState::Failed);
                (
                    s.state.as_str().to_string(),
                    why.map(|f| f.reason.clone()).unwrap_or_default(),
                )
            }
        };
        rows.push(ReplicaRow {
            index: i,
            name: b.replica_name(i),
            node,
            address: b
                .spec
                .replica_address(i)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            state,
            reason,
            primitive: st
                .and_then(|s| s.primitive.as_ref())
                .map(|p| match p.role {
                    None => p.state.to_string(),
                    Some(r) => format!("{} ({r})", p.state),
                })
                .unwrap_or_default(),
        });
    }
    let cond = |kind: &str, on: bool, reason: &str, message: String| Condition {
        kind: kind.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
    };
    let conditions = vec![
        cond(
            "Available",
            ready >= desired,
            if ready >= desired {
                "AllReplicasReady"
            } else {
                "ReplicasNotReady"
            },
            format!("{ready}/{desired} replicas ready"),
        ),
        cond(
            "Progressing",
            ready < desired && failed == 0 && unplaced == 0,
            if ready < desired {
                "ReplicasStarting"
            } else {
                "Converged"
            },
            format!("generation {generation}"),
        ),
        cond(
            "Degraded",
            failed > 0 || unplaced > 0,
            if unplaced > 0 {
                "ReplicasUnplaceable"
            } else if failed > 0 {
                "ReplicasFailed"
            } else {
                "Healthy"
            },
            format!("{failed} failed, {unplaced} cannot be placed"),
        ),
    ];
    BundleStatus {
        observed_generation: generation,
        replicas: desired,
        ready_replicas: ready,
        conditions,
        replica_rows: rows,
        invalid: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prim(state: &str, role: &str, score: Option<i64>) -> PrimitiveState {
        PrimitiveState {
            state: serde_json::from_value(serde_json::json!(state)).unwrap(),
            role: Role::parse(role),
            score,
            ..Default::default()
        }
    }

    fn pick(max: usize, rs: &[PrimitiveState]) -> Vec<u32> {
        let rs: Vec<Candidate> = rs
            .iter()
            .enumerate()
            .map(|(i, p)| Candidate {
                ordinal: i as u32,
                primitive: p,
                asked: false,
            })
            .collect();
        pick_promoted(max, &rs).into_iter().collect()
    }

    #[test]
    fn the_highest_reported_promotion_scores_are_promoted() {
        let rs = [
            prim("started", "promoted", Some(5)),
            prim("started", "unpromoted", Some(50)),
            prim("started", "unpromoted", Some(10)),
        ];
        // 1 outscores the promoted 0, but is promoted only once 0 reports its demotion.
        assert_eq!(pick(1, &rs), Vec::<u32>::new());
        assert_eq!(pick(2, &rs), Vec::<u32>::new());
        let rs = [
            prim("started", "unpromoted", Some(5)),
            prim("started", "unpromoted", Some(50)),
            prim("started", "unpromoted", Some(10)),
        ];
        assert_eq!(pick(1, &rs), [1]);
        assert_eq!(pick(2, &rs), [1, 2]);
        assert_eq!(pick(0, &rs), Vec::<u32>::new());
    }

    #[test]
    fn a_promoted_replica_keeps_its_promotion_while_another_is_demoted() {
        let rs = [
            prim("started", "promoted", Some(20)),
            prim("started", "promoted", Some(5)),
            prim("started", "unpromoted", Some(10)),
        ];
        // max 2: 0 and 2 win; 1 is demoted first, and 0 stays promoted meanwhile.
        assert_eq!(pick(2, &rs), [0]);
    }

    #[test]
    fn negative_or_missing_scores_are_never_promoted_once_agents_report_scores() {
        let rs = [
            prim("started", "unpromoted", None),
            prim("started", "unpromoted", Some(-1)),
            prim("started", "unpromoted", Some(0)),
            prim("failed", "unpromoted", Some(100)),
        ];
        assert_eq!(pick(3, &rs), [2]);
    }

    #[test]
    fn without_scores_the_promoted_replica_stays_then_the_lowest_ordinal_wins() {
        let rs = [
            prim("started", "unpromoted", None),
            prim("started", "promoted", None),
            prim("starting", "", None),
        ];
        assert_eq!(pick(1, &rs), [1]);
        assert_eq!(pick(2, &rs), [0, 1]);
        let rs = [
            prim("started", "unpromoted", Some(7)),
            prim("started", "promoted", Some(7)),
        ];
        assert_eq!(pick(1, &rs), [1], "a tie keeps the promoted replica");
    }

    #[test]
    fn a_promotion_under_way_holds_until_it_is_dropped_and_reported_undone() {
        // 1 was asked to promote (its remote agent has the request): a tie stays with it.
        let mut asked = prim("started", "unpromoted", Some(5));
        asked.wanted_role = Some(Role::Promoted);
        let rs = [prim("started", "unpromoted", Some(5)), asked.clone()];
        assert_eq!(pick(1, &rs), [1]);
        // 0 now outscores it: 1 must first report the request gone before 0 is promoted.
        let rs = [prim("started", "unpromoted", Some(9)), asked];
        assert_eq!(pick(1, &rs), Vec::<u32>::new());
        // Asked in the controller's own assignment, not yet of the agent: the same.
        let rs = [
            prim("started", "unpromoted", Some(9)),
            prim("started", "unpromoted", Some(5)),
        ];
        let cs = [
            Candidate {
                ordinal: 0,
                primitive: &rs[0],
                asked: false,
            },
            Candidate {
                ordinal: 1,
                primitive: &rs[1],
                asked: true,
            },
        ];
        assert_eq!(pick_promoted(1, &cs), BTreeSet::new());
    }
}
