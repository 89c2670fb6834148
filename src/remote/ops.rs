//! The recurring monitor an agent advertises, for a primitive that defines none (the
//! operations' typed timings are [`crate::model::operation::Ops`]).

use std::time::Duration;

use super::classes::Resource;
use super::ocf::{Action, Rc};
use super::reaper::Reaper;
use crate::model::duration;
use crate::model::operation::{DEFAULT_TIMEOUT, Op};

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
