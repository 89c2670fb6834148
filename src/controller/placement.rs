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

use crate::model::validate::{parse_bool, parse_score};
use crate::model::{Bundle, duration};

/// Pacemaker's INFINITY score.
pub const INFINITY: i64 = 1_000_000;

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
}

/// One replica's failure history: failures per node, and when the last one happened
/// (seconds since the Unix epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub fail_counts: BTreeMap<String, u32>,
    pub last_failure: Option<u64>,
}

/// A replica: bundle name and ordinal.
pub type Replica = (String, u32);

/// What placement decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// bundle → ordinal → node.
    pub placed: BTreeMap<String, BTreeMap<u32, String>>,
    /// bundle → ordinal → why it could not be placed.
    pub pending: BTreeMap<String, BTreeMap<u32, String>>,
}

/// Is the bundle meant to run (target-role is not Stopped)?
pub fn wanted_running(b: &Bundle) -> bool {
    !b.spec
        .meta("target-role")
        .is_some_and(|r| r.eq_ignore_ascii_case("stopped"))
}

/// Is the bundle managed (is-managed is not false)?
pub fn managed(b: &Bundle) -> bool {
    b.spec
        .meta("is-managed")
        .and_then(parse_bool)
        .unwrap_or(true)
}

/// Decides where every replica runs.
pub fn place<B: std::borrow::Borrow<Bundle>>(
    bundles: &[B],
    nodes: &[NodeView],
    current: &BTreeMap<Replica, String>,
    history: &BTreeMap<Replica, History>,
    now: u64,
) -> Placement {
    let mut nodes: Vec<&NodeView> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut load = vec![0u32; nodes.len()];
    let policies = Policies::of(&nodes);
    let mut out = Placement::default();
    let mut order: Vec<&Bundle> = bundles.iter().map(|b| b.borrow()).collect();
    order.sort_by(|a, b| a.name().cmp(b.name()));

    // First pass: every replica that can stay, stays, and counts toward the load, so that
    // new replicas of any bundle see the real load.
    let mut kept: Vec<BTreeMap<u32, usize>> = Vec::with_capacity(order.len());
    for b in &order {
        let scores = scores(b, &nodes);
        let denied = policies.denied(b);
        let mut mine: BTreeMap<u32, usize> = BTreeMap::new();
        if wanted_running(b) {
            let rph = b.spec.replicas_per_host();
            let mut per_node: BTreeMap<usize, u32> = BTreeMap::new();
            for i in 0..b.spec.replicas() {
                let key = (b.name().to_string(), i);
                let Some(&n) = current.get(&key).and_then(|n| index.get(n.as_str())) else {
                    continue;
                };
                let here = per_node.entry(n).or_default();
                if score_at(&scores, n) > -INFINITY
                    && !nodes[n].standby
                    && denied_at(&denied, n).is_none()
                    && !banned(b, history.get(&key), &nodes[n].name, now)
                    && *here < rph
                {
                    *here += 1;
                    load[n] += 1;
                    mine.insert(i, n);
                }
            }
        }
        kept.push(mine);
    }

    // Second pass: place the rest.
    for (b, mut mine) in order.iter().zip(kept) {
        let name = b.name().to_string();
        if !wanted_running(b) {
            continue;
        }
        let scores = scores(b, &nodes);
        let denied = policies.denied(b);
        let rph = b.spec.replicas_per_host();
        let mut per_node: BTreeMap<usize, u32> = BTreeMap::new();
        for n in mine.values() {
            *per_node.entry(*n).or_default() += 1;
        }
        for i in 0..b.spec.replicas() {
            if mine.contains_key(&i) {
                continue;
            }
            let hist = history.get(&(name.clone(), i));
            let mut best: Option<(usize, (i64, i64, i64))> = None;
            let (mut banned_loc, mut banned_fail, mut full) = (0, 0, 0);
            let mut refused: Option<&str> = None;
            let mut not_permitted = 0;
            let mut in_maintenance = 0;
            let mut in_standby = 0;
            for (n, node) in nodes.iter().enumerate() {
                if node.maintenance {
                    in_maintenance += 1;
                    continue;
                }
                if node.standby {
                    in_standby += 1;
                    continue;
                }
                let score = score_at(&scores, n);
                if score <= -INFINITY {
                    banned_loc += 1;
                    continue;
                }
                if let Some(why) = denied_at(&denied, n) {
                    not_permitted += 1;
                    refused.get_or_insert(why);
                    continue;
                }
                let here = per_node.get(&n).copied().unwrap_or(0);
                if here >= rph {
                    full += 1;
                    continue;
                }
                if banned(b, hist, &node.name, now) {
                    banned_fail += 1;
                    continue;
                }
                // Higher is better: location score, then fewer of this bundle, then less load.
                let rank = (score, -i64::from(here), -i64::from(load[n]));
                if best.is_none_or(|(_, r)| rank > r) {
                    best = Some((n, rank));
                }
            }
            match best {
                Some((n, _)) => {
                    *per_node.entry(n).or_default() += 1;
                    load[n] += 1;
                    mine.insert(i, n);
                }
                None => {
                    let reason = if nodes.is_empty() {
                        "no node is online".to_string()
                    } else {
                        let mut r = format!(
                            "no node can take it: {} online, {banned_loc} banned by location, {banned_fail} over migration-threshold, {full} at replicas-per-host {rph}",
                            nodes.len()
                        );
                        if let Some(why) = refused {
                            r.push_str(&format!(", {not_permitted} not permitting {why}"));
                        }
                        if in_maintenance > 0 {
                            r.push_str(&format!(", {in_maintenance} in maintenance"));
                        }
                        if in_standby > 0 {
                            r.push_str(&format!(", {in_standby} in standby"));
                        }
                        r
                    };
                    out.pending
                        .entry(name.clone())
                        .or_default()
                        .insert(i, reason);
                }
            }
        }
        if !mine.is_empty() {
            out.placed.insert(
                name,
                mine.into_iter()
                    .map(|(i, n)| (i, nodes[n].name.clone()))
                    .collect(),
            );
        }
    }
    out
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
fn scores(b: &Bundle, nodes: &[&NodeView]) -> Option<Vec<i64>> {
    if b.spec.locations.is_empty() {
        return None;
    }
    Some(
        nodes
            .iter()
            .map(|n| {
                b.spec
                    .locations
                    .iter()
                    .filter(|l| l.matches(&n.name, &n.labels))
                    .map(|l| parse_score(&l.score).unwrap_or(0))
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
    let Some(threshold) = b
        .spec
        .meta("migration-threshold")
        .and_then(parse_score)
        .filter(|t| *t > 0)
    else {
        return Ban::None;
    };
    let count = i64::from(h.fail_counts.get(node).copied().unwrap_or(0));
    if count < threshold {
        return Ban::None;
    }
    match (
        b.spec.meta("failure-timeout").map(duration::parse),
        h.last_failure,
    ) {
        (Some(Ok(t)), Some(last)) if !t.is_zero() => {
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
    history: &BTreeMap<Replica, History>,
    now: u64,
) -> Option<u64> {
    let by_name: BTreeMap<&str, &Bundle> = bundles
        .iter()
        .map(|b| (b.borrow().name(), b.borrow()))
        .collect();
    history
        .iter()
        .filter_map(|((bundle, _), h)| Some((*by_name.get(bundle.as_str())?, h)))
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
        let why = &p.pending["p"][&1];
        assert!(
            why.contains("1 at replicas-per-host 1")
                && why.contains("2 not permitting privileged mode (berth node --allow-privileged)"),
            "{why}"
        );
        assert_eq!(on(&p, "q").len(), 3, "a plain bundle goes anywhere");
    }

    fn current(p: &Placement) -> BTreeMap<Replica, String> {
        p.placed
            .iter()
            .flat_map(|(b, m)| m.iter().map(move |(i, n)| ((b.clone(), *i), n.clone())))
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
            p.pending["a"][&2].contains("2 at replicas-per-host 1"),
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

    #[test]
    fn location_scores_prefer_and_ban() {
        let mut b = bundle("a", 2, 1);
        b.spec.locations = vec![
            Location {
                node: Some("n3".into()),
                label: None,
                score: "100".into(),
            },
            Location {
                node: None,
                label: Some("zone=z-n1".into()),
                score: "-INFINITY".into(),
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
        let cur = BTreeMap::from([(("a".to_string(), 0), "n1".to_string())]);
        let hist = BTreeMap::from([(
            ("a".to_string(), 0),
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
        b.spec.docker.as_mut().unwrap().replicas = Some(2);
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
        b.spec.meta_attributes.push(NvPair {
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
}
