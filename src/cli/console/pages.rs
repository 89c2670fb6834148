//! The console's pages, rendered on the server from a [`Snapshot`]: plain semantic HTML that
//! reads without JavaScript (the script only refreshes `<main>` when the cluster changes).
//! Every state is written in words beside its colour. Everything from the cluster (names,
//! reasons, agents' output) is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::snapshot::{Sample, Snapshot};
use crate::cli::cluster::{Shown, crm_word, replica_shown};
use crate::events::{Event, EventType};
use crate::model::Bundle;
use crate::model::cluster::{ReplicaState, Role};

/// `text` escaped for HTML text and attribute values: the five markup characters (as
/// crm_mon's XML escapes them), and control characters other than newline and tab written
/// out as the terminal commands write them (`\x1b`).
pub fn esc(text: &str) -> String {
    crate::remote::crm_mon::esc(&crate::cli::escape_controls(text))
}

/// Everything but RFC 3986's unreserved characters is escaped.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `text` as a URL path segment, query value or cookie value.
pub fn url(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, ESCAPED).to_string()
}

/// The page around `body`: header, navigation and the live-status line. `current` is the
/// navigation entry to mark.
pub fn layout(title: &str, current: &str, snap: &Snapshot, body: &str) -> String {
    let nav = [
        ("/", "Cluster"),
        ("/events", "Events"),
        ("/charts", "Charts"),
        ("/plan", "Plan"),
        ("/login", "Token"),
    ]
    .iter()
    .map(|(href, name)| {
        let here = if *name == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<li><a href=\"{href}\"{here}>{name}</a></li>")
    })
    .collect::<String>();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · berth</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\
         <script src=\"/assets/console.js\" defer></script></head>\n<body>\
         <a class=\"skip\" href=\"#main\">Skip to the content</a>\
         <header><p class=\"brand\">berth</p><nav aria-label=\"Pages\"><ul>{nav}</ul></nav>\
         <p id=\"live\" role=\"status\" aria-live=\"polite\">Revision {rev}; \
         reload to see changes</p></header>\n\
         <main id=\"main\" tabindex=\"-1\" data-revision=\"{rev}\">{body}</main></body></html>\n",
        title = esc(title),
        rev = snap.revision,
    )
}

/// A notice at the top of a page: the outcome of an action, or the watch's trouble.
pub fn notice(snap: &Snapshot, said: Option<&str>, failed: bool) -> String {
    let mut out = String::new();
    if let Some(e) = &snap.error {
        let _ = write!(
            out,
            "<p class=\"notice bad\" role=\"alert\">etcd: {} (retrying; what is shown may be old)</p>",
            esc(e)
        );
    }
    if let Some(said) = said {
        let class = if failed { "bad" } else { "good" };
        let _ = write!(
            out,
            "<p class=\"notice {class}\" role=\"alert\">{}</p>",
            esc(said)
        );
    }
    out
}

/// A node's state in words (and the CSS class that colours it).
pub fn node_state(snap: &Snapshot, node: &str) -> &'static str {
    let v = &snap.view;
    match v.nodes.iter().find(|n| n.name == node) {
        Some(n) if n.maintenance => "maintenance",
        Some(n) if n.standby => "standby",
        Some(_) => "online",
        None => {
            let last = snap
                .events
                .iter()
                .rev()
                .find(|e| e.object == format!("node/{node}"));
            match last {
                Some(e) if e.reason == "Fenced" => "fenced",
                _ => "offline",
            }
        }
    }
}

/// Every node the cluster knows: online, in maintenance, or named by an assignment or a
/// replica status (offline).
pub fn known_nodes(snap: &Snapshot) -> BTreeSet<&str> {
    let v = &snap.view;
    let mut all: BTreeSet<&str> = v.nodes.iter().map(|n| n.name.as_str()).collect();
    all.extend(v.assignments.keys().map(|(n, _)| n.as_str()));
    all.extend(v.statuses.values().map(|s| s.node.as_str()));
    all.remove("");
    all
}

/// One replica in words: crm_mon's state, its role, and what holds it (frozen on a fenced
/// node, blocked, unmanaged).
pub struct ReplicaText<'v> {
    pub shown: Shown<'v>,
    /// The state shown (the node's newer report and the primitive's phase taken in).
    pub state: ReplicaState,
    pub words: String,
    pub class: &'static str,
}

/// How long (seconds) a replica's last failure is shown beside its state.
const RECENT_FAILURE: u64 = 300;

