//! The control plane at scale (issue 14), against the real etcd: NODES node agents on the
//! **simulated engine** (`node::sim`, one engine per node, as separate hosts), in this
//! process and sharing one etcd connection, and one `berth controller` process. BUNDLES
//! bundles of 3 replicas are written at once; measured: time until every replica reports
//! running (from empty), keys written and requests made per replica placed, the
//! controller's resident memory, etcd writes and CPU while nothing changes (30 s, from 15 s
//! after convergence: events' last counts land within 10 s), and the
//! time until every replica runs again after 10% of the nodes die (their agents stop
//! renewing; leases expire after the TTL, 5 s). etcd is compacted and defragmented
//! first.
//!
//! Run: `bash scripts/setup.sh && NODES=1000 BUNDLES=10000 cargo bench --bench scale`
//! (defaults: 100 nodes, 1,000 bundles).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::model::Bundle;
use berth::model::cluster::{ReplicaState, ReplicaStatus};
use berth::node::sim::SimEngine;
use berth::store::{Store, encode_bundle};
use common::{TestPrefix, etcd_endpoint};
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bundle(i: usize) -> Bundle {
    serde_json::from_value(serde_json::json!({
        "apiVersion": berth::model::API_VERSION,
        "kind": berth::model::KIND,
        "metadata": {"name": format!("b{i:05}")},
        "spec": {"docker": {"image": "busybox", "replicas": 3}},
    }))
    .expect("a valid bundle")
}

/// What the bench waits on, kept current by a watch (listing 30,000 statuses four times a
/// second loaded etcd more than the control plane did): per replica key, the node it runs
/// on when running; the bundles whose status says all 3 replicas are ready; the node keys
/// registered.
#[derive(Default)]
struct Progress {
    running: std::collections::HashMap<String, Option<String>>,
    ready: std::collections::HashSet<String>,
    nodes: std::collections::HashSet<String>,
}

impl Progress {
    fn put(&mut self, replicas: &str, statuses: &str, kv: &berth::store::Kv) {
        if !kv.key.starts_with(replicas) && !kv.key.starts_with(statuses) {
            self.nodes.insert(kv.key.clone());
        } else if kv.key.starts_with(replicas) {
            let on = serde_json::from_slice::<ReplicaStatus>(&kv.value)
                .ok()
                .filter(|s| s.state == ReplicaState::Running)
                .map(|s| s.node);
            self.running.insert(kv.key.clone(), on);
        } else if kv.key.starts_with(statuses) {
            let ready = serde_json::from_slice::<berth::model::BundleStatus>(&kv.value)
                .is_ok_and(|s| s.ready_replicas == 3);
            if ready {
                self.ready.insert(kv.key.clone());
            } else {
                self.ready.remove(&kv.key);
            }
        }
    }

    /// Replicas reported running on nodes not in `dead`.
    fn running(&self, dead: &BTreeSet<String>) -> usize {
        self.running
            .values()
            .flatten()
            .filter(|n| !dead.contains(*n))
            .count()
    }
}

/// Watches replica and bundle statuses and node keys into a [`Progress`] (only those: a
/// watch of the whole prefix doubled what etcd sends).
fn watch_progress(store: &Store) -> std::sync::Arc<std::sync::Mutex<Progress>> {
    use berth::store::watch::{WatchConfig, WatchEvent, watch_prefix};
    use futures::StreamExt;
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::default()));
    let keys = store.keys();
    let replicas = format!("{}replicas/", keys.root());
    let statuses = keys.statuses().to_string();
    for prefix in [replicas.clone(), statuses.clone(), keys.nodes()] {
        let mut events = Box::pin(watch_prefix(
            store.members().clone(),
            prefix.clone(),
            WatchConfig::default(),
        ));
        let shared = progress.clone();
        let (replicas, statuses) = (replicas.clone(), statuses.clone());
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                let mut p = shared.lock().unwrap();
                match ev {
                    Ok(WatchEvent::Listed { items, .. }) => {
                        p.running.retain(|k, _| !k.starts_with(&prefix));
                        p.ready.retain(|k| !k.starts_with(&prefix));
                        p.nodes.retain(|k| !k.starts_with(&prefix));
                        for kv in &items {
                            p.put(&replicas, &statuses, kv);
                        }
                    }
                    Ok(WatchEvent::Put(kv)) => p.put(&replicas, &statuses, &kv),
                    Ok(WatchEvent::Deleted { key, .. }) => {
                        p.running.remove(&key);
                        p.ready.remove(&key);
                        p.nodes.remove(&key);
                    }
                    Err(e) => eprintln!("scale: progress watch: {e}"),
                }
            }
        });
    }
    progress
}

