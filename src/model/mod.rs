//! The Bundle resource: types, Pacemaker's defaults, validation and the formats it comes in.
//!
//! This module is pure: it does no I/O. The shape follows Pacemaker's `<bundle>` schema
//! (resources-3.x.rng) one element to one struct, with Kubernetes-style names in camelCase,
//! wrapped in a Kubernetes-shaped envelope (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
//!
//! Attribute sets (`instance_attributes`, `meta_attributes`, `utilization`) are ordered lists
//! of [`NvPair`]s; the id of the set itself, which Pacemaker requires but nobody chooses by
//! hand, lives in a sibling `…Id` field that is only set when it differs from the id berth
//! would derive (`<owner>-instance_attributes`, as pcs derives it).

pub mod attributes;
pub mod cib;
pub mod cluster;
pub mod constraints;
pub mod container;
pub mod duration;
pub mod layout;
pub mod manifest;
pub mod meta;
pub mod operation;
pub mod options;
pub mod policy;
pub mod remote;
pub mod resolved;
pub mod rollout;
pub mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use validate::{FieldError, ValidationErrors};

/// The `apiVersion` berth reads and writes: group `berth.io`, version `v1alpha1` (the
/// schema may still change incompatibly, as Kubernetes' alpha versions may).
pub const API_VERSION: &str = "berth.io/v1alpha1";
/// The only `kind` berth knows.
pub const KIND: &str = "Bundle";

/// Pacemaker's default `host-netmask` ("Bundles" chapter of Pacemaker Explained).
pub const DEFAULT_HOST_NETMASK: u8 = 32;
/// Pacemaker's default `control-port` (pacemaker-remoted's port).
pub const DEFAULT_CONTROL_PORT: u16 = 3121;
/// Pacemaker's default `replicas-per-host`.
pub const DEFAULT_REPLICAS_PER_HOST: u32 = 1;

/// One bundle: the envelope a manifest, an etcd value or a `berth get -o yaml` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bundle {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// Name, labels, annotations and generation.
    pub metadata: Metadata,
    /// The desired state: Pacemaker's `<bundle>` contents.
    pub spec: BundleSpec,
    /// Observed state, written by berth only; ignored when a manifest is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BundleStatus>,
    /// The spec's text parsed, once ([`Bundle::resolved`]); not part of the value.
    #[serde(skip)]
    pub resolved: resolved::ResolvedCache,
}

/// Kubernetes-style object metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// The bundle id: it names replicas, containers and host names, so it follows DNS-label
    /// rules. An etcd value may leave it out: the key names the bundle.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Set by berth from the etcd key's version: it rises with every write of the spec.
    /// Ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// Pacemaker's `<bundle>`, less its id (which is `metadata.name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BundleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `<docker>`: exactly one of `docker` and `podman` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<ContainerSpec>,
    /// `<podman>`, run through podman's Docker-compatible socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub podman: Option<ContainerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// `<storage>`'s `<storage-mapping>`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_mappings: Vec<StorageMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primitive: Option<Primitive>,
    /// Bundle meta attributes: target-role, is-managed, migration-threshold, failure-timeout,
    /// resource-stickiness, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta_attributes: Vec<NvPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_attributes_id: Option<String>,
    /// Bundle instance attributes (allowed by Pacemaker's schema, unused by berth).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_attributes: Vec<NvPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_attributes_id: Option<String>,
    /// Location preferences, Pacemaker's `rsc_location` constraints for this bundle: a node
    /// (by name or label) and a score; `-INFINITY` bans. Not part of `<bundle>` XML.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    /// Colocations, Pacemaker's `rsc_colocation` constraints with this bundle as `rsc`:
    /// where its replicas may run relative to another bundle's. Not part of `<bundle>` XML.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub colocations: Vec<Colocation>,
    /// Start orders, Pacemaker's `rsc_order` constraints with this bundle as `then`: other
    /// bundles this one starts after (and, symmetrically, stops before). Not part of
    /// `<bundle>` XML.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<Order>,
}

