//! Constraints between bundles: colocations (`rsc_colocation`) and start orders
//! (`rsc_order`), as a bundle's `spec.colocations` and `spec.orders`; what they mean, typed,
//! and their checks. Pure.

use std::collections::BTreeSet;

use super::cluster::Role;
use super::validate::parse_score;
use super::{Bundle, Colocation, Order};

/// A role word of Pacemaker's (`Started`, `Promoted`/`Master`, `Unpromoted`/`Slave`,
/// `Stopped`), any case; None when it is not one.
fn role_word(v: &str) -> Option<RoleWord> {
    Some(match v.to_ascii_lowercase().as_str() {
        "started" => RoleWord::Started,
        "promoted" | "master" => RoleWord::Promoted,
        "unpromoted" | "slave" => RoleWord::Unpromoted,
        "stopped" => RoleWord::Stopped,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleWord {
    Started,
    Promoted,
    Unpromoted,
    Stopped,
}

impl Colocation {
    /// `role: Promoted`: the constraint is on where this bundle's promoted replica may be,
    /// not on where its replicas run.
    pub fn for_promoted(&self) -> bool {
        self.role.as_deref().and_then(role_word) == Some(RoleWord::Promoted)
    }

    /// Which of `with`'s replicas count: None for any, or those in this role.
    pub fn with_role(&self) -> Option<Role> {
        match self.with_role.as_deref().and_then(role_word) {
            Some(RoleWord::Promoted) => Some(Role::Promoted),
            Some(RoleWord::Unpromoted) => Some(Role::Unpromoted),
            _ => None,
        }
    }
}

impl Order {
    /// `firstAction: promote`: this bundle waits for a promoted replica of `first`.
    pub fn after_promote(&self) -> bool {
        self.first_action
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("promote"))
    }

    /// Mandatory (the default): without `first` placed, this bundle does not run.
    pub fn mandatory(&self) -> bool {
        !self
            .kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case("optional"))
    }

    /// Symmetrical (the default): this bundle's replicas stop before `first`'s.
    pub fn symmetrical(&self) -> bool {
        self.symmetrical.unwrap_or(true)
    }
}

/// Each problem with a bundle's colocations and orders: (field, reason).
pub(super) fn check(b: &Bundle) -> Vec<(String, String)> {
    let me = b.name();
    let mut out = Vec::new();
    for (i, c) in b.spec.colocations.iter().enumerate() {
        out.extend(colocation_problems(
            me,
            c,
            &format!("spec.colocations[{i}]"),
        ));
    }
    for (i, o) in b.spec.orders.iter().enumerate() {
        out.extend(order_problems(me, o, &format!("spec.orders[{i}]")));
    }
    out
}

/// The problems of one colocation of bundle `me`, its fields under `p`.
pub fn colocation_problems(me: &str, c: &Colocation, p: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut fail = |field: String, why: String| out.push((field, why));
    if let Some(why) = reference_problem(me, &c.with) {
        fail(format!("{p}.with"), why);
    }
    match parse_score(&c.score) {
        None => fail(
            format!("{p}.score"),
            format!(
                "{:?}: not a score (an integer, INFINITY or -INFINITY)",
                c.score
            ),
        ),
        Some(s) if c.for_promoted() && s.abs() < super::validate::INFINITY => fail(
            format!("{p}.score"),
            format!(
                "{s}: with role Promoted berth honours INFINITY or -INFINITY only (where the promoted replica may be)"
            ),
        ),
        Some(_) => {}
    }
    if let Some(r) = &c.role {
        match role_word(r) {
            Some(RoleWord::Started | RoleWord::Promoted) => {}
            Some(_) => fail(
                format!("{p}.role"),
                format!(
                    "{r:?}: not supported: berth colocates replicas (Started) or the promoted replica (Promoted)"
                ),
            ),
            None => fail(format!("{p}.role"), format!("{r:?}: {ROLES}")),
        }
    }
    if let Some(r) = &c.with_role {
        match role_word(r) {
            Some(RoleWord::Stopped) => fail(
                format!("{p}.withRole"),
                format!("{r:?}: not supported: a colocation is with running replicas"),
            ),
            Some(_) => {}
            None => fail(format!("{p}.withRole"), format!("{r:?}: {ROLES}")),
        }
    }
    check_id(&mut fail, p, c.id.as_deref());
    out
}

/// The problems of one order of bundle `me` (its `then`), its fields under `p`.
pub fn order_problems(me: &str, o: &Order, p: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut fail = |field: String, why: String| out.push((field, why));
    if let Some(why) = reference_problem(me, &o.first) {
        fail(format!("{p}.first"), why);
    }
    if let Some(a) = &o.first_action
        && !["start", "promote"].contains(&a.to_ascii_lowercase().as_str())
    {
        fail(
            format!("{p}.firstAction"),
            format!(
                "{a:?}: not supported: berth orders after first's start or promote (stops follow symmetrical)"
            ),
        );
    }
    if let Some(a) = &o.then_action
        && !a.eq_ignore_ascii_case("start")
    {
        fail(
            format!("{p}.thenAction"),
            format!("{a:?}: not supported: berth orders this bundle's start"),
        );
    }
    if let Some(k) = &o.kind {
        match k.to_ascii_lowercase().as_str() {
            "mandatory" | "optional" => {}
            "serialize" => fail(
                format!("{p}.kind"),
                "\"Serialize\": not supported: berth orders starts (Mandatory or Optional)".into(),
            ),
            _ => fail(
                format!("{p}.kind"),
                format!("{k:?}: expected Mandatory or Optional"),
            ),
        }
    }
    check_id(&mut fail, p, o.id.as_deref());
    out
}

const ROLES: &str = "expected Started, Promoted (Master) or Unpromoted (Slave)";

fn check_id(fail: &mut impl FnMut(String, String), p: &str, id: Option<&str>) {
    if let Some(id) = id
        && !super::validate::is_xml_id(id)
    {
        fail(
            format!("{p}.id"),
            format!("{id:?}: not an XML id (a letter or '_', then letters, digits, '.', '-', '_')"),
        );
    }
}

/// Why a reference to another bundle by name cannot be one, if it cannot.
fn reference_problem(me: &str, other: &str) -> Option<String> {
    if other == me {
        return Some(format!(
            "{other:?}: a bundle cannot be constrained to itself"
        ));
    }
    super::validate::label_problem(other)
}

/// The bundles each bundle's constraints name, for placing the ones named first.
pub fn references(b: &Bundle) -> impl Iterator<Item = &str> {
    b.spec
        .colocations
        .iter()
        .map(|c| c.with.as_str())
        .chain(b.spec.orders.iter().map(|o| o.first.as_str()))
}

/// Constraints of `bundles` naming a bundle that is not in `known`: each refused with the
/// field and why ("bundle "app" is invalid: spec.orders[0].first: "db": no such bundle").
pub fn unknown_references<'a>(
    bundles: impl IntoIterator<Item = &'a Bundle>,
    known: &BTreeSet<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    for b in bundles {
        let name = b.name();
        let missing = |other: &str| !known.contains(other);
        for (i, c) in b.spec.colocations.iter().enumerate() {
            if missing(&c.with) {
                out.push(format!(
                    "bundle {name:?} is invalid: spec.colocations[{i}].with: {:?}: no such bundle",
                    c.with
                ));
            }
        }
        for (i, o) in b.spec.orders.iter().enumerate() {
            if missing(&o.first) {
                out.push(format!(
                    "bundle {name:?} is invalid: spec.orders[{i}].first: {:?}: no such bundle",
                    o.first
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::seed;

    fn with(c: Vec<Colocation>, o: Vec<Order>) -> Bundle {
        let mut b = seed();
        b.spec.colocations = c;
        b.spec.orders = o;
        b
    }

    #[test]
    fn each_bad_constraint_names_its_field_and_reason() {
        let b = with(
            vec![
                Colocation {
                    with: "httpd-bundle".into(),
                    score: "lots".into(),
                    role: Some("Unpromoted".into()),
                    ..Default::default()
                },
                Colocation {
                    with: "db".into(),
                    score: "100".into(),
                    role: Some("Promoted".into()),
                    with_role: Some("Boss".into()),
                    ..Default::default()
                },
            ],
            vec![Order {
                first: "Bad_Name".into(),
                first_action: Some("stop".into()),
                then_action: Some("promote".into()),
                kind: Some("Serialize".into()),
                id: Some("1x".into()),
                ..Default::default()
            }],
        );
        let fields: Vec<String> = check(&b).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "spec.colocations[0].with",
                "spec.colocations[0].score",
                "spec.colocations[0].role",
                "spec.colocations[1].score",
                "spec.colocations[1].withRole",
                "spec.orders[0].first",
                "spec.orders[0].firstAction",
                "spec.orders[0].thenAction",
                "spec.orders[0].kind",
                "spec.orders[0].id",
            ]
        );
    }

    #[test]
    fn good_constraints_pass_and_read_as_pacemaker_means_them() {
        let c = Colocation {
            with: "db".into(),
            score: "INFINITY".into(),
            role: Some("Master".into()),
            with_role: Some("slave".into()),
            ..Default::default()
        };
        let o = Order {
            first: "db".into(),
            first_action: Some("promote".into()),
            kind: Some("Optional".into()),
            symmetrical: Some(false),
            ..Default::default()
        };
        let b = with(vec![c.clone()], vec![o.clone()]);
        assert!(check(&b).is_empty(), "{:?}", check(&b));
        assert!(c.for_promoted());
        assert_eq!(c.with_role(), Some(Role::Unpromoted));
        assert!(o.after_promote() && !o.mandatory() && !o.symmetrical());
        let plain = Order {
            first: "db".into(),
            ..Default::default()
        };
        assert!(!plain.after_promote() && plain.mandatory() && plain.symmetrical());
    }

    #[test]
    fn references_to_bundles_that_do_not_exist_are_refused() {
        let b = with(
            vec![Colocation {
                with: "db".into(),
                score: "INFINITY".into(),
                ..Default::default()
            }],
            vec![Order {
                first: "cache".into(),
                ..Default::default()
            }],
        );
        let known = BTreeSet::from(["db", "httpd-bundle"]);
        assert_eq!(
            unknown_references([&b], &known),
            ["bundle \"httpd-bundle\" is invalid: spec.orders[0].first: \"cache\": no such bundle"]
        );
        assert_eq!(references(&b).collect::<Vec<_>>(), ["db", "cache"]);
    }
}
