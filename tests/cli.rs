//! The berth command line against a real etcd: apply, get, describe, delete, cib import and
//! export, values written with etcdctl, and refusals that leave etcd untouched.

mod common;

use common::{PrivateEtcd, TestPrefix, berth, etcdctl_put, stderr, stdout};

const SEED_XML: &str = include_str!("../manifests/httpd-bundle.xml");
const SEED_YAML: &str = include_str!("../manifests/httpd-bundle.yaml");

#[tokio::test]
async fn seed_xml_imports_applies_and_shows_replicas_mappings_and_primitive() {
    let p = TestPrefix::new("seed");
    let _store = p.store().await;
    let imported = berth(&p, &["cib", "import", "manifests/httpd-bundle.xml"], None);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let manifest = stdout(&imported);
    assert!(manifest.contains("kind: Bundle"), "{manifest}");

    let applied = berth(&p, &["apply", "-f", "-"], Some(&manifest));
    assert!(applied.status.success(), "{}", stderr(&applied));
    assert_eq!(stdout(&applied), "bundle/httpd-bundle created\n");

    let got = berth(&p, &["get", "bundles", "-o", "wide"], None);
    assert!(got.status.success(), "{}", stderr(&got));
    let out = stdout(&got);
    let row = out.lines().nth(1).expect("a row under the header");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[0], "httpd-bundle");
    assert_eq!(cells[1], "0/3", "3 replicas desired: {out}");
    assert!(row.contains("httpd-apache (ocf:heartbeat:apache)"), "{out}");
    assert!(row.contains("192.168.24.112-192.168.24.114/24"), "{out}");
    assert!(row.contains(" 80 "), "port mapping: {out}");
    assert!(row.contains("/srv/www:/var/www/html:rw"), "{out}");
    assert!(
        row.contains("/var/log/pacemaker/bundles/<replica>:/etc/httpd/logs:rw"),
        "{out}"
    );

    // Applying the same manifest again changes nothing.
    let again = berth(&p, &["apply", "-f", "-"], Some(&manifest));
    assert_eq!(stdout(&again), "bundle/httpd-bundle unchanged\n");

    // And the stored bundle exports back to the seed's XML.
    let exported = berth(&p, &["cib", "export", "--fragment"], None);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let a = berth::model::cib::import(&stdout(&exported))
        .unwrap()
        .bundles;
    let b = berth::model::cib::import(SEED_XML).unwrap().bundles;
    assert_eq!(a, b);
}

#[tokio::test]
async fn yaml_json_and_xml_written_with_etcdctl_read_back_as_the_same_bundle() {
    let p = TestPrefix::new("etcdctl");
    let store = p.store().await;
    let seed = &berth::model::cib::import(SEED_XML).unwrap().bundles[0];
    let yaml = berth::model::manifest::to_yaml(std::slice::from_ref(seed));
    let json = berth::model::manifest::to_json(std::slice::from_ref(seed));
    let keys = store.keys().clone();
    etcdctl_put(
        &keys.bundle("from-yaml"),
        &yaml.replace("httpd-bundle", "from-yaml"),
    );
    etcdctl_put(
        &keys.bundle("from-json"),
        &json.replace("httpd-bundle", "from-json"),
    );
    etcdctl_put(
        &keys.bundle("from-xml"),
        &SEED_XML.replace("httpd-bundle", "from-xml"),
    );

    let list = store.list_bundles().await.unwrap();
    let bundles: Vec<_> = list.items.into_iter().map(|r| r.unwrap().value).collect();
    assert_eq!(bundles.len(), 3);
    for b in &bundles {
        let mut normalized = b.desired();
        normalized.metadata.name = "httpd-bundle".into();
        assert_eq!(&normalized, seed, "{} differs from the seed", b.name());
        assert_eq!(b.metadata.generation, Some(1));
    }

    // The CLI shows them the same way.
    let got = berth(&p, &["get", "bundles", "from-xml", "-o", "json"], None);
    assert!(got.status.success(), "{}", stderr(&got));
    let parsed = berth::model::manifest::parse(&stdout(&got))
        .unwrap()
        .bundles;
    assert_eq!(parsed[0].spec, seed.spec);
}

