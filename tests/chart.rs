//! Helm-style charts against a real etcd: install, upgrade, rollback, uninstall, values
//! precedence, and refusals that leave etcd untouched.

mod common;

use std::path::Path;

use common::{PrivateEtcd, TestPrefix, berth, stderr, stdout};

const CHART: &str = "charts/httpd";

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "berth failed: {}", stderr(o));
    stdout(o)
}

async fn replicas(store: &berth::store::Store, name: &str) -> Option<u32> {
    Some(store.get_bundle(name).await.unwrap()?.value.spec.replicas())
}

/// A chart of two bundles, the second only when `.Values.second` is true; `extra` is
/// appended to the first template.
fn two_bundle_chart(dir: &Path, extra: &str) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: pair\nversion: 1.0.0\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), "second: true\nreplicas: 1\n").unwrap();
    let bundle = |name: &str| {
        format!(
            "apiVersion: berth.io/v1alpha1\nkind: Bundle\nmetadata:\n  name: {{{{ .Release.Name }}}}-{name}\nspec:\n  docker:\n    image: img\n    replicas: {{{{ .Values.replicas }}}}\n"
        )
    };
    std::fs::write(
        dir.join("templates/a.yaml"),
        format!("{}{extra}", bundle("a")),
    )
    .unwrap();
    std::fs::write(
        dir.join("templates/b.yaml"),
        format!(
            "{{{{- if .Values.second }}}}\n{}{{{{- end }}}}\n",
            bundle("b")
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn install_upgrade_rollback_and_uninstall() {
    let p = TestPrefix::new("chartlife");
    let store = p.store().await;
    let out = ok(&berth(&p, &["chart", "install", "web", CHART], None));
    assert!(
        out.contains("REVISION: 1") && out.contains("BUNDLES: web-httpd"),
        "{out}"
    );
    let b = store.get_bundle("web-httpd").await.unwrap().unwrap().value;
    assert_eq!(b.spec.replicas(), 3);
    assert_eq!(b.metadata.annotations["berth.io/release"], "web");
    assert_eq!(b.metadata.labels["release"], "web");

    ok(&berth(
        &p,
        &["chart", "upgrade", "web", CHART, "--set", "replicas=5"],
        None,
    ));
    assert_eq!(replicas(&store, "web-httpd").await, Some(5));

    let out = ok(&berth(&p, &["chart", "rollback", "web"], None));
    assert!(
        out.contains("REVISION: 3") && out.contains("Rollback to 1"),
        "{out}"
    );
    assert_eq!(replicas(&store, "web-httpd").await, Some(3));

    let hist = ok(&berth(&p, &["chart", "history", "web"], None));
    let rows: Vec<Vec<&str>> = hist
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{hist}");
    assert_eq!((rows[0][0], rows[0][2]), ("1", "superseded"));
    assert_eq!((rows[1][0], rows[1][2]), ("2", "superseded"));
    assert_eq!((rows[2][0], rows[2][2]), ("3", "deployed"));
    let list = ok(&berth(&p, &["chart", "list"], None));
    assert!(list.lines().nth(1).unwrap().starts_with("web "), "{list}");

    let out = ok(&berth(&p, &["chart", "uninstall", "web"], None));
    assert!(out.contains("bundle/web-httpd deleted"), "{out}");
    assert!(store.get_bundle("web-httpd").await.unwrap().is_none());
    // Helm's default: the history goes too.
    assert!(
        !berth(&p, &["chart", "history", "web"], None)
            .status
            .success()
    );
    let (_, left) = store.list(&store.keys().all_releases()).await.unwrap();
    assert!(left.is_empty());
}

#[tokio::test]
async fn uninstall_keep_history_marks_the_release_uninstalled() {
    let p = TestPrefix::new("chartkeep");
    let store = p.store().await;
    ok(&berth(&p, &["chart", "install", "kept", CHART], None));
    ok(&berth(
        &p,
        &["chart", "uninstall", "kept", "--keep-history"],
        None,
    ));
    assert!(store.get_bundle("kept-httpd").await.unwrap().is_none());
    let hist = ok(&berth(&p, &["chart", "history", "kept"], None));
    assert!(
        hist.lines().nth(1).unwrap().contains("uninstalled"),
        "{hist}"
    );
}

#[tokio::test]
async fn upgrade_deletes_bundles_the_chart_no_longer_renders() {
    let p = TestPrefix::new("chartdrop");
    let store = p.store().await;
    let dir = tempfile::tempdir().unwrap();
    two_bundle_chart(dir.path(), "");
    let chart = dir.path().to_str().unwrap();
    ok(&berth(&p, &["chart", "install", "duo", chart], None));
    assert!(store.get_bundle("duo-b").await.unwrap().is_some());
    ok(&berth(
        &p,
        &["chart", "upgrade", "duo", chart, "--set", "second=false"],
        None,
    ));
    assert!(
        store.get_bundle("duo-b").await.unwrap().is_none(),
        "b is no longer rendered"
    );
    assert!(store.get_bundle("duo-a").await.unwrap().is_some());
    // upgrade --install of a new name installs it.
    let out = ok(&berth(
        &p,
        &["chart", "upgrade", "--install", "trio", chart],
        None,
    ));
    assert!(out.contains("Install complete"), "{out}");
}

#[tokio::test]
async fn set_and_values_files_take_precedence_as_in_helm() {
    let p = TestPrefix::new("chartprec");
    let dir = tempfile::tempdir().unwrap();
    let (f4, f6) = (dir.path().join("four.yaml"), dir.path().join("six.yaml"));
    std::fs::write(&f4, "replicas: 4\nimage: from-file\n").unwrap();
    std::fs::write(&f6, "replicas: 6\n").unwrap();
    let render = |args: &[&str]| {
        let mut full = vec!["chart", "template", "r", CHART];
        full.extend_from_slice(args);
        let text = ok(&berth(&p, &full, None));
        berth::model::manifest::parse(&text)
            .unwrap()
            .bundles
            .remove(0)
    };
    assert_eq!(render(&[]).spec.replicas(), 3, "values.yaml");
    let b = render(&["-f", f4.to_str().unwrap()]);
    assert_eq!(
        (b.spec.replicas(), b.spec.container().1.image.as_str()),
        (4, "from-file")
    );
    assert_eq!(
        render(&["-f", f4.to_str().unwrap(), "-f", f6.to_str().unwrap()])
            .spec
            .replicas(),
        6,
        "the later file wins"
    );
    assert_eq!(
        render(&["--set", "replicas=5", "-f", f6.to_str().unwrap()])
            .spec
            .replicas(),
        5,
        "--set beats -f"
    );
    assert_eq!(
        render(&["--set", "replicas=5", "--set", "replicas=7"])
            .spec
            .replicas(),
        7,
        "the later --set wins"
    );
    let b = render(&["-f", f4.to_str().unwrap(), "--set", "replicas=2"]);
    assert_eq!(
        (b.spec.replicas(), b.spec.container().1.image.as_str()),
        (2, "from-file"),
        "merge, not replace"
    );
}

#[tokio::test]
async fn a_template_error_leaves_etcd_unchanged() {
    let etcd = PrivateEtcd::start().await;
    let p = TestPrefix::on(&etcd.endpoint, "charterr");
    let store = p.store().await;
    // The httpd chart without its schema (which would catch the empty image first).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    for f in [
        "Chart.yaml",
        "values.yaml",
        "templates/_helpers.tpl",
        "templates/bundle.yaml",
    ] {
        std::fs::copy(Path::new(CHART).join(f), dir.path().join(f)).unwrap();
    }
    let unchecked = dir.path().to_str().unwrap();
    let before = store.revision().await.unwrap();
    let out = berth(
        &p,
        &["chart", "install", "web", unchecked, "--set", "image="],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("templates/bundle.yaml:9: required value missing: image is required"),
        "{}",
        stderr(&out)
    );
    let out = berth(
        &p,
        &["chart", "install", "web", CHART, "--set", "replicas=0"],
        None,
    );
    assert!(
        stderr(&out).contains("values.replicas: 0 is below the minimum 1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(store.revision().await.unwrap(), before);
}

#[tokio::test]
async fn a_chart_rendering_one_invalid_bundle_is_refused_whole() {
    let etcd = PrivateEtcd::start().await;
    let p = TestPrefix::on(&etcd.endpoint, "chartinvalid");
    let store = p.store().await;
    let dir = tempfile::tempdir().unwrap();
    // Bundle a is valid; b gets replicas 0 from a --set that only b reads.
    two_bundle_chart(dir.path(), "");
    let b = dir.path().join("templates/b.yaml");
    let text = std::fs::read_to_string(&b)
        .unwrap()
        .replace(".Values.replicas", "(default 0 .Values.breplicas)");
    std::fs::write(&b, text).unwrap();
    let before = store.revision().await.unwrap();
    let out = berth(
        &p,
        &["chart", "install", "bad", dir.path().to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("renders invalid bundles, nothing was written"),
        "{err}"
    );
    assert!(err.contains("templates/b.yaml: bundle \"bad-b\" is invalid: spec.docker.replicas: 0: must be at least 1"), "{err}");
    assert_eq!(store.revision().await.unwrap(), before);
    assert!(store.get_bundle("bad-a").await.unwrap().is_none());
}

#[tokio::test]
async fn a_bundle_outside_the_release_is_not_taken_over() {
    let p = TestPrefix::new("chartown");
    let store = p.store().await;
    let mine = std::fs::read_to_string("manifests/httpd-bundle.yaml")
        .unwrap()
        .replace("name: httpd-bundle", "name: own-httpd");
    ok(&berth(&p, &["apply", "-f", "-"], Some(&mine)));
    let out = berth(&p, &["chart", "install", "own", CHART], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("belongs to no release: refusing to take it over"),
        "{}",
        stderr(&out)
    );
    let (_, releases) = store.list(&store.keys().all_releases()).await.unwrap();
    assert!(releases.is_empty());
}

/// A chart written the way `helm create` scaffolds one (its _helpers.tpl: name, fullname,
/// chart label, labels), adapted to a bundle, plus Sprig's string, list, dict, math,
/// encoding, regex, semver and hash functions and `tpl`: it renders to the expected bundle.
#[test]
fn a_chart_with_helm_create_helpers_and_sprig_functions_renders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(
        d.join("Chart.yaml"),
        "apiVersion: v2\nname: webapp\nversion: 1.4.2+build.7\nappVersion: \"2.0\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("values.yaml"),
        "nameOverride: \"\"\nfullnameOverride: \"\"\nreplicaCount: 2\nimage:\n  repository: berth-test/httpd\n  tag: \"\"\ntags: [b, a, b, c]\ngreeting: \"hello {{ .Release.Name }}\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("templates/_helpers.tpl"),
        r#"{{- define "webapp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "webapp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}
{{- define "webapp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "webapp.labels" -}}
chart: {{ include "webapp.chart" . }}
app: {{ include "webapp.name" . }}
{{- if .Chart.AppVersion }}
version: {{ .Chart.AppVersion | quote }}
{{- end }}
managed-by: {{ .Release.Service }}
{{- end }}
"#,
    )
    .unwrap();
    std::fs::write(
        d.join("templates/bundle.yaml"),
        r#"apiVersion: berth.io/v1alpha1
kind: Bundle
metadata:
  name: {{ include "webapp.fullname" . }}
  labels:
    {{- include "webapp.labels" . | nindent 4 }}
  annotations:
    tags: {{ .Values.tags | sortAlpha | uniq | join "," | quote }}
    first: {{ first .Values.tags | quote }}
    snake: {{ "fooBar baz" | snakecase | quote }}
    sum: {{ add 1 2 3 | quote }}
    hash: {{ sha256sum "abc" | trunc 12 | quote }}
    match: {{ regexMatch "^[a-z]+$" "abc" | quote }}
    newer: {{ semverCompare ">=1.2.0 <2" .Chart.Version | quote }}
    json: {{ (fromJson "{\"a\": 2}").a | quote }}
    keys: {{ keys (dict "z" 1 "y" 2) | join "," | quote }}
    greeting: {{ tpl .Values.greeting . | quote }}
    day: {{ toDate "2006-01-02" "2026-11-30" | dateModify "36h" | date "Mon Jan 2" | quote }}
    epoch: {{ unixEpoch 86400 | quote }}
    year: {{ now | date "2006" | quote }}
    took: {{ duration 3723 | quote }}
    sha1: {{ sha1sum "abc" | trunc 8 | quote }}
    adler: {{ adler32sum "abc" | quote }}
spec:
  docker:
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
    replicas: {{ .Values.replicaCount | int }}
"#,
    )
    .unwrap();
    let p = TestPrefix::new("helmcreate");
    let o = berth(
        &p,
        &["chart", "template", "shop", d.to_str().unwrap()],
        None,
    );
    let out = ok(&o);
    let b = berth::model::manifest::parse(&out)
        .unwrap_or_else(|e| panic!("{e}\n{out}"))
        .bundles
        .remove(0);
    assert_eq!(b.name(), "shop-webapp");
    let label = |k: &str| b.metadata.labels.get(k).cloned().unwrap_or_default();
    assert_eq!(label("chart"), "webapp-1.4.2_build.7");
    assert_eq!(label("app"), "webapp");
    assert_eq!(label("version"), "2.0");
    assert_eq!(label("managed-by"), "berth");
    let ann = |k: &str| b.metadata.annotations.get(k).cloned().unwrap_or_default();
    assert_eq!(ann("tags"), "a,b,c");
    assert_eq!(ann("first"), "b");
    assert_eq!(ann("snake"), "foo_bar_baz");
    assert_eq!(ann("sum"), "6");
    assert_eq!(ann("hash"), "ba7816bf8f01");
    assert_eq!(ann("match"), "true");
    assert_eq!(ann("newer"), "true");
    assert_eq!(ann("json"), "2");
    assert_eq!(ann("keys"), "y,z");
    assert_eq!(ann("greeting"), "hello shop");
    assert_eq!(ann("day"), "Tue Dec 1");
    assert_eq!(ann("epoch"), "86400");
    assert!(
        ann("year").parse::<u32>().is_ok_and(|y| y >= 2026),
        "{}",
        ann("year")
    );
    assert_eq!(ann("took"), "1h2m3s");
    assert_eq!(ann("sha1"), "a9993e36");
    assert_eq!(ann("adler"), "38600999");
    assert_eq!(b.spec.container().1.image, "berth-test/httpd:2.0");
    assert_eq!(b.spec.replicas(), 2);

    // What reaches outside the chart is refused, naming the function and why.
    std::fs::write(
        d.join("templates/extra.yaml"),
        "{{ lookup \"v1\" \"Secret\" \"ns\" \"name\" }}\n",
    )
    .unwrap();
    let o = berth(
        &p,
        &["chart", "template", "shop", d.to_str().unwrap()],
        None,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("lookup: not available"),
        "{}",
        stderr(&o)
    );
}
