//! The primitive's operations as the supervisor runs them: read once from the
//! configuration into typed timings and on-fail policies, with the recurring monitor an
//! agent advertises when the primitive defines none.

use std::time::Duration;

use super::classes::Resource;
use super::ocf::{Action, Rc};
use super::reaper::Reaper;
use crate::model::operation::OnFail;
use crate::model::{Primitive, duration};

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

/// The recurring monitor when the primitive defines none at all (no `monitor` op with an
/// interval, enabled or not): the one the agent's meta-data advertises, as `pcs resource
/// create` adds it, or every 10 s with Pacemaker's 20 s timeout when it advertises none.
pub async fn default_monitor(resource: &Resource, reaper: &Reaper) -> Op {
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
}
