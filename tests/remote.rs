//! The remote agent as a process (`berth remote --config`), outside a container: it makes
//! itself a child subreaper there, so orphans come to it as they would to PID 1. The
//! primitive is a small OCF agent written for these tests, `test/dummy`: start creates its
//! state file and leaves an orphan behind, monitor reports whether the state file exists,
//! stop removes it; every call is logged.

use berth::model::cluster::Phase;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth::model::remote::RemoteConfig;
use berth::model::{NvPair, Operation, Primitive};

const DUMMY: &str = r#"#!/bin/sh
echo "$1" >> "$OCF_RESKEY_log"
case "$1" in
  start)
    touch "$OCF_RESKEY_state"
    # Leave an orphan: the subshell exits at once, its sleep is adopted by the reaper.
    ( sleep "${OCF_RESKEY_orphan_secs:-1}" & )
    exit 0 ;;
  stop) rm -f "$OCF_RESKEY_state"; exit 0 ;;
  monitor) [ -f "$OCF_RESKEY_state" ] && exit 0; echo "monitor:7" >> "$OCF_RESKEY_log"; exit 7 ;;
  meta-data) echo "<resource-agent name='dummy'/>"; exit 0 ;;
  validate-all) exit 0 ;;
  *) exit 3 ;;
esac
"#;

