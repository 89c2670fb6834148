//! The cluster's attributes, kept as Pacemaker keeps them in the CIB: node attributes in the
//! nodes section (permanent, `crm_attribute -l forever`), transient node attributes in the
//! status section (`-l reboot`: gone when that node's instance restarts) and cluster
//! properties (`--type crm_config`, in a named set). Each is one etcd key (see
//! [`crate::store::Keys::attribute`]); this module names the sections and checks names and
//! values. Pure: no I/O.
//!
//! Permanent node attributes are what location rules read: with `berth node --label` as one
//! source, and `berth attribute` setting them at run time (a key's value wins over a label
//! of the same name).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an attribute lives: Pacemaker's CIB sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// Permanent node attributes (`<nodes><node><instance_attributes>`; `-l forever`).
    Nodes,
    /// Transient node attributes (`<status><node_state><transient_attributes>`; `-l reboot`).
    Status,
    /// Cluster properties (`<crm_config><cluster_property_set id=SET>`).
    CrmConfig,
}

/// Pacemaker's default set of cluster properties.
pub const DEFAULT_SET: &str = "cib-bootstrap-options";

/// The longest attribute name (bytes).
pub const MAX_NAME: usize = 128;
/// The longest attribute value (bytes): agents keep sequence numbers, node names and
/// replication offsets in them.
pub const MAX_VALUE: usize = 4096;

