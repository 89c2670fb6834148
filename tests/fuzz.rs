//! Bounded fuzzing of every reader of untrusted input: stored bundle values (YAML, JSON,
//! Pacemaker XML), CIB imports, docker run options, Pacemaker durations, chart templates and
//! values, the JSON the parts exchange through etcd (assignments, replica and bundle status,
//! node registrations, releases) and what the controller makes of a prefix full of garbage.
//!
//! Each target starts from a corpus (the repository's own manifests and chart, the files in
//! `tests/fuzz/`, and hostile values built here: deep nesting, a 1.4 MiB value, non-UTF-8,
//! huge numbers, recursive `include`, giant `indent`) and then mutates it with a seeded
//! generator (byte flips, inserted tokens, cuts in the middle of a character, splices) for
//! `BERTH_FUZZ_SECS` seconds per target (default 6) or `BERTH_FUZZ_CASES` cases. A panic
//! fails the test with the input that caused it, written to `target/fuzz-failures/`; a
//! stack overflow aborts the test process, which fails it too. `BERTH_FUZZ_SEED` replays a
//! run. The case counts of a run are printed (`--nocapture`) and kept in BENCHMARKS.md.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use berth::chart::render::Renderer;
use berth::model::{cib, duration, manifest, options};
use berth::store::Keys;
use berth::store::watch::Cache;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens that tend to reach corners of the parsers.
const TOKENS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "<bundle id=\"b\">",
    "<docker image=\"x\"/>",
    "<primitive ",
    "<![CDATA[",
    "&amp;",
    "&#x10FFFF;",
    "&#0;",
    "<!DOCTYPE x [<!ENTITY a \"aaaa\">]>",
    "{{",
    "}}",
    "{{-",
    "-}}",
    "{{ include \"t\" . }}",
    "{{ indent 99999999999 \"x\" }}",
    "{{ range ",
    "{{ end }}",
    "{{/* é */}}",
    "(",
    ")",
    "|",
    "$",
    ".Values.",
    "é",
    "\u{10FFFF}",
    "\u{0}",
    "\u{feff}",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999",
    "4294967296",
    "1e999",
    "-0",
    "NaN",
    "{",
    "}",
    "[",
    "]",
    ":",
    "- ",
    "\n  ",
    "\"",
    "'",
    "\\",
    "=",
    "--",
    "-e",
    "--cpus=",
    "--memory=",
    "9999999999999T",
    "--ulimit=",
    "nofile=1:2",
    "--tmpfs=",
    "\t",
    "\r\n",
    ",",
    "!!binary",
    "&a",
    "*a",
    "<<: *a",
    "---\n",
    "...",
    "\u{202e}",
    "ms",
    "min",
    "P1Y",
    "INFINITY",
    "-INFINITY",
    "+INFINITY",
    "replicas: ",
    "ipRangeStart: ",
    "255.255.255.255",
    "0.0.0.0",
    "range: 1-65535",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                let start = at.min(end);
                v.drain(start..end);
            }
            4 if !v.is_empty() => {
                // A copy of a piece of itself (nesting grows this way).
                let s = rng.below(v.len());
                let e = (s + 1 + rng.below(64)).min(v.len());
                let piece = v[s..e].to_vec();
                v.splice(at..at, piece);
            }
            5 => v.truncate(at),
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let s = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[s..]);
            }
            7 if !v.is_empty() => {
                // A digit run made huge.
                v.splice(at..at, b"99999999999999999999".iter().copied());
            }
            _ => {
                // Cut in the middle of a multi-byte character.
                v.splice(at..at, "é".as_bytes()[..1].iter().copied());
            }
        }
    }
    v
}

struct Budget {
    secs: f64,
    cases: u64,
    seed: u64,
}

fn budget() -> Budget {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    Budget {
        secs: env("BERTH_FUZZ_SECS").unwrap_or(6.0),
        cases: env("BERTH_FUZZ_CASES")
            .map(|c| c as u64)
            .unwrap_or(u64::MAX),
        seed: env("BERTH_FUZZ_SEED").map(|s| s as u64).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        }),
    }
}

