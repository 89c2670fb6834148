//! Validation: every rule a bundle must pass before anything is written, each failure naming
//! the field path and the reason (`spec.network.portMappings[0].range: 90-80: first port is
//! above last`). Validation reports every failure at once, not only the first.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use super::resolved::Resolved;
use super::{API_VERSION, Bundle, BundleSpec, KIND, NetworkSpec, NvPair, Operation, duration};

mod ids;
mod network;
mod primitive;

pub use ids::is_xml_id;
use ids::*;
use network::*;
pub use network::{MAX_REPLICAS, parse_range};
use primitive::*;
pub use primitive::{INFINITY, parse_bool, parse_score};

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path in manifest names, `spec.network.portMappings[0].range`.
    pub path: String,
    /// Why, lower case.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Every refused field of one bundle. Callers give up on the bundle: retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors {
    /// The bundle's name as given (may itself be the invalid part).
    pub bundle: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bundle {:?} is invalid: ", self.bundle)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Classes of primitive berth can run inside a container: OCF and LSB agents, and berth's own
/// `command` class (a plain supervised command).
pub const SUPPORTED_CLASSES: &[&str] = &["ocf", "lsb", "command"];

/// Meta attributes Pacemaker defines for resources (Pacemaker Explained, "Resource Meta
/// Attributes", plus the clone and bundle ones). Any other name is refused as a probable typo.
pub const KNOWN_META: &[&str] = &[
    "priority",
    "critical",
    "target-role",
    "is-managed",
    "maintenance",
    "resource-stickiness",
    "requires",
    "migration-threshold",
    "failure-timeout",
    "multiple-active",
    "allow-migrate",
    "allow-unhealthy-nodes",
    "container-attribute-target",
    "remote-node",
    "remote-port",
    "remote-addr",
    "remote-connect-timeout",
    "remote-allow-migrate",
    "restart-type",
    // Clone and promotable-clone meta attributes (Pacemaker Explained, "Clone Options"),
    // with the older names. A bundle's replicas and replicas-per-host are its clone-max
    // and clone-node-max, so those two are accepted and have no effect, as in Pacemaker.
    "ordered",
    "interleave",
    "notify",
    "globally-unique",
    "clone-max",
    "clone-node-max",
    "clone-min",
    "promotable",
    "promoted-max",
    "promoted-node-max",
    "master-max",
    "master-node-max",
    "description",
    // berth's own (Pacemaker ignores meta attributes it does not know): the rollout.
    crate::model::rollout::MAX_UNAVAILABLE,
    crate::model::rollout::PARTITION,
    crate::model::rollout::MIN_READY,
    crate::model::rollout::FAILURE_ACTION,
];

const ROLES: &[&str] = &[
    "Stopped",
    "Started",
    "Promoted",
    "Unpromoted",
    "Master",
    "Slave",
];

/// Collects errors under a path.
struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    fn fail(&mut self, path: impl Into<String>, reason: impl std::fmt::Display) {
        self.errors.push(FieldError {
            path: path.into(),
            reason: reason.to_string(),
        });
    }
}

/// Checks a bundle against every rule. `Ok` means it may be written, and holds what its
/// text means (the same [`Resolved`] as [`Bundle::resolved`]).
pub fn validate(b: &Bundle) -> Result<Resolved, ValidationErrors> {
    let mut c = Check { errors: Vec::new() };
    let resolved = Resolved::of(&b.spec);
    check_envelope(&mut c, b);
    check_container(&mut c, &b.spec, &resolved);
    if let Some(net) = &b.spec.network {
        check_network_of(&mut c, &b.spec, net);
    }
    check_parts(&mut c, b);
    check_locations(&mut c, &b.spec);
    if c.errors.is_empty() {
        Ok(resolved)
    } else {
        Err(ValidationErrors {
            bundle: b.metadata.name.clone(),
            errors: c.errors,
        })
    }
}

/// `apiVersion`, `kind` and the name.
fn check_envelope(c: &mut Check, b: &Bundle) {
    if b.api_version != API_VERSION {
        c.fail(
            "apiVersion",
            format!("{:?}: must be {API_VERSION:?}", b.api_version),
        );
    }
    if b.kind != KIND {
        c.fail("kind", format!("{:?}: must be {KIND:?}", b.kind));
    }
    check_name(c, &b.metadata.name, b.spec.replicas());
}

