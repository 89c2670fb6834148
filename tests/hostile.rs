//! A hostile container against the root node agent (real etcd and dockerd): everything a
//! container can write is swapped for symbolic links to a host canary file, a host secret
//! and a host socket, again and again, while the agent does everything that touches those
//! paths (writes the remote agent's configuration and /etc/hosts, reads the state file a
//! dead container leaves, dials the control channel). The canary stays unchanged, the trap
//! socket is never dialled, and the secret never reaches etcd.

mod common;

use std::time::Duration;

use berth::model::{NvPair, StorageMapping};
use berth::store::Expect;
use common::{TestController, TestNode, TestPrefix, docker, eventually, httpd_bundle, test_image};

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_container_cannot_write_or_read_host_files_through_links() {
    test_image();
    let p = TestPrefix::new("hostile");
    let store = p.store().await;
    let tag = format!("hostile{}", std::process::id() % 100_000);
    let host = tempfile::tempdir().unwrap();
    let canary = host.path().join("canary");
    std::fs::write(&canary, "CANARY-UNCHANGED").unwrap();
    std::fs::set_permissions(&canary, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // The secret is a valid remote-agent state, so that an agent following a link to it
    // would copy it into the replica status: the marker would then show up in etcd.
    let marker = format!("SECRET-{tag}");
    let secret = host.path().join("secret");
    std::fs::write(
        &secret,
        format!(
            r#"{{"state":"failed","restarts":0,"last":[{{"action":"{marker}","intervalMs":0,"rc":1,"rcName":"{marker}","at":0,"tookMs":0,"output":"{marker}"}}]}}"#
        ),
    )
    .unwrap();
    let trap_path = host.path().join("trap.sock");
    let trap = tokio::net::UnixListener::bind(&trap_path).unwrap();
    let dialled = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = dialled.clone();
    let trap_task = tokio::spawn(async move {
        while trap.accept().await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let share = host.path().join("share");
    let logs = host.path().join("logs");
    std::fs::create_dir_all(&share).unwrap();

    let node = TestNode::start(&p, &format!("{tag}-n")).await;
    let _ctl = TestController::start(&p, "ctl").await;

    // Every name the container can see, swapped for links, in a loop. The read-only mounts
    // (/etc/berth, /etc/hosts) refuse it; the rest is the container's to break.
    let (c, s, t) = (canary.display(), secret.display(), trap_path.display());
    let script = format!(
        "swap() {{ rm -rf \"$1\" 2>/dev/null; ln -s \"$2\" \"$1\" 2>/dev/null; }}; \
         keep() {{ [ \"$(readlink \"$1\")\" = \"$2\" ] || swap \"$1\" \"$2\"; }}; \
         while true; do \
           swap /etc/berth {c}; rmdir /run/berth 2>/dev/null; \
           for f in /run/berth/* /run/berth/remote.json /run/berth/authkey /run/berth/hosts \
                    /run/berth/attributes.json /run/berth/config /run/berth/run \
                    /etc/berth/* /etc/berth/remote.json /etc/berth/authkey /etc/hosts \
                    /share/* /share/x /logs/* /logs/x; do \
             case \"$f\" in */state.json|*/control.sock) ;; *) keep \"$f\" {c};; esac; \
           done; \
           keep /run/berth/state.json {s}; keep /run/berth/control.sock {t}; \
           sleep 0.1; \
         done"
    );
    let mut b = httpd_bundle(&format!("{tag}-b"), 1, 2, 93);
    let docker_spec = b.spec.docker.as_mut().unwrap();
    docker_spec.run_command = Some(format!("/bin/sh -c '{script}'"));
    docker_spec.options = Some("--stop-timeout 1".into());
    b.spec.storage_mappings = vec![
        StorageMapping {
            id: "share".into(),
            source_dir: Some(share.display().to_string()),
            target_dir: "/share".into(),
            options: Some("rw".into()),
            ..Default::default()
        },
        StorageMapping {
            id: "logs".into(),
            source_dir_root: Some(logs.display().to_string()),
            target_dir: "/logs".into(),
            options: Some("rw".into()),
            ..Default::default()
        },
    ];
    b.spec.primitive = Some(berth::model::Primitive {
        id: format!("{tag}-p"),
        class: "ocf".into(),
        provider: Some("heartbeat".into()),
        kind: "Dummy".into(),
        ..Default::default()
    });
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    let name = b.name().to_string();
    let replica_dir = node.state_dir.path().join(&name).join(b.replica_name(0));

    eventually(WAIT, "replica 0 running the hostile script", || async {
        common::replica_status(&store, &name, 0)
            .await
            .filter(|s| s.state == berth::model::cluster::ReplicaState::Running)
    })
    .await;
    // The container has swapped its files for links (seen from the host), so everything
    // the agent does from here on (it dials the channel every half second while it fails)
    // meets them.
    let run = replica_dir.join("run");
    let swapped = |name: &'static str| {
        let path = run.join(name);
        async move {
            std::fs::symlink_metadata(&path)
                .ok()
                .filter(|m| m.file_type().is_symlink())
        }
    };
    eventually(WAIT, "the state file swapped for a link", || {
        swapped("state.json")
    })
    .await;
    eventually(WAIT, "the control socket swapped for a link", || {
        swapped("control.sock")
    })
    .await;

    // Scale to 2: replica 0's /etc/hosts is rewritten with replica 1's name.
    b.spec.docker.as_mut().unwrap().replicas = Some(2);
    store.put_bundle(&b, Expect::Any).await.unwrap();
    let hosts = replica_dir.join("hosts");
    let r1 = b.replica_name(1);
    eventually(WAIT, "replica 0's hosts file to list replica 1", || async {
        std::fs::read_to_string(&hosts)
            .ok()
            .filter(|h| h.contains(&r1))
    })
    .await;

    // Kill replica 0: the agent reads the state file it left (a link to the secret).
    docker(&["kill", &b.container_name(0)]);
    eventually(
        WAIT,
        "replica 0's death counted and it restarted",
        || async {
            common::replica_status(&store, &name, 0).await.filter(|s| {
                s.restart_count >= 1
                    && s.last_failure
                        .as_ref()
                        .is_some_and(|f| f.reason.contains("exited with code"))
            })
        },
    )
    .await;

    // A primitive change: the remote agent's configuration is rewritten.
    b.spec.primitive.as_mut().unwrap().instance_attributes = vec![NvPair {
        name: "state".into(),
        value: Some("/run/x".into()),
        ..Default::default()
    }];
    store.put_bundle(&b, Expect::Any).await.unwrap();
    let config = replica_dir.join("config").join("remote.json");
    eventually(WAIT, "the new remote agent configuration", || async {
        std::fs::read_to_string(&config)
            .ok()
            .filter(|c| c.contains("/run/x"))
    })
    .await;
    eventually(WAIT, "the replaced replica 0 running", || async {
        common::replica_status(&store, &name, 0).await.filter(|s| {
            s.state == berth::model::cluster::ReplicaState::Running && s.generation >= 3
        })
    })
    .await;

    assert_eq!(
        std::fs::read_to_string(&canary).unwrap(),
        "CANARY-UNCHANGED",
        "the canary was written through a link"
    );
    assert_eq!(
        dialled.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the agent dialled a socket through a link"
    );
    let (_, kvs) = store.list(&p.prefix).await.unwrap();
    for kv in &kvs {
        assert!(
            !String::from_utf8_lossy(&kv.value).contains(&marker),
            "the secret reached etcd at {}",
            kv.key
        );
    }
    // The agent's own files are still regular files, not links.
    for f in ["config/remote.json", "config/authkey", "hosts"] {
        let meta = std::fs::symlink_metadata(replica_dir.join(f)).unwrap();
        assert!(meta.is_file(), "{f} is a regular file");
    }
    store.delete_bundle(&name, Expect::Any).await.unwrap();
    common::container_gone(&b.container_name(0), WAIT).await;
    assert!(share.is_dir(), "host source directories survive");
    trap_task.abort();
}
