//! berth in containers (README "berth in containers"): the controller and the node agent run
//! from berth's own image (`scripts/build-image.sh`: FROM scratch, the static berth) with the
//! seed bundle, against the real dockerd and etcd.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Proxy, TestPrefix, docker, docker_try, eventually};

/// Removes what the test made on the host, in reverse: containers, image, directories.
struct Made {
    /// The node whose replicas to remove.
    node: String,
    containers: Vec<String>,
    image: String,
    dirs: Vec<PathBuf>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker_try(&["rm", "-f", c]);
        }
        let label = format!("label=berth.io/node={}", self.node);
        for id in docker_try(&["ps", "-aq", "--filter", &label])
            .unwrap_or_default()
            .lines()
        {
            let _ = docker_try(&["rm", "-f", id]);
        }
        let _ = docker_try(&["rmi", "-f", &self.image]);
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The static berth (`scripts/test.sh` builds it and names it in `BERTH_STATIC_BIN`), as a
/// path relative to the repository (the image's build context).
fn static_bin() -> (PathBuf, String) {
    let bin = std::env::var("BERTH_STATIC_BIN").unwrap_or_else(|_| {
        panic!(
            "BERTH_STATIC_BIN is not set: run scripts/test.sh, which builds the static berth \
             and sets it"
        )
    });
    let bin = PathBuf::from(bin);
    let rel = bin
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or_else(|_| panic!("{} is not in the repository", bin.display()))
        .to_string_lossy()
        .into_owned();
    (bin, rel)
}

