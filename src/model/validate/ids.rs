//! XML ids: present where Pacemaker requires them, well formed, and unique in a bundle.

use super::*;

/// XML IDs (NCName) present and unique across the bundle, the bundle's own name included.
pub(super) fn check_ids(c: &mut Check, b: &Bundle) {
    let mut ids = Ids {
        c,
        seen: HashMap::new(),
    };
    let s = &b.spec;
    if !b.metadata.name.is_empty() {
        ids.add("metadata.name".into(), &b.metadata.name);
    }
    for (i, pm) in s.port_mappings().iter().enumerate() {
        ids.add(format!("spec.network.portMappings[{i}].id"), &pm.id);
    }
    for (i, sm) in s.storage_mappings.iter().enumerate() {
        ids.add(format!("spec.storageMappings[{i}].id"), &sm.id);
    }
    ids.set(
        "spec.metaAttributes",
        &s.meta_attributes_id,
        &s.meta_attributes,
    );
    ids.set(
        "spec.instanceAttributes",
        &s.instance_attributes_id,
        &s.instance_attributes,
    );
    if let Some(prim) = &s.primitive {
        ids.primitive(prim);
    }
}

/// The ids seen so far, by the field that has each.
struct Ids<'c> {
    c: &'c mut Check,
    seen: HashMap<String, String>,
}

impl Ids<'_> {
    /// One id, at `path`: well formed, and not seen before.
    fn add(&mut self, path: String, id: &str) {
        if !is_xml_id(id) {
            self.c.fail(
                path.clone(),
                format!("{id:?}: not an XML id (a letter or '_' first, then letters, digits, '.', '-', '_')"),
            );
        }
        if let Some(first) = self.seen.insert(id.to_string(), path.clone()) {
            self.c.fail(
                path,
                format!("{id:?}: duplicate id, already used by {first}"),
            );
        }
    }

    /// An attribute set's id (`<p>Id`) and its pairs' ids.
    fn set(&mut self, p: &str, set_id: &Option<String>, pairs: &[NvPair]) {
        if let Some(id) = set_id {
            self.add(format!("{p}Id"), id);
        }
        for (i, nv) in pairs.iter().enumerate() {
            if let Some(id) = &nv.id {
                self.add(format!("{p}[{i}].id"), id);
            }
        }
    }

    /// The primitive's id, its attribute sets', its operations' and theirs.
    fn primitive(&mut self, prim: &crate::model::Primitive) {
        let p = "spec.primitive";
        if !prim.id.is_empty() {
            self.add(format!("{p}.id"), &prim.id);
        }
        if let Some(id) = &prim.operations_id {
            self.add(format!("{p}.operationsId"), id);
        }
        let sets = [
            (
                "instanceAttributes",
                &prim.instance_attributes_id,
                &prim.instance_attributes,
            ),
            (
                "metaAttributes",
                &prim.meta_attributes_id,
                &prim.meta_attributes,
            ),
            ("utilization", &prim.utilization_id, &prim.utilization),
        ];
        for (name, id, pairs) in sets {
            self.set(&format!("{p}.{name}"), id, pairs);
        }
        for (i, op) in prim.operations.iter().enumerate() {
            let op_p = format!("{p}.operations[{i}]");
            if let Some(id) = &op.id {
                self.add(format!("{op_p}.id"), id);
            }
            self.set(
                &format!("{op_p}.instanceAttributes"),
                &op.instance_attributes_id,
                &op.instance_attributes,
            );
            self.set(
                &format!("{op_p}.metaAttributes"),
                &op.meta_attributes_id,
                &op.meta_attributes,
            );
        }
    }
}

/// An XML NCName, restricted to ASCII (Pacemaker ids in practice are).
pub fn is_xml_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'))
}
