//! This node's assignments as the agent keeps them (pure): each key decoded and checked
//! once per change, an unusable value never taken as a removal, and what they ask for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use super::core::{Desired, Unrunnable};
use super::plan::ReplicaKey;
use crate::model::Bundle;
use crate::model::cluster::{Assignment, Role};
use crate::model::container;
use crate::store::Kv;

/// An assignment as the agent keeps it: the bundle, and why it cannot run here when it
/// cannot (it does not validate, or host policy refuses it: its replicas then report that
/// and nothing of it starts).
#[derive(Debug)]
struct Usable {
    a: Assignment,
    refused: Option<String>,
}

/// What this node's assignments ask for.
#[derive(Debug, Default)]
pub struct Wanted {
    /// Every managed replica, with its container or why it cannot run.
    pub containers: Desired,
    /// Their addresses.
    pub addrs: BTreeMap<ReplicaKey, Option<Ipv4Addr>>,
    /// Bundles that are not managed (is-managed=false, or an unusable assignment with no
    /// last usable value): their containers are left as they are.
    pub unmanaged: BTreeSet<String>,
    /// The role each replica of a promotable bundle must run in.
    pub roles: BTreeMap<ReplicaKey, Role>,
    /// When each replica's failures were last cleaned up (`berth cleanup`), where they were.
    pub cleanups: BTreeMap<ReplicaKey, u64>,
    /// The clone notification each replica is a target of (`notify=true`).
    pub notifies: BTreeMap<ReplicaKey, crate::model::cluster::Notification>,
}

/// The decoded assignments of one node.
#[derive(Debug, Default)]
pub struct Assigned {
    /// Per assignment key: its bundle, and its last usable value.
    usable: BTreeMap<String, Usable>,
    /// Per assignment key whose current value cannot be used: its bundle. Without a last
    /// usable value, its bundle's containers are left exactly as they are.
    unusable: BTreeMap<String, String>,
    /// The mod revision each key was decoded at.
    decoded_at: BTreeMap<String, i64>,
}

impl Assigned {
    /// Decodes the keys that changed, by mod revision; forgets deleted ones (only a delete
    /// removes replicas). `bundle_of` names the bundle an assignment key is for; `denied`
    /// is the host policy (why this node does not run a bundle, or None), asked once per
    /// change.
    pub fn update<'k>(
        &mut self,
        items: &'k BTreeMap<String, Kv>,
        bundle_of: impl Fn(&'k str) -> Option<&'k str>,
        denied: impl Fn(&Bundle) -> Option<String>,
    ) {
        self.usable.retain(|k, _| items.contains_key(k));
        self.unusable.retain(|k, _| items.contains_key(k));
        self.decoded_at.retain(|k, _| items.contains_key(k));
        for (key, kv) in items {
            if self.decoded_at.get(key) == Some(&kv.mod_revision) {
                continue;
            }
            self.decoded_at.insert(key.clone(), kv.mod_revision);
            let bundle = bundle_of(key).unwrap_or_default();
            match usable_assignment(bundle, &kv.value) {
                Ok(a) => {
                    // The assignment's spec and the older ones replicas are pinned to.
                    let specs =
                        || std::iter::once(&*a.bundle).chain(a.pinned.iter().map(|h| &*h.bundle));
                    let refused = specs().find_map(|b| b.validated().err().map(|e| e.to_string()));
                    match (&refused, self.usable.get(key)) {
                        // A bundle that does not validate: the last valid value stays.
                        (Some(why), Some(last)) if last.refused.is_none() => {
                            tracing::warn!(key = %key, "invalid bundle in assignment (keeping the last valid one): {why}");
                        }
                        // None to keep: its replicas report why, nothing starts, and
                        // containers it had are left as they are. Host policy is checked
                        // here too (the controller placed by what this node advertised).
                        _ => {
                            let refused = refused.or_else(|| specs().find_map(&denied));
                            self.usable.insert(key.clone(), Usable { a, refused });
                        }
                    }
                    self.unusable.remove(key);
                }
                Err(why) => {
                    let kept = if self.usable.contains_key(key) {
                        "keeping the last usable one"
                    } else {
                        "leaving its containers as they are"
                    };
                    tracing::warn!(key = %key, "unusable assignment ({kept}): {why}");
                    self.unusable.insert(key.clone(), bundle.to_string());
                }
            }
        }
    }

