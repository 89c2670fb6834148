//! Read verbs: `get`, `describe`, `watch`, `cib import`, `cib export`.

use std::io::Write;

use crate::events::Event;
use anyhow::{Result, anyhow, bail};
use futures::StreamExt;

use super::table::Table;
use super::{GetArgs, ImportOutput, Output, WatchOutput};
use crate::model::manifest::{self, Format};
use crate::model::validate::validate;
use crate::model::{Bundle, NvPair, cib};
use crate::store::watch::{Cache, WatchConfig, WatchEvent, watch_prefix};
use crate::store::{Kv, Store, decode_entry};

/// Every stored bundle (or the named ones), failing on any that cannot be read.
pub async fn stored(store: &Store, names: &[String]) -> Result<Vec<Bundle>> {
    if names.is_empty() {
        let list = store.list_bundles().await?;
        return list
            .items
            .into_iter()
            .map(|r| r.map(|v| v.value).map_err(Into::into))
            .collect();
    }
    named(store, names).await
}

/// The named bundles as stored, failing on any that is not there or cannot be read.
pub async fn named(store: &Store, names: &[String]) -> Result<Vec<Bundle>> {
    let mut out = Vec::new();
    for n in names {
        let b = store
            .get_bundle(n)
            .await?
            .ok_or_else(|| anyhow!("bundle {n:?} not found"))?;
        out.push(b.value);
    }
    Ok(out)
}

pub async fn get(store: &Store, args: &GetArgs, out: &mut impl Write) -> Result<()> {
    if args.watch {
        return get_watch(store, args, out).await;
    }
    let mut unreadable = 0;
    // Stored values that cannot be read: listed as <invalid> (the controller keeps their
    // replicas as last placed), the reason on stderr.
    let mut invalid_rows: Vec<String> = Vec::new();
    let bundles = match &args.name {
        Some(n) => stored(store, std::slice::from_ref(n)).await?,
        None => {
            let list = store.list_bundles().await?;
            let mut ok = Vec::new();
            for item in list.items {
                match item {
                    Ok(v) => ok.push(v.value),
                    Err(e) => {
                        say!("warning: {e}");
                        if let crate::store::StoreError::Decode { key, .. } = &e {
                            invalid_rows
                                .push(store.keys().bundle_name(key).unwrap_or(key).to_string());
                        }
                        unreadable += 1;
                    }
                }
            }
            ok
        }
    };
    match args.output {
        Some(Output::Yaml) => write!(out, "{}", manifest::to_yaml(&bundles))?,
        Some(Output::Json) => write!(out, "{}", manifest::to_json(&bundles))?,
        wide => {
            if bundles.is_empty() && unreadable == 0 {
                say!("No bundles found under {}", store.keys().bundles());
            } else {
                let mut t = table(wide.is_some());
                for b in &bundles {
                    t.row(row(b, wide.is_some(), false));
                }
                for name in &invalid_rows {
                    let mut r = vec![name.clone(), "<invalid>".into()];
                    r.resize(if wide.is_some() { 9 } else { 5 }, "-".into());
                    t.row(r);
                }
                t.print(out, true)?;
            }
        }
    }
    if unreadable > 0 {
        bail!("{unreadable} stored bundle(s) could not be read (see warnings above)");
    }
    Ok(())
}

fn table(wide: bool) -> Table {
    let mut h = vec!["NAME", "READY", "IMAGE", "PRIMITIVE", "GENERATION"];
    if wide {
        h.extend(["PER-HOST", "IP-RANGE", "PORTS", "STORAGE"]);
    }
    Table::new(h)
}

