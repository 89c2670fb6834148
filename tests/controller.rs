//! The controller with node agents, against a real etcd and dockerd. Several node agents
//! share this one engine under distinct node names: each only sees and touches containers
//! labelled with its own name, so they behave as separate hosts would (a replica's container
//! name is the same on every node, as in Pacemaker, so a replica moves only once its old
//! container is gone: fenced by its agent, or gone with its "host"). The tests run on a
//! multi-threaded runtime because they call the docker and berth CLIs, which block.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth::model::cluster::ReplicaStatus;
use berth::model::{Bundle, BundleStatus, NvPair, StorageMapping};
use berth::store::{Expect, Store};
use common::{
    Proxy, TestController, TestNode, TestPrefix, berth, docker, docker_try, etcd_endpoint,
    eventually, httpd_bundle, test_image,
};

const WAIT: Duration = Duration::from_secs(40);

/// The test bundle with a per-replica storage mapping under `dir`.
fn bundle(name: &str, replicas: u32, rph: u32, net: u8, dir: &std::path::Path) -> Bundle {
    let mut b = httpd_bundle(name, replicas, rph, net);
    b.spec.storage_mappings = vec![StorageMapping {
        id: "data".into(),
        source_dir_root: Some(dir.display().to_string()),
        target_dir: "/data".into(),
        ..Default::default()
    }];
    b
}

struct Cluster {
    prefix: TestPrefix,
    store: Store,
    dir: tempfile::TempDir,
    tag: String,
}

impl Cluster {
    async fn new(test: &str) -> Cluster {
        test_image();
        // Containers a killed earlier run of this test left behind hold its addresses.
        let stale = docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=berth.io/managed-by=berth",
            "--format",
            "{{.ID}} {{.Label \"berth.io/node\"}}",
        ]);
        for line in stale.lines() {
            if let Some((id, node)) = line.split_once(' ')
                && node.starts_with(&format!("{test}-"))
            {
                docker(&["rm", "-f", id]);
            }
        }
        let prefix = TestPrefix::new(test);
        let store = prefix.store().await;
        Cluster {
            prefix,
            store,
            dir: tempfile::tempdir().unwrap(),
            tag: format!("{test}-{}", std::process::id() % 100_000),
        }
    }

    fn node_name(&self, n: &str) -> String {
        format!("{}-{n}", self.tag)
    }

    async fn node(&self, n: &str) -> TestNode {
        TestNode::start(&self.prefix, &self.node_name(n)).await
    }

    /// Waits until these nodes have registered (placement only sees registered nodes).
    async fn registered(&self, nodes: &[&TestNode]) {
        for n in nodes {
            let key = self.store.keys().node(&n.name);
            eventually(WAIT, "the node to register", || async {
                self.store.get(&key).await.unwrap()
            })
            .await;
        }
    }

    async fn apply(&self, b: &Bundle) {
        let key = self.store.keys().bundle(b.name());
        let expect = match self.store.get(&key).await.unwrap() {
            Some(kv) => Expect::Revision(kv.mod_revision),
            None => Expect::Absent,
        };
        self.store.put_bundle(b, expect).await.unwrap();
    }

    async fn status(&self, b: &str) -> Option<BundleStatus> {
        self.store.get_bundle(b).await.unwrap()?.value.status
    }

    /// Waits until the bundle's status says every replica is ready at its generation, with
    /// the condition `also`; returns replica → node.
    async fn ready(
        &self,
        b: &Bundle,
        also: impl Fn(&BTreeMap<u32, String>) -> bool,
    ) -> BTreeMap<u32, String> {
        eventually(WAIT, &format!("{} ready", b.name()), || async {
            let st = self.status(b.name()).await?;
            let generation = self
                .store
                .get_bundle(b.name())
                .await
                .unwrap()?
                .value
                .metadata
                .generation?;
            let placed: BTreeMap<u32, String> = st
                .replica_rows
                .iter()
                .map(|r| (r.index, r.node.clone()))
                .collect();
            (st.observed_generation == generation
                && st.replicas == b.spec.replicas()
                && st.ready_replicas == st.replicas
                && also(&placed))
            .then_some(placed)
        })
        .await
    }

    async fn replica(&self, b: &str, i: u32) -> Option<ReplicaStatus> {
        let kv = self
            .store
            .get(&self.store.keys().replica(b, i))
            .await
            .unwrap()?;
        serde_json::from_slice(&kv.value).ok()
    }

    fn container_id(&self, b: &Bundle, i: u32) -> String {
        docker(&["inspect", "-f", "{{.Id}}", &b.container_name(i)])
    }
}

