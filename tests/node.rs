//! The node agent against a real dockerd and etcd. Assignments are written directly (the
//! controller comes later). Each test has its own etcd prefix, node name (the ownership
//! label that keeps its containers apart), bundle name and 127.0.N.x address range.

mod common;

use std::path::Path;
use std::time::Duration;

use berth::model::cluster::{ReplicaState, ReplicaStatus};
use berth::model::{Bundle, StorageMapping};
use berth::store::{Expect, Store};
use common::{TestNode, TestPrefix, docker, docker_try, eventually, httpd_bundle, test_image};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);

struct Fixture {
    prefix: TestPrefix,
    store: Store,
    node: TestNode,
    dirs: tempfile::TempDir,
    bundle: Bundle,
}

/// A bundle of `replicas` replicas of the test image, addresses from 127.0.`net`.10, port
/// 8080 → 80, the temp dir's `www` mapped read-only to the web root and its `logs` as the
/// per-replica root; and a node agent running.
async fn fixture(test: &str, net: u8, replicas: u32) -> Fixture {
    test_image();
    let prefix = TestPrefix::new(test);
    let store = prefix.store().await;
    let dirs = tempfile::tempdir().unwrap();
    let www = dirs.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), format!("hello from {test}\n")).unwrap();
    let name = format!("{}-{}", test, std::process::id() % 100_000);
    let bundle = bundle(&name, replicas, net, dirs.path());
    let node = TestNode::start(&prefix, &format!("node-{name}")).await;
    Fixture {
        prefix,
        store,
        node,
        dirs,
        bundle,
    }
}

/// The test bundle on `lo`, with the temp dir's `www` read-only as the web root and its
/// `logs` as a per-replica root.
fn bundle(name: &str, replicas: u32, net: u8, dir: &Path) -> Bundle {
    let mut b = httpd_bundle(name, replicas, replicas, net);
    b.spec.network.as_mut().unwrap().host_interface = Some("lo".into());
    b.spec.storage_mappings = vec![
        StorageMapping {
            id: "www".into(),
            source_dir: Some(dir.join("www").display().to_string()),
            target_dir: "/var/www/html".into(),
            options: Some("ro".into()),
            ..Default::default()
        },
        StorageMapping {
            id: "logs".into(),
            source_dir_root: Some(dir.join("logs").display().to_string()),
            target_dir: "/logs".into(),
            options: Some("rw".into()),
            ..Default::default()
        },
    ];
    b
}

impl Fixture {
    async fn assign(&self, bundle: &Bundle, replicas: &[u32]) {
        common::assign(&self.store, &self.node.name, bundle, replicas).await;
    }

    async fn unassign(&self) {
        let key = self
            .store
            .keys()
            .assignment(&self.node.name, self.bundle.name());
        self.store.delete(&key, Expect::Any).await.unwrap();
    }

    async fn status(&self, i: u32) -> Option<ReplicaStatus> {
        let key = self.store.keys().replica(self.bundle.name(), i);
        let kv = self.store.get(&key).await.unwrap()?;
        Some(serde_json::from_slice(&kv.value).unwrap())
    }

    /// Waits until every replica's status says running, with the condition `also`.
    async fn running(
        &self,
        n: u32,
        what: &str,
        also: impl Fn(&ReplicaStatus) -> bool,
    ) -> Vec<ReplicaStatus> {
        eventually(WAIT, what, || async {
            let mut all = Vec::new();
            for i in 0..n {
                match self.status(i).await {
                    Some(s) if s.state == ReplicaState::Running && also(&s) => all.push(s),
                    _ => return None,
                }
            }
            Some(all)
        })
        .await
    }

    fn container(&self, i: u32) -> String {
        self.bundle.container_name(i)
    }
}

