//! Chart repositories over HTTP: packages made by `berth chart package`, an index by `berth
//! chart repo index`, served by a file server on 127.0.0.1, added with `repo add`, installed
//! and pulled by REPOSITORY/CHART with digests checked, against the real etcd; and an index
//! written the way `helm repo index` writes it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TestPrefix, stderr, stdout};

/// A static file server for `root` on 127.0.0.1 (GET only; 404 for anything missing), in a
/// thread for the rest of the test process.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = root.join(path.trim_start_matches('/'));
            let body = (!path.contains(".."))
                .then(|| std::fs::read(&file).ok())
                .flatten();
            let _ = match body {
                Some(b) => write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    b.len()
                )
                .and_then(|()| conn.write_all(&b)),
                None => write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
        }
    });
    format!("http://{addr}")
}

/// berth with the test's prefix and its own repository list and cache.
fn berth(p: &TestPrefix, home: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_ETCD", &p.endpoint)
        .env("BERTH_PREFIX", &p.prefix)
        .env("BERTH_REPOSITORY_CONFIG", home.join("repositories.yaml"))
        .env("BERTH_REPOSITORY_CACHE", home.join("cache"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "berth failed: {}", stderr(o));
    stdout(o)
}

fn fails(o: &Output, says: &str) {
    assert!(!o.status.success(), "berth succeeded: {}", stdout(o));
    assert!(
        stderr(o).contains(says),
        "expected {says:?} in: {}",
        stderr(o)
    );
}

/// The seed chart (`charts/httpd`) copied with `version`.
fn chart_at(dir: &Path, version: &str) -> PathBuf {
    let to = dir.join(format!("httpd-{version}"));
    std::fs::create_dir_all(to.join("templates")).unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/httpd");
    for rel in [
        "values.yaml",
        "values.schema.json",
        "templates/_helpers.tpl",
        "templates/bundle.yaml",
    ] {
        std::fs::copy(from.join(rel), to.join(rel)).unwrap();
    }
    let meta = std::fs::read_to_string(from.join("Chart.yaml")).unwrap();
    let meta = meta.replace("version: 0.1.0", &format!("version: {version}"));
    std::fs::write(to.join("Chart.yaml"), meta).unwrap();
    to
}

#[tokio::test]
async fn a_repository_built_by_package_and_index_installs_and_pulls_by_name() {
    let p = TestPrefix::new("chartrepo");
    let store = p.store().await;
    let tmp = tempfile::tempdir().unwrap();
    let (home, repo) = (tmp.path().join("home"), tmp.path().join("repo"));
    let url = serve(repo.clone());
    for v in ["0.1.0", "0.2.0", "0.3.0-rc.1"] {
        let dir = chart_at(tmp.path(), v);
        let out = ok(&berth(
            &p,
            &home,
            &[
                "chart",
                "package",
                dir.to_str().unwrap(),
                "-d",
                repo.to_str().unwrap(),
            ],
        ));
        assert!(out.contains(&format!("httpd-{v}.tgz")), "{out}");
    }
    // Helm's layout: the chart's files under `httpd/`.
    let listing = std::process::Command::new("tar")
        .args(["-tzf", repo.join("httpd-0.1.0.tgz").to_str().unwrap()])
        .output()
        .unwrap();
    let mut listed: Vec<String> = stdout(&listing).lines().map(String::from).collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "httpd/Chart.yaml",
            "httpd/templates/_helpers.tpl",
            "httpd/templates/bundle.yaml",
            "httpd/values.schema.json",
            "httpd/values.yaml"
        ]
    );
    ok(&berth(
        &p,
        &home,
        &["chart", "repo", "index", repo.to_str().unwrap()],
    ));
    let index = std::fs::read_to_string(repo.join("index.yaml")).unwrap();
    assert!(
        index.contains("apiVersion: v1") && index.contains("digest:"),
        "{index}"
    );

    // A repository that does not answer with an index is not added.
    fails(
        &berth(
            &p,
            &home,
            &["chart", "repo", "add", "bad", &format!("{url}/nothing")],
        ),
        "HTTP 404",
    );
    let out = ok(&berth(&p, &home, &["chart", "repo", "add", "local", &url]));
    assert!(out.contains("\"local\" has been added"), "{out}");
    let out = ok(&berth(&p, &home, &["chart", "repo", "list"]));
    assert!(
        out.contains("local") && out.contains(&url) && !out.contains("bad"),
        "{out}"
    );

    // The latest release (not the pre-release) installs; --version picks another.
    let out = ok(&berth(
        &p,
        &home,
        &["chart", "install", "web", "local/httpd"],
    ));
    assert!(out.contains("REVISION: 1"), "{out}");
    let out = ok(&berth(&p, &home, &["chart", "list"]));
    assert!(out.contains("httpd-0.2.0"), "{out}");
    assert!(store.get_bundle("web-httpd").await.unwrap().is_some());
    ok(&berth(
        &p,
        &home,
        &[
            "chart",
            "upgrade",
            "web",
            "local/httpd",
            "--version",
            "0.1.0",
        ],
    ));
    let out = ok(&berth(&p, &home, &["chart", "history", "web"]));
    assert!(
        out.contains("httpd-0.2.0") && out.contains("httpd-0.1.0"),
        "{out}"
    );
    let out = ok(&berth(
        &p,
        &home,
        &[
            "chart",
            "template",
            "t",
            "local/httpd",
            "--version",
            "0.3.0-rc.1",
        ],
    ));
    assert!(out.contains("name: t-httpd"), "{out}");
    let out = ok(&berth(
        &p,
        &home,
        &["chart", "template", "t", "local/httpd", "--version", "^0.1"],
    ));
    assert!(out.contains("name: t-httpd"), "{out}");
    fails(
        &berth(
            &p,
            &home,
            &["chart", "install", "x", "local/httpd", "--version", "9.9.9"],
        ),
        "no version matching \"9.9.9\"",
    );
    fails(
        &berth(&p, &home, &["chart", "install", "x", "other/httpd"]),
        "no repository named \"other\"",
    );

    // pull: the package as served, or unpacked.
    let out_dir = tmp.path().join("pulled");
    ok(&berth(
        &p,
        &home,
        &[
            "chart",
            "pull",
            "local/httpd",
            "--version",
            "0.1.0",
            "-d",
            out_dir.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read(out_dir.join("httpd-0.1.0.tgz")).unwrap(),
        std::fs::read(repo.join("httpd-0.1.0.tgz")).unwrap()
    );
    let untar = [
        "chart",
        "pull",
        "local/httpd",
        "--untar",
        "-d",
        out_dir.to_str().unwrap(),
    ];
    ok(&berth(&p, &home, &untar));
    let meta = std::fs::read_to_string(out_dir.join("httpd/Chart.yaml")).unwrap();
    assert!(meta.contains("version: 0.2.0"), "{meta}");
    fails(&berth(&p, &home, &untar), "already exists");

    // A package that does not match its digest is refused, and nothing is installed.
    std::fs::copy(repo.join("httpd-0.2.0.tgz"), repo.join("httpd-0.1.0.tgz")).unwrap();
    fails(
        &berth(
            &p,
            &home,
            &[
                "chart",
                "install",
                "other",
                "local/httpd",
                "--version",
                "0.1.0",
            ],
        ),
        "does not match the index's digest",
    );
    assert!(store.get_bundle("other-httpd").await.unwrap().is_none());
    let out = ok(&berth(&p, &home, &["chart", "list"]));
    assert!(!out.contains("other"), "{out}");

    ok(&berth(&p, &home, &["chart", "uninstall", "web"]));
    ok(&berth(&p, &home, &["chart", "repo", "remove", "local"]));
    fails(
        &berth(&p, &home, &["chart", "repo", "list"]),
        "no repositories",
    );
}

/// An index as `helm repo index` writes it: absolute URLs, Chart.yaml fields berth does not
/// use (type, keywords, maintainers, annotations), entries newest first.
#[tokio::test]
async fn an_index_written_as_helm_writes_it_is_read() {
    let p = TestPrefix::new("chartrepohelm");
    let tmp = tempfile::tempdir().unwrap();
    let (home, repo) = (tmp.path().join("home"), tmp.path().join("repo"));
    let url = serve(repo.clone());
    let dir = chart_at(tmp.path(), "1.2.3");
    ok(&berth(
        &p,
        &home,
        &[
            "chart",
            "package",
            dir.to_str().unwrap(),
            "-d",
            repo.to_str().unwrap(),
        ],
    ));
    let bytes = std::fs::read(repo.join("httpd-1.2.3.tgz")).unwrap();
    let sum = std::process::Command::new("sha256sum")
        .arg(repo.join("httpd-1.2.3.tgz"))
        .output()
        .unwrap();
    let sum = stdout(&sum).split_whitespace().next().unwrap().to_string();
    assert_eq!(sum.len(), 64, "{} bytes", bytes.len());
    let index = format!(
        r#"apiVersion: v1
entries:
  httpd:
  - annotations:
      category: WebServer
    apiVersion: v2
    appVersion: "2.4"
    created: "2026-11-30T06:00:00.000000000Z"
    description: The seed example as a chart
    digest: {sum}
    keywords:
    - httpd
    maintainers:
    - name: someone
    name: httpd
    type: application
    urls:
    - {url}/httpd-1.2.3.tgz
    version: 1.2.3
generated: "2026-11-30T06:00:00.000000000Z"
"#
    );
    std::fs::write(repo.join("index.yaml"), index).unwrap();
    ok(&berth(
        &p,
        &home,
        &["chart", "repo", "add", "helmrepo", &url],
    ));
    let out = ok(&berth(
        &p,
        &home,
        &["chart", "template", "r", "helmrepo/httpd"],
    ));
    assert!(out.contains("name: r-httpd"), "{out}");
    // Re-indexed by berth, the same package keeps its digest.
    ok(&berth(
        &p,
        &home,
        &[
            "chart",
            "repo",
            "index",
            repo.to_str().unwrap(),
            "--url",
            &url,
        ],
    ));
    let ours = std::fs::read_to_string(repo.join("index.yaml")).unwrap();
    assert!(
        ours.contains(&sum) && ours.contains(&format!("{url}/httpd-1.2.3.tgz")),
        "{ours}"
    );
}
