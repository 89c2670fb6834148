//! Clustered services run unchanged in bundles across three real Docker hosts (the harness of
//! tests/common/hosts.rs): Debian's redis-server, mariadb-server with galera-4, and
//! rabbitmq-server, each in an image built from Debian's packages with Debian's
//! resource-agents (scripts/build-service-images.sh; nothing pulled), driven by the real
//! `ocf:heartbeat:redis`, `galera` and `rabbitmq-cluster` agents through berth's
//! crm_attribute, crm_master, crm_node, crm_mon and cibadmin. Every assertion goes through
//! the service's own client inside the replicas (redis-cli, mysql, rabbitmqctl), never
//! through berth's status. Times are printed for BENCHMARKS.md.
//!
//! The bundles set `--dns 127.0.0.1`: no name leaves the machine, and a name the hosts file
//! does not have fails at once (redis resolves its master's name while it blocks its
//! clients; `no-such-master`, the agent's placeholder, would otherwise hang it for the
//! resolver's timeout).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::hosts::Lan;

const TTL: &str = "3s";
const TTL_SECS: u64 = 3;

/// Builds (or finds cached) the service's image; its tag.
fn service_image(svc: &str) -> String {
    let o = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/build-service-images.sh"
        ))
        .arg(svc)
        .output()
        .expect("bash");
    assert!(
        o.status.success(),
        "building the {svc} image: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    format!("berth-test/{svc}:1")
}

/// Three hosts with the image, an agent on each, a controller, and the bundle `manifest`
/// gives for the LAN applied.
fn cluster(image: &str, manifest: impl Fn(&Lan) -> String) -> Lan {
    let mut lan = Lan::up(3, &[image]);
    for i in 1..=3 {
        lan.start_agent(i, &["--lease-ttl", TTL]);
    }
    lan.start_controller("c1");
    apply(&lan, &manifest(&lan));
    lan
}

