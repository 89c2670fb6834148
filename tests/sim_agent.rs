//! The node agent's logic on the **simulated engine** (`node::sim`), against the real etcd:
//! what it decides (create, restart after a death, remove when unassigned, adopt after its
//! own restart) without Docker. How Docker itself behaves is tested in `tests/node.rs`.

mod common;

use std::time::Duration;

use berth::model::cluster::{Assignment, ReplicaState};
use berth::node::sim::SimEngine;
use berth::store::Expect;
use common::{TestPrefix, eventually, httpd_bundle};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_converges_a_simulated_engine_restarts_removes_and_adopts() {
    let p = TestPrefix::new("simagent");
    let store = p.store().await;
    let engine = SimEngine::new();
    let state = tempfile::tempdir().unwrap();
    let spawn = |token: CancellationToken| {
        let mut cfg = berth::node::NodeConfig::new("sim1");
        cfg.state_dir = state.path().to_path_buf();
        cfg.lease_ttl = Duration::from_secs(2);
        // Stopped to be restarted: the containers stay for the next agent to adopt.
        cfg.on_stop = berth::node::config::OnStop::Maintenance;
        let store = store.clone();
        let engine = engine.clone();
        tokio::spawn(async move { berth::node::run(store, engine, cfg, token).await })
    };
    let token = CancellationToken::new();
    let agent = spawn(token.clone());
    let b = httpd_bundle("simb", 3, 3, 120);
    let key = store.keys().assignment("sim1", b.name());
    let assign = |replicas: Vec<u32>| Assignment {
        bundle: b.clone().into(),
        replicas,
        managed: true,
        promoted: vec![],
        pinned: vec![],
        cleanup: 0,
        stop_after: vec![],
        notify: None,
    };
    store
        .put(
            &key,
            serde_json::to_vec(&assign(vec![0, 1, 2])).unwrap(),
            Expect::Any,
        )
        .await
        .unwrap();
    let all_running = || async {
        let c = engine.containers();
        (c.len() == 3 && c.values().all(|(running, _)| *running)).then_some(())
    };
    eventually(WAIT, "three simulated containers running", all_running).await;
    for i in 0..3 {
        eventually(WAIT, "status running", || async {
            common::replica_status(&store, b.name(), i)
                .await
                .filter(|s| s.state == ReplicaState::Running)
        })
        .await;
    }

    // A death: restarted at once, counted.
    assert!(engine.kill(&b.container_name(1), 1));
    let st = eventually(WAIT, "replica 1 restarted and counted", || async {
        common::replica_status(&store, b.name(), 1)
            .await
            .filter(|s| s.restart_count == 1 && s.state == ReplicaState::Running)
    })
    .await;
    assert_eq!(st.fail_counts.get("sim1"), Some(&1));
    assert!(
        st.last_failure
            .unwrap()
            .reason
            .contains("exited with code 1")
    );

    // The agent restarts: it adopts the running containers (nothing created again).
    let creates = engine.calls("create");
    token.cancel();
    agent.await.unwrap().unwrap();
    let token = CancellationToken::new();
    let agent = spawn(token.clone());
    // Scale down to 2: replica 2 goes; 0 and 1 stay as they were.
    store
        .put(
            &key,
            serde_json::to_vec(&assign(vec![0, 1])).unwrap(),
            Expect::Any,
        )
        .await
        .unwrap();
    eventually(WAIT, "replica 2 removed", || async {
        let c = engine.containers();
        (c.len() == 2 && !c.contains_key(&b.container_name(2))).then_some(())
    })
    .await;
    assert_eq!(engine.calls("create"), creates, "adopted, not recreated");
    token.cancel();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_replicas_are_removed_together_not_one_after_another() {
    let p = TestPrefix::new("simpar");
    let store = p.store().await;
    let engine = SimEngine::new();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = berth::node::NodeConfig::new("simpar1");
    cfg.state_dir = state.path().to_path_buf();
    cfg.on_stop = berth::node::config::OnStop::Maintenance;
    let token = CancellationToken::new();
    let agent = tokio::spawn(berth::node::run(
        store.clone(),
        engine.clone(),
        cfg,
        token.clone(),
    ));
    let b = httpd_bundle("simpar", 8, 8, 130);
    let key = store.keys().assignment("simpar1", b.name());
    let assignment = Assignment {
        bundle: b.clone().into(),
        replicas: (0..8).collect(),
        managed: true,
        promoted: vec![],
        pinned: vec![],
        cleanup: 0,
        stop_after: vec![],
        notify: None,
    };
    store
        .put(&key, serde_json::to_vec(&assignment).unwrap(), Expect::Any)
        .await
        .unwrap();
    eventually(WAIT, "eight simulated containers running", || async {
        let c = engine.containers();
        (c.len() == 8 && c.values().all(|(running, _)| *running)).then_some(())
    })
    .await;
    // Each removal waits out a stop grace, as containers that ignore SIGTERM do.
    engine.set_remove_latency(Duration::from_millis(300));
    store.delete(&key, Expect::Any).await.unwrap();
    eventually(WAIT, "every container removed", || async {
        engine.containers().is_empty().then_some(())
    })
    .await;
    assert_eq!(
        engine.most_concurrent_removals(),
        8,
        "the eight removals did not run at once"
    );
    token.cancel();
    agent.await.unwrap().unwrap();
}

/// The whole agent on the simulated engine and a host in memory (`node::host::MemoryHost`):
/// no root, no netlink. Each replica's address is added (recorded first) and announced once
/// its container runs, one the host has on its own interfaces is refused with the reason and
/// its replica not started, files are prepared before the start, and an unassigned bundle's
/// addresses are removed and forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_agent_runs_on_a_memory_host_without_root() {
    use berth::node::host::MemoryHost;
    use std::net::Ipv4Addr;
    let p = TestPrefix::new("simhost");
    let store = p.store().await;
    let engine = SimEngine::new();
    // Replica 2's address (127.0.140.12) is the host's own.
    let own = Ipv4Addr::new(127, 0, 140, 12);
    let host = MemoryHost::with_addresses([own]);
    let agent = OnMemoryHost::start(store.clone(), &engine, &host, "simhost1", |_| {});
    let b = httpd_bundle("simhost", 3, 3, 140);
    common::assign(&store, "simhost1", &b, &[0, 1, 2]).await;
    let key = store.keys().assignment("simhost1", b.name());
    eventually(WAIT, "replicas 0 and 1 running", || async {
        let c = engine.containers();
        (c.len() == 2 && c.values().all(|(running, _)| *running)).then_some(())
    })
    .await;
    let refused = eventually(WAIT, "replica 2 refused", || async {
        common::replica_status(&store, b.name(), 2)
            .await
            .filter(|s| s.state == ReplicaState::Failed)
    })
    .await;
    let reason = refused.last_failure.map(|f| f.reason).unwrap_or_default();
    assert!(
        reason.contains("127.0.140.12"),
        "the reason names the address: {reason}"
    );
    assert!(!engine.containers().contains_key(&b.container_name(2)));
    let ours = [
        Ipv4Addr::new(127, 0, 140, 10),
        Ipv4Addr::new(127, 0, 140, 11),
    ];
    eventually(WAIT, "both addresses announced", || async {
        host.read(|m| (m.announced.len() == 2).then_some(()))
    })
    .await;
    host.read(|m| {
        assert!(ours.iter().all(|ip| m.addresses.contains(ip)));
        assert_eq!(m.recorded, ours.into_iter().collect());
        let mut announced = m.announced.clone();
        announced.sort();
        assert_eq!(announced, ours.to_vec());
        assert!(m.prepared.contains(&b.container_name(0)));
        assert!(m.prepared.contains(&b.container_name(1)));
    });

    store.delete(&key, Expect::Any).await.unwrap();
    eventually(WAIT, "containers removed and addresses dropped", || async {
        let gone = engine.containers().is_empty();
        host.read(|m| {
            (gone && m.recorded.is_empty() && m.addresses == [own].into_iter().collect())
                .then_some(())
        })
    })
    .await;
    agent.stop().await;
}