/// Runs `target` on every corpus entry, then on mutants until the budget is spent. Panics
/// (with the input saved) when any input panics the target.
fn fuzz(name: &str, corpus: Vec<Vec<u8>>, target: impl Fn(&[u8])) {
    let b = budget();
    // Panics are expected to be caught here; keep the output readable.
    // Every panic on the fuzzing thread counts, also one that berth catches itself (around
    // a third-party parser): the hook counts them per thread, and a case that raised the
    // count failed. (Set once for the whole process: the targets run on parallel threads.)
    thread_local! {
        static PANICS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            PANICS.with(|p| p.set(p.get() + 1));
            eprintln!("panic: {info}");
        }))
    });
    // BERTH_FUZZ_TRACE=FILE: each input is written there before it runs (to catch one that
    // hangs a target).
    let trace = std::env::var_os("BERTH_FUZZ_TRACE");
    // A watchdog: a case that runs over a minute is a hang (an infinite loop in a parser);
    // it aborts the process with the input saved, rather than stalling CI.
    let current = std::sync::Arc::new(std::sync::Mutex::new((Instant::now(), Vec::new())));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let (current, done, name) = (current.clone(), done.clone(), name.to_string());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(500));
                let (since, input) = &*current.lock().unwrap_or_else(|p| p.into_inner());
                if since.elapsed() > Duration::from_secs(60) {
                    let file =
                        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-hang-{name}"));
                    let _ = std::fs::write(&file, input);
                    eprintln!(
                        "fuzz {name}: a case ran over 60 s (input in {}): {:?}",
                        file.display(),
                        String::from_utf8_lossy(&input[..input.len().min(400)])
                    );
                    std::process::abort();
                }
            }
        })
    };
    let run = |input: &[u8]| {
        if let Some(t) = &trace {
            let _ = std::fs::write(t, input);
        }
        {
            let mut c = current.lock().unwrap_or_else(|p| p.into_inner());
            c.0 = Instant::now();
            c.1.clear();
            c.1.extend_from_slice(&input[..input.len().min(64 * 1024)]);
        }
        let before = PANICS.with(|p| p.get());
        let r = catch_unwind(AssertUnwindSafe(|| target(input)));
        let caught = PANICS.with(|p| p.get()) != before;
        match r {
            Err(e) => Err(e),
            Ok(()) if caught => Err(Box::new("a panic was caught inside berth".to_string())
                as Box<dyn std::any::Any + Send>),
            Ok(()) => Ok(()),
        }
    };
    let why = |e: Box<dyn std::any::Any + Send>| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    };
    let fail = |input: &[u8], seed: u64, panic: String| -> ! {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{name}-{seed}"));
        let _ = std::fs::write(&file, input);
        panic!(
            "{name}: an input panicked (seed {seed}; input in {}): {panic}: {:?}",
            file.display(),
            String::from_utf8_lossy(&input[..input.len().min(400)])
        );
    };
    for c in &corpus {
        if let Err(e) = run(c) {
            fail(c, 0, why(e));
        }
    }
    let mut rng = Rng(b.seed);
    let start = Instant::now();
    let mut cases = 0u64;
    // The big hostile values run once (above); mutants grow from the small ones, so that
    // time goes to many cases rather than to re-parsing megabytes.
    let mut pool: Vec<Vec<u8>> = corpus
        .iter()
        .filter(|c| c.len() < 64 * 1024)
        .cloned()
        .collect();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let small = pool.len();
    while cases < b.cases && start.elapsed() < Duration::from_secs_f64(b.secs) {
        // Mostly stacked mutants, sometimes a fresh start from the corpus (so that the pool
        // does not shrink to a few truncated bytes).
        let base = if rng.below(4) == 0 {
            &pool[rng.below(small)]
        } else {
            &pool[rng.below(pool.len())]
        };
        let input = mutate(&mut rng, base, &pool);
        if let Err(e) = run(&input) {
            fail(&input, b.seed, why(e));
        }
        // Keep some mutants as bases, bounded, so that mutations stack.
        if (16..256 * 1024).contains(&input.len()) && rng.below(8) == 0 {
            if pool.len() < 512 {
                pool.push(input);
            } else {
                // Replace a stacked mutant, never a corpus entry.
                let i = small + rng.below(pool.len() - small);
                pool[i] = input;
            }
        }
        cases += 1;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    println!(
        "fuzz {name}: {} corpus inputs, {cases} mutants in {:.1} s (seed {})",
        corpus.len(),
        start.elapsed().as_secs_f64(),
        b.seed
    );
}

