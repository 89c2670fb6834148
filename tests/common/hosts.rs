//! Several real Docker hosts on this machine (scripts/hosts.sh): each a network namespace
//! with its own dockerd, all on one bridge (the LAN) where a private etcd listens; berth node
//! agents run as processes inside the hosts' network namespaces, controllers on the
//! machine. Faults are one call each. Everything is torn down on drop, also when the test
//! fails.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/hosts.sh");
const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn script(args: &[&str]) -> String {
    let o = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("bash");
    assert!(
        o.status.success(),
        "hosts.sh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A LAN of Docker hosts with an etcd on it.
pub struct Lan {
    /// The LAN's number: bridge `bl<k>`, subnet 10.231.<k>.0/24.
    pub k: u32,
    pub hosts: u32,
    pub prefix: String,
    /// The etcd members (None: killed).
    etcd: Vec<Option<Child>>,
    agents: Vec<Option<Child>>,
    /// Hosts whose agent keeps its state directory on the host's small disk.
    state_on_disk: Vec<bool>,
    controllers: Vec<Option<Child>>,
    /// Agents' state directories and logs.
    pub dir: tempfile::TempDir,
}

/// How a fault stops an agent.
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    Kill9,
    Stop,
    Term,
    /// What a package upgrade sends: stop, leaving the replicas running.
    Usr2,
}

impl Lan {
    /// `hosts` hosts with `images` loaded, and an etcd at 10.231.<k>.1:2379.
    pub fn up(hosts: u32, images: &[&str]) -> Lan {
        Lan::up_with_etcd(hosts, images, 1)
    }

    /// `hosts` hosts with `images` loaded, and an etcd cluster of `members` members on the
    /// LAN's gateway address (member m: client port 2379 + 100·m, peer port 2380 + 100·m).
    pub fn up_with_etcd(hosts: u32, images: &[&str], members: u32) -> Lan {
        let mut args = vec!["up".to_string(), hosts.to_string()];
        args.extend(images.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let k: u32 = script(&argv)
            .parse()
            .expect("hosts.sh up prints the LAN number");
        let dir = tempfile::tempdir().unwrap();
        let mut lan = Lan {
            k,
            hosts,
            prefix: format!("/berth-multihost-{k}"),
            etcd: (0..members).map(|_| None).collect(),
            agents: (0..=hosts).map(|_| None).collect(),
            state_on_disk: vec![false; hosts as usize + 1],
            controllers: Vec::new(),
            dir,
        };
        for m in 0..members {
            lan.start_etcd(m);
        }
        lan.wait_etcd_healthy();
        lan
    }

    /// A log file in the LAN's directory, appended to (a restarted process adds to it).
    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))
            .unwrap()
    }

    /// Member `m`'s client URL.
    fn etcd_url(&self, m: u32) -> String {
        format!("http://{}:{}", self.gateway(), Lan::etcd_ports(m).0)
    }

    /// Member `m`'s client and peer ports.
    fn etcd_ports(m: u32) -> (u32, u32) {
        (2379 + 100 * m, 2380 + 100 * m)
    }

    /// Starts etcd member `m` (again, after [`Lan::kill_etcd`]: same data, same cluster).
    pub fn start_etcd(&mut self, m: u32) {
        let ip = self.gateway();
        let peers: Vec<String> = (0..self.etcd.len() as u32)
            .map(|n| format!("lan{n}=http://{ip}:{}", Lan::etcd_ports(n).1))
            .collect();
        let (client, peer) = Lan::etcd_ports(m);
        let log = self.log(&format!("etcd{m}.log"));
        let child = Command::new("etcd")
            .args(["--name", &format!("lan{m}"), "--data-dir"])
            .arg(self.dir.path().join(format!("etcd{m}")))
            .args(["--listen-client-urls", &format!("http://{ip}:{client}")])
            .args(["--advertise-client-urls", &format!("http://{ip}:{client}")])
            .args(["--listen-peer-urls", &format!("http://{ip}:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{ip}:{peer}"),
            ])
            .args(["--initial-cluster", &peers.join(",")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd must be installed (scripts/setup.sh)");
        self.etcd[m as usize] = Some(child);
    }

    /// kill -9 of etcd member `m`.
    pub fn kill_etcd(&mut self, m: u32) {
        if let Some(mut c) = self.etcd[m as usize].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until every running member answers healthy (a quorum has a leader).
    pub fn wait_etcd_healthy(&self) {
        let running: Vec<String> = (0..self.etcd.len() as u32)
            .filter(|&m| self.etcd[m as usize].is_some())
            .map(|m| self.etcd_url(m))
            .collect();
        let until = Instant::now() + Duration::from_secs(30);
        while !Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &running.join(","), "endpoint", "health"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(Instant::now() < until, "the LAN's etcd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The member that leads the etcd cluster now.
    pub fn etcd_leader(&self) -> u32 {
        for m in 0..self.etcd.len() as u32 {
            if self.etcd[m as usize].is_none() {
                continue;
            }
            let o = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &self.etcd_url(m),
                    "endpoint",
                    "status",
                    "-w",
                    "json",
                ])
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            let status = &v[0]["Status"];
            if status["leader"].is_u64() && status["leader"] == status["header"]["member_id"] {
                return m;
            }
        }
        panic!("no etcd member leads");
    }

    /// 10.231.<k>.1: the machine's side of the LAN.
    pub fn gateway(&self) -> String {
        format!("10.231.{}.1", self.k)
    }

    /// An address on the LAN for replicas: 10.231.<k>.<last>.
    pub fn address(&self, last: u8) -> String {
        format!("10.231.{}.{last}", self.k)
    }

    /// Every member's client URL, comma-separated (what `--etcd` takes).
    pub fn etcd_endpoint(&self) -> String {
        (0..self.etcd.len() as u32)
            .map(|m| self.etcd_url(m))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Host `i`'s node name (its network namespace's name).
    pub fn node(&self, i: u32) -> String {
        format!("bl{}h{i}", self.k)
    }

    fn socket(&self, i: u32) -> String {
        format!("unix:///run/berth-hosts/{}/h{i}/docker.sock", self.k)
    }

    /// A store on the LAN's etcd under the test's prefix.
    pub async fn store(&self) -> berth::store::Store {
        let cfg = berth::store::StoreConfig::default()
            .with_endpoints(&self.etcd_endpoint())
            .with_prefix(&self.prefix);
        super::connect_checked(&cfg).await
    }

    /// The docker CLI against host `i`; None when it fails.
    pub fn docker(&self, i: u32, args: &[&str]) -> Option<String> {
        let o = Command::new("docker")
            .arg("-H")
            .arg(self.socket(i))
            .args(args)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// Host `i`'s small disk (an 8 MiB tmpfs that its dockerd sees too).
    pub fn disk(&self, i: u32) -> String {
        script(&["disk", &self.k.to_string(), &i.to_string()])
    }

    /// Fills host `i`'s disk: every write there fails with ENOSPC.
    pub fn fill(&self, i: u32) {
        script(&["fill", &self.k.to_string(), &i.to_string()]);
    }

    pub fn unfill(&self, i: u32) {
        script(&["unfill", &self.k.to_string(), &i.to_string()]);
    }

    /// Host `i`'s agent keeps its state directory on the host's disk from its next start.
    pub fn state_on_disk(&mut self, i: u32) {
        self.state_on_disk[i as usize] = true;
    }

    /// Starts host `i`'s node agent (inside its network namespace) with `extra` flags.
    pub fn start_agent(&mut self, i: u32, extra: &[&str]) {
        let state = if self.state_on_disk[i as usize] {
            PathBuf::from(self.disk(i)).join("state")
        } else {
            self.dir.path().join(format!("state-h{i}"))
        };
        let log = self.log(&format!("agent-h{i}.log"));
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.node(i)))
            .arg(BERTH)
            .args([
                "node",
                "--name",
                &self.node(i),
                "--docker-host",
                &self.socket(i),
            ])
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .env("BERTH_ETCD", self.etcd_endpoint())
            .env("BERTH_PREFIX", &self.prefix)
            .env("BERTH_LOG", log_filter("info"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nsenter");
        self.agents[i as usize] = Some(child);
    }

    /// Host `i`'s agent's log so far.
    pub fn agent_log(&self, i: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("agent-h{i}.log"))).unwrap_or_default()
    }

    /// The agent's process id (nsenter execs berth, so it is the child's).
    pub fn agent_pid(&self, i: u32) -> i32 {
        self.agents[i as usize]
            .as_ref()
            .expect("agent running")
            .id() as i32
    }

    /// Stops host `i`'s agent as `how` says (SIGTERM waits for the clean stop).
    pub fn stop_agent(&mut self, i: u32, how: Signal) {
        let pid = self.agent_pid(i);
        let sig = match how {
            Signal::Kill9 => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Term => libc::SIGTERM,
            Signal::Usr2 => libc::SIGUSR2,
        };
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        if !matches!(how, Signal::Stop) {
            let mut c = self.agents[i as usize].take().unwrap();
            let until = Instant::now() + Duration::from_secs(60);
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < until, "agent {i} did not exit");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Lets a SIGSTOPped agent run again.
    pub fn continue_agent(&self, i: u32) {
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(self.agent_pid(i), libc::SIGCONT) }, 0);
    }

    /// Starts a controller on the machine (outside the hosts).
    pub fn start_controller(&mut self, name: &str) -> usize {
        let log =
            std::fs::File::create(self.dir.path().join(format!("controller-{name}.log"))).unwrap();
        let child = Command::new(BERTH)
            // Several run on this machine: none takes the default metrics port.
            .args(["controller", "--name", name, "--no-metrics"])
            .env("BERTH_LOG", log_filter("warn"))
            .env("BERTH_ETCD", self.etcd_endpoint())
            .env("BERTH_PREFIX", &self.prefix)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.controllers.push(Some(child));
        self.controllers.len() - 1
    }

    /// kill -9 of controller `n` (in start order).
    pub fn kill_controller(&mut self, n: usize) {
        if let Some(mut c) = self.controllers[n].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs the berth CLI against the LAN's etcd and the test's prefix.
    pub fn berth(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(BERTH)
            .args(args)
            .env("BERTH_ETCD", self.etcd_endpoint())
            .env("BERTH_PREFIX", &self.prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Powers host `i` off: agent, watchdog, dockerd, containerd and containers die, its LAN
    /// link goes down.
    pub fn kill_host(&mut self, i: u32) {
        script(&["kill-host", &self.k.to_string(), &i.to_string()]);
        if let Some(mut c) = self.agents[i as usize].take() {
            let _ = c.wait();
        }
    }

    /// Powers host `i` on again after [`Lan::kill_host`]: its LAN link and its dockerd, with
    /// the containers it had, stopped (start its agent again with [`Lan::start_agent`]).
    pub fn boot_host(&mut self, i: u32) {
        script(&["boot-host", &self.k.to_string(), &i.to_string()]);
    }

    /// kill -9 of host `i`'s dockerd and containerd only.
    pub fn kill_dockerd(&self, i: u32) {
        script(&["kill-dockerd", &self.k.to_string(), &i.to_string()]);
    }

    /// Host `i` can no longer reach etcd (packets dropped), while everything on it runs.
    pub fn cut(&self, i: u32) {
        let ports: Vec<String> = (0..self.etcd.len() as u32)
            .map(|m| Lan::etcd_ports(m).0.to_string())
            .collect();
        let mut args = vec!["cut".to_string(), self.k.to_string(), i.to_string()];
        args.extend(ports);
        script(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    pub fn heal(&self, i: u32) {
        script(&["heal", &self.k.to_string(), &i.to_string()]);
    }

    /// How many containers are live on host `i`: with processes in berth's scope for the
    /// node (or in the host dockerd's default cgroup parent, should one escape it) and not
    /// frozen. Read from the cgroup filesystem only, so it answers whatever state the
    /// host's engine or agent is in.
    pub fn live_on(&self, i: u32) -> usize {
        live_on(self.k, i)
    }

    /// Does `http://ip:port/` answer from the LAN's client namespace (within `timeout`)?
    pub fn serves(&self, ip: &str, port: u16, timeout: Duration) -> bool {
        let ns = format!("/var/run/netns/bl{}c", self.k);
        let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let f = std::fs::File::open(&ns).unwrap();
                // SAFETY: setns on an open namespace descriptor; this thread only.
                assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                super::http_ok(addr, timeout)
            })
            .join()
            .unwrap()
        })
    }

    /// Samples every 50 ms, on a thread in the LAN's client namespace, which hosts run a
    /// live copy and whether `http://ip:port/` answers, until the sampler is stopped.
    pub fn sampler(&self, ip: &str, port: u16) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ns = format!("/var/run/netns/bl{}c", self.k);
        let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let (k, hosts) = (self.k, self.hosts);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).unwrap();
            // SAFETY: setns on an open namespace descriptor; this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let t0 = Instant::now();
            let mut out = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                let at = Instant::now();
                let live = (1..=hosts).map(|i| live_on(k, i)).collect();
                let serving = super::http_ok(addr, Duration::from_millis(150));
                out.push(Sample {
                    at: at - t0,
                    live,
                    serving,
                });
                std::thread::sleep(Duration::from_millis(50).saturating_sub(at.elapsed()));
            }
            out
        });
        Sampler {
            stop,
            thread: Some(thread),
            t0: Instant::now(),
        }
    }
}

