//! Fencing without the engine. Every container of a node is created in one cgroup, the
//! node's *scope* (`/berth/<node>` under Docker's cgroupfs driver, `berth.slice` under the
//! systemd driver), so the whole node can be frozen, thawed and killed with a few writes to
//! the cgroup filesystem, whatever state dockerd or the agent's own loop is in: a hung engine
//! cannot delay a fence. Freezing is the fence (a frozen process serves nothing and writes
//! nothing); a freeze that the lease outlived is undone, one it did not is turned into a kill.
//! The node agent's fence task and the watchdog process ([`super::watchdog`]) both fence
//! through here.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::address;
use super::local::load_addresses;

/// Where a cgroup filesystem is mounted on a host that runs Docker.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup parent a node's containers are created in, for the engine's cgroup driver.
/// Under the systemd driver a parent must be a slice name; every agent on that engine shares
/// it (one node per engine is the real-host case).
pub fn cgroup_parent(driver: &str, node: &str) -> String {
    if driver == "systemd" {
        "berth.slice".to_string()
    } else {
        format!("/berth/{node}")
    }
}

fn read_self_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default()
}

/// Whether the fence can reach the engine's containers through the cgroup filesystem at
/// `root`, for a process whose `/proc/self/cgroup` reads `text`: the process's own cgroup
/// is found below `root` at the path that file names, and the hierarchy is writable. An agent
/// in a container without the host's cgroups fails one or the other: under cgroup v1 `root`
/// holds only the container's own cgroup (its path, `/docker/<id>`, is not below it), and
/// under v2 the container's own namespace is mounted read-only.
fn cgroups_reachable_at(root: &Path, text: &str) -> bool {
    // The hierarchy the fence writes to ([`Scope::under`]): v2's, or v1's freezer.
    let hierarchy = if root.join("cgroup.controllers").exists() {
        root.to_path_buf()
    } else {
        root.join("freezer")
    };
    let v2 = hierarchy == root;
    let own = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let mine = match controllers {
            "" => v2,
            c => !v2 && c.split(',').any(|c| c == "freezer"),
        };
        mine.then(|| hierarchy.join(path.trim_start_matches('/')))
    });
    own.is_some_and(|dir| dir.is_dir())
        && nix::unistd::access(&hierarchy, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// Which cgroup interface the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// cgroup v1: the freezer hierarchy (`freezer.state`), processes killed one by one.
    V1,
    /// cgroup v2: `cgroup.freeze` and `cgroup.kill`.
    V2,
}

/// The child cgroup of a node's scope where podman (cgroupfs) puts its container monitors
/// (`conmon`): the engine's own processes, as Docker's shims are (outside the scope). A
/// fence leaves them, so that they see their containers die and the engine reports it;
/// killed, podman would keep the dead containers as running and report nothing.
pub const ENGINE_MONITORS: &str = "conmon";

/// A node's scope: the cgroup holding every one of its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The scope's directory in the freezer hierarchy (v1) or the unified one (v2).
    dir: PathBuf,
    version: Version,
}

/// Why a fence step failed. The fence is retried until it succeeds.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: still {left} process(es) after {tries} kill rounds")]
    Survivors {
        path: PathBuf,
        left: usize,
        tries: u32,
    },
}

impl Scope {
    /// The scope for cgroup parent `parent` on this host (`None` when the host has neither a
    /// v2 unified hierarchy nor a v1 freezer: then only the engine can fence).
    pub fn for_parent(parent: &str) -> Option<Scope> {
        if !cgroups_reachable_at(Path::new(CGROUP_ROOT), &read_self_cgroup()) {
            tracing::warn!(
                "the cgroup filesystem at {CGROUP_ROOT} is not the engine's or not writable here: this agent cannot freeze or kill the node's scope {parent}, and fences by dropping addresses only (in a container, run it with --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup)"
            );
            return None;
        }
        Scope::under(Path::new(CGROUP_ROOT), parent)
    }

