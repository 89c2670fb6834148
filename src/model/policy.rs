//! Host policy: what a bundle asks of the host beyond an ordinary container, and what each
//! node permits. Privileged mode, host namespaces, devices, added capabilities and host
//! directories outside a node's allowed prefixes are opt-in per node (`berth node
//! --allow-…`); the node advertises its [`Permits`] in its registration, the controller
//! places a bundle only on nodes that permit what it [`needs`], and the node agent checks
//! again before it creates anything. Pure: no I/O.

use serde::{Deserialize, Serialize};

use super::Bundle;

/// What a node permits (`berth node --allow-…`). The default permits nothing privileged
/// and host directories under [`Permits::DEFAULT_SOURCE_DIRS`] only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Permits {
    /// `--privileged`, and every security option but the confining ones (see
    /// [`lifts_confinement`]): a custom seccomp, AppArmor or SELinux profile can lift
    /// confinement as surely as `unconfined` does.
    pub privileged: bool,
    /// The host's namespaces (network `host`; PID, IPC and UTS `host` where options allow).
    pub host_namespaces: bool,
    /// `--device`.
    pub devices: bool,
    /// `--cap-add`.
    pub capabilities: bool,
    /// Host directories a storage mapping may use: these prefixes and everything below.
    pub source_dirs: Vec<String>,
}

impl Permits {
    /// Where host directories may come from by default: the conventional data root, and
    /// the log root Pacemaker's documentation uses for bundles.
    pub const DEFAULT_SOURCE_DIRS: [&str; 2] = ["/srv", "/var/log/pacemaker"];
}