/// One colocation (`rsc_colocation` with this bundle as `rsc`): a score for running on the
/// nodes where `with` has replicas. `INFINITY` only there, `-INFINITY` never there, anything
/// else a preference. `withRole: Promoted` counts only the nodes of `with`'s promoted
/// replicas; `role: Promoted` constrains where this bundle's promoted replica may be instead
/// of where its replicas run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Colocation {
    /// The constraint's CIB id, kept for export (derived when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The other bundle (`with-rsc`).
    pub with: String,
    #[serde(deserialize_with = "score_text")]
    pub score: String,
    /// `rsc-role`: Started (any replica; the default) or Promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `with-rsc-role`: Started (any replica; the default), Promoted or Unpromoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_role: Option<String>,
}

/// One start order (`rsc_order` with this bundle as `then`): this bundle's replicas start
/// once `first`'s are started (or, with `firstAction: promote`, once it has a promoted
/// replica).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Order {
    /// The constraint's CIB id, kept for export (derived when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The bundle that goes first.
    pub first: String,
    /// `first-action`: start (the default) or promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_action: Option<String>,
    /// `then-action`: start (the default; the only one berth orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then_action: Option<String>,
    /// `kind`: Mandatory (the default: without `first` running, this bundle does not run)
    /// or Optional (only an ordering when both start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `symmetrical` (default true): this bundle's replicas stop before `first`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetrical: Option<bool>,
}

/// One location preference: exactly one of `node` (a node name) or `label` (`key=value`
/// on the node's labels), and a score (an integer, `INFINITY` or `-INFINITY`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(deserialize_with = "score_text")]
    pub score: String,
    /// Pacemaker's `resource-discovery`: `exclusive` confines the bundle to the nodes that
    /// match one of its exclusive locations (whatever their scores; OpenStack places its
    /// services so, with score 0 and a node attribute). Default `always`: the score alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_discovery: Option<String>,
}

/// A score written as a YAML/JSON number or as text (`INFINITY`).
fn score_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Score {
        Int(i64),
        Text(String),
    }
    Ok(match Score::deserialize(d)? {
        Score::Int(n) => n.to_string(),
        Score::Text(t) => t,
    })
}

impl Location {
    /// Whether this location confines placement (`resource-discovery: exclusive`).
    pub fn exclusive(&self) -> bool {
        self.resource_discovery.as_deref() == Some("exclusive")
    }

    /// Whether this preference applies to a node.
    pub fn matches(&self, node: &str, labels: &BTreeMap<String, String>) -> bool {
        match (&self.node, &self.label) {
            (Some(n), _) => n == node,
            (None, Some(l)) => {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.get(k).is_some_and(|have| have == v)
            }
            (None, None) => false,
        }
    }
}

/// The container engine a bundle runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    /// The word Pacemaker puts in container names: `<bundle>-docker-<i>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// `<docker>` / `<podman>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_per_host: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_max: Option<u32>,
    /// Pacemaker's deprecated alias of `promoted-max`; kept so that XML round-trips as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masters: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_command: Option<String>,
    /// The engine's `--net` value (bridge, host, none, a network name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Extra `docker run` flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

/// `<network>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_netmask: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_host: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
}

/// `<port-mapping>`: `port` (with an optional `internal-port`) or `range`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortMapping {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<u16>,
    /// `first-last`, both inclusive; every port of it maps to itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

/// `<storage-mapping>`: `source-dir` or `source-dir-root`, and `target-dir`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StorageMapping {
    pub id: String,
    /// Mapped as is into every replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_dir: Option<String>,
    /// Each replica gets `<source-dir-root>/<replica name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_dir_root: Option<String>,
    pub target_dir: String,
    /// Bind options, comma separated (rw, ro, z, Z, propagation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

/// `<primitive>`: the service run inside every replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Primitive {
    pub id: String,
    /// `ocf`, `lsb`, or berth's own `command` (a plain supervised command).
    pub class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_attributes: Vec<NvPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_attributes_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta_attributes: Vec<NvPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_attributes_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utilization: Vec<NvPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    /// The `<operations>` element's own id, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations_id: Option<String>,
}

