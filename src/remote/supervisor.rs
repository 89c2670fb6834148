//! The remote agent's supervision of one primitive: start it, run its recurring monitors at
//! their intervals, recover as its on-fail says, and stop it cleanly on SIGTERM/SIGINT.
//!
//! Classes: ocf, lsb and berth's command class ([`super::classes`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::classes::Resource;
use super::ocf::{Action, Rc};
use super::reaper::Reaper;
use crate::model::{Primitive, duration};

/// What the remote agent is told to supervise (a JSON file the node agent writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteConfig {
    /// `OCF_RESOURCE_INSTANCE`.
    pub instance: String,
    pub primitive: Primitive,
    /// `OCF_ROOT` (default `/usr/lib/ocf`).
    #[serde(default = "default_ocf_root")]
    pub ocf_root: PathBuf,
    /// The bundle is promotable (promoted-max > 0): the primitive starts unpromoted and is
    /// promoted or demoted when the node agent asks.
    #[serde(default)]
    pub promotable: bool,
    /// Where lsb init scripts are (default `/etc/init.d`).
    #[serde(default = "default_initd")]
    pub initd: PathBuf,
    /// The control channel's unix socket (in the per-replica directory mapped in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<PathBuf>,
    /// Also listen on TCP at this port (Pacemaker's control-port), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_port: Option<u16>,
    /// Where to keep a copy of the state (for the node agent to read after the container
    /// has died, when the channel is gone with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
    /// The file holding the channel's authkey; required when a channel is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authkey_file: Option<PathBuf>,
    /// The replica's node name, as agents see it (`OCF_RESKEY_CRM_meta_on_node`, `crm_node -n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The replica's ordinal (`OCF_RESKEY_CRM_meta_clone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<u32>,
    /// Where `crm_attribute` and `crm_master` keep the replica's node attributes (see
    /// [`super::attrs`]); the promotion score is read from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes_file: Option<PathBuf>,
    /// The folder holding `crm_attribute`, `crm_master` and `crm_node`: put first on the
    /// agents' PATH, and their `HA_SBIN_DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_dir: Option<PathBuf>,
}

/// The environment an OCF agent gets beyond the OCF basics: the primitive's meta attributes
/// as `OCF_RESKEY_CRM_meta_<name>` (dashes as underscores), the clone meta attributes
/// Pacemaker passes to a bundle's instances, and what the node attribute tools need.
pub fn agent_env(cfg: &RemoteConfig) -> Vec<(String, String)> {
    let meta = |k: &str| format!("OCF_RESKEY_CRM_meta_{}", k.replace('-', "_"));
    let mut env: Vec<(String, String)> = cfg
        .primitive
        .meta_attributes
        .iter()
        .filter_map(|nv| Some((meta(&nv.name), nv.value.clone()?)))
        .collect();
    if cfg.promotable {
        env.push((meta("promotable"), "true".into()));
    }
    if let Some(i) = cfg.clone {
        env.push((meta("clone"), i.to_string()));
    }
    if let Some(n) = &cfg.node {
        env.push((super::attrs::ENV_NODE.into(), n.clone()));
    }
    if let Some(f) = &cfg.attributes_file {
        env.push((super::attrs::ENV_FILE.into(), f.display().to_string()));
    }
    if let Some(d) = &cfg.tools_dir {
        let path = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        env.push(("PATH".into(), format!("{}:{path}", d.display())));
        env.push(("HA_SBIN_DIR".into(), d.display().to_string()));
    }
    env
}

impl RemoteConfig {
    /// Supervises `primitive` as instance `primitive.id`, with the defaults: OCF root
    /// `/usr/lib/ocf`, init scripts in `/etc/init.d`, no channel, no state or attributes file.
    pub fn new(primitive: Primitive) -> RemoteConfig {
        RemoteConfig {
            instance: primitive.id.clone(),
            primitive,
            ocf_root: default_ocf_root(),
            promotable: false,
            initd: default_initd(),
            control_socket: None,
            control_port: None,
            state_file: None,
            authkey_file: None,
            node: None,
            clone: None,
            attributes_file: None,
            tools_dir: None,
        }
    }
}

fn default_initd() -> PathBuf {
    PathBuf::from("/etc/init.d")
}

fn default_ocf_root() -> PathBuf {
    PathBuf::from("/usr/lib/ocf")
}