impl Section {
    /// The word in keys and in `crm_attribute --type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Nodes => "nodes",
            Section::Status => "status",
            Section::CrmConfig => "crm_config",
        }
    }

    /// The section of `crm_attribute --type`, and of `--lifetime` (`forever` → nodes,
    /// `reboot` → status) when no type is given: Pacemaker's rules. Without either, a node
    /// attribute (`--node`) is permanent and anything else a cluster property.
    pub fn from_flags(
        kind: Option<&str>,
        lifetime: Option<&str>,
        node_given: bool,
    ) -> Result<Section, AttrError> {
        let by_lifetime = match lifetime {
            None => None,
            Some("reboot") => Some(Section::Status),
            Some("forever") => Some(Section::Nodes),
            Some(other) => return Err(AttrError::Lifetime(other.to_string())),
        };
        let by_type = match kind {
            None => None,
            Some("nodes") => Some(Section::Nodes),
            Some("status") => Some(Section::Status),
            Some("crm_config") => Some(Section::CrmConfig),
            Some(other) => return Err(AttrError::Type(other.to_string())),
        };
        match (by_type, by_lifetime) {
            (Some(Section::CrmConfig), Some(_)) => Err(AttrError::LifetimeOfProperty),
            (Some(t), Some(l)) if t != l => Err(AttrError::Disagree {
                kind: t,
                lifetime: lifetime.unwrap_or_default().to_string(),
            }),
            (Some(t), _) | (None, Some(t)) => Ok(t),
            (None, None) if node_given => Ok(Section::Nodes),
            (None, None) => Ok(Section::CrmConfig),
        }
    }

    /// The section of a `crm_attribute` call: [`Section::from_flags`], except that a
    /// promotion score (`-p`) is a node attribute, transient unless `--lifetime forever` or
    /// `--type nodes` says otherwise. The one rule for `berth attribute` and the tool inside
    /// replicas.
    pub fn of_call(
        kind: Option<&str>,
        lifetime: Option<&str>,
        node_given: bool,
        promotion: bool,
    ) -> Result<Section, AttrError> {
        if !promotion {
            return Section::from_flags(kind, lifetime, node_given);
        }
        match Section::from_flags(kind, lifetime, true)? {
            Section::CrmConfig => Err(AttrError::PromotionOfProperty),
            _ if kind.is_none() && lifetime.is_none() => Ok(Section::Status),
            s => Ok(s),
        }
    }

    /// The section named `word` in a key.
    pub fn parse(word: &str) -> Option<Section> {
        match word {
            "nodes" => Some(Section::Nodes),
            "status" => Some(Section::Status),
            "crm_config" => Some(Section::CrmConfig),
            _ => None,
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attribute's section, owner, name or value is refused (crm_attribute's flags
/// named as the tools take them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    #[error("--lifetime {0:?}: expected reboot or forever")]
    Lifetime(String),
    #[error("--type {0:?}: expected nodes, status or crm_config")]
    Type(String),
    #[error("--lifetime applies to node attributes, not to --type crm_config")]
    LifetimeOfProperty,
    #[error("--type {kind} and --lifetime {lifetime} disagree")]
    Disagree { kind: Section, lifetime: String },
    #[error("--promotion: a promotion score is a node attribute")]
    PromotionOfProperty,
    #[error("attribute name: required")]
    NameMissing,
    /// The name's first 32 bytes.
    #[error("attribute name {0:?}…: longer than {MAX_NAME} bytes")]
    NameTooLong(String),
    #[error("attribute name {name:?}: {bad:?} is not allowed (letters, digits and _ - . : # only)")]
    NameChar { name: String, bad: char },
    #[error("attribute value: {0} bytes, more than {MAX_VALUE}")]
    ValueTooLong(usize),
    #[error("attribute value: control characters are not allowed")]
    ValueControl,
    #[error(transparent)]
    Node(#[from] super::validate::NodeNameError),
    #[error("--set-name {0:?}: not an XML id (a letter or _, then letters, digits, _ - .)")]
    SetName(String),
}

/// `crm_attribute`'s answer to a query (without `--quiet`).
pub fn query_line(section: Section, name: &str, value: &str) -> String {
    format!("scope={section}  name={name} value={value}")
}

/// Checks an attribute's name: 1 to [`MAX_NAME`] bytes of letters, digits and `_ - . :`
/// (Pacemaker's own names, `master-galera`, `rmq-node-attr-last-known-rabbitmq`,
/// `#health-disk`, fit; a `/` would reach another key).
pub fn check_name(name: &str) -> Result<(), AttrError> {
    if name.is_empty() {
        return Err(AttrError::NameMissing);
    }
    if name.len() > MAX_NAME {
        let start = name[..name.floor_char_boundary(32)].to_string();
        return Err(AttrError::NameTooLong(start));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.:#".contains(*c)))
    {
        let name = name.to_string();
        return Err(AttrError::NameChar { name, bad });
    }
    Ok(())
}

/// Checks an attribute's value: at most [`MAX_VALUE`] bytes, no control characters but tab.
pub fn check_value(value: &str) -> Result<(), AttrError> {
    if value.len() > MAX_VALUE {
        return Err(AttrError::ValueTooLong(value.len()));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(AttrError::ValueControl);
    }
    Ok(())
}

/// Checks the owner of an attribute: a node name (a host, or a replica `<bundle>-<i>`), or a
/// property set's id.
pub fn check_owner(section: Section, owner: &str) -> Result<(), AttrError> {
    match section {
        Section::Nodes | Section::Status => Ok(super::validate::node_name(owner)?),
        Section::CrmConfig => {
            if super::validate::is_xml_id(owner) && !owner.contains('/') {
                Ok(())
            } else {
                Err(AttrError::SetName(owner.to_string()))
            }
        }
    }
}

/// One attribute, addressed: its section, its owner (a node, or a property set) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttrKey {
    pub section: Section,
    pub owner: String,
    pub name: String,
}

impl AttrKey {
    /// Checks the owner and the name.
    pub fn check(&self) -> Result<(), AttrError> {
        check_owner(self.section, &self.owner)?;
        check_name(&self.name)
    }
}

/// What a write from inside a replica does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum AttrOp {
    /// Set `key` to `value`.
    Set { key: AttrKey, value: String },
    /// Delete `key`.
    Delete { key: AttrKey },
    /// Delete every transient attribute of `node` (its instance restarted: Pacemaker
    /// clears a guest node's status section).
    ClearTransient { node: String },
}

/// A write asked from inside a replica, numbered by its remote agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrWrite {
    pub id: u64,
    #[serde(flatten)]
    pub op: AttrOp,
}

/// The node agent's answer to a write: done (stored, or already so), or refused and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrAck {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The cluster as a replica's tools see it (`crm_node`): the hosts online, and its bundle's
/// replicas (Pacemaker's guest nodes) as their node agents report them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The bundle's id, engine (`docker`, `podman`) and image, as `crm_mon` shows them.
    #[serde(default)]
    pub bundle: String,
    #[serde(default)]
    pub engine: String,
    #[serde(default)]
    pub image: String,
    /// The primitive's id and agent (`ocf:heartbeat:galera`).
    #[serde(default)]
    pub primitive: String,
    #[serde(default)]
    pub agent: String,
    /// The bundle has promoted instances (the others are Unpromoted, not Started).
    #[serde(default)]
    pub promotable: bool,
    /// The hosts whose node agent holds its registration, by name.
    pub hosts: Vec<String>,
    /// The hosts in standby (`berth standby`: Pacemaker's node standby).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<String>,
    /// The hosts a node agent left in maintenance (replicas run there unsupervised; not
    /// online, since no agent holds a registration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<String>,
    /// The bundle's replicas.
    pub replicas: Vec<Guest>,
}