/// `<op>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    /// Derived as `<primitive>-<name>-interval-<interval>` (as pcs does) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Pacemaker duration; `0` for non-recurring operations.
    #[serde(default = "zero")]
    pub interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_fail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_pending: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_attributes: Vec<NvPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_attributes_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta_attributes: Vec<NvPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_attributes_id: Option<String>,
}

fn zero() -> String {
    "0".to_string()
}

/// One `<nvpair>`: a name, a value, and the XML id when it was given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvPair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Pacemaker allows a pair without a value (it unsets the attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl NvPair {
    /// The value `name` has in `pairs`: the last one set, as Pacemaker takes it.
    pub fn value_of<'p>(pairs: &'p [NvPair], name: &str) -> Option<&'p str> {
        pairs
            .iter()
            .rev()
            .find(|p| p.name == name)
            .and_then(|p| p.value.as_deref())
    }
}

/// Observed state of a bundle, written by berth only (its own etcd key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BundleStatus {
    pub observed_generation: i64,
    pub replicas: u32,
    pub ready_replicas: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// A row per replica, in ordinal order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replica_rows: Vec<ReplicaRow>,
    /// Why the stored value cannot be used (it does not parse or validate, or its addresses
    /// overlap another bundle's). The replicas keep running as the last good value placed
    /// them (the rows above) until the value is fixed or deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// The rollout of the bundle's latest spec (see [`rollout`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<rollout::RolloutStatus>,
}

/// Bundles whose replica addresses overlap an older one's: (the newer, the older), where
/// newer means written later (`revision` of its spec key). Each newer bundle is named once,
/// with the first older bundle it collides with. Pure; the controller refuses the newer.
pub fn address_overlaps<'a>(
    bundles: impl IntoIterator<Item = (&'a Bundle, i64)>,
) -> Vec<(String, String)> {
    let mut ranges: Vec<(u32, u32, i64, &str)> = bundles
        .into_iter()
        .filter_map(|(b, rev)| {
            let (a, z) = b.spec.address_range()?;
            Some((u32::from(a), u32::from(z), rev, b.name()))
        })
        .collect();
    // Older first: a bundle only loses to ones written before it.
    ranges.sort_by_key(|r| (r.2, r.3));
    let mut kept: Vec<(u32, u32, &str)> = Vec::new();
    let mut out = Vec::new();
    for (a, z, _, name) in ranges {
        match kept.iter().find(|(ka, kz, _)| a <= *kz && *ka <= z) {
            Some((_, _, older)) => out.push((name.to_string(), older.to_string())),
            None => kept.push((a, z, name)),
        }
    }
    out
}

/// One replica as the bundle status shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicaRow {
    pub index: u32,
    pub name: String,
    /// The node it is placed on; empty while pending.
    pub node: String,
    pub address: String,
    /// pending, starting, running, failed or stopped: the node agent's word, or the
    /// controller's while the replica is not placed (pending) or not wanted (stopped).
    pub state: cluster::ReplicaState,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The primitive's state (the remote agent's word); empty until it reports.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub primitive: String,
    /// Its failures per node and the time of the last one (Unix seconds), as the controller
    /// counts them for migration-threshold: kept here too, so that they outlive the replica
    /// status a node agent deletes when the replica leaves it (a replica banned from its
    /// only node stays banned).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fail_counts: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<u64>,
}

/// A Kubernetes-style condition (Available, Progressing, Degraded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

/// Whether a condition holds: Kubernetes' words `True`, `False` and `Unknown` on the wire
/// (any other word reads as `Unknown`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    #[serde(other)]
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> ConditionStatus {
        if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        })
    }
}

/// A replica: its bundle's name and its ordinal. Ordered by bundle, then ordinal, so that a
/// bundle's replicas are one range of a map ([`ReplicaKey::all_of`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaKey {
    pub bundle: String,
    pub index: u32,
}

impl ReplicaKey {
    pub fn new(bundle: impl Into<String>, index: u32) -> Self {
        ReplicaKey {
            bundle: bundle.into(),
            index,
        }
    }

    /// Every replica key of `bundle`, as a range of an ordered map's keys.
    pub fn all_of(bundle: &str) -> std::ops::RangeInclusive<ReplicaKey> {
        ReplicaKey::new(bundle, 0)..=ReplicaKey::new(bundle, u32::MAX)
    }
}

