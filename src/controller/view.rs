//! The cluster as the controller's cache shows it: bundles decoded once per write, nodes,
//! assignments and replica statuses; unusable or overlapping bundles set aside with why, and
//! their last good value kept.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::placement::{History, NodeView, Replica};
use crate::model::cluster::{Assignment, NodeInfo, ReplicaStatus};
use crate::model::rollout::RolloutControl;
use crate::model::{Bundle, BundleStatus};
use crate::store::keys::Key;
use crate::store::watch::Cache;
use crate::store::{Keys, StoreError, decode_entry};

/// The cluster as the cache shows it.
pub struct View {
    /// (Shared with the decode memo: a pass copies no bundle, only those bans or a move
    /// change.)
    pub bundles: BTreeMap<String, Arc<Bundle>>,
    /// Bundles whose stored value cannot be used, and why. Such a value is never taken as a
    /// delete: [`View::keep_last_good`] puts the last good value back into `bundles`.
    pub invalid: BTreeMap<String, String>,
    /// The mod revision of each bundle's spec key (to tell which of two was written later).
    pub revisions: BTreeMap<String, i64>,
    /// Online (registered) nodes, and nodes in maintenance (flagged).
    pub nodes: Vec<NodeView>,
    /// (node, bundle) → assignment.
    /// (Shared with the decode memo: a pass copies no value.)
    pub assignments: BTreeMap<(String, String), Arc<Assignment>>,
    /// Per bundle, the spec its assignments carry (the newest generation when several
    /// do): its last good value, and the copy a pass's new assignments share when equal.
    pub placed_specs: BTreeMap<String, Arc<Bundle>>,
    pub current: BTreeMap<Replica, String>,
    pub statuses: BTreeMap<Replica, Arc<ReplicaStatus>>,
    pub history: BTreeMap<Replica, History>,
    /// Bundles with a status key.
    pub status_keys: Vec<String>,
    /// Bundle statuses as the controller wrote them (as the controller's memo keeps them,
    /// only what a pass reads back: see [`Decoded::slim`]).
    pub bundle_statuses: BTreeMap<String, Arc<BundleStatus>>,
    /// A digest of each bundle status key's stored bytes ([`status_digest`]): a pass
    /// writes a status whose bytes differ.
    pub status_digests: BTreeMap<String, [u8; 16]>,
    /// When each bundle's failures were last cleaned up (`berth cleanup`, Unix seconds):
    /// failures up to then no longer count (their histories are cleared here).
    pub cleanups: BTreeMap<String, u64>,
    /// Bundles with a `berth ban` key (its locations are added to the bundle above).
    pub banned: BTreeSet<String>,
    /// Bundles whose rollout is paused (`berth rollout pause`).
    pub paused: BTreeSet<String>,
    /// Per bundle, the generations whose spec the history keeps (the values are read from
    /// the cache only when needed: a rollback).
    pub spec_generations: BTreeMap<String, BTreeSet<i64>>,
    /// Status writes held back one pass (the controller sets this; `None`, as
    /// [`View::read`] leaves it, writes every status in the pass that decides it):
    /// `Some` holds the bundles the last pass held back, whose status this pass writes.
    /// See [`super::reconcile::Outcome::deferred`].
    pub deferred: Option<BTreeSet<String>>,
}

/// Values decoded (bundles also validated), kept across reconciles: a value is parsed once
/// per write of its key (its mod revision), not on every pass (at 10,000 bundles, decoding
/// every assignment and status again cost a third of a second a pass).
#[derive(Debug, Default)]
pub struct Decoded {
    items: BTreeMap<String, (i64, Value)>,
    /// One copy of each bundle spec the assignments carry: equal specs decoded from many
    /// assignments (one per node) share it.
    specs: std::collections::HashMap<String, Arc<Bundle>>,
    /// Keep of statuses only what the controller reads ([`Decoded::slim`]).
    slim: bool,
}

/// One decoded value; `None` (or the error) when it does not decode.
#[derive(Debug)]
enum Value {
    Bundle(Result<Arc<Bundle>, String>),
    Assignment(Option<Arc<Assignment>>),
    Replica(Option<Arc<ReplicaStatus>>),
    Status(Option<Arc<BundleStatus>>, [u8; 16]),
}

/// What tells two stored bundle statuses apart: a digest of their bytes (the controller
/// writes a status whose bytes differ from the stored ones).
pub fn status_digest(bytes: &[u8]) -> [u8; 16] {
    let h = <sha2::Sha256 as sha2::Digest>::digest(bytes);
    let mut d = [0; 16];
    d.copy_from_slice(&h[..16]);
    d
}

