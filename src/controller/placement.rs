//! Placement: a pure, deterministic function of (bundles, online nodes, current placement,
//! failure history, now) → where every replica runs, or why it cannot.
//!
//! Rules, in Pacemaker's terms:
//! - a replica stays where it is while its node is online and still allowed (no shuffling of
//!   healthy replicas when something else changes: scale-up, a node joining, another bundle);
//! - a node is not allowed for a bundle when a location constraint scores it -INFINITY, and
//!   for a replica when that replica has failed there `migration-threshold` times within
//!   `failure-timeout`;
//! - at most `replicas-per-host` replicas of a bundle per node;
//! - a replica to place goes to the allowed node with the highest location score, then the
//!   fewest replicas of the same bundle (spread), then the lowest total load, then by name;
//! - `target-role=Stopped` places nothing; replicas above `replicas` are dropped (the
//!   highest ordinals go first when scaling down).

use crate::model::policy::{self, Permits};
use std::collections::BTreeMap;

use crate::model::Bundle;

pub use crate::model::validate::INFINITY;

/// An online node as placement sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// What the node permits (host policy).
    pub permits: Permits,
    /// Its agent left it in maintenance: the replicas it has stay, no new one goes there.
    pub maintenance: bool,
    /// Put in standby (`berth standby`): no replica may run there; those it has move.
    pub standby: bool,
    /// The lease of its registration (0 for a node in maintenance, whose agent is away): a
    /// replica status written under another lease predates this registration.
    pub lease: i64,
    /// Bundles with a replica that reports itself promoted here (for colocations with a
    /// bundle's promoted replicas).
    pub promoted: std::collections::BTreeSet<String>,
}

/// One replica's failure history: failures per node, and when the last one happened
/// (seconds since the Unix epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub fail_counts: BTreeMap<String, u32>,
    pub last_failure: Option<u64>,
}

pub use crate::model::ReplicaKey;

/// What placement decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// bundle → ordinal → node.
    pub placed: BTreeMap<String, BTreeMap<u32, String>>,
    /// bundle → ordinal → why it could not be placed.
    pub pending: BTreeMap<String, BTreeMap<u32, Pending>>,
}

/// Why a replica is not placed. Its words (`Display`) are the replica's pending reason in
/// the bundle's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// There are no nodes online.
    NoNodeOnline,
    /// Every node refused it: each refusal, tallied.
    NoNode(Tally),
    /// `ordered=true`: waiting for an earlier replica (`first`, its name) to start.
    Ordered { first: String },
    /// An `rsc_order`: waiting for bundle `first` to start (or to be promoted).
    Order {
        first: String,
        promote: bool,
        id: Option<String>,
    },
}

impl Pending {
    /// Held back on purpose by an order, waiting for another replica: not a scheduling
    /// failure.
    pub fn is_wait(&self) -> bool {
        matches!(self, Pending::Ordered { .. } | Pending::Order { .. })
    }
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::NoNodeOnline => f.write_str("no node is online"),
            Pending::NoNode(t) => t.fmt(f),
            Pending::Ordered { first } => write!(f, "waiting for {first} to start (ordered)"),
            Pending::Order { first, promote, id } => {
                let what = if *promote {
                    "to be promoted"
                } else {
                    "to start"
                };
                write!(f, "waiting for bundle {first} {what} (order")?;
                if let Some(id) = id {
                    write!(f, " {id}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Why a node cannot take one more replica of a bundle: placement's checks, in the order
/// they run ([`Checks::refusal`]; Nomad's feasibility checkers are the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its agent left it in maintenance (its replicas stay, no new one goes there).
    InMaintenance,
    InStandby,
    /// A location constraint scores it -INFINITY.
    BannedByLocation,
    /// A colocation scores it -INFINITY.
    ExcludedByColocation,
    /// Its host policy does not permit what the bundle asks.
    NotPermitting,
    /// It has `replicas-per-host` of the bundle's replicas already.
    Full,
    /// The replica failed there `migration-threshold` times within `failure-timeout`.
    OverMigrationThreshold,
}

/// The refusals of every online node for one replica, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub online: usize,
    pub replicas_per_host: u32,
    pub in_maintenance: usize,
    pub in_standby: usize,
    pub banned_by_location: usize,
    pub excluded_by_colocation: usize,
    pub not_permitting: usize,
    /// What the first node not permitting the bundle refused (`privileged`, …).
    pub not_permitting_what: Option<String>,
    pub full: usize,
    pub over_migration_threshold: usize,
}

impl Tally {
    fn count(&mut self, r: Refusal, what: impl FnOnce() -> Option<String>) {
        match r {
            Refusal::InMaintenance => self.in_maintenance += 1,
            Refusal::InStandby => self.in_standby += 1,
            Refusal::BannedByLocation => self.banned_by_location += 1,
            Refusal::ExcludedByColocation => self.excluded_by_colocation += 1,
            Refusal::NotPermitting => {
                self.not_permitting += 1;
                if self.not_permitting_what.is_none() {
                    self.not_permitting_what = what();
                }
            }
            Refusal::Full => self.full += 1,
            Refusal::OverMigrationThreshold => self.over_migration_threshold += 1,
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no node can take it: {} online, {} banned by location, {} over migration-threshold, {} at replicas-per-host {}",
            self.online,
            self.banned_by_location,
            self.over_migration_threshold,
            self.full,
            self.replicas_per_host
        )?;
        if self.excluded_by_colocation > 0 {
            write!(
                f,
                ", {} excluded by colocation",
                self.excluded_by_colocation
            )?;
        }
        if let Some(what) = &self.not_permitting_what {
            write!(f, ", {} not permitting {what}", self.not_permitting)?;
        }
        if self.in_maintenance > 0 {
            write!(f, ", {} in maintenance", self.in_maintenance)?;
        }
        if self.in_standby > 0 {
            write!(f, ", {} in standby", self.in_standby)?;
        }
        Ok(())
    }
}

/// One bundle's checks against the nodes (see [`Refusal`]).
struct Checks<'a> {
    b: &'a Bundle,
    nodes: &'a [&'a NodeView],
    /// The location and colocation scores combined, and the location scores alone (to
    /// tell a location ban from a colocation exclusion).
    scores: &'a Option<Vec<i64>>,
    located: &'a Option<Vec<i64>>,
    denied: &'a Option<Vec<Option<String>>>,
    rph: u32,
    now: u64,
}