/// Pacemaker's default operation timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The remote agent's exit codes.
pub mod exit {
    /// Stopped cleanly on a signal.
    pub const STOPPED: i32 = 0;
    /// The stop action failed (or timed out).
    pub const STOP_FAILED: i32 = 1;
    /// The configuration cannot be used.
    pub const CONFIG: i32 = 2;
    /// The primitive failed to start: the container should fail, so that the node agent
    /// counts it and restarts (or, past migration-threshold, moves) the replica.
    pub const START_FAILED: i32 = 3;
    /// on-fail=restart-container: the whole container must restart.
    pub const RESTART_CONTAINER: i32 = 4;
}

/// What a failed operation leads to, per its `on-fail` (Pacemaker's defaults: restart,
/// except stop, whose default is fence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Ignore,
    /// Stop monitoring; leave the primitive as it is.
    Block,
    /// Stop, then start again in place.
    Restart,
    /// Stop and leave it stopped. `fence` and `standby` come here too: inside a container
    /// there is no node to fence or put in standby; the reason says which it was.
    Stop,
    Demote,
    RestartContainer,
}

/// The decision for a failed `op` whose on-fail is `policy`.
pub fn decide(op: &str, policy: Option<&str>) -> Decision {
    match policy {
        Some("ignore") => Decision::Ignore,
        Some("block") => Decision::Block,
        Some("stop") | Some("standby") | Some("fence") => Decision::Stop,
        Some("demote") => Decision::Demote,
        Some("restart-container") => Decision::RestartContainer,
        Some(_) | None if op == "stop" => Decision::Stop,
        _ => Decision::Restart,
    }
}

pub use crate::model::cluster::{OpRecord, Phase, PrimitiveState, Role};

/// The primitive's state, shared between the supervisor, the control channel and (for a
/// look after the container died) a state file.
#[derive(Default)]
pub struct Shared {
    state: Mutex<PrimitiveState>,
    changed: tokio::sync::Notify,
    /// Signalled when the node agent asks for a role (kept in the state's `wanted_role`).
    role_asked: tokio::sync::Notify,
    /// Written (temp file, then rename) on every change, when set.
    file: Option<PathBuf>,
}

impl Shared {
    pub fn new(file: Option<PathBuf>) -> Shared {
        Shared {
            file,
            ..Shared::default()
        }
    }

    /// The current state.
    pub fn get(&self) -> PrimitiveState {
        self.state.lock().expect("state lock").clone()
    }

    /// Reads the current state in place (no copy of its history).
    pub fn read<R>(&self, f: impl FnOnce(&PrimitiveState) -> R) -> R {
        f(&self.state.lock().expect("state lock"))
    }

    fn role(&self) -> Option<Role> {
        self.read(|st| st.role)
    }

    /// Changes the state, bumps its version, wakes watchers, writes the state file.
    pub fn update(&self, f: impl FnOnce(&mut PrimitiveState)) {
        self.change(true, f)
    }

    /// Changes the state; only a significant change bumps the version and wakes watchers
    /// (a successful recurring monitor is recorded quietly, so that a healthy primitive
    /// costs its watchers nothing).
    pub fn change(&self, significant: bool, f: impl FnOnce(&mut PrimitiveState)) {
        let snapshot = {
            let mut st = self.state.lock().expect("state lock");
            f(&mut st);
            if significant {
                st.version += 1;
            }
            st.clone()
        };
        if !significant {
            return;
        }
        self.changed.notify_waiters();
        if let Some(path) = &self.file {
            let tmp = path.with_extension("tmp");
            let json = serde_json::to_vec(&snapshot).expect("state serializes");
            if let Err(e) = std::fs::write(&tmp, json).and_then(|_| std::fs::rename(&tmp, path)) {
                tracing::warn!("writing {}: {e}", path.display());
            }
        }
    }

    /// Asks the supervisor to run the primitive in `role` (promoted or unpromoted). The
    /// request is part of the reported state, so that the controller knows a promotion is
    /// under way before it completes.
    pub fn ask_role(&self, role: Role) {
        self.update(|st| st.wanted_role = Some(role));
        self.role_asked.notify_one();
    }

    fn wanted_role(&self) -> Option<Role> {
        self.read(|st| st.wanted_role)
    }

    /// The state once its version is above `since`, or the current one after `max`.
    pub async fn changed_since(&self, since: u64, max: Duration) -> PrimitiveState {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let notified = self.changed.notified();
            let st = self.get();
            if st.version > since {
                return st;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get();
            }
        }
    }
}

/// Operations kept in the history.
const HISTORY: usize = 20;

struct Op {
    interval: Duration,
    timeout: Duration,
    on_fail: Option<String>,
}