/// One replica of the bundle as a member of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    /// Its node name (`<bundle>-<i>`).
    pub name: String,
    /// The host it runs on, as its last report says.
    pub host: String,
    /// Its container runs there, reported under the host's current registration.
    pub running: bool,
    /// Its primitive runs promoted.
    pub promoted: bool,
}

/// What one replica may write and see of the cluster's attributes: the node attributes
/// (both sections) of its own node and of its bundle's other replicas, which is what a
/// clustered agent (galera, redis, rabbitmq) keeps about its peers; cluster properties whose
/// name starts with its primitive's id (redis keeps `<id>_REPL_INFO`), and it reads every
/// cluster property. Nothing of another bundle's replicas. With
/// `container-attribute-target=host` (agents name their nodes by the hosts they run on), also
/// the node attributes of the cluster's hosts whose names hold its primitive's id (galera's
/// `galera-last-committed`, rabbitmq's `rmq-node-attr-rabbitmq`, `master-redis`): never a
/// host's other attributes, which location rules read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// The replica's bundle, its engine (`docker`, `podman`) and image.
    pub bundle: String,
    pub engine: String,
    pub image: String,
    /// The replica's node name (`<bundle>-<i>`).
    pub me: String,
    /// Every replica of its bundle (itself included).
    pub peers: BTreeSet<String>,
    /// The primitive's id, and its agent (`ocf:heartbeat:galera`).
    pub primitive: String,
    pub agent: String,
    /// The bundle promotes (promoted-max above 0).
    pub promotable: bool,
    /// `container-attribute-target=host`: its agent keeps attributes on the hosts' nodes.
    pub host_target: bool,
}

impl Scope {
    /// Whether this replica may see `key`.
    pub fn may_read(&self, key: &AttrKey) -> bool {
        match key.section {
            Section::Nodes | Section::Status => {
                self.peers.contains(&key.owner) || self.host_attribute(&key.name)
            }
            Section::CrmConfig => true,
        }
    }

    /// A host's attribute this replica may keep (see the type's description).
    fn host_attribute(&self, name: &str) -> bool {
        self.host_target && !self.primitive.is_empty() && name.contains(&self.primitive)
    }