fn row(b: &Bundle, wide: bool, deleted: bool) -> Vec<String> {
    let s = &b.spec;
    let ready = b.status.as_ref().map(|st| st.ready_replicas).unwrap_or(0);
    let mut r = vec![
        b.name().to_string(),
        if deleted {
            "<deleted>".to_string()
        } else if b.status.as_ref().is_some_and(|st| st.invalid.is_some()) {
            "<invalid>".to_string()
        } else {
            format!("{ready}/{}", s.replicas())
        },
        s.container().1.image.clone(),
        s.primitive
            .as_ref()
            .map(|p| format!("{} ({})", p.id, p.agent()))
            .unwrap_or_else(|| "<none>".into()),
        b.metadata
            .generation
            .map(|g| g.to_string())
            .unwrap_or_default(),
    ];
    if wide {
        r.push(s.replicas_per_host().to_string());
        r.push(ip_range(b).unwrap_or_else(|| "<none>".into()));
        let ports: Vec<String> = s.port_mappings().iter().map(ToString::to_string).collect();
        r.push(none_if_empty(ports.join(",")));
        let storage: Vec<String> = s.storage_mappings.iter().map(ToString::to_string).collect();
        r.push(none_if_empty(storage.join(",")));
    }
    r
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// `first-last/netmask`, the addresses the replicas own.
fn ip_range(b: &Bundle) -> Option<String> {
    let s = &b.spec;
    let first = s.replica_address(0)?;
    let last = s.replica_address(s.replicas() - 1)?;
    Some(if first == last {
        format!("{first}/{}", s.host_netmask())
    } else {
        format!("{first}-{last}/{}", s.host_netmask())
    })
}

/// `get -w`: the table once from the watch's first list, then a row per change.
async fn get_watch(store: &Store, args: &GetArgs, out: &mut impl Write) -> Result<()> {
    let keys = store.keys().clone();
    let wide = args.output == Some(Output::Wide);
    if matches!(args.output, Some(Output::Yaml | Output::Json)) {
        bail!("get -w prints table rows; use berth watch -o json for machine-readable events");
    }
    let mut cache = Cache::default();
    let mut events = Box::pin(watch_prefix(
        store.members().clone(),
        keys.root(),
        WatchConfig::default(),
    ));
    let wanted = |name: &str| args.name.as_deref().is_none_or(|n| n == name);
    let entry = |cache: &Cache, name: &str| -> Option<Bundle> {
        let spec = cache.items.get(&keys.bundle(name))?;
        let status = cache.items.get(&keys.bundle_status(name));
        decode_entry(&keys, spec, status).ok().map(|v| v.value)
    };
    let mut first = true;
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                say!("warning: {e}");
                continue;
            }
        };
        let before = cache.clone();
        cache.apply(&ev);
        let mut t = table(wide);
        match &ev {
            WatchEvent::Listed { items, .. } => {
                for kv in items {
                    if let Some(name) = keys.bundle_name(&kv.key).filter(|n| wanted(n))
                        && let Some(b) = entry(&cache, name)
                    {
                        t.row(row(&b, wide, false));
                    }
                }
            }
            WatchEvent::Put(Kv { key, .. }) | WatchEvent::Deleted { key, .. } => {
                let name = keys.bundle_name(key).or_else(|| keys.status_name(key));
                if let Some(name) = name.filter(|n| wanted(n)) {
                    match entry(&cache, name) {
                        Some(b) => t.row(row(&b, wide, false)),
                        None => {
                            if let Some(b) = entry(&before, name) {
                                t.row(row(&b, wide, true));
                            }
                        }
                    }
                }
            }
        }
        t.print(out, first)?;
        out.flush()?;
        first = false;
    }
    Ok(())
}

pub async fn describe(store: &Store, name: &str, out: &mut impl Write) -> Result<()> {
    let b = match store.get_bundle(name).await {
        Ok(b) => b.ok_or_else(|| anyhow!("bundle {name:?} not found"))?.value,
        Err(crate::store::StoreError::Decode { source, .. }) => {
            return describe_unreadable(store, name, &source, out).await;
        }
        Err(e) => return Err(e.into()),
    };
    write!(out, "{}", describe_text(&b))?;
    // The primitive's recent operations, per replica, as the remote agents reported them.
    let (_, kvs) = store.list(&store.keys().replicas(name)).await?;
    let mut statuses: Vec<crate::model::cluster::ReplicaStatus> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    statuses.sort_by_key(|s| s.index);
    primitive_tables(&statuses, out)?;
    // The bundle's and its replicas' events, as kubectl describe ends.
    events_table(store, name, out).await
}

