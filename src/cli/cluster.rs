//! The daemons and the cluster view: `berth controller`, `berth up`, `berth status`, and
//! `berth apply --wait`.

use crate::model::{Bundle, ReplicaKey};
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::model::rollout::RolloutState;
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{ApplyArgs, EtcdArgs, stop_on_signal};
use crate::controller::{self, ControllerConfig, View};
use crate::model::cluster::ReplicaState;
use crate::store::watch::{Cache, WatchConfig, WatchEvent, watch_prefix};
use crate::store::{Store, StoreConfig};

/// The host name, for default node and controller names (lower-cased: node names are
/// DNS names, compared as such).
pub fn hostname() -> Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the host name")?
        .trim()
        .to_ascii_lowercase())
}

/// `berth controller`: campaigns, leads, stops on SIGINT/SIGTERM.
pub async fn controller(
    store: Store,
    name: Option<String>,
    metrics: Option<std::net::SocketAddr>,
    console: Option<(std::net::SocketAddr, super::console::ConsoleOptions)>,
) -> Result<()> {
    let name = match name {
        Some(n) => n,
        None => format!("{}-{}", hostname()?, std::process::id()),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    if let Some((addr, opts)) = console {
        super::console::check(addr, &opts)?;
        super::console::spawn(store.clone(), addr, opts, shutdown.clone());
    }
    say!(
        "berth controller {name}: running (etcd {}); Ctrl-C stops",
        store.endpoints()
    );
    let mut cfg = ControllerConfig::new(name);
    cfg.metrics = metrics;
    controller::run(store, cfg, shutdown).await?;
    Ok(())
}

/// `berth status`: the cluster the way crm_mon shows it.
/// The whole prefix read once, as the controller sees it, and the revision it was read at.
async fn read_view(store: &Store) -> Result<(i64, View)> {
    let (revision, items) = store.list(&store.keys().root()).await?;
    let mut cache = Cache::default();
    cache.apply(&WatchEvent::Listed { revision, items });
    Ok((revision, View::read(store.keys(), &cache)))
}

pub async fn status(store: &Store, out: &mut impl Write) -> Result<()> {
    let (_, view) = read_view(store).await?;
    let leader = leader(store).await;
    let online: BTreeSet<&str> = view.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut known: BTreeSet<&str> = view.assignments.keys().map(|(n, _)| n.as_str()).collect();
    known.extend(view.statuses.values().map(|s| s.node.as_str()));
    let offline: Vec<&str> = known
        .difference(&online)
        .copied()
        .filter(|n| !n.is_empty())
        .collect();
    let configured: u32 = view.bundles.values().map(|b| b.spec.replicas()).sum();
    writeln!(out, "Cluster Summary:")?;
    writeln!(
        out,
        "  * Current controller: {}",
        leader
            .as_deref()
            .unwrap_or("NONE (no controller is leading)")
    )?;
    writeln!(
        out,
        "  * {} node(s) online, {} offline",
        online.len(),
        offline.len()
    )?;
    writeln!(
        out,
        "  * {} bundle(s), {configured} replica(s) configured",
        view.bundles.len()
    )?;
    writeln!(out)?;
    node_list(&view, &online, &offline, out)?;
    writeln!(out)?;
    writeln!(out, "Full List of Resources:")?;
    if view.bundles.is_empty() && view.invalid.is_empty() {
        writeln!(out, "  * No resources")?;
    }
    for (name, why) in &view.invalid {
        let kept = if view.bundles.contains_key(name) {
            "running as last placed"
        } else {
            "nothing placed"
        };
        writeln!(
            out,
            "  * Container bundle set: {name}: INVALID ({kept}): {why}"
        )?;
    }
    for b in view.bundles.values() {
        bundle_lines(&view, b, out)?;
    }
    failures(&view, out)?;
    Ok(())
}

/// The controller leading now (its election value), if one is.
async fn leader(store: &Store) -> Option<String> {
    let election = store.keys().election();
    store
        .members()
        .call(|mut c| {
            let election = election.clone();
            async move { c.leader(election).await }
        })
        .await
        .ok()
        .and_then(|r| {
            r.kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        })
}

/// `Node List:` as crm_mon shows it: nodes in standby on a line each, the other online ones
/// together, then the offline ones.
fn node_list(
    view: &View,
    online: &BTreeSet<&str>,
    offline: &[&str],
    out: &mut impl Write,
) -> Result<()> {
    writeln!(out, "Node List:")?;
    let standby: BTreeSet<&str> = view
        .nodes
        .iter()
        .filter(|n| n.standby)
        .map(|n| n.name.as_str())
        .collect();
    for n in &standby {
        writeln!(out, "  * Node {n}: standby")?;
    }
    writeln!(
        out,
        "  * Online: [ {} ]",
        online
            .iter()
            .copied()
            .filter(|n| !standby.contains(n))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    if !offline.is_empty() {
        writeln!(out, "  * OFFLINE: [ {} ]", offline.join(" "))?;
    }
    Ok(())
}

/// A bundle's heading and one line per replica: its address, agent, state, node and why.
fn bundle_lines(view: &View, b: &Bundle, out: &mut impl Write) -> Result<()> {
    let (engine, c) = b.spec.container();
    let managed = if controller::placement::managed(b) {
        ""
    } else {
        " (unmanaged)"
    };
    writeln!(
        out,
        "  * Container bundle set: {} [{}] ({}){managed}:",
        b.name(),
        c.image,
        engine.as_str()
    )?;
    let agent = b
        .spec
        .primitive
        .as_ref()
        .map(|p| p.agent())
        .unwrap_or_else(|| "container".into());
    let rows = view
        .bundle_statuses
        .get(b.name())
        .map(|s| s.replica_rows.clone())
        .unwrap_or_default();
    for i in 0..b.spec.replicas() {
        let addr = b
            .spec
            .replica_address(i)
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        let Shown {
            state,
            node,
            reason,
        } = replica_shown(view, b, &rows, i);
        let word = crm_word(state);
        let mut line = format!("    * {}{addr}\t({agent}):\t {word}", b.replica_name(i));
        if !node.is_empty() {
            line.push_str(&format!(" {node}"));
        }
        if !reason.is_empty() {
            line.push_str(&format!(" ({reason})"));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// One replica as `status` (and the console) shows it: its state, node and why.
pub struct Shown<'v> {
    pub state: ReplicaState,
    pub node: &'v str,
    pub reason: &'v str,
}

/// Replica `i` of `b`, from the controller's last row for it (`rows`, its bundle status)
/// corrected by what is known now: a replica of a node that is gone runs nowhere (the node
/// fenced itself before its lease ran out: crm_mon's Stopped), and one whose status
/// predates its node's registration is not known to run yet.
pub fn replica_shown<'v>(
    view: &'v View,
    b: &crate::model::Bundle,
    rows: &'v [crate::model::ReplicaRow],
    i: u32,
) -> Shown<'v> {
    let (state, node, reason) = match rows.iter().find(|r| r.index == i) {
        Some(r) => (r.state, r.node.as_str(), r.reason.as_str()),
        None => (ReplicaState::Pending, "", "no controller has placed it yet"),
    };
    let up = matches!(state, ReplicaState::Running | ReplicaState::Starting);
    let shown = |state, reason| Shown {
        state,
        node,
        reason,
    };
    if up && !node.is_empty() && !view.nodes.iter().any(|n| n.name == node) {
        return shown(ReplicaState::Stopped, "node offline");
    }
    if up
        && view
            .status_of(b.name(), i)
            .is_some_and(|s| s.node == node && !view.reported_now(s))
    {
        return shown(
            ReplicaState::Pending,
            "not reported since its node registered",
        );
    }
    shown(state, reason)
}

/// crm_mon's word for a replica state.
pub fn crm_word(state: ReplicaState) -> &'static str {
    match state {
        ReplicaState::Running => "Started",
        ReplicaState::Failed => "FAILED",
        ReplicaState::Stopped => "Stopped",
        ReplicaState::Starting => "Starting",
        ReplicaState::Pending => "Pending",
    }
}

/// What `berth ban`, `berth move` and `berth clear` do to `<prefix>/bans/<bundle>`.
pub enum BanChange<'a> {
    /// Keep the bundle off a node (crm_resource --ban).
    Ban(&'a str),
    /// Send one of its replicas to a node (crm_resource --move).
    Move(&'a str),
    /// Remove both (crm_resource --clear).
    Clear,
}

/// `berth ban BUNDLE NODE` adds NODE to `<prefix>/bans/<bundle>`; `berth move BUNDLE NODE`
/// sets its `prefer`; `berth clear BUNDLE` deletes it.
pub async fn ban(
    store: &Store,
    bundle: &str,
    change: BanChange<'_>,
    out: &mut impl Write,
) -> Result<()> {
    let key = store.keys().bans(bundle);
    let node = match change {
        BanChange::Clear => {
            store.delete(&key, crate::store::Expect::Any).await?;
            writeln!(out, "bundle/{bundle}: bans and moves cleared")?;
            return Ok(());
        }
        BanChange::Ban(n) | BanChange::Move(n) => n,
    };
    crate::model::validate::node_name(node).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        store.get(&store.keys().bundle(bundle)).await?.is_some(),
        "bundle {bundle:?} not found"
    );
    // Read, change, write back only if nobody changed it meanwhile.
    let stored = store.get(&key).await?;
    let mut bans: crate::model::cluster::Bans = stored
        .as_ref()
        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        .unwrap_or_default();
    let said = match change {
        BanChange::Move(_) => {
            anyhow::ensure!(
                !bans.nodes.iter().any(|n| n == node),
                "bundle {bundle:?} is banned from {node}: berth clear {bundle} first"
            );
            bans.prefer = Some(node.to_string());
            format!(
                "bundle/{bundle} moving to {node}: one replica goes there and stays (berth clear {bundle} lifts the preference)"
            )
        }
        _ => {
            if !bans.nodes.iter().any(|n| n == node) {
                bans.nodes.push(node.to_string());
            }
            if bans.prefer.as_deref() == Some(node) {
                bans.prefer = None;
            }
            format!(
                "bundle/{bundle} banned from {node}: its replicas there move (berth clear {bundle} lifts it)"
            )
        }
    };
    let expect = match &stored {
        Some(kv) => crate::store::Expect::Revision(kv.mod_revision),
        None => crate::store::Expect::Absent,
    };
    store.put(&key, serde_json::to_vec(&bans)?, expect).await?;
    writeln!(out, "{said}")?;
    Ok(())
}

/// `berth cleanup BUNDLE`: records when its failures were cleaned up
/// (`<prefix>/cleanup/<bundle>`); the controller stops counting earlier failures and the
/// agents forget them.
pub async fn cleanup(store: &Store, bundle: &str, out: &mut impl Write) -> Result<()> {
    anyhow::ensure!(
        store.get(&store.keys().bundle(bundle)).await?.is_some(),
        "bundle {bundle:?} not found"
    );
    let value = crate::model::cluster::Cleanup {
        at: crate::unix_now(),
    };
    store
        .put(
            &store.keys().cleanup(bundle),
            serde_json::to_vec(&value)?,
            crate::store::Expect::Any,
        )
        .await?;
    writeln!(
        out,
        "bundle/{bundle}: failures cleaned up; its replicas are tried again"
    )?;
    Ok(())
}

/// `berth standby` / `unstandby`: sets or clears `<prefix>/standby/<node>`.
pub async fn standby(store: &Store, node: &str, on: bool, out: &mut impl Write) -> Result<()> {
    crate::model::validate::node_name(node).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = store.keys().standby(node);
    if on {
        let value = serde_json::json!({ "since": crate::unix_now() });
        store
            .put(
                &key,
                value.to_string().into_bytes(),
                crate::store::Expect::Any,
            )
            .await?;
        if store.get(&store.keys().node(node)).await?.is_none() {
            writeln!(
                out,
                "warning: node {node} is not online; it stays in standby when it comes"
            )?;
        }
        writeln!(
            out,
            "node/{node} in standby: its replicas move to other nodes"
        )?;
    } else {
        store.delete(&key, crate::store::Expect::Any).await?;
        writeln!(out, "node/{node} out of standby")?;
    }
    Ok(())
}

/// crm_mon's "Migration Summary" (fail counts per node and replica, with the bundle's
/// migration-threshold) and "Failed Resource Actions" (each replica's last failure, and
/// its primitive's failed operations), shown when there are any.
fn failures(view: &controller::view::View, out: &mut impl Write) -> Result<()> {
    // node → (replica, threshold, count, last failure time)
    let mut counts: std::collections::BTreeMap<&str, Vec<(String, String, u32, u64)>> =
        Default::default();
    let mut actions = Vec::new();
    for (ReplicaKey { bundle, index: i }, st) in &view.statuses {
        let Some(b) = view.bundles.get(bundle) else {
            continue;
        };
        let replica = b.replica_name(*i);
        let threshold = b
            .spec
            .meta("migration-threshold")
            .unwrap_or("1000000")
            .to_string();
        let last = st.last_failure.as_ref().map_or(0, |f| f.time);
        for (node, n) in st.fail_counts.iter().filter(|(_, n)| **n > 0) {
            counts.entry(node.as_str()).or_default().push((
                replica.clone(),
                threshold.clone(),
                *n,
                last,
            ));
        }
        if let Some(f) = &st.last_failure {
            actions.push(format!(
                "  * {replica} on {} '{}' at {}",
                st.node,
                f.reason,
                super::chart::time(f.time)
            ));
        }
        if let Some(p) = &st.primitive {
            for op in p.last.iter().filter(|op| !op.succeeded()) {
                actions.push(format!(
                    "  * {replica}_{}_{} on {} '{}' ({}): last-rc-change='{}', exec={}ms{}",
                    op.action,
                    op.interval_ms,
                    st.node,
                    op.rc_name,
                    op.rc,
                    super::chart::time(op.at),
                    op.took_ms,
                    if op.output.trim().is_empty() {
                        String::new()
                    } else {
                        let reason: String = op.output.trim().chars().take(200).collect();
                        format!(", exitreason='{}'", reason.replace('\n', " "))
                    }
                ));
            }
        }
    }
    if !counts.is_empty() {
        writeln!(out)?;
        writeln!(out, "Migration Summary:")?;
        for (node, rows) in counts {
            writeln!(out, "  * Node: {node}:")?;
            for (replica, threshold, n, last) in rows {
                let when = if last > 0 {
                    format!(" last-failure='{}'", super::chart::time(last))
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "    * {replica}: migration-threshold={threshold} fail-count={n}{when}"
                )?;
            }
        }
    }
    if !actions.is_empty() {
        writeln!(out)?;
        writeln!(out, "Failed Resource Actions:")?;
        for a in actions {
            writeln!(out, "{a}")?;
        }
    }
    Ok(())
}

/// `berth plan`: the changes applying `files` and losing the `down` nodes would make, as the
/// controller would place them now. Reads the cluster once; writes nothing.
pub async fn plan(
    store: &Store,
    files: &[String],
    down: &[String],
    out: &mut impl Write,
) -> Result<()> {
    if files.is_empty() && down.is_empty() {
        bail!("nothing to plan: give manifests (-f) or lost nodes (--node-down)");
    }
    let applied = if files.is_empty() {
        Vec::new()
    } else {
        super::apply::checked(files)?
    };
    let (revision, view) = read_view(store).await?;
    let down: BTreeSet<String> = down.iter().cloned().collect();
    for n in &down {
        if !view.nodes.iter().any(|v| &v.name == n) {
            bail!("--node-down {n}: no such node online");
        }
    }
    let changes = crate::controller::whatif::what_if(&view, &applied, &down, crate::unix_now());
    writeln!(
        out,
        "Transition Summary (at revision {revision}; nothing written):"
    )?;
    if changes.is_empty() {
        writeln!(out, "  no changes")?;
    }
    for c in &changes {
        writeln!(out, "  * {c}")?;
    }
    Ok(())
}

/// `apply --wait` and `rollout status`: waits until every named bundle's rollout of the
/// applied generation is complete (every replica from the partition on runs it and is
/// ready); fails on a replica that cannot be placed or whose spec cannot run, on a rollout
/// paused or rolled back, with `failed_ends` on a failed one, or at the timeout, with the
/// reason.
pub async fn wait_rollouts(
    store: &Store,
    names: &[String],
    timeout: Duration,
    failed_ends: bool,
) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let gens = generations(store, names).await?;
    // The bundle statuses, and what tells whether a ready replica was reported under its
    // node's current registration: the replicas' statuses, the nodes, those in maintenance.
    let keys = store.keys();
    let prefixes: Vec<String> = [keys.statuses(), keys.nodes(), keys.maintenances()]
        .into_iter()
        .chain(gens.iter().map(|(n, _)| keys.replicas(n)))
        .collect();
    let mut events = watch_all(store, &prefixes);
    let mut watched = Watched {
        caches: vec![Cache::default(); prefixes.len()],
        prefixes,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_line = String::new();
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = tokio::time::sleep_until(deadline) => {
                if tty { say!(); }
                bail!("timed out after {timeout:?}: {last_line}");
            }
        };
        match ev {
            Some((i, Ok(ev))) => watched.caches[i].apply(&ev),
            Some((_, Err(e))) => {
                say!("warning: {e}");
                continue;
            }
            None => bail!("the status watch ended"),
        }
        let mut parts = Vec::new();
        let mut done = true;
        for (n, generation) in &gens {
            let st = watched.get(&keys.bundle_status(n)).and_then(|kv| {
                serde_json::from_slice::<crate::model::BundleStatus>(&kv.value).ok()
            });
            match bundle_progress(n, *generation, st, failed_ends, &mut parts) {
                Ok(converged) => done &= converged,
                Err(e) => {
                    if tty {
                        say!();
                    }
                    return Err(e);
                }
            }
        }
        if done {
            // The bundle status may be an earlier controller's, from before a node
            // registered anew: every ready replica must have been reported since.
            let unreported = unreported_since_registration(keys, &watched, &gens);
            if !unreported.is_empty() {
                done = false;
                parts.extend(unreported);
            }
        }
        last_line = parts.join("; ");
        if tty {
            use std::io::Write as _;
            let _ = write!(std::io::stderr(), "\r\x1b[2K{last_line}");
        }
        if done {
            if tty {
                say!();
            }
            say!("converged: {last_line}");
            return Ok(());
        }
    }
}

