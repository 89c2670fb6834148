//! What a change would do before it happens (pure), as Pacemaker's `crm_simulate` and
//! Nomad's `plan` tell: the cluster as it is (`View`), changed by bundles applied and nodes
//! lost, placed by the same [`place`] the controller runs; the differences from where the
//! replicas run now, as a list of changes.

use super::placement::{Pending, Placement};
use crate::model::ReplicaKey;
use std::collections::{BTreeMap, BTreeSet};

use super::placement::{managed, place};
use super::rollout::same_container;
use super::status::choose_promoted;
use super::view::View;
use crate::model::Bundle;

/// One change to one replica.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Start {
        replica: String,
        node: String,
    },
    Stop {
        replica: String,
        node: String,
        why: String,
    },
    Move {
        replica: String,
        from: String,
        to: String,
    },
    /// Its container is replaced (a spec change that shapes it), on the same node.
    Replace {
        replica: String,
        node: String,
    },
    Promote {
        replica: String,
        node: String,
    },
    Demote {
        replica: String,
        node: String,
    },
    /// Wanted but cannot be placed.
    Pending {
        replica: String,
        why: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Start { replica, node } => write!(f, "Start    {replica} ( {node} )"),
            Change::Stop { replica, node, why } => {
                write!(f, "Stop     {replica} ( {node} )")?;
                if !why.is_empty() {
                    write!(f, " {why}")?;
                }
                Ok(())
            }
            Change::Move { replica, from, to } => {
                write!(f, "Move     {replica} ( {from} -> {to} )")
            }
            Change::Replace { replica, node } => {
                write!(
                    f,
                    "Replace  {replica} ( {node} ) new spec, as its rollout allows"
                )
            }
            Change::Promote { replica, node } => write!(f, "Promote  {replica} ( {node} )"),
            Change::Demote { replica, node } => write!(f, "Demote   {replica} ( {node} )"),
            Change::Pending { replica, why } => write!(f, "Pending  {replica}: {why}"),
        }
    }
}

/// The cluster `view` with `applied` bundles (new or changed) and without the nodes in
/// `down`: the changes placement would make, bundle by bundle, in ordinal order.
pub fn what_if(view: &View, applied: &[Bundle], down: &BTreeSet<String>, now: u64) -> Vec<Change> {
    let mut bundles: BTreeMap<String, std::sync::Arc<Bundle>> = view.bundles.clone();
    for b in applied {
        bundles.insert(b.name().to_string(), std::sync::Arc::new(b.clone()));
    }
    let nodes: Vec<_> = view
        .nodes
        .iter()
        .filter(|n| !down.contains(&n.name))
        .cloned()
        .collect();
    let managed_bundles: Vec<&Bundle> = bundles
        .values()
        .map(|b| &**b)
        .filter(|b| managed(b))
        .collect();
    let placement = place(&managed_bundles, &nodes, &view.current, &view.history, now);
    let mut out = Vec::new();
    for b in managed_bundles {
        changes_of(b, &placement, view, &mut out);
    }
    out
}

/// One bundle's changes: each replica wanted or running, where it runs now against where
/// placement puts it, and its promotion.
fn changes_of(b: &Bundle, placement: &Placement, view: &View, out: &mut Vec<Change>) {
    let name = b.name();
    let placed = placement.placed.get(name);
    let pending = placement.pending.get(name);
    let promoted_after = placed
        .map(|p| choose_promoted(b, p, view, &BTreeSet::new()))
        .unwrap_or_default();
    // Where each replica runs now, and whether it runs promoted.
    let now_at = |i: u32| view.current.get(&ReplicaKey::new(name, i));
    let promoted_now = |i: u32, node: &str| {
        view.assignments
            .get(&(node.to_string(), name.to_string()))
            .is_some_and(|a| a.promoted.contains(&i))
    };
    let wanted = (0..b.spec.replicas()).collect::<BTreeSet<u32>>();
    let running: BTreeSet<u32> = view
        .current
        .range(ReplicaKey::all_of(name))
        .map(|(k, _)| k.index)
        .collect();
    for i in wanted.union(&running).copied() {
        let replica = b.replica_name(i);
        let after = placed.and_then(|p| p.get(&i));
        let why = pending.and_then(|p| p.get(&i));
        out.extend(placement_change(b, i, now_at(i), after, why, view));
        if b.spec.promoted_max() > 0 {
            let was = now_at(i).is_some_and(|n| promoted_now(i, n));
            let will = promoted_after.contains(&i);
            match (was, will, after) {
                (false, true, Some(node)) => out.push(Change::Promote {
                    replica,
                    node: node.clone(),
                }),
                (true, false, _) => out.push(Change::Demote {
                    replica,
                    node: now_at(i).cloned().unwrap_or_default(),
                }),
                _ => {}
            }
        }
    }
}