    /// Why this replica may not make `op`, if it may not (checks names and values too);
    /// `hosts` are the cluster's hosts now.
    pub fn refuse(&self, op: &AttrOp, hosts: &[String]) -> Option<String> {
        let key = match op {
            AttrOp::Set { key, value } => {
                if let Err(e) = check_value(value) {
                    return Some(e.to_string());
                }
                key
            }
            AttrOp::Delete { key } => key,
            AttrOp::ClearTransient { node } => {
                return (node != &self.me)
                    .then(|| format!("node {node:?}: only this replica's own ({})", self.me));
            }
        };
        if let Err(e) = key.check() {
            return Some(e.to_string());
        }
        let on_host = || hosts.contains(&key.owner) && self.host_attribute(&key.name);
        match key.section {
            Section::Nodes | Section::Status if !self.peers.contains(&key.owner) && !on_host() => {
                Some(if self.host_target && hosts.contains(&key.owner) {
                    format!(
                        "host {:?}: a replica may keep only attributes named after its primitive ({}) on a host",
                        key.owner, self.primitive
                    )
                } else {
                    format!(
                        "node {:?}: not a replica of this bundle (this replica may write its own and its peers' attributes)",
                        key.owner
                    )
                })
            }
            Section::CrmConfig if !key.name.starts_with(&self.primitive) => Some(format!(
                "cluster property {:?}: a replica may write only properties named after its primitive ({}…)",
                key.name, self.primitive
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_follow_crm_attributes_flags() {
        let s = |t, l, n| Section::from_flags(t, l, n);
        assert_eq!(s(None, Some("reboot"), true), Ok(Section::Status));
        assert_eq!(s(None, Some("forever"), true), Ok(Section::Nodes));
        assert_eq!(s(Some("status"), None, true), Ok(Section::Status));
        assert_eq!(s(Some("crm_config"), None, false), Ok(Section::CrmConfig));
        assert_eq!(s(None, None, true), Ok(Section::Nodes));
        assert_eq!(s(None, None, false), Ok(Section::CrmConfig));
        let disagree = AttrError::Disagree {
            kind: Section::Status,
            lifetime: "forever".into(),
        };
        assert_eq!(s(Some("status"), Some("forever"), true), Err(disagree));
        let property = Err(AttrError::LifetimeOfProperty);
        assert_eq!(s(Some("crm_config"), Some("reboot"), false), property);
        let cib = s(Some("cib"), None, false).unwrap_err();
        assert_eq!(
            cib.to_string(),
            "--type \"cib\": expected nodes, status or crm_config"
        );
        let never = Err(AttrError::Lifetime("never".into()));
        assert_eq!(s(None, Some("never"), true), never);
        let p = |t, l| Section::of_call(t, l, false, true);
        assert_eq!(p(None, None), Ok(Section::Status));
        assert_eq!(p(None, Some("forever")), Ok(Section::Nodes));
        assert!(p(Some("crm_config"), None).is_err());
    }

    #[test]
    fn names_values_and_owners_are_checked() {
        for ok in [
            "galera-role",
            "master-redis",
            "rmq-node-attr-last-known-rabbitmq",
            "#health-disk",
            "a:b.c_d",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "a\nb", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_value("true").is_ok());
        assert!(check_value("").is_ok());
        assert!(check_value("a\u{1b}[2J").is_err());
        assert!(check_value(&"v".repeat(4097)).is_err());
        assert!(check_owner(Section::Nodes, "controller-0").is_ok());
        assert!(check_owner(Section::Status, "galera-bundle-2").is_ok());
        assert!(check_owner(Section::Nodes, "../x").is_err());
        assert!(check_owner(Section::CrmConfig, "redis_replication").is_ok());
        assert!(check_owner(Section::CrmConfig, "a/b").is_err());
    }

    #[test]
    fn a_replica_writes_its_own_and_its_peers_attributes_and_its_primitives_properties() {
        let scope = Scope {
            bundle: "rds".into(),
            engine: "docker".into(),
            image: "redis".into(),
            me: "rds-0".into(),
            peers: ["rds-0", "rds-1", "rds-2"].map(String::from).into(),
            primitive: "redis".into(),
            agent: "ocf:heartbeat:redis".into(),
            promotable: true,
            host_target: false,
        };
        let hosts = ["controller-0".to_string(), "controller-1".to_string()];
        let key = |section, owner: &str, name: &str| AttrKey {
            section,
            owner: owner.into(),
            name: name.into(),
        };
        let set = |k: AttrKey| AttrOp::Set {
            key: k,
            value: "1".into(),
        };
        assert_eq!(
            scope.refuse(&set(key(Section::Status, "rds-1", "foo")), &hosts),
            None
        );
        assert_eq!(
            scope.refuse(&set(key(Section::Nodes, "rds-0", "foo")), &hosts),
            None
        );
        assert_eq!(
            scope.refuse(
                &set(key(
                    Section::CrmConfig,
                    "redis_replication",
                    "redis_REPL_INFO"
                )),
                &hosts
            ),
            None
        );
        for refused in [
            set(key(Section::Status, "web-0", "foo")),
            set(key(Section::Nodes, "controller-0", "galera-role")),
            set(key(Section::CrmConfig, DEFAULT_SET, "maintenance-mode")),
            set(key(Section::Status, "rds-1", "a/b")),
            AttrOp::ClearTransient {
                node: "rds-1".into(),
            },
        ] {
            assert!(scope.refuse(&refused, &hosts).is_some(), "{refused:?}");
        }
        assert!(scope.may_read(&key(Section::Status, "rds-2", "x")));
        assert!(!scope.may_read(&key(Section::Status, "web-0", "x")));
        assert!(scope.may_read(&key(Section::CrmConfig, DEFAULT_SET, "x")));
        // container-attribute-target=host: the hosts' attributes named after the primitive,
        // and only on hosts of the cluster.
        let scope = Scope {
            host_target: true,
            ..scope
        };
        assert_eq!(
            scope.refuse(
                &set(key(Section::Status, "controller-1", "master-redis")),
                &hosts
            ),
            None
        );
        assert!(scope.may_read(&key(Section::Status, "controller-1", "master-redis")));
        for refused in [
            set(key(Section::Nodes, "controller-0", "galera-role")),
            set(key(Section::Status, "elsewhere", "master-redis")),
        ] {
            assert!(scope.refuse(&refused, &hosts).is_some(), "{refused:?}");
        }
        assert!(!scope.may_read(&key(Section::Nodes, "controller-0", "galera-role")));
    }
}