    /// What the assignments ask for, in one pass. `state_dir` and `remote` are the agent's
    /// (see [`container::desired`]).
    pub fn wanted(&self, state_dir: &Path, remote: Option<&Path>) -> Wanted {
        let mut w = Wanted::default();
        for (key, bundle) in &self.unusable {
            if !self.usable.contains_key(key) {
                w.unmanaged.insert(bundle.clone());
            }
        }
        for Usable { a, refused } in self.usable.values() {
            let spec = &a.bundle.spec;
            if !a.managed {
                w.unmanaged.insert(a.bundle.name().to_string());
                continue;
            }
            for &i in &a.replicas {
                let k = ReplicaKey {
                    bundle: a.bundle.name().to_string(),
                    index: i,
                };
                // During a rollout, a replica may run an older spec than the assignment's.
                let runs = a.spec_of(i);
                w.addrs.insert(k.clone(), runs.spec.replica_address(i));
                if a.cleanup > 0 {
                    w.cleanups.insert(k.clone(), a.cleanup);
                }
                if let Some(n) = a.notify.as_ref().filter(|n| n.targets.contains(&i)) {
                    w.notifies.insert(k.clone(), (**n).clone());
                }
                if spec.promoted_max() > 0 {
                    let role = if a.promoted.contains(&i) {
                        Role::Promoted
                    } else {
                        Role::Unpromoted
                    };
                    w.roles.insert(k.clone(), role);
                }
                let d = match (container::desired(runs, i, state_dir, remote), refused) {
                    (Ok(_), Some(why)) => Err(Unrunnable::Refused(why.clone())),
                    (d, _) => d.map_err(Unrunnable::Shape),
                };
                w.containers.insert(k, d);
            }
        }
        w
    }
}

/// An assignment value as the agent can read it: JSON of an [`Assignment`] whose bundle is
/// the one its key names and whose ordinals exist. The error says why not.
fn usable_assignment(bundle: &str, value: &[u8]) -> Result<Assignment, Unusable> {
    let a: Assignment = serde_json::from_slice(value)?;
    if a.bundle.name() != bundle {
        return Err(Unusable::OtherBundle {
            holds: a.bundle.name().to_string(),
            key: bundle.to_string(),
        });
    }
    if let Some(&i) = a.replicas.iter().find(|&&i| i >= a.bundle.spec.replicas()) {
        let replicas = a.bundle.spec.replicas();
        return Err(Unusable::Beyond { i, replicas });
    }
    Ok(a)
}