fn apply(lan: &Lan, manifest: &str) {
    let o = lan.berth(&["apply", "-f", "-"], Some(manifest));
    assert!(
        o.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Where each of the bundle's replicas has a container running now: ordinal → host.
fn running(lan: &Lan, bundle: &str) -> BTreeMap<u32, u32> {
    let mut at = BTreeMap::new();
    for h in 1..=3 {
        let filter = format!("label=berth.io/bundle={bundle}");
        let Some(out) = lan.docker(
            h,
            &[
                "ps",
                "--filter",
                &filter,
                "--format",
                "{{.Label \"berth.io/replica\"}}",
            ],
        ) else {
            continue;
        };
        for line in out.lines() {
            if let Ok(i) = line.trim().parse() {
                at.insert(i, h);
            }
        }
    }
    at
}

/// Runs the service's client in replica `i` (on host `h`); its output when it succeeds.
fn client(lan: &Lan, h: u32, bundle: &str, i: u32, args: &[&str]) -> Option<String> {
    let name = format!("{bundle}-docker-{i}");
    let mut argv = vec!["exec", name.as_str()];
    argv.extend_from_slice(args);
    lan.docker(h, &argv)
}

/// Prints what berth recorded (events, transient attributes) and the agents' actions other
/// than monitors in each running replica of `bundle` (with their output), to read a run's
/// timeline.
fn show(lan: &Lan, bundle: &str, when: &str) {
    for (i, h) in running(lan, bundle) {
        let state =
            client(lan, h, bundle, i, &["cat", "/run/berth/state.json"]).unwrap_or_default();
        let actions: Vec<String> = serde_json::from_str::<serde_json::Value>(&state)
            .ok()
            .and_then(|v| v["last"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["action"] != "monitor")
            .map(|a| {
                format!(
                    "{} rc {} at {} took {}ms: {}",
                    a["action"], a["rc"], a["at"], a["tookMs"], a["output"]
                )
            })
            .collect();
        println!(
            "--- {when}: {bundle}-{i} on host {h} ---\n{}",
            actions.join("\n")
        );
    }
    for args in [&["events"][..], &["attribute", "-t", "status"][..]] {
        let o = lan.berth(args, None);
        println!(
            "--- {when}: berth {} ---\n{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

/// Polls `f` every 250 ms until it gives Ok, for at most `secs`; the last error otherwise.
fn poll<T>(secs: u64, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() > deadline => return Err(last),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Polls `f` until it has given the same Ok for `hold` on end (the service settled, its
/// agents' actions done), for at most `secs`; panics with `what` otherwise.
fn settled_for<T: PartialEq + std::fmt::Debug>(
    secs: u64,
    hold: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let mut since: Option<(Instant, T)> = None;
    wait_for(secs, what, || {
        let v = f()?;
        match &since {
            Some((t, seen)) if *seen == v && t.elapsed() >= hold => Ok(v),
            Some((_, seen)) if *seen == v => Err(format!("{v:?}, not yet for {hold:?}")),
            _ => {
                since = Some((Instant::now(), v));
                Err("just now".into())
            }
        }
    })
}

/// [`poll`], panicking with `what` and the last value seen when it runs out.
fn wait_for<T>(secs: u64, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    poll(secs, f).unwrap_or_else(|last| panic!("{what}: not within {secs}s; last seen: {last}"))
}

// ---------------------------------------------------------------------------------------
// redis

fn redis_manifest(lan: &Lan) -> String {
    format!(
        "apiVersion: berth.io/v1alpha1
kind: Bundle
metadata:
  name: rds
spec:
  docker:
    image: berth-test/redis:1
    replicas: 3
    promotedMax: 1
    options: --stop-timeout 10 --dns 127.0.0.1
  network:
    ipRangeStart: {}
    hostNetmask: 24
    hostInterface: lan0
    portMappings:
      - {{id: redis-port, port: 6379}}
  primitive:
    id: redis
    class: ocf
    provider: heartbeat
    type: redis
    # As OpenStack deploys it: the agent alone scores the instances (the last known master
    # highest), so that a returning replica does not take the promotion back.
    instanceAttributes:
      - {{name: wait_last_known_master, value: \"true\"}}
    operations:
      - {{name: start, interval: 0s, timeout: 120s}}
      - {{name: stop, interval: 0s, timeout: 60s}}
      - {{name: promote, interval: 0s, timeout: 120s}}
      - {{name: demote, interval: 0s, timeout: 120s}}
      - {{name: notify, interval: 0s, timeout: 60s}}
      - {{name: monitor, interval: 2s, timeout: 60s, role: Promoted}}
      - {{name: monitor, interval: 3s, timeout: 60s, role: Unpromoted}}
  metaAttributes:
    - {{name: notify, value: \"true\"}}
",
        lan.address(100)
    )
}

/// One redis replica's `INFO replication`, as fields.
fn redis_info(lan: &Lan, h: u32, i: u32) -> Option<BTreeMap<String, String>> {
    let out = client(lan, h, "rds", i, &["redis-cli", "info", "replication"])?;
    Some(
        out.lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The replication as redis reports it: the master's ordinal, when exactly one replica is
/// master and every other running replica (`want` replicas in all) replicates from it with
/// its link up.
fn redis_settled(lan: &Lan, want: usize) -> Result<(u32, BTreeMap<u32, u32>), String> {
    let at = running(lan, "rds");
    if at.len() != want {
        return Err(format!("running {at:?}"));
    }
    let mut infos = BTreeMap::new();
    for (&i, &h) in &at {
        infos.insert(
            i,
            redis_info(lan, h, i).ok_or(format!("rds-{i}: no answer"))?,
        );
    }
    let masters: Vec<u32> = infos
        .iter()
        .filter(|(_, f)| f.get("role").map(String::as_str) == Some("master"))
        .map(|(i, _)| *i)
        .collect();
    let [m] = masters[..] else {
        return Err(format!("masters {masters:?}: {infos:?}"));
    };
    for (i, f) in &infos {
        if *i == m {
            continue;
        }
        let host = f.get("master_host").cloned().unwrap_or_default();
        let link = f.get("master_link_status").cloned().unwrap_or_default();
        if host != format!("rds-{m}") || link != "up" {
            return Err(format!("rds-{i}: master_host {host}, link {link}"));
        }
    }
    Ok((m, at))
}

fn redis_get(lan: &Lan, h: u32, i: u32, key: &str) -> Option<String> {
    client(lan, h, "rds", i, &["redis-cli", "get", key])
}

#[test]
fn redis_one_master_two_replicas_fails_over_when_the_masters_host_dies() {
    let image = service_image("redis");
    let mut lan = cluster(&image, redis_manifest);
    let started = Instant::now();
    // Settled for 5 s: the agents' notify actions that link the replicas are over too (a
    // host killed during one would make the failover wait for its timeout, in berth as in
    // Pacemaker).
    let (master, at) = settled_for(
        240,
        Duration::from_secs(5),
        "one redis master, two replicas linked to it",
        || redis_settled(&lan, 3),
    );
    println!(
        "redis: apply → one master and two linked replicas in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // A key set on the master is read on both replicas.
    let mh = at[&master];
    assert_eq!(
        client(
            &lan,
            mh,
            "rds",
            master,
            &["redis-cli", "set", "berth-key", "v1"]
        )
        .as_deref(),
        Some("OK")
    );
    for (&i, &h) in &at {
        wait_for(
            30,
            &format!("berth-key replicated to rds-{i}"),
            || match redis_get(&lan, h, i, "berth-key") {
                Some(v) if v == "v1" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    // The master's host dies: another replica is master and takes writes.
    let killed = Instant::now();
    lan.kill_host(mh);
    let (new_master, nh) = wait_for(120, "a new redis master taking writes", || {
        for (&i, &h) in &at {
            if h == mh {
                continue;
            }
            if client(
                &lan,
                h,
                "rds",
                i,
                &["redis-cli", "set", "after-failover", "v2"],
            )
            .as_deref()
                == Some("OK")
            {
                return Ok((i, h));
            }
        }
        Err("no replica accepts a write".into())
    });
    let failover = killed.elapsed().as_secs_f64();
    println!(
        "redis: master's host killed → rds-{new_master} master taking writes in {failover:.1}s (goal ≤ lease TTL {TTL_SECS}s + monitor 2s + 1s)"
    );
    show(&lan, "rds", "redis failed over");
    assert_eq!(
        redis_get(&lan, nh, new_master, "berth-key").as_deref(),
        Some("v1")
    );
    // The third follows it.
    wait_for(
        60,
        "the third redis replica following the new master",
        || {
            redis_settled(&lan, 2).and_then(|(m, _)| {
                (m == new_master)
                    .then_some(())
                    .ok_or(format!("master rds-{m}"))
            })
        },
    );
    // The old master's host returns: it comes back as a replica of the new master, with
    // both keys.
    lan.boot_host(mh);
    lan.start_agent(mh, &["--lease-ttl", TTL]);
    let settled = poll(180, || redis_settled(&lan, 3));
    show(&lan, "rds", "redis: the old master's host back");
    let (m, _) = settled.expect("the old master back as a replica within 180s");
    assert_eq!(m, new_master, "the promotion stayed where it went");
    for key in ["berth-key", "after-failover"] {
        wait_for(
            30,
            &format!("{key} on the returned rds-{master}"),
            || match redis_get(&lan, mh, master, key) {
                Some(v) if !v.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
}

// ---------------------------------------------------------------------------------------
// galera

/// The galera bundle (scripts/galera-bundle.yaml.in: OpenStack's shape) for the LAN's three
/// hosts, the data directories below `data`.
fn galera_manifest(lan: &Lan, data: &std::path::Path) -> String {
    let names: Vec<String> = (1..=3).map(|h| lan.node(h)).collect();
    include_str!("../scripts/galera-bundle.yaml.in")
        .replace("@REPLICAS@", "3")
        .replace("@DATA@", &data.display().to_string())
        .replace("@CLUSTER@", &names.join(","))
}

/// Runs SQL in replica `i` (on host `h`) with the mysql client; its output.
fn sql(lan: &Lan, h: u32, i: u32, q: &str) -> Option<String> {
    client(lan, h, "galera-bundle", i, &["mysql", "-N", "-B", "-e", q])
}

/// `wsrep_cluster_size` as every running replica reports it, when they all agree on `want`
/// and each is Synced.
fn galera_size(lan: &Lan, want: usize) -> Result<BTreeMap<u32, u32>, String> {
    let at = running(lan, "galera-bundle");
    if at.len() != want {
        return Err(format!("running {at:?}"));
    }
    for (&i, &h) in &at {
        let out = sql(
            lan,
            h,
            i,
            "SHOW STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_local_state_comment')",
        )
        .ok_or(format!("galera-bundle-{i}: no answer"))?;
        let want_size = format!("wsrep_cluster_size\t{want}");
        if !out.lines().any(|l| l == want_size) || !out.contains("Synced") {
            return Err(format!("galera-bundle-{i}: {out:?}"));
        }
    }
    Ok(at)
}

fn rows(lan: &Lan, h: u32, i: u32) -> Option<String> {
    sql(lan, h, i, "SELECT GROUP_CONCAT(v ORDER BY id) FROM berth.t")
}

#[test]
fn galera_bootstraps_from_empty_survives_a_host_and_restarts_from_the_latest_seqno() {
    let image = service_image("galera");
    let data = tempfile::tempdir().unwrap();
    let root = data.path().display().to_string();
    let mut lan = Lan::up(3, &[&image]);
    let flags = [
        "--lease-ttl",
        TTL,
        "--allow-host-namespaces",
        "--allow-source-dir",
        &root,
    ];
    for h in 1..=3 {
        lan.start_agent(h, &flags);
    }
    lan.start_controller("c1");
    let manifest = galera_manifest(&lan, data.path());
    let started = Instant::now();
    apply(&lan, &manifest);
    let at = wait_for(400, "one galera cluster of 3", || galera_size(&lan, 3));
    println!(
        "galera: apply → a 3-node cluster, every node Synced, in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // A row written on one is read on the others.
    let (&a, &ha) = at.iter().next().unwrap();
    sql(
        &lan,
        ha,
        a,
        "CREATE DATABASE berth; CREATE TABLE berth.t (id INT PRIMARY KEY, v VARCHAR(16)); INSERT INTO berth.t VALUES (1, 'one')",
    )
    .expect("write on the first node");
    for (&i, &h) in &at {
        wait_for(30, &format!("row 1 on galera-bundle-{i}"), || {
            rows(&lan, h, i)
                .filter(|r| r == "one")
                .ok_or("not yet".into())
        });
    }
    // One host killed: the other two keep taking writes.
    let (&gone, &hg) = at.iter().last().unwrap();
    lan.kill_host(hg);
    let at2 = wait_for(120, "a galera cluster of 2", || galera_size(&lan, 2));
    let (&b, &hb) = at2.iter().next().unwrap();
    sql(&lan, hb, b, "INSERT INTO berth.t VALUES (2, 'two')").expect("write with a host gone");
    for (&i, &h) in &at2 {
        wait_for(30, &format!("row 2 on galera-bundle-{i}"), || {
            rows(&lan, h, i)
                .filter(|r| r == "one,two")
                .ok_or("not yet".into())
        });
    }
    // It returns and rejoins.
    lan.boot_host(hg);
    lan.start_agent(hg, &flags);
    let at3 = wait_for(300, "the returned node rejoining (size 3)", || {
        galera_size(&lan, 3)
    });
    assert_eq!(at3.get(&gone), Some(&hg));
    assert_eq!(rows(&lan, hg, gone).as_deref(), Some("one,two"));
    sql(&lan, hb, b, "INSERT INTO berth.t VALUES (3, 'three')").expect("a third write");
    // The whole bundle stopped and started: it bootstraps from the node with the latest
    // seqno, and no row is lost.
    let stopped = manifest.replace(
        "  metaAttributes:\n",
        "  metaAttributes:\n    - {name: target-role, value: Stopped}\n",
    );
    apply(&lan, &stopped);
    wait_for(180, "every galera replica stopped", || {
        let at = running(&lan, "galera-bundle");
        at.is_empty().then_some(()).ok_or(format!("{at:?}"))
    });
    let restarted = Instant::now();
    apply(&lan, &manifest);
    let at4 = wait_for(400, "the galera cluster back (size 3)", || {
        galera_size(&lan, 3)
    });
    println!(
        "galera: whole bundle started again → a 3-node cluster in {:.1}s",
        restarted.elapsed().as_secs_f64()
    );
    for (&i, &h) in &at4 {
        wait_for(30, &format!("every row on galera-bundle-{i}"), || {
            rows(&lan, h, i)
                .filter(|r| r == "one,two,three")
                .ok_or(format!("{:?}", rows(&lan, h, i)))
        });
    }
}

// ---------------------------------------------------------------------------------------
// rabbitmq

fn rabbitmq_manifest(lan: &Lan) -> String {
    format!(
        "apiVersion: berth.io/v1alpha1
kind: Bundle
metadata:
  name: rmq
spec:
  docker:
    image: berth-test/rabbitmq:1
    replicas: 3
    options: --stop-timeout 60 --dns 127.0.0.1
  network:
    ipRangeStart: {}
    hostNetmask: 24
    hostInterface: lan0
    portMappings:
      - {{id: rmq-epmd, port: 4369}}
      - {{id: rmq-dist, port: 25672}}
      - {{id: rmq-amqp, port: 5672}}
  primitive:
    id: rabbitmq
    class: ocf
    provider: heartbeat
    type: rabbitmq-cluster
    operations:
      - {{name: start, interval: 0s, timeout: 200s}}
      - {{name: stop, interval: 0s, timeout: 200s}}
      - {{name: monitor, interval: 10s, timeout: 40s}}
  metaAttributes:
    - {{name: notify, value: \"true\"}}
",
        lan.address(120)
    )
}

/// The running nodes of the rabbitmq cluster as every running replica's `rabbitmqctl
/// cluster_status` reports them, when they all report the same `want` nodes.
fn rabbit_running(lan: &Lan, want: usize) -> Result<BTreeMap<u32, u32>, String> {
    let at = running(lan, "rmq");
    if at.len() != want {
        return Err(format!("running {at:?}"));
    }
    let mut seen = None;
    for (&i, &h) in &at {
        let out = client(
            lan,
            h,
            "rmq",
            i,
            &["rabbitmqctl", "-q", "cluster_status", "--formatter", "json"],
        )
        .ok_or(format!("rmq-{i}: no answer"))?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("rmq-{i}: {e}: {out}"))?;
        let mut nodes: Vec<String> = v["running_nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        nodes.sort();
        if nodes.len() != want || seen.as_ref().is_some_and(|s| *s != nodes) {
            return Err(format!("rmq-{i}: running nodes {nodes:?}"));
        }
        seen = Some(nodes);
    }
    Ok(at)
}

#[test]
fn rabbitmq_forms_one_cluster_loses_a_host_and_takes_it_back() {
    let image = service_image("rabbitmq");
    let mut lan = cluster(&image, rabbitmq_manifest);
    let started = Instant::now();
    wait_for(400, "one rabbitmq cluster of three running nodes", || {
        rabbit_running(&lan, 3)
    });
    println!(
        "rabbitmq: apply → a cluster of 3 running nodes in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // Past a monitor of each (10 s): the agent records a node's rabbitmq name (the
    // permanent attribute a returning node needs to be forgotten and join again) in its
    // monitor, not when it joins.
    let at = settled_for(
        60,
        Duration::from_secs(12),
        "the rabbitmq cluster of three staying so past a monitor",
        || rabbit_running(&lan, 3),
    );
    let (&gone, &hg) = at.iter().last().unwrap();
    lan.kill_host(hg);
    wait_for(
        180,
        "the rabbitmq cluster down to two running nodes",
        || rabbit_running(&lan, 2),
    );
    lan.boot_host(hg);
    lan.start_agent(hg, &["--lease-ttl", TTL]);
    let back = wait_for(
        400,
        "the returned rabbitmq node running in the cluster",
        || rabbit_running(&lan, 3),
    );
    assert_eq!(back.get(&gone), Some(&hg));
}

// ---------------------------------------------------------------------------------------
// A measurement, not a test (`scripts/bench-attributes-hosts.sh` runs it): an attribute
// written by a replica's tool on one host, read by another replica's tool on another.

#[test]
#[ignore = "a benchmark: run by scripts/bench-attributes-hosts.sh"]
fn bench_an_attribute_written_on_one_host_is_read_on_another() {
    let image = service_image("redis");
    let lan = cluster(&image, redis_manifest);
    let at = settled_for(
        240,
        Duration::from_secs(5),
        "one redis master, two replicas linked to it",
        || redis_settled(&lan, 3),
    )
    .1;
    let mut it = at.iter();
    let ((&a, &ha), (&b, &hb)) = (it.next().unwrap(), it.next().unwrap());
    assert_ne!(ha, hb);
    const N: u32 = 100;
    // The reader, in replica b: each value as soon as its own crm_attribute sees it.
    let reader = format!(
        "export PATH=/run/berth-bin:$PATH; for n in $(seq 1 {N}); do \
         until [ \"$(crm_attribute -N rds-{a} -l reboot --name bench -G -q 2>/dev/null)\" = \"$n\" ]; do :; done; \
         echo \"$n $(date +%s%N)\"; done > /tmp/seen"
    );
    let name_b = format!("rds-docker-{b}");
    lan.docker(hb, &["exec", "-d", &name_b, "bash", "-c", &reader])
        .expect("the reader runs");
    // The writer, in replica a: one write every 110 ms (within the 10 a second a replica may
    // make), the time each call returned (stored).
    let writer = format!(
        "export PATH=/run/berth-bin:$PATH; for n in $(seq 1 {N}); do \
         crm_attribute -N rds-{a} -l reboot --name bench -v $n || exit 1; \
         echo \"$n $(date +%s%N)\"; sleep 0.11; done"
    );
    let written = client(&lan, ha, "rds", a, &["bash", "-c", &writer]).expect("the writes");
    let seen = wait_for(60, "the reader to see every value", || {
        let s = client(&lan, hb, "rds", b, &["cat", "/tmp/seen"]).unwrap_or_default();
        (s.lines().count() == N as usize)
            .then_some(s)
            .ok_or("not yet".into())
    });
    let times = |s: &str| -> BTreeMap<u32, i64> {
        s.lines()
            .filter_map(|l| {
                let (n, t) = l.split_once(' ')?;
                Some((n.parse().ok()?, t.parse().ok()?))
            })
            .collect()
    };
    let (w, r) = (times(&written), times(&seen));
    let mut lag: Vec<f64> = (1..=N)
        .map(|n| (r[&n] - w[&n]).max(0) as f64 / 1e6)
        .collect();
    lag.sort_by(f64::total_cmp);
    println!(
        "attribute written on host {ha} (stored: the tool returned), read on host {hb}: median {:.1} ms, max {:.1} ms over {N}",
        lag[lag.len() / 2],
        lag[lag.len() - 1]
    );
}