impl Default for Permits {
    fn default() -> Self {
        Permits {
            privileged: false,
            host_namespaces: false,
            devices: false,
            capabilities: false,
            source_dirs: Permits::DEFAULT_SOURCE_DIRS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// What a bundle asks of its host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub privileged: bool,
    /// Which host namespaces (`network`, …).
    pub host_namespaces: Vec<String>,
    pub devices: bool,
    /// Capabilities added.
    pub capabilities: Vec<String>,
    /// Host directories of its storage mappings (source-dir, source-dir-root).
    pub source_dirs: Vec<String>,
}

/// Whether a `--security-opt` value can take confinement away (as `--privileged` does in
/// part): every one except `no-new-privileges` (which only adds confinement) and the names of
/// the engine's own defaults (`seccomp=builtin`, `apparmor=docker-default`). A custom profile
/// (`seccomp=<profile JSON>` with `"defaultAction":"SCMP_ACT_ALLOW"`, `apparmor=<name>`,
/// `label=type:spc_t`) lifts confinement as surely as `unconfined` does, and berth cannot
/// judge a profile's contents, so it asks the node's `--allow-privileged`.
pub fn lifts_confinement(opt: &str) -> bool {
    let opt = opt.trim();
    let (key, value) = match opt.split_once(['=', ':']) {
        Some((k, v)) => (k, Some(v)),
        None => (opt, None),
    };
    !matches!(
        (key, value),
        ("no-new-privileges", None | Some("true") | Some("false"))
            | ("seccomp", Some("builtin"))
            | ("apparmor", Some("docker-default"))
    )
}

/// What `b` asks of its host. Options that do not parse ask nothing here (validation
/// refuses them with the reason).
pub fn needs(b: &Bundle) -> Needs {
    let (_, c) = b.spec.container();
    let o = b.resolved().run_or_default();
    let mut host_namespaces = Vec::new();
    if c.network.as_deref() == Some("host") {
        host_namespaces.push("network".to_string());
    }
    for (name, mode) in [
        ("ipc", &o.ipc),
        ("pid", &o.pid),
        ("uts", &o.uts),
        ("user", &o.userns),
    ] {
        if mode.as_deref() == Some("host") {
            host_namespaces.push(name.to_string());
        }
    }
    Needs {
        privileged: o.privileged || o.security_opt.iter().any(|s| lifts_confinement(s)),
        host_namespaces,
        devices: !o.devices.is_empty(),
        capabilities: o.cap_add.clone(),
        source_dirs: b
            .spec
            .storage_mappings
            .iter()
            .filter_map(|m| m.source_dir.clone().or_else(|| m.source_dir_root.clone()))
            .collect(),
    }
}

/// Whether `path` is `prefix` or below it (by path components; both absolute, without `..`).
pub fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
}

impl Permits {
    /// What of `needs` this node does not permit, each with the flag that would permit it;
    /// empty when it may run.
    pub fn missing(&self, needs: &Needs) -> Vec<String> {
        let mut out = Vec::new();
        if needs.privileged && !self.privileged {
            out.push("privileged mode (berth node --allow-privileged)".to_string());
        }
        if !needs.host_namespaces.is_empty() && !self.host_namespaces {
            out.push(format!(
                "the host's {} namespace (berth node --allow-host-namespaces)",
                needs.host_namespaces.join(", ")
            ));
        }
        if needs.devices && !self.devices {
            out.push("devices (berth node --allow-devices)".to_string());
        }
        if !needs.capabilities.is_empty() && !self.capabilities {
            out.push(format!(
                "added capabilities {} (berth node --allow-capabilities)",
                needs.capabilities.join(", ")
            ));
        }
        for d in &needs.source_dirs {
            if !self.source_dirs.iter().any(|p| under(d, p)) {
                out.push(format!(
                    "host directory {d} (berth node --allow-source-dir)"
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::seed;

    #[test]
    fn the_seed_needs_nothing_a_default_node_refuses() {
        let b = seed();
        let n = needs(&b);
        assert!(!n.privileged && n.host_namespaces.is_empty() && !n.devices);
        assert_eq!(Permits::default().missing(&n), Vec::<String>::new());
    }

    #[test]
    fn privileged_things_are_named_with_the_flag_that_permits_them() {
        let mut b = seed();
        let c = b.spec.docker.as_mut().unwrap();
        c.options = Some(
            "--privileged --device /dev/fuse --cap-add NET_ADMIN --security-opt seccomp=unconfined"
                .into(),
        );
        c.network = Some("host".into());
        b.spec.storage_mappings[0].source_dir = Some("/etc".into());
        let n = needs(&b);
        let missing = Permits::default().missing(&n);
        assert_eq!(missing.len(), 5, "{missing:?}");
        assert!(missing[0].contains("--allow-privileged"));
        assert!(missing[1].contains("network namespace"));
        assert!(missing[4].contains("/etc (berth node --allow-source-dir)"));
        let all = Permits {
            privileged: true,
            host_namespaces: true,
            devices: true,
            capabilities: true,
            source_dirs: vec!["/".into()],
        };
        assert!(all.missing(&n).is_empty());
    }

    #[test]
    fn prefixes_match_whole_components() {
        assert!(under("/srv/www", "/srv"));
        assert!(under("/srv", "/srv/"));
        assert!(!under("/srvx", "/srv"));
        assert!(under("/anything", "/"));
    }

    #[test]
    fn every_security_option_but_the_confining_ones_needs_privileged() {
        for confining in [
            "no-new-privileges",
            "no-new-privileges:true",
            "no-new-privileges=false",
            "seccomp=builtin",
            "apparmor=docker-default",
        ] {
            assert!(!lifts_confinement(confining), "{confining}");
        }
        for lifting in [
            "seccomp=unconfined",
            "seccomp:unconfined",
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#,
            "seccomp=/etc/docker/allow-all.json",
            "apparmor=unconfined",
            "apparmor=my-profile",
            "label=disable",
            "label=type:spc_t",
            "label=level:s0:c1,c2",
            "systempaths=unconfined",
            "no-new-privileges=maybe",
            "something-new",
        ] {
            assert!(lifts_confinement(lifting), "{lifting}");
        }
    }
}
