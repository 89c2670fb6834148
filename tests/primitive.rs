//! A bundle's primitive end to end (real etcd and dockerd): the node agent runs
//! `berth remote` as each container's PID 1, which runs the project's OCF agent for busybox
//! httpd (as ocf:heartbeat:apache), monitors it and recovers it in place; the replica status
//! and `berth describe` carry what the remote agent reports.

mod common;

use berth::model::cluster::Phase;
use std::time::Duration;

use berth::model::cluster::ReplicaStatus;
use berth::store::Expect;
use common::{
    TestController, TestNode, TestPrefix, berth, docker, eventually, ocf_bundle, ocf_test_image,
    third_party_ocf_image,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(40);

async fn http_get(addr: String) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

async fn replica(store: &berth::store::Store, b: &str, i: u32) -> Option<ReplicaStatus> {
    let kv = store.get(&store.keys().replica(b, i)).await.unwrap()?;
    serde_json::from_slice(&kv.value).ok()
}

/// Replica `i`'s status once its primitive has started (fails the test after `WAIT`).
async fn started(store: &berth::store::Store, b: &str, i: u32) -> ReplicaStatus {
    eventually(WAIT, &format!("{b}-{i}'s primitive started"), || async {
        replica(store, b, i).await.filter(|s| {
            s.primitive
                .as_ref()
                .is_some_and(|p| p.state == Phase::Started)
        })
    })
    .await
}

/// A cluster of one registered node and a controller, with the OCF test image built.
async fn cluster(test: &str) -> common::OneNode {
    ocf_test_image();
    common::one_node(test).await
}

/// The seed manifest, `manifests/httpd-bundle.yaml`, with only what keeps a test apart
/// swapped: the bundle's name, the image tag (the same build `scripts/run.sh` makes), the
/// address range (127.0.`net`.112 instead of 127.0.2.112, which a seed left running by
/// `scripts/run.sh` may hold) and the host directories (the test's own, not /srv/www and
/// /var/log/pacemaker/bundles). Replicas, replicas-per-host, netmask, interface, port, targets
/// and the primitive (ocf:heartbeat:apache, with no operations) are the seed's.
fn seed_manifest(name: &str, net: u8, root: &std::path::Path, logs: &std::path::Path) -> String {
    common::seed_manifest(&[
        (&["metadata", "name"], name.into()),
        (
            &["spec", "docker", "image"],
            "berth-test/httpd-ocf:1".into(),
        ),
        (
            &["spec", "network", "ipRangeStart"],
            format!("127.0.{net}.112"),
        ),
        (
            &["spec", "storageMappings", "0", "sourceDir"],
            root.display().to_string(),
        ),
        (
            &["spec", "storageMappings", "1", "sourceDirRoot"],
            logs.display().to_string(),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_applied_with_berth_apply_serves_is_monitored_and_recovers_in_place() {
    let c = cluster("prim").await;
    let (p, store, tag) = (&c.p, &c.store, &c.tag);
    let dirs = tempfile::tempdir().unwrap();
    let (root, logs) = (dirs.path().join("www"), dirs.path().join("logs"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(root.join("index.html"), format!("seed page {tag}\n")).unwrap();
    let name = format!("{tag}-httpd");
    let file = dirs.path().join("httpd-bundle.yaml");
    std::fs::write(&file, seed_manifest(&name, 60, &root, &logs)).unwrap();
    let out = berth(p, &["apply", "-f", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let b = store.get_bundle(&name).await.unwrap().unwrap().value;

    for i in 0..3 {
        started(store, &name, i).await;
        // The seed's port 80 on the replica's own address, serving the mapped /srv/www.
        let page = eventually(WAIT, "HTTP", || {
            http_get(format!("127.0.60.{}:80", 112 + i))
        })
        .await;
        assert!(page.contains("200 OK"), "{page}");
        assert!(page.contains(&format!("seed page {tag}")), "{page}");
        // Each replica's own log directory under source-dir-root.
        assert!(
            logs.join(format!("{name}-{i}")).is_dir(),
            "{name}-{i}'s log dir"
        );
    }
    let before = replica(store, &name, 0).await.unwrap();
    // One action by hand, inside the container, with the environment supervision gives it.
    let md = docker(&[
        "exec",
        &b.container_name(0),
        "/run/berth-bin/berth",
        "remote",
        "--config",
        "/etc/berth/remote.json",
        "--action",
        "meta-data",
    ]);
    assert!(md.contains("<resource-agent name=\"apache\""), "{md}");

    // httpd dies inside replica 0: the monitor (the seed defines none, so it is the one the
    // agent's meta-data advertises, every 10 s) notices, and httpd is restarted in place.
    docker(&["exec", &b.container_name(0), "killall", "httpd"]);
    let after = eventually(WAIT, "the primitive restarted in place", || async {
        replica(store, &name, 0).await.filter(|s| {
            s.primitive
                .as_ref()
                .is_some_and(|p| p.restarts == 1 && p.state == Phase::Started)
        })
    })
    .await;
    assert_eq!(
        after.container_id, before.container_id,
        "the container was not replaced"
    );
    let ops = &after.primitive.as_ref().unwrap().last;
    assert!(
        ops.iter().any(|o| o.action == "monitor"
            && o.interval_ms == 10_000
            && o.rc_name == "OCF_NOT_RUNNING"),
        "{ops:?}"
    );
    let page = eventually(WAIT, "HTTP again", || http_get("127.0.60.112:80".into())).await;
    assert!(page.contains("200 OK"), "{page}");

    // describe shows the bundle's replicas with their primitive state.
    let out = berth(p, &["describe", "bundle", b.name()], None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("3/3 ready"), "{text}");
    let op_rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(&format!("{}-0", b.name())))
        .collect();
    assert!(
        op_rows
            .iter()
            .any(|l| l.contains("monitor") && l.contains("OCF_NOT_RUNNING") && l.contains(" 7 ")),
        "the failed monitor with its exit code: {text}"
    );
    assert!(
        op_rows
            .iter()
            .any(|l| l.contains("start") && l.contains("OCF_SUCCESS")),
        "{text}"
    );

    // A primitive whose agent is not installed: the start fails, and the replica's failure
    // names the operation, the agent's exit code and its reason.
    let bad = ocf_bundle(&format!("{tag}-bad"), 1, 61, "heartbeat", "nosuch");
    store.put_bundle(&bad, Expect::Absent).await.unwrap();
    let failed = eventually(WAIT, "the start failure", || async {
        replica(store, bad.name(), 0)
            .await
            .and_then(|s| s.last_failure)
            .filter(|f| f.reason.contains("start OCF_ERR_INSTALLED (5)"))
    })
    .await;
    assert!(
        failed.reason.contains("exited with code 3"),
        "{}",
        failed.reason
    );
    for name in [b.name(), bad.name()] {
        store.delete_bundle(name, Expect::Any).await.unwrap();
    }
}

/// Each replica's primitive role and promotion score, once all three have started; panics if
/// ever more than one reports itself promoted.
async fn roles(store: &berth::store::Store, b: &str) -> Option<Vec<(String, Option<i64>)>> {
    let mut roles = Vec::new();
    for i in 0..3 {
        let prim = replica(store, b, i).await.and_then(|s| s.primitive);
        roles.push(
            prim.filter(|p| p.state == Phase::Started)
                .map(|p| (p.role.map(|r| r.to_string()).unwrap_or_default(), p.score)),
        );
    }
    let promoted = roles.iter().flatten().filter(|r| r.0 == "promoted").count();
    assert!(promoted <= 1, "more than promoted-max promoted: {roles:?}");
    roles.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotable_bundle_promotes_the_highest_promotion_score_never_more_than_promoted_max() {
    let c = cluster("prom").await;
    let store = &c.store;
    let mut b = ocf_bundle(&format!("{}-db", c.tag), 3, 62, "berth", "stateful");
    b.spec.docker.as_mut().unwrap().promoted_max = Some(1);
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    // The agent reports 5 when unpromoted, 10 when promoted (crm_master, as Pacemaker's
    // Stateful agent does).
    let name = b.name();
    let first = eventually(
        WAIT,
        "one promoted (score 10), two unpromoted (5)",
        || async {
            let r = roles(store, name).await?;
            let promoted: Vec<usize> = (0..3).filter(|i| r[*i].0 == "promoted").collect();
            let settled = promoted.len() == 1
                && r.iter()
                    .all(|(role, score)| *score == Some(if role == "promoted" { 10 } else { 5 }));
            settled.then(|| promoted[0] as u32)
        },
    )
    .await;
    // Its monitors answer 8 (running promoted) and that is healthy: no restart.
    let prim = replica(store, b.name(), first)
        .await
        .unwrap()
        .primitive
        .unwrap();
    assert_eq!(prim.restarts, 0);
    assert!(
        prim.last.iter().any(|o| o.action == "promote" && o.rc == 0),
        "{:?}",
        prim.last
    );

    // Another replica's agent reports a higher score (crm_attribute -p at its next monitor):
    // the promotion moves there, the old one demoted first.
    let next = (first + 1) % 3;
    docker(&[
        "exec",
        &b.container_name(next),
        "sh",
        "-c",
        "echo 50 > /tmp/stateful/score",
    ]);
    eventually(WAIT, "the higher score promoted", || async {
        let r = roles(store, b.name()).await?;
        let moved = r[next as usize] == ("promoted".into(), Some(50))
            && r[first as usize] == ("unpromoted".into(), Some(5));
        moved.then_some(())
    })
    .await;
    let old = replica(store, b.name(), first)
        .await
        .unwrap()
        .primitive
        .unwrap();
    assert!(
        old.last.iter().any(|o| o.action == "demote" && o.rc == 0),
        "{:?}",
        old.last
    );
    assert_eq!(old.restarts, 0);
    // describe shows each replica's role and score.
    let text = common::stdout(&berth(&c.p, &["describe", "bundle", name], None));
    let row = |i: u32| {
        format!(
            "{name}-{i} started {}",
            if i == next {
                "promoted 50 0"
            } else {
                "unpromoted 5 0"
            }
        )
    };
    for i in 0..3 {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == row(i)),
            "{}: {text}",
            row(i)
        );
    }

    // The promoted container dies: its transient attributes go with it (the score file too,
    // removed first), another replica is promoted meanwhile, and the dead one comes back
    // unpromoted with the agent's start score. Never two promoted on the way.
    docker(&["exec", &b.container_name(next), "rm", "/tmp/stateful/score"]);
    let killed = replica(store, name, next).await.unwrap().container_id;
    docker(&["kill", &b.container_name(next)]);
    let (promoted, back) = eventually(
        WAIT,
        "another promoted, the dead one back unpromoted",
        || async {
            let r = roles(store, name).await?;
            let now = replica(store, name, next).await?;
            let promoted: Vec<u32> = (0..3).filter(|i| r[*i as usize].0 == "promoted").collect();
            let back = r[next as usize] == ("unpromoted".into(), Some(5));
            (promoted.len() == 1 && promoted[0] != next && back).then(|| (promoted[0], now))
        },
    )
    .await;
    assert_eq!(
        back.container_id, killed,
        "restarted in place, not replaced"
    );
    assert_eq!(
        roles(store, name).await.unwrap()[promoted as usize],
        ("promoted".into(), Some(10))
    );
    store.delete_bundle(b.name(), Expect::Any).await.unwrap();
}

/// Third-party agents run unchanged (Debian's packages, as scripts/setup.sh unpacks them):
/// Pacemaker's own ocf:pacemaker:Stateful reports its promotion scores through
/// `${HA_SBIN_DIR}/crm_attribute --promotion` (5 unpromoted, 10 promoted) and is promoted by
/// them; resource-agents' ocf:heartbeat:Dummy is monitored through ocf-shellfuncs and
/// recovered in place when its state file goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_ocf_agents_run_unchanged() {
    third_party_ocf_image();
    let c = cluster("third").await;
    let store = &c.store;
    let image = "berth-test/httpd-ra:1";
    let mut db = ocf_bundle(&format!("{}-st", c.tag), 3, 63, "pacemaker", "Stateful");
    db.spec.docker.as_mut().unwrap().promoted_max = Some(1);
    db.spec.docker.as_mut().unwrap().image = image.into();
    let mut dummy = ocf_bundle(&format!("{}-dm", c.tag), 1, 64, "heartbeat", "Dummy");
    dummy.spec.docker.as_mut().unwrap().image = image.into();
    for b in [&db, &dummy] {
        store.put_bundle(b, Expect::Absent).await.unwrap();
    }

    let name = db.name();
    eventually(
        WAIT,
        "one promoted (score 10), two unpromoted (5)",
        || async {
            let r = roles(store, name).await?;
            let promoted = r.iter().filter(|(role, _)| role == "promoted").count();
            let settled = promoted == 1
                && r.iter()
                    .all(|(role, score)| *score == Some(if role == "promoted" { 10 } else { 5 }));
            settled.then_some(())
        },
    )
    .await;
    for i in 0..3 {
        let prim = replica(store, name, i).await.unwrap().primitive.unwrap();
        assert_eq!(prim.restarts, 0, "{:?}", prim.last);
    }

    let dm = dummy.name();
    let before = started(store, dm, 0).await;
    // Dummy's state file is its resource: without it, monitor answers 7 and it is restarted.
    let state = format!("/run/resource-agents/Dummy-{dm}-Dummy.state");
    docker(&["exec", &dummy.container_name(0), "rm", &state]);
    let after = eventually(WAIT, "Dummy restarted in place", || async {
        replica(store, dm, 0).await.filter(|s| {
            s.primitive
                .as_ref()
                .is_some_and(|p| p.restarts == 1 && p.state == Phase::Started)
        })
    })
    .await;
    assert_eq!(after.container_id, before.container_id);
    let ops = &after.primitive.as_ref().unwrap().last;
    assert!(
        ops.iter().any(|o| o.action == "monitor" && o.rc == 7),
        "{ops:?}"
    );
    docker(&["exec", &dummy.container_name(0), "test", "-f", &state]);
    for b in [&db, &dummy] {
        store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    }
}

/// One binary for any image: the statically linked berth (`scripts/test.sh` builds it with
/// crt-static, as `scripts/build-image.sh` does for berth's own image, and names it in
/// `BERTH_STATIC_BIN`) is the remote agent in the plain test image, which has no C library at
/// all (a static busybox FROM scratch). The primitive is berth's command class running httpd
/// with a health probe; the node attribute tools answer under their own names there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_berth_is_the_remote_agent_in_an_image_without_a_c_library() {
    let bin = std::env::var("BERTH_STATIC_BIN").unwrap_or_else(|_| {
        panic!(
            "BERTH_STATIC_BIN is not set: run scripts/test.sh, which builds the static berth \
             (RUSTFLAGS='-C target-feature=+crt-static' cargo build --target \
             x86_64-unknown-linux-gnu --bin berth) and sets it"
        )
    });
    let ldd = std::process::Command::new("ldd")
        .arg(&bin)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "{bin} is not static: {said}"
    );
    common::test_image();
    // The image's files, read without running it (any engine).
    let probe = common::docker(&["create", "berth-test/httpd:1"]);
    let probe = probe.trim();
    let files = std::process::Command::new("sh")
        .args(["-c", &format!("docker export {probe} | tar -t")])
        .output()
        .unwrap();
    common::docker(&["rm", probe]);
    assert!(files.status.success(), "docker export: {files:?}");
    let files = String::from_utf8_lossy(&files.stdout).into_owned();
    assert!(files.contains("bin/busybox"), "{files}");
    let libc: Vec<&str> = files
        .lines()
        .filter(|f| {
            ["lib/", "lib64/", "usr/lib/"]
                .iter()
                .any(|d| f.trim_start_matches("./").starts_with(d))
        })
        .collect();
    assert!(
        libc.is_empty(),
        "the plain test image has a library folder: {libc:?}"
    );

    let p = TestPrefix::new("static");
    let store = p.store().await;
    let tag = format!("static{}", std::process::id() % 100_000);
    let node = TestNode::start_with_remote(&p, &format!("{tag}-n"), bin.into()).await;
    eventually(WAIT, "the node to register", || async {
        store.get(&store.keys().node(&node.name)).await.unwrap()
    })
    .await;
    let _ctl = TestController::start(&p, "ctl").await;
    let mut b = common::httpd_bundle(&format!("{tag}-web"), 1, 1, 65);
    b.spec.primitive = Some(berth::model::Primitive {
        id: "web".into(),
        class: "command".into(),
        kind: "/bin/httpd".into(),
        instance_attributes: [
            ("args", "-f -p 80 -h /var/www/html"),
            ("health", "/bin/wget -q -O /dev/null http://127.0.0.1:80/"),
        ]
        .into_iter()
        .map(|(k, v)| berth::model::NvPair {
            id: None,
            name: k.into(),
            value: Some(v.into()),
        })
        .collect(),
        ..Default::default()
    });
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    started(&store, b.name(), 0).await;
    let page = eventually(WAIT, "HTTP", || http_get("127.0.65.10:8080".into())).await;
    assert!(page.contains("200 OK"), "{page}");
    let me = docker(&[
        "exec",
        &b.container_name(0),
        "/run/berth-bin/crm_node",
        "-n",
    ]);
    assert_eq!(me, b.replica_name(0));
    store.delete_bundle(b.name(), Expect::Any).await.unwrap();
}

/// With control-port set, the channel is TCP, as Pacemaker reaches pacemaker-remoted: the
/// remote agent listens on that port only (no unix socket), published on the replica's
/// address, and the node agent reads the primitive through it; a peer without the key is
/// refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_control_port_the_channel_is_tcp_on_the_replica_address() {
    use berth::remote::channel::{ChannelError, query};
    let c = cluster("tcp").await;
    let store = &c.store;
    let mut b = ocf_bundle(&format!("{}-web", c.tag), 1, 66, "heartbeat", "apache");
    b.spec.network.as_mut().unwrap().control_port = Some(3121);
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    started(store, b.name(), 0).await;
    let dir = c
        .node
        .state_dir
        .path()
        .join(b.name())
        .join(b.replica_name(0));
    assert!(dir.join("config/authkey").exists());
    assert!(
        !dir.join("run/control.sock").exists(),
        "TCP only: no unix socket"
    );
    let addr = "127.0.66.10:3121";
    let key = std::fs::read_to_string(dir.join("config/authkey")).unwrap();
    let st = query(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        key.trim(),
    )
    .await
    .unwrap();
    assert_eq!(st.state, Phase::Started);
    match query(tokio::net::TcpStream::connect(addr).await.unwrap(), "guess").await {
        Err(ChannelError::Refused(why)) => assert_eq!(why, "unauthenticated"),
        other => panic!("a peer without the key got {other:?}"),
    }
    store.delete_bundle(b.name(), Expect::Any).await.unwrap();
}

/// Issue 31, item 6: with the control port published and a tight descriptor limit
/// (`--ulimit nofile=64:64`), floods of idle connections that never show the key neither
/// starve the primitive's operations (a recovery after its process is killed starts it
/// again) nor end the listener (the key's holder is answered after each flood).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_control_port_starve_nothing() {
    use berth::remote::channel::query;
    let c = cluster("flood").await;
    let store = &c.store;
    let mut b = ocf_bundle(&format!("{}-web", c.tag), 1, 176, "heartbeat", "apache");
    b.spec.network.as_mut().unwrap().control_port = Some(3121);
    b.spec.docker.as_mut().unwrap().options = Some("--stop-timeout 1 --ulimit nofile=64:64".into());
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    started(store, b.name(), 0).await;
    let dir = c
        .node
        .state_dir
        .path()
        .join(b.name())
        .join(b.replica_name(0));
    let key = std::fs::read_to_string(dir.join("config/authkey")).unwrap();
    let addr = "127.0.176.10:3121";
    let mut floods = Vec::new();
    for round in 0..2 {
        let mut idle = Vec::new();
        for _ in 0..150 {
            if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                idle.push(s);
            }
        }
        // The primitive dies; its recovery (stop, start: processes, pipes) needs descriptors.
        let restarts = replica(store, b.name(), 0)
            .await
            .and_then(|s| s.primitive)
            .map_or(0, |p| p.restarts);
        docker(&[
            "exec",
            &b.container_name(0),
            "/bin/busybox",
            "killall",
            "httpd",
        ]);
        eventually(WAIT, &format!("recovered during flood {round}"), || async {
            replica(store, b.name(), 0)
                .await
                .and_then(|s| s.primitive)
                .filter(|p| p.restarts > restarts && p.state == Phase::Started)
        })
        .await;
        let st = query(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            key.trim(),
        )
        .await;
        assert!(st.is_ok(), "after flood {round}: {st:?}");
        floods.push(idle);
    }
    store.delete_bundle(b.name(), Expect::Any).await.unwrap();
}
