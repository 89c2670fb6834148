//! What one replica's container must look like: a pure function of the bundle, the replica
//! ordinal and the node. The node agent creates containers from it and compares its hash with
//! the hash label of what runs, to tell whether a spec change affects the container.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::Bundle;
use crate::model::layout::{
    ATTRIBUTES_JSON, AUTHKEY, CONFIG_SUBDIR, CONTROL_SOCKET, HOSTS_FILE, REMOTE_BIN,
    REMOTE_BIN_DIR, REMOTE_CONFIG_DIR, REMOTE_DIR, REMOTE_JSON, RUN_SUBDIR, STATE_JSON,
};
use crate::model::options::{self, RunOptions};

/// Label keys berth puts on the containers it owns. A container is berth's, and this node
/// agent's, only when `managed-by` is `berth` and `node` is the agent's node name: several
/// agents may share one engine, and containers without these labels are never touched.
pub const LABEL_MANAGED_BY: &str = "berth.io/managed-by";
pub const LABEL_NODE: &str = "berth.io/node";
pub const LABEL_BUNDLE: &str = "berth.io/bundle";
pub const LABEL_REPLICA: &str = "berth.io/replica";
pub const LABEL_HASH: &str = "berth.io/spec-hash";

/// Pacemaker's meta attribute that has agents keep node attributes on the physical host.
const ATTRIBUTE_TARGET: &str = "container-attribute-target";
pub const LABEL_GENERATION: &str = "berth.io/generation";

/// Docker's default stop timeout, used unless the options say `--stop-timeout`.
pub const DEFAULT_STOP_TIMEOUT_SECS: i64 = 10;

/// A port published on the host: `host_ip:host_port` → `container_port/tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    /// The replica's address, or None for every host address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl std::fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = self
            .host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        write!(f, "{ip}:{}->{}/tcp", self.host_port, self.container_port)
    }
}

/// The replica's own address, as IPaddr2 would add it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub ip: Ipv4Addr,
    pub netmask: u8,
    /// The interface to add it to; None: the one whose network holds the address.
    pub interface: Option<String>,
}

/// Everything the create call needs for one replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredContainer {
    pub bundle: String,
    pub index: u32,
    pub name: String,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub hostname: String,
    /// Whether the container is given `hostname` (Pacemaker's rule: with ip-range-start, so
    /// that the name matches the address it binds to); otherwise the engine's default (on
    /// the host's network, the host's name). Not hashed: the name was always hashed.
    #[serde(skip)]
    pub set_hostname: bool,
    pub network_mode: Option<String>,
    pub ports: Vec<PublishedPort>,
    /// `source:target[:options]`, as `docker run -v` takes them.
    pub binds: Vec<String>,
    pub address: Option<Address>,
    pub options: RunOptions,
    pub stop_timeout_secs: i64,
    /// The remote agent's configuration (JSON), for a bundle with a primitive: hashed, so
    /// that a primitive change replaces the container.
    pub remote_config: Option<String>,
    /// Directories to create before the container starts (per-replica source dirs), as
    /// (source-dir-root, replica name): the name is created below the root without
    /// following a link planted there.
    #[serde(skip)]
    pub dirs: Vec<(PathBuf, String)>,
    /// The host directories of its storage mappings, as bound (a per-replica one with the
    /// replica's name): checked against the host policy again right before every create and
    /// start, because Docker resolves them anew each time and a container with another of
    /// them mapped read-write may have swapped one for a link meanwhile.
    #[serde(skip)]
    pub host_sources: Vec<PathBuf>,
    /// Binds outside the spec hash: the tools added after the first (see
    /// [`crate::model::layout::LATER_TOOLS`]), so that adding one replaces no container.
    #[serde(skip)]
    pub unhashed_binds: Vec<String>,
    /// The replica's /etc/hosts content, when add-host applies (the file is
    /// `<replica dir>/hosts`). It is rewritten in place when replicas come and go, so it is
    /// not in the hash.
    #[serde(skip)]
    pub hosts: Option<String>,
    /// The bundle generation this was computed from (not hashed: a generation that changes
    /// nothing about this container must not replace it).
    #[serde(skip)]
    pub generation: i64,
    /// Where the node agent reaches the remote agent over TCP, when the bundle sets
    /// control-port (the replica's address, published; or loopback for a container on the
    /// host's network). None: the unix socket in the replica's directory.
    #[serde(skip)]
    pub control_tcp: Option<std::net::SocketAddrV4>,
    /// What the replica's tools may write and see of the cluster's attributes (a bundle
    /// with a primitive): its own and its peers' node attributes, its primitive's
    /// properties.
    #[serde(skip)]
    pub attr_scope: Option<crate::model::attributes::Scope>,
}

