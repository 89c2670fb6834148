//! Import: a CIB (or any XML holding <bundle> elements) into bundles.

use super::*;
use crate::model::{Colocation, Location, Order, constraints};

/// What an XML document held: its bundles, and warnings about what was ignored.
#[derive(Debug, Default)]
pub struct Imported {
    pub bundles: Vec<Bundle>,
    pub warnings: Vec<String>,
}

/// Reads a `<bundle>` fragment, a `<resources>` section, or a whole `<cib>` (every bundle in
/// its resources; anything else is ignored with a warning).
pub fn import(text: &str) -> Result<Imported, XmlError> {
    let root = parse_tree(text)?;
    let mut out = Imported::default();
    match root.name.as_str() {
        "bundle" => out.bundles.push(bundle_from(&root)?),
        "resources" => import_resources(&root, "resources", &mut out)?,
        "cib" => {
            let mut constraints = Vec::new();
            for child in &root.children {
                match child.name.as_str() {
                    "configuration" => {
                        for section in &child.children {
                            if section.name == "resources" {
                                import_resources(section, "cib/configuration/resources", &mut out)?;
                            } else if section.name == "constraints" {
                                constraints.push(section);
                            } else if !section.children.is_empty() {
                                out.warnings.push(format!(
                                    "ignored <{}>: only bundles are imported",
                                    section.name
                                ));
                            }
                        }
                    }
                    "status" => {}
                    other => out.warnings.push(format!("ignored <{other}>")),
                }
            }
            // After the resources: constraints name them.
            for section in constraints {
                import_constraints(section, &mut out);
            }
        }
        other => {
            return err(
                other,
                "expected <bundle>, <resources> or <cib> as the root element",
            );
        }
    }
    Ok(out)
}

fn attr_of<'e>(el: &'e Element, name: &str) -> Option<&'e str> {
    el.attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The constraints berth keeps, between bundles of this document: `rsc_location` as the
/// bundle's `spec.locations`, `rsc_colocation` as `rsc`'s `spec.colocations`, `rsc_order`
/// as `then`'s `spec.orders`. Any other constraint, one naming a resource that is not a
/// bundle here, or a form berth has no equivalent for, is reported and skipped (as
/// resources other than bundles are).
fn import_constraints(section: &Element, out: &mut Imported) {
    for c in &section.children {
        let id = attr_of(c, "id").unwrap_or("?");
        let kind = c.name.as_str();
        let got = match kind {
            "rsc_location" => location_from(c).map(|(rsc, l)| (rsc, Constraint::Locations(l))),
            "rsc_colocation" => colocation_from(c).map(|(rsc, c)| (rsc, Constraint::Colocation(c))),
            "rsc_order" => order_from(c).map(|(then, o)| (then, Constraint::Order(o))),
            other => {
                out.warnings.push(format!(
                    "ignored <{other} id={id:?}>: only rsc_location, rsc_colocation and rsc_order constraints are imported"
                ));
                continue;
            }
        };
        let (owner, constraint) = match got {
            Ok(got) => got,
            Err(why) => {
                out.warnings.push(format!("ignored {kind} {id:?}: {why}"));
                continue;
            }
        };
        let names: Vec<&str> = out.bundles.iter().map(|b| b.name()).collect();
        let other = match &constraint {
            Constraint::Locations(_) => None,
            Constraint::Colocation(c) => Some(c.with.as_str()),
            Constraint::Order(o) => Some(o.first.as_str()),
        };
        if let Some(missing) = std::iter::once(owner.as_str())
            .chain(other)
            .find(|r| !names.contains(r))
        {
            out.warnings.push(format!(
                "ignored {kind} {id:?}: {missing:?} is not a bundle in this document"
            ));
            continue;
        }
        let b = out
            .bundles
            .iter_mut()
            .find(|b| b.name() == owner)
            .expect("checked above");
        let problems = match &constraint {
            Constraint::Locations(_) => vec![],
            Constraint::Colocation(c) => constraints::colocation_problems(&owner, c, kind),
            Constraint::Order(o) => constraints::order_problems(&owner, o, kind),
        };
        if let Some((field, why)) = problems.first() {
            let field = field.trim_start_matches(kind).trim_start_matches('.');
            out.warnings
                .push(format!("ignored {kind} {id:?}: {field}: {why}"));
            continue;
        }
        match constraint {
            Constraint::Locations(l) => b.spec.locations.extend(l),
            Constraint::Colocation(c) => b.spec.colocations.push(c),
            Constraint::Order(o) => b.spec.orders.push(o),
        }
    }
}

