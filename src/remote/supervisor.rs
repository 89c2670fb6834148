//! The remote agent's supervision of one primitive: start it, run its recurring monitors at
//! their intervals, recover as its on-fail says, and stop it cleanly on SIGTERM/SIGINT.
//!
//! Classes: ocf, lsb and berth's command class ([`super::classes`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::classes::Resource;
use super::ocf::{Action, Rc};
use super::ops::default_monitor;
use super::reaper::Reaper;
use crate::model::cluster::{NotifyKind, NotifyOp};
use crate::model::operation::OnFail;
use crate::model::operation::{Op, Ops};
use crate::model::remote::RemoteConfig;

/// The CIB feature set berth's tools and environment follow (Pacemaker 2.1's).
pub const CRM_FEATURE_SET: &str = "3.19.0";

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
    // The CIB feature set Pacemaker passes every agent: ocf-shellfuncs takes its promotion
    // path from it (3.10 and later: `crm_attribute --promotion`, which berth answers).
    env.push(("OCF_RESKEY_crm_feature_set".into(), CRM_FEATURE_SET.into()));
    if cfg.promotable {
        env.push((meta("promotable"), "true".into()));
    }
    if let Some(i) = cfg.clone {
        env.push((meta("clone"), i.to_string()));
    }
    if let Some(n) = &cfg.node {
        env.push((super::attrs::ENV_NODE.into(), n.clone()));
    }
    if let Some(host) = physical_host(cfg) {
        env.push((meta("physical_host"), host));
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

/// The node the replica runs on, as the node agent wrote it beside the channel's key
/// ([`crate::model::layout::PHYSICAL_HOST`]); None outside a node agent's container.
fn physical_host(cfg: &RemoteConfig) -> Option<String> {
    let dir = cfg.authkey_file.as_deref()?.parent()?;
    use std::io::Read;
    let mut name = String::new();
    std::fs::File::open(dir.join(crate::model::layout::PHYSICAL_HOST))
        .ok()?
        .take(256)
        .read_to_string(&mut name)
        .ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

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

/// The decision for a failed `op` whose on-fail is `policy`; `promoted` says whether the
/// instance runs promoted. Every on-fail rule is here:
/// - `stop`'s default is fence, which inside a container is a stop (as are `standby` and
///   `fence`: there is no node to fence or put in standby);
/// - `demote` applies to promote and to a promoted instance's operations (its monitor);
///   elsewhere the default (restart) applies, as in Pacemaker.
pub fn decide(op: Action, policy: Option<OnFail>, promoted: bool) -> Decision {
    match policy {
        Some(OnFail::Ignore) => Decision::Ignore,
        Some(OnFail::Block) => Decision::Block,
        Some(OnFail::Stop | OnFail::Standby | OnFail::Fence) => Decision::Stop,
        Some(OnFail::RestartContainer) => Decision::RestartContainer,
        Some(OnFail::Demote) if op == Action::Promote || promoted => Decision::Demote,
        _ if op == Action::Stop => Decision::Stop,
        _ => Decision::Restart,
    }
}

/// Whether a recurring monitor's result means healthy: OCF's success, or for a promoted
/// instance "running promoted" (8).
pub fn monitor_ok(rc: Rc, promoted: bool) -> bool {
    if promoted {
        rc == Rc::RunningPromoted
    } else {
        rc == Rc::Success
    }
}

pub use super::state::Shared;
pub use crate::model::cluster::{OpRecord, Phase, PrimitiveState, Role};

/// Operations kept in the history.
const HISTORY: usize = 20;

/// Runs one `action` of the configured primitive, with the environment and the timeout
/// supervision would give it (a monitor runs as a probe, interval 0); for
/// `berth remote --action`, e.g. validate-all or meta-data by hand.
pub async fn run_once(
    cfg: &RemoteConfig,
    reaper: &Reaper,
    action: Action,
) -> Result<super::ocf::Outcome, RunOnceError> {
    let resource = Resource::new(cfg, agent_env(cfg))?;
    let o = Ops::for_action(&cfg.primitive, action);
    Ok(resource
        .run(reaper, action, o.timeout, Duration::ZERO)
        .await?)
}

/// Why `berth remote --action` could not run the action.
#[derive(Debug, thiserror::Error)]
pub enum RunOnceError {
    #[error(transparent)]
    Resource(#[from] super::classes::ResourceError),
    #[error(transparent)]
    Spawn(#[from] super::ocf::SpawnError),
}

/// Supervises the primitive until `shutdown`; returns the process exit code.
pub async fn run(
    cfg: &RemoteConfig,
    reaper: &Reaper,
    state: Arc<Shared>,
    shutdown: CancellationToken,
) -> i32 {
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
    let ops = Ops::of(&cfg.primitive);
    s.set(Phase::Starting);
    if s.call(Action::Start, &ops.start).await != Rc::Success {
        s.set(Phase::Failed);
        return exit::START_FAILED;
    }
    s.set(Phase::Started);
    if cfg.promotable {
        s.state.update(|st| st.role = Some(Role::Unpromoted));
        if s.state.wanted_role().is_some() {
            s.state.repeat_role_request();
        }
    }
    let mut mons = ops.monitors.clone();
    if !ops.has_monitor {
        mons.push(default_monitor(&s.resource, reaper).await);
    }
    if let Some(code) = s.supervise(&ops, &mons, &shutdown).await {
        return code;
    }
    s.set(Phase::Stopping);
    let rc = s.call(Action::Stop, &ops.stop).await;
    s.set(Phase::Stopped);
    if rc == Rc::Success {
        exit::STOPPED
    } else {
        exit::STOP_FAILED
    }
}

/// What supervision does after a failure's on-fail.
enum After {
    /// Goes on as before.
    Go,
    /// Goes on without monitoring (blocked, or stopped).
    Unmonitored,
    /// Ends the remote agent with this exit code.
    Exit(i32),
}

struct Supervisor<'a> {
    resource: Resource,
    reaper: &'a Reaper,
    state: Arc<Shared>,
    /// The attributes file and the resource whose promotion score to report from it.
    scores: Option<(PathBuf, String)>,
}

impl Supervisor<'_> {
    /// Runs the monitors, role changes and notifications asked for, and each failure's
    /// on-fail, until `shutdown` (None: stop the primitive) or an exit code.
    async fn supervise(&self, ops: &Ops, mons: &[Op], shutdown: &CancellationToken) -> Option<i32> {
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
            let (action, rc, on_fail) = tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = self.state.role_asked() => match self.change_role(ops).await {
                    Some(failed) => failed,
                    None => continue,
                },
                _ = self.state.notify_asked() => {
                    if let Some(n) = self.state.take_notify() {
                        self.notify(&n, &ops.notify).await;
                    }
                    continue;
                }
                _ = crate::sleep_until(due.map(|d| d.1)), if monitoring => {
                    let Some((i, _)) = due else { continue };
                    let m = &mons[i];
                    next[i] = tokio::time::Instant::now() + m.interval;
                    let rc = self.call(Action::Monitor, m).await;
                    if monitor_ok(rc, self.state.role() == Some(Role::Promoted)) {
                        continue;
                    }
                    (Action::Monitor, rc, m.on_fail)
                }
            };
            let decision = decide(action, on_fail, self.state.role() == Some(Role::Promoted));
            tracing::warn!(rc = %rc.name(), ?decision, "{} failed", action.as_str());
            match self.recover(decision, ops).await {
                After::Go => {}
                After::Unmonitored => monitoring = false,
                After::Exit(code) => return Some(code),
            }
        }
    }

    /// Promotes or demotes as the node agent asked; the failed action, its code and
    /// on-fail, or None.
    async fn change_role(&self, ops: &Ops) -> Option<(Action, Rc, Option<OnFail>)> {
        let want = self.state.wanted_role()?;
        if self.state.role() == Some(want) {
            return None;
        }
        let (action, o) = if want == Role::Promoted {
            (Action::Promote, &ops.promote)
        } else {
            (Action::Demote, &ops.demote)
        };
        let rc = self.call(action, o).await;
        if rc == Rc::Success {
            self.state.update(|st| st.role = Some(want));
            return None;
        }
        Some((action, rc, o.on_fail))
    }

    /// Carries out a failure's on-fail.
    async fn recover(&self, decision: Decision, ops: &Ops) -> After {
        let (start, stop) = (&ops.start, &ops.stop);
        match decision {
            Decision::Ignore => After::Go,
            Decision::Block => {
                self.set(Phase::Blocked);
                After::Unmonitored
            }
            Decision::Restart => {
                self.set(Phase::Failed);
                self.call(Action::Stop, stop).await;
                if self.call(Action::Start, start).await != Rc::Success {
                    self.set(Phase::Failed);
                    return After::Exit(exit::START_FAILED);
                }
                // A restarted instance starts unpromoted, and no request for a role
                // stands: the node agent asks again.
                self.state.update(|st| {
                    st.restarts += 1;
                    if st.role.is_some() {
                        st.role = Some(Role::Unpromoted);
                        st.wanted_role = None;
                    }
                });
                self.set(Phase::Started);
                After::Go
            }
            Decision::Stop => {
                self.call(Action::Stop, stop).await;
                self.set(Phase::Stopped);
                After::Unmonitored
            }
            Decision::Demote => {
                if self.call(Action::Demote, &ops.demote).await == Rc::Success {
                    self.state.update(|st| {
                        st.role = Some(Role::Unpromoted);
                        st.wanted_role = None;
                    });
                }
                After::Go
            }
            Decision::RestartContainer => {
                self.call(Action::Stop, stop).await;
                After::Exit(exit::RESTART_CONTAINER)
            }
        }
    }

    fn set(&self, phase: Phase) {
        self.state.update(|st| st.state = phase);
    }

    /// Runs one action and records it.
    async fn call(&self, action: Action, op: &Op) -> Rc {
        self.call_with(action, op, &[]).await
    }

    /// Runs a clone notification (Pacemaker's `notify` action with the
    /// `OCF_RESKEY_CRM_meta_notify_*` variables) and reports it run, whatever its result: a
    /// failed notification is recorded, as Pacemaker logs it, and changes nothing else.
    async fn notify(&self, n: &crate::model::cluster::Notification, op: &Op) {
        let meta = |k: &str| format!("OCF_RESKEY_CRM_meta_notify_{k}");
        let mut env: Vec<(String, String)> = vec![
            (meta("type"), n.kind.as_str().to_string()),
            (meta("operation"), n.operation.as_str().to_string()),
            (meta("key_type"), n.kind.as_str().to_string()),
            (
                meta("key_operation"),
                key_operation(n.kind, n.operation).to_string(),
            ),
        ];
        env.extend(
            n.vars
                .iter()
                .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .map(|(k, v)| (meta(k), v.clone())),
        );
        self.call_with(Action::Notify, op, &env).await;
        self.state.update(|st| st.notified = st.notified.max(n.id));
    }

    /// Runs one action with more environment and records it.
    #[tracing::instrument(name = "op", skip_all, fields(action = action.as_str(), interval = ?op.interval))]
    async fn call_with(&self, action: Action, op: &Op, env: &[(String, String)]) -> Rc {
        let at = crate::unix_now();
        let (rc, took, output) = match self
            .resource
            .run_with(self.reaper, action, (op.timeout, op.interval), env)
            .await
        {
            Ok(o) => (o.rc, o.took, o.output),
            Err(e) => (Rc::ErrInstalled, Duration::ZERO, e.to_string()),
        };
        let code = rc.code();
        let quiet = action == Action::Monitor && matches!(rc, Rc::Success | Rc::RunningPromoted);
        self.state.change(!quiet, |st| {
            st.last.push_back(OpRecord {
                action,
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

/// Pacemaker's `notify_key_operation`: the operation (`start`) before it, its past
/// (`started`, `stopped`, `promoted`, `demoted`) after it.
fn key_operation(kind: NotifyKind, operation: NotifyOp) -> &'static str {
    match kind {
        NotifyKind::Pre => operation.as_str(),
        NotifyKind::Post => operation.past(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Primitive;

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
            ("OCF_RESKEY_crm_feature_set", "3.19.0"),
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
    fn notifications_name_the_operation_as_pacemaker_does() {
        use NotifyKind::{Post, Pre};
        let rows = [
            (Pre, NotifyOp::Start, "start"),
            (Post, NotifyOp::Start, "started"),
            (Pre, NotifyOp::Stop, "stop"),
            (Post, NotifyOp::Stop, "stopped"),
            (Post, NotifyOp::Promote, "promoted"),
            (Post, NotifyOp::Demote, "demoted"),
        ];
        for (kind, op, want) in rows {
            assert_eq!(key_operation(kind, op), want, "{kind:?} {op:?}");
        }
    }

    #[test]
    fn on_fail_decisions_follow_pacemaker() {
        use Action::{Demote, Monitor, Promote, Start, Stop};
        // (failed op, on-fail, promoted, decision)
        let rows = [
            (Monitor, None, false, Decision::Restart),
            (Start, None, false, Decision::Restart),
            (Stop, None, false, Decision::Stop),
            (Stop, Some(OnFail::Restart), false, Decision::Stop),
            (Monitor, Some(OnFail::Ignore), false, Decision::Ignore),
            (Monitor, Some(OnFail::Block), false, Decision::Block),
            (Monitor, Some(OnFail::Stop), false, Decision::Stop),
            (Monitor, Some(OnFail::Standby), false, Decision::Stop),
            (Monitor, Some(OnFail::Fence), false, Decision::Stop),
            (Monitor, Some(OnFail::Restart), false, Decision::Restart),
            (
                Monitor,
                Some(OnFail::RestartContainer),
                false,
                Decision::RestartContainer,
            ),
            (Promote, Some(OnFail::Demote), false, Decision::Demote),
            (Monitor, Some(OnFail::Demote), true, Decision::Demote),
            (Monitor, Some(OnFail::Demote), false, Decision::Restart),
            (Demote, Some(OnFail::Demote), false, Decision::Restart),
            (Start, Some(OnFail::Demote), false, Decision::Restart),
        ];
        for (op, policy, promoted, d) in rows {
            assert_eq!(
                decide(op, policy, promoted),
                d,
                "{op:?} {policy:?} promoted={promoted}"
            );
        }
    }

    #[test]
    fn a_promoted_monitor_is_healthy_only_when_running_promoted() {
        for (rc, promoted, ok) in [
            (Rc::Success, false, true),
            (Rc::RunningPromoted, true, true),
            (Rc::Success, true, false),
            (Rc::RunningPromoted, false, false),
            (Rc::NotRunning, false, false),
        ] {
            assert_eq!(monitor_ok(rc, promoted), ok, "{rc:?} promoted={promoted}");
        }
    }
}