/// A stored value that cannot be read: why, and what the controller keeps running
/// meanwhile (the rows of the last good value).
async fn describe_unreadable(
    store: &Store,
    name: &str,
    source: &impl std::fmt::Display,
    out: &mut impl Write,
) -> Result<()> {
    writeln!(out, "Name:         {name}")?;
    writeln!(out, "Invalid:      {source}")?;
    let st = store
        .get(&store.keys().bundle_status(name))
        .await?
        .and_then(|kv| serde_json::from_slice::<crate::model::BundleStatus>(&kv.value).ok());
    let rows = st.map(|s| s.replica_rows).unwrap_or_default();
    writeln!(out, "Replicas (as last placed):")?;
    if rows.is_empty() {
        writeln!(out, "  none")?;
    }
    for r in rows {
        writeln!(out, "  {}\t{}\t{}\t{}", r.name, r.node, r.address, r.state)?;
    }
    Ok(())
}

/// The primitive of each replica that reports one (state, role, score, restarts), and its
/// last five operations.
fn primitive_tables(
    statuses: &[crate::model::cluster::ReplicaStatus],
    out: &mut impl Write,
) -> Result<()> {
    let with_ops: Vec<_> = statuses.iter().filter(|s| s.primitive.is_some()).collect();
    if with_ops.is_empty() {
        return Ok(());
    }
    writeln!(out, "Primitive:")?;
    let mut t = Table::new(vec!["  REPLICA", "STATE", "ROLE", "SCORE", "RESTARTS"]);
    for s in &with_ops {
        let p = s.primitive.as_ref().expect("filtered");
        let role = match (p.role, p.wanted_role) {
            (None, _) => "-".to_string(),
            (Some(r), Some(w)) if w != r => format!("{r} (to {w})"),
            (Some(r), _) => r.to_string(),
        };
        t.row(vec![
            format!("  {}-{}", s.bundle, s.index),
            p.state.to_string(),
            role,
            p.score.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            p.restarts.to_string(),
        ]);
    }
    t.print(out, true)?;
    writeln!(out, "Operations:")?;
    let mut t = Table::new(vec![
        "  REPLICA",
        "OPERATION",
        "INTERVAL",
        "RC",
        "RESULT",
        "AT",
        "TOOK",
    ]);
    for s in with_ops {
        let p = s.primitive.as_ref().expect("filtered");
        for o in p.last.iter().rev().take(5) {
            t.row(vec![
                format!("  {}-{}", s.bundle, s.index),
                o.action.to_string(),
                if o.interval_ms == 0 {
                    "-".into()
                } else {
                    format!("{}s", o.interval_ms / 1000)
                },
                o.rc.to_string(),
                o.rc_name.clone(),
                super::chart::time(o.at),
                format!("{}ms", o.took_ms),
            ]);
        }
    }
    t.print(out, true)?;
    Ok(())
}

/// The events of a bundle and its replicas.
async fn events_table(store: &Store, name: &str, out: &mut impl Write) -> Result<()> {
    let events: Vec<Event> = crate::events::list(store)
        .await?
        .into_iter()
        .filter(|e| e.bundle() == Some(name))
        .collect();
    writeln!(out, "Events:")?;
    if events.is_empty() {
        writeln!(out, "  <none>")?;
    } else {
        let now = crate::unix_now();
        let mut t = Table::new(vec!["  TYPE", "REASON", "AGE", "FROM", "OBJECT", "MESSAGE"]);
        for e in events {
            t.row(vec![
                format!("  {:?}", e.kind),
                e.reason.clone(),
                age_text(now, &e),
                e.source.clone(),
                e.object.clone(),
                e.message.clone(),
            ]);
        }
        t.print(out, true)?;
    }
    Ok(())
}

/// kubectl's age column: `30s`, or `5m (x12 over 1h)` for repeats.
fn age_text(now: u64, e: &Event) -> String {
    let last = crate::events::age(now, e.last_timestamp);
    if e.count > 1 {
        format!(
            "{last} (x{} over {})",
            e.count,
            crate::events::age(now, e.first_timestamp)
        )
    } else {
        last
    }
}

