//! `cibadmin -Q [--xpath X]` inside a replica: the part of a CIB its agent may see, built
//! from what the node agent sends (the attributes of its bundle's nodes, cluster properties,
//! the members): `crm_config` properties, `nodes` with their permanent attributes, and a
//! `status` section of `node_state` elements (`crmd="online"` for a host online or a replica
//! running) holding the transient attributes. rabbitmq-cluster reads its peers from it with
//! `//node_state[@crmd='online']//nvpair[@name='rmq-node-attr-…']`, then greps and cuts the
//! value out of each line, so every element is one line, `value` last.
//!
//! The XPath understood is the subset agents use: steps joined by `/` and `//`, each a name
//! or `*`, with predicates `[@a='v']`, `[@a="v"]`, `[@a]`, joined by `and`/`or`.

use std::fmt::Write;

use crate::model::attributes::{AttrKey, Members, Section};

/// One element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Elem>,
}

impl Elem {
    fn new(name: &str, attrs: &[(&str, &str)]) -> Elem {
        Elem {
            name: name.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            children: Vec::new(),
        }
    }

    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// The element as XML, one element a line, indented by `depth`.
    pub fn write(&self, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        let _ = write!(out, "{pad}<{}", self.name);
        for (k, v) in &self.attrs {
            let _ = write!(out, " {k}=\"{}\"", super::crm_mon::esc(v));
        }
        if self.children.is_empty() {
            let _ = writeln!(out, "/>");
            return;
        }
        let _ = writeln!(out, ">");
        for c in &self.children {
            c.write(out, depth + 1);
        }
        let _ = writeln!(out, "{pad}</{}>", self.name);
    }
}

/// `nvpair`s of one set, ids derived as Pacemaker derives them.
fn set(name: &str, id: &str, attrs: &[(&AttrKey, &String)]) -> Elem {
    let mut s = Elem::new(name, &[("id", id)]);
    for (k, v) in attrs {
        s.children.push(Elem::new(
            "nvpair",
            &[
                ("id", &format!("{id}-{}", k.name)),
                ("name", &k.name),
                ("value", v),
            ],
        ));
    }
    s
}

/// The CIB a replica sees.
pub fn cib(attrs: &[(AttrKey, String)], m: &Members) -> Elem {
    // Every node: the hosts online, then the bundle's replicas (guest nodes).
    let nodes: Vec<(String, &str, bool)> = m
        .hosts
        .iter()
        .map(|h| (h.clone(), "member", true))
        .chain(
            m.replicas
                .iter()
                .map(|g| (g.name.clone(), "remote", g.running)),
        )
        .collect();
    let mut node_list = Elem::new("nodes", &[]);
    let mut status = Elem::new("status", &[]);
    for (name, kind, online) in &nodes {
        let standby = *kind == "member" && m.standby.contains(name);
        node_list.children.push(node(attrs, name, kind, standby));
        status.children.push(node_state(attrs, name, *online));
    }
    let mut configuration = Elem::new("configuration", &[]);
    configuration.children = vec![
        crm_config(attrs),
        node_list,
        Elem::new("resources", &[]),
        Elem::new("constraints", &[]),
    ];
    let mut root = Elem::new(
        "cib",
        &[
            ("crm_feature_set", super::supervisor::CRM_FEATURE_SET),
            ("validate-with", "pacemaker-3.9"),
            ("epoch", "1"),
            ("num_updates", "0"),
            ("admin_epoch", "0"),
        ],
    );
    root.children = vec![configuration, status];
    root
}

/// The attributes of one section and owner.
fn attrs_of<'a>(
    attrs: &'a [(AttrKey, String)],
    section: Section,
    owner: &str,
) -> Vec<(&'a AttrKey, &'a String)> {
    attrs
        .iter()
        .filter(|(k, _)| k.section == section && k.owner == owner)
        .map(|(k, v)| (k, v))
        .collect()
}

/// `crm_config`: one `cluster_property_set` per set of cluster properties.
fn crm_config(attrs: &[(AttrKey, String)]) -> Elem {
    let mut crm_config = Elem::new("crm_config", &[]);
    let mut sets: Vec<&str> = attrs
        .iter()
        .filter(|(k, _)| k.section == Section::CrmConfig)
        .map(|(k, _)| k.owner.as_str())
        .collect();
    sets.dedup();
    for s in sets {
        let props = attrs_of(attrs, Section::CrmConfig, s);
        crm_config
            .children
            .push(set("cluster_property_set", s, &props));
    }
    crm_config
}

