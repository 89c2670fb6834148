//! The daemons' Prometheus metrics and health endpoints, scraped from running `berth
//! controller` and `berth node` processes (real etcd and dockerd).

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestPrefix;

/// A free loopback port (bound, then let go).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// GET `path` from `addr`: (status code, body), or None when nothing answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Polls until `f` holds (15 s), or fails with `what`.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < end, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn berth(p: &TestPrefix, etcd: &str, args: &[&str]) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .env("BERTH_ETCD", etcd)
            .env("BERTH_PREFIX", &p.prefix)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn a_controller_serves_metrics_health_and_readiness() {
    let p = TestPrefix::new("metricsctl");
    let addr = free_addr();
    let _c = berth(
        &p,
        &p.endpoint,
        &["controller", "--name", "m", "--metrics-address", &addr],
    );
    until("the controller to be ready", || {
        get(&addr, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    assert_eq!(get(&addr, "/healthz").unwrap().0, 200);
    // It leads, reconciles and renews its lease.
    until("a reconcile and a lease renewal in the metrics", || {
        let Some((200, m)) = get(&addr, "/metrics") else {
            return false;
        };
        let value = |name: &str| {
            m.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        value("berth_reconciles_total") >= 1.0
            && value("berth_lease_renewed_timestamp_seconds") > 1e9
            && m.contains("berth_reconcile_duration_seconds_bucket")
            && m.contains("berth_etcd_request_duration_seconds_count{op=\"list\"}")
    });
}

#[test]
fn a_node_agent_is_not_ready_until_registered_and_then_reports_its_engine_calls() {
    common::test_image();
    let p = TestPrefix::new("metricsnode");
    let addr = free_addr();
    let state = tempfile::tempdir().unwrap();
    let node = format!("metrics{}", std::process::id() % 100_000);
    // Its name is taken (a registration left behind): it waits for the key to lapse, up to
    // twice its lease TTL, healthy but not ready.
    let key = format!("{}/nodes/{node}", p.prefix);
    common::etcdctl_put(&key, "{}");
    let state_dir = state.path().display().to_string();
    let _n = berth(
        &p,
        &p.endpoint,
        &[
            "node",
            "--name",
            &node,
            "--state-dir",
            &state_dir,
            "--metrics-address",
            &addr,
        ],
    );
    until("the waiting node's /healthz", || {
        get(&addr, "/healthz").is_some_and(|(c, _)| c == 200)
    });
    assert_eq!(get(&addr, "/readyz").unwrap().0, 503);
    let del = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &p.endpoint, "del", &key])
        .output()
        .unwrap();
    assert!(del.status.success());
    until("the node to be ready once registered", || {
        get(&addr, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    until("engine calls and replica counts in the metrics", || {
        get(&addr, "/metrics").is_some_and(|(c, m)| {
            c == 200
                && m.contains("berth_engine_call_duration_seconds_count{call=\"list\"}")
                && m.contains("berth_replicas{state=\"assigned\"} 0")
        })
    });
}