impl<'c> Checks<'c> {
    /// The checks of `b` with these scores (combined, and of its locations alone).
    fn new(
        b: &'c Bundle,
        nodes: &'c [&'c NodeView],
        (scores, located): (&'c Option<Vec<i64>>, &'c Option<Vec<i64>>),
        denied: &'c Option<Vec<Option<String>>>,
        now: u64,
    ) -> Self {
        Checks {
            b,
            nodes,
            scores,
            located,
            denied,
            rph: b.spec.replicas_per_host(),
            now,
        }
    }

    /// Why node `n`, with `here` of the bundle's replicas on it already, cannot take a
    /// replica whose failures are `hist`; None when it can. `keeping`: the replica runs
    /// there now, and a node in maintenance keeps what it has.
    #[inline]
    fn refusal(
        &self,
        n: usize,
        here: u32,
        hist: Option<&History>,
        keeping: bool,
    ) -> Option<Refusal> {
        let node = self.nodes[n];
        if node.maintenance && !keeping {
            return Some(Refusal::InMaintenance);
        }
        if node.standby {
            return Some(Refusal::InStandby);
        }
        if score_at(self.scores, n) <= -INFINITY {
            return Some(if score_at(self.located, n) <= -INFINITY {
                Refusal::BannedByLocation
            } else {
                Refusal::ExcludedByColocation
            });
        }
        if denied_at(self.denied, n).is_some() {
            return Some(Refusal::NotPermitting);
        }
        if here >= self.rph {
            return Some(Refusal::Full);
        }
        if banned(self.b, hist, &node.name, self.now) {
            return Some(Refusal::OverMigrationThreshold);
        }
        None
    }
}

/// Is the bundle meant to run (target-role is not Stopped)?
pub fn wanted_running(b: &Bundle) -> bool {
    !b.resolved().meta.stopped
}

/// Is the bundle managed (is-managed is not false)?
pub fn managed(b: &Bundle) -> bool {
    b.resolved().meta.managed
}

/// Decides where every replica runs: every replica that can stay where it runs stays (and
/// counts toward its node's load, so that new replicas of any bundle see the real load),
/// then each bundle's other replicas go to the best node that passes every check, or are
/// pending with each node's refusal tallied.
#[tracing::instrument(level = "debug", skip_all, fields(bundles = bundles.len(), nodes = nodes.len()))]
pub fn place<B: std::borrow::Borrow<Bundle>>(
    bundles: &[B],
    nodes: &[NodeView],
    current: &BTreeMap<ReplicaKey, String>,
    history: &BTreeMap<ReplicaKey, History>,
    now: u64,
) -> Placement {
    let mut nodes: Vec<&NodeView> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut placer = Placer::new(&nodes, history, now);
    let order = placement_order(bundles);
    let kept: Vec<_> = order.iter().map(|b| placer.keep(b, current)).collect();
    // Where the bundles other bundles are colocated with have their replicas (node
    // indices), filled as they are placed: they are placed first.
    let mut colocated: BTreeMap<&str, Vec<usize>> = order
        .iter()
        .flat_map(|b| b.spec.colocations.iter().map(|c| (c.with.as_str(), vec![])))
        .collect();
    let mut out = Placement::default();
    for (b, mine) in order.iter().zip(kept) {
        if !wanted_running(b) {
            continue;
        }
        let (mine, pending) = placer.place_rest(b, mine, &colocated);
        if !pending.is_empty() {
            out.pending.insert(b.name().to_string(), pending);
        }
        if let Some(at) = colocated.get_mut(b.name()) {
            at.extend(mine.values().copied());
        }
        if !mine.is_empty() {
            out.placed.insert(
                b.name().to_string(),
                mine.into_iter()
                    .map(|(i, n)| (i, nodes[n].name.clone()))
                    .collect(),
            );
        }
    }
    out
}

