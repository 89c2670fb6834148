//! XML ids: present where Pacemaker requires them, well formed, and unique in a bundle.

use super::*;

/// XML IDs (NCName) present and unique across the bundle, the bundle's own name included.
pub(super) fn check_ids(c: &mut Check, b: &Bundle) {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut add = |c: &mut Check, path: String, id: &str| {
        if !is_xml_id(id) {
            c.fail(
                path.clone(),
                format!("{id:?}: not an XML id (a letter or '_' first, then letters, digits, '.', '-', '_')"),
            );
        }
        if let Some(first) = seen.insert(id.to_string(), path.clone()) {
            c.fail(
                path,
                format!("{id:?}: duplicate id, already used by {first}"),
            );
        }
    };
    let s = &b.spec;
    let pairs = |c: &mut Check,
                 add: &mut dyn FnMut(&mut Check, String, &str),
                 p: &str,
                 set_id: &Option<String>,
                 pairs: &[NvPair]| {
        if let Some(id) = set_id {
            add(c, format!("{p}Id"), id);
        }
        for (i, nv) in pairs.iter().enumerate() {
            if let Some(id) = &nv.id {
                add(c, format!("{p}[{i}].id"), id);
            }
        }
    };
    if !b.metadata.name.is_empty() {
        add(c, "metadata.name".into(), &b.metadata.name);
    }
    for (i, pm) in s.port_mappings().iter().enumerate() {
        add(c, format!("spec.network.portMappings[{i}].id"), &pm.id);
    }
    for (i, sm) in s.storage_mappings.iter().enumerate() {
        add(c, format!("spec.storageMappings[{i}].id"), &sm.id);
    }
    pairs(
        c,
        &mut add,
        "spec.metaAttributes",
        &s.meta_attributes_id,
        &s.meta_attributes,
    );
    pairs(
        c,
        &mut add,
        "spec.instanceAttributes",
        &s.instance_attributes_id,
        &s.instance_attributes,
    );
    if let Some(prim) = &s.primitive {
        let p = "spec.primitive";
        if !prim.id.is_empty() {
            add(c, format!("{p}.id"), &prim.id);
        }
        if let Some(id) = &prim.operations_id {
            add(c, format!("{p}.operationsId"), id);
        }
        pairs(
            c,
            &mut add,
            &format!("{p}.instanceAttributes"),
            &prim.instance_attributes_id,
            &prim.instance_attributes,
        );
        pairs(
            c,
            &mut add,
            &format!("{p}.metaAttributes"),
            &prim.meta_attributes_id,
            &prim.meta_attributes,
        );
        pairs(
            c,
            &mut add,
            &format!("{p}.utilization"),
            &prim.utilization_id,
            &prim.utilization,
        );
        for (i, op) in prim.operations.iter().enumerate() {
            let op_p = format!("{p}.operations[{i}]");
            if let Some(id) = &op.id {
                add(c, format!("{op_p}.id"), id);
            }
            pairs(
                c,
                &mut add,
                &format!("{op_p}.instanceAttributes"),
                &op.instance_attributes_id,
                &op.instance_attributes,
            );
            pairs(
                c,
                &mut add,
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
