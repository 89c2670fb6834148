//! At most once and host safety, the second pass (issue 31): what a slow engine, a closed
//! pipe, a swapped link and a busy socket must not break. Real dockerd and etcd; each test
//! has its own prefix, node name and 127.0.N range (170 and up).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::model::Bundle;
use berth::model::cluster::{ReplicaState, ReplicaStatus};
use berth::store::Store;
use common::{
    Proxy, TestNode, TestPrefix, docker_try, etcd_endpoint, eventually, httpd_bundle, test_image,
};

const WAIT: Duration = Duration::from_secs(40);

/// The Docker events of one node's containers (`docker events`, read by a thread), with the
/// time each arrived.
struct Events {
    child: Child,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Events {
    fn start(node: &str) -> Events {
        // From now, including what happens before the CLI has subscribed (a loaded machine
        // takes seconds to start it, and the agent acts within one).
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let mut child = Command::new("docker")
            .args(["events", "--since", &format!("{since:.3}")])
            .args(["--filter", "type=container", "--filter"])
            .arg(format!("label=berth.io/node={node}"))
            .args(["--format", "{{.Action}} {{.Actor.Attributes.name}}"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the docker CLI must be installed (scripts/setup.sh)");
        let out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                into.lock().unwrap().push((Instant::now(), line));
            }
        });
        Events { child, seen }
    }

