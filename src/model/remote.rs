//! The remote agent's configuration: what a replica's remote agent (`berth remote`) is told to
//! supervise, as the node agent writes it into the container (JSON). Pure data, read by both
//! sides and by the container's shape ([`super::container`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Primitive;

/// What the remote agent is told to supervise (a JSON file the node agent writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteConfig {
    /// `OCF_RESOURCE_INSTANCE`.
    pub instance: String,
    pub primitive: Primitive,
    /// `OCF_ROOT` (default `/usr/lib/ocf`).
    #[serde(default = "default_ocf_root")]
    pub ocf_root: PathBuf,
    /// The bundle is promotable (promoted-max > 0): the primitive starts unpromoted and is
    /// promoted or demoted when the node agent asks.
    #[serde(default)]
    pub promotable: bool,
    /// Where lsb init scripts are (default `/etc/init.d`).
    #[serde(default = "default_initd")]
    pub initd: PathBuf,
    /// The control channel's unix socket (in the per-replica directory mapped in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<PathBuf>,
    /// Also listen on TCP at this port (Pacemaker's control-port), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_port: Option<u16>,
    /// Where to keep a copy of the state (for the node agent to read after the container
    /// has died, when the channel is gone with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
    /// The file holding the channel's authkey; required when a channel is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authkey_file: Option<PathBuf>,
    /// The replica's node name, as agents see it (`OCF_RESKEY_CRM_meta_on_node`, `crm_node -n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The replica's ordinal (`OCF_RESKEY_CRM_meta_clone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<u32>,
    /// Where `crm_attribute` and `crm_master` keep the replica's node attributes (see
    /// [`crate::remote::attrs`]); the promotion score is read from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes_file: Option<PathBuf>,
    /// The folder holding `crm_attribute`, `crm_master` and `crm_node`: put first on the
    /// agents' PATH, and their `HA_SBIN_DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_dir: Option<PathBuf>,
}

impl RemoteConfig {
    /// Supervises `primitive` as instance `primitive.id`, with the defaults: OCF root
    /// `/usr/lib/ocf`, init scripts in `/etc/init.d`, no channel, no state or attributes file.
    pub fn new(primitive: Primitive) -> RemoteConfig {
        RemoteConfig {
            instance: primitive.id.clone(),
            primitive,
            ocf_root: default_ocf_root(),
            promotable: false,
            initd: default_initd(),
            control_socket: None,
            control_port: None,
            state_file: None,
            authkey_file: None,
            node: None,
            clone: None,
            attributes_file: None,
            tools_dir: None,
        }
    }
}

fn default_initd() -> PathBuf {
    PathBuf::from("/etc/init.d")
}

fn default_ocf_root() -> PathBuf {
    PathBuf::from("/usr/lib/ocf")
}
