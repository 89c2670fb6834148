//! The container engine behind a narrow trait: Docker (and podman's Docker-compatible API)
//! through bollard is the real one; a simulated engine can stand in for benchmarks.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, DeviceMapping, EventMessageTypeEnum,
    HostConfig, HostConfigLogConfig, PortBinding, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::model::container::{DesiredContainer, LABEL_MANAGED_BY, LABEL_NODE};

/// A container the engine has, as the agent needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
}

/// Something happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    pub id: String,
    pub action: EngineAction,
    /// The container's labels, and for `die` its `exitCode`.
    pub attributes: BTreeMap<String, String>,
}

/// A container event's action, as far as the node agent acts on it (Docker's and podman's
/// words: `start`, `die`, `destroy`; anything else, `stop`, `kill`, `create`, …, is kept as
/// said and changes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineAction {
    Start,
    /// The container's process ended (its `exitCode` among the attributes).
    Die,
    /// The container was removed.
    Destroy,
    Other(String),
}

impl From<&str> for EngineAction {
    fn from(word: &str) -> EngineAction {
        match word {
            "start" => EngineAction::Start,
            "die" => EngineAction::Die,
            "destroy" => EngineAction::Destroy,
            other => EngineAction::Other(other.to_string()),
        }
    }
}

impl EngineAction {
    /// The engine's word.
    pub fn as_str(&self) -> &str {
        match self {
            EngineAction::Start => "start",
            EngineAction::Die => "die",
            EngineAction::Destroy => "destroy",
            EngineAction::Other(word) => word,
        }
    }
}

/// Why an engine call failed. All are retried by the next reconcile, with backoff.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the container engine at {at}: {source}")]
    Connect {
        at: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{op} {target}: {source}")]
    Call {
        op: &'static str,
        target: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The simulated engine ([`super::sim::SimEngine`]) refused a call.
    #[error("{op} {target}: {reason} (simulated engine)")]
    Simulated {
        op: &'static str,
        target: String,
        reason: String,
        /// A name conflict, as Docker's 409 on create.
        conflict: bool,
    },
}

impl EngineError {
    /// A create refused because the name is taken (Docker's HTTP 409; podman 4 answers 500
    /// with "that name is already in use"): usually the previous copy of a replica that is
    /// being removed, on this engine or, when several agents share it, by another node's
    /// agent. Not the replica's fault: retried without counting a failure.
    pub fn is_name_conflict(&self) -> bool {
        match self {
            EngineError::Simulated { conflict, .. } => *conflict,
            EngineError::Call {
                op: "create",
                source:
                    bollard::errors::Error::DockerResponseServerError {
                        status_code,
                        message,
                    },
                ..
            } => {
                *status_code == 409
                    || (*status_code == 500 && message.contains("name is already in use"))
            }
            _ => false,
        }
    }
}

/// What the engine says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// `docker 20.10.24 (API 1.41)`.
    pub name: String,
    pub cpus: u32,
    pub memory: u64,
    /// The cgroup parent every container of the node is created in (its fence scope, see
    /// [`super::fence`]); None when the engine has no cgroups to fence through.
    pub cgroup_parent: Option<String>,
}

/// What the node agent needs of a container engine.
pub trait Engine: Clone + Send + Sync + 'static {
    /// Name and version, CPUs, memory, and the node's cgroup parent.
    fn describe(&self, node: &str) -> impl Future<Output = Result<EngineInfo, EngineError>> + Send;
    /// Every container this node owns (labels `managed-by=berth`, `node=<node>`), any state.
    fn list(&self, node: &str) -> impl Future<Output = Result<Vec<Observed>, EngineError>> + Send;
    /// Creates a container; returns its id.
    fn create(
        &self,
        c: &DesiredContainer,
        node: &str,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Stops with the given timeout (None: the container's own), then removes.
    fn remove(
        &self,
        id: &str,
        stop_timeout: Option<Duration>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Container events of this node's containers, as they happen.
    fn events(&self, node: &str) -> BoxStream<'static, Result<EngineEvent, EngineError>>;
}

/// Docker (or podman's compatible socket) through bollard.
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
    /// The engine's cgroup driver (`cgroupfs`, `systemd`), read once at connect.
    cgroup_driver: Option<String>,
}

impl DockerEngine {
    /// Connects to `host` (`unix:///run/podman/podman.sock`, `tcp://…`), else to
    /// `DOCKER_HOST` as the docker CLI does, else to the local Docker socket, and negotiates
    /// the API version (this Debian's Docker speaks 1.41).
    pub async fn connect(host: Option<&str>) -> Result<DockerEngine, EngineError> {
        let from_env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let host = host.or(from_env.as_deref());
        let at = host.unwrap_or("unix:///var/run/docker.sock").to_string();
        let connect = |source| EngineError::Connect {
            at: at.clone(),
            source,
        };
        let docker = match host {
            None => Docker::connect_with_socket_defaults(),
            Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
                Docker::connect_with_socket(h, 120, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION),
        }
        .map_err(connect)?;
        let docker = docker.negotiate_version().await.map_err(connect)?;
        let cgroup_driver = docker
            .info()
            .await
            .map_err(connect)?
            .cgroup_driver
            .map(|d| d.to_string())
            .filter(|d| d == "cgroupfs" || d == "systemd");
        Ok(DockerEngine {
            docker,
            cgroup_driver,
        })
    }

    /// The node's cgroup parent under this engine's driver.
    fn cgroup_parent(&self, node: &str) -> Option<String> {
        self.cgroup_driver
            .as_deref()
            .map(|d| super::fence::cgroup_parent(d, node))
    }

    /// The bollard client, for tests and tools.
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

fn call(op: &'static str, target: &str) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    let target = target.to_string();
    move |source| EngineError::Call { op, target, source }
}

fn owner_filter(node: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_MANAGED_BY}=berth"),
            format!("{LABEL_NODE}={node}"),
        ],
    )])
}