impl DesiredContainer {
    /// A stable hash of everything that shapes the container (FNV-1a over its JSON), so
    /// that it is the same across agent restarts and berth versions with the same layout.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a desired container serializes");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// The labels to create the container with.
    pub fn labels(&self, node: &str) -> BTreeMap<String, String> {
        let mut l = self.options.labels.clone();
        l.insert(LABEL_MANAGED_BY.into(), "berth".into());
        l.insert(LABEL_NODE.into(), node.into());
        l.insert(LABEL_BUNDLE.into(), self.bundle.clone());
        l.insert(LABEL_REPLICA.into(), self.index.to_string());
        l.insert(LABEL_HASH.into(), self.hash());
        l.insert(LABEL_GENERATION.into(), self.generation.to_string());
        l
    }
}

/// The per-replica directory the agent keeps on the host: `<state dir>/<bundle>/<replica>`.
pub fn replica_dir(state_dir: &Path, bundle: &str, i: u32) -> PathBuf {
    state_dir
        .join(bundle)
        .join(crate::model::replica_name(bundle, i))
}

/// Why a replica's container cannot be made as specified, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("spec.{engine}.options: {source}")]
    Options {
        engine: &'static str,
        source: options::OptionError,
    },
    #[error("spec.{engine}.runCommand: {source}")]
    RunCommand {
        engine: &'static str,
        source: options::WordsError,
    },
}

/// Computes replica `i`'s container. The error is the reason the replica cannot run as
/// specified, naming the field (it goes into the replica's status; nothing is started).
/// `remote` is the berth binary to bind-mount for a bundle's primitive (`berth remote` then
/// runs as the container's PID 1); without it, a primitive is not run.
pub fn desired(
    bundle: &Bundle,
    i: u32,
    state_dir: &Path,
    remote: Option<&Path>,
) -> Result<DesiredContainer, ShapeError> {
    let spec = &bundle.spec;
    let (engine, c) = spec.container();
    let engine = engine.as_str();
    let resolved = bundle.resolved();
    let options = match &resolved.run {
        Ok(o) => RunOptions::clone(o),
        Err(source) => {
            return Err(ShapeError::Options {
                engine,
                source: source.clone(),
            });
        }
    };
    let mut cmd =
        (resolved.command.clone()).map_err(|source| ShapeError::RunCommand { engine, source })?;
    let host_ip = spec.replica_address(i);
    let mut ports = published_ports(spec, host_ip);
    let Storage {
        mut binds,
        dirs,
        host_sources,
    } = storage(bundle, i);
    let mut hosts = None;
    if spec.add_host() && host_ip.is_some() {
        let path = replica_dir(state_dir, bundle.name(), i).join(HOSTS_FILE);
        binds.push(format!("{}:/etc/hosts:ro", path.display()));
        hosts = Some(hosts_content(bundle));
    }
    let remote = match (&spec.primitive, remote) {
        (Some(prim), Some(bin)) => Some(Remote::of(bundle, prim, bin, i, state_dir, host_ip)),
        _ => None,
    };
    let mut unhashed_binds = Vec::new();
    if let Some(r) = &remote {
        ports.extend(r.port.clone());
        binds.extend(r.binds.iter().cloned());
        unhashed_binds.extend(r.later_binds.iter().cloned());
        // A bundle's own run-command must exec berth remote itself.
        cmd = cmd.or_else(|| Some(r.command.clone()));
    }
    let address = host_ip.map(|ip| Address {
        ip,
        netmask: spec.host_netmask(),
        interface: spec.network.as_ref().and_then(|n| n.host_interface.clone()),
    });
    Ok(DesiredContainer {
        bundle: bundle.name().to_string(),
        index: i,
        name: bundle.container_name(i),
        image: c.image.clone(),
        cmd,
        hostname: bundle.replica_name(i),
        set_hostname: host_ip.is_some(),
        network_mode: c.network.clone(),
        ports,
        binds,
        address,
        stop_timeout_secs: options.stop_timeout.unwrap_or_else(|| stop_grace(spec)),
        options,
        dirs,
        host_sources,
        unhashed_binds,
        hosts,
        generation: bundle.metadata.generation.unwrap_or(0),
        control_tcp: remote.as_ref().and_then(|r| r.control_tcp),
        remote_config: remote.as_ref().map(|r| r.config.clone()),
        attr_scope: remote.map(|r| r.scope),
    })
}