/// One placement's state: the nodes (sorted by name, referred to by index), their load so
/// far, and their host policies.
struct Placer<'a> {
    nodes: &'a [&'a NodeView],
    /// (Hashed: looked up for every replica, a tree of 1,000 names cost ten comparisons.)
    index: std::collections::HashMap<&'a str, usize>,
    load: Vec<u32>,
    policies: Policies<'a>,
    history: &'a BTreeMap<ReplicaKey, History>,
    now: u64,
}

impl<'a> Placer<'a> {
    fn new(
        nodes: &'a [&'a NodeView],
        history: &'a BTreeMap<ReplicaKey, History>,
        now: u64,
    ) -> Self {
        Placer {
            nodes,
            index: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.as_str(), i))
                .collect(),
            load: vec![0; nodes.len()],
            policies: Policies::of(nodes),
            history,
            now,
        }
    }

    /// The first pass, for one bundle: its replicas that may stay where they run (a node in
    /// maintenance keeps them), counted in the load. Ordinal → node index.
    fn keep(&mut self, b: &Bundle, current: &BTreeMap<ReplicaKey, String>) -> BTreeMap<u32, usize> {
        let mut mine = BTreeMap::new();
        if !wanted_running(b) {
            return mine;
        }
        let scores = scores(b, self.nodes);
        let denied = self.policies.denied(b);
        let checks = Checks::new(b, self.nodes, (&scores, &scores), &denied, self.now);
        let mut per_node: BTreeMap<usize, u32> = BTreeMap::new();
        // (One key per bundle, its ordinal set for each replica.)
        let mut key = ReplicaKey::new(b.name(), 0);
        for i in 0..b.spec.replicas() {
            key.index = i;
            let Some(&n) = current.get(&key).and_then(|n| self.index.get(n.as_str())) else {
                continue;
            };
            let here = per_node.entry(n).or_default();
            if checks
                .refusal(n, *here, self.history.get(&key), true)
                .is_none()
            {
                *here += 1;
                self.load[n] += 1;
                mine.insert(i, n);
            }
        }
        mine
    }

    /// The second pass, for one bundle: a kept replica a colocation no longer lets stay
    /// (the other bundle moved away, or came) is placed again, and every replica not kept
    /// goes to the best node, or is pending with the refusals tallied.
    fn place_rest(
        &mut self,
        b: &Bundle,
        mut mine: BTreeMap<u32, usize>,
        colocated: &BTreeMap<&str, Vec<usize>>,
    ) -> (BTreeMap<u32, usize>, BTreeMap<u32, Pending>) {
        let located = scores(b, self.nodes);
        let coloc = colocation_scores(b, self.nodes, colocated);
        let scores = combined(&located, &coloc);
        if coloc.is_some() {
            mine.retain(|_, n| {
                let stays = score_at(&scores, *n) > -INFINITY;
                if !stays {
                    self.load[*n] -= 1;
                }
                stays
            });
        }
        let denied = self.policies.denied(b);
        let checks = Checks::new(b, self.nodes, (&scores, &located), &denied, self.now);
        let mut per_node: BTreeMap<usize, u32> = BTreeMap::new();
        for n in mine.values() {
            *per_node.entry(*n).or_default() += 1;
        }
        let mut pending = BTreeMap::new();
        let mut key = ReplicaKey::new(b.name(), 0);
        for i in 0..b.spec.replicas() {
            if mine.contains_key(&i) {
                continue;
            }
            key.index = i;
            match self.best(&checks, &per_node, self.history.get(&key)) {
                Ok(n) => {
                    *per_node.entry(n).or_default() += 1;
                    self.load[n] += 1;
                    mine.insert(i, n);
                }
                Err(reason) => {
                    pending.insert(i, reason);
                }
            }
        }
        (mine, pending)
    }

    /// The best node for one replica whose failures are `hist`: of the nodes that pass
    /// every check, the highest score, then the fewest of the bundle's replicas, then the
    /// least load. Without one, why not.
    fn best(
        &self,
        checks: &Checks,
        per_node: &BTreeMap<usize, u32>,
        hist: Option<&History>,
    ) -> Result<usize, Pending> {
        let mut best: Option<(usize, (i64, i64, i64))> = None;
        let mut tally = Tally::default();
        for (n, &node_load) in self.load.iter().enumerate() {
            let here = per_node.get(&n).copied().unwrap_or(0);
            if let Some(r) = checks.refusal(n, here, hist, false) {
                tally.count(r, || denied_at(checks.denied, n).map(str::to_string));
                continue;
            }
            let rank = (
                score_at(checks.scores, n),
                -i64::from(here),
                -i64::from(node_load),
            );
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((n, rank));
            }
        }
        match best {
            Some((n, _)) => Ok(n),
            None if self.nodes.is_empty() => Err(Pending::NoNodeOnline),
            None => {
                tally.online = self.nodes.len();
                tally.replicas_per_host = checks.rph;
                Err(Pending::NoNode(tally))
            }
        }
    }
}