/// Each bundle's generation now: what a wait waits for.
async fn generations(store: &Store, names: &[String]) -> Result<Vec<(String, i64)>> {
    let bundles = super::show::named(store, names).await?;
    Ok(names
        .iter()
        .cloned()
        .zip(bundles.iter().map(|b| b.metadata.generation.unwrap_or(0)))
        .collect())
}

/// One stream of the watches of every prefix, each event with its prefix's index.
fn watch_all(
    store: &Store,
    prefixes: &[String],
) -> impl futures::Stream<Item = (usize, Result<WatchEvent, crate::store::watch::WatchError>)>
+ Unpin
+ use<> {
    futures::stream::select_all(prefixes.iter().enumerate().map(|(i, p)| {
        Box::pin(watch_prefix(
            store.members().clone(),
            p.clone(),
            WatchConfig::default(),
        ))
        .map(move |ev| (i, ev))
    }))
}

/// One bundle's progress towards `generation`, its parts of the progress line added to
/// `parts`: whether it converged, or the error that ends the wait (a rollout that ends, a
/// replica whose spec cannot run).
fn bundle_progress(
    n: &str,
    generation: i64,
    st: Option<crate::model::BundleStatus>,
    failed_ends: bool,
    parts: &mut Vec<String>,
) -> Result<bool> {
    let mut done = true;
    let Some(st) = st.filter(|s| s.observed_generation >= generation) else {
        parts.push(format!("{n}: waiting for the controller"));
        return Ok(false);
    };
    match st.rollout.as_ref().filter(|r| r.generation >= generation) {
        Some(r) => {
            parts.push(rollout_line(n, r));
            let ends = match r.state {
                RolloutState::Complete | RolloutState::Progressing => false,
                RolloutState::Failed => failed_ends,
                RolloutState::Paused | RolloutState::RolledBack => true,
            };
            if ends {
                bail!("bundle {n}: rollout {}: {}", r.state, r.reason);
            }
            if r.state != RolloutState::Complete {
                done = false;
            }
        }
        // Stopped, or a controller without rollouts: every replica ready.
        None => {
            parts.push(format!("{n}: {}/{} ready", st.ready_replicas, st.replicas));
            if st.ready_replicas < st.replicas {
                done = false;
            }
        }
    }
    for r in &st.replica_rows {
        // A spec that cannot run never will; a replica that cannot be placed yet may
        // be placed when a node joins, so it only shows in the progress line.
        let hopeless = r.state == ReplicaState::Failed && r.reason.starts_with("spec.");
        if hopeless {
            bail!("bundle {n}: replica {} {}: {}", r.name, r.state, r.reason);
        }
        if !r.reason.is_empty() {
            parts.push(format!("{} {}: {}", r.name, r.state, r.reason));
        }
        // The counts may be an earlier pass's: a replica row still on its way (the
        // controller waiting for a node that registered anew to report) is not
        // converged, whatever they say.
        if matches!(r.state, ReplicaState::Pending | ReplicaState::Starting) {
            done = false;
        }
    }
    Ok(done)
}