struct Remote {
    dir: tempfile::TempDir,
    state: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_remote(monitor_interval: &str, on_fail: Option<&str>) -> Remote {
    start_class("ocf", "dummy", &[], monitor_interval, on_fail)
}

/// `berth remote` for a primitive of `class` and `kind`, with extra instance attributes; an
/// lsb script of the same behaviour as the OCF one is installed as `<dir>/init.d/dummy`.
fn start_class(
    class: &str,
    kind: &str,
    extra: &[(&str, &str)],
    monitor_interval: &str,
    on_fail: Option<&str>,
) -> Remote {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("ocf/resource.d/test/dummy");
    std::fs::create_dir_all(agent.parent().unwrap()).unwrap();
    std::fs::write(&agent, DUMMY).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let initd = dir.path().join("init.d");
    std::fs::create_dir_all(&initd).unwrap();
    // The same script as an init script: LSB reads parameters from nowhere, so they are
    // baked in, and status says 3 when not running.
    let lsb = DUMMY
        .replace(
            "$OCF_RESKEY_log",
            &dir.path().join("log").display().to_string(),
        )
        .replace(
            "$OCF_RESKEY_state",
            &dir.path().join("state").display().to_string(),
        )
        .replace("monitor)", "status)")
        .replace("exit 7", "exit 3");
    std::fs::write(initd.join("dummy"), lsb).unwrap();
    std::fs::set_permissions(initd.join("dummy"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (state, log) = (dir.path().join("state"), dir.path().join("log"));
    let attr = |name: &str, value: &Path| NvPair {
        id: None,
        name: name.into(),
        value: Some(value.display().to_string()),
    };
    std::fs::write(dir.path().join("authkey"), "s3cret\n").unwrap();
    let cfg = RemoteConfig {
        ocf_root: dir.path().join("ocf"),
        initd,
        control_socket: Some(dir.path().join("control.sock")),
        authkey_file: Some(dir.path().join("authkey")),
        ..RemoteConfig::new(Primitive {
            id: "dummy".into(),
            class: class.into(),
            provider: (class == "ocf").then(|| "test".into()),
            kind: kind.into(),
            instance_attributes: [attr("state", &state), attr("log", &log)]
                .into_iter()
                .chain(extra.iter().map(|(k, v)| NvPair {
                    id: None,
                    name: k.to_string(),
                    value: Some(v.to_string()),
                }))
                .collect(),
            operations: vec![Operation {
                name: "monitor".into(),
                interval: monitor_interval.into(),
                timeout: Some("5s".into()),
                on_fail: on_fail.map(str::to_string),
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let cfg_path = dir.path().join("remote.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["remote", "--config"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Remote {
        dir,
        state,
        log,
        child,
    }
}

fn log(r: &Remote) -> Vec<String> {
    std::fs::read_to_string(&r.log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Polls until `cond`, or panics after 20 s.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Children of `pid` as (pid, state, command) from /proc.
fn children(pid: u32) -> Vec<(u32, char, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        if rest.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            let child: u32 = stat[..open].trim().parse().unwrap_or(0);
            out.push((child, rest[0].chars().next().unwrap_or('?'), comm));
        }
    }
    out
}

#[test]
fn a_failed_monitor_is_recovered_in_place() {
    let r = start_remote("1s", None);
    until("start", || r.state.exists());
    std::fs::remove_file(&r.state).unwrap(); // the service dies
    until("the monitor to notice and restart it", || {
        let l = log(&r);
        let fail = l.iter().position(|x| x == "monitor:7");
        fail.is_some_and(|i| {
            l[i..].contains(&"stop".to_string()) && l[i..].contains(&"start".to_string())
        }) && r.state.exists()
    });
}

#[test]
fn orphans_are_adopted_and_reaped() {
    let r = start_remote("1s", None);
    let pid = r.child.id();
    until("the orphan to be adopted", || {
        children(pid).iter().any(|(_, _, comm)| comm == "sleep")
    });
    until("the orphan to exit and be reaped", || {
        !children(pid).iter().any(|(_, _, comm)| comm == "sleep")
    });
    let zombies: Vec<_> = children(pid)
        .into_iter()
        .filter(|(_, s, _)| *s == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");
}

#[test]
fn sigterm_stops_the_primitive_cleanly() {
    let mut r = start_remote("10s", None);
    until("start", || r.state.exists());
    // SAFETY: kill(2) with a child's pid and SIGTERM.
    unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
    let status = r.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "clean stop exits 0");
    assert_eq!(log(&r).last().map(String::as_str), Some("stop"));
    assert!(!r.state.exists());
}

#[test]
fn on_fail_stop_leaves_it_stopped() {
    let r = start_remote("1s", Some("stop"));
    until("start", || r.state.exists());
    std::fs::remove_file(&r.state).unwrap();
    until("the stop", || log(&r).iter().any(|x| x == "stop"));
    // Monitoring ends with on-fail=stop, so nothing may follow the stop, and the remote
    // agent itself keeps running.
    let mut r = r;
    assert!(
        r.child.try_wait().unwrap().is_none(),
        "the remote agent is still running"
    );
    let l = log(&r);
    let stop = l.iter().position(|x| x == "stop").unwrap();
    assert!(!l[stop..].contains(&"start".to_string()), "{l:?}");
}

#[tokio::test]
async fn the_control_channel_reports_state_and_operations_only_with_the_key() {
    let r = start_remote("1s", None);
    let sock = r.dir.path().join("control.sock");
    let ask = |key: &'static str| {
        let sock = sock.clone();
        async move {
            let s = tokio::net::UnixStream::connect(&sock).await?;
            berth::remote::channel::query(s, key)
                .await
                .map_err(std::io::Error::other)
        }
    };
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let st = loop {
        match ask("s3cret").await {
            Ok(st) if st.last.iter().any(|o| o.action == "monitor") => break st,
            _ => {
                assert!(std::time::Instant::now() < end, "no monitor reported");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(st.state, Phase::Started);
    let start = st.last.iter().find(|o| o.action == "start").unwrap();
    assert_eq!((start.rc, start.rc_name.as_str()), (0, "OCF_SUCCESS"));
    let monitor = st.last.iter().find(|o| o.action == "monitor").unwrap();
    assert_eq!((monitor.rc, monitor.interval_ms), (0, 1000));
    let refused = ask("guess").await.unwrap_err();
    assert!(refused.to_string().contains("unauthenticated"), "{refused}");
}

#[test]
fn lsb_scripts_start_and_recover_through_status() {
    let r = start_class("lsb", "dummy", &[], "1s", None);
    until("start", || r.state.exists());
    std::fs::remove_file(&r.state).unwrap();
    until("status to fail and the script to be restarted", || {
        let l = log(&r);
        l.iter().any(|x| x == "status")
            && l.iter().filter(|x| *x == "start").count() == 2
            && r.state.exists()
    });
}

#[test]
fn the_command_class_restarts_a_dead_command_and_one_failing_its_probe() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = dir.path().join("healthy");
    std::fs::write(&healthy, "").unwrap();
    let probe = format!("test -f {}", healthy.display());
    let r = start_class(
        "command",
        "/bin/sleep",
        &[("args", "300"), ("health", &probe)],
        "1s",
        None,
    );
    let sleeping = |r: &Remote| {
        children(r.child.id())
            .into_iter()
            .filter(|(_, s, c)| c == "sleep" && *s != 'Z')
            .map(|(pid, _, _)| pid)
            .collect::<Vec<_>>()
    };
    until("the command to run", || sleeping(&r).len() == 1);
    let first = sleeping(&r)[0];
    // SAFETY: kill(2) on the command the test started through berth.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    until("a new command", || {
        sleeping(&r).first().is_some_and(|p| *p != first)
    });
    let second = sleeping(&r)[0];
    std::fs::remove_file(&healthy).unwrap();
    until("the failed probe to restart it", || {
        sleeping(&r)
            .first()
            .is_some_and(|p| *p != second && *p != first)
    });
}

#[test]
fn one_action_runs_by_hand_and_exits_with_the_agents_code() {
    // A monitor far off, so that supervision does not recover what the test takes away.
    let r = start_remote("600s", None);
    until("started", || r.state.exists());
    let action = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["remote", "--config"])
            .arg(r.dir.path().join("remote.json"))
            .args(["--action", name])
            .output()
            .unwrap()
    };
    let o = action("meta-data");
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("<resource-agent name='dummy'/>"));
    assert_eq!(
        action("monitor").status.code(),
        Some(0),
        "the supervised one runs"
    );
    let o = action("notify");
    assert_eq!(o.status.code(), Some(3), "dummy does not implement notify");
    assert!(String::from_utf8_lossy(&o.stderr).contains("OCF_ERR_UNIMPLEMENTED (3)"));
    std::fs::remove_file(&r.state).unwrap();
    assert_eq!(action("monitor").status.code(), Some(7));
    let o = action("reload-agent");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--action reload-agent: not an OCF action"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
