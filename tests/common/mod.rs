//! Shared test harness: the real etcd, a per-test key prefix that cleans itself up, the berth
//! binary, etcdctl, and a TCP proxy that can cut a client off from etcd.
#![allow(dead_code)]

pub mod browser;
pub mod hosts;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth::store::{Store, StoreConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The etcd the tests use: `BERTH_TEST_ETCD`, or the local one `scripts/setup.sh` starts.
pub fn etcd_endpoint() -> String {
    std::env::var("BERTH_TEST_ETCD").unwrap_or_else(|_| "127.0.0.1:2379".to_string())
}

/// A unique prefix for one test; everything under it is deleted when the guard drops.
pub struct TestPrefix {
    pub prefix: String,
    /// The etcd it lives on.
    pub endpoint: String,
}

impl TestPrefix {
    /// A prefix on the shared local etcd.
    pub fn new(test: &str) -> TestPrefix {
        TestPrefix::on(&etcd_endpoint(), test)
    }

    /// A prefix on the given etcd.
    pub fn on(endpoint: &str, test: &str) -> TestPrefix {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!(
            "/berth-test/{test}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        TestPrefix {
            prefix,
            endpoint: endpoint.to_string(),
        }
    }

    pub fn config(&self) -> StoreConfig {
        StoreConfig::default()
            .with_endpoints(&self.endpoint)
            .with_prefix(&self.prefix)
    }