/// Replica `i`'s change: it starts, moves, is replaced where it runs, stops, or stays
/// pending (`why`); None when it stays as it is.
fn placement_change(
    b: &Bundle,
    i: u32,
    now_at: Option<&String>,
    after: Option<&String>,
    why: Option<&Pending>,
    view: &View,
) -> Option<Change> {
    let replica = b.replica_name(i);
    Some(match (now_at, after) {
        (None, Some(to)) => Change::Start {
            replica,
            node: to.clone(),
        },
        (Some(from), Some(to)) if from != to => Change::Move {
            replica,
            from: from.clone(),
            to: to.clone(),
        },
        (Some(from), Some(_)) => {
            let runs = view
                .assignments
                .get(&(from.clone(), b.name().to_string()))
                .map(|a| a.spec_of(i));
            if runs.is_none_or(|r| same_container(r, b, i)) {
                return None;
            }
            Change::Replace {
                replica,
                node: from.clone(),
            }
        }
        (Some(from), None) => Change::Stop {
            replica,
            node: from.clone(),
            why: why
                .map(|w| format!("(cannot stay: {w})"))
                .unwrap_or_default(),
        },
        (None, None) => Change::Pending {
            replica,
            why: why?.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cluster::{Assignment, NodeInfo};
    use crate::store::Keys;
    use crate::store::watch::{Cache, WatchEvent};

    fn bundle(name: &str, image: &str, replicas: u32) -> Bundle {
        serde_json::from_value(serde_json::json!({
            "apiVersion": crate::model::API_VERSION,
            "kind": crate::model::KIND,
            "metadata": {"name": name, "generation": 1},
            "spec": {"docker": {"image": image, "replicas": replicas, "replicasPerHost": 1}},
        }))
        .unwrap()
    }

    /// Nodes n1..n3; bundle web (2 replicas) running web-0 on n1 and web-1 on n2.
    fn view() -> View {
        let keys = Keys::new("/t");
        let mut items = Vec::new();
        let mut rev = 0;
        let mut kv = |key: String, value: Vec<u8>| {
            rev += 1;
            crate::store::Kv::first_write(key, value, rev)
        };
        for n in ["n1", "n2", "n3"] {
            let info = NodeInfo {
                name: n.into(),
                ..Default::default()
            };
            items.push(kv(keys.node(n), serde_json::to_vec(&info).unwrap()));
        }
        let web = bundle("web", "img:1", 2);
        items.push(kv(keys.bundle("web"), crate::store::encode_bundle(&web)));
        for (node, i) in [("n1", 0), ("n2", 1)] {
            let a = Assignment {
                bundle: web.clone().into(),
                replicas: vec![i],
                managed: true,
                promoted: vec![],
                pinned: vec![],
                cleanup: 0,
                stop_after: vec![],
                notify: None,
            };
            items.push(kv(
                keys.assignment(node, "web"),
                serde_json::to_vec(&a).unwrap(),
            ));
        }
        let mut cache = Cache::default();
        cache.apply(&WatchEvent::Listed {
            revision: rev,
            items,
        });
        View::read(&keys, &cache)
    }

    #[test]
    fn nothing_changed_changes_nothing() {
        assert_eq!(what_if(&view(), &[], &BTreeSet::new(), 0), vec![]);
    }

    #[test]
    fn a_node_down_moves_its_replica() {
        let down = BTreeSet::from(["n1".to_string()]);
        assert_eq!(
            what_if(&view(), &[], &down, 0),
            vec![Change::Move {
                replica: "web-0".into(),
                from: "n1".into(),
                to: "n3".into()
            }]
        );
    }

    #[test]
    fn losing_too_many_nodes_stops_what_cannot_stay() {
        let down = BTreeSet::from(["n1".to_string(), "n3".to_string()]);
        let changes = what_if(&view(), &[], &down, 0);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(
            matches!(&changes[0], Change::Stop { replica, node, why } if replica == "web-0" && node == "n1" && why.contains("cannot stay")),
            "{changes:?}"
        );
    }

    #[test]
    fn an_applied_bundle_scales_and_replaces() {
        let mut web = bundle("web", "img:2", 3);
        web.metadata.generation = Some(2);
        let changes = what_if(&view(), &[web, bundle("db", "pg", 1)], &BTreeSet::new(), 0);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"Replace  web-0 ( n1 ) new spec, as its rollout allows".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"Replace  web-1 ( n2 ) new spec, as its rollout allows".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"Start    web-2 ( n3 )".to_string()),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("Start    db-0 (")),
            "{text:?}"
        );
        assert_eq!(text.len(), 4, "{text:?}");
    }
}