/// Why an assignment value cannot be used.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("it holds bundle {holds:?}, not {key:?}")]
    OtherBundle { holds: String, key: String },
    #[error("replica {i} is beyond the bundle's {replicas} replicas")]
    Beyond { i: u32, replicas: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(image: &str, replicas: &[u32], managed: bool) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "bundle": {
                "apiVersion": crate::model::API_VERSION,
                "kind": crate::model::KIND,
                "metadata": {"name": "web"},
                "spec": {"docker": {"image": image, "replicas": 2}},
            },
            "replicas": replicas,
            "managed": managed,
        }))
        .unwrap()
    }

    fn kv(value: Vec<u8>, rev: i64) -> BTreeMap<String, Kv> {
        BTreeMap::from([(
            "a/web".to_string(),
            Kv {
                key: "a/web".into(),
                value,
                create_revision: 1,
                mod_revision: rev,
                version: rev,
                lease: 0,
            },
        )])
    }

    fn run(steps: &[(Vec<u8>, Option<&str>)]) -> Wanted {
        let mut a = Assigned::default();
        for (rev, (value, deny)) in steps.iter().enumerate() {
            let items = kv(value.clone(), rev as i64 + 1);
            a.update(&items, |_| Some("web"), |_| deny.map(String::from));
        }
        a.wanted(Path::new("/state"), None)
    }

    /// Replica `i`'s image, or why it cannot run.
    fn image(w: &Wanted, i: u32) -> Result<String, Unrunnable> {
        let k = ReplicaKey {
            bundle: "web".into(),
            index: i,
        };
        w.containers[&k]
            .as_ref()
            .map(|d| d.image.clone())
            .map_err(Clone::clone)
    }

    #[test]
    fn assignment_changes() {
        let good = |img: &str| (assignment(img, &[0, 1], true), None);
        let invalid = (assignment("", &[0], true), None);
        let garbage = (b"{not json".to_vec(), None);
        let denied = (assignment("a", &[0], true), Some("not permitted"));
        // (name, steps, replica 0's image or reason prefix, web unmanaged)
        type Step = (Vec<u8>, Option<&'static str>);
        type Row = (
            &'static str,
            Vec<Step>,
            Result<&'static str, &'static str>,
            bool,
        );
        let rows: Vec<Row> = vec![
            ("a valid assignment runs", vec![good("a")], Ok("a"), false),
            (
                "a new value replaces the last",
                vec![good("a"), good("b")],
                Ok("b"),
                false,
            ),
            (
                "an invalid value keeps the last valid one",
                vec![good("a"), invalid.clone()],
                Ok("a"),
                false,
            ),
            (
                "an invalid value with none to keep is refused",
                vec![invalid],
                Err("spec.docker.image"),
                false,
            ),
            (
                "an unreadable value keeps the last usable one",
                vec![good("a"), garbage.clone()],
                Ok("a"),
                false,
            ),
            (
                "an unreadable value with none to keep leaves the bundle alone",
                vec![garbage],
                Err(""),
                true,
            ),
            (
                "host policy refuses",
                vec![denied],
                Err("not permitted"),
                false,
            ),
        ];
        for (name, steps, expect, unmanaged) in rows {
            let w = run(&steps);
            assert_eq!(w.unmanaged.contains("web"), unmanaged, "{name}");
            if unmanaged {
                assert!(w.containers.is_empty(), "{name}");
                continue;
            }
            match (image(&w, 0), expect) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(got), Err(want)) => {
                    assert!(got.to_string().contains(want), "{name}: {got}")
                }
                (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn an_unmanaged_bundle_and_a_foreign_value_are_left_alone() {
        let w = run(&[(assignment("a", &[0], false), None)]);
        assert!(w.unmanaged.contains("web") && w.containers.is_empty());
        let mut a = Assigned::default();
        a.update(
            &kv(assignment("a", &[0], true), 1),
            |_| Some("db"),
            |_| None,
        );
        let w = a.wanted(Path::new("/state"), None);
        assert!(
            w.unmanaged.contains("db"),
            "a value for another bundle is unusable"
        );
        let w = run(&[(assignment("a", &[5], true), None)]);
        assert!(
            w.unmanaged.contains("web"),
            "an ordinal past replicas is unusable"
        );
    }

    #[test]
    fn a_deleted_key_removes_its_replicas_and_an_unchanged_one_is_not_decoded_again() {
        let mut a = Assigned::default();
        let items = kv(assignment("a", &[0], true), 1);
        let calls = std::cell::Cell::new(0);
        let deny = |_: &Bundle| {
            calls.set(calls.get() + 1);
            None
        };
        a.update(&items, |_| Some("web"), deny);
        a.update(&items, |_| Some("web"), deny);
        assert_eq!(calls.get(), 1, "decoded once per mod revision");
        a.update(&BTreeMap::new(), |_| Some("web"), deny);
        let w = a.wanted(Path::new("/state"), None);
        assert!(w.containers.is_empty() && w.unmanaged.is_empty());
    }
}