/// A node of the configuration, with its permanent attributes (a host in standby has
/// `standby=on` among them, as Pacemaker keeps it).
fn node(attrs: &[(AttrKey, String)], name: &str, kind: &str, standby: bool) -> Elem {
    let mut n = Elem::new("node", &[("id", name), ("uname", name), ("type", kind)]);
    let mut permanent = attrs_of(attrs, Section::Nodes, name);
    let on = (
        AttrKey {
            section: Section::Nodes,
            owner: name.to_string(),
            name: "standby".to_string(),
        },
        "on".to_string(),
    );
    if standby && !permanent.iter().any(|(k, _)| k.name == "standby") {
        permanent.push((&on.0, &on.1));
    }
    if !permanent.is_empty() {
        n.children.push(set(
            "instance_attributes",
            &format!("nodes-{name}"),
            &permanent,
        ));
    }
    n
}

/// A node's `node_state` in the status section, with its transient attributes.
fn node_state(attrs: &[(AttrKey, String)], name: &str, online: bool) -> Elem {
    let mut state = Elem::new(
        "node_state",
        &[
            ("id", name),
            ("uname", name),
            ("in_ccm", if online { "true" } else { "false" }),
            ("crmd", if online { "online" } else { "offline" }),
            ("join", if online { "member" } else { "down" }),
            ("expected", if online { "member" } else { "down" }),
        ],
    );
    let transient = attrs_of(attrs, Section::Status, name);
    if !transient.is_empty() {
        let mut t = Elem::new("transient_attributes", &[("id", name)]);
        t.children.push(set(
            "instance_attributes",
            &format!("status-{name}"),
            &transient,
        ));
        state.children.push(t);
    }
    state
}

/// One location step.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    /// `//` before it (any depth), else `/` (a child).
    descendant: bool,
    name: String,
    /// Alternatives (`or`) of conjunctions (`and`) of attribute tests.
    predicate: Vec<Vec<(String, Option<String>)>>,
}

/// An XPath outside the subset berth reads, and what in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{xpath:?}: {what}")]
pub struct XPathError {
    pub xpath: String,
    pub what: Unsupported,
}

/// What in an XPath berth does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("only absolute paths are supported")]
    Relative,
    #[error("step {0:?} is not supported")]
    Step(String),
    #[error("an unclosed predicate")]
    Unclosed,
    #[error("predicate {0:?} is not supported")]
    Predicate(String),
}

/// Parses the XPath subset; why not, for anything else.
fn parse(xpath: &str) -> Result<Vec<Step>, XPathError> {
    let unsupported = |what: Unsupported| XPathError {
        xpath: xpath.to_string(),
        what,
    };
    let mut steps = Vec::new();
    let mut rest = xpath.trim();
    if !rest.starts_with('/') {
        return Err(unsupported(Unsupported::Relative));
    }
    while !rest.is_empty() {
        let descendant = rest.starts_with("//");
        rest = rest.trim_start_matches('/');
        let end = rest.find(['/', '[']).unwrap_or(rest.len());
        let name = rest[..end].trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c == '*' || c.is_ascii_alphanumeric() || "_-:".contains(c))
        {
            return Err(unsupported(Unsupported::Step(name)));
        }
        rest = &rest[end..];
        let mut predicate = Vec::new();
        while let Some(p) = rest.strip_prefix('[') {
            let close = p
                .find(']')
                .ok_or_else(|| unsupported(Unsupported::Unclosed))?;
            let body = &p[..close];
            for alt in body.split(" or ") {
                let mut all = Vec::new();
                for test in alt.split(" and ") {
                    all.push(
                        attr_test(test.trim())
                            .ok_or_else(|| unsupported(Unsupported::Predicate(test.to_string())))?,
                    );
                }
                predicate.push(all);
            }
            rest = &p[close + 1..];
        }
        steps.push(Step {
            descendant,
            name,
            predicate,
        });
    }
    Ok(steps)
}

/// `@a='v'`, `@a="v"` or `@a`.
fn attr_test(t: &str) -> Option<(String, Option<String>)> {
    let t = t.strip_prefix('@')?;
    match t.split_once('=') {
        None => Some((t.trim().to_string(), None)),
        Some((a, v)) => {
            let v = v.trim();
            let unquoted = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))?;
            Some((a.trim().to_string(), Some(unquoted.to_string())))
        }
    }
}