/// Why a constraint is skipped on import (the warning names it and says this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Skipped {
    #[error("resource sets are not supported")]
    ResourceSets,
    #[error("{0} is not supported")]
    Attribute(&'static str),
    #[error("<{0}> is not supported in it")]
    Child(String),
    #[error("a node-attribute other than #uname is not supported")]
    NodeAttribute,
    #[error("no {0}")]
    Missing(&'static str),
    #[error("symmetrical {0:?}: not a boolean")]
    Symmetrical(String),
    #[error("score {0:?}: not a score")]
    Score(String),
    #[error("no rsc (rsc-pattern and resource sets are not supported)")]
    NoRsc,
    #[error("role {0:?}: a location for one role is not supported")]
    LocationRole(String),
    #[error("resource-discovery={0:?} is not supported (always and exclusive are)")]
    Discovery(String),
    #[error("a node without a score")]
    NodeWithoutScore,
    #[error("a rule for one role is not supported")]
    RuleRole,
    #[error("a rule without a score (score-attribute is not supported)")]
    RuleWithoutScore,
    #[error("a rule of more than one expression is not supported")]
    RuleExpressions,
    #[error("<{0}> other than attribute eq value is not supported")]
    Expression(String),
    #[error("<{0}> is not supported")]
    Element(String),
    #[error("neither a node nor a rule")]
    Empty,
}

/// One constraint as a bundle keeps it.
enum Constraint {
    Locations(Vec<Location>),
    Colocation(Colocation),
    Order(Order),
}

/// No resource sets, patterns or other attributes berth has no equivalent for.
fn plain_pair(c: &Element, unsupported: &[&'static str]) -> Result<(), Skipped> {
    if c.children.iter().any(|ch| ch.name == "resource_set") {
        return Err(Skipped::ResourceSets);
    }
    if let Some(a) = unsupported.iter().find(|a| attr_of(c, a).is_some()) {
        return Err(Skipped::Attribute(a));
    }
    if let Some(ch) = c.children.first() {
        return Err(Skipped::Child(ch.name.clone()));
    }
    Ok(())
}

/// One `rsc_colocation` of two resources: (rsc, the colocation it keeps).
fn colocation_from(c: &Element) -> Result<(String, Colocation), Skipped> {
    plain_pair(
        c,
        &[
            "score-attribute",
            "influence",
            "rsc-instance",
            "with-rsc-instance",
        ],
    )?;
    if attr_of(c, "node-attribute").is_some_and(|a| a != "#uname") {
        return Err(Skipped::NodeAttribute);
    }
    let rsc = attr_of(c, "rsc")
        .ok_or(Skipped::Missing("rsc"))?
        .to_string();
    let with = attr_of(c, "with-rsc").ok_or(Skipped::Missing("with-rsc"))?;
    let with = with.to_string();
    let score = attr_of(c, "score").ok_or(Skipped::Missing("score"))?;
    let score = score.to_string();
    Ok((
        rsc,
        Colocation {
            id: attr_of(c, "id").map(str::to_string),
            with,
            score,
            role: attr_of(c, "rsc-role").map(str::to_string),
            with_role: attr_of(c, "with-rsc-role").map(str::to_string),
        },
    ))
}

/// One `rsc_order` of two resources: (then, the order it keeps). The deprecated score reads
/// as Pacemaker reads it: 0 is Optional, anything else Mandatory.
fn order_from(c: &Element) -> Result<(String, Order), Skipped> {
    plain_pair(c, &["first-instance", "then-instance", "require-all"])?;
    let first = attr_of(c, "first").ok_or(Skipped::Missing("first"))?;
    let first = first.to_string();
    let then = attr_of(c, "then").ok_or(Skipped::Missing("then"))?;
    let then = then.to_string();
    let symmetrical = match attr_of(c, "symmetrical") {
        None => None,
        Some(v) => Some(
            crate::model::validate::parse_bool(v)
                .ok_or_else(|| Skipped::Symmetrical(v.to_string()))?,
        ),
    };
    let kind = match (attr_of(c, "kind"), attr_of(c, "score")) {
        (Some(k), _) => Some(k.to_string()),
        (None, Some(s)) => match crate::model::validate::parse_score(s) {
            Some(0) => Some("Optional".to_string()),
            Some(_) => None,
            None => return Err(Skipped::Score(s.to_string())),
        },
        (None, None) => None,
    };
    Ok((
        then,
        Order {
            id: attr_of(c, "id").map(str::to_string),
            first,
            first_action: attr_of(c, "first-action").map(str::to_string),
            then_action: attr_of(c, "then-action").map(str::to_string),
            kind,
            symmetrical,
        },
    ))
}

/// One `rsc_location`: a node and a score, or rules of one `eq` expression each, on
/// `#uname` (a node) or a node attribute (a label `attribute=value`).
fn location_from(c: &Element) -> Result<(String, Vec<Location>), Skipped> {
    let rsc = attr_of(c, "rsc").ok_or(Skipped::NoRsc)?.to_string();
    if let Some(role) = attr_of(c, "role") {
        return Err(Skipped::LocationRole(role.to_string()));
    }
    let discovery = match attr_of(c, "resource-discovery") {
        None | Some("always") => None,
        Some("exclusive") => Some("exclusive".to_string()),
        Some(other) => return Err(Skipped::Discovery(other.to_string())),
    };
    if let Some(node) = attr_of(c, "node") {
        let score = attr_of(c, "score").ok_or(Skipped::NodeWithoutScore)?;
        return Ok((
            rsc,
            vec![Location {
                node: Some(node.to_string()),
                label: None,
                score: score.to_string(),
                resource_discovery: discovery.clone(),
            }],
        ));
    }
    let mut out = Vec::new();
    for rule in &c.children {
        if rule.name != "rule" {
            return Err(Skipped::Child(rule.name.clone()));
        }
        if attr_of(rule, "role").is_some() {
            return Err(Skipped::RuleRole);
        }
        let score = attr_of(rule, "score").ok_or(Skipped::RuleWithoutScore)?;
        let [expr] = rule.children.as_slice() else {
            return Err(Skipped::RuleExpressions);
        };
        let (Some(attribute), Some("eq"), Some(value)) = (
            attr_of(expr, "attribute"),
            attr_of(expr, "operation"),
            attr_of(expr, "value"),
        ) else {
            return Err(Skipped::Expression(expr.name.clone()));
        };
        if expr.name != "expression"
            || attr_of(expr, "value-source").is_some_and(|v| v != "literal")
        {
            return Err(Skipped::Element(expr.name.clone()));
        }
        out.push(if attribute == "#uname" {
            Location {
                node: Some(value.to_string()),
                label: None,
                score: score.to_string(),
                resource_discovery: discovery.clone(),
            }
        } else {
            Location {
                node: None,
                label: Some(format!("{attribute}={value}")),
                score: score.to_string(),
                resource_discovery: discovery.clone(),
            }
        });
    }
    if out.is_empty() {
        return Err(Skipped::Empty);
    }
    Ok((rsc, out))
}

pub(super) fn import_resources(
    el: &Element,
    path: &str,
    out: &mut Imported,
) -> Result<(), XmlError> {
    for r in &el.children {
        if r.name == "bundle" {
            out.bundles.push(bundle_from(r)?);
        } else {
            let id = r
                .attrs
                .iter()
                .find(|(k, _)| k == "id")
                .map(|(_, v)| v.as_str())
                .unwrap_or("?");
            out.warnings.push(format!(
                "ignored <{} id={id:?}> in {path}: only bundles are imported",
                r.name
            ));
        }
    }
    Ok(())
}

pub(super) fn bundle_from(el: &Element) -> Result<Bundle, XmlError> {
    let mut a = Attrs::new(el, "bundle")?;
    let id = a.req("id")?;
    let path = format!("bundle[{id}]");
    a.path = path.clone();
    let mut spec = BundleSpec {
        description: a.opt("description"),
        ..BundleSpec::default()
    };
    a.finish()?;
    let mut seen: Vec<&str> = Vec::new();
    for child in &el.children {
        let name = child.name.as_str();
        let cpath = format!("{path}/{name}");
        if seen.contains(&name) {
            return err(&cpath, format!("more than one <{name}>"));
        }
        seen.push(name);
        match name {
            "docker" => spec.docker = Some(container_from(child, &cpath)?),
            "podman" => spec.podman = Some(container_from(child, &cpath)?),
            "rkt" => return err(&cpath, "rkt is not supported: use docker or podman"),
            "network" => spec.network = Some(network_from(child, &cpath)?),
            "storage" => {
                Attrs::new(child, &cpath)?.finish()?;
                for sm in &child.children {
                    spec.storage_mappings.push(storage_from(sm, &cpath)?);
                }
            }
            "primitive" => spec.primitive = Some(primitive_from(child, &cpath)?),
            "meta_attributes" => {
                (spec.meta_attributes_id, spec.meta_attributes) = nvset_from(child, &cpath, &id)?
            }
            "instance_attributes" => {
                (spec.instance_attributes_id, spec.instance_attributes) =
                    nvset_from(child, &cpath, &id)?
            }
            other => return err(&path, format!("unknown element <{other}>")),
        }
    }
    if spec.docker.is_some() && spec.podman.is_some() {
        return err(&path, "both <docker> and <podman>: choose one");
    }
    Ok(Bundle {
        metadata: Metadata {
            name: id,
            ..Metadata::default()
        },
        ..Bundle::new("", spec)
    })
}

pub(super) fn no_children(el: &Element, path: &str) -> Result<(), XmlError> {
    match el.children.first() {
        Some(c) => err(path, format!("unknown element <{}>", c.name)),
        None => Ok(()),
    }
}

pub(super) fn container_from(el: &Element, path: &str) -> Result<ContainerSpec, XmlError> {
    let mut a = Attrs::new(el, path)?;
    let c = ContainerSpec {
        image: a.req("image")?,
        replicas: a.num("replicas")?,
        replicas_per_host: a.num("replicas-per-host")?,
        promoted_max: a.num("promoted-max")?,
        masters: a.num("masters")?,
        run_command: a.opt("run-command"),
        network: a.opt("network"),
        options: a.opt("options"),
    };
    a.finish()?;
    no_children(el, path)?;
    Ok(c)
}

pub(super) fn network_from(el: &Element, path: &str) -> Result<NetworkSpec, XmlError> {
    let mut a = Attrs::new(el, path)?;
    let mut n = NetworkSpec {
        ip_range_start: a.opt("ip-range-start"),
        host_netmask: a.num("host-netmask")?,
        host_interface: a.opt("host-interface"),
        control_port: a.num("control-port")?,
        add_host: a.boolean("add-host")?,
        port_mappings: Vec::new(),
    };
    a.finish()?;
    for pm in &el.children {
        if pm.name != "port-mapping" {
            return err(path, format!("unknown element <{}>", pm.name));
        }
        let mut a = Attrs::new(pm, &format!("{path}/port-mapping"))?;
        let id = a.req("id")?;
        a.path = format!("{path}/port-mapping[{id}]");
        n.port_mappings.push(PortMapping {
            id,
            port: a.num("port")?,
            internal_port: a.num("internal-port")?,
            range: a.opt("range"),
        });
        let p = a.path.clone();
        a.finish()?;
        no_children(pm, &p)?;
    }
    Ok(n)
}

pub(super) fn storage_from(el: &Element, path: &str) -> Result<StorageMapping, XmlError> {
    if el.name != "storage-mapping" {
        return err(path, format!("unknown element <{}>", el.name));
    }
    let mut a = Attrs::new(el, &format!("{path}/storage-mapping"))?;
    let id = a.req("id")?;
    a.path = format!("{path}/storage-mapping[{id}]");
    let sm = StorageMapping {
        id,
        source_dir: a.opt("source-dir"),
        source_dir_root: a.opt("source-dir-root"),
        target_dir: a.req("target-dir")?,
        options: a.opt("options"),
    };
    let p = a.path.clone();
    a.finish()?;
    no_children(el, &p)?;
    Ok(sm)
}

pub(super) fn primitive_from(el: &Element, path: &str) -> Result<Primitive, XmlError> {
    let mut a = Attrs::new(el, path)?;
    let id = a.req("id")?;
    let path = format!("{path}[{id}]");
    a.path = path.clone();
    let mut p = Primitive {
        class: a.req("class")?,
        provider: a.opt("provider"),
        kind: a.req("type")?,
        description: a.opt("description"),
        id,
        ..Primitive::default()
    };
    a.finish()?;
    let mut seen: Vec<&str> = Vec::new();
    for child in &el.children {
        let name = child.name.as_str();
        let cpath = format!("{path}/{name}");
        if seen.contains(&name) {
            return err(
                &cpath,
                format!("more than one <{name}> set is not supported"),
            );
        }
        seen.push(name);
        match name {
            "instance_attributes" => {
                (p.instance_attributes_id, p.instance_attributes) =
                    nvset_from(child, &cpath, &p.id)?
            }
            "meta_attributes" => {
                (p.meta_attributes_id, p.meta_attributes) = nvset_from(child, &cpath, &p.id)?
            }
            "utilization" => (p.utilization_id, p.utilization) = nvset_from(child, &cpath, &p.id)?,
            "operations" => {
                let mut a = Attrs::new(child, &cpath)?;
                p.operations_id = a.opt("id");
                a.finish()?;
                for op in &child.children {
                    p.operations.push(op_from(op, &cpath, &p.id)?);
                }
            }
            other => return err(&path, format!("unknown element <{other}>")),
        }
    }
    Ok(p)
}

pub(super) fn op_from(el: &Element, path: &str, prim: &str) -> Result<Operation, XmlError> {
    if el.name != "op" {
        return err(path, format!("unknown element <{}>", el.name));
    }
    let mut a = Attrs::new(el, &format!("{path}/op"))?;
    let id = a.req("id")?;
    let path = format!("{path}/op[{id}]");
    a.path = path.clone();
    let mut op = Operation {
        name: a.req("name")?,
        interval: a.req("interval")?,
        timeout: a.opt("timeout"),
        role: a.opt("role"),
        on_fail: a.opt("on-fail"),
        description: a.opt("description"),
        start_delay: a.opt("start-delay"),
        interval_origin: a.opt("interval-origin"),
        enabled: a.boolean("enabled")?,
        record_pending: a.boolean("record-pending")?,
        ..Operation::default()
    };
    a.finish()?;
    op.id = (id != op_id(prim, &op.name, &op.interval)).then_some(id);
    let owner = op
        .id
        .clone()
        .unwrap_or_else(|| op_id(prim, &op.name, &op.interval));
    let mut seen: Vec<&str> = Vec::new();
    for child in &el.children {
        let name = child.name.as_str();
        let cpath = format!("{path}/{name}");
        if seen.contains(&name) {
            return err(
                &cpath,
                format!("more than one <{name}> set is not supported"),
            );
        }
        seen.push(name);
        match name {
            "instance_attributes" => {
                (op.instance_attributes_id, op.instance_attributes) =
                    nvset_from(child, &cpath, &owner)?
            }
            "meta_attributes" => {
                (op.meta_attributes_id, op.meta_attributes) = nvset_from(child, &cpath, &owner)?
            }
            other => return err(&path, format!("unknown element <{other}>")),
        }
    }
    Ok(op)
}

/// An attribute set: its id (None when it is the derived one) and its pairs.
pub(super) fn nvset_from(
    el: &Element,
    path: &str,
    owner: &str,
) -> Result<(Option<String>, Vec<NvPair>), XmlError> {
    let mut a = Attrs::new(el, path)?;
    let set_id = a.req("id")?;
    if a.opt("score").is_some() {
        // A score only orders several sets; berth keeps one set per kind.
        return err(
            path,
            "score on an attribute set is not supported (one set per kind)",
        );
    }
    a.finish()?;
    let derived = set_id_for(owner, &el.name);
    let mut pairs = Vec::new();
    for nv in &el.children {
        match nv.name.as_str() {
            "nvpair" => {}
            "rule" => {
                return err(
                    path,
                    "rules in attribute sets are not supported: berth applies values unconditionally",
                );
            }
            other => return err(path, format!("unknown element <{other}>")),
        }
        let mut a = Attrs::new(nv, &format!("{path}/nvpair"))?;
        let name = a.req("name")?;
        a.path = format!("{path}/nvpair[{name}]");
        let id = a.opt("id");
        let value = a.opt("value");
        a.finish()?;
        let id = id.filter(|i| *i != nvpair_id(&set_id, &name));
        pairs.push(NvPair { id, name, value });
    }
    Ok(((set_id != derived).then_some(set_id), pairs))
}
