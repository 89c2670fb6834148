//! Export: bundles as Pacemaker XML, ids derived as pcs derives them.

use super::*;

pub(super) struct Out {
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
pub(super) fn escape_attr(v: &str) -> String {
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

pub(super) fn nvset_out(
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

pub(super) fn bundle_out(b: &Bundle) -> Out {
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
        Out::new(if engine == crate::model::Engine::Podman {
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

pub(super) fn primitive_out(p: &Primitive) -> Out {
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

pub(super) fn render(root: &Out, decl: bool) -> String {
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

/// A bundle's locations as `rsc_location` constraints: a node and a score, or a rule on the
/// node attribute a label names.
fn locations_out(b: &Bundle) -> Vec<Out> {
    let name = b.name();
    b.spec
        .locations
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let id = format!("location-{name}-{i}");
            let mut c = Out::new("rsc_location").attr("id", &id).attr("rsc", name);
            if let Some(d) = &l.resource_discovery {
                c = c.attr("resource-discovery", d);
            }
            match (&l.node, &l.label) {
                (Some(node), _) => c.attr("node", node).attr("score", &l.score),
                (None, label) => {
                    let (k, v) = label
                        .as_deref()
                        .and_then(|l| l.split_once('='))
                        .unwrap_or_default();
                    let expr = Out::new("expression")
                        .attr("id", format!("{id}-rule-expr"))
                        .attr("attribute", k)
                        .attr("operation", "eq")
                        .attr("value", v);
                    let mut rule = Out::new("rule")
                        .attr("id", format!("{id}-rule"))
                        .attr("score", &l.score);
                    rule.children.push(expr);
                    let mut c = c;
                    c.children.push(rule);
                    c
                }
            }
        })
        .collect()
}

/// A bundle's colocations and orders as `rsc_colocation` (it is `rsc`) and `rsc_order` (it
/// is `then`) constraints, under the ids they were imported with (or derived ones).
fn pairs_out(b: &Bundle) -> Vec<Out> {
    let name = b.name();
    let colocations = b.spec.colocations.iter().enumerate().map(|(i, c)| {
        let id =
            c.id.clone()
                .unwrap_or_else(|| format!("colocation-{name}-{i}"));
        Out::new("rsc_colocation")
            .attr("id", id)
            .attr("rsc", name)
            .attr("with-rsc", &c.with)
            .attr("score", &c.score)
            .opt("rsc-role", c.role.as_ref())
            .opt("with-rsc-role", c.with_role.as_ref())
    });
    let orders = b.spec.orders.iter().enumerate().map(|(i, o)| {
        let id = o.id.clone().unwrap_or_else(|| format!("order-{name}-{i}"));
        Out::new("rsc_order")
            .attr("id", id)
            .attr("first", &o.first)
            .opt("first-action", o.first_action.as_ref())
            .attr("then", name)
            .opt("then-action", o.then_action.as_ref())
            .opt("kind", o.kind.as_ref())
            .opt("symmetrical", o.symmetrical)
    });
    colocations.chain(orders).collect()
}

/// One bundle as a Pacemaker `<bundle>` fragment (its locations are constraints, outside
/// it: [`export_cib`] writes them).
pub fn export_bundle(b: &Bundle) -> String {
    render(&bundle_out(b), false)
}

/// Bundles as a `<cib>` document holding them in its resources section (and empty
/// crm_config, nodes and constraints sections, so that cibadmin accepts it).
pub fn export_cib(bundles: &[Bundle]) -> String {
    let mut resources = Out::new("resources");
    resources.children.extend(bundles.iter().map(bundle_out));
    let mut constraints = Out::new("constraints");
    constraints
        .children
        .extend(bundles.iter().flat_map(locations_out));
    constraints
        .children
        .extend(bundles.iter().flat_map(pairs_out));
    let mut config = Out::new("configuration");
    config.children = vec![
        Out::new("crm_config"),
        Out::new("nodes"),
        resources,
        constraints,
    ];
    let mut cib = Out::new("cib")
        .attr("validate-with", "pacemaker-3.10")
        .attr("epoch", 1)
        .attr("num_updates", 0)
        .attr("admin_epoch", 0);
    cib.children = vec![config, Out::new("status")];
    render(&cib, true)
}
