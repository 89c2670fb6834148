//! The remote agent (`berth remote`, release build) supervising a small OCF agent with a 1 s
//! monitor, as a process on this host:
//! 1. monitor failure → primitive healthy again: the state file the agent's monitor checks
//!    is removed; measured until start has recreated it (detection waits for the next 1 s
//!    monitor, then stop and start run);
//! 2. resident memory (VmRSS) and CPU at idle, over 20 s with the 1 s monitor running (the
//!    monitor script's own CPU included: its children's time once reaped).
//!
//! Run: `cargo bench --bench remote`

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::model::remote::RemoteConfig;
use berth::model::{NvPair, Operation, Primitive};

const AGENT: &str = "#!/bin/sh\ncase \"$1\" in\n  start) touch \"$OCF_RESKEY_state\"; exit 0 ;;\n  stop) rm -f \"$OCF_RESKEY_state\"; exit 0 ;;\n  monitor) [ -f \"$OCF_RESKEY_state\" ] && exit 0; exit 7 ;;\n  *) exit 0 ;;\nesac\n";

fn ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime stime cutime cstime: fields 14-17, here 11-14 after the state field.
    rest[11..15].iter().map(|v| v.parse::<u64>().unwrap()).sum()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("ocf/resource.d/bench/dummy");
    std::fs::create_dir_all(agent.parent().unwrap()).unwrap();
    std::fs::write(&agent, AGENT).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let cfg = RemoteConfig {
        ocf_root: dir.path().join("ocf"),
        // As the node agent configures it: the promotion score is read after every operation.
        attributes_file: Some(dir.path().join("attributes.json")),
        ..RemoteConfig::new(Primitive {
            id: "dummy".into(),
            class: "ocf".into(),
            provider: Some("bench".into()),
            kind: "dummy".into(),
            instance_attributes: vec![NvPair {
                id: None,
                name: "state".into(),
                value: Some(state.display().to_string()),
            }],
            operations: vec![Operation {
                name: "monitor".into(),
                interval: "1s".into(),
                timeout: Some("5s".into()),
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let cfg_path = dir.path().join("remote.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["remote", "--config"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait = |cond: &dyn Fn() -> bool| {
        let end = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < end, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    wait(&|| state.exists());

    let mut recover = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        std::fs::remove_file(&state).unwrap();
        wait(&|| state.exists());
        recover.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    recover.sort();
    println!(
        "monitor failure -> healthy again: median {:.0} ms (min {:.0}, max {:.0}) over 5, with a 1 s monitor interval",
        recover[2].as_secs_f64() * 1e3,
        recover[0].as_secs_f64() * 1e3,
        recover[4].as_secs_f64() * 1e3
    );

    let pid = child.id();
    let hz = 100.0; // USER_HZ on Linux
    let (t0, c0) = (Instant::now(), ticks(pid));
    std::thread::sleep(Duration::from_secs(20));
    let (t1, c1) = (Instant::now(), ticks(pid));
    let cpu = (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64() * 100.0;
    println!(
        "idle with a 1 s monitor: VmRSS {} KiB, CPU {:.2}% of one core over {:.0} s (monitor script included)",
        rss_kib(pid),
        cpu,
        (t1 - t0).as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
}