/// `<bundle>-<i>`, as Pacemaker names the replica.
impl std::fmt::Display for ReplicaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.bundle, self.index)
    }
}

/// Replica `i` of bundle `bundle`: `<bundle>-<i>`, as Pacemaker names it.
pub fn replica_name(bundle: &str, i: u32) -> String {
    format!("{bundle}-{i}")
}

impl Bundle {
    /// A bundle with the given name and spec, `apiVersion` and `kind` filled in.
    pub fn new(name: impl Into<String>, spec: BundleSpec) -> Self {
        Bundle {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            metadata: Metadata {
                name: name.into(),
                ..Metadata::default()
            },
            spec,
            status: None,
            resolved: Default::default(),
        }
    }

    /// The name (Pacemaker's bundle id).
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The same bundle with only what a user may set: no status, no generation. Two bundles
    /// whose desired state is equal compare equal after this.
    #[must_use]
    pub fn desired(&self) -> Bundle {
        let mut b = self.clone();
        b.status = None;
        b.metadata.generation = None;
        b
    }

    /// Replica `i`'s name, Pacemaker's `<bundle>-<i>`.
    pub fn replica_name(&self, i: u32) -> String {
        replica_name(self.name(), i)
    }

    /// Replica `i`'s container name, Pacemaker's `<bundle>-docker-<i>` (`-podman-`).
    pub fn container_name(&self, i: u32) -> String {
        format!("{}-{}-{}", self.name(), self.spec.engine().as_str(), i)
    }
}

impl BundleSpec {
    /// The engine and its settings. A validated spec has exactly one; an unvalidated one with
    /// none reads as an empty docker spec.
    pub fn container(&self) -> (Engine, &ContainerSpec) {
        static EMPTY: ContainerSpec = ContainerSpec {
            image: String::new(),
            replicas: None,
            replicas_per_host: None,
            promoted_max: None,
            masters: None,
            run_command: None,
            network: None,
            options: None,
        };
        match (&self.docker, &self.podman) {
            (Some(d), _) => (Engine::Docker, d),
            (None, Some(p)) => (Engine::Podman, p),
            (None, None) => (Engine::Docker, &EMPTY),
        }
    }

    pub fn engine(&self) -> Engine {
        self.container().0
    }

    /// `promoted-max` (or its alias `masters`) of the container element; when it sets
    /// neither, the clone meta attribute `promoted-max` (or the older `master-max`) of the
    /// bundle, then of its primitive, and 1 for `promotable=true` alone (a promotable clone's
    /// default); 0 otherwise.
    pub fn promoted_max(&self) -> u32 {
        let c = self.container().1;
        if let Some(n) = c.promoted_max.or(c.masters) {
            return n;
        }
        let prim = self.primitive.as_ref();
        let meta = |name: &str| self.meta(name).or_else(|| prim.and_then(|p| p.meta(name)));
        if let Some(n) = meta("promoted-max")
            .or_else(|| meta("master-max"))
            .and_then(|v| v.trim().parse().ok())
        {
            return n;
        }
        let promotable = meta("promotable").and_then(validate::parse_bool);
        u32::from(promotable == Some(true))
    }

    /// `replicas`, defaulting as Pacemaker does: `promoted-max` if positive, else 1.
    pub fn replicas(&self) -> u32 {
        let c = self.container().1;
        c.replicas.unwrap_or_else(|| self.promoted_max().max(1))
    }

    /// `replicas-per-host`, default 1.
    pub fn replicas_per_host(&self) -> u32 {
        self.container()
            .1
            .replicas_per_host
            .unwrap_or(DEFAULT_REPLICAS_PER_HOST)
    }

    /// `host-netmask`, default 32.
    pub fn host_netmask(&self) -> u8 {
        self.network
            .as_ref()
            .and_then(|n| n.host_netmask)
            .unwrap_or(DEFAULT_HOST_NETMASK)
    }

    /// `control-port`, default 3121.
    pub fn control_port(&self) -> u16 {
        self.network
            .as_ref()
            .and_then(|n| n.control_port)
            .unwrap_or(DEFAULT_CONTROL_PORT)
    }