/// A container's output (stdout and stderr), for failure messages.
fn logs(name: &str) -> String {
    Command::new("docker")
        .args(["logs", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default()
}

fn get(ip: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = format!("{ip}:80").parse().unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.").then_some(out)
}

/// The README's commands, with the test's names: every replica serves the page; the remote
/// agent mounted into them is the node agent's own binary copied into its state directory
/// (a host path), and every bind source is a host path the test made or the agent owns
/// (nothing created on the host by accident); the agent fences through the host's cgroups
/// when cut off from etcd and thaws when it is back; `docker stop` of the agent drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_and_node_agent_from_berths_image_run_the_seed_bundle() {
    let (bin, rel) = static_bin();
    common::ocf_test_image();
    let p = TestPrefix::new("incontainer");
    let tag = format!("ic{}", std::process::id() % 100_000);
    let image = format!("berth-test/berth:{tag}");
    let state = tempfile::tempdir().unwrap();
    let srv = PathBuf::from(format!("/srv/berth-test-{tag}"));
    let node = format!("{tag}-n");
    let mut made = Made {
        node: node.clone(),
        containers: vec![],
        image: image.clone(),
        dirs: vec![srv.clone()],
    };
    let o = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/build-image.sh"
        ))
        .arg(&image)
        .env("BERTH_BIN", &rel)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "scripts/build-image.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::create_dir_all(srv.join("www")).unwrap();
    std::fs::write(srv.join("www/index.html"), format!("<h1>{tag}</h1>\n")).unwrap();

    // The node agent reaches etcd through a proxy the test can cut.
    let proxy = Proxy::start(p.endpoint.clone()).await;
    let ctl = format!("{tag}-controller");
    let agent = format!("{tag}-node");
    made.containers.push(ctl.clone());
    made.containers.push(agent.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &ctl,
        "--network",
        "host",
        &image,
        "--etcd",
        &p.endpoint,
        "--prefix",
        &p.prefix,
        "controller",
        "--name",
        &ctl,
        "--no-metrics",
    ]);
    let state_dir = state.path().to_str().unwrap();
    let state_bind = format!("{state_dir}:{state_dir}");
    let proxy_addr = proxy.addr.to_string();
    let mut args = vec!["run", "-d", "--name", &agent];
    args.extend(common::NODE_AGENT_CONTAINER);
    args.extend([
        "-v",
        &state_bind,
        "-v",
        "/srv:/srv",
        "-v",
        "/var/log/pacemaker:/var/log/pacemaker",
        &image,
        "--etcd",
        &proxy_addr,
        "--prefix",
        &p.prefix,
        "node",
        "--name",
        &node,
        "--state-dir",
        state_dir,
        "--no-metrics",
    ]);
    docker(&args);

    // The seed manifest, with the test's names, addresses, page and image.
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/httpd-bundle.yaml"
    ))
    .unwrap();
    let bundle = format!("{tag}-httpd");
    let manifest = seed
        .replace("name: httpd-bundle", &format!("name: {bundle}"))
        .replace("image: pcmk:httpd", "image: berth-test/httpd-ocf:1")
        .replace("127.0.2.112", "127.0.150.10")
        .replace(
            "sourceDir: /srv/www",
            &format!("sourceDir: {}/www", srv.display()),
        );
    assert_ne!(manifest, seed);
    let o = common::berth(
        &p,
        &["apply", "-f", "-", "--wait", "--timeout", "90s"],
        Some(&manifest),
    );
    assert!(
        o.status.success(),
        "apply --wait: {}{}\nnode agent: {}\ncontroller: {}",
        common::stdout(&o),
        common::stderr(&o),
        logs(&agent),
        logs(&ctl),
    );
    let ips = ["127.0.150.10", "127.0.150.11", "127.0.150.12"];
    for ip in ips {
        eventually(
            Duration::from_secs(30),
            &format!("{ip} to serve"),
            || async { get(ip).filter(|page| page.contains(&tag)) },
        )
        .await;
    }

    // The remote agent is the agent's own binary, copied to the host's state directory.
    let copy = state.path().join(".bin/berth");
    let meta = std::fs::symlink_metadata(&copy).unwrap();
    assert!(meta.is_file(), "{} is not a regular file", copy.display());
    assert_eq!(meta.len(), std::fs::metadata(&bin).unwrap().len());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    let ids = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=berth.io/node={node}"),
    ]);
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 3, "replica containers: {ids:?}");
    let owned = [
        state.path().to_path_buf(),
        srv.join("www"),
        PathBuf::from("/var/log/pacemaker/bundles"),
    ];
    for id in &ids {
        let binds = docker(&["inspect", id, "--format", "{{json .HostConfig.Binds}}"]);
        let binds: Vec<String> = serde_json::from_str(&binds).unwrap();
        assert!(
            binds.contains(&format!("{}:/run/berth-bin/berth:ro", copy.display())),
            "{id}: {binds:?}"
        );
        for b in &binds {
            let source = Path::new(b.split(':').next().unwrap());
            assert!(
                owned.iter().any(|o| source.starts_with(o)),
                "{id}: bind source {} is neither the test's nor the agent's state",
                source.display()
            );
            assert!(
                source.exists(),
                "{id}: bind source {} is missing",
                source.display()
            );
        }
    }

    // Cut off from etcd, the agent in its container fences: the node's scope (the host's
    // cgroup, reached through the mounted cgroup filesystem) freezes and the addresses go.
    let parent = docker(&[
        "inspect",
        ids[0],
        "--format",
        "{{.HostConfig.CgroupParent}}",
    ]);
    let scope = berth::node::fence::Scope::for_parent(&parent).expect("the host has cgroups");
    assert!(!scope.frozen());
    proxy.sever();
    eventually(
        Duration::from_secs(15),
        "the node's scope to freeze",
        || async { scope.frozen().then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "the replicas to stop serving",
        || async { ips.iter().all(|ip| get(ip).is_none()).then_some(()) },
    )
    .await;
    proxy.restore();
    eventually(Duration::from_secs(30), "the scope to thaw", || async {
        (!scope.frozen()).then_some(())
    })
    .await;
    for ip in ips {
        eventually(
            Duration::from_secs(30),
            &format!("{ip} to serve again"),
            || async { get(ip).filter(|page| page.contains(&tag)) },
        )
        .await;
    }

    // `docker stop` is SIGTERM: the agent drains its node.
    docker(&["stop", "-t", "60", &agent]);
    eventually(
        Duration::from_secs(30),
        "the replicas to be removed",
        || async {
            docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=berth.io/node={node}"),
            ])
            .is_empty()
            .then_some(())
        },
    )
    .await;
    drop(made);
}
