//! A bundle's rollout strategy: how a spec change that replaces containers reaches the
//! replicas. Pacemaker has no such setting (it restarts every instance of a changed bundle),
//! so berth reads bundle meta attributes of its own, named `berth-…`: Pacemaker ignores meta
//! attributes it does not know, so a bundle exported to a CIB keeps its strategy and still
//! loads there.
//!
//! The defaults never take a bundle fully down: one replica at a time, each next one after
//! the replaced one is ready; a failed replacement pauses the rollout.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BundleSpec;

/// At most this many replicas unavailable at once during a rollout: a count (at least 1)
/// or a percentage of the replicas (`25%`, rounded down, at least 1). Default 1.
pub const MAX_UNAVAILABLE: &str = "berth-max-unavailable";
/// Replicas with an ordinal below this keep the previous spec (a canary: `replicas - 1`
/// updates only the last). Default 0.
pub const PARTITION: &str = "berth-partition";
/// How long a replaced replica must have been ready before the next one is replaced (a
/// Pacemaker time: `10s`, `1min`). Default 0.
pub const MIN_READY: &str = "berth-min-ready";
/// What a failed replacement does: `pause` (default: nothing more is replaced, the status
/// says why) or `rollback` (the replaced replicas go back to the previous spec).
pub const FAILURE_ACTION: &str = "berth-failure-action";

/// The rollout meta attributes berth knows.
pub const NAMES: [&str; 4] = [MAX_UNAVAILABLE, PARTITION, MIN_READY, FAILURE_ACTION];

/// What a failed replacement does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureAction {
    #[default]
    Pause,
    Rollback,
}

/// A bundle's rollout strategy, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    pub max_unavailable: u32,
    pub partition: u32,
    pub min_ready: Duration,
    pub failure_action: FailureAction,
}

/// Why a rollout meta attribute's value is refused (the message says what it must be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRolloutValue {
    #[error("must be at least 1: a rollout must be able to replace one")]
    NoneUnavailable,
    #[error("not a percentage (0% to 100%)")]
    NotAPercentage,
    #[error("not a count (a whole number >= 1) or a percentage (25%)")]
    NotACount,
    #[error("not an ordinal (a whole number >= 0)")]
    NotAnOrdinal,
    #[error(transparent)]
    Duration(#[from] super::duration::DurationError),
    #[error("not a failure action (pause, rollback)")]
    NotAFailureAction,
}

/// `max-unavailable` for `replicas` replicas: a count, or a percentage of them.
fn max_unavailable(v: &str, replicas: u32) -> Result<u32, BadRolloutValue> {
    let n = match v.strip_suffix('%') {
        Some(p) => {
            let pct: u32 = p
                .trim()
                .parse()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or(BadRolloutValue::NotAPercentage)?;
            (u64::from(replicas) * u64::from(pct) / 100) as u32
        }
        None => v.trim().parse().map_err(|_| BadRolloutValue::NotACount)?,
    };
    Ok(n.max(1))
}

fn failure_action(v: &str) -> Result<FailureAction, BadRolloutValue> {
    match v.to_ascii_lowercase().as_str() {
        "pause" => Ok(FailureAction::Pause),
        "rollback" => Ok(FailureAction::Rollback),
        _ => Err(BadRolloutValue::NotAFailureAction),
    }
}

/// Checks one rollout meta attribute's value (for validation); `Ok` for other names.
pub fn check(name: &str, v: &str) -> Result<(), BadRolloutValue> {
    match name {
        MAX_UNAVAILABLE => {
            if v.trim() == "0" {
                return Err(BadRolloutValue::NoneUnavailable);
            }
            max_unavailable(v, 1).map(|_| ())
        }
        PARTITION => v
            .trim()
            .parse::<u32>()
            .map(|_| ())
            .map_err(|_| BadRolloutValue::NotAnOrdinal),
        MIN_READY => super::duration::parse(v)
            .map(|_| ())
            .map_err(BadRolloutValue::from),
        FAILURE_ACTION => failure_action(v).map(|_| ()),
        _ => Ok(()),
    }
}