/// The port mappings, published on the replica's address (all of the host's without one).
fn published_ports(
    spec: &crate::model::BundleSpec,
    host_ip: Option<Ipv4Addr>,
) -> Vec<PublishedPort> {
    let mut ports = Vec::new();
    for pm in spec.port_mappings() {
        match (pm.port, pm.host_ports()) {
            (Some(p), _) => ports.push(PublishedPort {
                host_ip,
                host_port: p,
                container_port: pm.internal_port().unwrap_or(p),
            }),
            (None, Some((lo, hi))) => ports.extend((lo..=hi).map(|p| PublishedPort {
                host_ip,
                host_port: p,
                container_port: p,
            })),
            (None, None) => {}
        }
    }
    ports
}

/// A replica's storage mappings: the bind mounts, the per-replica directories to create
/// under a `source-dir-root` (root, name), and every host source (checked against the host
/// policy at each start).
struct Storage {
    binds: Vec<String>,
    dirs: Vec<(PathBuf, String)>,
    host_sources: Vec<PathBuf>,
}

fn storage(bundle: &Bundle, i: u32) -> Storage {
    let mut out = Storage {
        binds: Vec::new(),
        dirs: Vec::new(),
        host_sources: Vec::new(),
    };
    for sm in &bundle.spec.storage_mappings {
        let source = match (&sm.source_dir, &sm.source_dir_root) {
            (Some(s), _) => PathBuf::from(s),
            (None, Some(root)) => {
                out.dirs.push((PathBuf::from(root), bundle.replica_name(i)));
                Path::new(root).join(bundle.replica_name(i))
            }
            (None, None) => continue,
        };
        out.host_sources.push(source.clone());
        let mut b = format!("{}:{}", source.display(), sm.target_dir);
        if let Some(o) = &sm.options {
            b.push(':');
            b.push_str(o);
        }
        out.binds.push(b);
    }
    out
}

/// What a replica's primitive adds to its container: the remote agent (berth's binary,
/// bind-mounted, as PID 1), its configuration and run directories, its control port, and
/// the scope its attribute tools work in.
struct Remote {
    /// control-port published on the replica's address.
    port: Option<PublishedPort>,
    control_tcp: Option<std::net::SocketAddrV4>,
    binds: Vec<String>,
    /// The tools added after containers were created with this shape's hash: not hashed.
    later_binds: Vec<String>,
    /// The remote agent's configuration (JSON).
    config: String,
    scope: crate::model::attributes::Scope,
    /// `berth remote`, when the bundle sets no run-command.
    command: Vec<String>,
}