fn repo(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("corpus file {path}: {e}"))
}

/// The files of `tests/fuzz/<dir>/`.
fn corpus_dir(dir: &str) -> Vec<Vec<u8>> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", d.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(&p).expect("a corpus file"))
        .collect()
}

/// Hostile values every text reader gets besides its own corpus.
fn hostile() -> Vec<Vec<u8>> {
    let deep = 100_000;
    let mut v = vec![
        Vec::new(),
        vec![0xff, 0xfe, 0x00, 0x80],
        b"\xc3".to_vec(),
        (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        format!("{}{}", "[".repeat(deep), "]".repeat(deep)).into_bytes(),
        format!("{}1{}", "{\"a\":".repeat(deep), "}".repeat(deep)).into_bytes(),
        "- ".repeat(deep).into_bytes(),
        format!("a: {}1{}", "{b: ".repeat(deep), "}".repeat(deep)).into_bytes(),
        "a:\n".repeat(1000).into_bytes(),
        format!("{}{}", "<a>".repeat(deep), "</a>".repeat(deep)).into_bytes(),
        format!("<cib>{}", "<bundle>".repeat(deep)).into_bytes(),
        b"<bundle id=\"x\"><docker image=\"x:1\" replicas=\"1\" options=\"-\xc3\xa9\"/></bundle>"
            .to_vec(),
        b"replicas: 99999999999999999999999999".to_vec(),
        b"{\"replicas\": 1e999}".to_vec(),
    ];
    // 1.4 MiB: just under etcd's request limit.
    let mut big = b"apiVersion: berth.io/v1alpha1\nkind: Bundle\nmetadata:\n  name: big\n  annotations:\n    a: \"".to_vec();
    big.resize(1_400 * 1024, b'x');
    big.extend_from_slice(b"\"\nspec: {docker: {image: x}}\n");
    v.push(big);
    v
}

fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

#[test]
fn fuzz_stored_bundle_values() {
    let mut corpus = vec![
        repo("manifests/httpd-bundle.yaml"),
        repo("manifests/httpd-bundle.xml"),
    ];
    corpus.extend(corpus_dir("bundles"));
    corpus.extend(hostile());
    fuzz("bundle", corpus, |b| {
        // What the controller and `berth get` do with a bundle key's value, and then what a
        // node agent does with the bundle once placed.
        if let Ok(bundle) = berth::store::decode_bundle("fuzz", b) {
            let _ = manifest::to_yaml(std::slice::from_ref(&bundle));
            let _ = cib::export_bundle(&bundle);
            for i in 0..bundle.spec.replicas().min(3) {
                let _ = berth::model::container::desired(&bundle, i, Path::new("/s"), None);
            }
        }
        if let Some(t) = text(b) {
            let _ = manifest::parse(t);
        }
    });
}

#[test]
fn fuzz_cib_import() {
    let mut corpus = vec![repo("manifests/httpd-bundle.xml")];
    corpus.extend(corpus_dir("cib"));
    corpus.extend(hostile());
    fuzz("cib", corpus, |b| {
        if let Some(t) = text(b)
            && let Ok(imported) = cib::import(t)
        {
            let _ = cib::export_cib(&imported.bundles);
        }
    });
}

#[test]
fn fuzz_run_options_and_durations() {
    let mut corpus: Vec<Vec<u8>> = [
        "-e FOO=bar --cap-add NET_ADMIN --memory 1g --cpus 1.5",
        "--ulimit nofile=1024:2048 --tmpfs /run:size=64m --shm-size 64m",
        "--log-driver journald --log-opt tag=x -eA=b --stop-timeout 30",
        "-é",
        "--user=root --privileged=true --read-only --init",
        "10s",
        "1min30s",
        "PT1H2M3S",
        "500ms",
        "INFINITY",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    corpus.extend(hostile().into_iter().take(8));
    fuzz("options", corpus, |b| {
        if let Some(t) = text(b) {
            let _ = options::parse(t);
            let _ = options::split_words(t);
            let _ = options::parse_size(t);
            let _ = duration::parse(t);
            let _ = berth::model::validate::parse_range(t);
            let _ = berth::model::validate::parse_score(t);
        }
    });
}

#[test]
fn fuzz_chart_templates() {
    let mut corpus = vec![];
    let tdir = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/httpd/templates");
    for e in std::fs::read_dir(&tdir).expect("the httpd chart") {
        corpus.push(std::fs::read(e.expect("a template").path()).expect("a template"));
    }
    corpus.extend(corpus_dir("templates"));
    corpus.push(b"{{/* caf\xc3\xa9 */}}".to_vec());
    corpus.push(
        format!(
            "{}x{}",
            "{{ if 1 }}".repeat(100_000),
            "{{ end }}".repeat(100_000)
        )
        .into_bytes(),
    );
    corpus.push(format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000)).into_bytes());
    corpus.push(b"{{ define \"t\" }}{{ include \"t\" . }}{{ end }}{{ include \"t\" . }}".to_vec());
    corpus
        .push(b"{{ define \"t\" }}{{ template \"t\" . }}{{ end }}{{ template \"t\" . }}".to_vec());
    corpus.push(b"{{ indent 2000000000 \"x\" }}".to_vec());
    corpus.push(b"{{ nindent 999999999999 \"x\" }}".to_vec());
    corpus.push(b"{{ printf \"%999999999d\" 1 }}".to_vec());
    // Sprig's functions with hostile arguments (sizes, recursion, bad expressions).
    for t in [
        "{{ repeat 999999999 \"xy\" }}",
        "{{ until 999999999 }}",
        "{{ substr -5 999 \"abc\" }}{{ substr 9 2 \"abc\" }}",
        "{{ trunc -99 \"abc\" }}{{ trunc 99999999999 \"abc\" }}",
        "{{ regexMatch \"(((a*)*)*)*$\" \"aaaaaaaaaaaaaaaaaaaa!\" }}{{ regexMatch \"(\" \"a\" }}",
        "{{ div 1 0 }}{{ mod 1 0 }}{{ mul 9223372036854775807 2 }}",
        "{{ div -9223372036854775808 -1 }}",
        "{{ semverCompare \"~>=1 || ^x\" \"v1.x\" }}{{ semver \"\" }}",
        "{{ tpl \"{{ tpl . . }}\" \"{{ tpl . . }}\" }}",
        "{{ round 1.5 99999 }}{{ fromYaml \"a: [\" }}{{ fromJson \"{\" }}{{ b64dec \"%%\" }}",
        "{{ join \",\" (splitList \"\" .Values.s) }}{{ replace \"\" \"x\" \"abc\" }}",
        "{{ merge (dict \"a\" (dict \"b\" 1)) (dict \"a\" (dict \"c\" 2)) | toJson }}",
    ] {
        corpus.push(t.as_bytes().to_vec());
    }
    corpus
        .push(b"{{ range $i, $e := .Values.l }}{{ range $.Values.l }}x{{ end }}{{ end }}".to_vec());
    let values = serde_json::json!({
        "Values": {"replicas": 3, "image": "pcmk:httpd", "l": [1, 2, 3], "s": "é"},
        "Release": {"Name": "r", "Revision": 1},
        "Chart": {"Name": "httpd", "Version": "0.1.0"}
    });
    fuzz("chart", corpus, |b| {
        let Some(t) = text(b) else { return };
        let files = vec![
            (
                "templates/_helpers.tpl".to_string(),
                "{{ define \"name\" }}n{{ end }}".to_string(),
            ),
            ("templates/t.yaml".to_string(), t.to_string()),
        ];
        if let Ok(mut r) = Renderer::new(&files) {
            let _ = r.render("templates/t.yaml", &values);
        }
        let _ = berth::chart::parse_set(t);
        if let Ok(schema) = serde_json::from_str::<serde_json::Value>(t) {
            let _ = berth::chart::schema::check(&schema, &values["Values"]);
            let _ = berth::chart::schema::check(&values["Values"], &schema);
        }
    });
}