/// `berth events [-w] [OBJECT]`: events, oldest first (OBJECT: `bundle/NAME` with its
/// replicas, `replica/NAME`, `node/NAME`, or a bundle's name); `-w` then prints each new or
/// repeated one as it is written.
pub async fn events(
    store: &Store,
    object: Option<&str>,
    watch: bool,
    out: &mut impl Write,
) -> Result<()> {
    let wanted = |e: &Event| match object {
        None => true,
        Some(o) => match o.split_once('/') {
            Some(("bundle", b)) => e.bundle() == Some(b),
            Some(_) => e.object == o,
            None => e.bundle() == Some(o),
        },
    };
    let mut t = Table::new(vec![
        "LAST SEEN",
        "TYPE",
        "REASON",
        "OBJECT",
        "SOURCE",
        "MESSAGE",
    ]);
    let row = |e: &Event, now: u64| {
        vec![
            age_text(now, e),
            format!("{:?}", e.kind),
            e.reason.clone(),
            e.object.clone(),
            e.source.clone(),
            e.message.clone(),
        ]
    };
    let now = crate::unix_now();
    let listed: Vec<Event> = crate::events::list(store).await?;
    let shown: Vec<&Event> = listed.iter().filter(|e| wanted(e)).collect();
    if shown.is_empty() && !watch {
        writeln!(out, "No events found.")?;
        return Ok(());
    }
    for e in shown {
        t.row(row(e, now));
    }
    t.print(out, true)?;
    out.flush()?;
    if !watch {
        return Ok(());
    }
    let mut events = Box::pin(watch_prefix(
        store.members().clone(),
        store.keys().events(),
        WatchConfig::default(),
    ));
    while let Some(ev) = events.next().await {
        let WatchEvent::Put(kv) = (match ev {
            Ok(ev) => ev,
            Err(e) => {
                say!("warning: {e}");
                continue;
            }
        }) else {
            continue;
        };
        let Ok(e) = serde_json::from_slice::<Event>(&kv.value) else {
            continue;
        };
        if wanted(&e) {
            let cells = row(&e, crate::unix_now());
            writeln!(out, "{}", cells.join("   "))?;
            out.flush()?;
        }
    }
    Ok(())
}

fn map_text(m: &std::collections::BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return "<none>".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n              ")
}