fn op(p: &Primitive, name: &str) -> Op {
    let o = p
        .operations
        .iter()
        .find(|o| o.name == name && duration::parse(&o.interval).is_ok_and(|d| d.is_zero()));
    Op {
        interval: Duration::ZERO,
        timeout: o
            .and_then(|o| o.timeout.as_deref())
            .and_then(|t| duration::parse(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT),
        on_fail: o.and_then(|o| o.on_fail.clone()),
    }
}

/// The recurring monitor when the primitive defines none at all (no `monitor` op with an
/// interval, enabled or not): the one the agent's meta-data advertises, as `pcs resource
/// create` adds it, or every 10 s with Pacemaker's 20 s timeout when it advertises none.
async fn default_monitor(resource: &Resource, reaper: &Reaper) -> Op {
    let advertised = match resource {
        Resource::Ocf(_) => resource
            .run(
                reaper,
                Action::MetaData,
                Duration::from_secs(5),
                Duration::ZERO,
            )
            .await
            .ok()
            .filter(|o| o.rc == Rc::Success)
            .and_then(|o| advertised_monitor(&o.output)),
        _ => None,
    };
    let (interval, timeout) = advertised.unwrap_or((Duration::from_secs(10), DEFAULT_TIMEOUT));
    Op {
        interval,
        timeout,
        on_fail: None,
    }
}

/// The interval and timeout of the recurring monitor in an agent's meta-data (one for any
/// role preferred over a role's own).
fn advertised_monitor(xml: &str) -> Option<(Duration, Duration)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut found: Option<(bool, Duration, Duration)> = None;
    loop {
        let e = match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match crate::model::cib::element(&e) {
                Ok(e) if e.name == "action" => e,
                _ => continue,
            },
            Ok(Event::Eof) | Err(_) => break,
            _ => continue,
        };
        let attr = |name: &str| {
            e.attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        if attr("name").as_deref() != Some("monitor") {
            continue;
        }
        let Some(interval) = attr("interval")
            .and_then(|i| duration::parse(&i).ok())
            .filter(|d| !d.is_zero())
        else {
            continue;
        };
        let timeout = attr("timeout")
            .and_then(|t| duration::parse(&t).ok())
            .unwrap_or(DEFAULT_TIMEOUT);
        let any_role = attr("role").is_none();
        if found.is_none_or(|(had_any_role, _, _)| any_role && !had_any_role) {
            found = Some((any_role, interval, timeout));
        }
    }
    found.map(|(_, i, t)| (i, t))
}

fn monitors(p: &Primitive) -> Vec<Op> {
    p.operations
        .iter()
        .filter(|o| o.name == "monitor" && o.enabled != Some(false))
        .filter_map(|o| {
            let interval = duration::parse(&o.interval).ok().filter(|d| !d.is_zero())?;
            Some(Op {
                interval,
                timeout: o
                    .timeout
                    .as_deref()
                    .and_then(|t| duration::parse(t).ok())
                    .unwrap_or(DEFAULT_TIMEOUT),
                on_fail: o.on_fail.clone(),
            })
        })
        .collect()
}

/// Runs one `action` of the configured primitive, with the environment and the timeout
/// supervision would give it (a monitor runs as a probe, interval 0); for
/// `berth remote --action`, e.g. validate-all or meta-data by hand.
pub async fn run_once(
    cfg: &RemoteConfig,
    reaper: &Reaper,
    action: Action,
) -> Result<super::ocf::Outcome, String> {
    let resource = Resource::new(cfg, agent_env(cfg))?;
    let o = op(&cfg.primitive, action.as_str());
    resource
        .run(reaper, action, o.timeout, Duration::ZERO)
        .await
        .map_err(|e| e.to_string())
}