    /// A store on the real etcd; fails the test with a clear message when etcd is not there.
    pub async fn store(&self) -> Store {
        connect_checked(&self.config()).await
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint, "del", "--prefix"])
            .arg(format!("{}/", self.prefix))
            .output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!(
                "cleanup of {} failed: {}",
                self.prefix,
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// Connects and proves etcd answers, or panics saying how to start it.
pub async fn connect_checked(cfg: &StoreConfig) -> Store {
    let store = Store::connect(cfg).await.expect("etcd client set-up");
    match tokio::time::timeout(Duration::from_secs(5), store.revision()).await {
        Ok(Ok(_)) => store,
        Ok(Err(e)) => panic!(
            "etcd is not reachable at {}: {e}. Run scripts/setup.sh or set BERTH_TEST_ETCD.",
            cfg.endpoints.join(",")
        ),
        Err(_) => panic!(
            "etcd at {} did not answer in 5s. Run scripts/setup.sh or set BERTH_TEST_ETCD.",
            cfg.endpoints.join(",")
        ),
    }
}

/// Runs the berth binary against the test's prefix.
pub fn berth(prefix: &TestPrefix, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.env("BERTH_ETCD", &prefix.endpoint)
        .env("BERTH_PREFIX", &prefix.prefix)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run berth");
    {
        let mut si = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            si.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().expect("berth output")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `etcdctl get KEY --print-value-only` on the test etcd: the value, None when absent.
pub fn etcdctl_get(key: &str) -> Option<String> {
    let out = etcdctl(&["get", key, "--print-value-only"]);
    let v = out.strip_suffix('\n').unwrap_or(&out);
    (!out.is_empty()).then(|| v.to_string())
}

/// Puts `value` at `key` with `etcdctl`.
pub fn etcdctl_put(key: &str, value: &str) {
    etcdctl(&["put", key, value]);
}

/// Runs `etcdctl` (API 3) against the test etcd with `args`; its output, once it succeeded.
pub fn etcdctl(args: &[&str]) -> String {
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd_endpoint()])
        .args(args)
        .output()
        .expect("etcdctl must be installed (scripts/setup.sh)");
    assert!(
        o.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A TCP proxy in front of etcd that can be cut: `sever` closes every connection and refuses
/// new ones until `restore`. A client behind it sees the network fail while its process lives.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (cut2, gen2) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if cut2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut rx = gen2.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            generation,
        }
    }

    /// Closes every open connection and refuses new ones.
    pub fn sever(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Polls `f` until it returns Some, or panics after `deadline` with `what`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An etcd of the test's own, for tests that do something to the whole server (compaction)
/// that would disturb other tests sharing the local etcd. Killed and removed on drop.
pub struct PrivateEtcd {
    pub endpoint: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl PrivateEtcd {
    pub async fn start() -> PrivateEtcd {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (client, peer) = (free(), free());
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("etcd")
            .args(["--name", "private", "--data-dir"])
            .arg(dir.path())
            .args(["--listen-client-urls", &format!("http://{client}")])
            .args(["--advertise-client-urls", &format!("http://{client}")])
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("private=http://{peer}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("etcd must be installed (scripts/setup.sh)");
        let etcd = PrivateEtcd {
            endpoint: client.to_string(),
            child,
            _dir: dir,
        };
        let cfg = StoreConfig::default().with_endpoints(&etcd.endpoint);
        let store = Store::connect(&cfg).await.unwrap();
        eventually(
            Duration::from_secs(20),
            "the private etcd to answer",
            || {
                let s = store.clone();
                async move { s.revision().await.ok() }
            },
        )
        .await;
        etcd
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- Docker and the node agent -----------------------------------------------------------

/// Runs the docker CLI; panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed (scripts/setup.sh)");
    assert!(
        o.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Runs the docker CLI; None when it fails (for "is it gone?" checks).
pub fn docker_try(args: &[&str]) -> Option<String> {
    let o = Command::new("docker").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Runs scripts/build-test-image.sh with `args`, failing the test with its output.
fn build_test_image(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-test-image.sh");
    let o = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "building the test image ({args:?}): {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The test images `berth-test/httpd:1` and `:2` (busybox httpd FROM scratch), built once per
/// test process. Fails the test with a clear message when dockerd is not running.
pub fn test_image() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let info = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        match info {
            Ok(o) if o.status.success() => {}
            _ => panic!("dockerd is not reachable: run scripts/setup.sh"),
        }
        build_test_image(&["berth-test/httpd:1", "berth-test/httpd:2"]);
    });
}

/// A node agent running in this test process under its own node name; its containers carry
/// that name in their `berth.io/node` label, which keeps tests apart on one engine.
pub struct TestNode {
    pub name: String,
    pub state_dir: tempfile::TempDir,
    token: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), berth::node::NodeError>>>,
    endpoint: Option<String>,
    ttl: u64,
    /// The berth binary bind-mounted into containers with a primitive as the remote agent.
    remote: std::path::PathBuf,
    /// Host policy beyond the default (which, for tests, also allows the temp directory).
    permits: Option<berth::model::policy::Permits>,
    /// How long a fence freezes before it kills (zero: kill at once; see `spawn`).
    freeze_for: Duration,
}

impl TestNode {
    pub async fn start(prefix: &TestPrefix, name: &str) -> TestNode {
        TestNode::start_via(prefix, name, None, 5).await
    }

    /// A node whose containers with a primitive get `remote` as their remote agent (instead
    /// of this build's berth).
    pub async fn start_with_remote(
        prefix: &TestPrefix,
        name: &str,
        remote: std::path::PathBuf,
    ) -> TestNode {
        let mut node = TestNode::new(name, None, 5);
        node.remote = remote;
        node.spawn(prefix).await;
        node
    }

    /// A node that permits `permits` (host policy).
    pub async fn start_permitting(
        prefix: &TestPrefix,
        name: &str,
        permits: berth::model::policy::Permits,
    ) -> TestNode {
        let mut node = TestNode::new(name, None, 5);
        node.permits = Some(permits);
        node.spawn(prefix).await;
        node
    }

    fn new(name: &str, endpoint: Option<String>, ttl: u64) -> TestNode {
        TestNode {
            name: name.to_string(),
            state_dir: tempfile::tempdir().unwrap(),
            token: tokio_util::sync::CancellationToken::new(),
            task: None,
            endpoint,
            ttl,
            // Berth itself, not this test binary.
            remote: std::path::PathBuf::from(env!("CARGO_BIN_EXE_berth")),
            permits: None,
            freeze_for: Duration::ZERO,
        }
    }

    /// A node behind `endpoint` (a [`Proxy`]) with a lease of `ttl` seconds whose fence
    /// freezes the replicas for `freeze_for` before it kills them (for a test with one node:
    /// a frozen copy holds its container name).
    pub async fn start_freezing(
        prefix: &TestPrefix,
        name: &str,
        endpoint: String,
        ttl: u64,
        freeze_for: Duration,
    ) -> TestNode {
        let mut node = TestNode::new(name, Some(endpoint), ttl);
        node.freeze_for = freeze_for;
        node.spawn(prefix).await;
        node
    }

    /// A node whose etcd traffic goes to `endpoint` (a [`Proxy`], to cut it off), with a
    /// lease TTL of `ttl` seconds.
    pub async fn start_via(
        prefix: &TestPrefix,
        name: &str,
        endpoint: Option<String>,
        ttl: u64,
    ) -> TestNode {
        let mut node = TestNode::new(name, endpoint, ttl);
        node.spawn(prefix).await;
        node
    }

    async fn spawn(&mut self, prefix: &TestPrefix) {
        let mut scfg = prefix.config();
        if let Some(e) = &self.endpoint {
            scfg = scfg.with_endpoints(e);
            scfg.keep_alive = Duration::from_millis(500);
            scfg.keep_alive_timeout = Duration::from_millis(500);
        }
        let store = berth::store::Store::connect(&scfg).await.unwrap();
        let engine = berth::node::engine::DockerEngine::connect(None)
            .await
            .expect("dockerd is not reachable: run scripts/setup.sh");
        let mut cfg = berth::node::NodeConfig::new(&self.name);
        cfg.remote_binary = Some(self.remote.clone());
        // The watchdog is berth's, not this test binary's.
        cfg.watchdog = Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_berth")));
        // A clean stop leaves the containers to be adopted, as the tests of adoption need.
        cfg.on_stop = berth::node::config::OnStop::Maintenance;
        // Test nodes share one engine, where a replica's container name is the same on every
        // node: a frozen copy would hold the name its new node needs. Kill at the fence.
        cfg.freeze_for = self.freeze_for;
        cfg.lease_ttl = Duration::from_secs(self.ttl);
        cfg.state_dir = self.state_dir.path().to_path_buf();
        if let Some(p) = &self.permits {
            cfg.permits = p.clone();
        }
        // Tests map their own temporary directories.
        cfg.permits
            .source_dirs
            .push(std::env::temp_dir().display().to_string());
        self.token = tokio_util::sync::CancellationToken::new();
        self.task = Some(tokio::spawn(berth::node::run(
            store,
            engine,
            cfg,
            self.token.clone(),
        )));
    }

    /// Stops the agent leaving the node in maintenance (containers keep running).
    pub async fn stop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    /// Kills the agent without a clean shutdown: its registration is no longer renewed, and
    /// nothing fences (its containers stay, as a dead agent's would).
    pub fn crash(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Stops and starts the agent again with the same name and state directory.
    pub async fn restart(&mut self, prefix: &TestPrefix) {
        self.stop().await;
        self.spawn(prefix).await;
    }
}

impl Drop for TestNode {
    /// Stops the agent and waits for it to end before removing the node's containers: a
    /// pass in progress finishes first (a create already sent to dockerd would otherwise
    /// make its container after the removal, and leave it behind).
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            wait_ended(task, Duration::from_secs(60));
        }
        remove_node(&self.name);
    }
}

/// Waits up to `bound` for `task` to end, from a synchronous `Drop` inside a multi-threaded
/// runtime (its other workers run the task meanwhile). A single-threaded runtime cannot run
/// the task while this thread waits: there the task is aborted, as before.
fn wait_ended<T: Send + 'static>(task: tokio::task::JoinHandle<T>, bound: Duration) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            let ended = tokio::task::block_in_place(|| {
                h.block_on(async { tokio::time::timeout(bound, task).await.is_ok() })
            });
            if !ended {
                eprintln!("test node: the agent did not end within {bound:?}; removing anyway");
            }
        }
        _ => task.abort(),
    }
}