fn pairs_text(pairs: &[NvPair]) -> String {
    pairs
        .iter()
        .map(|p| format!("{}={}", p.name, p.value.as_deref().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// kubectl-describe style text of one bundle.
fn describe_text(b: &Bundle) -> String {
    let mut t = String::new();
    describe_overview(b, &mut t);
    describe_network(b, &mut t);
    describe_primitive(b, &mut t);
    describe_plan(b, &mut t);
    describe_status(b, &mut t);
    t
}

/// One line of a description.
fn push(t: &mut String, l: impl AsRef<str>) {
    t.push_str(l.as_ref());
    t.push('\n');
}

/// Name, validity, metadata, the container (engine, image, replicas, command, options).
fn describe_overview(b: &Bundle, t: &mut String) {
    let s = &b.spec;
    let (engine, c) = s.container();
    push(t, format!("Name:         {}", b.name()));
    if let Some(why) = b.status.as_ref().and_then(|st| st.invalid.as_ref()) {
        push(t, format!("Invalid:      {why}"));
    }
    push(t, format!("Labels:       {}", map_text(&b.metadata.labels)));
    push(
        t,
        format!("Annotations:  {}", map_text(&b.metadata.annotations)),
    );
    push(
        t,
        format!(
            "Generation:   {}",
            b.metadata.generation.unwrap_or_default()
        ),
    );
    if let Some(d) = &s.description {
        push(t, format!("Description:  {d}"));
    }
    push(t, format!("Engine:       {}", engine.as_str()));
    push(t, format!("Image:        {}", c.image));
    push(
        t,
        format!(
            "Replicas:     {} (per host {}, promoted max {})",
            s.replicas(),
            s.replicas_per_host(),
            s.promoted_max()
        ),
    );
    push(
        t,
        format!(
            "Run command:  {}",
            c.run_command.as_deref().unwrap_or("<image default>")
        ),
    );
    if let Some(n) = &c.network {
        push(t, format!("Network mode: {n}"));
    }
    if let Some(o) = &c.options {
        push(t, format!("Options:      {o}"));
    }
}

/// The network: the replicas' addresses, the control port, port and storage mappings.
fn describe_network(b: &Bundle, t: &mut String) {
    let s = &b.spec;
    push(t, "Network:");
    push(
        t,
        format!(
            "  IP range:       {}",
            ip_range(b).unwrap_or_else(|| "<none: ports publish on the host's addresses>".into())
        ),
    );
    let net = s.network.as_ref();
    push(
        t,
        format!(
            "  Host interface: {}",
            net.and_then(|n| n.host_interface.as_deref())
                .unwrap_or("<the interface whose network holds the address>")
        ),
    );
    push(t, format!("  Control port:   {}", s.control_port()));
    push(t, format!("  Add host:       {}", s.add_host()));
    push(t, "  Port mappings:");
    for pm in s.port_mappings() {
        push(t, format!("    {:<16} {pm}", pm.id));
    }
    if s.port_mappings().is_empty() {
        push(t, "    <none>");
    }
    push(t, "Storage mappings:");
    for sm in &s.storage_mappings {
        push(t, format!("  {:<18} {sm}", sm.id));
    }
    if s.storage_mappings.is_empty() {
        push(t, "  <none>");
    }
}

/// The primitive: its agent, attributes and operations.
fn describe_primitive(b: &Bundle, t: &mut String) {
    match &b.spec.primitive {
        None => push(t, "Primitive:    <none>"),
        Some(p) => {
            push(t, format!("Primitive:    {} ({})", p.id, p.agent()));
            if !p.instance_attributes.is_empty() {
                push(
                    t,
                    format!("  Attributes: {}", pairs_text(&p.instance_attributes)),
                );
            }
            if !p.meta_attributes.is_empty() {
                push(
                    t,
                    format!("  Meta:       {}", pairs_text(&p.meta_attributes)),
                );
            }
            for op in &p.operations {
                let mut o = format!("  Operation:  {} interval={}", op.name, op.interval);
                if let Some(v) = &op.timeout {
                    o.push_str(&format!(" timeout={v}"));
                }
                if let Some(v) = &op.role {
                    o.push_str(&format!(" role={v}"));
                }
                if let Some(v) = &op.on_fail {
                    o.push_str(&format!(" on-fail={v}"));
                }
                push(t, o);
            }
        }
    }
}

/// The bundle's meta attributes, and each replica's container name and address.
fn describe_plan(b: &Bundle, t: &mut String) {
    let s = &b.spec;
    push(
        t,
        format!(
            "Meta attributes: {}",
            if s.meta_attributes.is_empty() {
                "<none>".into()
            } else {
                pairs_text(&s.meta_attributes)
            }
        ),
    );
    push(t, "Replica plan:");
    let mut t2 = Table::new(vec!["  REPLICA", "CONTAINER", "ADDRESS"]);
    for i in 0..s.replicas() {
        t2.row(vec![
            format!("  {}", b.replica_name(i)),
            b.container_name(i),
            s.replica_address(i)
                .map(|a| a.to_string())
                .unwrap_or_else(|| "<host>".into()),
        ]);
    }
    let mut buf = Vec::new();
    t2.print(&mut buf, true).expect("write to memory");
    t.push_str(&String::from_utf8_lossy(&buf));
}

/// What the controller last reported: readiness, conditions, rollout, each replica's row.
fn describe_status(b: &Bundle, t: &mut String) {
    match &b.status {
        None => t.push_str("Status:       <none: no controller has reported on this bundle yet>\n"),
        Some(st) => {
            t.push_str(&format!(
                "Status:       {}/{} ready (observed generation {})\n",
                st.ready_replicas, st.replicas, st.observed_generation
            ));
            for c in &st.conditions {
                t.push_str(&format!(
                    "  {:<12} {:<6} {}: {}\n",
                    c.kind, c.status, c.reason, c.message
                ));
            }
            if let Some(r) = &st.rollout {
                t.push_str(&format!(
                    "Rollout:      {}\n",
                    super::cluster::rollout_line(b.name(), r)
                ));
            }
            if !st.replica_rows.is_empty() {
                let mut rows = Table::new(vec!["  REPLICA", "NODE", "ADDRESS", "STATE", "REASON"]);
                for r in &st.replica_rows {
                    rows.row(vec![
                        format!("  {}", r.name),
                        none_if_empty(r.node.clone()),
                        none_if_empty(r.address.clone()),
                        r.state.to_string(),
                        r.reason.clone(),
                    ]);
                }
                let mut buf = Vec::new();
                rows.print(&mut buf, true).expect("write to memory");
                t.push_str(&String::from_utf8_lossy(&buf));
            }
        }
    }
}

/// `berth watch`: every change under the prefix as a line (or a JSON object per line).
pub async fn watch(store: &Store, output: WatchOutput, out: &mut impl Write) -> Result<()> {
    let keys = store.keys().clone();
    let root = keys.root();
    let mut events = Box::pin(watch_prefix(
        store.members().clone(),
        root.clone(),
        WatchConfig::default(),
    ));
    let describe_key = |key: &str| -> (String, String) {
        if let Some(n) = keys.bundle_name(key) {
            ("bundle".into(), n.into())
        } else if let Some(n) = keys.status_name(key) {
            ("status".into(), n.into())
        } else {
            ("key".into(), key.strip_prefix(&root).unwrap_or(key).into())
        }
    };
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                say!("warning: {e}");
                continue;
            }
        };
        let lines: Vec<(&str, i64, &str, Option<&[u8]>)> = match &ev {
            WatchEvent::Listed { revision, items } => items
                .iter()
                .map(|kv| {
                    (
                        "EXISTS",
                        *revision,
                        kv.key.as_str(),
                        Some(kv.value.as_slice()),
                    )
                })
                .collect(),
            WatchEvent::Put(kv) => vec![("PUT", kv.mod_revision, &kv.key, Some(&kv.value))],
            WatchEvent::Deleted { key, revision } => vec![("DELETE", *revision, key, None)],
        };
        for (kind, rev, key, value) in lines {
            let (what, name) = describe_key(key);
            match output {
                WatchOutput::Text => writeln!(out, "{rev:<8} {kind:<7} {what}/{name}")?,
                WatchOutput::Json => {
                    let v = serde_json::json!({
                        "type": kind,
                        "revision": rev,
                        "kind": what,
                        "name": name,
                        "key": key,
                        "value": value.map(String::from_utf8_lossy),
                    });
                    writeln!(out, "{v}")?;
                }
            }
        }
        out.flush()?;
    }
    Ok(())
}