    /// The events (action and container name) that arrived after `since`.
    fn after(&self, since: Instant) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn replica(store: &Store, b: &str, i: u32) -> Option<ReplicaStatus> {
    let kv = store.get(&store.keys().replica(b, i)).await.unwrap()?;
    serde_json::from_slice(&kv.value).ok()
}

fn running(name: &str) -> bool {
    docker_try(&["inspect", "-f", "{{.State.Running}}", name]).as_deref() == Some("true")
}

/// Issue 31, item 1: the agent is inside a `docker stop` that blocks (PID 1 ignores SIGTERM,
/// `--stop-timeout 300`, a rollout replacing the container) when it is cut off from etcd.
/// The fence freezes, the lease expires, the freeze turns into a kill, the blocked stop
/// returns — and the node must still create and start nothing until it holds a lease again
/// and has listed its assignments afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_node_creates_and_starts_nothing_until_its_lease_is_renewed() {
    test_image();
    let prefix = TestPrefix::new("fencegate");
    let store = prefix.store().await;
    let proxy = Proxy::start(etcd_endpoint()).await;
    let tag = format!("fencegate-{}", std::process::id() % 100_000);
    let freeze_for = Duration::from_secs(5);
    let node = TestNode::start_freezing(
        &prefix,
        &format!("node-{tag}"),
        proxy.addr.to_string(),
        3,
        freeze_for,
    )
    .await;
    let mut b = httpd_bundle(&tag, 1, 1, 171);
    b.spec.docker.as_mut().unwrap().options = Some("--stop-timeout 300".into());
    common::assign(&store, &node.name, &b, &[0]).await;
    eventually(WAIT, "the replica running", || async {
        replica(&store, b.name(), 0)
            .await
            .filter(|s| s.state == ReplicaState::Running)
    })
    .await;
    let events = Events::start(&node.name);
    let name = b.container_name(0);
    // A rollout: the agent stops the old container (SIGTERM, ignored: it waits 300 s).
    let mut b2 = b.clone();
    b2.spec.docker.as_mut().unwrap().image = "berth-test/httpd:2".into();
    b2.metadata.generation = Some(2);
    let asked = Instant::now();
    common::assign(&store, &node.name, &b2, &[0]).await;
    eventually(WAIT, "the agent stopping the old container", || async {
        events
            .after(asked)
            .iter()
            .any(|e| e.starts_with("kill "))
            .then_some(())
    })
    .await;
    proxy.sever();
    let cut = Instant::now();
    // The fence kills the old copy (at most 2 s to the fence, then `freeze_for`), which ends
    // the blocked stop; watch well past that for anything started.
    let killed = eventually(WAIT, "the fence killing the old container", || async {
        (!running(&name)).then(Instant::now)
    })
    .await;
    assert!(
        killed.duration_since(cut) >= freeze_for,
        "killed {:?} after the cut: before the freeze ran its course",
        killed.duration_since(cut)
    );
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let started: Vec<String> = events
            .after(cut)
            .into_iter()
            .filter(|e| e.starts_with("create ") || e.starts_with("start "))
            .collect();
        assert!(
            started.is_empty(),
            "the fenced node, still cut off, did {started:?}"
        );
        assert!(!running(&name), "a copy runs on the fenced node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back in touch: registered anew, listed afresh, the replica runs the new spec.
    proxy.restore();
    eventually(WAIT, "the replica running the new image", || async {
        replica(&store, b.name(), 0)
            .await
            .filter(|s| s.state == ReplicaState::Running && s.generation == 2)
    })
    .await;
    assert!(running(&name));
}

/// Runs berth on the test's prefix with stdout (and, with `both`, stderr) a pipe whose
/// reader is already gone, as `berth … | head -0` leaves it.
fn berth_into_closed_pipe(prefix: &TestPrefix, args: &[&str], both: bool) -> Command {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.env("BERTH_ETCD", &prefix.endpoint)
        .env("BERTH_PREFIX", &prefix.prefix)
        .args(args)
        .stdin(Stdio::null());
    if both {
        cmd.stderr(writer.try_clone().unwrap());
    } else {
        cmd.stderr(Stdio::piped());
    }
    cmd.stdout(writer);
    cmd
}

/// A manifest file (JSON) of `b`.
fn manifest(dir: &std::path::Path, b: &Bundle) -> String {
    let path = dir.join(format!("{}.json", b.name()));
    std::fs::write(&path, serde_json::to_vec(b).unwrap()).unwrap();
    path.display().to_string()
}

/// Issue 31, item 2: `berth status | head -3`, `berth get bundles | head -1`: the reader
/// goes away, and the command ends quietly (status 0 or 141, no error line), as kubectl does.
#[tokio::test]
async fn a_one_shot_command_whose_reader_is_gone_ends_quietly() {
    let prefix = TestPrefix::new("closedpipe");
    let dir = tempfile::tempdir().unwrap();
    let b = httpd_bundle("closedpipe", 1, 1, 172);
    let applied = common::berth(&prefix, &["apply", "-f", &manifest(dir.path(), &b)], None);
    assert!(applied.status.success(), "{}", common::stderr(&applied));
    for args in [
        &["status"][..],
        &["get", "bundles"],
        &["get", "bundles", "-o", "yaml"],
        &["describe", "bundle", "closedpipe"],
        &["cib", "export"],
    ] {
        let out = berth_into_closed_pipe(&prefix, args, false)
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(141)),
            "berth {args:?} into a closed pipe ended with {code:?}: {}",
            common::stderr(&out)
        );
        assert!(
            out.stderr.is_empty(),
            "berth {args:?} into a closed pipe said: {}",
            common::stderr(&out)
        );
    }
}

/// Issue 31, item 2: `berth up | head -1`, and its stderr gone too: berth up keeps running
/// after the manifests converged (it writes the status to the closed pipe then), and Ctrl-C
/// still leaves the node in maintenance with its replicas running past the watchdog's
/// deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_up_with_its_output_closed_keeps_running_and_stops_into_maintenance() {
    test_image();
    let prefix = TestPrefix::new("upclosed");
    let store = prefix.store().await;
    let node = format!("upclosed{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().unwrap();
    let b = httpd_bundle(&node, 1, 1, 173);
    let file = manifest(dir.path(), &b);
    let data = dir.path().join("data").display().to_string();
    struct Stop(Child, String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            common::remove_node(&self.1);
        }
    }
    let args = ["up", "-f", &file, "--name", &node, "--data-dir", &data];
    let mut up = Stop(
        berth_into_closed_pipe(&prefix, &args, true)
            .spawn()
            .unwrap(),
        node.clone(),
    );
    let name = b.container_name(0);
    eventually(WAIT, "the replica ready", || async {
        let st = store.get_bundle(b.name()).await.unwrap()?.value.status?;
        (st.ready_replicas == 1 && running(&name)).then_some(())
    })
    .await;
    // berth up writes the status once --wait returned: that write meets the closed pipe. It
    // must still be running, and its replica with it, well after that.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert!(
            up.0.try_wait().unwrap().is_none(),
            "berth up exited with its output closed"
        );
        assert!(running(&name), "the replica stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let until = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = up.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "berth up did not stop on SIGINT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "berth up ended with {status:?}");
    let mark = store.keys().maintenance(&node);
    assert!(
        store.get(&mark).await.unwrap().is_some(),
        "no maintenance mark"
    );
    // Past the watchdog's deadline (3 s): the replica still runs.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert!(running(&name), "the replica was fenced after a clean stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 31, item 4: a custom seccomp profile that allows every system call (the API takes