pub fn replica_text<'v>(
    snap: &'v Snapshot,
    b: &Bundle,
    rows: &'v [crate::model::ReplicaRow],
    i: u32,
) -> ReplicaText<'v> {
    let shown = replica_shown(&snap.view, b, rows, i);
    let status = snap.view.status_on(b.name(), i, shown.node);
    let (mut state, mut why) = (shown.state, "");
    // The node agent's own report is newer than the controller's row: a replica its node
    // says failed or starting again (a container that died) is shown so at once.
    if let Some(s) = status.filter(|s| state == ReplicaState::Running && s.state != state) {
        state = s.state;
        why = "as its node reports";
    }
    // With a primitive, Started means the primitive started (crm_mon's meaning), not only
    // its container.
    let primitive = status.and_then(|s| s.primitive.as_ref());
    if let (ReplicaState::Running, Some(p)) = (state, primitive) {
        use crate::model::cluster::Phase;
        (state, why) = match p.state {
            Phase::Started | Phase::Blocked => (state, why),
            Phase::Failed => (ReplicaState::Failed, "its primitive failed"),
            Phase::Stopping | Phase::Stopped => (ReplicaState::Stopped, "its primitive stopped"),
            Phase::Starting | Phase::Unknown => {
                (ReplicaState::Starting, "its primitive is starting")
            }
        };
    }
    let mut words = crm_word(state).to_string();
    if !why.is_empty() {
        words.push_str(&format!(" ({why})"));
    }
    let mut class = match state {
        ReplicaState::Running => "ok",
        ReplicaState::Failed => "bad",
        ReplicaState::Starting | ReplicaState::Pending => "wait",
        ReplicaState::Stopped => "off",
    };
    if let Some(p) = primitive {
        if let Some(role) = p.role {
            words.push_str(match role {
                Role::Promoted => ", Promoted",
                Role::Unpromoted => ", Unpromoted",
            });
            if role == Role::Promoted && class == "ok" {
                class = "promoted";
            }
        }
        if p.state == crate::model::cluster::Phase::Blocked {
            words.push_str(", blocked");
            class = "bad";
        }
    }
    // A failure in the last minutes stays in sight after a quick recovery (a container
    // that died and was started again at once is Started again before anyone looks).
    let recent = status
        .and_then(|s| s.last_failure.as_ref())
        .filter(|f| crate::unix_now().saturating_sub(f.time) <= RECENT_FAILURE);
    if let Some(f) = recent {
        let ago = crate::events::age(crate::unix_now(), f.time);
        words.push_str(&format!(", failed {ago} ago: {}", f.reason));
        if class != "bad" {
            class = "recovered";
        }
    }
    if !shown.node.is_empty() && node_state(snap, shown.node) == "fenced" {
        words.push_str(", frozen (node fenced)");
        class = "bad";
    }
    if !crate::controller::placement::managed(b) {
        words.push_str(", unmanaged");
    }
    ReplicaText {
        shown,
        state,
        words,
        class,
    }
}

/// The rows the controller wrote for a bundle (empty before it has).
pub fn rows_of<'v>(snap: &'v Snapshot, name: &str) -> &'v [crate::model::ReplicaRow] {
    snap.view
        .bundle_statuses
        .get(name)
        .map(|s| s.replica_rows.as_slice())
        .unwrap_or(&[])
}

/// `/`: the cluster at a glance: summary, nodes, and bundles × nodes.
pub fn cluster(snap: &Snapshot, actions: bool) -> String {
    let v = &snap.view;
    let nodes = known_nodes(snap);
    let configured: u32 = v.bundles.values().map(|b| b.spec.replicas()).sum();
    let online = nodes
        .iter()
        .filter(|n| !matches!(node_state(snap, n), "offline" | "fenced"))
        .count();
    let mut out = format!(
        "<h1>Cluster</h1><dl class=\"summary\"><dt>Leading controller</dt><dd>{}</dd>\
         <dt>Nodes</dt><dd>{online} online, {} offline</dd>\
         <dt>Bundles</dt><dd>{} ({configured} replicas configured)</dd></dl>",
        snap.leader
            .as_deref()
            .map(esc)
            .unwrap_or_else(|| "none (no controller is leading)".into()),
        nodes.len() - online,
        v.bundles.len(),
    );
    out.push_str(&nodes_table(snap, &nodes, actions));
    out.push_str(&matrix(snap, &nodes));
    out
}