/// The order bundles are placed in: by name, except that a bundle colocated with another
/// comes after it (Pacemaker places the `with-rsc` first). A cycle is broken by name.
fn placement_order<B: std::borrow::Borrow<Bundle>>(bundles: &[B]) -> Vec<&Bundle> {
    let mut by_name: Vec<&Bundle> = bundles.iter().map(|b| b.borrow()).collect();
    by_name.sort_by(|a, b| a.name().cmp(b.name()));
    if by_name.iter().all(|b| b.spec.colocations.is_empty()) {
        return by_name;
    }
    let index: std::collections::HashMap<&str, usize> = by_name
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name(), i))
        .collect();
    // 0: not seen, 1: being visited, 2: done.
    let mut state = vec![0u8; by_name.len()];
    let mut out = Vec::with_capacity(by_name.len());
    fn visit<'a>(
        i: usize,
        all: &[&'a Bundle],
        index: &std::collections::HashMap<&str, usize>,
        state: &mut [u8],
        out: &mut Vec<&'a Bundle>,
    ) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for c in &all[i].spec.colocations {
            if let Some(&j) = index.get(c.with.as_str()) {
                visit(j, all, index, state, out);
            }
        }
        state[i] = 2;
        out.push(all[i]);
    }
    for i in 0..by_name.len() {
        visit(i, &by_name, &index, &mut state, &mut out);
    }
    out
}

/// Pacemaker's score addition: -INFINITY wins over anything, then INFINITY; else the sum,
/// within ±INFINITY.
pub fn add_scores(a: i64, b: i64) -> i64 {
    if a <= -INFINITY || b <= -INFINITY {
        -INFINITY
    } else if a >= INFINITY || b >= INFINITY {
        INFINITY
    } else {
        (a + b).clamp(-INFINITY, INFINITY)
    }
}

/// Each node's score from the bundle's colocations (those that place replicas: not the
/// ones for its promoted replica), given where the bundles it names have been placed; None
/// when it has none. INFINITY: only where the other bundle runs (-INFINITY elsewhere);
/// -INFINITY: never there; a finite score: added there. A bundle that does not run (or
/// does not exist) runs nowhere.
fn colocation_scores(
    b: &Bundle,
    nodes: &[&NodeView],
    colocated: &BTreeMap<&str, Vec<usize>>,
) -> Option<Vec<i64>> {
    let placing: Vec<_> = b
        .spec
        .colocations
        .iter()
        .zip(&b.resolved().colocation_scores)
        .filter(|(c, _)| !c.for_promoted())
        .collect();
    if placing.is_empty() {
        return None;
    }
    let mut out = vec![0i64; nodes.len()];
    for (c, &s) in placing {
        let mut present = vec![false; nodes.len()];
        for &n in colocated.get(c.with.as_str()).into_iter().flatten() {
            present[n] = true;
        }
        if let Some(role) = c.with_role() {
            let promoted = |n: usize| nodes[n].promoted.contains(&c.with);
            for (n, p) in present.iter_mut().enumerate() {
                *p = *p && (promoted(n) == (role == crate::model::cluster::Role::Promoted));
            }
        }
        for (n, score) in out.iter_mut().enumerate() {
            // Beside it the score counts (INFINITY only as "allowed"); away from it only a
            // mandatory colocation counts, as a ban.
            let here = match (present[n], s >= INFINITY) {
                (true, true) => 0,
                (true, false) => s,
                (false, true) => -INFINITY,
                (false, false) => 0,
            };
            *score = add_scores(*score, here);
        }
    }
    Some(out)
}

