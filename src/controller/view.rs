//! The cluster as the controller's cache shows it: bundles decoded once per write, nodes,
//! assignments and replica statuses; unusable or overlapping bundles set aside with why, and
//! their last good value kept. The controller keeps one [`Live`] view and brings it up to
//! date key by key from what its cache says changed; the CLI reads one at once
//! ([`View::read`]): both through the same code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::placement::{History, NodeView};
use crate::model::ReplicaKey;
use crate::model::cluster::{Assignment, Bans, NodeInfo, ReplicaStatus};
use crate::model::rollout::RolloutControl;
use crate::model::{Bundle, BundleStatus};
use crate::store::keys::Key;
use crate::store::watch::Cache;
use crate::store::{Keys, Kv, StoreError, decode_entry};

/// The cluster as the cache shows it.
#[derive(Debug)]
pub struct View {
    /// (Shared with the decoded values `Live` keeps: a pass copies no bundle, only those
    /// bans or a move change.)
    pub bundles: BTreeMap<String, Arc<Bundle>>,
    /// Bundles whose stored value cannot be used, and why. Such a value is never taken as a
    /// delete: [`View::keep_last_good`] puts the last good value back into `bundles`.
    pub invalid: BTreeMap<String, String>,
    /// The mod revision of each bundle's spec key (to tell which of two was written later).
    pub revisions: BTreeMap<String, i64>,
    /// Online (registered) nodes, and nodes in maintenance (flagged).
    pub nodes: Vec<NodeView>,
    /// The registration lease of each online node (see [`View::reported_now`]).
    pub leases: BTreeMap<String, i64>,
    /// (node, bundle) → assignment.
    pub assignments: BTreeMap<(String, String), Arc<Assignment>>,
    /// The same by bundle: bundle → node → assignment.
    pub by_bundle: BTreeMap<String, BTreeMap<String, Arc<Assignment>>>,
    /// Per bundle, the spec its assignments carry (the newest generation when several
    /// do): its last good value, and the copy a pass's new assignments share when equal.
    pub placed_specs: BTreeMap<String, Arc<Bundle>>,
    pub current: BTreeMap<ReplicaKey, String>,
    pub statuses: BTreeMap<ReplicaKey, Arc<ReplicaStatus>>,
    pub history: BTreeMap<ReplicaKey, History>,
    /// Bundles with a status key.
    pub status_keys: BTreeSet<String>,
    /// Bundle statuses as the controller wrote them (as the controller's view keeps them,
    /// only what a pass reads back: see [`Live::slim`]).
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
    /// Promotion scores stored as transient node attributes (`master-<resource>` under
    /// `<p>/attributes/status/<node>/`), by (node, attribute name): what an agent set with
    /// `crm_master` or `crm_attribute -p`, also for another node (galera names its bootstrap
    /// node so), as Pacemaker's scheduler reads them from the CIB.
    pub promotion_scores: BTreeMap<(String, String), i64>,
    /// Status writes held back one pass (the controller sets this; `None`, as
    /// [`View::read`] leaves it, writes every status in the pass that decides it):
    /// `Some` holds the bundles the last pass held back, whose status this pass writes.
    /// See [`super::reconcile::Outcome::deferred`].
    pub deferred: Option<BTreeSet<String>>,
}

/// A view kept up to date with a cache key by key (the controller's): each pass decodes
/// only the keys written since the last, and derives again only what those keys feed (a
/// bundle's replicas' nodes, its failure history, its value with bans applied). Rebuilding
/// the whole view from 80,000 keys cost a third of each pass at 30,000 replicas.
#[derive(Debug)]
pub struct Live {
    view: View,
    /// Keep of statuses only what the controller reads ([`Live::slim`]).
    slim: bool,
    /// Whether the view was built from the whole cache yet.
    built: bool,
    /// One copy of each bundle spec the assignments carry: equal specs decoded from many
    /// assignments (one per node) share it.
    specs: std::collections::HashMap<String, Arc<Bundle>>,
    /// Each bundle's stored value, decoded and validated (or why it cannot be used).
    decoded: BTreeMap<String, Result<Arc<Bundle>, String>>,
    /// `berth ban` keys, by bundle.
    bans: BTreeMap<String, Bans>,
    /// Registered nodes and nodes in maintenance, by the name in their key.
    online: BTreeMap<String, NodeView>,
    maintenance: BTreeMap<String, NodeView>,
    standby: BTreeSet<String>,
    /// Permanent node attributes (`<p>/attributes/nodes/<node>/<name>`), by node: added to
    /// the node's labels, over a label of the same name, for location rules.
    node_attrs: BTreeMap<String, BTreeMap<String, String>>,
    /// Bundles the last derivation changed beyond their own keys (overlaps refused, last
    /// good values put back): derived again from their keys next time.
    patched: BTreeSet<String>,
}