/// Removes what a test's node left on the shared engine: its containers (by their node
/// label) and its (then empty) cgroup scope, in every hierarchy.
pub fn remove_node(node: &str) {
    let ids = docker_try(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=berth.io/node={node}"),
    ])
    .unwrap_or_default();
    for id in ids.split_whitespace() {
        let _ = docker_try(&["rm", "-f", id]);
    }
    remove_scope(&format!("berth/{node}"));
}

/// An HTTP answer from `addr` within `timeout` (connect, send a GET, read a status line).
pub fn http_ok(addr: std::net::SocketAddr, timeout: Duration) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
}

/// Removes the empty cgroup directories `rel` (a node's scope) in every hierarchy.
pub fn remove_scope(rel: &str) {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(rel)];
    if let Ok(hs) = std::fs::read_dir(root) {
        dirs.extend(hs.flatten().map(|h| h.path().join(rel)));
    }
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// A cluster of one registered node agent and a controller (both in this process), under
/// the test's own prefix; `tag` keeps its names apart from other tests'.
pub struct OneNode {
    pub p: TestPrefix,
    pub store: Store,
    pub node: TestNode,
    pub ctl: TestController,
    pub tag: String,
}

/// Starts a [`OneNode`] cluster for `test`, once its node has registered.
pub async fn one_node(test: &str) -> OneNode {
    let p = TestPrefix::new(test);
    let store = p.store().await;
    let tag = format!("{test}{}", std::process::id() % 100_000);
    let node = TestNode::start(&p, &format!("{tag}-n")).await;
    eventually(Duration::from_secs(40), "the node to register", || async {
        store.get(&store.keys().node(&node.name)).await.unwrap()
    })
    .await;
    let ctl = TestController::start(&p, "ctl").await;
    OneNode {
        p,
        store,
        node,
        ctl,
        tag,
    }
}

