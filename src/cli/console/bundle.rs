//! `/bundles/NAME`: one bundle: its replicas, the primitive's last operations and fail
//! counts, the rollout, the actions on it, its spec (YAML and Pacemaker XML) and its events.

use std::fmt::Write as _;

use super::pages::{esc, events_table, form, replica_text, rows_of};
use super::snapshot::Snapshot;
use crate::model::Bundle;

/// The page's body, or None for a bundle the cluster does not have. `history` is `berth
/// rollout history`'s rows (read from etcd for the page).
pub fn page(snap: &Snapshot, name: &str, actions: bool, history: &[[String; 4]]) -> Option<String> {
    let b = snap.view.bundles.get(name)?;
    let back = format!("/bundles/{}", super::pages::url(name));
    let (engine, c) = b.spec.container();
    let status = snap.view.bundle_statuses.get(name);
    let mut out = format!(
        "<h1>Bundle {}</h1><dl class=\"summary\"><dt>Image</dt><dd><code>{}</code> ({})</dd>\
         <dt>Replicas</dt><dd>{} ready of {}</dd><dt>Generation</dt><dd>{}</dd>",
        esc(name),
        esc(&c.image),
        engine.as_str(),
        status.map_or(0, |s| s.ready_replicas),
        b.spec.replicas(),
        b.metadata.generation.unwrap_or(0),
    );
    if let Some(why) = snap.view.invalid.get(name) {
        let _ = write!(
            out,
            "<dt>Invalid</dt><dd class=\"bad\">{} (running as last placed)</dd>",
            esc(why)
        );
    }
    for cond in status.map(|s| s.conditions.as_slice()).unwrap_or(&[]) {
        let _ = write!(
            out,
            "<dt>{}</dt><dd>{}{}</dd>",
            esc(&cond.kind),
            cond.status,
            if cond.message.is_empty() {
                String::new()
            } else {
                format!(": {}", esc(&cond.message))
            }
        );
    }
    out.push_str("</dl>");
    if actions {
        out.push_str(&action_forms(snap, b, &back));
    }
    out.push_str(&replicas(snap, b));
    out.push_str(&operations(snap, b));
    out.push_str(&rollout(snap, b, history));
    out.push_str(&spec(b));
    let _ = write!(
        out,
        "<section aria-labelledby=\"ev\"><h2 id=\"ev\">Events</h2>{}</section>",
        events_table(
            snap.events
                .iter()
                .filter(|e| e.bundle() == Some(name))
                .collect::<Vec<_>>()
                .into_iter()
        )
    );
    Some(out)
}

fn action_forms(snap: &Snapshot, b: &Bundle, back: &str) -> String {
    let name = b.name();
    let nodes: String = snap
        .view
        .nodes
        .iter()
        .map(|n| format!("<option>{}</option>", esc(&n.name)))
        .collect();
    let stopped = b.resolved().meta.stopped;
    let paused = snap.view.paused.contains(name);
    let mut out = String::from(
        "<section aria-labelledby=\"act\" class=\"actions\"><h2 id=\"act\">Actions</h2>",
    );
    let _ = write!(
        out,
        "<form class=\"act\" method=\"post\" action=\"/actions/scale\">\
         <input type=\"hidden\" name=\"bundle\" value=\"{n}\"><input type=\"hidden\" name=\"back\" value=\"{back}\">\
         <label>Replicas <input type=\"number\" name=\"replicas\" min=\"0\" value=\"{r}\"></label> \
         <button>Scale</button></form>\
         <form class=\"act\" method=\"post\" action=\"/actions/move\">\
         <input type=\"hidden\" name=\"bundle\" value=\"{n}\"><input type=\"hidden\" name=\"back\" value=\"{back}\">\
         <label>Node <select name=\"node\">{nodes}</select></label> \
         <button name=\"how\" value=\"move\">Move</button> <button name=\"how\" value=\"ban\">Ban</button></form>",
        n = esc(name),
        back = esc(back),
        r = b.spec.replicas(),
    );
    let fields = [("bundle", name)];
    out.push_str(&form("clear", &fields, "Clear moves and bans", back));
    out.push_str(&form("cleanup", &fields, "Clean up failures", back));
    out.push_str(&if stopped {
        form("start", &fields, "Start (unset target-role)", back)
    } else {
        form("stop", &fields, "Stop (target-role=Stopped)", back)
    });
    out.push_str(&if paused {
        form("resume", &fields, "Resume rollout", back)
    } else {
        form("pause", &fields, "Pause rollout", back)
    });
    out.push_str(&form("undo", &fields, "Undo (previous generation)", back));
    out.push_str("</section>");
    out
}