/// The engine: one of docker or podman, its image, replica counts, command and options.
fn check_container(c: &mut Check, spec: &BundleSpec, resolved: &Resolved) {
    let replicas = spec.replicas();
    let container = match (&spec.docker, &spec.podman) {
        (Some(d), None) => Some(("spec.docker", d)),
        (None, Some(p)) => Some(("spec.podman", p)),
        (Some(_), Some(_)) => {
            c.fail(
                "spec.podman",
                "docker and podman are both set: choose one engine",
            );
            None
        }
        (None, None) => {
            c.fail("spec", "one of docker or podman is required");
            None
        }
    };
    if let Some((p, ct)) = container {
        if ct.image.trim().is_empty() {
            c.fail(format!("{p}.image"), "required");
        }
        if ct.replicas == Some(0) {
            c.fail(format!("{p}.replicas"), "0: must be at least 1");
        }
        if let Some(r) = ct.replicas.filter(|&r| r > MAX_REPLICAS) {
            c.fail(
                format!("{p}.replicas"),
                format!("{r}: at most {MAX_REPLICAS} replicas per bundle"),
            );
        }
        if let Some(r) = ct.replicas_per_host.filter(|&r| r > MAX_REPLICAS) {
            c.fail(
                format!("{p}.replicasPerHost"),
                format!("{r}: at most {MAX_REPLICAS}"),
            );
        }
        if ct.replicas_per_host == Some(0) {
            c.fail(format!("{p}.replicasPerHost"), "0: must be at least 1");
        }
        if ct.promoted_max.is_some() && ct.masters.is_some() {
            c.fail(
                format!("{p}.masters"),
                "masters is the deprecated alias of promotedMax: set only one",
            );
        }
        let pm = spec.promoted_max();
        if pm > replicas {
            let f = if ct.masters.is_some() {
                "masters"
            } else {
                "promotedMax"
            };
            c.fail(
                format!("{p}.{f}"),
                format!("{pm}: above replicas ({replicas})"),
            );
        }
        match &resolved.command {
            Ok(Some(w)) if w.is_empty() => {
                c.fail(format!("{p}.runCommand"), "empty: leave it out instead")
            }
            Ok(_) => {}
            Err(e) => c.fail(format!("{p}.runCommand"), e),
        }
        if let Err(e) = &resolved.run {
            c.fail(format!("{p}.options"), e);
        }
    }
}

/// The network, and a control port no port mapping uses.
fn check_network_of(c: &mut Check, spec: &BundleSpec, net: &NetworkSpec) {
    let replicas = spec.replicas();
    check_network(c, net, replicas);
    // With a primitive, control-port is where the remote agent listens and is published.
    if spec.primitive.is_some()
        && let Some(cp) = net.control_port.filter(|p| *p != 0)
        && let Some(j) = net.port_mappings.iter().position(|pm| {
            let (lo, hi) = pm.host_ports().unwrap_or((0, 0));
            (lo <= cp && cp <= hi) || pm.internal_port() == Some(cp)
        })
    {
        c.fail(
            "spec.network.controlPort",
            format!("{cp}: portMappings[{j}] uses this port too"),
        );
    }
}

/// Storage, the primitive, attribute sets, ids and constraints.
fn check_parts(c: &mut Check, b: &Bundle) {
    let spec = &b.spec;
    check_storage(c, spec);
    if let Some(prim) = &spec.primitive {
        check_primitive(c, prim);
    }
    check_nvpairs(c, "spec.metaAttributes", &spec.meta_attributes, true);
    check_nvpairs(
        c,
        "spec.instanceAttributes",
        &spec.instance_attributes,
        false,
    );
    check_ids(c, b);
    for (field, why) in crate::model::constraints::check(b) {
        c.fail(field, why);
    }
}

/// Each location: a node or a label, its discovery and its score.
fn check_locations(c: &mut Check, spec: &BundleSpec) {
    for (i, l) in spec.locations.iter().enumerate() {
        let p = format!("spec.locations[{i}]");
        match (&l.node, &l.label) {
            (Some(_), Some(_)) => c.fail(
                format!("{p}.label"),
                "node and label are both set: choose one",
            ),
            (None, None) => c.fail(format!("{p}.node"), "one of node or label is required"),
            (None, Some(label)) if !label.contains('=') => c.fail(
                format!("{p}.label"),
                format!("{label:?}: expected key=value"),
            ),
            _ => {}
        }
        match l.resource_discovery.as_deref() {
            None | Some("always" | "exclusive") => {}
            Some("never") => c.fail(
                format!("{p}.resourceDiscovery"),
                "never: not supported (berth runs no probes; use a -INFINITY score to keep the bundle off those nodes)",
            ),
            Some(other) => c.fail(
                format!("{p}.resourceDiscovery"),
                format!("{other:?}: expected always or exclusive"),
            ),
        }
        if parse_score(&l.score).is_none() {
            c.fail(
                format!("{p}.score"),
                format!(
                    "{:?}: not a score (an integer, INFINITY or -INFINITY)",
                    l.score
                ),
            );
        }
    }
}