fn step_matches(s: &Step, e: &Elem) -> bool {
    (s.name == "*" || s.name == e.name)
        && (s.predicate.is_empty()
            || s.predicate.iter().any(|all| {
                all.iter().all(|(a, v)| match (e.attr(a), v) {
                    (Some(have), Some(want)) => have == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
            }))
}

/// The elements of `root` that `xpath` selects, in document order.
pub fn select<'e>(root: &'e Elem, xpath: &str) -> Result<Vec<&'e Elem>, XPathError> {
    let steps = parse(xpath)?;
    let mut current: Vec<&Elem> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let mut next = Vec::new();
        if i == 0 {
            // From the document node, whose one child is the root element.
            if step_matches(s, root) {
                next.push(root);
            }
            if s.descendant {
                collect(root, s, &mut next);
            }
        } else {
            for c in &current {
                collect(c, s, &mut next);
            }
        }
        current = next;
    }
    Ok(current)
}

fn collect<'e>(parent: &'e Elem, s: &Step, out: &mut Vec<&'e Elem>) {
    for c in &parent.children {
        if step_matches(s, c) && !out.iter().any(|x| std::ptr::eq(*x, c)) {
            out.push(c);
        }
        if s.descendant {
            collect(c, s, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attributes::Guest;

    fn members() -> Members {
        Members {
            bundle: "rabbitmq-bundle".into(),
            engine: "podman".into(),
            hosts: vec!["controller-0".into(), "controller-1".into()],
            replicas: (0..3)
                .map(|i| Guest {
                    name: format!("rabbitmq-bundle-{i}"),
                    host: format!("controller-{i}"),
                    running: i != 2,
                    promoted: false,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn attrs() -> Vec<(AttrKey, String)> {
        (0..3)
            .map(|i| {
                (
                    AttrKey {
                        section: Section::Status,
                        owner: format!("rabbitmq-bundle-{i}"),
                        name: "rmq-node-attr-rabbitmq".into(),
                    },
                    format!("rabbit@rabbitmq-bundle-{i}"),
                )
            })
            .collect()
    }

    #[test]
    fn rabbitmqs_queries_find_the_online_peers_values_one_a_line() {
        let c = cib(&attrs(), &members());
        let online = select(
            &c,
            "//node_state[@crmd='online']//nvpair[@name='rmq-node-attr-rabbitmq']",
        )
        .unwrap();
        let mut out = String::new();
        for e in &online {
            e.write(&mut out, 0);
        }
        // What the agent does with it: grep the name, cut the value out of each line.
        let cut = regex::Regex::new(r#"^.*value=.(.*)".*$"#).unwrap();
        let values: Vec<String> = out
            .lines()
            .filter(|l| l.contains("rmq-node-attr-rabbitmq"))
            .filter_map(|l| Some(cut.captures(l)?[1].to_string()))
            .collect();
        assert_eq!(
            values,
            ["rabbit@rabbitmq-bundle-0", "rabbit@rabbitmq-bundle-1"]
        );
        let all = select(&c, "//node_state//nvpair[@name=\"rmq-node-attr-rabbitmq\"]").unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            select(&c, "/cib/configuration/nodes/node[@type='member']")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            select(&c, "//node[@type='remote' or @type='member']")
                .unwrap()
                .len(),
            5
        );
        assert_eq!(select(&c, "//node_state[@crmd]").unwrap().len(), 5);
        assert!(select(&c, "//nothing").unwrap().is_empty());
    }

    #[test]
    fn a_host_in_standby_carries_pacemakers_standby_node_attribute() {
        let mut m = members();
        m.standby = vec!["controller-1".into()];
        let c = cib(&[], &m);
        let on = select(
            &c,
            "//nodes/node[@uname='controller-1']//nvpair[@name='standby' and @value='on']",
        )
        .unwrap();
        assert_eq!(on.len(), 1);
        assert!(
            select(
                &c,
                "//nodes/node[@uname='controller-0']//nvpair[@name='standby']"
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn xpath_beyond_the_subset_is_refused_with_the_reason() {
        let c = cib(&[], &members());
        for bad in [
            "node",
            "//node[position()=1]",
            "//a[@b='c'",
            "//a/@b",
            "//a[text()='x']",
        ] {
            assert!(select(&c, bad).is_err(), "{bad}");
        }
    }
}