/// From etcd's /metrics: handled gRPC requests, and keys put (each key of a transaction
/// counts).
fn etcd_counts() -> (u64, u64) {
    let out = Command::new("curl")
        .args(["-s", &format!("{}/metrics", etcd_endpoint())])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let sum = |name: &str| {
        out.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (sum("grpc_server_handled_total"), sum("etcd_mvcc_put_total"))
}

/// Resident memory now (`VmRSS`) or at its peak so far (`VmHWM`), MiB.
fn rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmRSS:")
}

fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// Waits until `want` replicas run on live nodes and every bundle's status says so (what
/// `berth get` shows).
async fn wait_running(
    progress: &std::sync::Mutex<Progress>,
    want: usize,
    dead: &BTreeSet<String>,
    what: &str,
) {
    let start = Instant::now();
    let until = start + Duration::from_secs(600);
    let mut said = Instant::now();
    // SCALE_TRACE=1: the counts every 100 ms, with the time since the wait began.
    let trace = std::env::var_os("SCALE_TRACE").is_some();
    let mut last = (usize::MAX, usize::MAX);
    loop {
        let (n, ready) = {
            let p = progress.lock().unwrap();
            (p.running(dead), p.ready.len())
        };
        if n >= want && ready * 3 >= want {
            return;
        }
        assert!(Instant::now() < until, "{what}: {n} of {want} running");
        if trace && last != (n, ready) {
            last = (n, ready);
            eprintln!(
                "scale: {what}: {:.2?}: {n} running, {ready} ready",
                start.elapsed()
            );
        }
        if said.elapsed() >= Duration::from_secs(1) {
            eprintln!("scale: {what}: {n} of {want} running, {ready} bundles ready");
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nodes = env("NODES", 100);
    let bundles = env("BUNDLES", 1000);
    let replicas = bundles * 3;
    let p = TestPrefix::new("scale");
    let store = p.store().await;
    // Every run against a compacted, defragmented etcd (as a fresh one is): etcd keeps each
    // revision until compacted, and the history of earlier runs and tests (900 MB of it
    // after a day of runs) made the same run several times slower.
    {
        let (_, client) = store.members().current().await;
        let mut c = client.expect("an etcd client");
        let rev = store.revision().await.expect("etcd's revision");
        // (Fails when etcd is compacted at this revision already: nothing to do then.)
        let _ = c.compact(rev, None).await;
        c.defragment().await.expect("etcd defragments");
        let size = c.status().await.map(|s| s.db_size()).unwrap_or(0);
        eprintln!(
            "scale: etcd compacted at revision {rev} and defragmented ({} MB)",
            size / 1_000_000
        );
    }
    let state = tempfile::tempdir().unwrap();
    let mut agents = Vec::new();
    let per_connection = env("SCALE_AGENTS_PER_CONNECTION", 25).max(1);
    let mut conn = store.clone();
    for n in 0..nodes {
        let name = format!("sim{n:04}");
        let mut cfg = berth::node::NodeConfig::new(&name);
        cfg.state_dir = state.path().join(&name);
        cfg.on_stop = berth::node::config::OnStop::Maintenance;
        let token = CancellationToken::new();
        // A connection per group of agents (a real agent has its own): 1,000 agents'
        // watches on one HTTP/2 connection can fill its 5 MiB flow-control window between
        // them while each waits on a reply, and then nothing moves; one connection each
        // costs this 2-core machine more than it costs the control plane measured.
        if n % per_connection == 0 {
            conn = p.store().await;
        }
        let task = tokio::spawn(berth::node::run(
            conn.clone(),
            SimEngine::new(),
            cfg,
            token.clone(),
        ));
        agents.push((name, token, task));
    }
    let until = Instant::now() + Duration::from_secs(120);
    while store.list(&store.keys().nodes()).await.unwrap().1.len() < nodes {
        assert!(
            Instant::now() < until,
            "the simulated nodes did not register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("scale: {nodes} nodes registered");
    // SCALE_CONTROLLER_WRAP runs the controller under a profiler ("heaptrack -o /tmp/c"):
    // it is then stopped with SIGTERM, so that the profiler writes its data (and the RSS
    // measured is the wrapper's).
    let wrap: Vec<String> = std::env::var("SCALE_CONTROLLER_WRAP")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut controller = Command::new(wrap.first().map_or(env!("CARGO_BIN_EXE_berth"), |w| w))
        .args(wrap.iter().skip(1))
        .args(wrap.first().map(|_| env!("CARGO_BIN_EXE_berth")))
        .args(["controller", "--name", "scale"])
        .env("BERTH_ETCD", etcd_endpoint())
        .env("BERTH_PREFIX", p.prefix.trim_end_matches('/'))
        // BERTH_LOG=berth::controller=debug shows each pass's cost (with SCALE_CONTROLLER_LOG).
        .env(
            "BERTH_LOG",
            std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("SCALE_CONTROLLER_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("controller log")),
            None => Stdio::null(),
        })
        .spawn()
        .expect("berth controller");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let progress = watch_progress(&store);
    // CPU seconds of etcd (when it is a local process), the controller and this process
    // (the agents), to see where the time goes.
    let etcd_pid = Command::new("pgrep")
        .args(["-x", "etcd"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        });
    let cpus = || {
        (
            etcd_pid.map_or(0.0, cpu_secs),
            cpu_secs(controller.id()),
            cpu_secs(std::process::id()),
        )
    };
    let cpu0 = cpus();
    let (req0, put0) = etcd_counts();
    let rev0 = store.revision().await.unwrap();
    let t = Instant::now();
    let items = (0..bundles)
        .map(|i| {
            let b = bundle(i);
            (store.keys().bundle(b.name()), encode_bundle(&b))
        })
        .collect();
    let bundle_txns = store.put_many(items).await.unwrap() as i64;
    let written = t.elapsed();
    eprintln!("scale: {bundles} bundles written in {written:.2?}");
    wait_running(&progress, replicas, &BTreeSet::new(), "from empty").await;
    let converge = t.elapsed();
    let cpu1 = cpus();
    eprintln!(
        "scale: CPU while converging: etcd {:.1} s, controller {:.1} s, agents and bench {:.1} s",
        cpu1.0 - cpu0.0,
        cpu1.1 - cpu0.1,
        cpu1.2 - cpu0.2
    );
    // Settling: an event's repeats (a combined event's count) are written at most every
    // 10 s, so the last of them lands up to 10 s after the change. They count as keys
    // written for the placement, and the idle window starts after them.
    eprintln!("scale: converged in {converge:.2?}; settling for 15 s, then idle for 30 s");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (req1, put1) = etcd_counts();
    // Keys written and requests made placing them: less the bundle writes themselves.
    let writes = (put1 - put0).saturating_sub(bundles as u64) as f64 / replicas as f64;
    let requests = (req1 - req0) as f64 / replicas as f64;
    // Write transactions (etcd revisions: a transaction of many keys is one), less the
    // bundle writes' own.
    let revisions = (store.revision().await.unwrap() - rev0 - bundle_txns) as f64 / replicas as f64;

    // Idle.
    let me = std::process::id();
    let (rev_i, cpu_c, cpu_a) = (
        store.revision().await.unwrap(),
        cpu_secs(controller.id()),
        cpu_secs(me),
    );
    // What is written while idle, by kind of key (it should be nothing).
    let kinds = {
        use berth::store::watch::{WatchConfig, WatchEvent, watch_prefix};
        use futures::StreamExt;
        let root = store.keys().root();
        let mut events = Box::pin(watch_prefix(
            store.members().clone(),
            root.clone(),
            WatchConfig::default(),
        ));
        let mut kinds: std::collections::BTreeMap<String, (u64, String)> = Default::default();
        let mut seen: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        let mut shown = false;
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, events.next()).await {
            let key = match ev {
                Ok(WatchEvent::Put(kv)) => {
                    if let Some(before) = seen.insert(kv.key.clone(), kv.value.clone())
                        && !shown
                    {
                        shown = true;
                        eprintln!(
                            "scale: {} written again while idle:\n  before {}\n  after  {}",
                            kv.key,
                            String::from_utf8_lossy(&before),
                            String::from_utf8_lossy(&kv.value)
                        );
                    }
                    kv.key
                }
                Ok(WatchEvent::Deleted { key, .. }) => key,
                _ => continue,
            };
            let rest = key.strip_prefix(&root).unwrap_or(&key);
            let kind = rest.split('/').next().unwrap_or_default().to_string();
            let e = kinds.entry(kind).or_insert((0, key.clone()));
            e.0 += 1;
        }
        kinds
    };
    let idle_writes = store.revision().await.unwrap() - rev_i;
    let idle_cpu_c = cpu_secs(controller.id()) - cpu_c;
    let idle_cpu_a = cpu_secs(me) - cpu_a;
    let controller_rss = rss_mib(controller.id());
    let controller_peak = proc_status_mib(controller.id(), "VmHWM:");
    let agents_rss = rss_mib(me);

    // 10% of the nodes die: their agents stop renewing (aborted, not stopped cleanly).
    let dead: BTreeSet<String> = agents
        .iter()
        .step_by(10)
        .map(|(name, _, _)| name.clone())
        .collect();
    if !kinds.is_empty() {
        eprintln!("scale: written while idle, by kind (count, one key): {kinds:?}");
    }
    let t = Instant::now();
    if std::env::var_os("SCALE_TRACE").is_some() {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!(
            "scale: killing {} agents at {:.3} (Unix s)",
            dead.len(),
            at.as_secs_f64()
        );
    }
    for (name, _, task) in &agents {
        if dead.contains(name) {
            task.abort();
        }
    }
    // When the last of the dead nodes' leases ran out (their keys gone): the rest is
    // berth's.
    let expired = {
        let progress = progress.clone();
        let dead_keys: Vec<String> = dead.iter().map(|n| store.keys().node(n)).collect();
        tokio::spawn(async move {
            loop {
                if !dead_keys
                    .iter()
                    .any(|k| progress.lock().unwrap().nodes.contains(k))
                {
                    return t.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    wait_running(&progress, replicas, &dead, "after 10% of the nodes died").await;
    let reconverge = t.elapsed();
    let expired = expired.await.unwrap();

    println!(
        "scale: {nodes} simulated nodes, {bundles} bundles ({replicas} replicas): written in \
         {written:.2?}; all running {converge:.2?} after the write; {writes:.2} keys written in \
         {revisions:.3} write transactions and {requests:.2} etcd requests per replica \
         placed; idle 30 s: {idle_writes} writes, controller CPU {idle_cpu_c:.2} s, agents' \
         CPU {idle_cpu_a:.2} s; RSS controller {controller_rss:.1} MiB (peak \
         {controller_peak:.1} MiB), {nodes} agents {agents_rss:.0} MiB; {} nodes died → all \
         running elsewhere {reconverge:.2?} later (lease TTL 5 s; the last lease ran out \
         after {expired:.2?})",
        dead.len()
    );
    if wrap.is_empty() {
        let _ = controller.kill();
    } else {
        // The controller is the wrapper's child.
        let _ = Command::new("pkill")
            .args(["-TERM", "-x", "berth", "-P", &controller.id().to_string()])
            .status();
    }
    let _ = controller.wait();
    for (_, token, _) in &agents {
        token.cancel();
    }
    for (_, _, task) in agents {
        let _ = task.await;
    }
}
