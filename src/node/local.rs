//! What the node agent keeps on its own host: each replica's directory and the files it
//! prepares there, the record of the addresses it added, and the host policy as it resolves
//! on this host. Every path a container can change is walked without following links
//! ([`Dir`]).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::files::Dir;
use crate::model::cluster::PrimitiveState;
use crate::model::container::DesiredContainer;
use crate::model::layout;
use crate::model::policy::{self, Permits};

/// The largest file the agent reads from a replica's directory.
pub const MAX_FILE: usize = 1024 * 1024;

/// The file in the state directory listing the addresses this agent added.
const ADDRESSES: &str = "addresses.json";

/// A replica's host directory, `<state dir>/<bundle>/<replica>`, opened without following
/// links below the state directory.
pub fn replica_files(state_dir: &Path, bundle: &str, index: u32) -> std::io::Result<Dir> {
    Dir::root(state_dir)?
        .sub(bundle)?
        .sub(&crate::model::replica_name(bundle, index))
}

/// What a replica's remote agent left in its state file: the container's file, read
/// without following links, bounded; None when absent or unreadable.
pub fn left_state(state_dir: &Path, bundle: &str, index: u32) -> Option<PrimitiveState> {
    let bytes = replica_files(state_dir, bundle, index)
        .and_then(|d| d.sub(layout::RUN_SUBDIR))
        .and_then(|d| d.read(layout::STATE_JSON, MAX_FILE))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Creates what a replica's container needs before it starts: its `source-dir-root`
/// subdirectories, its /etc/hosts, and for a primitive the remote agent's configuration,
/// key and the name of this node (`host`). Nothing is written through a link; the error is
/// why the replica cannot run safely.
pub fn prepare_files(state_dir: &Path, d: &DesiredContainer, host: &str) -> std::io::Result<()> {
    for (root, name) in &d.dirs {
        Dir::root(root)?.sub(name)?;
    }
    if d.hosts.is_none() && d.remote_config.is_none() {
        return Ok(());
    }
    let replica = replica_files(state_dir, &d.bundle, d.index)?;
    if let Some(content) = &d.hosts
        && replica.read(layout::HOSTS_FILE, MAX_FILE).ok().as_deref() != Some(content.as_bytes())
    {
        // Rewritten in place (not renamed): the container's bind mount follows the inode,
        // so a new file would not be seen inside.
        replica.rewrite(layout::HOSTS_FILE, content.as_bytes())?;
    }
    if let Some(cfg) = &d.remote_config {
        let conf = replica.sub(layout::CONFIG_SUBDIR)?;
        replica.sub(layout::RUN_SUBDIR)?;
        if conf.read(layout::REMOTE_JSON, MAX_FILE).ok().as_deref() != Some(cfg.as_bytes()) {
            conf.write(layout::REMOTE_JSON, cfg.as_bytes(), 0o644)?;
        }
        if conf.read(layout::PHYSICAL_HOST, MAX_FILE).ok().as_deref() != Some(host.as_bytes()) {
            conf.write(layout::PHYSICAL_HOST, host.as_bytes(), 0o644)?;
        }
        if !conf.exists(layout::AUTHKEY) {
            let key = crate::remote::channel::new_key()?;
            conf.write(layout::AUTHKEY, key.as_bytes(), 0o600)?;
        }
    }
    Ok(())
}

/// The addresses an earlier run of this agent added.
pub fn load_addresses(state_dir: &Path) -> BTreeSet<Ipv4Addr> {
    Dir::root(state_dir)
        .and_then(|d| d.read(ADDRESSES, MAX_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records the addresses this agent added in `<state dir>/addresses.json`, so that an agent
/// restarted on this node adopts them (and removes them when their replicas leave) instead
/// of taking them for the host's own, and so that a fence drops them all.
pub fn save_addresses(state_dir: &Path, added: &BTreeSet<Ipv4Addr>) -> std::io::Result<()> {
    let value = serde_json::to_vec(added).expect("addresses serialize");
    Dir::root(state_dir).and_then(|d| d.write(ADDRESSES, &value, 0o644))
}

/// The node's host policy as it resolves on this host (see [`policy`]).
#[derive(Debug)]
pub struct HostPolicy {
    name: String,
    /// The node's permits, host directory prefixes with their links resolved.
    permits: Permits,
    /// The agent's state directory, resolved: never given to a container.
    state_dir: PathBuf,
}

impl HostPolicy {
    /// Resolves the permitted prefixes and the state directory once, at start.
    pub fn resolve(name: &str, permits: &Permits, state_dir: &Path) -> HostPolicy {
        let mut permits = permits.clone();
        for p in &mut permits.source_dirs {
            *p = resolve_existing(Path::new(p.as_str()))
                .display()
                .to_string();
        }
        HostPolicy {
            name: name.to_string(),
            permits,
            state_dir: resolve_existing(state_dir),
        }
    }

    /// Why this node does not run `b`, or None. Host directories are checked as they
    /// resolve on this host (links in them followed).
    pub fn denied(&self, b: &crate::model::Bundle) -> Option<String> {
        self.refused(policy::needs(b))
    }

    /// Why a container whose storage mappings bind `sources` must not be created or started
    /// now: the same check as [`HostPolicy::denied`], on the host directories as they resolve
    /// at this moment (a container may have swapped one for a link since the assignment was
    /// read, or since the container last started).
    pub fn sources_denied(&self, sources: &[PathBuf]) -> Option<String> {
        self.refused(policy::Needs {
            source_dirs: sources.iter().map(|s| s.display().to_string()).collect(),
            ..Default::default()
        })
    }

    fn refused(&self, mut needs: policy::Needs) -> Option<String> {
        let mut missing = Vec::new();
        for d in &mut needs.source_dirs {
            let real = resolve_existing(Path::new(d));
            if real.starts_with(&self.state_dir) || self.state_dir.starts_with(&real) {
                missing.push(format!(
                    "host directory {d}: it holds the node agent's state directory"
                ));
            }
            *d = real.display().to_string();
        }
        missing.extend(self.permits.missing(&needs));
        (!missing.is_empty()).then(|| {
            format!(
                "not permitted on node {}: {}",
                self.name,
                missing.join("; ")
            )
        })
    }
}

/// `path` with its longest existing ancestor resolved (links followed), the rest appended:
/// where a bind mount of it would land once Docker creates the missing part.
fn resolve_existing(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}
