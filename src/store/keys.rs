//! The etcd key layout under the prefix (default `/berth`). `docs/ARCHITECTURE.md` documents
//! every key, including those the node agent and controller will write; this type builds the
//! ones the code uses, so that no key is spelled twice.

/// Key builder for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The prefix without a trailing `/` (`/berth`).
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`; a trailing `/` is ignored, a missing leading one added.
    pub fn new(prefix: &str) -> Keys {
        let p = prefix.trim_end_matches('/');
        let prefix = if p.starts_with('/') {
            p.to_string()
        } else {
            format!("/{p}")
        };
        Keys { prefix }
    }

    /// `<prefix>/`: everything berth stores.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// `<prefix>/bundles/`: desired state, one key per bundle.
    pub fn bundles(&self) -> String {
        format!("{}/bundles/", self.prefix)
    }

    /// `<prefix>/bundles/<name>`: a bundle's manifest (YAML, JSON or `<bundle>` XML).
    pub fn bundle(&self, name: &str) -> String {
        format!("{}{name}", self.bundles())
    }

    /// `<prefix>/status/bundles/`: observed state, written by berth only.
    pub fn statuses(&self) -> String {
        format!("{}/status/bundles/", self.prefix)
    }

    /// `<prefix>/status/bundles/<name>`: a bundle's status (JSON).
    pub fn bundle_status(&self, name: &str) -> String {
        format!("{}{name}", self.statuses())
    }

    /// `<prefix>/nodes/`: node registrations, each under its agent's lease.
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    /// `<prefix>/nodes/<node>`.
    pub fn node(&self, node: &str) -> String {
        format!("{}{node}", self.nodes())
    }

    /// `<prefix>/maintenance/<node>`: a node whose agent left it in maintenance (its
    /// replicas still run there, unsupervised); the value is its last registration.
    pub fn maintenance(&self, node: &str) -> String {
        format!("{}{node}", self.maintenances())
    }

    /// `<prefix>/maintenance/`: every node in maintenance.
    pub fn maintenances(&self) -> String {
        format!("{}/maintenance/", self.prefix)
    }

    /// `<prefix>/assignments/<node>/`: what one node must run; its agent watches this.
    pub fn assignments(&self, node: &str) -> String {
        format!("{}/assignments/{node}/", self.prefix)
    }

    /// `<prefix>/assignments/<node>/<bundle>`.
    pub fn assignment(&self, node: &str, bundle: &str) -> String {
        format!("{}{bundle}", self.assignments(node))
    }

    /// `<prefix>/replicas/<bundle>/`: observed state of a bundle's replicas.
    pub fn replicas(&self, bundle: &str) -> String {
        format!("{}/replicas/{bundle}/", self.prefix)
    }

    /// `<prefix>/replicas/<bundle>/<i>`.
    pub fn replica(&self, bundle: &str, i: u32) -> String {
        format!("{}{i}", self.replicas(bundle))
    }

    /// `<prefix>/rollouts/<bundle>`: a bundle's rollout paused by `berth rollout pause`.
    pub fn rollout(&self, bundle: &str) -> String {
        format!("{}/rollouts/{bundle}", self.prefix)
    }

    /// `<prefix>/history/<bundle>/`: the specs of a bundle's recent generations.
    pub fn spec_history(&self, bundle: &str) -> String {
        format!("{}/history/{bundle}/", self.prefix)
    }

    /// `<prefix>/history/<bundle>/<generation>`, zero-padded to 10 digits so that keys sort
    /// in generation order.
    pub fn spec_at(&self, bundle: &str, generation: i64) -> String {
        format!("{}{generation:010}", self.spec_history(bundle))
    }

    /// `<prefix>/releases/`: every chart release's history.
    /// `<prefix>/standby/<node>`: a node put in standby (`berth standby`): no replica runs
    /// there, those it has move elsewhere (Pacemaker's node standby).
    pub fn standby(&self, node: &str) -> String {
        format!("{}{node}", self.standbys())
    }

    /// `<prefix>/standby/`: every node in standby.
    pub fn standbys(&self) -> String {
        format!("{}/standby/", self.prefix)
    }

    /// `<prefix>/cleanup/<bundle>`: when its failures were last cleaned up (`berth
    /// cleanup`).
    pub fn cleanup(&self, bundle: &str) -> String {
        format!("{}/cleanup/{bundle}", self.prefix)
    }

    /// `<prefix>/bans/<bundle>`: nodes `berth ban` keeps the bundle off (crm_resource
    /// --ban's cli-ban constraints), until `berth clear`.
    pub fn bans(&self, bundle: &str) -> String {
        format!("{}/bans/{bundle}", self.prefix)
    }

    /// Every event: `<p>/events/`.
    pub fn events(&self) -> String {
        format!("{}/events/", self.prefix)
    }

    /// An event, by `<kind>/<name>/<id>` (see [`crate::events`]).
    pub fn event(&self, rel: &str) -> String {
        format!("{}/events/{rel}", self.prefix)
    }

    pub fn all_releases(&self) -> String {
        format!("{}/releases/", self.prefix)
    }

    /// `<prefix>/releases/<release>/`: one release's revisions.
    pub fn releases(&self, release: &str) -> String {
        format!("{}{release}/", self.all_releases())
    }

    /// `<prefix>/releases/<release>/<revision>`, the revision zero-padded to 10 digits so
    /// that keys sort in revision order.
    pub fn release(&self, release: &str, revision: u32) -> String {
        format!("{}{revision:010}", self.releases(release))
    }

    /// The bundle name in a `bundles/<name>` key; None for any other key.
    pub fn bundle_name<'k>(&self, key: &'k str) -> Option<&'k str> {
        leaf(key, &self.bundles())
    }

    /// The bundle name in a `status/bundles/<name>` key; None for any other key.
    pub fn status_name<'k>(&self, key: &'k str) -> Option<&'k str> {
        leaf(key, &self.statuses())
    }

    /// The bundle name in one of `node`'s assignment keys; None for any other key.
    pub fn assignment_bundle<'k>(&self, key: &'k str, node: &str) -> Option<&'k str> {
        leaf(key, &self.assignments(node))
    }

    /// What a key under the prefix is, taken apart the one way the layout above builds it;
    /// None for keys outside the layout (or outside the prefix).
    /// `<prefix>/election/controller`: the controllers' election (its leader key names the
    /// leading controller).
    pub fn election(&self) -> String {
        format!("{}/election/controller", self.prefix)
    }

    /// `<prefix>/attributes/`: the cluster's attributes, every section.
    pub fn all_attributes(&self) -> String {
        format!("{}/attributes/", self.prefix)
    }

    /// `<prefix>/attributes/<section>/`: the cluster's attributes of one CIB section.
    pub fn attributes(&self, section: crate::model::attributes::Section) -> String {
        format!("{}{section}/", self.all_attributes())
    }

    /// `<prefix>/attributes/<section>/<owner>/`: one node's attributes (nodes, status), or
    /// one property set's (crm_config).
    pub fn attributes_of(&self, section: crate::model::attributes::Section, owner: &str) -> String {
        format!("{}{owner}/", self.attributes(section))
    }

    /// `<prefix>/attributes/<section>/<owner>/<name>`: one attribute; its value is the
    /// attribute's value, as is.
    pub fn attribute(
        &self,
        section: crate::model::attributes::Section,
        owner: &str,
        name: &str,
    ) -> String {
        format!("{}{name}", self.attributes_of(section, owner))
    }

    pub fn parse<'k>(&self, key: &'k str) -> Option<Key<'k>> {
        let rest = key.strip_prefix(&self.root())?;
        let parts: Vec<&str> = rest.split('/').collect();
        Some(match parts.as_slice() {
            ["bundles", name] if !name.is_empty() => Key::Bundle(name),
            ["status", "bundles", name] if !name.is_empty() => Key::BundleStatus(name),
            ["nodes", name] if !name.is_empty() => Key::Node(name),
            ["maintenance", name] if !name.is_empty() => Key::Maintenance(name),
            ["standby", name] if !name.is_empty() => Key::Standby(name),
            ["cleanup", name] if !name.is_empty() => Key::Cleanup(name),
            ["bans", name] if !name.is_empty() => Key::Bans(name),
            ["assignments", node, bundle] if !node.is_empty() && !bundle.is_empty() => {
                Key::Assignment { node, bundle }
            }
            ["replicas", bundle, i] if !bundle.is_empty() => Key::Replica {
                bundle,
                index: i.parse().ok()?,
            },
            ["rollouts", name] if !name.is_empty() => Key::Rollout(name),
            ["attributes", section, owner, name] if !owner.is_empty() && !name.is_empty() => {
                Key::Attribute {
                    section: crate::model::attributes::Section::parse(section)?,
                    owner,
                    name,
                }
            }
            ["history", bundle, g] if !bundle.is_empty() => Key::SpecHistory {
                bundle,
                generation: g.parse().ok()?,
            },
            _ => return None,
        })
    }
}