#[tokio::test]
async fn a_bad_etcdctl_value_is_reported_by_get_and_does_not_hide_the_others() {
    let p = TestPrefix::new("badvalue");
    let store = p.store().await;
    etcdctl_put(
        &store.keys().bundle("broken"),
        "<bundle id='broken'><docker/></bundle>",
    );
    let ok = berth(&p, &["apply", "-f", "manifests/httpd-bundle.yaml"], None);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let got = berth(&p, &["get", "bundles"], None);
    assert!(!got.status.success(), "an unreadable bundle is an error");
    assert!(stdout(&got).contains("httpd-bundle"), "{}", stdout(&got));
    assert!(
        stderr(&got).contains("bundle[broken]/docker: attribute image is required"),
        "{}",
        stderr(&got)
    );
}

#[tokio::test]
async fn dry_run_prints_the_change_and_writes_nothing() {
    let etcd = PrivateEtcd::start().await;
    let p = TestPrefix::on(&etcd.endpoint, "dryrun");
    let store = p.store().await;
    let ok = berth(&p, &["apply", "-f", "manifests/httpd-bundle.yaml"], None);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let before = store.revision().await.unwrap();
    let changed = SEED_YAML.replace("replicas: 3", "replicas: 5");
    let dry = berth(&p, &["apply", "--dry-run", "-f", "-"], Some(&changed));
    assert!(dry.status.success(), "{}", stderr(&dry));
    let out = stdout(&dry);
    assert!(
        out.starts_with("bundle/httpd-bundle configured (dry run)"),
        "{out}"
    );
    assert!(
        out.contains("-     replicas: 3") && out.contains("+     replicas: 5"),
        "{out}"
    );
    assert_eq!(
        store.revision().await.unwrap(),
        before,
        "dry run wrote to etcd"
    );
}

#[tokio::test]
async fn apply_update_raises_generation_and_delete_removes() {
    let p = TestPrefix::new("update");
    let store = p.store().await;
    let dir = berth(&p, &["apply", "-f", "manifests"], None);
    assert!(
        stderr(&dir).contains("given more than once: httpd-bundle"),
        "manifests/ holds the seed twice (YAML and XML): {}",
        stderr(&dir)
    );
    assert!(
        berth(&p, &["apply", "-f", "manifests/httpd-bundle.yaml"], None)
            .status
            .success()
    );
    let changed = SEED_YAML.replace("replicas: 3", "replicas: 2");
    let up = berth(&p, &["apply", "-f", "-"], Some(&changed));
    assert_eq!(
        stdout(&up),
        "bundle/httpd-bundle configured\n",
        "{}",
        stderr(&up)
    );
    let b = store
        .get_bundle("httpd-bundle")
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(b.spec.replicas(), 2);
    assert_eq!(b.metadata.generation, Some(2));

    let del = berth(&p, &["delete", "bundle", "httpd-bundle"], None);
    assert_eq!(
        stdout(&del),
        "bundle/httpd-bundle deleted\n",
        "{}",
        stderr(&del)
    );
    assert!(store.get_bundle("httpd-bundle").await.unwrap().is_none());
    let again = berth(&p, &["delete", "bundle", "httpd-bundle"], None);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not found"), "{}", stderr(&again));
    let ignored = berth(
        &p,
        &["delete", "bundle", "httpd-bundle", "--ignore-not-found"],
        None,
    );
    assert!(ignored.status.success());
}