/// the profile's JSON) lifts confinement as `seccomp=unconfined` does: a default node refuses
/// it, says why, and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_seccomp_profile_is_refused_on_a_default_node() {
    test_image();
    let prefix = TestPrefix::new("seccomp");
    let store = prefix.store().await;
    let tag = format!("seccomp-{}", std::process::id() % 100_000);
    let node = TestNode::start(&prefix, &format!("node-{tag}")).await;
    let mut b = httpd_bundle(&tag, 1, 1, 174);
    b.spec.docker.as_mut().unwrap().options = Some(
        r#"--stop-timeout 1 --security-opt seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#.into(),
    );
    common::assign(&store, &node.name, &b, &[0]).await;
    let st = eventually(WAIT, "the replica refused with the reason", || async {
        replica(&store, b.name(), 0)
            .await
            .filter(|s| s.state == ReplicaState::Failed)
    })
    .await;
    let why = st.last_failure.unwrap().reason;
    assert!(
        why.contains("not permitted on node") && why.contains("--allow-privileged"),
        "{why}"
    );
    assert!(docker_try(&["inspect", &b.container_name(0)]).is_none());
}

/// An address put on `lo` for one test, removed on drop.
struct LoAddress(&'static str);

impl LoAddress {
    fn add(cidr: &'static str) -> LoAddress {
        let _ = Command::new("ip")
            .args(["addr", "del", cidr, "dev", "lo"])
            .output();
        let o = Command::new("ip")
            .args(["addr", "add", cidr, "dev", "lo"])
            .output()
            .expect("ip (iproute2) must be installed");
        assert!(o.status.success(), "ip addr add {cidr}: {o:?}");
        LoAddress(cidr)
    }
}

impl Drop for LoAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", self.0, "dev", "lo"])
            .output();
    }
}

/// Issue 31, item 5: with `host-netmask` 32 (the default) the model cannot know the
/// interface's own prefix, so the node agent refuses the broadcast and network addresses of
/// the interface's networks, and an address the host itself has; nothing starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_its_interfaces_network_broadcast_and_own_addresses() {
    test_image();
    let _lo = LoAddress::add("127.0.175.1/24");
    let prefix = TestPrefix::new("hostaddr");
    let store = prefix.store().await;
    let tag = format!("hostaddr-{}", std::process::id() % 100_000);
    let node = TestNode::start(&prefix, &format!("node-{tag}")).await;
    for (i, (ip, why)) in [
        ("127.0.175.255", "broadcast address of 127.0.175.0/24"),
        ("127.0.175.0", "network address of 127.0.175.0/24"),
        ("127.0.175.1", "already an address of this host"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = httpd_bundle(&format!("{tag}-{i}"), 1, 1, 175);
        let net = b.spec.network.as_mut().unwrap();
        net.ip_range_start = Some(ip.into());
        net.host_netmask = None;
        common::assign(&store, &node.name, &b, &[0]).await;
        let st = eventually(WAIT, &format!("{ip} refused"), || async {
            replica(&store, b.name(), 0)
                .await
                .filter(|s| s.state == ReplicaState::Failed)
        })
        .await;
        let said = st.last_failure.unwrap().reason;
        assert!(said.contains(why), "{ip}: {said}");
        assert!(
            docker_try(&["inspect", &b.container_name(0)]).is_none(),
            "{ip}: a container was created"
        );
    }
}

