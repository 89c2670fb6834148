//! What berth's parts tell each other through etcd besides bundles: node registrations,
//! per-node assignments, and observed replica status. Plain data, JSON in etcd.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Bundle;

/// A node agent's registration (`<prefix>/nodes/<node>`, under the agent's lease).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Capacity,
    /// `docker 20.10.24 (API 1.41)` or `podman …`.
    pub engine: String,
    /// berth's version on the node.
    pub agent_version: String,
    /// What the node permits bundles (privileged mode, host namespaces, devices, added
    /// capabilities, host directories): the controller places accordingly.
    pub permits: super::policy::Permits,
}

/// What a node offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Capacity {
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// The replicas of one bundle a node must run (`<prefix>/assignments/<node>/<bundle>`): the
/// bundle as placed (its generation included), and the replica ordinals on this node. It
/// holds everything the node agent needs, so the agent watches nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// Shared: the assignments of one bundle, and the controller's passes, hold one copy.
    pub bundle: Arc<Bundle>,
    pub replicas: Vec<u32>,
    /// False when the bundle's is-managed is false: the agent then leaves these replicas'
    /// containers exactly as they are.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub managed: bool,
    /// For a promotable bundle (promoted-max > 0): the ordinals, among `replicas`, to run
    /// promoted; the others run unpromoted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promoted: Vec<u32>,
    /// Replicas that run another spec than `bundle` during a rollout: an older one not
    /// replaced yet (or gone back to), each with the ordinals that run it.
    #[serde(default, rename = "held", skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<Pinned>,
    /// When failures of these replicas were last cleaned up (`berth cleanup`, Unix
    /// seconds; 0: never): the agent forgets its fail counts, failure and restart hold for
    /// them once, when this rises.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleanup: u64,
    /// Bundles ordered after this one (a symmetrical `rsc_order` with this bundle first),
    /// whose replicas stop before these: while one of theirs is stopping, the controller
    /// keeps this assignment as it is. Kept here so that it holds after they are deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_after: Vec<String>,
    /// For a bundle with `notify=true`: the clone notification round under way (or the last
    /// one), which the node agent delivers to each of `targets` it runs. (Boxed: most
    /// assignments have none, and the controller holds tens of thousands.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Box<Notification>>,
}

/// Which side of its operation a clone notification is on (`pre` or `post`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    #[default]
    Pre,
    Post,
}

impl NotifyKind {
    /// The word agents get as `OCF_RESKEY_CRM_meta_notify_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Pre => "pre",
            NotifyKind::Post => "post",
        }
    }
}

/// The operation a clone notification is about, in the order Pacemaker runs them within a
/// transition (the order of the variants).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOp {
    #[default]
    Demote,
    Stop,
    Start,
    Promote,
}

impl NotifyOp {
    /// Every operation, in Pacemaker's order.
    pub const ALL: [NotifyOp; 4] = [
        NotifyOp::Demote,
        NotifyOp::Stop,
        NotifyOp::Start,
        NotifyOp::Promote,
    ];

    /// The word agents get as `OCF_RESKEY_CRM_meta_notify_operation`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOp::Demote => "demote",
            NotifyOp::Stop => "stop",
            NotifyOp::Start => "start",
            NotifyOp::Promote => "promote",
        }
    }

    /// Its past (`notify_key_operation` after it: `stopped`, `started`, …).
    pub fn past(self) -> &'static str {
        match self {
            NotifyOp::Demote => "demoted",
            NotifyOp::Stop => "stopped",
            NotifyOp::Start => "started",
            NotifyOp::Promote => "promoted",
        }
    }
}

/// One round of Pacemaker's clone notifications: a `notify` action run in every target
/// replica's primitive with `OCF_RESKEY_CRM_meta_notify_type` = `kind`,
/// `…_notify_operation` = `operation` and `…_notify_<name>` for each of `vars`.
///
/// (Below: the two words of a round, as enums whose wire words are Pacemaker's.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Rises with every round of the bundle; a primitive reports the last it ran
    /// (`notified`).
    pub id: u64,
    pub kind: NotifyKind,
    pub operation: NotifyOp,
    /// The replicas to notify (ordinals).
    pub targets: Vec<u32>,
    /// `start_resource` → `db:1 db:2`, `active_uname` → `db-0`, … (empty lists are " ", as
    /// Pacemaker passes them).
    pub vars: BTreeMap<String, String>,
    /// The replicas the operation acts on, and where (the controller's bookkeeping).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acts_on: Vec<(u32, String)>,
    /// When the round was sent (Unix seconds): targets that have not run it a while after
    /// are no longer waited for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at: u64,
}

/// `<prefix>/bans/<bundle>`: the nodes `berth ban` keeps a bundle off, and the node
/// `berth move` sends one of its replicas to (crm_resource's cli-ban and cli-prefer
/// constraints; `berth clear` removes both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bans {
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer: Option<String>,
}