impl View {
    fn empty() -> View {
        View {
            bundles: BTreeMap::new(),
            invalid: BTreeMap::new(),
            revisions: BTreeMap::new(),
            nodes: Vec::new(),
            leases: BTreeMap::new(),
            assignments: BTreeMap::new(),
            by_bundle: BTreeMap::new(),
            placed_specs: BTreeMap::new(),
            current: BTreeMap::new(),
            statuses: BTreeMap::new(),
            history: BTreeMap::new(),
            status_keys: BTreeSet::new(),
            bundle_statuses: BTreeMap::new(),
            status_digests: BTreeMap::new(),
            paused: BTreeSet::new(),
            spec_generations: BTreeMap::new(),
            promotion_scores: BTreeMap::new(),
            cleanups: BTreeMap::new(),
            banned: BTreeSet::new(),
            deferred: None,
        }
    }
}

impl View {
    /// Whether replica status `s` was written under its node's current registration (the
    /// same lease), or its node is not online (in maintenance, its agent away: what it
    /// last said stands). A status from before its node registered anew says nothing about
    /// what runs now: the agent that wrote it is gone (killed, fenced), and its replicas
    /// with it, until the new agent reports.
    pub fn reported_now(&self, s: &ReplicaStatus) -> bool {
        self.leases.get(&s.node).is_none_or(|&l| s.lease == l)
    }

    /// The names of the nodes online (their agents registered now).
    pub fn online(&self) -> BTreeSet<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// ReplicaKey `i` of `bundle`: its status as its node agent last wrote it.
    pub fn status_of(&self, bundle: &str, i: u32) -> Option<&ReplicaStatus> {
        self.statuses.get(&ReplicaKey::new(bundle, i)).map(|s| &**s)
    }

    /// ReplicaKey `i` of `bundle`: its status, when the agent of `node` wrote it (the node it
    /// is placed on; a status from elsewhere is about a copy that ran there).
    pub fn status_on(&self, bundle: &str, i: u32, node: &str) -> Option<&ReplicaStatus> {
        self.status_of(bundle, i).filter(|s| s.node == node)
    }

    /// The statuses of `bundle`'s replicas, by ordinal.
    pub fn statuses_of<'v>(
        &'v self,
        bundle: &str,
    ) -> impl Iterator<Item = (u32, &'v ReplicaStatus)> + 'v {
        self.statuses
            .range(replicas_of(bundle))
            .map(|(ReplicaKey { index: i, .. }, s)| (*i, &**s))
    }

    /// Where `bundle`'s replicas are placed now: (ordinal, node).
    pub fn current_of<'v>(&'v self, bundle: &str) -> impl Iterator<Item = (u32, &'v str)> + 'v {
        self.current
            .range(replicas_of(bundle))
            .map(|(ReplicaKey { index: i, .. }, n)| (*i, n.as_str()))
    }
}

/// The range of a bundle's replicas in a map keyed by replica.
fn replicas_of(bundle: &str) -> std::ops::RangeInclusive<ReplicaKey> {
    ReplicaKey::all_of(bundle)
}

/// The JSON value `kv` holds, or None when it does not decode.
fn json<T: serde::de::DeserializeOwned>(kv: &Kv) -> Option<T> {
    serde_json::from_slice(&kv.value).ok()
}

/// Puts `name` in `set` or takes it out.
fn toggle(set: &mut BTreeSet<String>, name: &str, present: bool) {
    if present {
        set.insert(name.to_string());
    } else {
        set.remove(name);
    }
}