/// Issue 31, item 8: release names follow Helm's rule (a DNS-1123 label of at most 53
/// characters); one that would reach other keys or break `chart list` is refused by name, and
/// nothing is written.
#[tokio::test]
async fn a_release_name_that_is_not_a_dns_label_is_refused_and_nothing_written() {
    let prefix = TestPrefix::new("relname");
    let store = prefix.store().await;
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/httpd");
    let long = "a".repeat(54);
    for bad in ["r/0000000009", "a\nb", "../../bundles/x", "", &long] {
        let out = common::berth(&prefix, &["chart", "install", bad, chart], None);
        assert!(!out.status.success(), "{bad:?} was installed");
        let said = common::stderr(&out);
        assert!(said.contains("not a release name"), "{bad:?}: {said}");
    }
    let (_, written) = store.list(&prefix.prefix).await.unwrap();
    assert!(
        written.is_empty(),
        "written: {:?}",
        written.iter().map(|k| &k.key).collect::<Vec<_>>()
    );
    // A good name still installs, and `chart list` reads it.
    let out = common::berth(
        &prefix,
        &[
            "chart",
            "install",
            "r",
            chart,
            "--set",
            "network.ipRangeStart=127.0.177.10",
        ],
        None,
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let listed = common::berth(&prefix, &["chart", "list"], None);
    assert!(
        common::stdout(&listed).contains("r "),
        "{}",
        common::stdout(&listed)
    );
    common::berth(&prefix, &["chart", "uninstall", "r"], None);
}

/// Issue 31, item 3: `x` is mapped read-write at /data and `x/inner` read-only at /x. The
/// container swaps /data/inner for a link to the host's /etc and exits. Docker resolves bind
/// sources anew at every start, so the restart is checked against the host policy again: it
/// is refused (the replica says why) and the container never sees the host's /etc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_swapped_in_before_a_restart_is_refused_at_the_restart() {
    use berth::model::StorageMapping;
    test_image();
    let prefix = TestPrefix::new("swaplink");
    let store = prefix.store().await;
    let tag = format!("swaplink-{}", std::process::id() % 100_000);
    let node = TestNode::start(&prefix, &format!("node-{tag}")).await;
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x");
    std::fs::create_dir_all(x.join("inner")).unwrap();
    std::fs::write(x.join("inner/mine"), "the bundle's own file\n").unwrap();
    let mut b = httpd_bundle(&tag, 1, 1, 178);
    b.spec.storage_mappings = vec![
        StorageMapping {
            id: "data".into(),
            source_dir: Some(x.display().to_string()),
            target_dir: "/data".into(),
            options: Some("rw".into()),
            ..Default::default()
        },
        StorageMapping {
            id: "inner".into(),
            source_dir: Some(x.join("inner").display().to_string()),
            target_dir: "/x".into(),
            options: Some("ro".into()),
            ..Default::default()
        },
    ];
    common::assign(&store, &node.name, &b, &[0]).await;
    eventually(WAIT, "the replica running", || async {
        replica(&store, b.name(), 0)
            .await
            .filter(|s| s.state == ReplicaState::Running)
    })
    .await;
    let name = b.container_name(0);
    common::docker(&[
        "exec",
        &name,
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox mv /data/inner /data/inner.moved && /bin/busybox ln -s /etc /data/inner",
    ]);
    assert!(
        x.join("inner").is_symlink(),
        "the container planted its link"
    );
    common::docker(&["kill", &name]);
    let refused = eventually(WAIT, "the restart refused", || async {
        replica(&store, b.name(), 0).await.filter(|s| {
            s.last_failure
                .as_ref()
                .is_some_and(|f| f.reason.contains("host directory /etc"))
        })
    })
    .await;
    assert_ne!(refused.state, ReplicaState::Running, "{refused:?}");
    assert!(!running(&name), "the container was started again");
    // Only what the container did to its own mapping changed; the host's files are theirs.
    assert_eq!(
        std::fs::read_to_string(x.join("inner.moved/mine")).unwrap(),
        "the bundle's own file\n"
    );
}