/// `cib import`: XML in, validated manifests out.
pub fn cib_import(file: &str, output: ImportOutput, out: &mut impl Write) -> Result<()> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).map_err(|e| anyhow!("{file}: cannot read: {e}"))?
    };
    if Format::detect(&text) != Format::Xml {
        bail!("{file}: not XML (expected a <cib> or a <bundle>)");
    }
    let imported = cib::import(&text).map_err(|e| anyhow!("{file}: {e}"))?;
    for w in &imported.warnings {
        say!("warning: {file}: {w}");
    }
    let invalid: Vec<String> = imported
        .bundles
        .iter()
        .filter_map(|b| validate(b).err().map(|e| e.to_string()))
        .collect();
    if !invalid.is_empty() {
        bail!("{file}:\n  {}", invalid.join("\n  "));
    }
    if imported.bundles.is_empty() {
        bail!("{file}: no bundles found");
    }
    match output {
        ImportOutput::Yaml => write!(out, "{}", manifest::to_yaml(&imported.bundles))?,
        ImportOutput::Json => write!(out, "{}", manifest::to_json(&imported.bundles))?,
    }
    Ok(())
}

/// `cib export`: a whole `<cib>`, or `<bundle>` fragments.
pub fn cib_export(bundles: &[Bundle], fragment: bool, out: &mut impl Write) -> Result<()> {
    if bundles.is_empty() {
        bail!("no bundles to export");
    }
    if fragment {
        for b in bundles {
            write!(out, "{}", cib::export_bundle(b))?;
        }
    } else {
        write!(out, "{}", cib::export_cib(bundles))?;
    }
    Ok(())
}