/// JSON the parts exchange through etcd, each read the way its reader reads it.
#[test]
fn fuzz_cluster_values() {
    let seed = berth::store::decode_bundle("httpd-bundle", &repo("manifests/httpd-bundle.yaml"))
        .expect("the seed manifest decodes");
    let assignment = berth::model::cluster::Assignment {
        bundle: seed.clone().into(),
        replicas: vec![0, 1, 2],
        managed: true,
        promoted: vec![1],
        // A replica held on an older spec during a rollout.
        pinned: vec![berth::model::cluster::Pinned {
            bundle: seed.clone().into(),
            replicas: vec![2],
        }],
        cleanup: 1_796_000_000,
        stop_after: vec![],
        notify: None,
    };
    let mut corpus = vec![serde_json::to_vec(&assignment).expect("serializes")];
    corpus.extend(corpus_dir("cluster"));
    corpus.extend(hostile().into_iter().take(8));
    fuzz("cluster", corpus, |b| {
        use berth::model::cluster::*;
        if let Ok(a) = serde_json::from_slice::<Assignment>(b) {
            // What a node agent does with an assignment.
            if berth::model::validate::validate(&a.bundle).is_ok() {
                for &i in a.replicas.iter().take(3) {
                    let _ = berth::model::container::desired(&a.bundle, i, Path::new("/s"), None);
                }
            }
        }
        let _ = serde_json::from_slice::<ReplicaStatus>(b);
        let _ = serde_json::from_slice::<PrimitiveState>(b);
        let _ = serde_json::from_slice::<NodeInfo>(b);
        let _ = serde_json::from_slice::<berth::model::BundleStatus>(b);
        let _ = serde_json::from_slice::<berth::chart::release::Release>(b);
    });
}