/// `<prefix>/cleanup/<bundle>`: when `berth cleanup` last ran for the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    /// Unix seconds.
    pub at: u64,
}

/// Replicas of an assignment pinned to another spec than the assignment's (a rollout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pinned {
    /// The spec they run, its generation included.
    pub bundle: Arc<Bundle>,
    pub replicas: Vec<u32>,
}

impl Assignment {
    /// The spec replica `i` runs: the one it is pinned to, else the assignment's.
    pub fn spec_of(&self, i: u32) -> &Bundle {
        self.pinned
            .iter()
            .find(|h| h.replicas.contains(&i))
            .map_or(&self.bundle, |h| &h.bundle)
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Where a replica is in its life, as its node agent sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// Assigned, nothing created yet.
    #[default]
    Pending,
    /// Created or restarting, not running yet.
    Starting,
    Running,
    /// Cannot run as specified (bad options, image missing, …), or waiting to be restarted.
    Failed,
    /// Stopped on purpose (target-role Stopped, fencing).
    Stopped,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Pending => "pending",
            ReplicaState::Starting => "starting",
            ReplicaState::Running => "running",
            ReplicaState::Failed => "failed",
            ReplicaState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of a replica: why and when (seconds since the Unix epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Failure {
    pub reason: String,
    pub time: u64,
}

/// Observed state of one replica (`<prefix>/replicas/<bundle>/<i>`), written by the node
/// agent running it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub bundle: String,
    pub index: u32,
    pub node: String,
    pub container_id: String,
    pub container_name: String,
    pub state: ReplicaState,
    /// The replica's address (`ip-range-start + i`), when the bundle has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Published ports, `host-ip:host-port->container-port/tcp`.
    pub ports: Vec<String>,
    /// Restarts of this replica's container after it died.
    pub restart_count: u32,
    /// Failures per node (for migration-threshold): the node's name → count.
    pub fail_counts: BTreeMap<String, u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// The bundle generation the container conforms to.
    pub generation: i64,
    /// The primitive, as the replica's remote agent last reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primitive: Option<PrimitiveState>,
    /// When this agent last started the replica's container (seconds since the Unix
    /// epoch); 0 when it did not (a container it adopted).
    #[serde(skip_serializing_if = "is_zero")]
    pub started_at: u64,
    /// The lease of the node registration the agent wrote this under: a status written
    /// before its node registered anew (a killed or fenced agent's) is not taken for what
    /// runs now.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub lease: i64,
}

impl ReplicaStatus {
    /// Whether its primitive reports itself started (false before any report).
    pub fn primitive_started(&self) -> bool {
        self.primitive
            .as_ref()
            .is_some_and(|p| p.state == Phase::Started)
    }

    /// Started: its container runs and, for a bundle `with_primitive`, its primitive
    /// started (crm_mon's Started).
    pub fn is_started(&self, with_primitive: bool) -> bool {
        self.state == ReplicaState::Running && (!with_primitive || self.primitive_started())
    }

    /// Whether its primitive reports itself promoted.
    pub fn is_promoted(&self) -> bool {
        self.primitive.as_ref().and_then(|p| p.role) == Some(Role::Promoted)
    }
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One operation as the history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpRecord {
    pub action: crate::model::operation::Action,
    pub interval_ms: u64,
    /// The OCF code, or -1 for a timeout or a signal.
    pub rc: i32,
    pub rc_name: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub took_ms: u64,
    pub output: String,
}

impl OpRecord {
    /// OCF success: 0, or 8 (running promoted) from a monitor of a promoted instance.
    pub fn succeeded(&self) -> bool {
        self.rc == 0 || (self.rc == 8 && self.action == crate::model::operation::Action::Monitor)
    }
}

/// A primitive's state and recent operations, as the remote agent reports them on its
/// control channel (and the node agent copies into the replica status).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrimitiveState {
    /// Rises with every change, for the control channel's `watch`.
    #[serde(default)]
    pub version: u64,
    /// Where the primitive is in its life.
    pub state: Phase,
    /// For a promotable bundle: promoted or unpromoted (none otherwise).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub role: Option<Role>,
    /// The role the node agent last asked for and the remote agent has not dropped (none
    /// when none): a promotion is under way while this says promoted and `role` does not yet.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub wanted_role: Option<Role>,
    pub restarts: u32,
    /// The promotion score the agent last reported (`crm_master -v`, `crm_attribute -p -v`),
    /// when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
    pub last: VecDeque<OpRecord>,
    /// The id of the last clone notification the primitive was given (0: none since the
    /// container started).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notified: u64,
}

/// A primitive's phase, as the remote agent reports it (the same words as before it was typed:
/// stored statuses stay readable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting,
    Started,
    Failed,
    Stopping,
    Stopped,
    /// A monitor failed with on-fail=block: left as it is, no longer monitored.
    Blocked,
    /// Not reported yet, or a word this version does not know (from a newer agent, or a
    /// container's garbage).
    #[default]
    #[serde(other)]
    Unknown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unknown => "unknown",
            Phase::Starting => "starting",
            Phase::Started => "started",
            Phase::Failed => "failed",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Blocked => "blocked",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role of a promotable bundle's primitive (Pacemaker's promoted and unpromoted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Promoted,
    Unpromoted,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Promoted => "promoted",
            Role::Unpromoted => "unpromoted",
        }
    }

    /// Parses `promoted` or `unpromoted`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "promoted" => Some(Role::Promoted),
            "unpromoted" => Some(Role::Unpromoted),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role as stored: absent, or "" (how it was written before roles were typed), is none;