/// Issue 31, item 9: berth up killed (its agent and controller gone, its replicas killed by
/// the watchdog), then started again. What the last run wrote says "3 ready" and "Started",
/// while no container runs: `berth status` must not call a replica of an offline node
/// started, and `apply --wait` must not say converged until the node registered anew has
/// reported its replicas running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_wait_and_status_do_not_trust_what_the_last_run_wrote() {
    use common::TestController;
    test_image();
    let prefix = TestPrefix::new("stale");
    let store = prefix.store().await;
    let tag = format!("stale-{}", std::process::id() % 100_000);
    let node_name = format!("node-{tag}");
    let mut node = TestNode::start(&prefix, &node_name).await;
    let mut ctl = TestController::start(&prefix, "ctl").await;
    let dir = tempfile::tempdir().unwrap();
    let b = httpd_bundle(&tag, 2, 2, 179);
    let file = manifest(dir.path(), &b);
    let applied = common::berth(&prefix, &["apply", "-f", &file, "--wait"], None);
    assert!(applied.status.success(), "{}", common::stderr(&applied));
    // The run dies: controller and agent gone without a word, their replicas with them.
    ctl.stop().await;
    node.crash();
    for i in 0..2 {
        common::docker(&["rm", "-f", &b.container_name(i)]);
    }
    let node_key = store.keys().node(&node_name);
    eventually(WAIT, "the dead agent's lease to expire", || async {
        store.get(&node_key).await.unwrap().is_none().then_some(())
    })
    .await;
    let status = common::stdout(&common::berth(&prefix, &["status"], None));
    assert!(!status.contains("Started"), "{status}");
    assert!(
        status.contains("Stopped") && status.contains("node offline"),
        "{status}"
    );
    // Started again: the wait begins before anything runs.
    let mut wait = Command::new(env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_ETCD", &prefix.endpoint)
        .env("BERTH_PREFIX", &prefix.prefix)
        .args(["apply", "-f", &file, "--wait", "--timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _node = TestNode::start(&prefix, &node_name).await;
    let _ctl = TestController::start(&prefix, "ctl").await;
    let until = Instant::now() + Duration::from_secs(60);
    let done = loop {
        if let Some(s) = wait.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "apply --wait never returned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let running_now: Vec<bool> = (0..2).map(|i| running(&b.container_name(i))).collect();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut wait.stderr.take().unwrap(), &mut said).unwrap();
    assert!(done.success(), "{said}");
    assert_eq!(
        running_now,
        [true, true],
        "converged with nothing running: {said}"
    );
}

/// Issue 31, item 10: a replica's container name held by a container this node does not
/// own (another berth cluster's on the same engine, or the user's): the replica says so in
/// its status, the other container is left alone, and once the name is free the replica
/// starts (the retries back off, they do not stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_held_by_a_container_this_node_does_not_own_is_reported_and_left_alone() {
    test_image();
    let prefix = TestPrefix::new("namefoe");
    let store = prefix.store().await;
    let tag = format!("namefoe-{}", std::process::id() % 100_000);
    let node = TestNode::start(&prefix, &format!("node-{tag}")).await;
    let b = httpd_bundle(&tag, 1, 1, 181);
    let name = b.container_name(0);
    struct Foreign(String);
    impl Drop for Foreign {
        fn drop(&mut self) {
            let _ = docker_try(&["rm", "-f", &self.0]);
        }
    }
    let foreign_id = common::docker(&["create", "--name", &name, "berth-test/httpd:1"]);
    let _foreign = Foreign(name.clone());
    common::assign(&store, &node.name, &b, &[0]).await;
    let st = eventually(WAIT, "the conflict reported", || async {
        replica(&store, b.name(), 0).await.filter(|s| {
            s.last_failure
                .as_ref()
                .is_some_and(|f| f.reason.contains("does not own"))
        })
    })
    .await;
    assert_ne!(st.state, ReplicaState::Running);
    assert!(
        st.fail_counts.is_empty(),
        "not the replica's failure: {st:?}"
    );
    // Left alone.
    let still = common::docker(&["inspect", "-f", "{{.Id}}", &name]);
    assert_eq!(still, foreign_id);
    common::docker(&["rm", "-f", &name]);
    eventually(
        WAIT,
        "the replica running once the name is free",
        || async {
            replica(&store, b.name(), 0)
                .await
                .filter(|s| s.state == ReplicaState::Running)
        },
    )
    .await;
    assert_ne!(
        common::docker(&["inspect", "-f", "{{.Id}}", &name]),
        foreign_id
    );
}