/// A controller running in this test process.
pub struct TestController {
    token: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), berth::store::StoreError>>>,
}

impl TestController {
    pub async fn start(prefix: &TestPrefix, name: &str) -> TestController {
        let store = prefix.store().await;
        let mut cfg = berth::controller::ControllerConfig::new(name);
        cfg.lease_ttl = Duration::from_secs(2);
        let token = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(berth::controller::run(store, cfg, token.clone()));
        TestController {
            token,
            task: Some(task),
        }
    }

    /// Stops it (it resigns the leadership).
    pub async fn stop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestController {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The bundle tests and benchmarks run: `replicas` replicas of `berth-test/httpd:1` (at most
/// `rph` per node), addresses from 127.0.`net`.10/24, port 8080 → 80, and a 1 s stop timeout
/// (busybox httpd as PID 1 ignores SIGTERM: no need to wait Docker's 10 s); generation 1.
pub fn httpd_bundle(name: &str, replicas: u32, rph: u32, net: u8) -> berth::model::Bundle {
    use berth::model::{Bundle, BundleSpec, ContainerSpec, NetworkSpec, PortMapping};
    let mut b = Bundle::new(
        name,
        BundleSpec {
            docker: Some(ContainerSpec {
                image: "berth-test/httpd:1".into(),
                replicas: Some(replicas),
                replicas_per_host: Some(rph),
                options: Some("--stop-timeout 1".into()),
                ..Default::default()
            }),
            network: Some(NetworkSpec {
                ip_range_start: Some(format!("127.0.{net}.10")),
                host_netmask: Some(24),
                port_mappings: vec![PortMapping {
                    id: "http".into(),
                    port: Some(8080),
                    internal_port: Some(80),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    b.metadata.generation = Some(1);
    b
}

/// `berth-test/httpd-ocf:1`: the test image plus the project's OCF agent for busybox httpd
/// (`tests/image/ocf`, as ocf:heartbeat:apache) and the host's C runtime, so that the
/// (dynamically linked) berth binary of this build runs inside as the remote agent. Built
/// once per test process by `scripts/build-test-image.sh --ocf`.
pub fn ocf_test_image() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        test_image();
        build_test_image(&[
            "--ocf",
            env!("CARGO_BIN_EXE_berth"),
            "berth-test/httpd-ocf:1",
        ]);
    });
}

/// Where scripts/setup.sh unpacks Debian's resource-agents and pacemaker-resource-agents.
pub const OCF_AGENTS: &str = "/var/lib/berth/ocf-agents";

/// `berth-test/httpd-ra:1`: the OCF test image with third-party agents (Debian's
/// resource-agents and pacemaker-resource-agents, unchanged) under /usr/lib/ocf beside the
/// project's. Fails the test with a clear message when scripts/setup.sh has not unpacked them.
pub fn third_party_ocf_image() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        assert!(
            std::path::Path::new(OCF_AGENTS)
                .join("resource.d/pacemaker/Stateful")
                .exists(),
            "{OCF_AGENTS} has no third-party OCF agents: run scripts/setup.sh"
        );
        test_image();
        build_test_image(&[
            "--ocf",
            env!("CARGO_BIN_EXE_berth"),
            "--agents",
            OCF_AGENTS,
            "berth-test/httpd-ra:1",
        ]);
    });
}

/// `replicas` replicas of the OCF test image running primitive `ocf:<provider>:<kind>`
/// with a 1 s monitor, addresses from 127.0.`net`.10.
pub fn ocf_bundle(
    name: &str,
    replicas: u32,
    net: u8,
    provider: &str,
    kind: &str,
) -> berth::model::Bundle {
    let mut b = httpd_bundle(name, replicas, replicas, net);
    b.spec.docker.as_mut().unwrap().image = "berth-test/httpd-ocf:1".into();
    b.spec.primitive = Some(berth::model::Primitive {
        id: format!("{name}-{kind}"),
        class: "ocf".into(),
        provider: Some(provider.into()),
        kind: kind.into(),
        operations: vec![berth::model::Operation {
            name: "monitor".into(),
            interval: "1s".into(),
            timeout: Some("5s".into()),
            ..Default::default()
        }],
        ..Default::default()
    });
    b
}

/// A replica's status as its node agent wrote it, when there is one that parses.
pub async fn replica_status(
    store: &berth::store::Store,
    bundle: &str,
    i: u32,
) -> Option<berth::model::cluster::ReplicaStatus> {
    let kv = store.get(&store.keys().replica(bundle, i)).await.unwrap()?;
    serde_json::from_slice(&kv.value).ok()
}

/// A bundle's status as the controller wrote it, when there is one that parses.
pub async fn bundle_status(
    store: &berth::store::Store,
    bundle: &str,
) -> Option<berth::model::BundleStatus> {
    let kv = store
        .get(&store.keys().bundle_status(bundle))
        .await
        .unwrap()?;
    serde_json::from_slice(&kv.value).ok()
}

/// Waits until the container `name` is gone from the engine (fails the test after `within`).
pub async fn container_gone(name: &str, within: Duration) {
    eventually(within, &format!("container {name} gone"), || async {
        docker_try(&["inspect", name]).is_none().then_some(())
    })
    .await;
}

/// The seed manifest, `manifests/httpd-bundle.yaml`, with the fields at the given paths
/// (map keys, or list indexes) set to new values: what keeps a test apart from the seed a
/// user's own `scripts/run.sh` may have left running (its name, addresses, directories).
pub fn seed_manifest(edits: &[(&[&str], String)]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/httpd-bundle.yaml");
    let mut m: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (path, v) in edits {
        let mut at = &mut m;
        for k in *path {
            at = match k.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*k],
            };
        }
        assert!(!at.is_null(), "the seed has no {path:?}");
        *at = serde_yaml::Value::String(v.clone());
    }
    serde_yaml::to_string(&m).unwrap()
}

/// Writes node `node`'s assignment of `b`'s `replicas` by hand (no controller): what a test
/// of the node agent alone gives it to run.
pub async fn assign(store: &Store, node: &str, b: &berth::model::Bundle, replicas: &[u32]) {
    let a = berth::model::cluster::Assignment {
        bundle: b.clone().into(),
        replicas: replicas.to_vec(),
        managed: true,
        promoted: vec![],
        pinned: vec![],
        cleanup: 0,
        stop_after: vec![],
        notify: None,
    };
    let key = store.keys().assignment(node, b.name());
    store
        .put(
            &key,
            serde_json::to_vec(&a).unwrap(),
            berth::store::Expect::Any,
        )
        .await
        .unwrap();
}

/// Waits until every replica of `b` reports its primitive started.
pub async fn primitives_started(store: &Store, b: &berth::model::Bundle) {
    for i in 0..b.spec.replicas() {
        eventually(
            Duration::from_secs(60),
            "the primitives started",
            || async {
                replica_status(store, b.name(), i).await.filter(|s| {
                    s.primitive
                        .as_ref()
                        .is_some_and(|p| p.state == berth::model::cluster::Phase::Started)
                })
            },
        )
        .await;
    }
}

/// `docker run` flags that give a node agent in a container what it needs on the host (as
/// README's "berth in containers" runs it): the host's network (etcd on loopback, replica
/// addresses on its interfaces), the host's cgroups to fence in, and Docker's socket.
pub const NODE_AGENT_CONTAINER: [&str; 10] = [
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
];
