//! berth's Debian package (issue 34), installed with dpkg into a clean Debian root: a
//! debootstrap'd image (`berth-test/debian:1`, scripts/build-service-images.sh) run as a
//! container, nothing pulled. The package is scripts/build-deb.sh's (scripts/test.sh builds
//! it from the debug build and names it in `BERTH_DEB`).
//!
//! Runs: `berth --version`, `man berth`; each unit's `ExecStart` with `/etc/default/berth` as
//! systemd reads it (scripts/run-unit.sh: an `EnvironmentFile`, `$VAR` split on white space)
//! against the real etcd and dockerd (the controller leads under its `--name`, the node agent
//! registers under its `--lease-ttl`: the settings' flags arrived); an upgrade over
//! itself (settings kept); removal (the program gone, settings, berth's state and host
//! directories kept); purge (settings and the node agents' state gone, an etcd's data under
//! /var/lib/berth/up and host directories kept).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{TestPrefix, docker, etcd_endpoint, etcdctl};

const IMAGE: &str = "berth-test/debian:1";
const WAIT: Duration = Duration::from_secs(30);

/// The package under test: `BERTH_DEB`.
fn deb() -> String {
    let deb = std::env::var("BERTH_DEB").expect(
        "BERTH_DEB is not set: build the package with `bash scripts/build-deb.sh --debug` and set BERTH_DEB to the path it prints (scripts/test.sh does)",
    );
    assert!(
        std::path::Path::new(&deb).is_file(),
        "BERTH_DEB={deb}: no such file"
    );
    std::fs::canonicalize(&deb).unwrap().display().to_string()
}

/// A running container of the clean Debian image, removed on drop.
struct Root {
    name: String,
}

