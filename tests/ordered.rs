//! Ordering against a real controller, node agent, etcd and dockerd: Pacemaker's
//! `ordered=true` on a bundle (its instances start one after another, and stop in reverse),
//! and `rsc_order` with
//! `rsc_colocation` between bundles (an app starts after and beside its database, and stops
//! before it).

mod common;

use std::time::Duration;

use berth::model::{Colocation, NvPair, Order};
use berth::store::Expect;
use common::{docker, eventually, httpd_bundle, test_image};

/// Docker's RFC 3339 time with its fraction padded to nine digits (Go trims trailing zeros,
/// which would make plain text comparison wrong), so that times compare as text.
fn sortable(at: &str) -> String {
    let at = at.trim().trim_end_matches('Z');
    let (secs, frac) = at.split_once('.').unwrap_or((at, ""));
    format!("{secs}.{frac:0<9}Z")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_instances_start_one_after_another_and_stop_in_reverse() {
    test_image();
    let c = common::one_node("ordered").await;
    let mut b = httpd_bundle(&format!("{}-db", c.tag), 3, 3, 156);
    b.spec.meta_attributes.push(NvPair {
        id: None,
        name: "ordered".into(),
        value: Some("true".into()),
    });
    c.store.put_bundle(&b, Expect::Absent).await.unwrap();
    let names: Vec<String> = (0..3).map(|i| format!("{}-docker-{i}", b.name())).collect();
    // Each container's start time (RFC 3339 with nanoseconds, so they sort as text).
    let started = eventually(Duration::from_secs(60), "all three to run", || async {
        names
            .iter()
            .map(|n| {
                let s = common::docker_try(&[
                    "inspect",
                    "-f",
                    "{{.State.Running}} {{.State.StartedAt}}",
                    n,
                ])?;
                let (running, at) = s.split_once(' ')?;
                (running == "true").then(|| sortable(at))
            })
            .collect::<Option<Vec<String>>>()
    })
    .await;
    assert!(
        started[0] < started[1] && started[1] < started[2],
        "started out of order: {started:?}"
    );
    // Not created together either: each was created after the one before it had started.
    for i in 1..3 {
        let created = sortable(&docker(&["inspect", "-f", "{{.Created}}", &names[i]]));
        assert!(
            created > started[i - 1],
            "{} created at {created}, before {} started at {}",
            names[i],
            names[i - 1],
            started[i - 1]
        );
    }
    // Deleted: they stop one after another too, the highest first, each once the one above
    // it is gone.
    let since = berth::unix_now().saturating_sub(1);
    c.store.delete_bundle(b.name(), Expect::Any).await.unwrap();
    for n in &names {
        common::container_gone(n, Duration::from_secs(30)).await;
    }
    let died = event_times(since, "die", &names);
    let destroyed = event_times(since, "destroy", &names);
    for i in 0..2 {
        assert!(
            died[&names[i]] > destroyed[&names[i + 1]],
            "{} died at {} ns, before {} was removed at {} ns",
            names[i],
            died[&names[i]],
            names[i + 1],
            destroyed[&names[i + 1]]
        );
    }
}

/// The time of each Docker event of one kind (`die`, `destroy`, …) for these containers since
/// `since` (Unix seconds), in nanoseconds: container name → time.
fn event_times(
    since: u64,
    event: &str,
    names: &[String],
) -> std::collections::BTreeMap<String, u128> {
    let until = berth::unix_now() + 1;
    let out = docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("event={event}"),
        "--format",
        "{{.TimeNano}} {{.Actor.Attributes.name}}",
    ]);
    out.lines()
        .filter_map(|l| {
            let (t, name) = l.split_once(' ')?;
            let t: u128 = t.parse().ok()?;
            names
                .iter()
                .any(|n| n == name)
                .then(|| (name.to_string(), t))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_starts_after_and_beside_its_database_and_stops_before_it() {
    test_image();
    let c = common::one_node("order").await;
    let db = httpd_bundle(&format!("{}-db", c.tag), 2, 2, 160);
    let mut app = httpd_bundle(&format!("{}-app", c.tag), 1, 1, 161);
    app.spec.orders = vec![Order {
        id: Some("db-then-app".into()),
        first: db.name().to_string(),
        ..Default::default()
    }];
    app.spec.colocations = vec![Colocation {
        with: db.name().to_string(),
        score: "INFINITY".into(),
        ..Default::default()
    }];
    // The app first: it waits for a database that does not exist yet.
    c.store.put_bundle(&app, Expect::Absent).await.unwrap();
    let app_name = format!("{}-docker-0", app.name());
    let reason = eventually(Duration::from_secs(20), "the app's pending row", || async {
        let st = c.store.get_bundle(app.name()).await.ok()??.value.status?;
        let row = st.replica_rows.first()?.clone();
        (!row.reason.is_empty()).then_some(row.reason)
    })
    .await;
    assert!(reason.contains("excluded by colocation"), "{reason}");
    assert!(common::docker_try(&["inspect", &app_name]).is_none());

    c.store.put_bundle(&db, Expect::Absent).await.unwrap();
    let db_names: Vec<String> = (0..2)
        .map(|i| format!("{}-docker-{i}", db.name()))
        .collect();
    let app_started = eventually(Duration::from_secs(60), "the app to run", || async {
        let s = common::docker_try(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.StartedAt}}",
            &app_name,
        ])?;
        let (running, at) = s.split_once(' ')?;
        (running == "true").then(|| sortable(at))
    })
    .await;
    let app_created = sortable(&docker(&["inspect", "-f", "{{.Created}}", &app_name]));
    for n in &db_names {
        let started = sortable(&docker(&["inspect", "-f", "{{.State.StartedAt}}", n]));
        assert!(
            app_created > started,
            "{app_name} created at {app_created}, before {n} started at {started}"
        );
    }
    assert!(app_started > app_created);
    let addr = "127.0.161.10:8080".parse().unwrap();
    eventually(Duration::from_secs(20), "the app to serve", || async {
        common::http_ok(addr, Duration::from_secs(1)).then_some(())
    })
    .await;

    // Both deleted, the database first: the app's container is gone before any database
    // container dies.
    let since = berth::unix_now().saturating_sub(1);
    c.store.delete_bundle(db.name(), Expect::Any).await.unwrap();
    c.store
        .delete_bundle(app.name(), Expect::Any)
        .await
        .unwrap();
    for n in db_names.iter().chain([&app_name]) {
        common::container_gone(n, Duration::from_secs(30)).await;
    }
    let all: Vec<String> = db_names.iter().cloned().chain([app_name.clone()]).collect();
    let destroyed = event_times(since, "destroy", &all);
    let died = event_times(since, "die", &all);
    let app_gone = destroyed[&app_name];
    for n in &db_names {
        assert!(
            died[n] > app_gone,
            "{n} died at {} ns, before {app_name} was removed at {app_gone} ns",
            died[n]
        );
    }
}