fn nodes_table(snap: &Snapshot, nodes: &BTreeSet<&str>, actions: bool) -> String {
    let mut out = String::from(
        "<section aria-labelledby=\"nodes\"><h2 id=\"nodes\">Nodes</h2><table><thead><tr>\
         <th scope=\"col\">Node</th><th scope=\"col\">State</th><th scope=\"col\">Labels</th>\
         <th scope=\"col\">Attributes</th><th scope=\"col\">Actions</th></tr></thead><tbody>",
    );
    for &n in nodes {
        let state = node_state(snap, n);
        let labels = snap
            .view
            .nodes
            .iter()
            .find(|v| v.name == n)
            .map(|v| pairs(v.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            .unwrap_or_default();
        let attrs = snap
            .attributes
            .get(n)
            .map(|a| {
                pairs(
                    a.iter()
                        .map(|(_, name, value)| (name.as_str(), value.as_str())),
                )
            })
            .unwrap_or_default();
        let action = if !actions {
            String::new()
        } else if state == "standby" {
            form("unstandby", &[("node", n)], "Unstandby", "/")
        } else {
            form("standby", &[("node", n)], "Standby", "/")
        };
        let _ = write!(
            out,
            "<tr data-node=\"{n}\"><th scope=\"row\">{n}</th>\
             <td><span class=\"st {state}\">{state}</span></td>\
             <td>{labels}</td><td>{attrs}</td><td>{action}</td></tr>",
            n = esc(n)
        );
    }
    if nodes.is_empty() {
        out.push_str("<tr><td colspan=\"5\">No nodes</td></tr>");
    }
    out.push_str("</tbody></table></section>");
    out
}

fn pairs<'a>(kv: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    kv.map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A one-button form posting an action (the token comes from the cookie `/login` sets).
pub fn form(action: &str, fields: &[(&str, &str)], label: &str, back: &str) -> String {
    let mut out = format!("<form class=\"act\" method=\"post\" action=\"/actions/{action}\">");
    for (k, v) in fields.iter().chain([("back", back)].iter()) {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            esc(v)
        );
    }
    let _ = write!(
        out,
        "<button type=\"submit\">{}</button></form>",
        esc(label)
    );
    out
}

fn matrix(snap: &Snapshot, nodes: &BTreeSet<&str>) -> String {
    let mut out = String::from(
        "<section aria-labelledby=\"matrix\"><h2 id=\"matrix\">Bundles by node</h2>\
         <div class=\"wide\"><table class=\"matrix\"><thead><tr><th scope=\"col\">Bundle</th>",
    );
    for n in nodes {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(n));
    }
    out.push_str("<th scope=\"col\">Not placed</th></tr></thead><tbody>");
    for b in snap.view.bundles.values() {
        let rows = rows_of(snap, b.name());
        let mut cells: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for i in 0..b.spec.replicas() {
            let r = replica_text(snap, b, rows, i);
            let name = esc(&b.replica_name(i));
            let text = format!(
                "<span class=\"r {}\" data-replica=\"{name}\" data-node=\"{}\">{name} \
                 <span class=\"w\">{}</span>{}</span>",
                r.class,
                esc(r.shown.node),
                esc(&r.words),
                if r.shown.reason.is_empty() || r.shown.state == ReplicaState::Running {
                    String::new()
                } else {
                    format!(" <small>({})</small>", esc(r.shown.reason))
                }
            );
            cells.entry(r.shown.node).or_default().push(text);
        }
        let invalid = if snap.view.invalid.contains_key(b.name()) {
            " <span class=\"st bad\">invalid</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><th scope=\"row\"><a href=\"/bundles/{}\">{}</a>{invalid}</th>",
            url(b.name()),
            esc(b.name())
        );
        for n in nodes.iter().copied().chain([""]) {
            let _ = write!(
                out,
                "<td>{}</td>",
                cells.get(n).map(|c| c.join("<br>")).unwrap_or_default()
            );
        }
        out.push_str("</tr>");
    }
    if snap.view.bundles.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\">No bundles</td></tr>",
            nodes.len() + 2
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// An events table (newest first).
pub fn events_table<'e>(events: impl DoubleEndedIterator<Item = &'e Event>) -> String {
    let now = crate::unix_now();
    let mut out = String::from(
        "<table><thead><tr><th scope=\"col\">Type</th><th scope=\"col\">Reason</th>\
         <th scope=\"col\">Age</th><th scope=\"col\">From</th><th scope=\"col\">Object</th>\
         <th scope=\"col\">Message</th></tr></thead><tbody>",
    );
    let mut any = false;
    for e in events.rev() {
        any = true;
        let (class, kind) = match e.kind {
            EventType::Normal => ("ok", "Normal"),
            EventType::Warning => ("bad", "Warning"),
        };
        let count = if e.count > 1 {
            format!(" (×{})", e.count)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr><td><span class=\"st {class}\">{kind}</span></td><td>{}</td><td>{}{count}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.reason),
            crate::events::age(now, e.last_timestamp),
            esc(&e.source),
            esc(&e.object),
            esc(&e.message)
        );
    }
    if !any {
        out.push_str("<tr><td colspan=\"6\">No events</td></tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// `/events`: the cluster's events, filtered by object (or bundle), type and text.
pub fn events(snap: &Snapshot, object: &str, kind: &str, text: &str) -> String {
    let matches = |e: &&Event| {
        (object.is_empty() || e.object == object || e.bundle() == Some(object))
            && (kind.is_empty() || format!("{:?}", e.kind).eq_ignore_ascii_case(kind))
            && (text.is_empty()
                || e.message.contains(text)
                || e.reason.contains(text)
                || e.object.contains(text))
    };
    let chosen = |k: &str| if k == kind { " selected" } else { "" };
    format!(
        "<h1>Events</h1><form class=\"filter\" method=\"get\" action=\"/events\">\
         <label>Object or bundle <input name=\"object\" value=\"{}\" placeholder=\"bundle/web\"></label>\
         <label>Type <select name=\"type\"><option value=\"\"{}>any</option>\
         <option{}>Normal</option><option{}>Warning</option></select></label>\
         <label>Text <input name=\"q\" value=\"{}\"></label><button>Filter</button></form>{}",
        esc(object),
        chosen(""),
        chosen("Normal"),
        chosen("Warning"),
        esc(text),
        events_table(
            snap.events
                .iter()
                .filter(matches)
                .collect::<Vec<_>>()
                .into_iter()
        )
    )
}

/// `/charts`: the samples of the last minutes as small line charts (SVG), each with its
/// latest value in words.
pub fn charts(samples: &[Sample]) -> String {
    type Series = (&'static str, fn(&Sample) -> Option<f64>, &'static str);
    let series: [Series; 5] = [
        ("Replicas running", |s| Some(s.running as f64), ""),
        ("Replicas failed", |s| Some(s.failed as f64), ""),
        (
            "Container restarts (total)",
            |s| Some(s.restarts as f64),
            "",
        ),
        ("Fences (total)", |s| Some(s.fences as f64), ""),
        ("Reconcile pass (mean)", |s| s.reconcile_ms, " ms"),
    ];
    let span = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => crate::events::age(b.at, a.at),
        _ => "0s".into(),
    };
    let mut out = format!(
        "<h1>Charts</h1><p>The last {span}, sampled every {}s by this console.</p><div class=\"charts\">",
        super::snapshot::SAMPLE_EVERY.as_secs()
    );
    for (title, get, unit) in series {
        let points: Vec<Option<f64>> = samples.iter().map(get).collect();
        let last = points
            .iter()
            .rev()
            .flatten()
            .next()
            .map(|v| format!("{}{unit}", (v * 10.0).round() / 10.0))
            .unwrap_or_else(|| {
                if unit.is_empty() {
                    "no samples yet".into()
                } else {
                    "not measured (only a console in the leading controller's process sees its passes)".into()
                }
            });
        let _ = write!(
            out,
            "<figure><figcaption>{title}: <strong>{last}</strong></figcaption>{}</figure>",
            sparkline(title, &points)
        );
    }
    out.push_str("</div>");
    out
}

/// A small SVG line chart of `points` (gaps where there is no value).
fn sparkline(title: &str, points: &[Option<f64>]) -> String {
    let (w, h) = (300.0, 60.0);
    let max = points.iter().flatten().fold(1.0_f64, |m, v| m.max(*v));
    let step = w / (super::snapshot::SAMPLES.max(2) - 1) as f64;
    let offset = super::snapshot::SAMPLES.saturating_sub(points.len()) as f64 * step;
    let mut path = String::new();
    let mut pen = 'M';
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(v) => {
                let x = offset + i as f64 * step;
                let y = h - 2.0 - (v / max) * (h - 4.0);
                let _ = write!(path, "{pen}{x:.1},{y:.1} ");
                pen = 'L';
            }
            None => pen = 'M',
        }
    }
    format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{} over time, up to {max}\">\
         <path d=\"{path}\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\"/></svg>",
        esc(title)
    )
}

