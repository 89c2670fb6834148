//! The web console (`berth console`) in a real browser: Debian's headless chromium driven
//! through chromedriver, against a real controller, two node agents, etcd and dockerd.
//! Screenshots of the main pages are saved to `target/console-screenshots/` (not committed)
//! for a reviewer to look at.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::browser::{Browser, free_port};
use common::{TestController, TestNode, TestPrefix, eventually};
use serde_json::json;

/// `berth console` on the test's prefix, as a user starts it; killed when dropped.
struct Console {
    child: Child,
    base: String,
    port: u16,
}

impl Console {
    fn start(p: &TestPrefix, token_file: &std::path::Path) -> Console {
        Console::start_on(p, token_file, free_port())
    }

    fn start_on(p: &TestPrefix, token_file: &std::path::Path, port: u16) -> Console {
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .env("BERTH_ETCD", &p.endpoint)
            .env("BERTH_PREFIX", &p.prefix)
            .args(["console", "--address", &format!("127.0.0.1:{port}")])
            .arg("--console-token-file")
            .arg(token_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start berth console");
        Console {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log directories the seed's replicas make on the host, removed at the end.
struct Logs(String);

impl Drop for Logs {
    fn drop(&mut self) {
        for i in 0..3 {
            let _ = std::fs::remove_dir_all(format!("/var/log/pacemaker/bundles/{}-{i}", self.0));
        }
    }
}

/// The replicas the cluster page's matrix shows: (replica, node, text).
async fn replicas(b: &Browser) -> Vec<(String, String, String)> {
    let v = b
        .run(
            "return Array.from(document.querySelectorAll('[data-replica]'))\
               .map(e => [e.dataset.replica, e.dataset.node, e.innerText]);",
            json!([]),
        )
        .await;
    serde_json::from_value(v).unwrap_or_default()
}

/// Waits until the matrix satisfies `ok` (polling the page, never reloading it).
async fn wait_replicas(
    b: &Browser,
    what: &str,
    ok: impl Fn(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    let until = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let r = replicas(b).await;
        if ok(&r) {
            return r;
        }
        assert!(
            std::time::Instant::now() < until,
            "{what}: not within 120s; the matrix shows {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_started_on(r: &[(String, String, String)], node: Option<&str>) -> bool {
    r.len() == 3
        && r.iter()
            .all(|(_, n, t)| t.contains("Started") && node.is_none_or(|want| n == want))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_follows_the_cluster_live_and_acts_only_with_a_token() {
    common::ocf_test_image();
    let p = TestPrefix::new("console");
    let store = p.store().await;
    let tag = format!("con{}", std::process::id() % 100_000);
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let _na = TestNode::start(&p, &a).await;
    let _nb = TestNode::start(&p, &b).await;
    for n in [&a, &b] {
        eventually(Duration::from_secs(40), "the nodes to register", || async {
            store.get(&store.keys().node(n)).await.unwrap()
        })
        .await;
    }
    let _ctl = TestController::start(&p, "ctl").await;
    let dir = tempfile::tempdir().unwrap();
    let token = "k7Qw2ZpX9mVt4Rb8sLn3";
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("tester {token}\n")).unwrap();
    let console = Console::start(&p, &tokens);
    let addr = console.base.trim_start_matches("http://").parse().unwrap();
    eventually(Duration::from_secs(20), "the console to serve", || async {
        common::http_ok(addr, Duration::from_millis(300)).then_some(())
    })
    .await;
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // The seed, under the test's own name, addresses and document root.
    let bundle = format!("{tag}-httpd");
    let _logs = Logs(bundle.clone());
    let manifest = common::seed_manifest(&[
        (&["metadata", "name"], bundle.clone()),
        (
            &["spec", "docker", "image"],
            "berth-test/httpd-ocf:1".into(),
        ),
        (&["spec", "network", "ipRangeStart"], "127.0.151.10".into()),
        (
            &["spec", "storageMappings", "0", "sourceDir"],
            format!("{}/www", dir.path().display()),
        ),
    ]);

    // The page is open before the bundle exists: what follows arrives live.
    let browser = Browser::start().await;
    browser.goto(&format!("{}/", console.base)).await;
    browser
        .run("window.berthMarker = 'loaded once'; return 1;", json!([]))
        .await;
    let o = common::berth(&p, &["apply", "-f", "-"], Some(&manifest));
    assert!(o.status.success(), "apply: {}", common::stderr(&o));
    let shown = wait_replicas(&browser, "the seed's three replicas started", |r| {
        all_started_on(r, None)
    })
    .await;
    let mut names: Vec<&str> = shown.iter().map(|(r, _, _)| r.as_str()).collect();
    names.sort();
    let want: Vec<String> = (0..3).map(|i| format!("{bundle}-{i}")).collect();
    assert_eq!(names, want, "the matrix names the seed's replicas");
    assert!(
        browser.text("#live").await.starts_with("Live"),
        "the page says it is live"
    );
    browser.screenshot(&shots.join("cluster.png")).await;

    // docker kill of one replica: the page shows it down, then started again, with no
    // reload (the marker set in the page survives).
    let victim = format!("{bundle}-0");
    browser
        .run(
            "window.berthSeen = [];\
             const name = arguments[0];\
             const note = () => {\
               const e = document.querySelector(`[data-replica=\"${name}\"]`);\
               const t = e ? e.innerText : '';\
               if (window.berthSeen[window.berthSeen.length - 1] !== t) window.berthSeen.push(t);\
             };\
             new MutationObserver(note).observe(document.getElementById('main'),\
               {subtree: true, childList: true, characterData: true});\
             note(); return 1;",
            json!([victim]),
        )
        .await;
    let st = common::replica_status(&store, &bundle, 0)
        .await
        .expect("its status");
    common::docker(&["kill", &st.container_name]);
    let until = std::time::Instant::now() + Duration::from_secs(90);
    let seen = loop {
        let v = browser.run("return window.berthSeen;", json!([])).await;
        let seen: Vec<String> = serde_json::from_value(v).unwrap_or_default();
        // Down (FAILED, Starting, Stopped), or already started again and marked with the
        // failure (a restart quicker than the page's refresh); then Started.
        let down = seen
            .iter()
            .position(|t| !t.contains("Started") || t.contains(", failed "));
        if down.is_some_and(|d| seen[d..].iter().any(|t| t.contains("Started"))) {
            break seen;
        }
        assert!(
            std::time::Instant::now() < until,
            "the killed replica was not shown down and started again: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("{victim} as the page showed it: {seen:?}");
    let marker = browser
        .run("return window.berthMarker || null;", json!([]))
        .await;
    assert_eq!(marker, json!("loaded once"), "the page was reloaded");

    // An action without the token is refused, and nothing is written.
    let busy = shown[0].1.clone();
    let other = if busy == a { b.clone() } else { a.clone() };
    let standby = format!("tr[data-node=\"{busy}\"] form[action=\"/actions/standby\"] button");
    browser.click(&standby).await;
    // (The click returns before the answer has loaded: waited for.)
    browser
        .wait_text("main", Duration::from_secs(10), "the refusal", |t| {
            t.contains("Refused") && t.contains("needs a token")
        })
        .await;
    let key = store.keys().standby(&busy);
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "standby written without a token"
    );

    // With the token: standby from the page moves every replica to the other node.
    browser.goto(&format!("{}/login", console.base)).await;
    browser.type_into("input[name=token]", token).await;
    browser.click("form[action=\"/login\"] button").await;
    browser
        .wait_text("main", Duration::from_secs(10), "login", |t| {
            t.contains("Token accepted")
        })
        .await;
    browser.click(&standby).await;
    browser
        .wait_text(
            "main",
            Duration::from_secs(10),
            "the standby's answer",
            |t| t.contains(&format!("node/{busy} in standby")),
        )
        .await;
    assert!(
        store.get(&key).await.unwrap().is_some(),
        "standby not written"
    );
    wait_replicas(
        &browser,
        "the replicas moved off the node in standby",
        |r| all_started_on(r, Some(&other)),
    )
    .await;
    let state = browser.text(&format!("tr[data-node=\"{busy}\"]")).await;
    assert!(state.contains("standby"), "the node's row: {state}");
    browser.screenshot(&shots.join("cluster-standby.png")).await;

    // The action is an event naming who did it.
    browser
        .goto(&format!("{}/events?object=node/{busy}", console.base))
        .await;
    browser
        .wait_text("main", Duration::from_secs(20), "the standby event", |t| {
            t.contains("Standby") && t.contains("by tester from the console")
        })
        .await;
    browser.screenshot(&shots.join("events.png")).await;

    // The other pages render (looked at in the screenshots).
    browser
        .goto(&format!("{}/bundles/{bundle}", console.base))
        .await;
    let page = browser.text("main").await;
    for want in [
        "Replicas",
        "127.0.151.10",
        "Primitive operations",
        "Rollout",
        "YAML",
    ] {
        assert!(
            page.contains(want),
            "the bundle page lacks {want:?}:\n{page}"
        );
    }
    browser.screenshot(&shots.join("bundle.png")).await;
    browser.goto(&format!("{}/charts", console.base)).await;
    assert!(browser.text("main").await.contains("Replicas running"));
    browser.screenshot(&shots.join("charts.png")).await;
    browser
        .goto(&format!("{}/plan?node-down={other}", console.base))
        .await;
    let plan = browser.text("main").await;
    assert!(plan.contains("Transition Summary"), "plan: {plan}");
    browser.screenshot(&shots.join("plan.png")).await;

    // The console goes away: the open page says so, and is live again once it is back.
    browser.goto(&format!("{}/", console.base)).await;
    let live = |t: &str| t.starts_with("Live");
    browser
        .wait_text("#live", Duration::from_secs(10), "the page live", live)
        .await;
    let port = console.port;
    drop(console);
    browser
        .wait_text("#live", Duration::from_secs(20), "the loss said", |t| {
            t.contains("Connection lost; reconnecting")
        })
        .await;
    let _console = Console::start_on(&p, &tokens, port);
    browser
        .wait_text("#live", Duration::from_secs(30), "live again", live)
        .await;
}

/// A console others could reach needs TLS and a token, or it refuses to start (`berth
/// console`, and `berth controller --console`), saying why; with both it serves HTTPS, and
/// its token cookie is Secure.
#[tokio::test]
async fn an_exposed_console_needs_tls_and_a_token_and_serves_https_with_them() {
    let p = TestPrefix::new("console-tls");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let token = "Zt5mQ8vR2nK7wP4xLb6c";
    std::fs::write(&tokens, format!("ops {token}\n")).unwrap();
    let tokens_arg = tokens.to_str().unwrap();
    let open = format!("0.0.0.0:{}", free_port());
    for args in [
        vec!["console", "--address", &open],
        vec![
            "console",
            "--address",
            &open,
            "--console-token-file",
            tokens_arg,
        ],
        vec!["controller", "--no-metrics", "--console", &open],
    ] {
        let o = common::berth(&p, &args, None);
        let err = common::stderr(&o);
        assert!(!o.status.success(), "{args:?} started");
        assert!(
            err.contains("other hosts could reach it") && err.contains("TLS"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("SSH tunnel"),
            "{args:?} names the way round: {err}"
        );
    }

    // A certificate for 127.0.0.1, and the console serving HTTPS with it.
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=berth-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // (An end-entity certificate: rustls refuses a CA certificate as a server's.)
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/setup.sh installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_ETCD", &p.endpoint)
        .env("BERTH_PREFIX", &p.prefix)
        .args(["console", "--address", &format!("127.0.0.1:{port}")])
        .args(["--console-token-file", tokens_arg])
        .arg("--console-tls-cert")
        .arg(&cert)
        .arg("--console-tls-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let page = eventually(
        Duration::from_secs(20),
        "the console over HTTPS",
        || async {
            let r = https.get(format!("{base}/")).send().await.ok()?;
            r.status().is_success().then_some(r.text().await.ok()?)
        },
    )
    .await;
    assert!(page.contains("<h1>Cluster</h1>"), "{page}");
    // Plain HTTP to it is no page.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A wrong token is refused; the right one gives a Secure, HttpOnly, SameSite cookie.
    let r = https
        .post(format!("{base}/actions/standby"))
        .bearer_auth("not-the-token-at-all")
        .form(&[("node", "n1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = https
        .post(format!("{base}/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
