//! The contract between the node agent and the remote agent, in one place for both sides:
//! where things are inside a container of a bundle with a primitive, and how the per-replica
//! host directory is laid out. The channel protocol (client and server) is
//! [`crate::remote::channel`]; the configuration file is [`super::remote::RemoteConfig`].

/// Where the replica's runtime directory appears inside a container with a primitive,
/// read-write: the control socket, the remote agent's state file and the node attributes its
/// agents set. The node agent only reads there, without following links.
pub const REMOTE_DIR: &str = "/run/berth";
/// Where the replica's configuration appears inside such a container, read-only: the remote
/// agent's `remote.json` and the channel's `authkey`, written by the node agent.
pub const REMOTE_CONFIG_DIR: &str = "/etc/berth";
/// The per-replica host directory's parts: `config/` (mounted read-only at
/// [`REMOTE_CONFIG_DIR`]), `run/` (read-write at [`REMOTE_DIR`]) and `hosts` (read-only at
/// `/etc/hosts`). The directory itself is never mounted, so a container cannot replace them.
pub const CONFIG_SUBDIR: &str = "config";
pub const RUN_SUBDIR: &str = "run";
pub const HOSTS_FILE: &str = "hosts";
/// Where the berth binary appears inside such a container (read-only), and beside it as
/// `crm_attribute`, `crm_master` and `crm_node` for the agents (see [`super::attrs`]).
pub const REMOTE_BIN_DIR: &str = "/run/berth-bin";
pub const REMOTE_BIN: &str = "/run/berth-bin/berth";
/// File names: in `config/` (the node agent's) and in `run/` (the container's).
pub const REMOTE_JSON: &str = "remote.json";
pub const AUTHKEY: &str = "authkey";
/// In `config/`: the name of the node (host) the replica runs on, which agents get as
/// `OCF_RESKEY_CRM_meta_physical_host`. A file beside the configuration, not in it: it is not
/// part of the spec, so no container is replaced for it.
pub const PHYSICAL_HOST: &str = "physical-host";
pub const CONTROL_SOCKET: &str = "control.sock";
pub const STATE_JSON: &str = "state.json";
pub const ATTRIBUTES_JSON: &str = "attributes.json";

/// The names the tools run as.
pub const TOOLS: [&str; 3] = ["crm_attribute", "crm_master", "crm_node"];

/// Tools added later: bound into containers outside the spec hash, so that a berth upgrade
/// does not replace running containers to add them (they appear in containers created from
/// then on).
pub const LATER_TOOLS: [&str; 4] = ["crm_mon", "cibadmin", "attrd_updater", "pacemakerd"];
