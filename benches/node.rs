//! Node agent against the real dockerd and etcd:
//!
//! 1. assignment written → N containers running, for N = 1, 3, 10, beside `docker run -d` of
//!    the same N containers (same image, ports, mounts) in the same run; the ratio is
//!    berth / docker run.
//! 2. container killed → running again (restarted by the agent from the Docker event).
//!
//! Run: `bash scripts/setup.sh && cargo bench --bench node` (prints a Markdown table).

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use berth::model::Bundle;
use berth::model::cluster::{Assignment, ReplicaState, ReplicaStatus};
use berth::node::engine::DockerEngine;
use berth::node::{NodeConfig, run};
use berth::store::{Expect, Store, StoreConfig};
use common::{docker, httpd_bundle, test_image};
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 5;

fn bundle(name: &str, n: u32) -> Bundle {
    httpd_bundle(name, n, n, 77)
}

async fn statuses(store: &Store, b: &Bundle) -> Vec<ReplicaStatus> {
    let (_, kvs) = store.list(&store.keys().replicas(b.name())).await.unwrap();
    kvs.iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect()
}

async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    test_image();
    let prefix = format!("/berth-bench/node-{}", std::process::id());
    let store = Store::connect(&StoreConfig::default().with_prefix(&prefix))
        .await
        .unwrap();
    let node = format!("bench-{}", std::process::id());
    let state = tempfile::tempdir().unwrap();
    let mut cfg = NodeConfig::new(&node);
    cfg.state_dir = state.path().to_path_buf();
    // The watchdog is `berth watchdog`: by default the agent runs its own executable, which
    // here is this bench (that ran the whole bench again, from every agent it started).
    cfg.watchdog = Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_berth")));
    let token = CancellationToken::new();
    let engine = DockerEngine::connect(None).await.unwrap();
    let agent = tokio::spawn(run(store.clone(), engine, cfg, token.clone()));

    println!(
        "| N | docker run -d (median of {ROUNDS}) | berth: assignment → all running | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    for n in [1u32, 3, 10] {
        let (mut plain, mut ours) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Baseline: docker run -d of the same containers, one after the other.
            let t = Instant::now();
            for i in 0..n {
                docker(&[
                    "run",
                    "-d",
                    "--name",
                    &format!("bench-plain-{i}"),
                    "--label",
                    "berth-bench=1",
                    "--stop-timeout",
                    "1",
                    "-p",
                    &format!("127.0.78.{}:8080:80", 10 + i),
                    "berth-test/httpd:1",
                ]);
            }
            plain.push(t.elapsed());
            let ids = docker(&["ps", "-aq", "--filter", "label=berth-bench=1"]);
            let mut rm = vec!["rm", "-f"];
            rm.extend(ids.split_whitespace());
            docker(&rm);

            let b = bundle(&format!("bench{n}r{round}"), n);
            let a = Assignment {
                bundle: b.clone().into(),
                replicas: (0..n).collect(),
                managed: true,
                promoted: vec![],
                pinned: vec![],
                cleanup: 0,
                stop_after: vec![],
                notify: None,
            };
            let key = store.keys().assignment(&node, b.name());
            let t = Instant::now();
            store
                .put(&key, serde_json::to_vec(&a).unwrap(), Expect::Any)
                .await
                .unwrap();
            wait_for("replicas running", async || {
                let s = statuses(&store, &b).await;
                s.len() == n as usize && s.iter().all(|s| s.state == ReplicaState::Running)
            })
            .await;
            ours.push(t.elapsed());
            store.delete(&key, Expect::Any).await.unwrap();
            wait_for("replicas removed", async || {
                statuses(&store, &b).await.is_empty()
            })
            .await;
        }
        let (p, o) = (median(plain), median(ours));
        println!(
            "| {n} | {} | {} | {:.2} |",
            ms(p),
            ms(o),
            o.as_secs_f64() / p.as_secs_f64()
        );
    }

    // Killed → running again, measured on Docker's own state.
    let b = bundle("benchkill", 1);
    let a = Assignment {
        bundle: b.clone().into(),
        replicas: vec![0],
        managed: true,
        promoted: vec![],
        pinned: vec![],
        cleanup: 0,
        stop_after: vec![],
        notify: None,
    };
    let key = store.keys().assignment(&node, b.name());
    store
        .put(&key, serde_json::to_vec(&a).unwrap(), Expect::Any)
        .await
        .unwrap();
    wait_for("replica running", async || {
        statuses(&store, &b)
            .await
            .first()
            .is_some_and(|s| s.state == ReplicaState::Running)
    })
    .await;
    let name = b.container_name(0);
    let mut back = Vec::new();
    for _ in 0..ROUNDS {
        let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &name]);
        let t = Instant::now();
        docker(&["kill", &name]);
        wait_for("container running again", async || {
            docker(&[
                "inspect",
                "-f",
                "{{.State.Running}} {{.State.StartedAt}}",
                &name,
            ]) != format!("true {started}")
                && docker(&["inspect", "-f", "{{.State.Running}}", &name]) == "true"
        })
        .await;
        back.push(t.elapsed());
        // Let it count as stable again so that every round is a first failure.
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    println!();
    println!(
        "container killed → running again: median {} (min {}, max {}) over {ROUNDS} kills \
         (including the `docker kill` CLI call)",
        ms(median(back.clone())),
        ms(*back.iter().min().unwrap()),
        ms(*back.iter().max().unwrap())
    );
    store.delete(&key, Expect::Any).await.unwrap();
    wait_for("replica removed", async || {
        statuses(&store, &b).await.is_empty()
    })
    .await;
    token.cancel();
    agent.await.unwrap().unwrap();
    let _ = Command::new("etcdctl")
        .args(["del", "--prefix", &format!("{prefix}/")])
        .output();
}