impl Remote {
    fn of(
        bundle: &Bundle,
        prim: &crate::model::Primitive,
        bin: &Path,
        i: u32,
        state_dir: &Path,
        host_ip: Option<Ipv4Addr>,
    ) -> Remote {
        let spec = &bundle.spec;
        // control-port: TCP instead of the unix socket, as Pacemaker reaches
        // pacemaker-remoted: on the replica's address (published there), or, without one,
        // on the host's own (a container on the host's network).
        let control_port = spec.network.as_ref().and_then(|n| n.control_port);
        let port = control_port.and_then(|port| {
            host_ip.map(|ip| PublishedPort {
                host_ip: Some(ip),
                host_port: port,
                container_port: port,
            })
        });
        let control_tcp = control_port
            .map(|port| std::net::SocketAddrV4::new(host_ip.unwrap_or(Ipv4Addr::LOCALHOST), port));
        let dir = replica_dir(state_dir, bundle.name(), i);
        let mut binds = vec![
            format!(
                "{}:{REMOTE_CONFIG_DIR}:ro",
                dir.join(CONFIG_SUBDIR).display()
            ),
            format!("{}:{REMOTE_DIR}", dir.join(RUN_SUBDIR).display()),
            format!("{}:{REMOTE_BIN}:ro", bin.display()),
        ];
        let tool = |tool: &str| format!("{}:{REMOTE_BIN_DIR}/{tool}:ro", bin.display());
        binds.extend(crate::model::layout::TOOLS.iter().map(|t| tool(t)));
        let later_binds = crate::model::layout::LATER_TOOLS
            .iter()
            .map(|t| tool(t))
            .collect();
        let run = |f: &str| PathBuf::from(REMOTE_DIR).join(f);
        let conf = |f: &str| PathBuf::from(REMOTE_CONFIG_DIR).join(f);
        let prim = with_attribute_target(spec, prim);
        let cfg = crate::model::remote::RemoteConfig {
            control_socket: control_port.is_none().then(|| run(CONTROL_SOCKET)),
            control_port,
            state_file: Some(run(STATE_JSON)),
            promotable: spec.promoted_max() > 0,
            authkey_file: Some(conf(AUTHKEY)),
            node: Some(bundle.replica_name(i)),
            clone: Some(i),
            attributes_file: Some(run(ATTRIBUTES_JSON)),
            tools_dir: Some(PathBuf::from(REMOTE_BIN_DIR)),
            ..crate::model::remote::RemoteConfig::new(prim.clone())
        };
        let scope = attribute_scope(bundle, &prim, i);
        Remote {
            port,
            control_tcp,
            binds,
            later_binds,
            config: serde_json::to_string(&cfg).expect("a remote config serializes"),
            scope,
            command: vec![
                REMOTE_BIN.to_string(),
                "remote".into(),
                "--config".into(),
                conf(REMOTE_JSON).display().to_string(),
            ],
        }
    }
}

/// The primitive as its remote agent runs it: container-attribute-target set on the bundle
/// reaches the agent as on the primitive, as Pacemaker passes a bundle's meta attributes to
/// its resource.
fn with_attribute_target(
    spec: &crate::model::BundleSpec,
    prim: &crate::model::Primitive,
) -> crate::model::Primitive {
    let mut prim = prim.clone();
    if prim.meta(ATTRIBUTE_TARGET).is_none()
        && let Some(v) = spec.meta(ATTRIBUTE_TARGET)
    {
        prim.meta_attributes.push(crate::model::NvPair {
            id: None,
            name: ATTRIBUTE_TARGET.into(),
            value: Some(v.into()),
        });
    }
    prim
}

/// Where replica `i`'s attribute tools (attrd_updater, crm_attribute) work: its bundle's
/// replicas, its primitive, and whether attributes are kept on the host.
fn attribute_scope(
    bundle: &Bundle,
    prim: &crate::model::Primitive,
    i: u32,
) -> crate::model::attributes::Scope {
    let spec = &bundle.spec;
    crate::model::attributes::Scope {
        bundle: bundle.name().to_string(),
        engine: spec.container().0.as_str().to_string(),
        image: spec.container().1.image.clone(),
        me: bundle.replica_name(i),
        peers: (0..spec.replicas())
            .map(|j| bundle.replica_name(j))
            .collect(),
        primitive: prim.id.clone(),
        agent: prim.agent(),
        promotable: spec.promoted_max() > 0,
        host_target: prim.meta(ATTRIBUTE_TARGET) == Some("host"),
    }
}