/// Several watched prefixes, a cache each (a re-list replaces one prefix's keys only).
struct Watched {
    prefixes: Vec<String>,
    caches: Vec<Cache>,
}

impl Watched {
    /// `key`, from the cache of the prefix that holds it.
    fn get(&self, key: &str) -> Option<&crate::store::Kv> {
        self.prefixes
            .iter()
            .zip(&self.caches)
            .find(|(p, _)| key.starts_with(p.as_str()))
            .and_then(|(_, c)| c.items.get(key))
    }
}

/// The replicas the bundle statuses count as running whose node has not reported them
/// under its current registration (their status was written under another lease, or their
/// node is offline), each as a line for the progress report. A node in maintenance vouches
/// for what it last reported.
fn unreported_since_registration(
    keys: &crate::store::Keys,
    watched: &Watched,
    bundles: &[(String, i64)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (n, _) in bundles {
        let rows = watched
            .get(&keys.bundle_status(n))
            .and_then(|kv| serde_json::from_slice::<crate::model::BundleStatus>(&kv.value).ok())
            .map(|s| s.replica_rows)
            .unwrap_or_default();
        for r in rows.iter().filter(|r| r.state == ReplicaState::Running) {
            if watched.get(&keys.maintenance(&r.node)).is_some() {
                continue;
            }
            let lease = watched
                .get(&keys.replica(n, r.index))
                .and_then(|kv| {
                    serde_json::from_slice::<crate::model::cluster::ReplicaStatus>(&kv.value).ok()
                })
                .map(|s| s.lease);
            let node_lease = watched.get(&keys.node(&r.node)).map(|kv| kv.lease);
            match (lease, node_lease) {
                (Some(l), Some(n)) if l == n => {}
                (_, None) => out.push(format!("{}: node {} offline", r.name, r.node)),
                _ => out.push(format!(
                    "{}: waiting for node {} to report it since it registered",
                    r.name, r.node
                )),
            }
        }
    }
    out
}

/// One line of a rollout's progress.
pub fn rollout_line(name: &str, r: &crate::model::rollout::RolloutStatus) -> String {
    let mut line = format!(
        "{name}: generation {} {}: {} updated, {} ready, {} unavailable (at most {})",
        r.generation, r.state, r.updated, r.ready, r.unavailable, r.max_unavailable
    );
    if !r.step.is_empty() {
        line.push_str(&format!("; {}", r.step));
    }
    if !r.reason.is_empty() {
        line.push_str(&format!("; {}", r.reason));
    }
    line
}

/// `berth up`: a local etcd (reused when one answers), a controller and a node agent in this
/// process; applies the given manifests and waits for them; runs until Ctrl-C.
pub async fn up(
    etcd: &EtcdArgs,
    files: Vec<String>,
    node: Option<String>,
    data_dir: std::path::PathBuf,
    metrics: Option<std::net::SocketAddr>,
    console: Option<(std::net::SocketAddr, super::console::ConsoleOptions)>,
) -> Result<()> {
    if let Some((addr, opts)) = &console {
        super::console::check(*addr, opts)?;
    }
    let cfg = etcd.config()?;
    let (store, child) = connect_or_start_etcd(&cfg, &data_dir).await?;
    let name = match node {
        Some(n) => n,
        None => hostname()?,
    };
    let shutdown = CancellationToken::new();
    // Ctrl-C is a clean stop from here on, also while the manifests are being waited for
    // (without a handler, it would kill the node agent on the spot, and its watchdog would
    // fence the replicas).
    let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
    if let Some((addr, opts)) = console {
        super::console::spawn(store.clone(), addr, opts, shutdown.clone());
    }
    let engine = crate::node::engine::DockerEngine::connect(None).await?;
    let mut ncfg = crate::node::NodeConfig::new(&name);
    ncfg.state_dir = data_dir.join("node");
    // A first run's Ctrl-C leaves the replicas serving (node in maintenance); the next
    // `berth up` adopts them.
    ncfg.on_stop = crate::node::config::OnStop::Maintenance;
    ncfg.metrics = metrics;
    let node_task = tokio::spawn(crate::node::run(
        store.clone(),
        engine,
        ncfg,
        shutdown.clone(),
    ));
    let ctl_task = tokio::spawn(controller::run(
        store.clone(),
        ControllerConfig::new(format!("{name}-up")),
        shutdown.clone(),
    ));
    say!(
        "berth is up: etcd {} ({}), controller {name}-up, node {name}.",
        cfg.endpoints.join(","),
        if child.is_some() {
            "started by berth up"
        } else {
            "already running"
        },
    );
    say!("Try `berth status` and `berth get bundles -o wide` in another terminal; Ctrl-C stops.");
    if !files.is_empty() {
        apply_and_wait(&store, files, &shutdown).await?;
    }
    let _ = signals.await;
    say!(
        "stopping: controller, node agent (node left in maintenance: its containers keep running, and the next `berth up` adopts them){}",
        if child.is_some() { ", etcd" } else { "" }
    );
    let _ = ctl_task.await;
    let _ = node_task.await;
    if let Some(mut c) = child {
        let _ = c.kill().await;
    }
    Ok(())
}

/// A store on the configured endpoint, and the etcd `berth up` started when none answered.
async fn connect_or_start_etcd(
    cfg: &StoreConfig,
    data_dir: &std::path::Path,
) -> Result<(Store, Option<tokio::process::Child>)> {
    let mut child = None;
    let store = Store::connect(cfg).await?;
    if tokio::time::timeout(Duration::from_secs(2), store.revision())
        .await
        .map(|r| r.is_ok())
        != Ok(true)
    {
        child = Some(start_etcd(cfg, data_dir).await?);
    }
    Ok((Store::connect(cfg).await?, child))
}

/// `berth up FILE…`: applies the manifests and waits for them (until Ctrl-C), then shows the
/// cluster.
async fn apply_and_wait(
    store: &Store,
    files: Vec<String>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let args = ApplyArgs {
        files,
        dry_run: false,
        wait: true,
        timeout: "5m".into(),
    };
    // berth up is a daemon: its stdout going away must not stop it (and fence nothing).
    let mut out = super::Forgiving::new(std::io::stdout());
    tokio::select! {
        r = super::apply::apply(store, &args, &mut out) => match r {
            Err(e) => say!("error: {e:#}"),
            Ok(()) => status(store, &mut out).await?,
        },
        _ = shutdown.cancelled() => {}
    }
    Ok(())
}

/// Starts etcd on the configured (loopback) endpoint with its data under `data_dir`.
async fn start_etcd(
    cfg: &StoreConfig,
    data_dir: &std::path::Path,
) -> Result<tokio::process::Child> {
    let endpoint = cfg.endpoints.first().cloned().unwrap_or_default();
    let hostport = endpoint
        .rsplit("://")
        .next()
        .unwrap_or(&endpoint)
        .to_string();
    let dir = data_dir.join("etcd");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let peer = "127.0.0.1:2390";
    let child = tokio::process::Command::new("etcd")
        .args(["--name", "berth-up", "--data-dir"])
        .arg(&dir)
        .args(["--listen-client-urls", &format!("http://{hostport}")])
        .args(["--advertise-client-urls", &format!("http://{hostport}")])
        .args(["--listen-peer-urls", &format!("http://{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
        .args(["--initial-cluster", &format!("berth-up=http://{peer}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(data_dir.join("etcd.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting etcd (install etcd-server, or run scripts/setup.sh)")?;
    let store = Store::connect(cfg).await?;
    for _ in 0..100 {
        if store.revision().await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "etcd did not come up at {hostport} in 10s (log: {}/etcd.log)",
        data_dir.display()
    )
}