impl Root {
    fn start(name: &str, deb: &str) -> Root {
        let ok = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .expect("docker CLI")
            .status
            .success();
        assert!(
            ok,
            "{IMAGE} is missing: bash scripts/build-service-images.sh debian"
        );
        let _ = Command::new("docker").args(["rm", "-f", name]).output();
        // The host's network (etcd on loopback), Docker's socket, and the cgroup tree a
        // node agent fences in, as README's "berth in containers" runs a node agent.
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "berth-test=package",
            "--network",
            "host",
            "--cap-add",
            "NET_ADMIN",
            "--cgroupns",
            "host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            &format!("{deb}:/tmp/berth.deb:ro"),
            "-v",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/run-unit.sh:/tmp/run-unit.sh:ro"
            ),
            IMAGE,
            "sleep",
            "infinity",
        ]);
        Root {
            name: name.to_string(),
        }
    }

    /// `sh -c script` inside; its output.
    fn sh(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", &self.name, "sh", "-c", script])
            .output()
            .expect("docker exec")
    }

    /// `sh -c script` inside, which must succeed; its stdout.
    fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn exists(&self, path: &str) -> bool {
        self.sh(&format!("test -e '{path}'")).status.success()
    }

    /// Starts `unit`'s `ExecStart` as systemd would (scripts/run-unit.sh: its
    /// `EnvironmentFile`, the command line's `$VAR`s split on white space); its pid in
    /// `/run/<unit>.pid`, its output in `/run/<unit>.log`.
    fn start_unit(&self, unit: &str) {
        let o = Command::new("docker")
            .args([
                "exec",
                "-d",
                &self.name,
                "sh",
                "-c",
                &format!(
                    "echo $$ >/run/{unit}.pid; exec bash /tmp/run-unit.sh /lib/systemd/system/{unit}.service >/run/{unit}.log 2>&1"
                ),
            ])
            .output()
            .expect("docker exec");
        assert!(o.status.success(), "{unit}: {o:?}");
    }

    /// SIGTERM to a unit's process, as `systemctl stop` sends it (KillMode=process: the
    /// main process only).
    fn stop_unit(&self, unit: &str) {
        self.ok(&format!("kill -TERM \"$(cat /run/{unit}.pid)\""));
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// Polls `f` every 100 ms until it holds, or fails naming `what` after `WAIT`.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {WAIT:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn keys_under(prefix: &str) -> Vec<String> {
    etcdctl(&["get", "--prefix", "--keys-only", prefix])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_package_installs_runs_its_units_upgrades_and_removes_keeping_data() {
    let deb = deb();
    let p = TestPrefix::new("deb");
    let tag = format!("deb{}", std::process::id() % 100_000);
    let root = Root::start(&format!("berth-test-{tag}"), &deb);

    // Installed: the program, its man pages, its settings; nothing running.
    root.ok("dpkg -i /tmp/berth.deb");
    let version = root.ok("berth --version");
    assert!(
        version.starts_with(&format!("berth {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let page = root.ok("man -P cat berth 2>/dev/null");
    assert!(page.contains("berth"), "{page}");
    assert!(
        root.ok("man -w berth-node")
            .contains("/usr/share/man/man1/berth-node.1")
    );
    assert!(root.exists("/usr/share/bash-completion/completions/berth"));
    let defaults = root.ok("cat /etc/default/berth");
    assert!(defaults.contains("BERTH_NODE_ARGS="), "{defaults}");
    assert!(
        !root.exists("/run/berth-node.service.pid"),
        "started on install"
    );

    // The units' commands with the settings a user writes, against the real etcd and
    // dockerd: the controller leads, the node agent registers; both stop on SIGTERM.
    let node = format!("{tag}-n");
    root.ok(&format!(
        "cat >>/etc/default/berth <<'EOF'
BERTH_ETCD=http://{}
BERTH_PREFIX={}
BERTH_NODE_NAME={node}
BERTH_NODE_ARGS=--lease-ttl 3s --no-metrics
BERTH_CONTROLLER_ARGS=--name {tag}-c --no-metrics
EOF",
        etcd_endpoint(),
        p.prefix
    ));
    root.start_unit("berth-controller");
    root.start_unit("berth-node");
    let node_key = format!("{}/nodes/{node}", p.prefix);
    until("the node agent registered", || {
        keys_under(&node_key).contains(&node_key)
    });
    until("the controller leads under its --name", || {
        etcdctl(&[
            "get",
            "--prefix",
            "--print-value-only",
            &format!("{}/election/", p.prefix),
        ])
        .contains(&format!("{tag}-c"))
    });
    // The node's registration lease is the 3 s of BERTH_NODE_ARGS (the default is 5 s).
    let kv = etcdctl(&["get", &node_key, "-w", "fields"]);
    let lease: i64 = kv
        .lines()
        .find_map(|l| l.strip_prefix("\"Lease\" : "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no lease in {kv}"));
    let ttl = etcdctl(&["lease", "timetolive", &format!("{lease:x}")]);
    assert!(ttl.contains("granted with TTL(3s)"), "{ttl}");
    root.stop_unit("berth-node");
    root.stop_unit("berth-controller");
    until("the node agent left (its key deleted)", || {
        keys_under(&node_key).is_empty()
    });

    // Upgraded over itself: installed again, the user's settings kept.
    root.ok("dpkg -i /tmp/berth.deb");
    root.ok("berth --version");
    assert!(root.ok("cat /etc/default/berth").contains(&p.prefix));

    // Data a cluster has: a node agent's state, an etcd's data (berth up), a host directory.
    root.ok(
        "mkdir -p /var/lib/berth/node/n1/web /var/lib/berth/up/etcd /srv/berth/data && \
         echo s >/var/lib/berth/node/n1/web/state && echo e >/var/lib/berth/up/etcd/db && \
         echo d >/srv/berth/data/file",
    );

    // Removed: the program goes; settings, state and host directories stay.
    root.ok("dpkg -r berth");
    assert!(!root.exists("/usr/bin/berth"));
    assert!(!root.exists("/lib/systemd/system/berth-node.service"));
    for kept in [
        "/etc/default/berth",
        "/var/lib/berth/node/n1/web/state",
        "/var/lib/berth/up/etcd/db",
        "/srv/berth/data/file",
    ] {
        assert!(root.exists(kept), "dpkg -r removed {kept}");
    }

    // Purged: the settings and the node agents' state go; an etcd's data and host
    // directories stay.
    root.ok("dpkg -P berth");
    assert!(!root.exists("/etc/default/berth"));
    assert!(!root.exists("/var/lib/berth/node"));
    assert!(
        root.exists("/var/lib/berth/up/etcd/db"),
        "purge removed etcd's data"
    );
    assert!(
        root.exists("/srv/berth/data/file"),
        "purge removed a host directory"
    );
}