/// Supervises the primitive until `shutdown`; returns the process exit code.
pub async fn run(
    cfg: &RemoteConfig,
    reaper: &Reaper,
    state: Arc<Shared>,
    shutdown: CancellationToken,
) -> i32 {
    let p = &cfg.primitive;
    let resource = match Resource::new(cfg, agent_env(cfg)) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return exit::CONFIG;
        }
    };
    // Transient node attributes (a promotion score among them) last until the container
    // restarts, as they last until a node reboots in Pacemaker.
    if let Some(f) = &cfg.attributes_file
        && let Err(e) = super::attrs::clear_transient(f)
    {
        tracing::warn!("clearing {}: {e}", f.display());
    }
    let s = Supervisor {
        resource,
        reaper,
        state,
        scores: cfg
            .attributes_file
            .clone()
            .map(|f| (f, cfg.instance.clone())),
    };
    let (start, stop) = (op(p, "start"), op(p, "stop"));
    s.set(Phase::Starting);
    if s.call(Action::Start, &start).await != Rc::Success {
        s.set(Phase::Failed);
        return exit::START_FAILED;
    }
    s.set(Phase::Started);
    if cfg.promotable {
        s.state.update(|st| st.role = Some(Role::Unpromoted));
        if s.state.wanted_role().is_some() {
            s.state.role_asked.notify_one();
        }
    }
    let mut mons = monitors(p);
    let has_monitor = p
        .operations
        .iter()
        .any(|o| o.name == "monitor" && duration::parse(&o.interval).is_ok_and(|d| !d.is_zero()));
    if !has_monitor {
        mons.push(default_monitor(&s.resource, reaper).await);
    }
    let mut next: Vec<tokio::time::Instant> = mons
        .iter()
        .map(|m| tokio::time::Instant::now() + m.interval)
        .collect();
    let mut monitoring = !mons.is_empty();
    loop {
        let due = next
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| **t)
            .map(|(i, t)| (i, *t));
        // A failed operation and its on-fail.
        let failed: (&str, Rc, Option<String>) = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = s.state.role_asked.notified() => {
                let Some(want) = s.state.wanted_role() else { continue };
                if s.state.role() == Some(want) {
                    continue;
                }
                let (action, op_name) = if want == Role::Promoted {
                    (Action::Promote, "promote")
                } else {
                    (Action::Demote, "demote")
                };
                let o = op(p, op_name);
                let rc = s.call(action, &o).await;
                if rc == Rc::Success {
                    s.state.update(|st| st.role = Some(want));
                    continue;
                }
                (op_name, rc, o.on_fail)
            }
            _ = sleep_until(due.map(|d| d.1)), if monitoring => {
                let Some((i, _)) = due else { continue };
                let m = &mons[i];
                next[i] = tokio::time::Instant::now() + m.interval;
                let rc = s.call(Action::Monitor, m).await;
                let promoted = s.state.role() == Some(Role::Promoted);
                // OCF: a promoted instance's monitor answers 8 (running promoted).
                if rc == Rc::Success && !promoted || rc == Rc::RunningPromoted && promoted {
                    continue;
                }
                ("monitor", rc, m.on_fail.clone())
            }
        };
        let (op_name, rc, on_fail) = failed;
        let mut decision = decide(op_name, on_fail.as_deref());
        // Pacemaker: on-fail=demote applies to promote and to a promoted instance's monitor;
        // elsewhere the default applies.
        if decision == Decision::Demote
            && op_name != "promote"
            && s.state.role() != Some(Role::Promoted)
        {
            decision = Decision::Restart;
        }
        tracing::warn!(rc = %rc.name(), ?decision, "{op_name} failed");
        match decision {
            Decision::Ignore => {}
            Decision::Block => {
                monitoring = false;
                s.set(Phase::Blocked);
            }
            Decision::Restart => {
                s.set(Phase::Failed);
                s.call(Action::Stop, &stop).await;
                if s.call(Action::Start, &start).await != Rc::Success {
                    s.set(Phase::Failed);
                    return exit::START_FAILED;
                }
                // A restarted instance starts unpromoted, and no request for a role
                // stands: the node agent asks again.
                s.state.update(|st| {
                    st.restarts += 1;
                    if st.role.is_some() {
                        st.role = Some(Role::Unpromoted);
                        st.wanted_role = None;
                    }
                });
                s.set(Phase::Started);
            }
            Decision::Stop => {
                s.call(Action::Stop, &stop).await;
                monitoring = false;
                s.set(Phase::Stopped);
            }
            Decision::Demote => {
                if s.call(Action::Demote, &op(p, "demote")).await == Rc::Success {
                    s.state.update(|st| {
                        st.role = Some(Role::Unpromoted);
                        st.wanted_role = None;
                    });
                }
            }
            Decision::RestartContainer => {
                s.call(Action::Stop, &stop).await;
                return exit::RESTART_CONTAINER;
            }
        }
    }
    s.set(Phase::Stopping);
    let rc = s.call(Action::Stop, &stop).await;
    s.set(Phase::Stopped);
    if rc == Rc::Success {
        exit::STOPPED
    } else {
        exit::STOP_FAILED
    }
}

struct Supervisor<'a> {
    resource: Resource,
    reaper: &'a Reaper,
    state: Arc<Shared>,
    /// The attributes file and the resource whose promotion score to report from it.
    scores: Option<(PathBuf, String)>,
}