/// A replica status as the controller reads it: what placement, statuses, promotion and
/// rollouts use (node, state, generation, failures, primitive state, role and score, start
/// time); the container's id, name, address, ports and the primitive's recent operations
/// are the CLI's and the user's, not the controller's.
fn slim_replica(mut st: ReplicaStatus) -> ReplicaStatus {
    st.container_id = String::new();
    st.container_name = String::new();
    st.address = None;
    st.ports = Vec::new();
    if let Some(p) = &mut st.primitive {
        p.last = Default::default();
    }
    st
}

/// A bundle status as the controller reads it back: whether it was invalid, each row's
/// state, reason and failures (events, and history that outlives a replica's status), and
/// the rollout (a rollback stands until the bundle changes). Its conditions, names, nodes
/// and addresses are rebuilt every pass and told apart by [`status_digest`].
fn slim_status(st: BundleStatus) -> BundleStatus {
    BundleStatus {
        invalid: st.invalid,
        replica_rows: st
            .replica_rows
            .into_iter()
            .map(|r| crate::model::ReplicaRow {
                index: r.index,
                state: r.state,
                reason: r.reason,
                fail_counts: r.fail_counts,
                last_failure: r.last_failure,
                ..Default::default()
            })
            .collect(),
        rollout: st.rollout,
        ..Default::default()
    }
}

impl Decoded {
    /// A memo for the controller: replica and bundle statuses keep only what a pass reads
    /// (at 10,000 bundles, decoded statuses were the largest part of its memory). A view
    /// read through it shows no conditions, container ids or operation histories: the CLI
    /// reads through a full one ([`View::read`]).
    pub fn slim() -> Decoded {
        Decoded {
            slim: true,
            ..Decoded::default()
        }
    }

    /// The value of `kv`, decoded by `decode` unless it was at this mod revision.
    fn memo(&mut self, kv: &crate::store::Kv, decode: impl FnOnce() -> Value) -> &Value {
        memo_in(&mut self.items, kv, decode)
    }

    /// The bundle in `kv` (a `bundles/<name>` key), or why it cannot be used.
    /// (The spec is shared with the assignments that carry it, when equal: one copy per
    /// bundle, not two.)
    fn bundle(&mut self, keys: &Keys, kv: &crate::store::Kv) -> Result<Arc<Bundle>, String> {
        let specs = &mut self.specs;
        let got = memo_in(&mut self.items, kv, || {
            Value::Bundle(match decode_entry(keys, kv, None) {
                Ok(b) => Ok(share(specs, &Arc::new(b.value))),
                Err(StoreError::Decode { source, .. }) => Err(source.to_string()),
                Err(e) => Err(e.to_string()),
            })
        });
        match got {
            Value::Bundle(b) => b.clone(),
            _ => Err("not a bundle".into()),
        }
    }

    /// Forgets keys no longer in the cache: one walk of both, in key order (a lookup per
    /// key compared the long shared prefix of 80,000 keys again and again).
    fn retain(&mut self, cache: &Cache) {
        let mut held = cache.items.keys().peekable();
        self.items.retain(|k, _| {
            while held.next_if(|c| *c < k).is_some() {}
            held.peek().is_some_and(|c| *c == k)
        });
        self.specs.retain(|_, b| Arc::strong_count(b) > 1);
    }

    /// Drops the bytes of the values this memo holds decoded at their current revision
    /// (assignments, replica and bundle statuses: nothing reads those bytes again until the
    /// key is written anew, and they are a fifth of the controller's memory at 30,000
    /// replicas). Bundle specs keep theirs: `decode_entry` reports from them, and the
    /// history keeps spec values as bytes too. The memo must live as long as the cache
    /// (the controller's does): a fresh memo would see empty values.
    pub fn release(&self, cache: &mut Cache) {
        for (key, kv) in cache.items.iter_mut() {
            if kv.value.is_empty() {
                continue;
            }
            let held = self.items.get(key).is_some_and(|(rev, v)| {
                *rev == kv.mod_revision
                    && matches!(
                        v,
                        Value::Assignment(_) | Value::Replica(_) | Value::Status(..)
                    )
            });
            if held {
                kv.value = Vec::new();
            }
        }
    }

    /// The assignment in `kv` (see [`Decoded::memo`]), its specs shared with equal ones of
    /// other assignments.
    fn assignment(&mut self, kv: &crate::store::Kv) -> Option<Arc<Assignment>> {
        let specs = &mut self.specs;
        let decode = || Value::Assignment(shared_assignment(kv, specs));
        match memo_in(&mut self.items, kv, decode) {
            Value::Assignment(a) => a.clone(),
            _ => None,
        }
    }
}

