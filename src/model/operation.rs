//! An operation's typed values: its on-fail policy, interval and timeout, read the one way
//! validation checks them; the OCF actions; and a primitive's operations read once into
//! typed timings ([`Ops`]: what the remote agent runs, and what a container's stop grace
//! allows for).

use std::time::Duration;

use super::{Operation, Primitive, duration};

/// Pacemaker's on-fail policies for a failed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    Ignore,
    Block,
    Demote,
    Stop,
    Restart,
    Standby,
    Fence,
    RestartContainer,
}

impl OnFail {
    /// Every policy, in the order Pacemaker documents them.
    pub const ALL: [OnFail; 8] = [
        OnFail::Ignore,
        OnFail::Block,
        OnFail::Demote,
        OnFail::Stop,
        OnFail::Restart,
        OnFail::Standby,
        OnFail::Fence,
        OnFail::RestartContainer,
    ];

    /// Pacemaker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFail::Ignore => "ignore",
            OnFail::Block => "block",
            OnFail::Demote => "demote",
            OnFail::Stop => "stop",
            OnFail::Restart => "restart",
            OnFail::Standby => "standby",
            OnFail::Fence => "fence",
            OnFail::RestartContainer => "restart-container",
        }
    }

    /// The policy a word names, or None.
    pub fn parse(word: &str) -> Option<OnFail> {
        OnFail::ALL.into_iter().find(|p| p.as_str() == word)
    }

    /// Every word, for error messages.
    pub fn words() -> String {
        OnFail::ALL.map(OnFail::as_str).join(", ")
    }
}

impl Operation {
    /// The interval (`0`: not recurring).
    pub fn interval(&self) -> Result<Duration, duration::DurationError> {
        duration::parse(&self.interval)
    }

    /// Whether this is the operation `name` run once (interval 0), as start, stop, promote
    /// and demote are.
    pub fn is_once(&self, name: &str) -> bool {
        self.name == name && self.interval().is_ok_and(|d| d.is_zero())
    }

    /// Whether this is a recurring monitor (interval above 0), enabled or not.
    pub fn is_recurring_monitor(&self) -> bool {
        self.name == "monitor" && self.interval().is_ok_and(|d| !d.is_zero())
    }

    /// The timeout, when one is set and parses.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
    }

    /// The on-fail policy, when one is set and is a policy (validation refuses others).
    pub fn on_fail(&self) -> Option<OnFail> {
        self.on_fail.as_deref().and_then(OnFail::parse)
    }
}

/// The OCF actions (on the wire as their OCF names: `start`, `meta-data`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Start,
    Stop,
    Monitor,
    Promote,
    Demote,
    Notify,
    MetaData,
    ValidateAll,
}

impl Action {
    /// Every action of the OCF resource agent API.
    pub const ALL: [Action; 8] = [
        Action::Start,
        Action::Stop,
        Action::Monitor,
        Action::Promote,
        Action::Demote,
        Action::Notify,
        Action::MetaData,
        Action::ValidateAll,
    ];

    /// The action named `name` (`start`, `meta-data`, …).
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor => "monitor",
            Action::Promote => "promote",
            Action::Demote => "demote",
            Action::Notify => "notify",
            Action::MetaData => "meta-data",
            Action::ValidateAll => "validate-all",
        }
    }
}

/// An action is its OCF name.
impl PartialEq<&str> for Action {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action's timeout when its operation sets none (Pacemaker's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// One operation, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub interval: Duration,
    pub timeout: Duration,
    pub on_fail: Option<OnFail>,
}

/// Every operation the supervisor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ops {
    pub start: Op,
    pub stop: Op,
    pub promote: Op,
    pub demote: Op,
    pub notify: Op,
    /// The enabled recurring monitors.
    pub monitors: Vec<Op>,
    /// The primitive defines a recurring monitor (enabled or not): no default one is added.
    pub has_monitor: bool,
}

impl Ops {
    /// Reads the primitive's operations once.
    pub fn of(p: &Primitive) -> Ops {
        let monitors = p
            .operations
            .iter()
            .filter(|o| o.is_recurring_monitor() && o.enabled != Some(false))
            .filter_map(|o| {
                Some(Op {
                    interval: o.interval().ok()?,
                    timeout: o.timeout().unwrap_or(DEFAULT_TIMEOUT),
                    on_fail: o.on_fail(),
                })
            })
            .collect();
        Ops {
            start: once(p, "start"),
            stop: once(p, "stop"),
            promote: once(p, "promote"),
            demote: once(p, "demote"),
            notify: once(p, "notify"),
            monitors,
            has_monitor: p.operations.iter().any(|o| o.is_recurring_monitor()),
        }
    }

    /// The operation an action runs as, for `berth remote --action` (a monitor as a probe).
    pub fn for_action(p: &Primitive, action: Action) -> Op {
        once(p, action.as_str())
    }
}

/// The non-recurring operation `name` (interval 0), with defaults when it is not defined.
fn once(p: &Primitive, name: &str) -> Op {
    let o = p.operations.iter().find(|o| o.is_once(name));
    Op {
        interval: Duration::ZERO,
        timeout: o.and_then(|o| o.timeout()).unwrap_or(DEFAULT_TIMEOUT),
        on_fail: o.and_then(|o| o.on_fail()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_read_once_with_defaults() {
        let p: Primitive = serde_json::from_value(serde_json::json!({
            "id": "p", "class": "ocf", "provider": "heartbeat", "type": "Dummy",
            "operations": [
                {"name": "start", "interval": "0", "timeout": "40s", "onFail": "block"},
                {"name": "monitor", "interval": "10s", "onFail": "ignore"},
                {"name": "monitor", "interval": "20s", "enabled": false},
            ],
        }))
        .unwrap();
        let ops = Ops::of(&p);
        assert_eq!(
            ops.start,
            Op {
                interval: Duration::ZERO,
                timeout: Duration::from_secs(40),
                on_fail: Some(OnFail::Block)
            }
        );
        assert_eq!(
            ops.stop,
            Op {
                interval: Duration::ZERO,
                timeout: DEFAULT_TIMEOUT,
                on_fail: None
            }
        );
        assert_eq!(
            ops.monitors,
            vec![Op {
                interval: Duration::from_secs(10),
                timeout: DEFAULT_TIMEOUT,
                on_fail: Some(OnFail::Ignore)
            }]
        );
        assert!(ops.has_monitor);
    }
}