    /// `add-host`, default true.
    pub fn add_host(&self) -> bool {
        self.network
            .as_ref()
            .and_then(|n| n.add_host)
            .unwrap_or(true)
    }

    /// Port mappings (none without a network element).
    pub fn port_mappings(&self) -> &[PortMapping] {
        self.network
            .as_ref()
            .map(|n| n.port_mappings.as_slice())
            .unwrap_or(&[])
    }

    /// Replica `i`'s address: `ip-range-start + i`, when the bundle has an ip-range-start
    /// that parses and `i` does not run past 255.255.255.255.
    pub fn replica_address(&self, i: u32) -> Option<std::net::Ipv4Addr> {
        let start: std::net::Ipv4Addr = self
            .network
            .as_ref()?
            .ip_range_start
            .as_ref()?
            .parse()
            .ok()?;
        u32::from(start)
            .checked_add(i)
            .map(std::net::Ipv4Addr::from)
    }

    /// The replicas' addresses as an inclusive range (first, last), when the bundle has
    /// an ip-range-start that parses and the range stays below 255.255.255.255.
    pub fn address_range(&self) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
        let first = self.replica_address(0)?;
        let last = self.replica_address(self.replicas().max(1) - 1)?;
        Some((first, last))
    }

    /// A bundle meta attribute's value, by Pacemaker name (`target-role`, …).
    pub fn meta(&self, name: &str) -> Option<&str> {
        NvPair::value_of(&self.meta_attributes, name)
    }

    /// Whether a boolean meta attribute (`ordered`, `interleave`, `notify`) is set true.
    pub fn meta_true(&self, name: &str) -> bool {
        self.meta(name).and_then(validate::parse_bool) == Some(true)
    }
}

impl PortMapping {
    /// The (first, last) host ports this mapping publishes, when it parses.
    pub fn host_ports(&self) -> Option<(u16, u16)> {
        match (&self.port, &self.range) {
            (Some(p), None) => Some((*p, *p)),
            (None, Some(r)) => validate::parse_range(r).ok(),
            _ => None,
        }
    }

    /// The container port a single-port mapping targets (`internal-port`, default `port`).
    pub fn internal_port(&self) -> Option<u16> {
        self.internal_port.or(self.port)
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.port, &self.range) {
            (Some(p), _) if self.internal_port.is_some_and(|i| i != *p) => {
                write!(f, "{p}->{}", self.internal_port.unwrap_or(*p))
            }
            (Some(p), _) => write!(f, "{p}"),
            (None, Some(r)) => write!(f, "{r}"),
            (None, None) => write!(f, "?"),
        }
    }
}

impl std::fmt::Display for StorageMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.source_dir, &self.source_dir_root) {
            (Some(s), _) => write!(f, "{s}:{}", self.target_dir)?,
            (None, Some(r)) => write!(f, "{r}/<replica>:{}", self.target_dir)?,
            (None, None) => write!(f, "?:{}", self.target_dir)?,
        }
        if let Some(o) = &self.options {
            write!(f, ":{o}")?;
        }
        Ok(())
    }
}

impl Primitive {
    /// `class:provider:type`, as crm_mon prints an agent.
    pub fn agent(&self) -> String {
        match &self.provider {
            Some(p) => format!("{}:{}:{}", self.class, p, self.kind),
            None => format!("{}:{}", self.class, self.kind),
        }
    }

    /// A meta attribute's value (the last one set, as Pacemaker takes it).
    pub fn meta(&self, name: &str) -> Option<&str> {
        NvPair::value_of(&self.meta_attributes, name)
    }