/// The log filter for the daemons a test starts: `BERTH_TEST_LOG` when set (for example
/// `info,berth=debug` to see when each step of a failover happened), else `default`.
fn log_filter(default: &str) -> String {
    std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| default.to_string())
}

/// See [`Lan::live_on`].
fn live_on(k: u32, i: u32) -> usize {
    let parents = [
        format!("/berth/bl{k}h{i}"),
        format!("/berth-hosts/{k}/h{i}"),
    ];
    parents
        .iter()
        .filter_map(|p| berth::node::fence::Scope::for_parent(p))
        .flat_map(|scope| {
            std::fs::read_dir(scope.dir())
                .map(|d| {
                    d.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_else(|_| Vec::<PathBuf>::new())
        })
        .filter(|d| {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            let state = std::fs::read_to_string(d.join("freezer.state"))
                .or_else(|_| std::fs::read_to_string(d.join("cgroup.freeze")))
                .unwrap_or_default();
            !procs.trim().is_empty() && !matches!(state.trim(), "FROZEN" | "FREEZING" | "1")
        })
        .count()
}

/// One sample: since the sampler started, live copies per host (index 0 is host 1), and
/// whether the LAN client got an HTTP answer.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub live: Vec<usize>,
    pub serving: bool,
}

impl Sample {
    /// Live copies on all hosts together.
    pub fn copies(&self) -> usize {
        self.live.iter().sum()
    }
}

/// A running sampler; [`Sampler::finish`] stops it and returns the samples.
pub struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Sample>>>,
    t0: Instant,
}