/// A key of the layout, taken apart by [`Keys::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'k> {
    Bundle(&'k str),
    BundleStatus(&'k str),
    Node(&'k str),
    Maintenance(&'k str),
    Standby(&'k str),
    Cleanup(&'k str),
    Bans(&'k str),
    Assignment {
        node: &'k str,
        bundle: &'k str,
    },
    Replica {
        bundle: &'k str,
        index: u32,
    },
    Rollout(&'k str),
    SpecHistory {
        bundle: &'k str,
        generation: i64,
    },
    Attribute {
        section: crate::model::attributes::Section,
        owner: &'k str,
        name: &'k str,
    },
}

/// The single path segment after `dir`, if `key` is directly under it.
fn leaf<'k>(key: &'k str, dir: &str) -> Option<&'k str> {
    key.strip_prefix(dir)
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("berth/");
        assert_eq!(k.bundle("web"), "/berth/bundles/web");
        assert_eq!(k.bundle_status("web"), "/berth/status/bundles/web");
        assert_eq!(k.bundle_name("/berth/bundles/web"), Some("web"));
        assert_eq!(k.bundle_name("/berth/status/bundles/web"), None);
        assert_eq!(k.status_name("/berth/status/bundles/web"), Some("web"));
        assert_eq!(k.bundle_name("/berth/bundles/a/b"), None);
        assert_eq!(k.parse("/berth/bundles/web"), Some(Key::Bundle("web")));
        assert_eq!(
            k.parse(&k.assignment("n1", "web")),
            Some(Key::Assignment {
                node: "n1",
                bundle: "web"
            })
        );
        assert_eq!(
            k.parse(&k.replica("web", 2)),
            Some(Key::Replica {
                bundle: "web",
                index: 2
            })
        );
        assert_eq!(k.parse(&k.maintenance("n1")), Some(Key::Maintenance("n1")));
        assert_eq!(k.parse(&k.standby("n1")), Some(Key::Standby("n1")));
        assert_eq!(k.parse(&k.rollout("web")), Some(Key::Rollout("web")));
        assert_eq!(k.spec_at("web", 3), "/berth/history/web/0000000003");
        assert_eq!(
            k.parse(&k.spec_at("web", 3)),
            Some(Key::SpecHistory {
                bundle: "web",
                generation: 3
            })
        );
        assert_eq!(k.parse("/berth/replicas/web/x"), None);
        assert_eq!(k.parse("/berth/assignments/n1"), None);
        assert_eq!(k.parse("/other/bundles/web"), None);
        assert_eq!(
            k.assignment_bundle("/berth/assignments/n1/web", "n1"),
            Some("web")
        );
    }
}