    /// Whether a boolean meta attribute is set true.
    pub fn meta_true(&self, name: &str) -> bool {
        self.meta(name).and_then(validate::parse_bool) == Some(true)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Fixture builders for tests: the seed bundle of DESIGN.md.
    use super::*;

    /// The seed example of DESIGN.md (`httpd-bundle`).
    pub fn seed() -> Bundle {
        Bundle::new(
            "httpd-bundle",
            BundleSpec {
                docker: Some(ContainerSpec {
                    image: "pcmk:httpd".into(),
                    replicas: Some(3),
                    ..Default::default()
                }),
                network: Some(NetworkSpec {
                    ip_range_start: Some("192.168.24.112".into()),
                    host_netmask: Some(24),
                    port_mappings: vec![PortMapping {
                        id: "httpd-port".into(),
                        port: Some(80),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                storage_mappings: vec![
                    StorageMapping {
                        id: "httpd-root".into(),
                        source_dir: Some("/srv/www".into()),
                        target_dir: "/var/www/html".into(),
                        options: Some("rw".into()),
                        ..Default::default()
                    },
                    StorageMapping {
                        id: "httpd-logs".into(),
                        source_dir_root: Some("/var/log/pacemaker/bundles".into()),
                        target_dir: "/etc/httpd/logs".into(),
                        options: Some("rw".into()),
                        ..Default::default()
                    },
                ],
                primitive: Some(Primitive {
                    id: "httpd-apache".into(),
                    class: "ocf".into(),
                    provider: Some("heartbeat".into()),
                    kind: "apache".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conditions_status_keeps_kubernetes_words() {
        let c = Condition {
            kind: "Available".into(),
            status: true.into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""status":"True""#), "{json}");
        let back: Condition = serde_json::from_str(&json.replace("True", "False")).unwrap();
        assert_eq!(back.status, ConditionStatus::False);
        let odd: Condition = serde_json::from_str(&json.replace("True", "Maybe")).unwrap();
        assert_eq!(odd.status, ConditionStatus::Unknown);
        assert_eq!(ConditionStatus::False.to_string(), "False");
    }

    #[test]
    fn overlapping_addresses_lose_to_the_bundle_written_first() {
        let with = |name: &str, start: &str, replicas: u32| {
            let mut b = fixtures::seed();
            b.metadata.name = name.into();
            b.spec.docker.as_mut().unwrap().replicas = Some(replicas);
            b.spec.network.as_mut().unwrap().ip_range_start = Some(start.into());
            b
        };
        let a = with("a", "10.0.0.10", 3); // .10-.12
        let b = with("b", "10.0.0.12", 2); // .12-.13: overlaps a
        let c = with("c", "10.0.0.13", 1); // overlaps b only, which loses: c stays
        let d = with("d", "10.0.0.20", 1);
        let got = address_overlaps([(&b, 5), (&a, 2), (&c, 7), (&d, 1)]);
        assert_eq!(got, vec![("b".to_string(), "a".to_string())]);
        let mut none = a.clone();
        none.spec.network = None;
        assert!(address_overlaps([(&a, 1), (&none, 2)]).is_empty());
    }

    #[test]
    fn defaults_follow_pacemaker() {
        let mut b = fixtures::seed();
        let c = b.spec.docker.as_mut().unwrap();
        c.replicas = None;
        assert_eq!(
            b.spec.replicas(),
            1,
            "replicas defaults to 1 without promoted-max"
        );
        b.spec.docker.as_mut().unwrap().promoted_max = Some(2);
        assert_eq!(
            b.spec.replicas(),
            2,
            "replicas defaults to promoted-max when positive"
        );
        b.spec.docker.as_mut().unwrap().promoted_max = None;
        b.spec.docker.as_mut().unwrap().masters = Some(4);
        assert_eq!(b.spec.replicas(), 4, "masters is promoted-max's alias");
        assert_eq!(b.spec.replicas_per_host(), 1);
        b.spec.network.as_mut().unwrap().host_netmask = None;
        assert_eq!(b.spec.host_netmask(), 32);
        assert_eq!(b.spec.control_port(), 3121);
        assert!(b.spec.add_host());
        assert_eq!(b.spec.port_mappings()[0].internal_port(), Some(80));
    }

    #[test]
    fn names_follow_pacemaker() {
        let b = fixtures::seed();
        assert_eq!(b.replica_name(2), "httpd-bundle-2");
        assert_eq!(b.container_name(0), "httpd-bundle-docker-0");
        assert_eq!(
            b.spec.replica_address(2),
            Some("192.168.24.114".parse().unwrap())
        );
    }
}