impl Sampler {
    /// The sampler's clock now (to mark when a fault was injected).
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for c in self
            .agents
            .iter_mut()
            .chain(self.controllers.iter_mut())
            .flatten()
        {
            // A stopped agent must be continued to die of SIGKILL promptly; kill works anyway.
            let _ = c.kill();
            let _ = c.wait();
        }
        // Watchdogs run in the hosts' namespaces: hosts.sh down kills them with the rest.
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .args(["down", &self.k.to_string()])
            .status();
        for mut e in self.etcd.iter_mut().filter_map(Option::take) {
            let _ = e.kill();
            let _ = e.wait();
        }
        if std::thread::panicking() {
            for i in 1..=self.hosts {
                eprintln!("--- agent h{i} log ---\n{}", self.agent_log(i));
            }
            for m in 0..self.etcd.len() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("etcd{m}.log")))
                    .unwrap_or_default();
                let leadership: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("elected leader") || l.contains("lost leader"))
                    .collect();
                eprintln!(
                    "--- etcd member {m}: leadership ---\n{}",
                    leadership.join("\n")
                );
            }
        }
        if std::env::var_os("BERTH_TEST_KEEP").is_some() {
            // Kept for reading (agents' and controllers' logs, etcd's data).
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("BERTH_TEST_KEEP: the LAN's logs are in {}", dir.display());
        }
    }
}