/// DNS-label rules (RFC 1123), because the name becomes container names and host names; the
/// longest derived name, `<name>-podman-<last replica>`, must stay within 63 characters.
fn check_name(c: &mut Check, name: &str, replicas: u32) {
    let p = "metadata.name";
    if name.is_empty() {
        c.fail(p, "required");
        return;
    }
    if let Some(why) = label_problem(name) {
        c.fail(p, why);
        return;
    }
    let longest = name.len() + "-podman-".len() + (replicas.max(1) - 1).to_string().len();
    if longest > 63 {
        c.fail(
            p,
            format!("{name:?}: too long: container name {longest} characters, above the 63 of a DNS label"),
        );
    }
}

/// Why `name` is not a DNS label as berth uses them (lower-case letters, digits and '-',
/// starting with a letter, not ending with '-'), or None.
pub(crate) fn label_problem(name: &str) -> Option<String> {
    if let Some(bad) = name
        .chars()
        .find(|ch| !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || *ch == '-'))
    {
        return Some(format!(
            "{name:?}: {bad:?} is not allowed (lower-case letters, digits and '-' only, as in a DNS label)"
        ));
    }
    if !name.starts_with(|ch: char| ch.is_ascii_lowercase()) {
        return Some(format!("{name:?}: must start with a lower-case letter"));
    }
    if name.ends_with('-') {
        return Some(format!("{name:?}: must not end with '-'"));
    }
    None
}

/// Checks a node name: DNS labels joined by dots (a host name such as `node1` or
/// `node1.example.com`), at most 253 characters, each label at most 63. The name is part of
/// etcd keys and container labels.
pub fn node_name(name: &str) -> Result<(), NodeNameError> {
    let named = || name.to_string();
    if name.is_empty() {
        return Err(NodeNameError::Missing);
    }
    if name.len() > 253 {
        return Err(NodeNameError::TooLong(named()));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(NodeNameError::PartLength(named()));
        }
        // A host-name label may start with a digit (checked as if it were a letter).
        let as_label = match label.strip_prefix(|c: char| c.is_ascii_digit()) {
            Some(rest) => format!("a{rest}"),
            None => label.to_string(),
        };
        if let Some(why) = label_problem(&as_label) {
            return Err(NodeNameError::Part {
                name: named(),
                part: label.to_string(),
                why: why.replacen(&format!("{as_label:?}: "), "", 1),
            });
        }
    }
    Ok(())
}

/// Why a node name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    #[error("node name: required")]
    Missing,
    #[error("node name {0:?}: longer than 253 characters")]
    TooLong(String),
    #[error("node name {0:?}: each dot-separated part must be 1-63 characters")]
    PartLength(String),
    /// A part that is not a DNS label, and why (a DNS label's rule).
    #[error("node name {name:?}: {part:?}: {why}")]
    Part {
        name: String,
        part: String,
        why: String,
    },
}

fn check_storage(c: &mut Check, spec: &crate::model::BundleSpec) {
    let mut targets: HashMap<&str, usize> = HashMap::new();
    for (i, sm) in spec.storage_mappings.iter().enumerate() {
        let p = format!("spec.storageMappings[{i}]");
        match (&sm.source_dir, &sm.source_dir_root) {
            (Some(_), Some(_)) => c.fail(
                format!("{p}.sourceDirRoot"),
                "sourceDir and sourceDirRoot are both set: choose one",
            ),
            (None, None) => c.fail(
                format!("{p}.sourceDir"),
                "one of sourceDir or sourceDirRoot is required",
            ),
            (Some(s), None) => check_path(c, format!("{p}.sourceDir"), s),
            (None, Some(s)) => check_path(c, format!("{p}.sourceDirRoot"), s),
        }
        check_path(c, format!("{p}.targetDir"), &sm.target_dir);
        if let Some(j) = targets.insert(sm.target_dir.trim_end_matches('/'), i) {
            c.fail(
                format!("{p}.targetDir"),
                format!("{}: already mapped by storageMappings[{j}]", sm.target_dir),
            );
        }
        if let Some(opts) = &sm.options {
            for o in opts.split(',').map(str::trim) {
                if !BIND_OPTIONS.contains(&o) {
                    c.fail(
                        format!("{p}.options"),
                        format!("{o:?}: not a bind option ({})", BIND_OPTIONS.join(", ")),
                    );
                }
            }
        }
    }
}