fn replicas(snap: &Snapshot, b: &Bundle) -> String {
    let rows = rows_of(snap, b.name());
    let mut out = String::from(
        "<section aria-labelledby=\"reps\"><h2 id=\"reps\">Replicas</h2><table><thead><tr>\
         <th scope=\"col\">Replica</th><th scope=\"col\">Node</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Address</th><th scope=\"col\">Ports</th><th scope=\"col\">Restarts</th>\
         <th scope=\"col\">Fail counts</th><th scope=\"col\">Why</th></tr></thead><tbody>",
    );
    for i in 0..b.spec.replicas() {
        let r = replica_text(snap, b, rows, i);
        let st = snap.view.status_on(b.name(), i, r.shown.node);
        let address = st
            .and_then(|s| s.address.clone())
            .or_else(|| b.spec.replica_address(i).map(|a| a.to_string()))
            .unwrap_or_default();
        let fails = st
            .map(|s| {
                s.fail_counts
                    .iter()
                    .map(|(n, c)| format!("{}: {c}", esc(n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td><span class=\"r {}\">{}</span></td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{fails}</td><td>{}</td></tr>",
            esc(&b.replica_name(i)),
            esc(r.shown.node),
            r.class,
            esc(&r.words),
            esc(&address),
            st.map(|s| esc(&s.ports.join(", "))).unwrap_or_default(),
            st.map_or(0, |s| s.restart_count),
            esc(r.shown.reason),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

fn operations(snap: &Snapshot, b: &Bundle) -> String {
    let mut rows = String::new();
    for (i, s) in snap.view.statuses_of(b.name()) {
        let Some(p) = &s.primitive else { continue };
        for o in p.last.iter().rev().take(5) {
            let class = if o.succeeded() { "ok" } else { "bad" };
            let _ = write!(
                rows,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td>\
                 <td><span class=\"st {class}\">{} ({})</span></td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
                esc(&b.replica_name(i)),
                esc(o.action.as_str()),
                if o.interval_ms == 0 {
                    "-".to_string()
                } else {
                    format!("{}s", o.interval_ms / 1000)
                },
                esc(&o.rc_name),
                o.rc,
                crate::utc_time(o.at),
                o.took_ms,
                esc(o.output.trim()),
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<section aria-labelledby=\"ops\"><h2 id=\"ops\">Primitive operations</h2><table><thead><tr>\
         <th scope=\"col\">Replica</th><th scope=\"col\">Operation</th><th scope=\"col\">Interval</th>\
         <th scope=\"col\">Result</th><th scope=\"col\">At</th><th scope=\"col\">Took</th>\
         <th scope=\"col\">Output</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )
}

fn rollout(snap: &Snapshot, b: &Bundle, history: &[[String; 4]]) -> String {
    let name = b.name();
    let line = snap
        .view
        .bundle_statuses
        .get(name)
        .and_then(|s| s.rollout.as_ref())
        .map(|r| crate::cli::cluster::rollout_line(name, r))
        .unwrap_or_else(|| format!("{name}: waiting for the controller"));
    let paused = if snap.view.paused.contains(name) {
        " (paused)"
    } else {
        ""
    };
    let mut rows = String::new();
    for [g, image, replicas, current] in history {
        let _ = write!(
            rows,
            "<tr><th scope=\"row\">{g}</th><td><code>{}</code></td><td>{replicas}</td><td>{current}</td></tr>",
            esc(image)
        );
    }
    format!(
        "<section aria-labelledby=\"ro\"><h2 id=\"ro\">Rollout</h2><p>{}{paused}</p>\
         <table><caption>History (the generations undo can go back to)</caption><thead><tr>\
         <th scope=\"col\">Generation</th><th scope=\"col\">Image</th>\
         <th scope=\"col\">Replicas</th><th scope=\"col\"></th></tr></thead>\
         <tbody>{rows}</tbody></table></section>",
        esc(&line)
    )
}

fn spec(b: &Bundle) -> String {
    let yaml = crate::model::manifest::to_yaml(&[b.desired()]);
    let xml = crate::model::cib::export_bundle(b);
    format!(
        "<section aria-labelledby=\"spec\"><h2 id=\"spec\">Spec</h2>\
         <details open><summary>YAML</summary><pre>{}</pre></details>\
         <details><summary>Pacemaker XML</summary><pre>{}</pre></details></section>",
        esc(&yaml),
        esc(&xml)
    )
}