/// The fence goes through the host as well: cut from etcd, an agent on a memory host kills
/// its replicas (the simulated engine has no cgroup scope to freeze) and drops their
/// addresses; once its lease is renewed, it runs them again at once (an agent that did not
/// reconcile at the renewal waited for the minute's resync, and failed this test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_on_a_memory_host_kills_and_drops_and_the_renewed_lease_runs_them_again() {
    use berth::node::host::MemoryHost;
    use std::net::Ipv4Addr;
    let p = TestPrefix::new("simfence");
    let store = p.store().await;
    let proxy = common::Proxy::start(p.endpoint.clone()).await;
    let via = p.config().with_endpoints(&proxy.addr.to_string());
    let agent_store = common::connect_checked(&via).await;
    let engine = SimEngine::new();
    let host = MemoryHost::default();
    // Fenced two thirds of the TTL after the last renewal (6 s), expired at 9 s: the
    // connection is restored in between.
    let ttl = |cfg: &mut berth::node::NodeConfig| cfg.lease_ttl = Duration::from_secs(9);
    let agent = OnMemoryHost::start(agent_store, &engine, &host, "simfence1", ttl);
    let b = httpd_bundle("simfence", 2, 2, 141);
    common::assign(&store, "simfence1", &b, &[0, 1]).await;
    let ours: std::collections::BTreeSet<Ipv4Addr> = [10, 11]
        .into_iter()
        .map(|i| Ipv4Addr::new(127, 0, 141, i))
        .collect();
    let running_with_addresses = || async {
        let c = engine.containers();
        let up = c.len() == 2 && c.values().all(|(running, _)| *running);
        host.read(|m| (up && m.addresses == ours).then_some(()))
    };
    eventually(
        WAIT,
        "both replicas running with their addresses",
        running_with_addresses,
    )
    .await;
    let node_key = store.keys().node("simfence1");
    let lease = || async {
        let kv = store.get(&node_key).await.unwrap();
        kv.expect("the node is registered").lease
    };
    let registered = lease().await;

    proxy.sever();
    eventually(
        WAIT,
        "fenced: replicas killed, addresses dropped",
        || async {
            let gone = engine.containers().is_empty();
            host.read(|m| {
                let fenced = m.freezes == 1 && m.kills == 1;
                (fenced && gone && m.addresses.is_empty()).then_some(())
            })
        },
    )
    .await;
    host.read(|m| assert_eq!(m.recorded, ours, "dropped, still recorded"));

    proxy.restore();
    eventually(
        WAIT,
        "running again after the renewal",
        running_with_addresses,
    )
    .await;
    // The same lease, renewed: the replicas came back through the fence's end, not through
    // a registration anew (which relists everything and would hide a missed reconcile).
    assert_eq!(
        lease().await,
        registered,
        "the lease was renewed, not replaced"
    );

    store
        .delete(&store.keys().assignment("simfence1", b.name()), Expect::Any)
        .await
        .unwrap();
    eventually(WAIT, "removed once unassigned", || async {
        engine.containers().is_empty().then_some(())
    })
    .await;
    agent.stop().await;
}

/// A node agent in this process on the simulated engine and a memory host, under its own
/// state directory; `tune` adjusts its configuration.
struct OnMemoryHost {
    token: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), berth::node::NodeError>>,
    _state: tempfile::TempDir,
}

impl OnMemoryHost {
    fn start(
        store: berth::store::Store,
        engine: &SimEngine,
        host: &berth::node::host::MemoryHost,
        name: &str,
        tune: impl FnOnce(&mut berth::node::NodeConfig),
    ) -> OnMemoryHost {
        let state = tempfile::tempdir().unwrap();
        let mut cfg = berth::node::NodeConfig::new(name);
        cfg.state_dir = state.path().to_path_buf();
        tune(&mut cfg);
        let token = CancellationToken::new();
        let task = tokio::spawn(berth::node::run_on(
            store,
            engine.clone(),
            host.clone(),
            cfg,
            token.clone(),
        ));
        OnMemoryHost {
            token,
            task,
            _state: state,
        }
    }

    /// Stops the agent, which must have run without an error.
    async fn stop(self) {
        self.token.cancel();
        self.task.await.unwrap().unwrap();
    }
}
