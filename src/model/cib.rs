//! Pacemaker XML: a `<bundle>` fragment or a whole `<cib>` in, `<bundle>`s or a `<cib>` out.
//!
//! The XML is read with quick-xml into a small element tree, then mapped one element to one
//! struct of the model, refusing any attribute or element Pacemaker's bundle schema does not
//! have (so a typo is never silently dropped). Ids Pacemaker requires but a manifest leaves
//! out are derived on export the way pcs derives them, and recognised on import so that they
//! do not clutter the manifest; every other id survives XML → manifest → XML.

use std::borrow::Cow;
use std::fmt;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, Event};
use quick_xml::name::QName;
use quick_xml::{Reader, Writer, XmlVersion};

use super::validate::parse_bool;
use super::{
    Bundle, BundleSpec, ContainerSpec, Metadata, NetworkSpec, NvPair, Operation, PortMapping,
    Primitive, StorageMapping,
};

/// An XML document berth cannot read as bundles: where, and why. Not retryable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// Element path, `bundle[httpd-bundle]/network/port-mapping[httpd-port]`.
    pub path: String,
    pub reason: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "xml: {}", self.reason)
        } else {
            write!(f, "xml {}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for XmlError {}

fn err<T>(path: &str, reason: impl Into<String>) -> Result<T, XmlError> {
    Err(XmlError {
        path: path.to_string(),
        reason: reason.into(),
    })
}

/// A parsed element: just what the bundle schema needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    children: Vec<Element>,
    /// Non-whitespace text directly inside (none of the bundle schema's elements has any).
    text: bool,
}

/// How deep elements may nest in an imported document (a CIB needs fewer than ten).
const MAX_DEPTH: usize = 64;

fn parse_tree(text: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let ev = reader.read_event().map_err(|e| XmlError {
            path: String::new(),
            reason: format!("at byte {}: {e}", reader.error_position()),
        })?;
        match ev {
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                let _ = s;
                return err("", "more than one root element");
            }
            Event::Start(s) => {
                // Pacemaker's bundle schema nests a few levels; a deep document is refused
                // before it can exhaust the stack (when the tree is dropped, if not before).
                if stack.len() >= MAX_DEPTH {
                    return err("", format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(element(&s)?)
            }
            Event::Empty(s) => {
                let el = element(&s)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().expect("the reader checks that tags balance");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut()
                    && !t.xml10_content().trim().is_empty()
                {
                    top.text = true;
                }
            }
            Event::CData(_) | Event::GeneralRef(_) => {
                if let Some(top) = stack.last_mut() {
                    top.text = true;
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return err("", format!("unclosed element <{}>", stack[0].name));
    }
    root.ok_or_else(|| XmlError {
        path: String::new(),
        reason: "no element found".into(),
    })
}

/// One start (or empty) tag: its name and attributes (values normalized).
pub(crate) fn element(s: &BytesStart<'_>) -> Result<Element, XmlError> {
    let name = s.name().into_inner().to_string();
    let mut attrs = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| XmlError {
            path: name.clone(),
            reason: format!("bad attribute: {e}"),
        })?;
        let key = a.key.into_inner().to_string();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| XmlError {
                path: name.clone(),
                reason: format!("attribute {key}: {e}"),
            })?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

/// Takes attributes by name and refuses, at `finish`, any that nobody took.
struct Attrs<'a> {
    el: &'a Element,
    path: String,
    taken: Vec<bool>,
}

impl<'a> Attrs<'a> {
    fn new(el: &'a Element, path: &str) -> Result<Self, XmlError> {
        if el.text {
            return err(
                path,
                format!("<{}> holds text, which the schema does not allow", el.name),
            );
        }
        Ok(Attrs {
            el,
            path: path.to_string(),
            taken: vec![false; el.attrs.len()],
        })
    }

    fn opt(&mut self, name: &str) -> Option<String> {
        let i = self.el.attrs.iter().position(|(k, _)| k == name)?;
        self.taken[i] = true;
        Some(self.el.attrs[i].1.clone())
    }

    fn req(&mut self, name: &str) -> Result<String, XmlError> {
        self.opt(name).ok_or_else(|| XmlError {
            path: self.path.clone(),
            reason: format!("attribute {name} is required"),
        })
    }

    fn num<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>, XmlError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| XmlError {
                path: self.path.clone(),
                reason: format!("attribute {name}: {v:?} is not a number in range"),
            }),
        }
    }

    fn boolean(&mut self, name: &str) -> Result<Option<bool>, XmlError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => parse_bool(&v).map(Some).ok_or_else(|| XmlError {
                path: self.path.clone(),
                reason: format!("attribute {name}: {v:?} is not a boolean"),
            }),
        }
    }

    /// Refuses what was not taken; for `id-ref`, says why (references are not resolved).
    fn finish(self) -> Result<(), XmlError> {
        for (i, (k, _)) in self.el.attrs.iter().enumerate() {
            if !self.taken[i] {
                let why = match k.as_str() {
                    "id-ref" => {
                        "id-ref references are not supported: write the element out".to_string()
                    }
                    "template" => {
                        "resource templates are not supported: write the primitive out".to_string()
                    }
                    _ => format!("unknown attribute {k}"),
                };
                return err(&self.path, why);
            }
        }
        Ok(())
    }
}

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
            for child in &root.children {
                match child.name.as_str() {
                    "configuration" => {
                        for section in &child.children {
                            if section.name == "resources" {
                                import_resources(section, "cib/configuration/resources", &mut out)?;
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

fn import_resources(el: &Element, path: &str, out: &mut Imported) -> Result<(), XmlError> {
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

fn bundle_from(el: &Element) -> Result<Bundle, XmlError> {
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

fn no_children(el: &Element, path: &str) -> Result<(), XmlError> {
    match el.children.first() {
        Some(c) => err(path, format!("unknown element <{}>", c.name)),
        None => Ok(()),
    }
}

fn container_from(el: &Element, path: &str) -> Result<ContainerSpec, XmlError> {
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

fn network_from(el: &Element, path: &str) -> Result<NetworkSpec, XmlError> {
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

fn storage_from(el: &Element, path: &str) -> Result<StorageMapping, XmlError> {
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

fn primitive_from(el: &Element, path: &str) -> Result<Primitive, XmlError> {
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

fn op_from(el: &Element, path: &str, prim: &str) -> Result<Operation, XmlError> {
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
fn nvset_from(
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

/// The id pcs gives an attribute set: `<owner>-<element>` (`httpd-apache-instance_attributes`).
pub fn set_id_for(owner: &str, element: &str) -> String {
    format!("{owner}-{element}")
}

/// The id pcs gives a pair: `<set id>-<name>`.
pub fn nvpair_id(set_id: &str, name: &str) -> String {
    format!("{set_id}-{name}")
}

/// The id pcs gives an operation: `<primitive>-<name>-interval-<interval>`.
pub fn op_id(prim: &str, name: &str, interval: &str) -> String {
    format!("{prim}-{name}-interval-{interval}")
}

// ---- export ----------------------------------------------------------------------------

struct Out {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    children: Vec<Out>,
}

impl Out {
    fn new(name: &'static str) -> Self {
        Out {
            name,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }
    fn attr(mut self, k: &'static str, v: impl ToString) -> Self {
        self.attrs.push((k, v.to_string()));
        self
    }
    fn opt(self, k: &'static str, v: Option<impl ToString>) -> Self {
        match v {
            Some(v) => self.attr(k, v),
            None => self,
        }
    }
    fn write(&self, w: &mut Writer<Vec<u8>>) {
        let start =
            BytesStart::new(self.name).with_attributes(self.attrs.iter().map(|(k, v)| Attribute {
                key: QName(k),
                value: Cow::Owned(escape_attr(v)),
            }));
        // Writing to a Vec cannot fail.
        if self.children.is_empty() {
            w.write_event(Event::Empty(start)).expect("write to memory");
        } else {
            w.write_event(Event::Start(start)).expect("write to memory");
            for c in &self.children {
                c.write(w);
            }
            w.write_event(Event::End(BytesEnd::new(self.name)))
                .expect("write to memory");
        }
    }
}

/// Escapes an attribute value so that it reads back unchanged: besides the five markup
/// characters, tab, newline and carriage return become character references, because an XML
/// parser turns literal ones into spaces (attribute-value normalization).
fn escape_attr(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

fn nvset_out(
    element: &'static str,
    owner: &str,
    id: &Option<String>,
    pairs: &[NvPair],
) -> Option<Out> {
    if pairs.is_empty() && id.is_none() {
        return None;
    }
    let set_id = id.clone().unwrap_or_else(|| set_id_for(owner, element));
    let mut set = Out::new(element).attr("id", &set_id);
    for nv in pairs {
        let nid = nv
            .id
            .clone()
            .unwrap_or_else(|| nvpair_id(&set_id, &nv.name));
        set.children.push(
            Out::new("nvpair")
                .attr("id", nid)
                .attr("name", &nv.name)
                .opt("value", nv.value.as_ref()),
        );
    }
    Some(set)
}

fn bundle_out(b: &Bundle) -> Out {
    let s = &b.spec;
    let id = b.name();
    let mut el = Out::new("bundle")
        .attr("id", id)
        .opt("description", s.description.as_ref());
    el.children.extend(nvset_out(
        "meta_attributes",
        id,
        &s.meta_attributes_id,
        &s.meta_attributes,
    ));
    el.children.extend(nvset_out(
        "instance_attributes",
        id,
        &s.instance_attributes_id,
        &s.instance_attributes,
    ));
    let (engine, c) = s.container();
    el.children.push(
        Out::new(if engine == super::Engine::Podman {
            "podman"
        } else {
            "docker"
        })
        .attr("image", &c.image)
        .opt("replicas", c.replicas)
        .opt("replicas-per-host", c.replicas_per_host)
        .opt("promoted-max", c.promoted_max)
        .opt("masters", c.masters)
        .opt("run-command", c.run_command.as_ref())
        .opt("network", c.network.as_ref())
        .opt("options", c.options.as_ref()),
    );
    if let Some(n) = &s.network {
        let mut net = Out::new("network")
            .opt("ip-range-start", n.ip_range_start.as_ref())
            .opt("control-port", n.control_port)
            .opt("host-interface", n.host_interface.as_ref())
            .opt("host-netmask", n.host_netmask)
            .opt("add-host", n.add_host);
        for pm in &n.port_mappings {
            net.children.push(
                Out::new("port-mapping")
                    .attr("id", &pm.id)
                    .opt("port", pm.port)
                    .opt("internal-port", pm.internal_port)
                    .opt("range", pm.range.as_ref()),
            );
        }
        el.children.push(net);
    }
    if !s.storage_mappings.is_empty() {
        let mut st = Out::new("storage");
        for sm in &s.storage_mappings {
            st.children.push(
                Out::new("storage-mapping")
                    .attr("id", &sm.id)
                    .opt("source-dir", sm.source_dir.as_ref())
                    .opt("source-dir-root", sm.source_dir_root.as_ref())
                    .attr("target-dir", &sm.target_dir)
                    .opt("options", sm.options.as_ref()),
            );
        }
        el.children.push(st);
    }
    if let Some(p) = &s.primitive {
        el.children.push(primitive_out(p));
    }
    el
}

fn primitive_out(p: &Primitive) -> Out {
    let mut el = Out::new("primitive")
        .attr("id", &p.id)
        .attr("class", &p.class)
        .opt("provider", p.provider.as_ref())
        .attr("type", &p.kind)
        .opt("description", p.description.as_ref());
    el.children.extend(nvset_out(
        "instance_attributes",
        &p.id,
        &p.instance_attributes_id,
        &p.instance_attributes,
    ));
    el.children.extend(nvset_out(
        "meta_attributes",
        &p.id,
        &p.meta_attributes_id,
        &p.meta_attributes,
    ));
    el.children.extend(nvset_out(
        "utilization",
        &p.id,
        &p.utilization_id,
        &p.utilization,
    ));
    if !p.operations.is_empty() || p.operations_id.is_some() {
        let mut ops = Out::new("operations").opt("id", p.operations_id.as_ref());
        for op in &p.operations {
            let oid = op
                .id
                .clone()
                .unwrap_or_else(|| op_id(&p.id, &op.name, &op.interval));
            let mut o = Out::new("op")
                .attr("id", &oid)
                .attr("name", &op.name)
                .attr("interval", &op.interval)
                .opt("timeout", op.timeout.as_ref())
                .opt("role", op.role.as_ref())
                .opt("on-fail", op.on_fail.as_ref())
                .opt("description", op.description.as_ref())
                .opt("start-delay", op.start_delay.as_ref())
                .opt("interval-origin", op.interval_origin.as_ref())
                .opt("enabled", op.enabled)
                .opt("record-pending", op.record_pending);
            o.children.extend(nvset_out(
                "instance_attributes",
                &oid,
                &op.instance_attributes_id,
                &op.instance_attributes,
            ));
            o.children.extend(nvset_out(
                "meta_attributes",
                &oid,
                &op.meta_attributes_id,
                &op.meta_attributes,
            ));
            ops.children.push(o);
        }
        el.children.push(ops);
    }
    el
}

fn render(root: &Out, decl: bool) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    if decl {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
            .expect("write to memory");
    }
    root.write(&mut w);
    let mut s = String::from_utf8(w.into_inner()).expect("quick-xml writes UTF-8");
    s.push('\n');
    s
}

/// One bundle as a Pacemaker `<bundle>` fragment.
pub fn export_bundle(b: &Bundle) -> String {
    render(&bundle_out(b), false)
}

/// Bundles as a `<cib>` document holding them in its resources section (and empty
/// crm_config, nodes and constraints sections, so that cibadmin accepts it).
pub fn export_cib(bundles: &[Bundle]) -> String {
    let mut resources = Out::new("resources");
    resources.children.extend(bundles.iter().map(bundle_out));
    let mut config = Out::new("configuration");
    config.children = vec![
        Out::new("crm_config"),
        Out::new("nodes"),
        resources,
        Out::new("constraints"),
    ];
    let mut cib = Out::new("cib")
        .attr("validate-with", "pacemaker-3.10")
        .attr("epoch", 1)
        .attr("num_updates", 0)
        .attr("admin_epoch", 0);
    cib.children = vec![config, Out::new("status")];
    render(&cib, true)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::seed;
    use super::*;

    /// The seed example, exactly as DESIGN.md gives it.
    pub const SEED_XML: &str = r#"<bundle id="httpd-bundle">
  <docker image="pcmk:httpd" replicas="3"/>
  <network ip-range-start="192.168.24.112" host-netmask="24">
    <port-mapping id="httpd-port" port="80"/>
  </network>
  <storage>
    <storage-mapping id="httpd-root" source-dir="/srv/www" target-dir="/var/www/html" options="rw"/>
    <storage-mapping id="httpd-logs" source-dir-root="/var/log/pacemaker/bundles" target-dir="/etc/httpd/logs" options="rw"/>
  </storage>
  <primitive id="httpd-apache" class="ocf" provider="heartbeat" type="apache"/>
</bundle>"#;

    #[test]
    fn seed_xml_imports_as_the_seed() {
        let got = import(SEED_XML).unwrap();
        assert_eq!(got.bundles, vec![seed()]);
        assert!(got.warnings.is_empty());
    }

    #[test]
    fn cib_imports_bundles_and_warns_about_the_rest() {
        let cib = format!(
            r#"<cib validate-with="pacemaker-3.10" epoch="1" num_updates="0" admin_epoch="0">
  <configuration><crm_config/><nodes><node id="1" uname="a"/></nodes>
    <resources><primitive id="vip" class="ocf" provider="heartbeat" type="IPaddr2"/>{SEED_XML}</resources>
    <constraints/></configuration><status/></cib>"#
        );
        let got = import(&cib).unwrap();
        assert_eq!(got.bundles, vec![seed()]);
        assert_eq!(got.warnings.len(), 2, "{:?}", got.warnings);
        assert!(got.warnings.iter().any(|w| w.contains("vip")));
        assert!(got.warnings.iter().any(|w| w.contains("<nodes>")));
    }

    #[test]
    fn export_then_import_is_identity() {
        let mut b = seed();
        let p = b.spec.primitive.as_mut().unwrap();
        p.instance_attributes.push(NvPair {
            id: Some("custom-id".into()),
            name: "configfile".into(),
            value: Some("/etc/httpd/conf/httpd.conf".into()),
        });
        p.operations.push(Operation {
            name: "monitor".into(),
            interval: "10s".into(),
            timeout: Some("20s".into()),
            on_fail: Some("restart".into()),
            ..Default::default()
        });
        b.spec.meta_attributes.push(NvPair {
            id: None,
            name: "target-role".into(),
            value: Some("Started".into()),
        });
        let xml = export_bundle(&b);
        assert!(
            xml.contains(r#"id="httpd-apache-monitor-interval-10s""#),
            "{xml}"
        );
        assert_eq!(import(&xml).unwrap().bundles, vec![b.clone()]);
        let cib = export_cib(std::slice::from_ref(&b));
        assert_eq!(import(&cib).unwrap().bundles, vec![b]);
    }

    #[test]
    fn values_needing_escapes_survive_export() {
        let mut b = seed();
        b.spec.docker.as_mut().unwrap().run_command = Some("sh -c 'a && b'\n\t<x> \"q\"\r".into());
        let xml = export_bundle(&b);
        assert!(xml.contains("&#10;"), "{xml}");
        assert_eq!(import(&xml).unwrap().bundles, vec![b]);
    }

    #[test]
    fn unknown_attribute_is_refused_with_its_path() {
        let bad = SEED_XML.replace(r#"port="80""#, r#"prot="80""#);
        let e = import(&bad).unwrap_err();
        assert_eq!(
            e.path,
            "bundle[httpd-bundle]/network/port-mapping[httpd-port]"
        );
        assert_eq!(e.reason, "unknown attribute prot");
    }

    #[test]
    fn unknown_element_and_bad_numbers_are_refused() {
        let e = import(&SEED_XML.replace("<storage>", "<storage><volume/>")).unwrap_err();
        assert!(e.reason.contains("<volume>"), "{e}");
        let e = import(&SEED_XML.replace(r#"replicas="3""#, r#"replicas="-3""#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"xml bundle[httpd-bundle]/docker: attribute replicas: "-3" is not a number in range"#
        );
        let e = import("<bundle id='x'><docker image='i'/>").unwrap_err();
        assert!(
            e.reason.contains("unclosed") || e.reason.contains("byte"),
            "{e}"
        );
    }
}