impl Strategy {
    /// The strategy a bundle's meta attributes ask for (values that do not parse, which
    /// validation refuses, fall back to the defaults).
    pub fn of(spec: &BundleSpec) -> Strategy {
        let replicas = spec.replicas();
        Strategy {
            max_unavailable: spec
                .meta(MAX_UNAVAILABLE)
                .and_then(|v| max_unavailable(v, replicas).ok())
                .unwrap_or(1),
            partition: spec
                .meta(PARTITION)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            min_ready: spec
                .meta(MIN_READY)
                .and_then(|v| super::duration::parse(v).ok())
                .unwrap_or_default(),
            failure_action: spec
                .meta(FAILURE_ACTION)
                .and_then(|v| failure_action(v).ok())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, NvPair};

    fn spec(replicas: u32, meta: &[(&str, &str)]) -> BundleSpec {
        BundleSpec {
            docker: Some(ContainerSpec {
                image: "x".into(),
                replicas: Some(replicas),
                ..Default::default()
            }),
            meta_attributes: meta
                .iter()
                .map(|(n, v)| NvPair {
                    id: None,
                    name: n.to_string(),
                    value: Some(v.to_string()),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_replace_one_at_a_time_and_pause() {
        assert_eq!(
            Strategy::of(&spec(3, &[])),
            Strategy {
                max_unavailable: 1,
                partition: 0,
                min_ready: Duration::ZERO,
                failure_action: FailureAction::Pause,
            }
        );
    }

    #[test]
    fn meta_attributes_set_the_strategy() {
        let s = Strategy::of(&spec(
            10,
            &[
                (MAX_UNAVAILABLE, "30%"),
                (PARTITION, "7"),
                (MIN_READY, "2s"),
                (FAILURE_ACTION, "Rollback"),
            ],
        ));
        assert_eq!(s.max_unavailable, 3);
        assert_eq!(s.partition, 7);
        assert_eq!(s.min_ready, Duration::from_secs(2));
        assert_eq!(s.failure_action, FailureAction::Rollback);
        // A percentage never rounds down to nothing.
        assert_eq!(
            Strategy::of(&spec(3, &[(MAX_UNAVAILABLE, "10%")])).max_unavailable,
            1
        );
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        use BadRolloutValue::*;
        for (name, v, want, why) in [
            (MAX_UNAVAILABLE, "0", NoneUnavailable, "at least 1"),
            (MAX_UNAVAILABLE, "x", NotACount, "not a count"),
            (MAX_UNAVAILABLE, "120%", NotAPercentage, "not a percentage"),
            (PARTITION, "-1", NotAnOrdinal, "not an ordinal"),
            (
                FAILURE_ACTION,
                "retry",
                NotAFailureAction,
                "not a failure action",
            ),
        ] {
            let e = check(name, v).unwrap_err();
            assert_eq!(e, want, "{name}={v}");
            assert!(e.to_string().contains(why), "{name}={v}: {e}");
        }
        assert!(matches!(check(MIN_READY, "soon"), Err(Duration(_))));
        assert!(check(MAX_UNAVAILABLE, "2").is_ok());
        assert!(check(PARTITION, "0").is_ok());
    }
}

/// Where a bundle's rollout is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutState {
    /// Every replica (from the partition on) runs the bundle's spec and is ready.
    #[default]
    Complete,
    /// Replicas are being replaced.
    Progressing,
    /// Paused by `berth rollout pause`: nothing more is replaced.
    Paused,
    /// A replacement failed: nothing more is replaced (failure action pause).
    Failed,
    /// A replacement failed and the replaced replicas go (or went) back to the previous
    /// spec (failure action rollback).
    RolledBack,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Complete => "complete",
            RolloutState::Progressing => "progressing",
            RolloutState::Paused => "paused",
            RolloutState::Failed => "failed",
            RolloutState::RolledBack => "rolledBack",
        }
    }
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bundle's rollout, in its status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The generation being rolled out: the bundle's.
    pub generation: i64,
    /// Older generations replicas still run, ascending.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub old_generations: Vec<i64>,
    /// Replicas running the bundle's generation (or, rolled back, the one gone back to).
    pub updated: u32,
    /// Of those, ready (running; with a primitive, started; for `berth-min-ready`).
    pub ready: u32,
    /// Replicas not ready, whatever spec they run.
    pub unavailable: u32,
    pub max_unavailable: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub partition: u32,
    pub state: RolloutState,
    /// What the rollout does now (`replacing web-2`, `waiting for web-2 to be ready`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub step: String,
    /// Why it is paused, failed or rolled back.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Rolled back: the generation the replicas went back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `<prefix>/rollouts/<bundle>`: written by `berth rollout pause` (deleted by `resume`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RolloutControl {
    pub paused: bool,
    /// When it was paused (seconds since the Unix epoch).
    pub since: u64,
}