/// Bind-mount options Docker accepts (`docker run -v`): access, SELinux relabel, propagation.
const BIND_OPTIONS: &[&str] = &[
    "rw", "ro", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave", "nocopy",
];

fn check_path(c: &mut Check, path: String, value: &str) {
    if !value.starts_with('/') {
        c.fail(path, format!("{value:?}: must be an absolute path"));
    } else if value.split('/').any(|seg| seg == "..") {
        c.fail(path, format!("{value:?}: must not contain '..'"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::seed;
    use super::super::*;
    use super::*;

    fn errors(b: &Bundle) -> Vec<String> {
        match validate(b) {
            Ok(_) => vec![],
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn refused(b: &Bundle, path: &str, reason_part: &str) {
        let errs = errors(b);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(reason_part)),
            "expected {path}: …{reason_part}…, got {errs:?}"
        );
    }

    #[test]
    fn seed_is_valid() {
        assert_eq!(errors(&seed()), Vec::<String>::new());
    }

    #[test]
    fn port_range_first_above_last() {
        let mut b = seed();
        b.spec.network.as_mut().unwrap().port_mappings[0] = PortMapping {
            id: "r".into(),
            range: Some("90-80".into()),
            ..Default::default()
        };
        assert_eq!(
            errors(&b),
            vec!["spec.network.portMappings[0].range: 90-80: first port is above last"]
        );
    }

    #[test]
    fn node_names_are_host_names() {
        for ok in ["node1", "1node", "n1.example.com", "10-0-0-1", "vm"] {
            assert_eq!(node_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/b", "Node", "-x", "x-", "x..y", "é", &"a".repeat(64)] {
            assert!(node_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn table_of_refusals() {
        type Edit = fn(&mut Bundle);
        let cases: Vec<(Edit, &str, &str)> = vec![
            (
                |b| b.metadata.name = "Httpd".into(),
                "metadata.name",
                "not allowed",
            ),
            (
                |b| b.metadata.name = "9web".into(),
                "metadata.name",
                "lower-case letter",
            ),
            (
                |b| b.metadata.name = "a".repeat(60),
                "metadata.name",
                "too long",
            ),
            (|b| b.api_version = "v1".into(), "apiVersion", "must be"),
            (
                |b| b.spec.podman = b.spec.docker.clone(),
                "spec.podman",
                "both set",
            ),
            (|b| b.spec.docker = None, "spec", "one of docker or podman"),
            (
                |b| b.spec.docker.as_mut().unwrap().replicas = Some(0),
                "spec.docker.replicas",
                "at least 1",
            ),
            (
                |b| b.spec.docker.as_mut().unwrap().replicas = Some(50_000_000),
                "spec.docker.replicas",
                "at most 1000 replicas",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().ip_range_start = Some("0.0.0.0".into()),
                "spec.network.ipRangeStart",
                "unspecified",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().ip_range_start = Some("169.254.1.1".into()),
                "spec.network.ipRangeStart",
                "link-local",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().ip_range_start = Some("224.0.0.10".into()),
                "spec.network.ipRangeStart",
                "multicast",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().ip_range_start = Some("127.0.0.0".into()),
                "spec.network.ipRangeStart",
                "includes 127.0.0.0, the network address of the loopback network",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().ip_range_start = Some("127.0.0.1".into()),
                "spec.network.ipRangeStart",
                "includes 127.0.0.1",
            ),
            (
                |b| {
                    b.spec.network.as_mut().unwrap().ip_range_start = Some("127.255.255.253".into())
                },
                "spec.network.ipRangeStart",
                "includes 127.255.255.255, the broadcast address of the loopback network",
            ),
            (
                |b| b.spec.docker.as_mut().unwrap().replicas_per_host = Some(0),
                "spec.docker.replicasPerHost",
                "at least 1",
            ),
            (
                |b| b.spec.docker.as_mut().unwrap().promoted_max = Some(4),
                "spec.docker.promotedMax",
                "above replicas",
            ),
            (
                |b| b.spec.docker.as_mut().unwrap().image = "".into(),
                "spec.docker.image",
                "required",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().ip_range_start = Some("300.1.1.1".into()),
                "spec.network.ipRangeStart",
                "not an IPv4",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().control_port = Some(80),
                "spec.network.controlPort",
                "80: portMappings[0] uses this port too",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().ip_range_start = Some("192.168.24.254".into()),
                "spec.network.ipRangeStart",
                "outside",
            ),
            (
                |b| {
                    b.spec.network.as_mut().unwrap().ip_range_start = Some("255.255.255.254".into())
                },
                "spec.network.ipRangeStart",
                "past 255",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().host_netmask = Some(33),
                "spec.network.hostNetmask",
                "1-32",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().port_mappings[0].range = Some("80-81".into()),
                "spec.network.portMappings[0].range",
                "both set",
            ),
            (
                |b| b.spec.network.as_mut().unwrap().port_mappings[0].port = None,
                "spec.network.portMappings[0].port",
                "one of port or range",
            ),
            (
                |b| {
                    let n = b.spec.network.as_mut().unwrap();
                    n.port_mappings[0].port = None;
                    n.port_mappings[0].range = Some("1-70000".into());
                },
                "spec.network.portMappings[0].range",
                "outside 1-65535",
            ),
            (
                |b| {
                    let n = b.spec.network.as_mut().unwrap();
                    let mut m = n.port_mappings[0].clone();
                    m.id = "other".into();
                    n.port_mappings.push(m);
                },
                "spec.network.portMappings[1]",
                "overlap",
            ),
            (
                |b| b.spec.storage_mappings[0].source_dir_root = Some("/x".into()),
                "spec.storageMappings[0].sourceDirRoot",
                "both set",
            ),
            (
                |b| b.spec.storage_mappings[0].source_dir = None,
                "spec.storageMappings[0].sourceDir",
                "one of sourceDir",
            ),
            (
                |b| b.spec.storage_mappings[0].source_dir = Some("srv/www".into()),
                "spec.storageMappings[0].sourceDir",
                "absolute",
            ),
            (
                |b| b.spec.storage_mappings[0].source_dir = Some("/srv/../etc".into()),
                "spec.storageMappings[0].sourceDir",
                "'..'",
            ),
            (
                |b| b.spec.storage_mappings[1].source_dir_root = Some("/a/../b".into()),
                "spec.storageMappings[1].sourceDirRoot",
                "'..'",
            ),
            (
                |b| b.spec.storage_mappings[0].target_dir = "html".into(),
                "spec.storageMappings[0].targetDir",
                "absolute",
            ),
            (
                |b| b.spec.storage_mappings[0].options = Some("rw,bogus".into()),
                "spec.storageMappings[0].options",
                "not a bind option",
            ),
            (
                |b| b.spec.storage_mappings[1].id = "httpd-root".into(),
                "spec.storageMappings[1].id",
                "duplicate id",
            ),
            (
                |b| b.spec.primitive.as_mut().unwrap().id = "httpd-port".into(),
                "spec.primitive.id",
                "duplicate id",
            ),
            (
                |b| b.spec.primitive.as_mut().unwrap().class = "systemd".into(),
                "spec.primitive.class",
                "not supported",
            ),
            (
                |b| b.spec.primitive.as_mut().unwrap().provider = None,
                "spec.primitive.provider",
                "required for class ocf",
            ),
            (
                |b| {
                    b.spec
                        .primitive
                        .as_mut()
                        .unwrap()
                        .operations
                        .push(Operation {
                            name: "monitor".into(),
                            interval: "ten".into(),
                            ..Default::default()
                        })
                },
                "spec.primitive.operations[0].interval",
                "not a number",
            ),
            (
                |b| {
                    b.spec
                        .primitive
                        .as_mut()
                        .unwrap()
                        .operations
                        .push(Operation {
                            name: "monitor".into(),
                            interval: "10s".into(),
                            on_fail: Some("explode".into()),
                            ..Default::default()
                        })
                },
                "spec.primitive.operations[0].onFail",
                "not an on-fail",
            ),
            (
                |b| {
                    b.spec.meta_attributes.push(NvPair {
                        id: None,
                        name: "migration-treshold".into(),
                        value: Some("3".into()),
                    })
                },
                "spec.metaAttributes[0].name",
                "not a Pacemaker resource meta attribute",
            ),
            (
                |b| {
                    b.spec.meta_attributes.push(NvPair {
                        id: None,
                        name: "target-role".into(),
                        value: Some("Running".into()),
                    })
                },
                "spec.metaAttributes[0].value",
                "not a role",
            ),
            (
                |b| {
                    b.spec.meta_attributes.push(NvPair {
                        id: None,
                        name: "failure-timeout".into(),
                        value: Some("soon".into()),
                    })
                },
                "spec.metaAttributes[0].value",
                "not a number",
            ),
        ];
        for (edit, path, reason) in cases {
            let mut b = seed();
            edit(&mut b);
            refused(&b, path, reason);
        }
    }

    #[test]
    fn slash_32_allows_many_replicas() {
        let mut b = seed();
        b.spec.network.as_mut().unwrap().host_netmask = None;
        b.spec.network.as_mut().unwrap().ip_range_start = Some("127.0.0.254".into());
        assert_eq!(errors(&b), Vec::<String>::new());
    }
}