/// Location and colocation scores added (None when neither has any).
fn combined(located: &Option<Vec<i64>>, coloc: &Option<Vec<i64>>) -> Option<Vec<i64>> {
    match (located, coloc) {
        (None, None) => None,
        (Some(l), None) => Some(l.clone()),
        (None, Some(c)) => Some(c.clone()),
        (Some(l), Some(c)) => Some(l.iter().zip(c).map(|(a, b)| add_scores(*a, *b)).collect()),
    }
}

/// The nodes' host policies, grouped: nodes permitting the same things share a class, so
/// that a bundle is checked once per class (a cluster has a few), not once per node.
struct Policies<'a> {
    /// Node index → class.
    class_of: Vec<usize>,
    classes: Vec<&'a Permits>,
}

impl<'a> Policies<'a> {
    fn of(nodes: &[&'a NodeView]) -> Self {
        let mut ids: std::collections::HashMap<&Permits, usize> = Default::default();
        let mut classes = Vec::new();
        let class_of = nodes
            .iter()
            .map(|n| {
                *ids.entry(&n.permits).or_insert_with(|| {
                    classes.push(&n.permits);
                    classes.len() - 1
                })
            })
            .collect();
        Policies { class_of, classes }
    }

    /// Per node, what it does not permit of the bundle, or None; None for the whole when
    /// every node permits it (the common case, with no allocation per node).
    fn denied(&self, b: &Bundle) -> Option<Vec<Option<String>>> {
        let needs = policy::needs(b);
        let per_class: Vec<Option<String>> = self
            .classes
            .iter()
            .map(|p| {
                let missing = p.missing(&needs);
                (!missing.is_empty()).then(|| missing.join(", "))
            })
            .collect();
        if per_class.iter().all(Option::is_none) {
            return None;
        }
        Some(
            self.class_of
                .iter()
                .map(|&c| per_class[c].clone())
                .collect(),
        )
    }
}

/// What node `n` does not permit, from [`denied`].
fn denied_at(denied: &Option<Vec<Option<String>>>, n: usize) -> Option<&str> {
    denied.as_ref().and_then(|d| d[n].as_deref())
}

/// A node's score from [`scores`].
fn score_at(scores: &Option<Vec<i64>>, n: usize) -> i64 {
    scores.as_ref().map_or(0, |s| s[n])
}

/// Each node's location score for a bundle (-INFINITY bans); None when the bundle has no
/// location constraints (every node scores 0), which keeps the common case allocation-free.
/// A bundle with exclusive locations (`resource-discovery: exclusive`) may only go to a
/// node one of them matches: the others score -INFINITY.
fn scores(b: &Bundle, nodes: &[&NodeView]) -> Option<Vec<i64>> {
    if b.spec.locations.is_empty() {
        return None;
    }
    let exclusive = b.spec.locations.iter().any(|l| l.exclusive());
    Some(
        nodes
            .iter()
            .map(|n| {
                let matching = || {
                    b.spec
                        .locations
                        .iter()
                        .zip(&b.resolved().location_scores)
                        .filter(|(l, _)| l.matches(&n.name, &n.labels))
                };
                if exclusive && !matching().any(|(l, _)| l.exclusive()) {
                    return -INFINITY;
                }
                matching()
                    .map(|(_, score)| score)
                    .sum::<i64>()
                    .clamp(-INFINITY, INFINITY)
            })
            .collect(),
    )
}

/// Has this replica failed `migration-threshold` times on the node, within
/// `failure-timeout` of the last failure? (Pacemaker: a threshold of 0 never bans.)
fn banned(b: &Bundle, hist: Option<&History>, node: &str, now: u64) -> bool {
    ban(b, hist, node, now) != Ban::None
}

/// A replica's ban from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ban {
    None,
    /// Until this second (failure-timeout after the last failure).
    Until(u64),
    /// Without a failure-timeout, until its failures are cleaned up.
    Forever,
}

fn ban(b: &Bundle, hist: Option<&History>, node: &str, now: u64) -> Ban {
    let Some(h) = hist else { return Ban::None };
    let meta = b.resolved().meta;
    let Some(threshold) = meta.migration_threshold else {
        return Ban::None;
    };
    let count = i64::from(h.fail_counts.get(node).copied().unwrap_or(0));
    if count < threshold {
        return Ban::None;
    }
    match (meta.failure_timeout, h.last_failure) {
        (Some(t), Some(last)) => {
            let end = last.saturating_add(t.as_secs());
            if now >= end {
                Ban::None
            } else {
                Ban::Until(end)
            }
        }
        _ => Ban::Forever,
    }
}