async fn http_get(addr: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_with_names_labels_addresses_and_answer_http() {
    let f = fixture("three", 31, 3).await;
    f.assign(&f.bundle, &[0, 1, 2]).await;
    let st = f.running(3, "3 replicas running", |_| true).await;
    for (i, s) in st.iter().enumerate() {
        let i = i as u32;
        let name = f.container(i);
        assert_eq!(s.container_name, name);
        assert_eq!(inspect(&name, "{{.Id}}"), s.container_id);
        assert_eq!(
            inspect(&name, "{{index .Config.Labels \"berth.io/bundle\"}}"),
            f.bundle.name()
        );
        assert_eq!(
            inspect(&name, "{{index .Config.Labels \"berth.io/replica\"}}"),
            i.to_string()
        );
        assert_eq!(
            inspect(&name, "{{index .Config.Labels \"berth.io/node\"}}"),
            f.node.name
        );
        assert_eq!(
            inspect(&name, "{{.Config.Hostname}}"),
            f.bundle.replica_name(i)
        );
        let addr = format!("127.0.31.{}", 10 + i);
        assert_eq!(s.address.as_deref(), Some(addr.as_str()));
        assert_eq!(s.ports, vec![format!("{addr}:8080->80/tcp")]);
        assert_eq!(
            inspect(
                &name,
                "{{(index (index .HostConfig.PortBindings \"80/tcp\") 0).HostIp}}"
            ),
            addr
        );
        let page = http_get(&format!("{addr}:8080")).await;
        assert!(
            page.contains("200 OK") && page.contains("hello from three"),
            "{page}"
        );
        // add-host: every replica's name and address in /etc/hosts.
        let hosts = docker(&["exec", &name, "cat", "/etc/hosts"]);
        for j in 0..3 {
            assert!(
                hosts.contains(&format!(
                    "127.0.31.{}\t{}",
                    10 + j,
                    f.bundle.replica_name(j)
                )),
                "{hosts}"
            );
        }
    }
    // The node registered itself.
    let node = f
        .store
        .get(&f.store.keys().node(&f.node.name))
        .await
        .unwrap();
    assert!(
        node.is_some_and(|kv| kv.lease != 0),
        "node key under a lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_inside_appears_in_its_per_replica_host_directory() {
    let f = fixture("storage", 32, 2).await;
    f.assign(&f.bundle, &[0, 1]).await;
    f.running(2, "2 replicas running", |_| true).await;
    docker(&[
        "exec",
        &f.container(1),
        "sh",
        "-c",
        "echo written-inside > /logs/note",
    ]);
    let on_host = f
        .dirs
        .path()
        .join("logs")
        .join(f.bundle.replica_name(1))
        .join("note");
    assert_eq!(
        std::fs::read_to_string(&on_host).unwrap(),
        "written-inside\n"
    );
    let other = f
        .dirs
        .path()
        .join("logs")
        .join(f.bundle.replica_name(0))
        .join("note");
    assert!(!other.exists(), "replica 0 has its own directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_container_comes_back_and_its_restart_count_rises() {
    let f = fixture("kill", 33, 1).await;
    f.assign(&f.bundle, &[0]).await;
    let before = f.running(1, "replica running", |_| true).await.remove(0);
    assert_eq!(before.restart_count, 0);
    docker(&["kill", &f.container(0)]);
    let after = f
        .running(1, "replica restarted", |s| s.restart_count == 1)
        .await
        .remove(0);
    assert_eq!(
        after.container_id, before.container_id,
        "restarted in place"
    );
    assert_eq!(after.fail_counts.get(&f.node.name), Some(&1));
    let failure = after.last_failure.expect("the failure is recorded");
    assert!(
        failure.reason.contains("exited with code 137"),
        "{}",
        failure.reason
    );
    assert_eq!(inspect(&f.container(0), "{{.State.Running}}"), "true");
    // Again: a second failure in a row restarts after the backoff, and counts.
    docker(&["kill", &f.container(0)]);
    let again = f
        .running(1, "replica restarted twice", |s| s.restart_count == 2)
        .await
        .remove(0);
    assert_eq!(again.fail_counts.get(&f.node.name), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_agent_restart_the_same_containers_keep_running() {
    let mut f = fixture("adopt", 34, 2).await;
    f.assign(&f.bundle, &[0, 1]).await;
    let st = f.running(2, "2 replicas running", |_| true).await;
    let started: Vec<String> = (0..2)
        .map(|i| inspect(&f.container(i), "{{.State.StartedAt}}"))
        .collect();
    f.node.restart(&f.prefix).await;
    // The restarted agent registers again; once it has, it has reconciled its assignments.
    let key = f.store.keys().node(&f.node.name);
    eventually(WAIT, "the agent to register again", || async {
        f.store.get(&key).await.unwrap()
    })
    .await;
    // Give it a change to react to, and wait until it has: a new replica 2 runs.
    let mut three = f.bundle.clone();
    three.spec.docker.as_mut().unwrap().replicas = Some(3);
    f.assign(&three, &[0, 1, 2]).await;
    let now = f.running(3, "3 replicas running", |_| true).await;
    for i in 0..2 {
        assert_eq!(
            now[i].container_id, st[i].container_id,
            "replica {i} adopted"
        );
        assert_eq!(
            inspect(&f.container(i as u32), "{{.State.StartedAt}}"),
            started[i],
            "replica {i} not restarted"
        );
    }
    // Scaling is not a change to replicas 0 and 1, but their /etc/hosts lists the new one.
    let hosts = docker(&["exec", &f.container(0), "cat", "/etc/hosts"]);
    assert!(hosts.contains(&f.bundle.replica_name(2)), "{hosts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_tag_change_replaces_the_container() {
    let f = fixture("retag", 35, 1).await;
    f.assign(&f.bundle, &[0]).await;
    let before = f.running(1, "replica running", |_| true).await.remove(0);
    let mut b2 = f.bundle.clone();
    b2.spec.docker.as_mut().unwrap().image = "berth-test/httpd:2".into();
    b2.metadata.generation = Some(2);
    f.assign(&b2, &[0]).await;
    let after = f
        .running(1, "replica on the new image", |s| s.generation == 2)
        .await
        .remove(0);
    assert_ne!(after.container_id, before.container_id);
    // The image by its id: engines name it differently (podman qualifies a short name).
    assert_eq!(
        inspect(&f.container(0), "{{.Image}}"),
        docker(&["image", "inspect", "-f", "{{.Id}}", "berth-test/httpd:2"]).trim()
    );
    assert!(
        docker_try(&["inspect", &before.container_id]).is_none(),
        "old container removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_assignment_removes_the_container_and_keeps_the_host_directory() {
    let f = fixture("unassign", 36, 1).await;
    f.assign(&f.bundle, &[0]).await;
    f.running(1, "replica running", |_| true).await;
    docker(&[
        "exec",
        &f.container(0),
        "sh",
        "-c",
        "echo keep > /logs/data",
    ]);
    f.unassign().await;
    let name = f.container(0);
    eventually(WAIT, "the container to be removed", || async {
        docker_try(&["inspect", &name]).is_none().then_some(())
    })
    .await;
    let dir = f.dirs.path().join("logs").join(f.bundle.replica_name(0));
    assert_eq!(std::fs::read_to_string(dir.join("data")).unwrap(), "keep\n");
    assert!(f.dirs.path().join("www").join("index.html").exists());
    eventually(WAIT, "the replica status to be dropped", || async {
        f.status(0).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_container_with_a_look_alike_name_is_left_alone() {
    let f = fixture("foreign", 37, 1).await;
    // Not berth's (no labels), and berth's but another node's: neither may be touched.
    let lookalike = f.bundle.container_name(5);
    let other_node = f.bundle.container_name(6);
    docker(&["create", "--name", &lookalike, "berth-test/httpd:1"]);
    docker(&[
        "create",
        "--name",
        &other_node,
        "--label",
        "berth.io/managed-by=berth",
        "--label",
        &format!("berth.io/bundle={}", f.bundle.name()),
        "--label",
        "berth.io/replica=6",
        "--label",
        "berth.io/node=someone-else",
        "berth-test/httpd:1",
    ]);
    let ids = [
        inspect(&lookalike, "{{.Id}}"),
        inspect(&other_node, "{{.Id}}"),
    ];
    f.assign(&f.bundle, &[0]).await;
    f.running(1, "replica running", |_| true).await;
    f.unassign().await;
    let mine = f.container(0);
    eventually(WAIT, "this node's container to be removed", || async {
        docker_try(&["inspect", &mine]).is_none().then_some(())
    })
    .await;
    assert_eq!(inspect(&lookalike, "{{.Id}}"), ids[0]);
    assert_eq!(inspect(&other_node, "{{.Id}}"), ids[1]);
    docker(&["rm", "-f", &lookalike, &other_node]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_option_is_reported_in_status_and_nothing_is_started() {
    let f = fixture("badopt", 38, 1).await;
    let mut b = f.bundle.clone();
    b.spec.docker.as_mut().unwrap().options = Some("--stop-timeout 1 --frobnicate".into());
    f.assign(&b, &[0]).await;
    let st = eventually(WAIT, "a failed status", || async {
        f.status(0)
            .await
            .filter(|s| s.state == ReplicaState::Failed)
    })
    .await;
    let reason = st.last_failure.unwrap().reason;
    assert_eq!(
        reason,
        "spec.docker.options: --frobnicate: not supported by berth"
    );
    assert!(st.container_id.is_empty());
    assert!(
        docker_try(&["inspect", &f.container(0)]).is_none(),
        "nothing started"
    );
}

/// One agent per node name: a second agent started under a name that is online refuses
/// to run, with an error saying so, and the first keeps its registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_with_an_online_name_refuses_to_run() {
    test_image();
    let p = TestPrefix::new("samename");
    let store = p.store().await;
    let first = TestNode::start(&p, &format!("samename{}", std::process::id() % 100_000)).await;
    let key = store.keys().node(&first.name);
    let held = eventually(WAIT, "the first agent registered", || async {
        store.get(&key).await.unwrap()
    })
    .await;
    let engine = berth::node::engine::DockerEngine::connect(None)
        .await
        .expect("dockerd is not reachable: run scripts/setup.sh");
    let state = tempfile::tempdir().unwrap();
    let mut cfg = berth::node::NodeConfig::new(&first.name);
    cfg.state_dir = state.path().to_path_buf();
    cfg.lease_ttl = Duration::from_secs(1);
    let second = berth::node::run(
        p.store().await,
        engine,
        cfg,
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    match second {
        Err(e @ berth::node::NodeError::NameTaken { .. }) => {
            assert!(e.to_string().contains("is already online"), "{e}")
        }
        other => panic!("the second agent ran: {other:?}"),
    }
    let still = store.get(&key).await.unwrap().expect("still registered");
    assert_eq!(
        still.lease, held.lease,
        "the first agent's registration is untouched"
    );
}

/// Node names are host names: anything else is refused before the agent registers.
#[tokio::test]
async fn a_node_name_that_is_not_a_host_name_is_refused() {
    let p = TestPrefix::new("badnode");
    let engine = berth::node::engine::DockerEngine::connect(None)
        .await
        .expect("dockerd is not reachable: run scripts/setup.sh");
    for bad in ["a/b", "Node_1", "", "-x", "x..y", "x-", "é"] {
        let mut cfg = berth::node::NodeConfig::new(bad);
        cfg.state_dir = tempfile::tempdir().unwrap().path().to_path_buf();
        // A name that were accepted would run the agent: the timeout turns that into a
        // failure instead of a hang.
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            berth::node::run(
                p.store().await,
                engine.clone(),
                cfg,
                tokio_util::sync::CancellationToken::new(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{bad:?} was accepted: the agent ran"));
        match got {
            Err(e @ berth::node::NodeError::BadName(_)) => {
                assert!(e.to_string().starts_with("node name"), "{e}")
            }
            other => panic!("{bad:?} was accepted: {other:?}"),
        }
    }
    let (_, kvs) = p.store().await.list(&p.prefix).await.unwrap();
    assert!(kvs.is_empty(), "nothing was registered");
}

/// The fence acts on the cgroup alone: every container of a node is in its scope
/// (`/berth/<node>`), which freezes (no answer), thaws (answers again) and kills (the
/// container dies, and its agent restarts it) without the engine being asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_containers_live_in_its_scope_which_freezes_thaws_and_kills_them() {
    use berth::node::fence::{Scope, cgroup_parent};
    let f = fixture("scope", 39, 1).await;
    f.assign(&f.bundle, &[0]).await;
    f.running(1, "the replica running", |_| true).await;
    let scope = Scope::for_parent(&cgroup_parent("cgroupfs", &f.node.name))
        .expect("this host has a cgroup hierarchy to fence through");
    let id = inspect(&f.container(0), "{{.Id}}");
    // Docker names the container's cgroup by its id, podman `libpod-<id>`.
    assert!(
        scope.dir().join(&id).is_dir() || scope.dir().join(format!("libpod-{id}")).is_dir(),
        "the container is not in the node's scope {}",
        scope.dir().display()
    );
    assert!(!scope.processes().is_empty());
    let answers = || async {
        tokio::time::timeout(Duration::from_millis(500), async {
            let mut s = tokio::net::TcpStream::connect("127.0.39.10:8080")
                .await
                .ok()?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.ok()?;
            buf.starts_with(b"HTTP/1.").then_some(())
        })
        .await
        .ok()
        .flatten()
    };
    eventually(WAIT, "the replica to answer", answers).await;
    scope.freeze().unwrap();
    eventually(WAIT, "the scope to be frozen", || async {
        scope.frozen().then_some(())
    })
    .await;
    assert!(answers().await.is_none(), "a frozen replica answered");
    scope.thaw().unwrap();
    eventually(WAIT, "the thawed replica to answer", answers).await;
    scope.kill().unwrap();
    assert!(scope.processes().is_empty());
    // The engine saw it die: the agent counts the failure and starts it again.
    f.running(1, "the killed replica restarted", |s| s.restart_count == 1)
        .await;
}