/// Is a bollard error a 404 (the container is already gone)?
fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `--health-*` and `--no-healthcheck` as the create call takes them (`--health-cmd` is run
/// by a shell, as the docker CLI runs it); None keeps the image's.
fn health(o: &crate::model::options::RunOptions) -> Option<bollard::models::HealthConfig> {
    let timing = o.health_interval.is_some()
        || o.health_timeout.is_some()
        || o.health_start_period.is_some()
        || o.health_retries.is_some();
    if !o.no_healthcheck && o.health_cmd.is_none() && !timing {
        return None;
    }
    let test = if o.no_healthcheck {
        Some(vec!["NONE".to_string()])
    } else {
        o.health_cmd
            .as_ref()
            .map(|c| vec!["CMD-SHELL".to_string(), c.clone()])
    };
    Some(bollard::models::HealthConfig {
        test,
        interval: o.health_interval,
        timeout: o.health_timeout,
        start_period: o.health_start_period,
        retries: o.health_retries,
        ..Default::default()
    })
}

/// The create body for a desired container, in cgroup parent `cgroup_parent`.
fn create_body(
    c: &DesiredContainer,
    node: &str,
    cgroup_parent: Option<String>,
) -> ContainerCreateBody {
    let o = &c.options;
    let host = host_config(c, cgroup_parent);
    ContainerCreateBody {
        image: Some(c.image.clone()),
        cmd: c.cmd.clone(),
        entrypoint: o.entrypoint.as_ref().map(|e| vec![e.clone()]),
        // Under the host's UTS namespace the host's name is shared: none may be set.
        hostname: if o.uts.as_deref() == Some("host") {
            None
        } else {
            o.hostname
                .clone()
                .or_else(|| c.set_hostname.then(|| c.hostname.clone()))
        },
        healthcheck: health(o),
        env: none_if_empty(&o.env),
        user: o.user.clone(),
        working_dir: o.workdir.clone(),
        labels: Some(c.labels(node).into_iter().collect()),
        exposed_ports: (!c.ports.is_empty()).then(|| {
            let mut v: Vec<String> = c
                .ports
                .iter()
                .map(|p| format!("{}/tcp", p.container_port))
                .collect();
            v.dedup();
            v
        }),
        stop_signal: o.stop_signal.clone(),
        stop_timeout: Some(c.stop_timeout_secs),
        host_config: Some(host),
        ..ContainerCreateBody::default()
    }
}

/// A list Docker takes as absent when empty.
fn none_if_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// A map Docker takes as absent when empty.
fn map(m: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Each published port, by the container port it forwards to (`80/tcp`).
fn port_bindings(c: &DesiredContainer) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &c.ports {
        port_bindings
            .entry(format!("{}/tcp", p.container_port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.map(|i| i.to_string()),
                host_port: Some(p.host_port.to_string()),
            });
    }
    port_bindings
}

/// `--device HOST[:INSIDE[:PERMISSIONS]]`.
fn device(d: &str) -> DeviceMapping {
    let mut parts = d.splitn(3, ':');
    let host = parts.next().unwrap_or_default().to_string();
    let inside = parts.next().map(str::to_string).unwrap_or(host.clone());
    DeviceMapping {
        path_on_host: Some(host),
        path_in_container: Some(inside),
        cgroup_permissions: Some(parts.next().unwrap_or("rwm").to_string()),
    }
}

/// The host side of a container: binds, ports, limits, namespaces, devices, logging.
fn host_config(c: &DesiredContainer, cgroup_parent: Option<String>) -> HostConfig {
    let o = &c.options;
    let port_bindings = port_bindings(c);
    HostConfig {
        binds: none_if_empty(&[c.binds.clone(), c.unhashed_binds.clone()].concat()),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        network_mode: c.network_mode.clone(),
        extra_hosts: none_if_empty(&o.add_host),
        cap_add: none_if_empty(&o.cap_add),
        cap_drop: none_if_empty(&o.cap_drop),
        memory: o.memory,
        memory_swap: o.memory_swap,
        memory_reservation: o.memory_reservation,
        nano_cpus: o.nano_cpus,
        cpu_shares: o.cpu_shares,
        cpuset_cpus: o.cpuset_cpus.clone(),
        pids_limit: o.pids_limit,
        cgroup_parent,
        privileged: Some(o.privileged),
        readonly_rootfs: Some(o.read_only),
        init: o.init.then_some(true),
        security_opt: none_if_empty(&o.security_opt),
        shm_size: o.shm_size,
        tmpfs: map(&o.tmpfs),
        dns: none_if_empty(&o.dns),
        dns_search: none_if_empty(&o.dns_search),
        dns_options: none_if_empty(&o.dns_option),
        sysctls: map(&o.sysctls),
        group_add: none_if_empty(&o.group_add),
        devices: (!o.devices.is_empty()).then(|| o.devices.iter().map(|d| device(d)).collect()),
        ulimits: (!o.ulimits.is_empty()).then(|| {
            o.ulimits
                .iter()
                .map(|(n, (s, h))| ResourcesUlimits {
                    name: Some(n.clone()),
                    soft: Some(*s),
                    hard: Some(*h),
                })
                .collect()
        }),
        ipc_mode: o.ipc.clone(),
        pid_mode: o.pid.clone(),
        uts_mode: o.uts.clone(),
        userns_mode: o.userns.clone(),
        cpu_period: o.cpu_period,
        cpu_quota: o.cpu_quota,
        oom_score_adj: o.oom_score_adj,
        log_config: o.log_driver.as_ref().map(|d| HostConfigLogConfig {
            typ: Some(d.clone()),
            config: map(&o.log_opts),
        }),
        ..HostConfig::default()
    }
}

impl Engine for DockerEngine {
    async fn describe(&self, node: &str) -> Result<EngineInfo, EngineError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(call("version", "engine"))?;
        let info = self.docker.info().await.map_err(call("info", "engine"))?;
        let engine = format!(
            "docker {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        );
        Ok(EngineInfo {
            name: engine,
            cpus: info.ncpu.unwrap_or(0).max(0) as u32,
            memory: info.mem_total.unwrap_or(0).max(0) as u64,
            cgroup_parent: self.cgroup_parent(node),
        })
    }

    async fn list(&self, node: &str) -> Result<Vec<Observed>, EngineError> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(owner_filter(node)),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(call("list containers of node", node))?;
        Ok(list
            .into_iter()
            .map(|c| Observed {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                running: matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING
                    )
                ),
            })
            .collect())
    }

    async fn create(&self, c: &DesiredContainer, node: &str) -> Result<String, EngineError> {
        let opts = CreateContainerOptions {
            name: Some(c.name.clone()),
            ..Default::default()
        };
        let resp = self
            .docker
            .create_container(Some(opts), create_body(c, node, self.cgroup_parent(node)))
            .await
            .map_err(call("create", &c.name))?;
        Ok(resp.id)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(call("start", id))
    }

    async fn remove(&self, id: &str, stop_timeout: Option<Duration>) -> Result<(), EngineError> {
        let stop = StopContainerOptions {
            t: stop_timeout.map(|t| t.as_secs() as i32),
            ..Default::default()
        };
        match self.docker.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(call("stop", id)(e)),
        }
        let rm = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(rm)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(call("remove", id)(e)),
        }
    }

    fn events(&self, node: &str) -> BoxStream<'static, Result<EngineEvent, EngineError>> {
        let mut filters = owner_filter(node);
        filters.insert("type".into(), vec!["container".into()]);
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let node = node.to_string();
        self.docker
            .events(Some(opts))
            .filter_map(move |ev| {
                let node = node.clone();
                async move {
                    match ev {
                        Err(e) => Some(Err(call("events of node", &node)(e))),
                        Ok(m) if m.typ != Some(EventMessageTypeEnum::CONTAINER) => None,
                        Ok(m) => {
                            let actor = m.actor.unwrap_or_default();
                            Some(Ok(EngineEvent {
                                id: actor.id.unwrap_or_default(),
                                action: EngineAction::from(m.action.as_deref().unwrap_or_default()),
                                attributes: actor
                                    .attributes
                                    .unwrap_or_default()
                                    .into_iter()
                                    .collect(),
                            }))
                        }
                    }
                }
            })
            .boxed()
    }
}