/// The next second at which a replica's ban from a node runs out (failure-timeout), when
/// one will: placement may change then without any event.
pub fn next_ban_end<B: std::borrow::Borrow<Bundle>>(
    bundles: &[B],
    history: &BTreeMap<ReplicaKey, History>,
    now: u64,
) -> Option<u64> {
    let by_name: BTreeMap<&str, &Bundle> = bundles
        .iter()
        .map(|b| (b.borrow().name(), b.borrow()))
        .collect();
    history
        .iter()
        .filter_map(|(k, h)| Some((*by_name.get(k.bundle.as_str())?, h)))
        .flat_map(|(b, h)| {
            h.fail_counts
                .keys()
                .filter_map(move |node| match ban(b, Some(h), node, now) {
                    Ban::Until(t) => Some(t),
                    _ => None,
                })
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BundleSpec, ContainerSpec, Location, NvPair};

    fn bundle(name: &str, replicas: u32, rph: u32) -> Bundle {
        Bundle::new(
            name,
            BundleSpec {
                docker: Some(ContainerSpec {
                    image: "i".into(),
                    replicas: Some(replicas),
                    replicas_per_host: Some(rph),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    fn nodes(names: &[&str]) -> Vec<NodeView> {
        names
            .iter()
            .map(|n| NodeView {
                name: n.to_string(),
                labels: BTreeMap::from([("zone".to_string(), format!("z-{n}"))]),
                ..Default::default()
            })
            .collect()
    }

    fn on(p: &Placement, b: &str) -> Vec<String> {
        p.placed
            .get(b)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_bundle_asking_for_privileges_goes_only_where_they_are_permitted() {
        let mut ns = nodes(&["a", "b", "c"]);
        ns[1].permits.privileged = true;
        let mut priv_b = bundle("p", 2, 1);
        priv_b.spec.docker.as_mut().unwrap().options = Some("--privileged".into());
        let plain = bundle("q", 3, 1);
        let p = place(&[priv_b, plain], &ns, &BTreeMap::new(), &BTreeMap::new(), 0);
        assert_eq!(
            on(&p, "p"),
            ["b"],
            "one replica, on the only permitting node"
        );
        let why = p.pending["p"][&1].to_string();
        assert!(
            why.contains("1 at replicas-per-host 1")
                && why.contains("2 not permitting privileged mode (berth node --allow-privileged)"),
            "{why}"
        );
        assert_eq!(on(&p, "q").len(), 3, "a plain bundle goes anywhere");
    }

    fn current(p: &Placement) -> BTreeMap<ReplicaKey, String> {
        p.placed
            .iter()
            .flat_map(|(b, m)| {
                m.iter()
                    .map(move |(i, n)| (ReplicaKey::new(b, *i), n.clone()))
            })
            .collect()
    }

    #[test]
    fn spreads_and_respects_replicas_per_host() {
        let p = place(
            &[bundle("a", 3, 1)],
            &nodes(&["n1", "n2", "n3"]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(on(&p, "a"), vec!["n1", "n2", "n3"]);
        let p = place(
            &[bundle("a", 3, 1)],
            &nodes(&["n1", "n2"]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(on(&p, "a"), vec!["n1", "n2"]);
        assert!(
            p.pending["a"][&2]
                .to_string()
                .contains("2 at replicas-per-host 1"),
            "{:?}",
            p.pending
        );
        let p = place(
            &[bundle("a", 3, 3)],
            &nodes(&["n1"]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(on(&p, "a"), vec!["n1", "n1", "n1"]);
    }

    #[test]
    fn no_shuffle_on_scale_up_or_node_join() {
        let first = place(
            &[bundle("a", 2, 1)],
            &nodes(&["n1", "n2"]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
        );
        // n0 joins (it sorts first and is empty) and the bundle scales to 3.
        let p = place(
            &[bundle("a", 3, 1)],
            &nodes(&["n0", "n1", "n2"]),
            &current(&first),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(p.placed["a"][&0], first.placed["a"][&0]);
        assert_eq!(p.placed["a"][&1], first.placed["a"][&1]);
        assert_eq!(p.placed["a"][&2], "n0");
    }

    #[test]
    fn node_loss_moves_only_its_replicas() {
        let first = place(
            &[bundle("a", 2, 1)],
            &nodes(&["n1", "n2", "n3"]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
        );
        let p = place(
            &[bundle("a", 2, 1)],
            &nodes(&["n2", "n3"]),
            &current(&first),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(p.placed["a"][&1], "n2", "replica 1 stays");
        assert_eq!(p.placed["a"][&0], "n3", "replica 0 moves off the lost n1");
    }

    /// OpenStack's shape: score 0 and resource-discovery exclusive on a node attribute
    /// keep a bundle on the nodes that have it, and off every other.
    #[test]
    fn exclusive_locations_confine_placement_to_the_nodes_they_match() {
        let mut b = bundle("a", 3, 1);
        b.spec.locations = vec![Location {
            label: Some("zone=z-n2".into()),
            score: "0".into(),
            resource_discovery: Some("exclusive".into()),
            ..Default::default()
        }];
        let p = place(
            &[b],
            &nodes(&["n1", "n2", "n3"]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(on(&p, "a"), vec!["n2"]);
        assert_eq!(p.pending.get("a").map(|m| m.len()), Some(2));
    }

    #[test]
    fn location_scores_prefer_and_ban() {
        let mut b = bundle("a", 2, 1);
        b.spec.locations = vec![
            Location {
                node: Some("n3".into()),
                label: None,
                score: "100".into(),
                ..Default::default()
            },
            Location {
                node: None,
                label: Some("zone=z-n1".into()),
                score: "-INFINITY".into(),
                ..Default::default()
            },
        ];
        let p = place(
            &[b],
            &nodes(&["n1", "n2", "n3"]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(on(&p, "a"), vec!["n3", "n2"]);
    }

    #[test]
    fn migration_threshold_bans_until_failure_timeout() {
        let mut b = bundle("a", 1, 1);
        b.spec.meta_attributes = vec![
            NvPair {
                id: None,
                name: "migration-threshold".into(),
                value: Some("2".into()),
            },
            NvPair {
                id: None,
                name: "failure-timeout".into(),
                value: Some("60s".into()),
            },
        ];
        let cur = BTreeMap::from([(ReplicaKey::new("a", 0), "n1".to_string())]);
        let hist = BTreeMap::from([(
            ReplicaKey::new("a", 0),
            History {
                fail_counts: BTreeMap::from([("n1".to_string(), 2)]),
                last_failure: Some(1000),
            },
        )]);
        let p = place(
            std::slice::from_ref(&b),
            &nodes(&["n1", "n2"]),
            &cur,
            &hist,
            1010,
        );
        assert_eq!(p.placed["a"][&0], "n2", "moved after 2 failures on n1");
        let p = place(&[b], &nodes(&["n1", "n2"]), &cur, &hist, 1060);
        assert_eq!(p.placed["a"][&0], "n1", "the failures expired: it may stay");
    }

    #[test]
    fn stopped_places_nothing_and_scale_down_drops_the_highest() {
        let mut b = bundle("a", 3, 1);
        let first = place(
            std::slice::from_ref(&b),
            &nodes(&["n1", "n2", "n3"]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
        );
        b.spec_mut().docker.as_mut().unwrap().replicas = Some(2);
        let p = place(
            std::slice::from_ref(&b),
            &nodes(&["n1", "n2", "n3"]),
            &current(&first),
            &BTreeMap::new(),
            0,
        );
        assert_eq!(
            p.placed["a"].keys().copied().collect::<Vec<_>>(),
            vec![0, 1]
        );
        b.spec_mut().meta_attributes.push(NvPair {
            id: None,
            name: "target-role".into(),
            value: Some("Stopped".into()),
        });
        let p = place(&[b], &nodes(&["n1"]), &BTreeMap::new(), &BTreeMap::new(), 0);
        assert!(p.placed.is_empty() && p.pending.is_empty());
    }

    #[test]
    fn deterministic() {
        let bs: Vec<Bundle> = (0..20).map(|i| bundle(&format!("b{i}"), 3, 1)).collect();
        let ns = nodes(&["a", "b", "c", "d", "e"]);
        let p1 = place(&bs, &ns, &BTreeMap::new(), &BTreeMap::new(), 0);
        let mut rev = bs.clone();
        rev.reverse();
        let p2 = place(&rev, &ns, &BTreeMap::new(), &BTreeMap::new(), 0);
        assert_eq!(p1, p2);
        let total: usize = p1.placed.values().map(BTreeMap::len).sum();
        assert_eq!(total, 60);
    }

    fn colocated(name: &str, replicas: u32, with: &str, score: &str) -> Bundle {
        let mut b = bundle(name, replicas, 1);
        b.spec.colocations = vec![crate::model::Colocation {
            with: with.into(),
            score: score.into(),
            ..Default::default()
        }];
        b
    }

    #[test]
    fn a_mandatory_colocation_places_only_beside_the_other_bundle_placed_first() {
        // "a-app" sorts before "z-db" but is placed after it; one db replica on 4 nodes.
        let app = colocated("a-app", 2, "z-db", "INFINITY");
        let db = bundle("z-db", 1, 1);
        let ns = nodes(&["n1", "n2", "n3", "n4"]);
        let (none, nohist) = (BTreeMap::new(), BTreeMap::new());
        let p = place(&[app.clone(), db.clone()], &ns, &none, &nohist, 0);
        let db_node = p.placed["z-db"][&0].clone();
        assert_eq!(p.placed["a-app"][&0], db_node);
        assert!(
            p.pending["a-app"][&1]
                .to_string()
                .contains("3 excluded by colocation"),
            "{:?}",
            p.pending
        );
        // The db moves (its node is lost): the app replica follows it.
        let rest: Vec<NodeView> = ns.iter().filter(|n| n.name != db_node).cloned().collect();
        let moved = place(&[app, db], &rest, &current(&p), &nohist, 0);
        assert_ne!(moved.placed["z-db"][&0], db_node);
        assert_eq!(moved.placed["a-app"][&0], moved.placed["z-db"][&0]);
    }

    #[test]
    fn an_anti_colocation_keeps_off_and_a_finite_score_prefers() {
        let db = bundle("db", 2, 1);
        let ns = nodes(&["n1", "n2", "n3"]);
        let (none, nohist) = (BTreeMap::new(), BTreeMap::new());
        let away = colocated("app", 3, "db", "-INFINITY");
        let p = place(&[away, db.clone()], &ns, &none, &nohist, 0);
        let db_nodes = on(&p, "db");
        assert_eq!(on(&p, "app").len(), 1);
        assert!(!db_nodes.contains(&on(&p, "app")[0]), "{p:?}");
        // A score of 50 beside db beats the emptier node.
        let near = colocated("app", 1, "db", "50");
        let p = place(&[near, db], &ns, &none, &nohist, 0);
        assert!(on(&p, "db").contains(&on(&p, "app")[0]), "{p:?}");
    }

    #[test]
    fn a_colocation_with_the_promoted_replica_follows_the_promotion() {
        let mut app = colocated("app", 1, "db", "INFINITY");
        app.spec.colocations[0].with_role = Some("Promoted".into());
        let db = bundle("db", 2, 1);
        let mut ns = nodes(&["n1", "n2", "n3"]);
        let (none, nohist) = (BTreeMap::new(), BTreeMap::new());
        // No db replica is promoted yet: the app waits.
        let p = place(&[app.clone(), db.clone()], &ns, &none, &nohist, 0);
        assert!(!p.placed.contains_key("app"), "{p:?}");
        let promoted_on = p.placed["db"][&1].clone();
        for n in &mut ns {
            if n.name == promoted_on {
                n.promoted.insert("db".into());
            }
        }
        let p = place(&[app, db], &ns, &current(&p), &nohist, 0);
        assert_eq!(p.placed["app"][&0], promoted_on);
    }

    #[test]
    fn colocation_cycles_and_missing_bundles_do_not_break_placement() {
        let a = colocated("a", 1, "b", "100");
        let b = colocated("b", 1, "a", "100");
        let ghost = colocated("c", 1, "nobody", "INFINITY");
        let ns = nodes(&["n1", "n2"]);
        let (none, nohist) = (BTreeMap::new(), BTreeMap::new());
        let p = place(&[a, b, ghost], &ns, &none, &nohist, 0);
        assert_eq!(on(&p, "a"), on(&p, "b"), "{p:?}");
        assert!(
            p.pending["c"][&0]
                .to_string()
                .contains("2 excluded by colocation"),
            "{p:?}"
        );
    }

    #[test]
    fn pending_reasons_read_as_they_always_have() {
        let order = |promote, id: Option<&str>| Pending::Order {
            first: "db".into(),
            promote,
            id: id.map(str::to_string),
        };
        assert_eq!(
            order(false, Some("o1")).to_string(),
            "waiting for bundle db to start (order o1)"
        );
        assert_eq!(
            order(true, None).to_string(),
            "waiting for bundle db to be promoted (order)"
        );
        assert_eq!(
            Pending::Ordered {
                first: "web-0".into()
            }
            .to_string(),
            "waiting for web-0 to start (ordered)"
        );
        assert!(order(true, None).is_wait() && !Pending::NoNodeOnline.is_wait());
        let t = Tally {
            online: 3,
            replicas_per_host: 1,
            in_standby: 1,
            full: 2,
            ..Tally::default()
        };
        assert_eq!(
            Pending::NoNode(t).to_string(),
            "no node can take it: 3 online, 0 banned by location, 0 over migration-threshold, 2 at replicas-per-host 1, 1 in standby"
        );
    }

    #[test]
    fn scores_add_as_pacemaker_adds_them() {
        assert_eq!(add_scores(INFINITY, -INFINITY), -INFINITY);
        assert_eq!(add_scores(INFINITY, -5), INFINITY);
        assert_eq!(add_scores(999_999, 5), INFINITY);
        assert_eq!(add_scores(-3, 5), 2);
    }
}