fn count_by_node(placed: &BTreeMap<u32, String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in placed.values() {
        *m.entry(n.clone()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_and_replicas_per_host() {
    let c = Cluster::new("spread").await;
    let (a, b2) = (c.node("a").await, c.node("b").await);
    c.registered(&[&a, &b2]).await;
    let _ctl = TestController::start(&c.prefix, "ctl").await;
    let b = bundle(&format!("{}-web", c.tag), 3, 2, 41, c.dir.path());
    let (a, b2) = if a.name < b2.name { (a, b2) } else { (b2, a) };
    c.apply(&b).await;
    let placed = c.ready(&b, |_| true).await;
    let per = count_by_node(&placed);
    assert_eq!(per.len(), 2, "spread over both nodes: {placed:?}");
    assert!(
        per.values().all(|n| *n <= 2),
        "replicas-per-host 2: {placed:?}"
    );

    // berth status shows it the way crm_mon does.
    let out = berth(&c.prefix, &["status"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Current controller: ctl"), "{text}");
    assert!(
        text.contains(&format!("Online: [ {} {} ]", a.name, b2.name)),
        "{text}"
    );
    for i in 0..3 {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{} (127.0.41.{})", b.replica_name(i), 10 + i)))
            .unwrap();
        assert!(line.contains(&format!("Started {}", placed[&i])), "{line}");
    }
    // describe shows the status rows.
    let out = berth(&c.prefix, &["describe", "bundle", b.name()], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3/3 ready"), "{text}");
    for i in 0..3 {
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with(&b.replica_name(i)) && l.contains("running"))
            .unwrap_or_else(|| panic!("no running row for replica {i}: {text}"));
        assert!(row.contains(&placed[&i]), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_wait_returns_when_converged_and_fails_with_the_reason_at_its_timeout() {
    let c = Cluster::new("applywait").await;
    let a = c.node("a").await;
    c.registered(&[&a]).await;
    let _ctl = TestController::start(&c.prefix, "ctl").await;
    let mut b = bundle(&format!("{}-web", c.tag), 2, 2, 49, c.dir.path());
    let yaml = berth::model::manifest::to_yaml(std::slice::from_ref(&b));
    let out = berth(
        &c.prefix,
        &["apply", "-f", "-", "--wait", "--timeout", "30s"],
        Some(&yaml),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("converged"), "{err}");
    assert_eq!(c.status(b.name()).await.unwrap().ready_replicas, 2);

    // Banned from the only node: it cannot be placed, and the wait says why when it gives up.
    b.metadata.name = format!("{}-nowhere", c.tag);
    b.spec.network.as_mut().unwrap().ip_range_start = Some("127.0.50.10".into());
    b.spec.locations = vec![berth::model::Location {
        node: Some(a.name.clone()),
        label: None,
        score: "-INFINITY".into(),
        ..Default::default()
    }];
    let yaml = berth::model::manifest::to_yaml(std::slice::from_ref(&b));
    let out = berth(
        &c.prefix,
        &["apply", "-f", "-", "--wait", "--timeout", "3s"],
        Some(&yaml),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out after 3s") && err.contains("1 banned by location"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_replicas_stay_put_on_scale_up_and_node_join() {
    let c = Cluster::new("sticky").await;
    let _a = c.node("a").await;
    let _ctl = TestController::start(&c.prefix, "ctl").await;
    let mut b = bundle(&format!("{}-web", c.tag), 2, 2, 42, c.dir.path());
    c.apply(&b).await;
    let before = c.ready(&b, |_| true).await;
    let ids: Vec<String> = (0..2).map(|i| c.container_id(&b, i)).collect();
    let _b2 = c.node("b").await;
    b.spec.docker.as_mut().unwrap().replicas = Some(3);
    c.apply(&b).await;
    let after = c.ready(&b, |p| p.len() == 3).await;
    assert_eq!(after[&0], before[&0]);
    assert_eq!(after[&1], before[&1]);
    assert_eq!(
        after[&2],
        c.node_name("b"),
        "the new replica goes to the empty node"
    );
    for i in 0..2 {
        assert_eq!(
            c.container_id(&b, i),
            ids[i as usize],
            "replica {i} not restarted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_s_replicas_come_back_elsewhere_with_the_same_addresses() {
    let c = Cluster::new("failover").await;
    let proxy = Proxy::start(etcd_endpoint()).await;
    let mut a = TestNode::start_via(
        &c.prefix,
        &c.node_name("a"),
        Some(proxy.addr.to_string()),
        3,
    )
    .await;
    let b2 = c.node("b").await;
    c.registered(&[&a, &b2]).await;
    let _ctl = TestController::start(&c.prefix, "ctl").await;
    let b = bundle(&format!("{}-web", c.tag), 2, 2, 43, c.dir.path());
    c.apply(&b).await;
    let placed = c.ready(&b, |p| count_by_node(p).len() == 2).await;
    let (lost, _) = placed
        .iter()
        .find(|(_, n)| **n == c.node_name("a"))
        .unwrap();
    let lost = *lost;
    // The host dies: its agent stops, its etcd traffic stops, its containers vanish.
    let t0 = Instant::now();
    a.crash();
    proxy.sever();
    docker(&["rm", "-f", &b.container_name(lost)]);
    let moved = c.ready(&b, |p| p[&lost] == c.node_name("b")).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(3 + 10),
        "replica back after {took:?}: lease TTL 3 s plus a bound"
    );
    assert_eq!(moved[&lost], c.node_name("b"));
    let st = c.replica(b.name(), lost).await.unwrap();
    assert_eq!(
        st.address.as_deref(),
        Some(format!("127.0.43.{}", 10 + lost).as_str())
    );
    let page = docker(&["exec", &b.container_name(lost), "hostname"]);
    assert_eq!(page, b.replica_name(lost), "same name");
    assert!(
        c.dir.path().join(b.replica_name(lost)).is_dir(),
        "same storage mapping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_agent_stops_its_replica_before_its_lease_expires() {
    let c = Cluster::new("partition").await;
    let proxy = Proxy::start(etcd_endpoint()).await;
    let a = TestNode::start_via(
        &c.prefix,
        &c.node_name("a"),
        Some(proxy.addr.to_string()),
        3,
    )
    .await;
    let _ctl = TestController::start(&c.prefix, "ctl").await;
    let b = bundle(&format!("{}-web", c.tag), 1, 1, 44, c.dir.path());
    c.apply(&b).await;
    c.ready(&b, |_| true).await;
    let _b = c.node("b").await;
    let node_key = c.store.keys().node(&a.name);
    let filter = format!("label=berth.io/bundle={}", b.name());
    proxy.sever();
    // Sample until the replica runs on b: never two running copies; a's copy gone before
    // a's node key (the lease) expired.
    let (mut gone_at, mut expired_at) = (None, None);
    let t0 = Instant::now();
    loop {
        let running = docker(&["ps", "-q", "--filter", &filter]);
        let copies = running.lines().count();
        assert!(
            copies <= 1,
            "two copies of one replica running at {:?}",
            t0.elapsed()
        );
        let on_a = docker(&[
            "ps",
            "-q",
            "--filter",
            &filter,
            "--filter",
            &format!("label=berth.io/node={}", a.name),
        ]);
        if on_a.is_empty() && gone_at.is_none() {
            gone_at = Some(t0.elapsed());
        }
        if expired_at.is_none() && c.store.get(&node_key).await.unwrap().is_none() {
            expired_at = Some(t0.elapsed());
        }
        let on_b = docker(&[
            "ps",
            "-q",
            "--filter",
            &filter,
            "--filter",
            &format!("label=berth.io/node={}", c.node_name("b")),
        ]);
        if !on_b.is_empty() {
            break;
        }
        assert!(t0.elapsed() < WAIT, "the replica never came up on b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (gone, expired) = (
        gone_at.unwrap(),
        expired_at.expect("the lease expired before b took over"),
    );
    assert!(
        gone < expired,
        "fenced at {gone:?}, lease expired at {expired:?}"
    );
    proxy.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_threshold_moves_a_flapping_replica() {
    let c = Cluster::new("flap").await;
    let (a, b2) = (c.node("a").await, c.node("b").await);
    c.registered(&[&a, &b2]).await;
    let _ctl = TestController::start(&c.prefix, "ctl").await;
    let mut b = bundle(&format!("{}-web", c.tag), 1, 1, 45, c.dir.path());
    b.spec.meta_attributes.push(NvPair {
        id: None,
        name: "migration-threshold".into(),
        value: Some("2".into()),
    });
    c.apply(&b).await;
    let first = c.ready(&b, |_| true).await[&0].clone();
    for n in 1..=2 {
        docker(&["kill", &b.container_name(0)]);
        eventually(WAIT, "the failure to be counted", || async {
            c.replica(b.name(), 0)
                .await
                .filter(|s| s.fail_counts.get(&first) == Some(&n))
        })
        .await;
    }
    let moved = c.ready(&b, |p| p[&0] != first).await;
    assert_ne!(moved[&0], first, "moved off the node it failed on twice");
    let st = c.replica(b.name(), 0).await.unwrap();
    assert_eq!(
        st.fail_counts.get(&first),
        Some(&2),
        "the history moved with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_controller_takes_over_with_nothing_restarted() {
    let c = Cluster::new("standby").await;
    let _a = c.node("a").await;
    let mut first = TestController::start(&c.prefix, "first").await;
    let mut b = bundle(&format!("{}-web", c.tag), 1, 2, 46, c.dir.path());
    c.apply(&b).await;
    c.ready(&b, |_| true).await;
    let _second = TestController::start(&c.prefix, "second").await;
    let id = c.container_id(&b, 0);
    let started = docker(&[
        "inspect",
        "-f",
        "{{.State.StartedAt}}",
        &b.container_name(0),
    ]);
    first.stop().await;
    // The standby leads: it places a new replica.
    b.spec.docker.as_mut().unwrap().replicas = Some(2);
    c.apply(&b).await;
    c.ready(&b, |p| p.len() == 2).await;
    assert_eq!(c.container_id(&b, 0), id);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.State.StartedAt}}",
            &b.container_name(0)
        ]),
        started
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_stop_unmanage_and_delete_keep_host_directories() {
    let c = Cluster::new("lifecycle").await;
    let _a = c.node("a").await;
    let _ctl = TestController::start(&c.prefix, "ctl").await;
    let mut b = bundle(&format!("{}-web", c.tag), 3, 3, 47, c.dir.path());
    c.apply(&b).await;
    c.ready(&b, |_| true).await;
    docker(&[
        "exec",
        &b.container_name(2),
        "sh",
        "-c",
        "echo kept > /data/file",
    ]);

    b.spec.docker.as_mut().unwrap().replicas = Some(1);
    c.apply(&b).await;
    c.ready(&b, |p| p.len() == 1).await;
    for i in [1, 2] {
        let name = b.container_name(i);
        eventually(WAIT, "scaled-down replicas removed", || async {
            docker_try(&["inspect", &name]).is_none().then_some(())
        })
        .await;
    }

    // is-managed=false: berth leaves the container alone, even when it dies.
    b.spec.meta_attributes = vec![NvPair {
        id: None,
        name: "is-managed".into(),
        value: Some("false".into()),
    }];
    c.apply(&b).await;
    eventually(WAIT, "the assignment marked unmanaged", || async {
        let (_, kvs) = c
            .store
            .list(&c.store.keys().assignments(&c.node_name("a")))
            .await
            .unwrap();
        kvs.iter()
            .any(|kv| String::from_utf8_lossy(&kv.value).contains("\"managed\":false"))
            .then_some(())
    })
    .await;
    docker(&["stop", "-t", "1", &b.container_name(0)]);
    // Proof that the agent has reconciled since the stop: it starts another bundle's replica.
    let probe = bundle(&format!("{}-probe", c.tag), 1, 1, 48, c.dir.path());
    c.apply(&probe).await;
    c.ready(&probe, |_| true).await;
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &b.container_name(0)]),
        "false"
    );
    c.store
        .delete_bundle(probe.name(), Expect::Any)
        .await
        .unwrap();

    // target-role Stopped: managed again, and stopped.
    b.spec.meta_attributes = vec![NvPair {
        id: None,
        name: "target-role".into(),
        value: Some("Stopped".into()),
    }];
    c.apply(&b).await;
    let name0 = b.container_name(0);
    eventually(WAIT, "a stopped bundle's container removed", || async {
        docker_try(&["inspect", &name0]).is_none().then_some(())
    })
    .await;
    assert!(
        c.store.get_bundle(b.name()).await.unwrap().is_some(),
        "the bundle stays"
    );

    b.spec.meta_attributes.clear();
    c.apply(&b).await;
    c.ready(&b, |_| true).await;
    c.store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    eventually(WAIT, "status and replica keys cleaned up", || async {
        let status = c
            .store
            .get(&c.store.keys().bundle_status(b.name()))
            .await
            .unwrap();
        let (_, replicas) = c
            .store
            .list(&c.store.keys().replicas(b.name()))
            .await
            .unwrap();
        (status.is_none() && replicas.is_empty() && docker_try(&["inspect", &name0]).is_none())
            .then_some(())
    })
    .await;
    let kept = c.dir.path().join(b.replica_name(2)).join("file");
    assert_eq!(
        std::fs::read_to_string(kept).unwrap(),
        "kept\n",
        "host directories survive"
    );
}
