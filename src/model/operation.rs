//! An operation's typed values: its on-fail policy, interval and timeout, read the one way
//! validation checks them.

use std::time::Duration;

use super::{Operation, duration};

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