/// What a container says about attributes, each read the way its reader reads it: a tool's
/// request to the attribute daemon, the daemon's writes to the node agent (then checked
/// against the replica's scope, as the node agent checks them), the channel's requests, and
/// an agent's XPath for cibadmin.
#[test]
fn fuzz_attribute_messages() {
    use berth::model::attributes::*;
    use berth::remote::attrd::ToolRequest;
    let key = AttrKey {
        section: Section::Status,
        owner: "rds-1".into(),
        name: "seqno".into(),
    };
    let set = AttrOp::Set {
        key: key.clone(),
        value: "42".into(),
    };
    let writes = berth::remote::channel::Writes {
        writes: vec![
            AttrWrite {
                id: 1,
                op: set.clone(),
            },
            AttrWrite {
                id: 2,
                op: AttrOp::ClearTransient {
                    node: "rds-0".into(),
                },
            },
        ],
        mirrored: false,
    };
    let mut corpus = vec![
        serde_json::to_vec(&ToolRequest::Write { write: set }).expect("serializes"),
        serde_json::to_vec(&ToolRequest::Get { key }).expect("serializes"),
        serde_json::to_vec(&writes).expect("serializes"),
    ];
    corpus.extend(hostile().into_iter().take(8));
    let scope = Scope {
        bundle: "rds".into(),
        engine: "docker".into(),
        image: "redis".into(),
        me: "rds-0".into(),
        peers: ["rds-0", "rds-1", "rds-2"].map(String::from).into(),
        primitive: "redis".into(),
        agent: "ocf:heartbeat:redis".into(),
        promotable: true,
        host_target: true,
    };
    let hosts = ["h1".to_string()];
    let cib = berth::remote::cib::cib(
        &[],
        &Members {
            hosts: vec!["h1".into()],
            ..Default::default()
        },
    );
    corpus.push(b"//node_state[@crmd='online']//nvpair[@name='rmq-node-attr-x']".to_vec());
    fuzz("attributes", corpus, |b| {
        // An agent's XPath (cibadmin --xpath).
        if let Ok(x) = std::str::from_utf8(b) {
            let _ = berth::remote::cib::select(&cib, x);
        }
        let _ = serde_json::from_slice::<ToolRequest>(b);
        let _ = serde_json::from_slice::<berth::remote::channel::Request>(b);
        if let Ok(w) = serde_json::from_slice::<berth::remote::channel::Writes>(b) {
            for write in w.writes.iter().take(8) {
                let _ = scope.refuse(&write.op, &hosts);
            }
        }
    });
}