/// The value of `kv` in `items`, decoded by `decode` unless it was at this mod revision.
fn memo_in<'a>(
    items: &'a mut BTreeMap<String, (i64, Value)>,
    kv: &crate::store::Kv,
    decode: impl FnOnce() -> Value,
) -> &'a Value {
    let fresh = items
        .get(&kv.key)
        .is_some_and(|(rev, _)| *rev == kv.mod_revision);
    if !fresh {
        items.insert(kv.key.clone(), (kv.mod_revision, decode()));
    }
    &items[&kv.key].1
}

/// The assignment in `kv`, with its specs shared (see [`share`]).
fn shared_assignment(
    kv: &crate::store::Kv,
    specs: &mut std::collections::HashMap<String, Arc<Bundle>>,
) -> Option<Arc<Assignment>> {
    let mut a = serde_json::from_slice::<Assignment>(&kv.value).ok()?;
    a.bundle = share(specs, &a.bundle);
    for h in &mut a.held {
        h.bundle = share(specs, &h.bundle);
    }
    Some(Arc::new(a))
}

/// The shared copy of a spec equal to `b` (`b` becomes it when there is none).
fn share(
    specs: &mut std::collections::HashMap<String, Arc<Bundle>>,
    b: &Arc<Bundle>,
) -> Arc<Bundle> {
    let key = format!("{}@{}", b.name(), b.metadata.generation.unwrap_or(0));
    match specs.get(&key) {
        Some(s) if **s == **b => s.clone(),
        _ => {
            specs.insert(key, b.clone());
            b.clone()
        }
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
            placed_specs: BTreeMap::new(),
            current: BTreeMap::new(),
            statuses: BTreeMap::new(),
            history: BTreeMap::new(),
            status_keys: Vec::new(),
            bundle_statuses: BTreeMap::new(),
            status_digests: BTreeMap::new(),
            paused: BTreeSet::new(),
            spec_generations: BTreeMap::new(),
            cleanups: BTreeMap::new(),
            banned: BTreeSet::new(),
            deferred: None,
        };
        let mut maintenance = Vec::new();
        let mut standby = BTreeSet::new();
        let mut bans: BTreeMap<String, crate::model::cluster::Bans> = BTreeMap::new();
        for (key, kv) in &cache.items {
            let Some(parsed) = keys.parse(key) else {
                continue;
            };
            match parsed {
                Key::Bundle(name) => {
                    v.revisions.insert(name.to_string(), kv.mod_revision);
                    match decoded.bundle(keys, kv) {
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
                            maintenance: false,
                            ..Default::default()
                        });
                    }
                }
                Key::Maintenance(_) => {
                    if let Ok(n) = serde_json::from_slice::<NodeInfo>(&kv.value) {
                        maintenance.push(NodeView {
                            name: n.name,
                            labels: n.labels,
                            permits: n.permits,
                            maintenance: true,
                            ..Default::default()
                        });
                    }
                }
                Key::Standby(name) => {
                    standby.insert(name.to_string());
                }
                Key::Bans(name) => {
                    if let Ok(b) = serde_json::from_slice::<crate::model::cluster::Bans>(&kv.value)
                    {
                        bans.insert(name.to_string(), b);
                    }
                }
                Key::Cleanup(name) => {
                    if let Ok(c) =
                        serde_json::from_slice::<crate::model::cluster::Cleanup>(&kv.value)
                    {
                        v.cleanups.insert(name.to_string(), c.at);
                    }
                }
                Key::Assignment { node, bundle } => {
                    if let Some(a) = decoded.assignment(kv) {
                        for i in &a.replicas {
                            v.current.insert((bundle.to_string(), *i), node.to_string());
                        }
                        let newer = v
                            .placed_specs
                            .get(bundle)
                            .is_none_or(|s| s.metadata.generation < a.bundle.metadata.generation);
                        if newer {
                            v.placed_specs.insert(bundle.to_string(), a.bundle.clone());
                        }
                        v.assignments
                            .insert((node.to_string(), bundle.to_string()), a);
                    }
                }
                Key::Replica { bundle, index: i } => {
                    let slim = decoded.slim;
                    let got = decoded.memo(kv, || {
                        let st = serde_json::from_slice::<ReplicaStatus>(&kv.value).ok();
                        let st = if slim { st.map(slim_replica) } else { st };
                        Value::Replica(st.map(Arc::new))
                    });
                    if let Value::Replica(Some(st)) = got {
                        let st = st.clone();
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
                Key::Rollout(name) => {
                    let paused =
                        serde_json::from_slice::<RolloutControl>(&kv.value).is_ok_and(|c| c.paused);
                    if paused {
                        v.paused.insert(name.to_string());
                    }
                }
                Key::SpecHistory { bundle, generation } => {
                    v.spec_generations
                        .entry(bundle.to_string())
                        .or_default()
                        .insert(generation);
                }
                Key::BundleStatus(name) => {
                    v.status_keys.push(name.to_string());
                    let slim = decoded.slim;
                    let got = decoded.memo(kv, || {
                        let st = serde_json::from_slice::<BundleStatus>(&kv.value).ok();
                        let st = if slim { st.map(slim_status) } else { st };
                        Value::Status(st.map(Arc::new), status_digest(&kv.value))
                    });
                    if let Value::Status(st, digest) = got {
                        v.status_digests.insert(name.to_string(), *digest);
                        if let Some(st) = st {
                            v.bundle_statuses.insert(name.to_string(), st.clone());
                        }
                    }
                }
            }
        }
        // A node in maintenance keeps its replicas while its agent is away; once the agent
        // is back (registered), it is an online node like any other.
        for m in maintenance {
            if !v.nodes.iter().any(|n| n.name == m.name) {
                v.nodes.push(m);
            }
        }
        let mut promoted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for ((bundle, _), st) in &v.statuses {
            if st.primitive.as_ref().and_then(|p| p.role)
                == Some(crate::model::cluster::Role::Promoted)
            {
                promoted.entry(&st.node).or_default().push(bundle);
            }
        }
        for n in &mut v.nodes {
            n.standby = standby.contains(&n.name);
            if let Some(bundles) = promoted.get(n.name.as_str()) {
                n.promoted = bundles.iter().map(|b| b.to_string()).collect();
            }
        }
        // Failures the controller recorded in the bundle's status rows count too: a replica
        // status goes when its replica leaves a node, and with it the history that bans it
        // from there.
        for (name, st) in &v.bundle_statuses {
            for row in st.replica_rows.iter().filter(|r| !r.fail_counts.is_empty()) {
                let h = v.history.entry((name.clone(), row.index)).or_default();
                for (node, n) in &row.fail_counts {
                    let c = h.fail_counts.entry(node.clone()).or_default();
                    *c = (*c).max(*n);
                }
                h.last_failure = h.last_failure.max(row.last_failure);
            }
        }
        // Failures a cleanup came after no longer count, whatever the statuses still say
        // (a replica pending everywhere has no agent to rewrite its status).
        for ((bundle, _), h) in v.history.iter_mut() {
            if let Some(&at) = v.cleanups.get(bundle)
                && h.last_failure.is_none_or(|t| t <= at)
            {
                h.fail_counts.clear();
                h.last_failure = None;
            }
        }
        // `berth ban`: a -INFINITY location per banned node, as crm_resource's cli-ban
        // constraints, on top of the bundle's own.
        for (name, bans) in bans {
            v.banned.insert(name.clone());
            if let Some(b) = v.bundles.get_mut(&name) {
                Arc::make_mut(b)
                    .spec
                    .locations
                    .extend(bans.nodes.into_iter().map(|node| crate::model::Location {
                        node: Some(node),
                        label: None,
                        score: "-INFINITY".into(),
                    }));
                if let Some(to) = bans.prefer {
                    v.moving(&name, &to);
                }
            }
        }
        v.refuse_overlaps();
        v.keep_last_good();
        v
    }
}