/// Removes a bundle's replicas from a map keyed by replica.
fn forget_replicas<V>(map: &mut BTreeMap<ReplicaKey, V>, bundle: &str) {
    let stale: Vec<ReplicaKey> = map
        .range(replicas_of(bundle))
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        map.remove(&k);
    }
}

/// A registered or maintenance node's view, when its value decodes.
fn node_view(kv: &Kv, maintenance: bool) -> Option<NodeView> {
    let n = serde_json::from_slice::<NodeInfo>(&kv.value).ok()?;
    Some(NodeView {
        name: n.name,
        labels: n.labels,
        permits: n.permits,
        maintenance,
        lease: if maintenance { 0 } else { kv.lease },
        ..Default::default()
    })
}

/// Sets `key` in `map` to `value`, or removes it when there is none.
fn set<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
    match value {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

impl Live {
    /// A view for the controller: replica and bundle statuses keep only what a pass reads
    /// (at 10,000 bundles, decoded statuses were the largest part of its memory). It shows
    /// no conditions, container ids or operation histories: the CLI reads a full one
    /// ([`View::read`]).
    pub fn slim() -> Live {
        Live::new(true)
    }

    fn new(slim: bool) -> Live {
        Live {
            view: View::empty(),
            slim,
            built: false,
            specs: Default::default(),
            decoded: BTreeMap::new(),
            bans: BTreeMap::new(),
            online: BTreeMap::new(),
            maintenance: BTreeMap::new(),
            standby: BTreeSet::new(),
            node_attrs: BTreeMap::new(),
            patched: BTreeSet::new(),
        }
    }

    /// The view brought up to date with what changed in `cache` since the last update (all
    /// of it the first time, and after a list replaced the cache: a cache that does not
    /// [track](Cache::tracking) its changes is read whole every time). The bytes of the
    /// assignments and statuses it decoded are dropped from a tracking cache (nothing reads
    /// them again until the key is written anew, and they were a fifth of the controller's
    /// memory at 30,000 replicas); bundle specs keep theirs (`decode_entry` reports from
    /// them, and the history keeps spec values as bytes too).
    pub fn update(&mut self, keys: &Keys, cache: &mut Cache) -> &mut View {
        let changes = cache.take_changes();
        let tracked = cache.tracks();
        let mut dirty = BTreeSet::new();
        if changes.all || !self.built {
            *self = Live::new(self.slim);
            self.apply_all(keys, cache, &mut dirty);
            if tracked {
                for kv in cache.items.values_mut() {
                    release(keys, kv);
                }
            }
        } else {
            for key in &changes.keys {
                self.apply(keys, key, cache.items.get(key), &mut dirty);
                if let Some(kv) = cache.items.get_mut(key) {
                    release(keys, kv);
                }
            }
        }
        self.built = true;
        self.derive(dirty);
        self.view.deferred = None;
        &mut self.view
    }

    /// Takes every key of `cache` into the view's own maps ([`Live::apply`]).
    fn apply_all(&mut self, keys: &Keys, cache: &Cache, dirty: &mut BTreeSet<String>) {
        for kv in cache.items.values() {
            self.apply(keys, &kv.key, Some(kv), dirty);
        }
    }

    /// Takes what `key` holds now (`kv`; none when it is gone) into the view's own maps,
    /// and marks the bundle it concerns for derivation.
    fn apply(&mut self, keys: &Keys, key: &str, kv: Option<&Kv>, dirty: &mut BTreeSet<String>) {
        let Some(parsed) = keys.parse(key) else {
            return;
        };
        let v = &mut self.view;
        match parsed {
            Key::Bundle(name) => {
                self.apply_bundle(keys, name, kv);
                dirty.insert(name.to_string());
            }
            Key::Node(name) => {
                let n = kv.and_then(|kv| node_view(kv, false));
                set(&mut self.online, name.to_string(), n);
            }
            Key::Maintenance(name) => {
                let n = kv.and_then(|kv| node_view(kv, true));
                set(&mut self.maintenance, name.to_string(), n);
            }
            Key::Standby(name) => toggle(&mut self.standby, name, kv.is_some()),
            Key::Bans(name) => {
                set(&mut self.bans, name.to_string(), kv.and_then(json));
                dirty.insert(name.to_string());
            }
            Key::Cleanup(name) => {
                let at = kv
                    .and_then(json)
                    .map(|c: crate::model::cluster::Cleanup| c.at);
                set(&mut v.cleanups, name.to_string(), at);
                dirty.insert(name.to_string());
            }
            Key::Assignment { node, bundle } => {
                self.apply_assignment(node, bundle, kv);
                dirty.insert(bundle.to_string());
            }
            Key::Replica { bundle, index } => {
                let slim = self.slim;
                let st = kv
                    .and_then(json)
                    .map(|st: ReplicaStatus| Arc::new(if slim { slim_replica(st) } else { st }));
                set(&mut v.statuses, ReplicaKey::new(bundle, index), st);
                dirty.insert(bundle.to_string());
            }
            Key::Rollout(name) => {
                let control = kv.and_then(json);
                let paused = control.is_some_and(|c: RolloutControl| c.paused);
                toggle(&mut v.paused, name, paused);
            }
            Key::SpecHistory { bundle, generation } => {
                v.spec_history(bundle, generation, kv.is_some());
            }
            Key::Attribute {
                section: crate::model::attributes::Section::Nodes,
                owner,
                name,
            } => self.apply_node_attribute(owner, name, kv),
            Key::Attribute {
                section: crate::model::attributes::Section::Status,
                owner,
                name,
            } if name.starts_with("master-") => {
                let at = (owner.to_string(), name.to_string());
                let score = kv.and_then(|kv| {
                    crate::model::validate::parse_score(std::str::from_utf8(&kv.value).ok()?)
                });
                set(&mut v.promotion_scores, at, score);
            }
            // Other transient attributes and cluster properties are the agents', not
            // placement's.
            Key::Attribute { .. } => {}
            Key::BundleStatus(name) => {
                self.apply_bundle_status(name, kv);
                dirty.insert(name.to_string());
            }
        }
    }

    /// A bundle's spec: decoded (and validated) once per write, shared with the
    /// assignments that carry the same generation.
    fn apply_bundle(&mut self, keys: &Keys, name: &str, kv: Option<&Kv>) {
        set(
            &mut self.view.revisions,
            name.to_string(),
            kv.map(|kv| kv.mod_revision),
        );
        let specs = &mut self.specs;
        let b = kv.map(|kv| match decode_entry(keys, kv, None) {
            Ok(b) => Ok(share(specs, &Arc::new(b.value))),
            Err(StoreError::Decode { source, .. }) => Err(source.to_string()),
            Err(e) => Err(e.to_string()),
        });
        set(&mut self.decoded, name.to_string(), b);
    }

    /// An assignment, kept by (node, bundle) and by bundle.
    fn apply_assignment(&mut self, node: &str, bundle: &str, kv: Option<&Kv>) {
        let v = &mut self.view;
        let a = kv.and_then(|kv| shared_assignment(kv, &mut self.specs));
        let on = v.by_bundle.entry(bundle.to_string()).or_default();
        set(on, node.to_string(), a.clone());
        if on.is_empty() {
            v.by_bundle.remove(bundle);
        }
        set(
            &mut v.assignments,
            (node.to_string(), bundle.to_string()),
            a,
        );
    }

    /// A node attribute (what label-based locations may match beside the node's labels).
    fn apply_node_attribute(&mut self, owner: &str, name: &str, kv: Option<&Kv>) {
        let attrs = self.node_attrs.entry(owner.to_string()).or_default();
        match kv.and_then(|kv| String::from_utf8(kv.value.clone()).ok()) {
            Some(value) => {
                attrs.insert(name.to_string(), value);
            }
            None => {
                attrs.remove(name);
                if attrs.is_empty() {
                    self.node_attrs.remove(owner);
                }
            }
        }
    }

    /// A bundle's status as the controller wrote it, and the digest of its bytes.
    fn apply_bundle_status(&mut self, name: &str, kv: Option<&Kv>) {
        let v = &mut self.view;
        match kv {
            Some(kv) => {
                v.status_keys.insert(name.to_string());
                v.status_digests
                    .insert(name.to_string(), status_digest(&kv.value));
                let slim = self.slim;
                let st = serde_json::from_slice::<BundleStatus>(&kv.value).ok();
                let st = st.map(|st| Arc::new(if slim { slim_status(st) } else { st }));
                set(&mut v.bundle_statuses, name.to_string(), st);
            }
            None => {
                v.status_keys.remove(name);
                v.status_digests.remove(name);
                v.bundle_statuses.remove(name);
            }
        }
    }

    /// Derives again what the `dirty` bundles' keys feed, and what every pass derives
    /// whole (nodes, bans that move a bundle, overlaps, last good values).
    fn derive(&mut self, mut dirty: BTreeSet<String>) {
        dirty.append(&mut self.patched);
        // A `berth move` depends on the nodes and on where its replicas are: every time.
        dirty.extend(
            self.bans
                .iter()
                .filter(|(_, b)| b.prefer.is_some())
                .map(|(name, _)| name.clone()),
        );
        for name in &dirty {
            self.derive_current(name);
            self.derive_history(name);
        }
        self.derive_nodes();
        for name in &dirty {
            self.derive_bundle(name);
        }
        let v = &mut self.view;
        v.banned = self.bans.keys().cloned().collect();
        self.patched = v.refuse_overlaps();
        self.patched.extend(v.invalid.keys().cloned());
        v.keep_last_good();
        self.specs.retain(|_, b| Arc::strong_count(b) > 1);
    }

    /// Where a bundle's replicas are assigned, and the spec its assignments carry (the
    /// newest generation when several do).
    fn derive_current(&mut self, bundle: &str) {
        let v = &mut self.view;
        forget_replicas(&mut v.current, bundle);
        v.placed_specs.remove(bundle);
        let Some(on) = v.by_bundle.get(bundle) else {
            return;
        };
        // In the order of their keys (`<node>/<bundle>`): of two assignments claiming a
        // replica, the later key wins.
        let mut on: Vec<(&String, &Arc<Assignment>)> = on.iter().collect();
        fn key_order(node: &str) -> impl Iterator<Item = u8> + '_ {
            node.bytes().chain(std::iter::once(b'/'))
        }
        on.sort_by(|(a, _), (b, _)| key_order(a).cmp(key_order(b)));
        for (node, a) in on {
            for i in &a.replicas {
                v.current
                    .insert(ReplicaKey::new(bundle, *i), node.to_string());
            }
            let newer = v
                .placed_specs
                .get(bundle)
                .is_none_or(|s| s.metadata.generation < a.bundle.metadata.generation);
            if newer {
                v.placed_specs.insert(bundle.to_string(), a.bundle.clone());
            }
        }
    }

    /// A bundle's replicas' failure history: what their statuses say, with the failures the
    /// controller recorded in the bundle's status rows (a replica status goes when its
    /// replica leaves a node, and with it the history that bans it from there), less the
    /// failures a cleanup came after (a replica pending everywhere has no agent to rewrite
    /// its status). Only replicas with a failure have one (none reads as no failure).
    fn derive_history(&mut self, bundle: &str) {
        let v = &mut self.view;
        forget_replicas(&mut v.history, bundle);
        for (k, st) in v.statuses.range(replicas_of(bundle)) {
            if st.fail_counts.is_empty() && st.last_failure.is_none() {
                continue;
            }
            v.history.insert(
                k.clone(),
                History {
                    fail_counts: st.fail_counts.clone(),
                    last_failure: st.last_failure.as_ref().map(|f| f.time),
                },
            );
        }
        if let Some(st) = v.bundle_statuses.get(bundle) {
            for row in st.replica_rows.iter().filter(|r| !r.fail_counts.is_empty()) {
                let h = v
                    .history
                    .entry(ReplicaKey::new(bundle, row.index))
                    .or_default();
                for (node, n) in &row.fail_counts {
                    let c = h.fail_counts.entry(node.clone()).or_default();
                    *c = (*c).max(*n);
                }
                h.last_failure = h.last_failure.max(row.last_failure);
            }
        }
        if let Some(&at) = v.cleanups.get(bundle) {
            let cleaned: Vec<ReplicaKey> = v
                .history
                .range(replicas_of(bundle))
                .filter(|(_, h)| h.last_failure.is_none_or(|t| t <= at))
                .map(|(k, _)| k.clone())
                .collect();
            for k in cleaned {
                v.history.remove(&k);
            }
        }
    }

    /// Online nodes, then those in maintenance whose agent is away (once it is back,
    /// registered, it is an online node like any other); standby flags, and the bundles
    /// each node runs a promoted replica of.
    fn derive_nodes(&mut self) {
        let v = &mut self.view;
        v.nodes = self.online.values().cloned().collect();
        v.leases = v.nodes.iter().map(|n| (n.name.clone(), n.lease)).collect();
        for m in self.maintenance.values() {
            if !v.nodes.iter().any(|n| n.name == m.name) {
                v.nodes.push(m.clone());
            }
        }
        let mut promoted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (ReplicaKey { bundle, .. }, st) in &v.statuses {
            if st.is_promoted() {
                promoted.entry(&st.node).or_default().insert(bundle.clone());
            }
        }
        for n in &mut v.nodes {
            if let Some(attrs) = self.node_attrs.get(&n.name) {
                n.labels
                    .extend(attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            n.standby = self.standby.contains(&n.name);
            n.promoted = promoted.remove(n.name.as_str()).unwrap_or_default();
        }
    }

    /// A bundle's value as the pass uses it: its stored value with its `berth ban`
    /// locations (-INFINITY per banned node, as crm_resource's cli-ban constraints) and
    /// `berth move`, or why it cannot be used.
    fn derive_bundle(&mut self, name: &str) {
        let v = &mut self.view;
        match self.decoded.get(name) {
            None => {
                v.bundles.remove(name);
                v.invalid.remove(name);
            }
            Some(Err(why)) => {
                v.bundles.remove(name);
                v.invalid.insert(name.to_string(), why.clone());
            }
            Some(Ok(b)) => {
                v.invalid.remove(name);
                let mut b = b.clone();
                let bans = self.bans.get(name);
                if let Some(bans) = bans {
                    Arc::make_mut(&mut b)
                        .spec_mut()
                        .locations
                        .extend(bans.nodes.iter().map(|node| crate::model::Location {
                            node: Some(node.clone()),
                            label: None,
                            score: "-INFINITY".into(),
                            ..Default::default()
                        }));
                }
                v.bundles.insert(name.to_string(), b);
                if let Some(to) = bans.and_then(|b| b.prefer.as_deref()) {
                    v.moving(name, to);
                }
            }
        }
    }
}

/// Drops the bytes of a value the view holds decoded (assignments, replica and bundle
/// statuses): see [`Live::update`].
fn release(keys: &Keys, kv: &mut Kv) {
    let decoded = matches!(
        keys.parse(&kv.key),
        Some(Key::Assignment { .. } | Key::Replica { .. } | Key::BundleStatus(_))
    );
    if decoded {
        kv.value = Vec::new();
    }
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

/// The assignment in `kv`, with its specs shared (see [`share`]).
fn shared_assignment(
    kv: &crate::store::Kv,
    specs: &mut std::collections::HashMap<String, Arc<Bundle>>,
) -> Option<Arc<Assignment>> {
    let mut a = serde_json::from_slice::<Assignment>(&kv.value).ok()?;
    a.bundle = share(specs, &a.bundle);
    for h in &mut a.pinned {
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
    /// A generation of a bundle's spec the history keeps (`kept`), or no longer keeps.
    fn spec_history(&mut self, bundle: &str, generation: i64, kept: bool) {
        if kept {
            self.spec_generations
                .entry(bundle.to_string())
                .or_default()
                .insert(generation);
        } else if let Some(g) = self.spec_generations.get_mut(bundle) {
            g.remove(&generation);
            if g.is_empty() {
                self.spec_generations.remove(bundle);
            }
        }
    }

    /// Reads everything berth keeps under the prefix from a cache (or a one-off list). A
    /// bundle whose value cannot be used, or whose addresses overlap an older bundle's, is
    /// in `invalid`, and in `bundles` as last placed when it has been placed.
    pub fn read(keys: &Keys, cache: &Cache) -> View {
        let mut live = Live::new(false);
        let mut dirty = BTreeSet::new();
        live.apply_all(keys, cache, &mut dirty);
        live.derive(dirty);
        live.view
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
            .spec_mut()
            .locations
            .push(crate::model::Location {
                node: Some(to.to_string()),
                label: None,
                score: "INFINITY".into(),
                ..Default::default()
            });
        let there = self.current_of(bundle).any(|(_, n)| n == to);
        let available = self.nodes.iter().any(|n| n.name == to && !n.standby);
        if there || !available {
            return;
        }
        if let Some(last) = self
            .current
            .range(replicas_of(bundle))
            .map(|(k, _)| k.clone())
            .next_back()
        {
            self.current.remove(&last);
        }
    }

    /// Refuses bundles whose replica addresses overlap a bundle written before them: they
    /// become invalid (and keep their last good value, see [`View::keep_last_good`]).
    /// Returns their names.
    fn refuse_overlaps(&mut self) -> BTreeSet<String> {
        let overlaps = crate::model::address_overlaps(
            self.bundles
                .values()
                .map(|b| (&**b, self.revisions.get(b.name()).copied().unwrap_or(0))),
        );
        let mut refused = BTreeSet::new();
        for (newer, older) in overlaps {
            refused.insert(newer.clone());
            self.bundles.remove(&newer);
            self.invalid.insert(
                newer,
                format!(
                    "spec.network.ipRangeStart: the replicas' addresses overlap bundle {older:?}'s"
                ),
            );
        }
        refused
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::watch::WatchEvent;
    use proptest::prelude::*;

    const NODES: [&str; 3] = ["n1", "n1-b", "n10"];
    const BUNDLES: [&str; 3] = ["a", "b", "c"];

    /// One write to the prefix, as the watch brings it: a key (by kind and names) and a
    /// value variant, or its delete.
    #[derive(Debug, Clone)]
    enum Op {
        Put {
            kind: u8,
            node: usize,
            bundle: usize,
            n: u8,
        },
        Delete {
            kind: u8,
            node: usize,
            bundle: usize,
            n: u8,
        },
        Relist,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let one = prop_oneof![
            6 => (0u8..11, 0usize..3, 0usize..3, 0u8..4)
                .prop_map(|(kind, node, bundle, n)| Op::Put { kind, node, bundle, n }),
            3 => (0u8..11, 0usize..3, 0usize..3, 0u8..4)
                .prop_map(|(kind, node, bundle, n)| Op::Delete { kind, node, bundle, n }),
            1 => Just(Op::Relist),
        ];
        proptest::collection::vec(one, 1..60)
    }

    fn spec(bundle: &str, n: u8) -> serde_json::Value {
        let mut spec = serde_json::json!({
            "apiVersion": crate::model::API_VERSION,
            "kind": crate::model::KIND,
            "metadata": {"name": bundle, "generation": 1 + i64::from(n % 2)},
            "spec": {"docker": {"image": "busybox", "replicas": 2}},
        });
        if n >= 2 {
            // Two bundles on overlapping addresses: the later is refused.
            spec["spec"]["network"] =
                serde_json::json!({"ipRangeStart": format!("127.0.9.{}", 1 + n)});
        }
        spec
    }

    /// The key and value of a put of this kind.
    fn write(keys: &Keys, kind: u8, node: &str, bundle: &str, n: u8) -> (String, Vec<u8>) {
        let info = |name: &str| {
            serde_json::to_vec(&NodeInfo {
                name: name.into(),
                ..Default::default()
            })
            .unwrap()
        };
        let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        match kind {
            0 if n == 3 => (keys.bundle(bundle), b"{not json".to_vec()),
            0 => (keys.bundle(bundle), json(spec(bundle, n))),
            1 => (keys.node(node), info(node)),
            2 => (keys.maintenance(node), info(node)),
            3 => (keys.standby(node), b"{}".to_vec()),
            4 => {
                let replicas = if n == 0 {
                    vec![0, 1]
                } else {
                    vec![u32::from(n % 2)]
                };
                let a = serde_json::json!({"bundle": spec(bundle, n % 2), "replicas": replicas});
                (keys.assignment(node, bundle), json(a))
            }
            5 => {
                let mut st = serde_json::json!({
                    "bundle": bundle, "index": u32::from(n % 2), "node": node,
                    "state": if n >= 2 { "failed" } else { "running" }, "generation": 1,
                });
                if n >= 2 {
                    st["failCounts"] = serde_json::json!({node: n});
                    st["lastFailure"] = serde_json::json!({"reason": "x", "time": 50 * n});
                }
                if n == 1 {
                    st["primitive"] = serde_json::json!({"state": "started", "role": "Promoted", "restarts": 0, "last": []});
                }
                (keys.replica(bundle, u32::from(n % 2)), json(st))
            }
            6 => {
                let rows = serde_json::json!([{
                    "index": 1, "name": format!("{bundle}-1"), "state": "pending",
                    "failCounts": {node: 1 + n}, "lastFailure": 40 * u64::from(n),
                }]);
                (
                    keys.bundle_status(bundle),
                    json(serde_json::json!({"replicaRows": rows})),
                )
            }
            7 => (
                keys.cleanup(bundle),
                json(serde_json::json!({"at": 60 * u64::from(n)})),
            ),
            8 => {
                let mut bans = serde_json::json!({"nodes": [node]});
                if n % 2 == 1 {
                    bans["prefer"] = serde_json::json!(NODES[usize::from(n) % 3]);
                }
                (keys.bans(bundle), json(bans))
            }
            9 => (
                keys.rollout(bundle),
                json(serde_json::json!({"paused": n.is_multiple_of(2)})),
            ),
            _ => (keys.spec_at(bundle, i64::from(n)), json(spec(bundle, n))),
        }
    }

    /// The values the property below writes decode (or the two views would agree on
    /// nothing).
    #[test]
    fn the_generated_values_decode() {
        let keys = Keys::new("t/");
        for n in 0..4 {
            let kv = |kind| {
                let (key, value) = write(&keys, kind, "n1", "a", n);
                Kv::first_write(key, value, 1)
            };
            let mut specs = Default::default();
            assert!(
                shared_assignment(&kv(4), &mut specs).is_some(),
                "assignment {n}"
            );
            assert!(serde_json::from_slice::<ReplicaStatus>(&kv(5).value).is_ok());
            assert!(serde_json::from_slice::<BundleStatus>(&kv(6).value).is_ok());
            assert!(serde_json::from_slice::<Bans>(&kv(8).value).is_ok());
            assert_eq!(
                decode_entry(&keys, &kv(0), None).is_ok(),
                n < 3,
                "bundle {n}"
            );
        }
    }

    proptest! {
        /// The controller's view, kept up to date key by key (its cache dropping the bytes
        /// it decoded), is at every step the view read whole from the same keys.
        #[test]
        fn a_live_view_is_the_view_read_whole(ops in ops()) {
            let keys = Keys::new("t/");
            let mut tracked = Cache::tracking();
            let mut shadow = Cache::default();
            let mut live = Live::new(false);
            let mut rev = 1;
            for op in ops {
                rev += 1;
                let ev = match op {
                    Op::Put { kind, node, bundle, n } => {
                        let (key, value) = write(&keys, kind, NODES[node], BUNDLES[bundle], n);
                        WatchEvent::Put(Kv::first_write(key, value, rev))
                    }
                    Op::Delete { kind, node, bundle, n } => WatchEvent::Deleted {
                        key: write(&keys, kind, NODES[node], BUNDLES[bundle], n).0,
                        revision: rev,
                    },
                    Op::Relist => WatchEvent::Listed {
                        revision: rev,
                        items: shadow.items.values().cloned().collect(),
                    },
                };
                tracked.apply(&ev);
                shadow.apply(&ev);
                let got = format!("{:?}", live.update(&keys, &mut tracked));
                let want = format!("{:?}", View::read(&keys, &shadow));
                prop_assert_eq!(got, want);
            }
        }
    }
}