/// Every validation rule of the foundation issue, each as an edit of the seed manifest: the
/// apply fails naming the field path and the reason, and etcd's revision does not move.
#[tokio::test]
async fn every_validation_rule_refuses_with_a_field_path_and_writes_nothing() {
    // The store revision is server-wide: other tests' writes would move it, so this test
    // runs on an etcd of its own.
    let etcd = PrivateEtcd::start().await;
    let p = TestPrefix::on(&etcd.endpoint, "validation");
    let store = p.store().await;
    // A valid bundle first, so that an update (not only a create) is refused too.
    assert!(
        berth(&p, &["apply", "-f", "manifests/httpd-bundle.yaml"], None)
            .status
            .success()
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "name: httpd-bundle",
            "name: Httpd_Bundle",
            "metadata.name: \"Httpd_Bundle\": 'H' is not allowed",
        ),
        (
            "name: httpd-bundle",
            "name: -web",
            "metadata.name: \"-web\": must start with a lower-case letter",
        ),
        (
            "    port: 80",
            "    range: 90-80",
            "spec.network.portMappings[0].range: 90-80: first port is above last",
        ),
        (
            "    port: 80",
            "    port: 80\n        range: 80-81",
            "spec.network.portMappings[0].range: port and range are both set",
        ),
        (
            "    port: 80",
            "    range: 1-70000",
            "spec.network.portMappings[0].range: 1-70000: port 70000 is outside 1-65535",
        ),
        (
            "    port: 80",
            "    port: 0",
            "spec.network.portMappings[0].port: 0: must be 1-65535",
        ),
        (
            "    port: 80",
            "    internalPort: 80",
            "spec.network.portMappings[0].port: one of port or range is required",
        ),
        (
            "sourceDir: /srv/www",
            "sourceDir: /srv/www\n      sourceDirRoot: /srv/roots",
            "spec.storageMappings[0].sourceDirRoot: sourceDir and sourceDirRoot are both set",
        ),
        (
            "      sourceDir: /srv/www\n",
            "",
            "spec.storageMappings[0].sourceDir: one of sourceDir or sourceDirRoot is required",
        ),
        (
            "sourceDir: /srv/www",
            "sourceDir: srv/www",
            "spec.storageMappings[0].sourceDir: \"srv/www\": must be an absolute path",
        ),
        (
            "sourceDir: /srv/www",
            "sourceDir: /srv/../etc",
            "spec.storageMappings[0].sourceDir: \"/srv/../etc\": must not contain '..'",
        ),
        (
            "targetDir: /var/www/html",
            "targetDir: var/www/html",
            "spec.storageMappings[0].targetDir: \"var/www/html\": must be an absolute path",
        ),
        (
            "ipRangeStart: 127.0.2.112",
            "ipRangeStart: 127.0.2.300",
            "spec.network.ipRangeStart: \"127.0.2.300\": not an IPv4 address",
        ),
        (
            "ipRangeStart: 127.0.2.112",
            "ipRangeStart: 127.0.2.254",
            "spec.network.ipRangeStart: 127.0.2.254: the last replica's address 127.0.3.0 is outside 127.0.2.0/24",
        ),
        (
            "ipRangeStart: 127.0.2.112",
            "ipRangeStart: 127.0.2.253",
            "spec.network.ipRangeStart: 127.0.2.253: the last replica's address 127.0.2.255 is the broadcast address of 127.0.2.0/24",
        ),
        (
            "    replicas: 3",
            "    replicas: 0",
            "spec.docker.replicas: 0: must be at least 1",
        ),
        (
            "replicasPerHost: 3",
            "replicasPerHost: 0",
            "spec.docker.replicasPerHost: 0: must be at least 1",
        ),
        (
            "replicasPerHost: 3",
            "replicasPerHost: 3\n    promotedMax: 4",
            "spec.docker.promotedMax: 4: above replicas (3)",
        ),
        (
            "id: httpd-logs",
            "id: httpd-root",
            "spec.storageMappings[1].id: \"httpd-root\": duplicate id, already used by spec.storageMappings[0].id",
        ),
        (
            "id: httpd-apache",
            "id: httpd-port",
            "spec.primitive.id: \"httpd-port\": duplicate id",
        ),
        (
            "    replicas: 3",
            "    replica: 3",
            "spec.docker.replica: unknown field `replica`",
        ),
        (
            "  network:",
            "  netwrok:",
            "spec.netwrok: unknown field `netwrok`",
        ),
        (
            "  docker:",
            "  podman:\n    image: x\n  docker:",
            "spec.podman: docker and podman are both set",
        ),
        (
            "    provider: heartbeat\n",
            "",
            "spec.primitive.provider: required for class ocf",
        ),
        (
            "    type: apache",
            "    type: apache\n    metaAttributes:\n      - name: migration-treshold\n        value: \"3\"",
            "spec.primitive.metaAttributes[0].name: \"migration-treshold\": not a Pacemaker resource meta attribute",
        ),
        (
            "    type: apache",
            "    type: apache\n    operations:\n      - name: monitor\n        interval: often",
            "spec.primitive.operations[0].interval: not a number with a unit",
        ),
        (
            "kind: Bundle",
            "kind: Bundel",
            "kind: \"Bundel\": must be \"Bundle\"",
        ),
    ];
    let mut failures = Vec::new();
    for (from, to, expect) in cases {
        assert!(
            SEED_YAML.contains(from),
            "case edit {from:?} does not apply"
        );
        let bad = SEED_YAML.replacen(from, to, 1);
        let before = store.revision().await.unwrap();
        let out = berth(&p, &["apply", "-f", "-"], Some(&bad));
        let after = store.revision().await.unwrap();
        let err = stderr(&out);
        if out.status.success() || !err.contains(expect) || before != after {
            failures.push(format!(
                "{expect}: exit {:?}, revision {before} -> {after}, stderr: {err}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stored = store
        .get_bundle("httpd-bundle")
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(
        stored.metadata.generation,
        Some(1),
        "the valid bundle was never rewritten"
    );
}

#[tokio::test]
async fn one_invalid_bundle_in_a_set_refuses_the_whole_set() {
    let etcd = PrivateEtcd::start().await;
    let p = TestPrefix::on(&etcd.endpoint, "set");
    let store = p.store().await;
    let good = SEED_YAML.replace("name: httpd-bundle", "name: good");
    let bad = SEED_YAML
        .replace("name: httpd-bundle", "name: bad")
        .replace("replicas: 3", "replicas: 0");
    let before = store.revision().await.unwrap();
    let out = berth(
        &p,
        &["apply", "-f", "-"],
        Some(&format!("{good}\n---\n{bad}")),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nothing applied"), "{}", stderr(&out));
    assert_eq!(store.revision().await.unwrap(), before);
}

/// A constraint naming a bundle that is neither stored nor in the same apply is refused
/// with its field; with the other bundle in the same apply, or stored, it applies.
#[tokio::test]
async fn constraints_naming_an_unknown_bundle_are_refused_and_known_ones_apply() {
    let etcd = PrivateEtcd::start().await;
    let p = TestPrefix::on(&etcd.endpoint, "refs");
    let store = p.store().await;
    let app = SEED_YAML.replace("name: httpd-bundle", "name: app").replace(
        "spec:\n",
        "spec:\n  orders:\n    - first: db\n  colocations:\n    - with: db\n      score: INFINITY\n",
    );
    let db = SEED_YAML
        .replace("name: httpd-bundle", "name: db")
        .replace("127.0.2.112", "127.0.3.112");
    let before = store.revision().await.unwrap();
    let out = berth(&p, &["apply", "-f", "-"], Some(&app));
    assert!(!out.status.success());
    for says in [
        "nothing applied",
        "spec.orders[0].first: \"db\": no such bundle",
        "spec.colocations[0].with: \"db\": no such bundle",
    ] {
        assert!(stderr(&out).contains(says), "{says}: {}", stderr(&out));
    }
    assert_eq!(store.revision().await.unwrap(), before);
    let out = berth(
        &p,
        &["apply", "-f", "-"],
        Some(&format!("{app}\n---\n{db}")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Stored now: the app alone applies again (unchanged).
    let out = berth(&p, &["apply", "-f", "-"], Some(&app));
    assert!(
        stdout(&out).contains("bundle/app unchanged"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn unreachable_etcd_fails_with_a_clear_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--etcd", "127.0.0.1:1", "get", "bundles"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: etcd"), "{err}");
}

/// A child's stdout, line by line, on a thread.
struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    fn of(child: &mut std::process::Child) -> Lines {
        use std::io::BufRead;
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    /// Reads until a line satisfies `want`, or fails after 20 s; returns the lines read.
    fn until(&self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) => {
                    let done = want(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("timed out; saw {seen:?}"),
            }
        }
    }
}

fn spawn_berth(p: &TestPrefix, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_ETCD", &p.endpoint)
        .env("BERTH_PREFIX", &p.prefix)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn watch_and_get_w_stream_changes() {
    let p = TestPrefix::new("clistream");
    let store = p.store().await;
    let marker = format!("{}marker", store.keys().root());
    store
        .put(&marker, b"x".to_vec(), berth::store::Expect::Any)
        .await
        .unwrap();
    let (mut watch, mut get) = (
        spawn_berth(&p, &["watch", "-o", "json"]),
        spawn_berth(&p, &["get", "bundles", "-w"]),
    );
    let (wl, gl) = (Lines::of(&mut watch), Lines::of(&mut get));
    // Both have listed: watch shows the marker as existing, get -w its (empty) table's header.
    wl.until(|l| l.contains("\"type\":\"EXISTS\"") && l.contains("marker"));
    gl.until(|l| l.starts_with("NAME"));
    let seed = berth::model::cib::import(SEED_XML)
        .unwrap()
        .bundles
        .remove(0);
    store
        .put_bundle(&seed, berth::store::Expect::Absent)
        .await
        .unwrap();
    let lines = wl.until(|l| l.contains("\"type\":\"PUT\""));
    let ev: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(
        (ev["kind"].as_str(), ev["name"].as_str()),
        (Some("bundle"), Some("httpd-bundle"))
    );
    let rows = gl.until(|l| l.starts_with("httpd-bundle"));
    assert!(rows.last().unwrap().contains("0/3"), "{rows:?}");
    for c in [&mut watch, &mut get] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn completions_and_man_pages_come_from_the_same_definitions_as_help() {
    let p = TestPrefix::new("complete");
    for shell in ["bash", "zsh", "fish"] {
        let o = berth(&p, &["completion", shell], None);
        assert!(o.status.success(), "{}", stderr(&o));
        let script = stdout(&o);
        assert!(
            script.contains("rollout") && script.contains("describe"),
            "{shell}: {script}"
        );
    }
    let o = berth(&p, &["completion", "tcsh"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid value 'tcsh'"),
        "{}",
        stderr(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let o = berth(&p, &["man", "--dir", dir.path().to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(dir.path().join("berth-rollout-undo.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("to\\-revision"), "{page}");
    assert!(dir.path().join("berth.1").exists());
    assert!(dir.path().join("berth-apply.1").exists());
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let p = TestPrefix::new("logjson");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    let o = cmd
        .env("BERTH_ETCD", &p.endpoint)
        .env("BERTH_PREFIX", &p.prefix)
        .env("BERTH_LOG", "debug")
        .args(["--log-format", "json", "get", "bundles"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Every line but the command's own message to the user is a log line.
    let lines: Vec<String> = stderr(&o)
        .lines()
        .filter(|l| !l.starts_with("No bundles found"))
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "no log lines at debug");
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{l}"
        );
    }
}

/// `berth plan` against a live cluster (real etcd, a controller placing onto registered
/// nodes): what losing a node or applying a change would do, and nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_what_a_lost_node_or_a_change_would_do_and_writes_nothing() {
    let p = TestPrefix::new("plan");
    let store = p.store().await;
    for n in ["n1", "n2", "n3"] {
        let info = berth::model::cluster::NodeInfo {
            name: n.into(),
            ..Default::default()
        };
        store
            .put(
                &store.keys().node(n),
                serde_json::to_vec(&info).unwrap(),
                berth::store::Expect::Any,
            )
            .await
            .unwrap();
    }
    let web = "apiVersion: berth.io/v1alpha1
kind: Bundle
metadata:
  name: web
spec:
  docker:
    image: img:1
    replicas: 2
";
    let o = berth(&p, &["apply", "-f", "-"], Some(web));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut ctl = common::TestController::start(&p, "ctl").await;
    let placed = common::eventually(
        std::time::Duration::from_secs(20),
        "two replicas placed",
        || async {
            let (_, a) = store
                .list(&format!("{}/assignments/", p.prefix))
                .await
                .unwrap();
            (a.len() == 2).then_some(a)
        },
    )
    .await;
    let node_of = |i: u32| {
        placed
            .iter()
            .find(|kv| {
                serde_json::from_slice::<berth::model::cluster::Assignment>(&kv.value)
                    .unwrap()
                    .replicas
                    .contains(&i)
            })
            .map(|kv| kv.key.split('/').rev().nth(1).unwrap().to_string())
            .unwrap()
    };
    let (n0, n1) = (node_of(0), node_of(1));
    let spare = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != n0 && *n != n1)
        .unwrap();
    // The controller's Scheduled events are written by a task of their own a moment after
    // its pass: wait for both, so that nothing else writes from here on and every revision
    // change would be the plan's.
    common::eventually(
        std::time::Duration::from_secs(20),
        "both Scheduled events written",
        || async {
            let (_, ev) = store
                .list(&format!("{}/events/replica/", p.prefix))
                .await
                .unwrap();
            (ev.len() >= 2).then_some(())
        },
    )
    .await;
    ctl.stop().await;
    // What this test's prefix holds, key by key (etcd's revision is shared with the tests
    // running beside this one).
    let held = || async {
        let (_, items) = store.list(&p.prefix).await.unwrap();
        items
            .into_iter()
            .map(|kv| (kv.key, kv.mod_revision))
            .collect::<Vec<_>>()
    };
    let before = held().await;

    let o = berth(&p, &["plan", "--node-down", &n0], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("* Move     web-0 ( {n0} -> {spare} )")),
        "{}",
        stdout(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("web.yaml");
    std::fs::write(
        &changed,
        web.replace("img:1", "img:2")
            .replace("replicas: 2", "replicas: 3"),
    )
    .unwrap();
    let o = berth(&p, &["plan", "-f", changed.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        format!("* Replace  web-0 ( {n0} )"),
        format!("* Replace  web-1 ( {n1} )"),
        format!("* Start    web-2 ( {spare} )"),
    ] {
        assert!(text.contains(&want), "{want} in:\n{text}");
    }
    // Bad input: an unknown node, an invalid manifest.
    let o = berth(&p, &["plan", "--node-down", "nope"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--node-down nope: no such node"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&changed, web.replace("replicas: 2", "replicas: -2")).unwrap();
    let o = berth(&p, &["plan", "-f", changed.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert_eq!(held().await, before, "plan wrote something");
}

/// `berth scale` sets `replicas`, `berth stop` sets target-role Stopped and `berth start`
/// unsets it: each a new generation of the stored spec, the rest of it unchanged; a bundle
/// that is not there is an error that writes nothing.
#[tokio::test]
async fn scale_stop_and_start_change_one_field_of_the_stored_spec() {
    let p = TestPrefix::new("scale");
    let store = p.store().await;
    let applied = berth(&p, &["apply", "-f", "-"], Some(SEED_YAML));
    assert!(applied.status.success(), "{}", stderr(&applied));
    let stored = || async {
        let b = store
            .get_bundle("httpd-bundle")
            .await
            .unwrap()
            .unwrap()
            .value;
        (
            b.spec.replicas(),
            b.spec.meta("target-role").map(str::to_string),
            b,
        )
    };
    let (_, _, before) = stored().await;

    let o = berth(
        &p,
        &["scale", "bundle", "httpd-bundle", "--replicas", "5"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "bundle/httpd-bundle scaled to 5 replica(s)\n");
    let (replicas, role, after) = stored().await;
    assert_eq!((replicas, role), (5, None));
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(
        after.spec.primitive, before.spec.primitive,
        "the rest is unchanged"
    );

    let o = berth(&p, &["stop", "httpd-bundle"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stored().await.1.as_deref(), Some("Stopped"));
    let o = berth(&p, &["start", "httpd-bundle"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let (replicas, role, after) = stored().await;
    assert_eq!((replicas, role), (5, None));
    assert_eq!(after.metadata.generation, Some(4));

    // The same again writes nothing.
    let o = berth(&p, &["start", "httpd-bundle"], None);
    assert_eq!(stdout(&o), "bundle/httpd-bundle unchanged\n");
    assert_eq!(stored().await.2.metadata.generation, Some(4));

    let o = berth(&p, &["scale", "bundle", "nope", "--replicas", "1"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("bundle nope not found"),
        "{}",
        stderr(&o)
    );
    assert!(store.get_bundle("nope").await.unwrap().is_none());
}