impl Supervisor<'_> {
    fn set(&self, phase: Phase) {
        self.state.update(|st| st.state = phase);
    }

    /// Runs one action and records it.
    async fn call(&self, action: Action, op: &Op) -> Rc {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (rc, took, output) = match self
            .resource
            .run(self.reaper, action, op.timeout, op.interval)
            .await
        {
            Ok(o) => (o.rc, o.took, o.output),
            Err(e) => (Rc::ErrInstalled, Duration::ZERO, e.to_string()),
        };
        let code = rc.code();
        let quiet = action == Action::Monitor && matches!(rc, Rc::Success | Rc::RunningPromoted);
        self.state.change(!quiet, |st| {
            st.last.push_back(OpRecord {
                action: action.as_str().into(),
                interval_ms: op.interval.as_millis() as u64,
                rc: code,
                rc_name: rc.name(),
                at,
                took_ms: took.as_millis() as u64,
                output,
            });
            while st.last.len() > HISTORY {
                st.last.pop_front();
            }
        });
        // The agent may have set or removed its promotion score during the action.
        if let Some((file, rsc)) = &self.scores {
            let score = super::attrs::promotion_score(file, rsc);
            if score != self.state.read(|st| st.score) {
                self.state.update(|st| st.score = score);
            }
        }
        rc
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_get_meta_attributes_clone_meta_and_the_attribute_tools() {
        let cfg = RemoteConfig {
            promotable: true,
            node: Some("db-1".into()),
            clone: Some(1),
            attributes_file: Some("/run/berth/attributes.json".into()),
            tools_dir: Some("/run/berth-bin".into()),
            ..RemoteConfig::new(Primitive {
                id: "db-pgsql".into(),
                meta_attributes: vec![crate::model::NvPair {
                    id: None,
                    name: "target-role".into(),
                    value: Some("Started".into()),
                }],
                ..Default::default()
            })
        };
        let env: std::collections::BTreeMap<String, String> = agent_env(&cfg).into_iter().collect();
        for (k, v) in [
            ("OCF_RESKEY_CRM_meta_target_role", "Started"),
            ("OCF_RESKEY_CRM_meta_promotable", "true"),
            ("OCF_RESKEY_CRM_meta_clone", "1"),
            ("OCF_RESKEY_CRM_meta_on_node", "db-1"),
            ("BERTH_ATTRIBUTES", "/run/berth/attributes.json"),
            ("HA_SBIN_DIR", "/run/berth-bin"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(
            env["PATH"].starts_with("/run/berth-bin:"),
            "{}",
            env["PATH"]
        );
    }

    #[test]
    fn the_advertised_monitor_is_read_from_meta_data() {
        let md = |actions: &str| {
            format!(
                "<?xml version=\"1.0\"?><resource-agent name=\"x\"><actions>\
                 <action name=\"start\" timeout=\"20s\"/>{actions}</actions></resource-agent>"
            )
        };
        assert_eq!(
            advertised_monitor(&md(
                r#"<action name="monitor" timeout="30s" interval="10s"/>"#
            )),
            Some((Duration::from_secs(10), Duration::from_secs(30)))
        );
        // A promotable agent's per-role monitors: the first, unless one is for any role.
        assert_eq!(
            advertised_monitor(&md(
                r#"<action name="monitor" depth="0" timeout="20s" interval="10s" role="Promoted"/>
                   <action name="monitor" depth="0" timeout="20s" interval="11s" role="Unpromoted"/>"#
            )),
            Some((Duration::from_secs(10), Duration::from_secs(20)))
        );
        assert_eq!(
            advertised_monitor(&md(
                r#"<action name="monitor" interval="10s" role="Promoted"/>
                   <action name="monitor" interval="7s"/>"#
            )),
            Some((Duration::from_secs(7), DEFAULT_TIMEOUT))
        );
        assert_eq!(
            advertised_monitor(&md(
                r#"<action name="monitor" timeout="20s" interval="0"/>"#
            )),
            None
        );
        assert_eq!(advertised_monitor("not xml <"), None);
    }

    #[test]
    fn on_fail_decisions_follow_pacemaker() {
        assert_eq!(decide("monitor", None), Decision::Restart);
        assert_eq!(
            decide("stop", None),
            Decision::Stop,
            "stop's default is fence, done as stop"
        );
        for (policy, d) in [
            ("ignore", Decision::Ignore),
            ("block", Decision::Block),
            ("stop", Decision::Stop),
            ("standby", Decision::Stop),
            ("fence", Decision::Stop),
            ("restart", Decision::Restart),
            ("demote", Decision::Demote),
            ("restart-container", Decision::RestartContainer),
        ] {
            assert_eq!(decide("monitor", Some(policy)), d, "{policy}");
        }
    }
}