/// The controller's view of a prefix where any key may hold anything: decoding and placing
/// never panic, and good bundles beside garbage are still placed.
#[test]
fn fuzz_controller_view() {
    let keys = Keys::new("/f");
    let good = String::from_utf8(repo("manifests/httpd-bundle.yaml"))
        .expect("the seed is UTF-8")
        .replace("name: httpd-bundle", "name: good")
        .into_bytes();
    let node = br#"{"name":"n1","labels":{}}"#.to_vec();
    let corpus: Vec<Vec<u8>> = [good.clone(), node.clone()]
        .into_iter()
        .chain(corpus_dir("cluster"))
        .chain(hostile().into_iter().take(8))
        .collect();
    let key_names = [
        "bundles/httpd-bundle",
        "bundles/other",
        "nodes/n1",
        "nodes/n2",
        "assignments/n1/httpd-bundle",
        "replicas/httpd-bundle/0",
        "replicas/httpd-bundle/x",
        "status/bundles/httpd-bundle",
        "assignments/n1",
        "bundles/",
    ];
    fuzz("controller", corpus, |b| {
        let mut items = BTreeMap::new();
        let mut put = |k: &str, v: Vec<u8>| {
            let key = format!("{}{k}", keys.root());
            items.insert(
                key.clone(),
                berth::store::Kv {
                    key,
                    value: v,
                    version: 1,
                    mod_revision: 2,
                    create_revision: 2,
                    lease: 0,
                },
            );
        };
        put("bundles/good", good.clone());
        put("nodes/n0", node.clone());
        let k = key_names[b.len() % key_names.len()];
        put(k, b.to_vec());
        let mut cache = Cache::default();
        cache.items = items;
        cache.revision = 2;
        let view = berth::controller::View::read(&keys, &cache);
        assert!(
            view.bundles.contains_key("good"),
            "a good bundle beside garbage is read"
        );
        let bundles: Vec<_> = view.bundles.values().cloned().collect();
        let p = berth::controller::placement::place(
            &bundles,
            &view.nodes,
            &view.current,
            &view.history,
            0,
        );
        assert!(p.placed.contains_key("good") || p.pending.contains_key("good"));
    });
}

/// Chart packages and repository indexes come from the network. The input is the tar inside
/// the package (gzipped here, so that mutations reach the tar reader rather than breaking
/// gzip's checksum), and is also read as a package and as an index as it is.
#[test]
fn fuzz_chart_packages_and_indexes() {
    use berth::chart::repo;
    let dir = tempfile::tempdir().unwrap();
    let pkg = repo::package(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/httpd"),
        dir.path(),
    )
    .unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::read(&pkg).unwrap().as_slice()),
        &mut tar,
    )
    .unwrap();
    let index = repo::index(dir.path(), Some("http://127.0.0.1:1/")).unwrap();
    let mut corpus = vec![tar, serde_yaml::to_string(&index).unwrap().into_bytes()];
    corpus.extend(hostile());
    fuzz("chart package", corpus, |b| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b).unwrap();
        let _ = repo::load_package(&gz.finish().unwrap(), "fuzz.tgz");
        let _ = repo::load_package(b, "fuzz.tgz");
        if let Ok(idx) = repo::parse_index(b, "fuzz") {
            let _ = idx.find("httpd", None);
            let _ = idx.find("httpd", Some(">=0.1, <1"));
        }
    });
}