/// The stop grace of a bundle that sets no `--stop-timeout`: with a primitive, its stop
/// operation's timeout and a margin (the remote agent, PID 1, stops the primitive on SIGTERM
/// and exits; Docker must not kill it halfway), otherwise Docker's 10 s.
fn stop_grace(spec: &crate::model::BundleSpec) -> i64 {
    const MARGIN_SECS: u64 = 5;
    match &spec.primitive {
        Some(p) => {
            let stop =
                crate::model::operation::Ops::for_action(p, crate::model::operation::Action::Stop);
            i64::try_from(stop.timeout.as_secs() + MARGIN_SECS).unwrap_or(i64::MAX)
        }
        None => DEFAULT_STOP_TIMEOUT_SECS,
    }
}

/// /etc/hosts for every replica of a bundle: localhost, then each replica's address and name
/// (Pacemaker's add-host).
pub fn hosts_content(bundle: &Bundle) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for j in 0..bundle.spec.replicas() {
        if let Some(a) = bundle.spec.replica_address(j) {
            s.push_str(&format!("{a}\t{}\n", bundle.replica_name(j)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::seed;

    #[test]
    fn seed_replica_two() {
        let b = seed();
        let d = desired(&b, 2, Path::new("/var/lib/berth/node/n1"), None).unwrap();
        assert_eq!(d.name, "httpd-bundle-docker-2");
        assert_eq!(d.hostname, "httpd-bundle-2");
        assert_eq!(d.ports[0].to_string(), "192.168.24.114:80->80/tcp");
        assert_eq!(
            d.binds,
            vec![
                "/srv/www:/var/www/html:rw",
                "/var/log/pacemaker/bundles/httpd-bundle-2:/etc/httpd/logs:rw",
                "/var/lib/berth/node/n1/httpd-bundle/httpd-bundle-2/hosts:/etc/hosts:ro",
            ]
        );
        assert_eq!(
            d.dirs,
            vec![(
                PathBuf::from("/var/log/pacemaker/bundles"),
                "httpd-bundle-2".to_string()
            )]
        );
        let hosts = d.hosts.as_ref().unwrap();
        assert!(hosts.contains("192.168.24.112\thttpd-bundle-0\n"));
        assert!(hosts.contains("192.168.24.114\thttpd-bundle-2\n"));
    }

    #[test]
    fn hash_ignores_what_does_not_shape_the_container() {
        let b = seed();
        let dir = Path::new("/s");
        let h = desired(&b, 0, dir, None).unwrap().hash();
        let mut scaled = b.clone();
        scaled.spec.docker.as_mut().unwrap().replicas = Some(5);
        scaled.metadata.generation = Some(7);
        assert_eq!(
            desired(&scaled, 0, dir, None).unwrap().hash(),
            h,
            "scaling keeps replica 0"
        );
        let mut retagged = b.clone();
        retagged.spec.docker.as_mut().unwrap().image = "pcmk:httpd-2".into();
        assert_ne!(
            desired(&retagged, 0, dir, None).unwrap().hash(),
            h,
            "a new image replaces it"
        );
    }

    #[test]
    fn bad_options_name_the_field() {
        let mut b = seed();
        b.spec.docker.as_mut().unwrap().options = Some("--restart always".into());
        let e = desired(&b, 0, Path::new("/s"), None).unwrap_err();
        assert!(
            matches!(
                e,
                ShapeError::Options {
                    engine: "docker",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("spec.docker.options: --restart: not allowed"),
            "{e}"
        );
    }
}
