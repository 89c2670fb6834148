//! Validation of `<primitive>`: class, agent, operations, attributes and their values.

use super::*;

pub(super) fn check_primitive(c: &mut Check, prim: &crate::model::Primitive) {
    let p = "spec.primitive";
    if prim.id.is_empty() {
        c.fail(format!("{p}.id"), "required");
    }
    if !SUPPORTED_CLASSES.contains(&prim.class.as_str()) {
        c.fail(
            format!("{p}.class"),
            format!(
                "{:?}: not supported inside a bundle (supported: {})",
                prim.class,
                SUPPORTED_CLASSES.join(", ")
            ),
        );
    }
    match (&prim.class[..], &prim.provider) {
        ("ocf", None) => c.fail(format!("{p}.provider"), "required for class ocf"),
        ("ocf", Some(pr)) if pr.is_empty() => {
            c.fail(format!("{p}.provider"), "required for class ocf")
        }
        ("ocf", _) | (_, None) => {}
        (class, Some(_)) => c.fail(
            format!("{p}.provider"),
            format!("only class ocf has a provider, not {class}"),
        ),
    }
    if prim.kind.is_empty() {
        c.fail(format!("{p}.type"), "required");
    }
    check_nvpairs(
        c,
        &format!("{p}.instanceAttributes"),
        &prim.instance_attributes,
        false,
    );
    check_nvpairs(
        c,
        &format!("{p}.metaAttributes"),
        &prim.meta_attributes,
        true,
    );
    check_nvpairs(c, &format!("{p}.utilization"), &prim.utilization, false);
    let mut seen: HashMap<(String, u128, &str), usize> = HashMap::new();
    for (i, op) in prim.operations.iter().enumerate() {
        let interval = check_op(c, &format!("{p}.operations[{i}]"), op);
        if let Some(iv) = interval {
            let key = (op.name.clone(), iv, op.role.as_deref().unwrap_or(""));
            if let Some(j) = seen.insert(key, i) {
                c.fail(
                    format!("{p}.operations[{i}]"),
                    format!(
                        "{} with interval {} repeats operations[{j}]",
                        op.name, op.interval
                    ),
                );
            }
        }
    }
}

/// Checks one operation; returns its interval in milliseconds when it parses.
pub(super) fn check_op(c: &mut Check, p: &str, op: &Operation) -> Option<u128> {
    if op.name.is_empty() {
        c.fail(format!("{p}.name"), "required");
    }
    let interval = match duration::parse(&op.interval) {
        Ok(d) => Some(d.as_millis()),
        Err(why) => {
            c.fail(format!("{p}.interval"), why);
            None
        }
    };
    if op.name == "monitor" && interval == Some(0) && op.role.is_none() {
        // A monitor with interval 0 is a probe, which Pacemaker schedules by itself.
        c.fail(
            format!("{p}.interval"),
            "a monitor needs an interval above 0",
        );
    }
    for (field, v) in [("timeout", &op.timeout), ("startDelay", &op.start_delay)] {
        if let Some(v) = v
            && let Err(why) = duration::parse(v)
        {
            c.fail(format!("{p}.{field}"), why);
        }
    }
    if op.start_delay.is_some() && op.interval_origin.is_some() {
        c.fail(
            format!("{p}.intervalOrigin"),
            "startDelay and intervalOrigin are both set: choose one",
        );
    }
    if let Some(r) = &op.role
        && !ROLES.contains(&r.as_str())
    {
        c.fail(
            format!("{p}.role"),
            format!("{r:?}: not a role ({})", ROLES.join(", ")),
        );
    }
    if let Some(f) = &op.on_fail
        && crate::model::operation::OnFail::parse(f).is_none()
    {
        c.fail(
            format!("{p}.onFail"),
            format!(
                "{f:?}: not an on-fail policy ({})",
                crate::model::operation::OnFail::words()
            ),
        );
    }
    check_nvpairs(
        c,
        &format!("{p}.instanceAttributes"),
        &op.instance_attributes,
        false,
    );
    check_nvpairs(
        c,
        &format!("{p}.metaAttributes"),
        &op.meta_attributes,
        false,
    );
    interval
}