/// an unknown word is none too (a container's report is not trusted to be well-formed).
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Role>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.as_deref().and_then(Role::parse))
}

/// Cuts `s` to at most `max` bytes, at a character boundary (never inside a character).
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

impl PrimitiveState {
    /// Operations kept in a report and in the replica status.
    pub const MAX_OPS: usize = 20;
    /// Bytes of an operation's output kept in the replica status.
    pub const MAX_OUTPUT: usize = 1024;
    /// Bytes of any other string (an operation's rc name).
    pub const MAX_WORD: usize = 64;

    /// The report cut to size: it comes from inside a container (untrusted), and it is
    /// copied into the replica status in etcd, which must stay small whatever the agent
    /// printed or claimed.
    pub fn bounded(mut self) -> PrimitiveState {
        while self.last.len() > Self::MAX_OPS {
            self.last.pop_front();
        }
        for op in &mut self.last {
            truncate_utf8(&mut op.rc_name, Self::MAX_WORD);
            truncate_utf8(&mut op.output, Self::MAX_OUTPUT);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_roles_read_as_they_were_stored_before_they_were_typed() {
        let old = r#"{"version":3,"state":"started","role":"","restarts":0,"last":[]}"#;
        let st: PrimitiveState = serde_json::from_str(old).unwrap();
        assert_eq!((st.state, st.role), (Phase::Started, None));
        let p = r#"{"state":"started","role":"promoted","wantedRole":"promoted","restarts":0,"last":[]}"#;
        let st: PrimitiveState = serde_json::from_str(p).unwrap();
        assert_eq!(st.role, Some(Role::Promoted));
        assert_eq!(
            serde_json::to_string(&st).unwrap(),
            format!("{{\"version\":0,{}", &p[1..])
        );
        let odd: PrimitiveState =
            serde_json::from_str(r#"{"state":"dancing","role":"king","restarts":0,"last":[]}"#)
                .unwrap();
        assert_eq!((odd.state, odd.role), (Phase::Unknown, None));
    }

    #[test]
    fn truncation_never_splits_a_character() {
        let mut s = "aé".repeat(3000);
        truncate_utf8(&mut s, 4096);
        assert!(s.len() <= 4096 && s.len() >= 4094);
        let mut t = "é".to_string();
        truncate_utf8(&mut t, 1);
        assert_eq!(t, "");
    }

    #[test]
    fn a_report_from_a_container_is_bounded() {
        let op = OpRecord {
            action: crate::model::operation::Action::Monitor,
            interval_ms: 0,
            rc: 0,
            rc_name: "é".repeat(100),
            at: 0,
            took_ms: 0,
            output: "é".repeat(100_000),
        };
        let st = PrimitiveState {
            last: std::iter::repeat_n(op, 500).collect(),
            ..Default::default()
        }
        .bounded();
        assert_eq!(st.last.len(), PrimitiveState::MAX_OPS);
        assert!(
            st.last
                .iter()
                .all(|o| o.output.len() <= PrimitiveState::MAX_OUTPUT
                    && o.rc_name.len() <= PrimitiveState::MAX_WORD)
        );
        assert!(serde_json::to_vec(&st).unwrap().len() < 32 * 1024);
    }

    #[test]
    fn a_notification_keeps_its_words_on_the_wire() {
        let n = Notification {
            id: 3,
            kind: NotifyKind::Post,
            operation: NotifyOp::Promote,
            ..Default::default()
        };
        let json = serde_json::to_string(&n).unwrap();
        assert!(
            json.contains(r#""kind":"post","operation":"promote""#),
            "{json}"
        );
        let back: Notification = serde_json::from_str(&json.replace("promote", "stop")).unwrap();
        assert_eq!(back.operation, NotifyOp::Stop);
        assert!(serde_json::from_str::<Notification>(&json.replace("post", "during")).is_err());
    }
}