    fn under(root: &Path, parent: &str) -> Option<Scope> {
        let rel = parent.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c == ".") {
            return None;
        }
        if root.join("cgroup.controllers").exists() {
            Some(Scope {
                dir: root.join(rel),
                version: Version::V2,
            })
        } else if root.join("freezer").is_dir() {
            Some(Scope {
                dir: root.join("freezer").join(rel),
                version: Version::V1,
            })
        } else {
            None
        }
    }

    /// The scope's directory (v1: in the freezer hierarchy).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, file: &str, value: &str) -> Result<(), FenceError> {
        let path = self.dir.join(file);
        std::fs::write(&path, value).map_err(|source| FenceError::Io {
            op: "write",
            path,
            source,
        })
    }

    /// Freezes every process of the node's containers (and any container created later in
    /// the scope). A scope that does not exist yet holds nothing: done.
    pub fn freeze(&self) -> Result<(), FenceError> {
        self.set_frozen(true)
    }

    /// Undoes [`Scope::freeze`].
    pub fn thaw(&self) -> Result<(), FenceError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), FenceError> {
        if !self.dir.is_dir() {
            return Ok(());
        }
        match (self.version, frozen) {
            (Version::V1, true) => self.write("freezer.state", "FROZEN"),
            (Version::V1, false) => self.write("freezer.state", "THAWED"),
            (Version::V2, true) => self.write("cgroup.freeze", "1"),
            (Version::V2, false) => self.write("cgroup.freeze", "0"),
        }
    }

    /// Is the scope frozen (as far as its own state file says)?
    pub fn frozen(&self) -> bool {
        let (file, want) = match self.version {
            Version::V1 => ("freezer.state", "FROZEN"),
            Version::V2 => ("cgroup.freeze", "1"),
        };
        std::fs::read_to_string(self.dir.join(file)).is_ok_and(|s| s.trim() == want)
    }

    /// Every process id of the node's containers: in the scope and the cgroups below it,
    /// but for the engine's own container monitors (podman's `conmon`, see
    /// [`ENGINE_MONITORS`]).
    pub fn processes(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let mut dirs = vec![self.dir.clone()];
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                // Cgroup directories are real directories; nothing here is a link.
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && !(d == self.dir && e.file_name() == ENGINE_MONITORS)
                {
                    dirs.push(e.path());
                }
            }
            if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out
    }

    /// v2: `cgroup.kill` in each container's cgroup below the scope (not the engine's
    /// monitors'); whether every write was taken and no process sits in the scope itself
    /// (else the caller signals each).
    fn kill_containers_v2(&self) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return false;
        };
        let own = std::fs::read_to_string(self.dir.join("cgroup.procs"));
        own.is_ok_and(|t| t.trim().is_empty())
            && entries
                .flatten()
                .filter(|e| {
                    e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != ENGINE_MONITORS
                })
                .all(|e| std::fs::write(e.path().join("cgroup.kill"), "1").is_ok())
    }

    /// Kills every process of the node's containers without a grace period, and keeps at it until none
    /// is left: freeze (nothing forks away), SIGKILL each, thaw (v1 delivers the kill on
    /// thaw); v2 writes `cgroup.kill`. Leaves the scope thawed and empty.
    pub fn kill(&self) -> Result<(), FenceError> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if !self.dir.is_dir() {
            return Ok(());
        }
        const TRIES: u32 = 100;
        for _ in 0..TRIES {
            if self.version == Version::V2 && self.kill_containers_v2() {
                // Killed; thawing lets the frozen ones die.
            } else {
                self.freeze()?;
                for pid in self.processes() {
                    // Gone already is fine.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            self.thaw()?;
            let until = Instant::now() + Duration::from_millis(100);
            while Instant::now() < until {
                if self.processes().is_empty() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Err(FenceError::Survivors {
            path: self.dir.clone(),
            left: self.processes().len(),
            tries: TRIES,
        })
    }
}

/// The fence itself: freezes the node's scope and removes the replica addresses this node
/// added (recorded in `<state dir>/addresses.json`), so nothing of a replica serves or is
/// reachable here. Retries the freeze until it holds (bounded by `within`); the addresses
/// go whatever the freeze did.
pub async fn freeze_node(scope: Option<&Scope>, state_dir: &Path, within: Duration) {
    if let Some(s) = scope {
        let until = Instant::now() + within;
        loop {
            match s.freeze() {
                Ok(()) => break,
                Err(e) if Instant::now() < until => {
                    tracing::error!("fence: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    tracing::error!("fence: {e}; giving up on freezing");
                    break;
                }
            }
        }
    }
    drop_addresses(state_dir).await;
}

/// Kills the node's scope (see [`Scope::kill`]) on a blocking thread, and drops the
/// addresses.
pub async fn kill_node(scope: Option<&Scope>, state_dir: &Path) {
    if let Some(s) = scope {
        let s = s.clone();
        match tokio::task::spawn_blocking(move || s.kill()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("fence: {e}"),
            Err(e) => tracing::error!("fence: kill task: {e}"),
        }
    }
    drop_addresses(state_dir).await;
}

/// Removes every address the node's record lists (it stays recorded: the agent adds back
/// what its replicas still need, and forgets the rest).
pub async fn drop_addresses(state_dir: &Path) {
    let addrs: Vec<Ipv4Addr> = load_addresses(state_dir).into_iter().collect();
    for ip in addrs {
        if let Err(e) = address::remove(ip).await {
            tracing::warn!("fence: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_follows_the_driver() {
        assert_eq!(cgroup_parent("cgroupfs", "n1"), "/berth/n1");
        assert_eq!(cgroup_parent("systemd", "n1"), "berth.slice");
    }

    #[test]
    fn the_engines_container_monitors_are_not_the_nodes_processes() {
        // podman (cgroupfs): <scope>/libpod-<id> holds a container, <scope>/conmon its monitor.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("freezer")).unwrap();
        let scope = Scope::under(root.path(), "/berth/n1").unwrap();
        for (dir, pids) in [
            ("libpod-abc", "10\n11\n"),
            ("conmon", "5\n"),
            ("abc", "12\n"),
        ] {
            let d = scope.dir().join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup.procs"), pids).unwrap();
        }
        std::fs::write(scope.dir().join("cgroup.procs"), "").unwrap();
        let mut pids = scope.processes();
        pids.sort();
        assert_eq!(pids, [10, 11, 12]);
    }

    #[test]
    fn the_fence_needs_the_engines_cgroups_writable() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "freezer").unwrap();
        std::fs::create_dir_all(v2.path().join("system.slice/docker-ab.scope")).unwrap();
        assert!(cgroups_reachable_at(
            v2.path(),
            "0::/system.slice/docker-ab.scope\n"
        ));
        assert!(cgroups_reachable_at(v2.path(), "0::/\n"));
        assert!(!cgroups_reachable_at(v2.path(), "0::/other\n"));
        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v1.path().join("freezer/docker/ab")).unwrap();
        let hybrid = "7:cpu,cpuacct:/docker/ab\n3:freezer:/docker/ab\n0::/docker/ab\n";
        assert!(cgroups_reachable_at(v1.path(), hybrid));
        // v1 in a container without the host's hierarchy: its own path is not below the
        // root it sees.
        assert!(!cgroups_reachable_at(
            v1.path(),
            "3:freezer:/docker/cd\n0::/docker/cd\n"
        ));
        assert!(!cgroups_reachable_at(v1.path(), ""));
    }

    #[test]
    fn scope_picks_the_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(Scope::under(root.path(), "/berth/n1"), None);
        std::fs::create_dir(root.path().join("freezer")).unwrap();
        let v1 = Scope::under(root.path(), "/berth/n1").unwrap();
        assert_eq!(v1.version, Version::V1);
        assert_eq!(v1.dir(), root.path().join("freezer/berth/n1"));
        std::fs::write(root.path().join("cgroup.controllers"), "").unwrap();
        let v2 = Scope::under(root.path(), "berth.slice").unwrap();
        assert_eq!(v2.version, Version::V2);
        assert_eq!(v2.dir(), root.path().join("berth.slice"));
        assert_eq!(Scope::under(root.path(), "/berth/../etc"), None);
        assert_eq!(Scope::under(root.path(), "/"), None);
    }

    #[test]
    fn a_scope_not_yet_made_holds_nothing() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("freezer")).unwrap();
        let s = Scope::under(root.path(), "/berth/none").unwrap();
        s.freeze().unwrap();
        s.thaw().unwrap();
        s.kill().unwrap();
        assert!(s.processes().is_empty());
        assert!(!s.frozen());
    }
}
