//! A bundle's meta attributes, typed: the one place their names are read and their values
//! parsed, with Pacemaker's defaults. Validation refuses a value that does not parse
//! (`validate::primitive::BadMetaValue`), so a stored bundle's reads as written; a value it
//! never saw (written around it) reads as the default.

use std::time::Duration;

use super::BundleSpec;
use super::validate::{parse_bool, parse_score};

/// The meta attributes the controller and the node agent act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// `target-role=Stopped`: no replica runs.
    pub stopped: bool,
    /// `is-managed` (default true): berth starts, stops and moves the replicas.
    pub managed: bool,
    /// `migration-threshold`: failures on a node after which a replica is banned from it;
    /// None when unset or 0 (never banned).
    pub migration_threshold: Option<i64>,
    /// `failure-timeout`: how long such a ban lasts after the last failure; None when unset,
    /// 0 or not a time (the ban lasts until `berth cleanup`).
    pub failure_timeout: Option<Duration>,
    /// `ordered`: replicas start one after another, and stop in reverse.
    pub ordered: bool,
    /// `interleave`: an order between bundles holds replica by replica.
    pub interleave: bool,
    /// `notify`, on the bundle or its primitive (and only with a primitive): clone
    /// notifications are sent.
    pub notify: bool,
    /// `container-attribute-target=host`, on the primitive or the bundle: the replicas'
    /// node attributes (promotion scores among them) are kept on their host.
    pub attributes_on_host: bool,
}

impl Meta {
    /// Reads `spec`'s meta attributes (the primitive's, where Pacemaker reads them there too).
    pub fn of(spec: &BundleSpec) -> Meta {
        let primitive = spec.primitive.as_ref();
        let on_primitive = |name: &str| primitive.and_then(|p| p.meta(name));
        Meta {
            stopped: spec
                .meta("target-role")
                .is_some_and(|r| r.eq_ignore_ascii_case("stopped")),
            managed: spec.meta("is-managed").and_then(parse_bool).unwrap_or(true),
            migration_threshold: spec
                .meta("migration-threshold")
                .and_then(parse_score)
                .filter(|t| *t > 0),
            failure_timeout: spec
                .meta("failure-timeout")
                .and_then(|t| super::duration::parse(t).ok())
                .filter(|t| !t.is_zero()),
            ordered: spec.meta_true("ordered"),
            interleave: spec.meta_true("interleave"),
            notify: primitive.is_some_and(|p| spec.meta_true("notify") || p.meta_true("notify")),
            attributes_on_host: on_primitive("container-attribute-target")
                .or(spec.meta("container-attribute-target"))
                == Some("host"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(meta: &[(&str, &str)], primitive_meta: Option<&[(&str, &str)]>) -> BundleSpec {
        let pairs = |m: &[(&str, &str)]| {
            m.iter()
                .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
                .collect::<Vec<_>>()
        };
        let mut s = serde_json::json!({
            "docker": {"image": "x"},
            "metaAttributes": pairs(meta),
        });
        if let Some(pm) = primitive_meta {
            s["primitive"] = serde_json::json!({"id": "p", "class": "ocf",
                "provider": "heartbeat", "type": "Dummy", "metaAttributes": pairs(pm)});
        }
        serde_json::from_value(s).unwrap()
    }

    #[test]
    fn defaults_are_pacemakers() {
        let m = Meta::of(&spec(&[], None));
        assert_eq!(
            m,
            Meta {
                stopped: false,
                managed: true,
                migration_threshold: None,
                failure_timeout: None,
                ordered: false,
                interleave: false,
                notify: false,
                attributes_on_host: false,
            }
        );
    }

    #[test]
    fn values_are_read_as_pacemaker_reads_them() {
        let m = Meta::of(&spec(
            &[
                ("target-role", "stopped"),
                ("is-managed", "no"),
                ("migration-threshold", "3"),
                ("failure-timeout", "2min"),
                ("ordered", "true"),
                ("interleave", "yes"),
                ("notify", "true"),
            ],
            None,
        ));
        assert!(m.stopped && !m.managed && m.ordered && m.interleave);
        assert_eq!(m.migration_threshold, Some(3));
        assert_eq!(m.failure_timeout, Some(Duration::from_secs(120)));
        assert!(!m.notify, "notifications need a primitive");
        let with_primitive = spec(
            &[],
            Some(&[("notify", "true"), ("container-attribute-target", "host")]),
        );
        let m = Meta::of(&with_primitive);
        assert!(m.notify && m.attributes_on_host);
        let zero = Meta::of(&spec(
            &[("migration-threshold", "0"), ("failure-timeout", "0")],
            None,
        ));
        assert_eq!(
            (zero.migration_threshold, zero.failure_timeout),
            (None, None)
        );
        let infinity = Meta::of(&spec(&[("migration-threshold", "INFINITY")], None));
        assert_eq!(infinity.migration_threshold, Some(1_000_000));
    }
}
