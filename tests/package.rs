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

/// The clean root without an init (commands run with `docker exec`).
const IMAGE: &str = "berth-test/debian:1";
/// The same with systemd as its init.
const SYSTEMD_IMAGE: &str = "berth-test/systemd:1";
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
    /// The root of `image`, with `init` as its first process; `shared` (a host directory)
    /// mounted at the same path, for a node agent's state, whose paths it bind-mounts into
    /// replicas as host paths.
    fn start(name: &str, deb: &str, image: &str, init: &[&str], shared: &str) -> Root {
        let ok = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .expect("docker CLI")
            .status
            .success();
        assert!(
            ok,
            "{image} is missing: bash scripts/build-service-images.sh debian systemd"
        );
        let _ = Command::new("docker").args(["rm", "-f", name]).output();
        // The host's network (etcd on loopback), Docker's socket, and the cgroup tree a
        // node agent fences in, as README's "berth in containers" runs a node agent; what
        // systemd needs as an init (its own /run, mounts).
        let deb_mount = format!("{deb}:/tmp/berth.deb:ro");
        let shared_mount = format!("{shared}:{shared}");
        let mut args = vec!["run", "-d", "--name", name, "--label", "berth-test=package"];
        args.extend(common::NODE_AGENT_CONTAINER);
        args.extend([
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-e",
            "container=docker",
            "-v",
            &deb_mount,
            "-v",
            &shared_mount,
            "-v",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/run-unit.sh:/tmp/run-unit.sh:ro"
            ),
            image,
        ]);
        args.extend_from_slice(init);
        docker(&args);
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

    /// Appends the settings a user writes to `/etc/default/berth`: the test's etcd and
    /// prefix, node `node`, controller `controller`, a 3 s lease and `node_args` more.
    fn configure(&self, p: &TestPrefix, node: &str, controller: &str, node_args: &str) {
        self.ok(&format!(
            "cat >>/etc/default/berth <<'EOF'
BERTH_ETCD=http://{}
BERTH_PREFIX={}
BERTH_NODE_NAME={node}
BERTH_NODE_ARGS=--lease-ttl 3s --no-metrics {node_args}
BERTH_CONTROLLER_ARGS=--name {controller} --no-metrics
EOF",
            etcd_endpoint(),
            p.prefix
        ));
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
    let shared = tempfile::tempdir().unwrap();
    let root = Root::start(
        &format!("berth-test-{tag}"),
        &deb,
        IMAGE,
        &["sleep", "infinity"],
        &shared.path().display().to_string(),
    );

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
    // Nothing of berth's runs (without systemd the scripts start nothing; the systemd test
    // below checks the units stay disabled).
    let running = root.ok(
        "for p in /proc/[0-9]*; do readlink \"$p/exe\" 2>/dev/null; done | grep -c /usr/bin/berth || true",
    );
    assert_eq!(running.trim(), "0", "a berth process runs after install");

    // The units' commands with the settings a user writes, against the real etcd and
    // dockerd: the controller leads, the node agent registers; both stop on SIGTERM.
    let node = format!("{tag}-n");
    root.configure(&p, &node, &format!("{tag}-c"), "");
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

/// Issue 34, item 3: under systemd, upgrading the package while a replica runs restarts the
/// node agent (prerm stops it with SIGUSR2, which leaves the replica running and the node in
/// maintenance; postinst starts the new agent, which adopts it) and the controller, and the
/// replica's container is neither replaced nor restarted. Removing the package stops the
/// units: the node drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_upgrade_under_systemd_restarts_no_replica() {
    common::test_image();
    let deb = deb();
    let p = TestPrefix::new("debup");
    let store = p.store().await;
    let tag = format!("debup{}", std::process::id() % 100_000);
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().display().to_string();
    let root = Root::start(
        &format!("berth-test-{tag}"),
        &deb,
        SYSTEMD_IMAGE,
        &["/sbin/init"],
        &dir,
    );
    until("systemd up", || {
        let o = root.sh("systemctl is-system-running");
        let state = String::from_utf8_lossy(&o.stdout).into_owned();
        state.starts_with("running") || state.starts_with("degraded")
    });
    root.ok("dpkg -i /tmp/berth.deb");
    // Nothing enabled or started on install.
    let enabled = root.sh("systemctl is-enabled berth-node berth-controller");
    assert_eq!(
        String::from_utf8_lossy(&enabled.stdout),
        "disabled\ndisabled\n"
    );
    assert!(
        !root
            .sh("systemctl is-active --quiet berth-node")
            .status
            .success()
    );
    let node = format!("{tag}-n");
    root.configure(
        &p,
        &node,
        &format!("{tag}-c"),
        &format!("--state-dir {dir}/node"),
    );
    root.ok("systemctl enable --now berth-controller berth-node");
    let node_key = format!("{}/nodes/{node}", p.prefix);
    until("the node agent registered", || {
        keys_under(&node_key).contains(&node_key)
    });
    let b = common::httpd_bundle(&format!("{tag}-web"), 1, 1, 190);
    let name = b.container_name(0);
    let _replica = Gone(name.clone());
    store
        .put_bundle(&b, berth::store::Expect::Absent)
        .await
        .unwrap();
    let state = || {
        Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.Id}} {{.State.StartedAt}} {{.State.Running}}",
                &name,
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    until("the replica running", || {
        state().is_some_and(|s| s.ends_with(" true"))
    });
    let before = state().unwrap();
    let pid = |unit: &str| root.ok(&format!("systemctl show -p MainPID --value {unit}"));
    let agent_before = pid("berth-node");
    let controller_before = pid("berth-controller");

    root.ok("dpkg -i /tmp/berth.deb");
    // Another agent process runs, registered, and the node is out of maintenance.
    assert!(
        root.sh("systemctl is-active --quiet berth-node")
            .status
            .success()
    );
    assert_ne!(
        pid("berth-node"),
        agent_before,
        "the node agent was not restarted"
    );
    assert_ne!(
        pid("berth-controller"),
        controller_before,
        "the controller was not restarted"
    );
    let journal = root.ok("journalctl -u berth-node --no-pager -o cat");
    // prerm's SIGUSR2, and the old agent leaving cleanly (not killed, not restarted by
    // systemd as failed).
    assert!(
        journal.contains("Sent signal SIGUSR2 to main process")
            && journal.contains("berth-node.service: Deactivated successfully"),
        "the old agent was not stopped with SIGUSR2: {journal}"
    );
    let maintenance = format!("{}/maintenance/{node}", p.prefix);
    until("the new agent took over (node out of maintenance)", || {
        keys_under(&node_key).contains(&node_key) && keys_under(&maintenance).is_empty()
    });
    // For a while after it took over: the same container, never restarted.
    let until_t = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until_t {
        assert_eq!(
            state().as_ref(),
            Some(&before),
            "the replica was replaced or restarted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Removed: the units stop, the node drains (its replica stops).
    root.ok("dpkg -r berth");
    until("the replica stopped by the drain", || {
        !state().is_some_and(|s| s.ends_with(" true"))
    });
    assert!(!root.exists("/usr/bin/berth"));
}

/// Removes a container on drop (a replica a failed test leaves behind).
struct Gone(String);

impl Drop for Gone {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}