/// `/plan`: the what-if of losing one node: a form, and `berth plan`'s answer.
pub fn plan(snap: &Snapshot, down: &str, answer: Option<&str>) -> String {
    let options: String = snap
        .view
        .nodes
        .iter()
        .map(|n| {
            let sel = if n.name == down { " selected" } else { "" };
            format!("<option{sel}>{}</option>", esc(&n.name))
        })
        .collect();
    let mut out = format!(
        "<h1>Plan</h1><p>What the controller would do if a node were lost now (nothing is \
         written; the same as <code>berth plan --node-down NODE</code>).</p>\
         <form method=\"get\" action=\"/plan\"><label>Node lost \
         <select name=\"node-down\">{options}</select></label> <button>Plan</button></form>"
    );
    if let Some(a) = answer {
        let _ = write!(out, "<pre>{}</pre>", esc(a));
    }
    out
}

/// `/login`: where a browser is given the token its actions carry (a cookie).
pub fn login(configured: bool) -> String {
    if !configured {
        return "<h1>Token</h1><p>This console was started without <code>--console-token-file</code>: \
                it shows the cluster and takes no actions.</p>"
            .into();
    }
    "<h1>Token</h1><p>Actions (standby, move, cleanup, scale, …) need a token from the \
     console's token file. It is kept in a cookie for this site only.</p>\
     <form method=\"post\" action=\"/login\"><label>Token \
     <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
     <button>Use this token</button></form>\
     <form method=\"post\" action=\"/logout\"><button>Forget the token</button></form>"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::watch::{Cache, WatchEvent};
    use crate::store::{Keys, Kv};

    /// A snapshot of one node and one bundle whose replica 0 runs there and reported a
    /// failure whose reason is a container's hostile output.
    fn snapshot() -> Snapshot {
        let keys = Keys::new("/t");
        let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        let items = vec![
            Kv::first_write(keys.node("n1"), json(serde_json::json!({"name": "n1"})), 2),
            Kv::first_write(
                keys.bundle("web"),
                json(serde_json::json!({
                    "apiVersion": crate::model::API_VERSION, "kind": crate::model::KIND,
                    "metadata": {"name": "web"},
                    "spec": {"docker": {"image": "busybox", "replicas": 2}},
                })),
                3,
            ),
            Kv::first_write(
                keys.bundle_status("web"),
                json(
                    serde_json::json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 1,
                    "replicaRows": [
                        {"index": 0, "name": "web-0", "node": "n1", "address": "", "state": "running"},
                        {"index": 1, "name": "web-1", "node": "", "address": "", "state": "pending",
                         "reason": "no node can take it"}]}),
                ),
                4,
            ),
            Kv::first_write(
                keys.replica("web", 0),
                json(
                    serde_json::json!({"bundle": "web", "index": 0, "node": "n1",
                    "state": "running", "generation": 1,
                    "lastFailure": {"reason": "<script>alert(1)</script>", "time": crate::unix_now()}}),
                ),
                5,
            ),
        ];
        let mut cache = Cache::default();
        cache.apply(&WatchEvent::Listed { revision: 5, items });
        Snapshot::read(&keys, &cache)
    }

    #[test]
    fn the_matrix_says_each_state_in_words_and_escapes_what_containers_said() {
        let snap = snapshot();
        let page = cluster(&snap, false);
        assert!(
            page.contains("data-replica=\"web-0\" data-node=\"n1\""),
            "{page}"
        );
        assert!(
            page.contains("Started, failed 0s ago: &lt;script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains(
                "web-1 <span class=\"w\">Pending</span> <small>(no node can take it)</small>"
            ),
            "{page}"
        );
        assert!(
            page.contains("<span class=\"st online\">online</span>"),
            "{page}"
        );
        // The charts count what the page shows: one running (recovered), none failed.
        assert_eq!(snap.counts(), (1, 0, 0));
        // Without a token file, no action forms.
        assert!(!page.contains("<form"), "{page}");
        assert!(cluster(&snap, true).contains("action=\"/actions/standby\""));
    }

    #[test]
    fn a_node_gone_after_a_fence_is_shown_fenced_and_its_replicas_frozen() {
        let mut snap = snapshot();
        snap.view.nodes.clear();
        snap.events.push(Event {
            kind: EventType::Warning,
            reason: "Fenced".into(),
            object: "node/n1".into(),
            message: "lease not renewed".into(),
            source: "node/n1".into(),
            first_timestamp: 1,
            last_timestamp: 1,
            count: 1,
        });
        assert_eq!(node_state(&snap, "n1"), "fenced");
        let page = cluster(&snap, false);
        assert!(
            page.contains("<span class=\"st fenced\">fenced</span>"),
            "{page}"
        );
        assert!(
            page.contains("Stopped"),
            "the replica of a node gone: {page}"
        );
    }
}
