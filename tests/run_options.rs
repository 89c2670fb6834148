//! `docker run` options of a bundle (`options=` in Pacemaker's `<docker>`), as deployments
//! such as OpenStack's write them, honoured on the created container: each is checked through
//! the engine's inspect (real etcd and dockerd); and one that cannot be honoured is refused
//! naming the option, with nothing written.

mod common;

use std::time::Duration;

use berth::model::policy::Permits;
use berth::store::Expect;
use common::{
    TestController, TestNode, TestPrefix, berth, docker, eventually, httpd_bundle, stderr,
    test_image,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapped_docker_run_option_reaches_the_container() {
    test_image();
    let p = TestPrefix::new("runopts");
    let store = p.store().await;
    let tag = format!("runopts{}", std::process::id() % 100_000);
    let permits = Permits {
        privileged: true,
        host_namespaces: true,
        capabilities: true,
        ..Permits::default()
    };
    let node = TestNode::start_permitting(&p, &format!("{tag}-n"), permits).await;
    let _ctl = TestController::start(&p, "ctl").await;
    let mut b = httpd_bundle(&format!("{tag}-web"), 1, 1, 153);
    let opts = "--ipc=host --pid host --user=0:0 --log-driver=json-file \
        --log-opt max-size=1m -e KOLLA_CONFIG_STRATEGY=COPY_ALWAYS --env B=2 \
        --cap-add NET_ADMIN --cap-drop MKNOD --security-opt no-new-privileges \
        --ulimit nofile=1024:2048 --shm-size 32m --tmpfs /scratch:size=1m --read-only \
        --dns 127.0.0.53 --add-host db:127.0.0.9 --hostname web-x --workdir /tmp \
        --entrypoint /bin/httpd --memory 64m --cpus 0.5 --stop-timeout 3 \
        --health-cmd 'true' --health-interval 5s --health-retries 2 --health-timeout 2s \
        --health-start-period 1s --oom-score-adj 100";
    b.spec.docker.as_mut().unwrap().options = Some(opts.into());
    b.spec.docker.as_mut().unwrap().run_command = Some("-f -p 80 -h /var/www/html".into());
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    let name = format!("{}-docker-0", b.name());
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let inspect = loop {
        let running = common::docker_try(&["inspect", &name])
            .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
            .and_then(|v| v.get(0).cloned())
            .filter(|c| c["State"]["Running"] == true);
        if let Some(c) = running {
            break c;
        }
        if std::time::Instant::now() > until {
            let st = common::bundle_status(&store, b.name()).await;
            let r = common::replica_status(&store, b.name(), 0).await;
            panic!("{name} is not running: bundle {st:?}, replica {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (h, c) = (&inspect["HostConfig"], &inspect["Config"]);
    assert_eq!(h["IpcMode"], "host");
    assert_eq!(h["PidMode"], "host");
    assert_eq!(h["Privileged"], false);
    assert_eq!(c["User"], "0:0");
    assert_eq!(h["LogConfig"]["Type"], "json-file");
    assert_eq!(h["LogConfig"]["Config"]["max-size"], "1m");
    let env: Vec<String> = serde_json::from_value(c["Env"].clone()).unwrap();
    assert!(
        env.contains(&"KOLLA_CONFIG_STRATEGY=COPY_ALWAYS".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"B=2".to_string()), "{env:?}");
    assert_eq!(h["CapAdd"], serde_json::json!(["NET_ADMIN"]));
    assert_eq!(h["CapDrop"], serde_json::json!(["MKNOD"]));
    // (Docker adds label=disable itself for the host's PID and IPC namespaces.)
    let secopt: Vec<String> = serde_json::from_value(h["SecurityOpt"].clone()).unwrap();
    assert!(
        secopt.contains(&"no-new-privileges".to_string()),
        "{secopt:?}"
    );
    assert_eq!(
        h["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
    );
    assert_eq!(h["ShmSize"], 32 << 20);
    assert_eq!(h["Tmpfs"]["/scratch"], "size=1m");
    assert_eq!(h["ReadonlyRootfs"], true);
    assert_eq!(h["Dns"], serde_json::json!(["127.0.0.53"]));
    assert_eq!(h["ExtraHosts"], serde_json::json!(["db:127.0.0.9"]));
    assert_eq!(c["Hostname"], "web-x");
    assert_eq!(c["WorkingDir"], "/tmp");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/httpd"]));
    assert_eq!(h["Memory"], 64 << 20);
    assert_eq!(h["NanoCpus"], 500_000_000);
    assert_eq!(c["StopTimeout"], 3);
    assert_eq!(
        c["Healthcheck"],
        serde_json::json!({
            "Test": ["CMD-SHELL", "true"],
            "Interval": 5_000_000_000u64,
            "Timeout": 2_000_000_000u64,
            "StartPeriod": 1_000_000_000u64,
            "Retries": 2
        })
    );
    assert_eq!(h["OomScoreAdj"], 100);
    // The health check runs: the engine reports it healthy.
    eventually(
        Duration::from_secs(30),
        "the health check to pass",
        || async {
            (docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]) == "healthy")
                .then_some(())
        },
    )
    .await;

    // --privileged: this machine (itself a container without every capability) cannot
    // start a privileged container, so only the created container is checked.
    let mut privileged = httpd_bundle(&format!("{tag}-priv"), 1, 1, 155);
    privileged.spec.docker.as_mut().unwrap().options = Some("--privileged=true".into());
    store.put_bundle(&privileged, Expect::Absent).await.unwrap();
    let pname = format!("{}-docker-0", privileged.name());
    eventually(
        Duration::from_secs(60),
        "the privileged container to be created",
        || async {
            (common::docker_try(&["inspect", "-f", "{{.HostConfig.Privileged}}", &pname])?
                == "true")
                .then_some(())
        },
    )
    .await;
    store
        .delete_bundle(privileged.name(), Expect::Any)
        .await
        .unwrap();
    common::container_gone(&pname, Duration::from_secs(30)).await;

    // --env-file names a file on whatever host runs the command: refused, naming it.
    let mut bad = httpd_bundle(&format!("{tag}-bad"), 1, 1, 154);
    bad.spec.docker.as_mut().unwrap().options = Some("--env-file /etc/app.env".into());
    let yaml = String::from_utf8(berth::store::encode_bundle(&bad)).unwrap();
    let o = tokio::task::block_in_place(|| berth(&p, &["apply", "-f", "-"], Some(&yaml)));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("spec.docker.options")
            && err.contains("--env-file")
            && err.contains("-e/--env"),
        "{err}"
    );
    assert!(store.get_bundle(bad.name()).await.unwrap().is_none());

    store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    common::container_gone(&name, Duration::from_secs(30)).await;
    drop(node);
}