impl View {
    /// `berth move` (crm_resource --move, a cli-prefer constraint): an INFINITY location for
    /// the node and, while none of the bundle's replicas runs there and the node is online
    /// and not in standby, its highest replica counted as placed nowhere, so that placement
    /// sends it there (a running replica otherwise never moves for a better score). Once
    /// one runs there, nothing more moves.
    fn moving(&mut self, bundle: &str, to: &str) {
        let Some(b) = self.bundles.get_mut(bundle) else {
            return;
        };
        Arc::make_mut(b)
            .spec
            .locations
            .push(crate::model::Location {
                node: Some(to.to_string()),
                label: None,
                score: "INFINITY".into(),
            });
        let range = (bundle.to_string(), 0)..=(bundle.to_string(), u32::MAX);
        let there = self.current.range(range.clone()).any(|(_, n)| n == to);
        let available = self.nodes.iter().any(|n| n.name == to && !n.standby);
        if there || !available {
            return;
        }
        if let Some(last) = self
            .current
            .range(range)
            .map(|(k, _)| k.clone())
            .next_back()
        {
            self.current.remove(&last);
        }
    }

    /// Refuses bundles whose replica addresses overlap a bundle written before them: they
    /// become invalid (and keep their last good value, see [`View::keep_last_good`]).
    fn refuse_overlaps(&mut self) {
        let overlaps = crate::model::address_overlaps(
            self.bundles
                .values()
                .map(|b| (&**b, self.revisions.get(b.name()).copied().unwrap_or(0))),
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
            if let Some(good) = self.placed_specs.get(name) {
                let collides = crate::model::address_overlaps(
                    self.bundles
                        .values()
                        .map(|b| (&**b, 0))
                        .chain(std::iter::once((&**good, 1))),
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
