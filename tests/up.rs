//! The first run (`scripts/run.sh`: setup, build, `berth up` with the seed) in a terminal,
//! driven in a pseudo-terminal (tmux) and stopped with Ctrl-C. berth stops cleanly and says what it leaves; the replicas keep serving and
//! etcd and dockerd keep running (real etcd and dockerd).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestPrefix, docker_try, test_image};

fn tmux(args: &[&str]) -> bool {
    Command::new("tmux")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("tmux is needed for this test (apt install tmux): {e}"))
        .success()
}

fn serves(addr: &str) -> bool {
    common::http_ok(addr.parse().unwrap(), Duration::from_millis(300))
}

/// Removes what the test's node left: its session, containers, cgroup scope, and the
/// per-replica log directories its bundle (a name of its own) made.
struct Cleanup {
    session: String,
    node: String,
    logs: Vec<std::path::PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
        common::remove_node(&self.node);
        for d in &self.logs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
fn ctrl_c_on_berth_up_stops_berth_and_leaves_replicas_etcd_and_dockerd_running() {
    test_image();
    let p = TestPrefix::new("up");
    let node = format!("up{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("up.log");
    let session = format!("berth-{node}");
    // The seed under a name and addresses of the test's own: a seed that a user's own run
    // left on this host (in another prefix) holds the seed's container names and addresses.
    let bundle = format!("{node}-httpd");
    let seed = dir.path().join("seed.yaml");
    std::fs::write(
        &seed,
        common::seed_manifest(&[
            (&["metadata", "name"], bundle.clone()),
            (&["spec", "network", "ipRangeStart"], "127.0.180.112".into()),
        ]),
    )
    .unwrap();
    let _cleanup = Cleanup {
        session: session.clone(),
        node: node.clone(),
        logs: (0..3)
            .map(|i| format!("/var/log/pacemaker/bundles/{bundle}-{i}").into())
            .collect(),
    };
    // The README's first command, in a terminal, on this test's prefix, node name and seed.
    let cmd = format!(
        "cd {} && exec env BERTH_ETCD={} BERTH_PREFIX={} BERTH_SEED_MANIFEST={} bash scripts/run.sh --name {node} --data-dir {} >{} 2>&1",
        env!("CARGO_MANIFEST_DIR"),
        p.endpoint,
        p.prefix,
        seed.display(),
        dir.path().join("data").display(),
        log.display()
    );
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "30",
        &cmd
    ]));
    // The seed's replicas.
    let addrs: Vec<String> = (112..115).map(|i| format!("127.0.180.{i}:80")).collect();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let until = Instant::now() + Duration::from_secs(240);
    while !(addrs.iter().all(|a| serves(a)) && read_log().contains("converged")) {
        assert!(
            Instant::now() < until,
            "the replicas did not serve:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ctrl-C, as a user types it in the terminal.
    assert!(tmux(&["send-keys", "-t", &session, "C-c"]));
    let until = Instant::now() + Duration::from_secs(30);
    while tmux(&["has-session", "-t", &session]) {
        assert!(
            Instant::now() < until,
            "berth up did not stop on Ctrl-C:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = read_log();
    assert!(
        said.contains("stopping: controller, node agent (node left in maintenance: its containers keep running"),
        "{said}"
    );
    // For a while after: every replica serves, dockerd and etcd answer.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for a in &addrs {
            assert!(serves(a), "{a} stopped serving after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(docker_try(&["info", "--format", "{{.ServerVersion}}"]).is_some());
    let etcd = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &p.endpoint, "endpoint", "health"])
        .output()
        .unwrap();
    assert!(etcd.status.success(), "etcd stopped");
}