/// Names present and unique; for resource meta attributes, a known name with a valid value.
pub(super) fn check_nvpairs(c: &mut Check, p: &str, pairs: &[NvPair], resource_meta: bool) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, nv) in pairs.iter().enumerate() {
        let pp = format!("{p}[{i}]");
        if nv.name.is_empty() {
            c.fail(format!("{pp}.name"), "required");
            continue;
        }
        if let Some(j) = names.insert(&nv.name, i) {
            c.fail(
                format!("{pp}.name"),
                format!("{}: already set by [{j}]", nv.name),
            );
        }
        if !resource_meta {
            continue;
        }
        if !KNOWN_META.contains(&nv.name.as_str()) {
            c.fail(
                format!("{pp}.name"),
                format!("{:?}: not a Pacemaker resource meta attribute", nv.name),
            );
            continue;
        }
        let Some(v) = nv.value.as_deref() else {
            continue;
        };
        if let Err(why) = check_meta_value(&nv.name, v) {
            c.fail(format!("{pp}.value"), format!("{v:?}: {why}"));
        }
    }
}

/// Why a meta attribute's value is refused (the message says what it must be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMetaValue {
    #[error("not a role ({})", ROLES.join(", "))]
    NotARole,
    #[error("not a boolean (true, false, yes, no, on, off, 1, 0)")]
    NotABoolean,
    #[error("not a count (a whole number >= 0)")]
    NotACount,
    #[error("not a count (a number >= 0, or INFINITY)")]
    NotAThreshold,
    #[error("not a score (an integer, INFINITY or -INFINITY)")]
    NotAScore,
    #[error(transparent)]
    Duration(#[from] duration::DurationError),
    #[error(transparent)]
    Rollout(#[from] crate::model::rollout::BadRolloutValue),
}

pub(super) fn check_meta_value(name: &str, v: &str) -> Result<(), BadMetaValue> {
    match name {
        "target-role" => ROLES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(v))
            .then_some(())
            .ok_or(BadMetaValue::NotARole),
        "is-managed" | "maintenance" | "critical" | "allow-migrate" | "notify" | "interleave"
        | "ordered" | "globally-unique" | "promotable" => {
            parse_bool(v).map(|_| ()).ok_or(BadMetaValue::NotABoolean)
        }
        "clone-max" | "clone-node-max" | "clone-min" | "promoted-max" | "promoted-node-max"
        | "master-max" | "master-node-max" => v
            .trim()
            .parse::<u32>()
            .map(|_| ())
            .map_err(|_| BadMetaValue::NotACount),
        "migration-threshold" => parse_score(v)
            .filter(|n| *n >= 0)
            .map(|_| ())
            .ok_or(BadMetaValue::NotAThreshold),
        "resource-stickiness" | "priority" => {
            parse_score(v).map(|_| ()).ok_or(BadMetaValue::NotAScore)
        }
        "failure-timeout" | "remote-connect-timeout" => {
            duration::parse(v).map(|_| ()).map_err(BadMetaValue::from)
        }
        _ => Ok(crate::model::rollout::check(name, v)?),
    }
}

/// Pacemaker's boolean spellings (crm_str_to_boolean).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" | "1" => Some(true),
        "false" | "no" | "off" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Pacemaker's INFINITY score.
pub const INFINITY: i64 = 1_000_000;

/// Pacemaker's score: an integer, or ±INFINITY (1,000,000).
pub fn parse_score(v: &str) -> Option<i64> {
    match v.trim() {
        "INFINITY" | "+INFINITY" => Some(INFINITY),
        "-INFINITY" => Some(-INFINITY),
        n => n.parse::<i64>().ok().map(|n| n.clamp(-INFINITY, INFINITY)),
    }
}
