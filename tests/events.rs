//! Events (`berth events`, the end of `berth describe`) recorded by a real controller and
//! node agent against the real etcd and dockerd: what placement and the engine did, a
//! crash loop counted into one event instead of flooding etcd, and the lease that expires
//! them.

mod common;

use std::time::Duration;

use berth::events::{Event, EventType};
use berth::store::Expect;
use common::{berth, eventually, httpd_bundle, stdout, test_image};

async fn events(store: &berth::store::Store) -> Vec<(Event, i64)> {
    let (_, kvs) = store.list(&store.keys().events()).await.unwrap();
    kvs.iter()
        .map(|kv| (serde_json::from_slice(&kv.value).unwrap(), kv.lease))
        .collect()
}

fn find<'e>(all: &'e [(Event, i64)], reason: &str, object: &str) -> Option<&'e (Event, i64)> {
    all.iter()
        .find(|(e, _)| e.reason == reason && e.object == object)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_starts_crash_loops_and_removals_are_recorded_as_events() {
    test_image();
    let c = common::one_node("events").await;
    let node = c.node.name.clone();
    let web = httpd_bundle(&format!("{}-web", c.tag), 2, 2, 151);
    let name = web.name().to_string();
    c.store.put_bundle(&web, Expect::Any).await.unwrap();

    // Scheduled by the controller, Started by the node agent, for each replica.
    let all = eventually(
        Duration::from_secs(40),
        "Scheduled and Started events",
        || async {
            let all = events(&c.store).await;
            (0..2)
                .all(|i| {
                    let r = format!("replica/{name}-{i}");
                    find(&all, "Scheduled", &r).is_some() && find(&all, "Started", &r).is_some()
                })
                .then_some(all)
        },
    )
    .await;
    let (scheduled, lease) = find(&all, "Scheduled", &format!("replica/{name}-0")).unwrap();
    assert_eq!(scheduled.kind, EventType::Normal);
    assert_eq!(scheduled.source, "controller/ctl");
    assert_eq!(scheduled.message, format!("assigned to {node}"));
    assert!(*lease > 0, "events are written under a lease");
    let (started, _) = find(&all, "Started", &format!("replica/{name}-1")).unwrap();
    assert_eq!(started.source, format!("node/{node}"));

    // `berth events -w` prints the events written from now on.
    let mut watcher = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_ETCD", &c.p.endpoint)
        .env("BERTH_PREFIX", &c.p.prefix)
        .args(["events", "-w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let stdout_pipe = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout_pipe).lines() {
            let Ok(line) = line else { break };
            let _ = seen_tx.send(line);
        }
    });

    // A missing image: the agent retries with backoff; the failures are one event whose
    // count rises, not one key per attempt.
    let mut broken = httpd_bundle(&format!("{}-broken", c.tag), 1, 1, 152);
    broken.spec.docker.as_mut().unwrap().image = "berth-test/no-such-image:1".into();
    let bname = broken.name().to_string();
    c.store.put_bundle(&broken, Expect::Any).await.unwrap();
    let object = format!("replica/{bname}-0");
    let failed = eventually(
        Duration::from_secs(60),
        "a repeated FailedStart",
        || async {
            let all = events(&c.store).await;
            find(&all, "FailedStart", &object)
                .filter(|(e, _)| e.count >= 2)
                .map(|(e, _)| e.clone())
        },
    )
    .await;
    assert_eq!(failed.kind, EventType::Warning);
    assert!(
        failed.message.contains("no-such-image"),
        "{}",
        failed.message
    );
    assert!(failed.last_timestamp >= failed.first_timestamp);
    let keys = events(&c.store)
        .await
        .iter()
        .filter(|(e, _)| e.object == object && e.reason == "FailedStart")
        .count();
    assert_eq!(keys, 1, "repeats share one key");

    let mut printed = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !printed
        .iter()
        .any(|l: &String| l.contains("FailedStart") && l.contains(&object))
    {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("events -w printed no FailedStart for {object}: {printed:?}"),
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();

    // The CLI: events of one bundle, and describe's Events section.
    let out = stdout(&tokio::task::block_in_place(|| {
        berth(&c.p, &["events", &format!("bundle/{bname}")], None)
    }));
    assert!(
        out.contains("FailedStart") && out.contains("Warning"),
        "{out}"
    );
    assert!(
        !out.contains(&format!("{name}-0")),
        "another bundle's events: {out}"
    );
    let out = stdout(&tokio::task::block_in_place(|| {
        berth(&c.p, &["describe", "bundle", &name], None)
    }));
    let events_section = out.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events_section.contains("Scheduled") && events_section.contains("Started"),
        "{out}"
    );

    // Deleting the bundle: its containers are killed, and said so.
    c.store.delete_bundle(&name, Expect::Any).await.unwrap();
    c.store.delete_bundle(&bname, Expect::Any).await.unwrap();
    eventually(Duration::from_secs(40), "Killed events", || async {
        let all = events(&c.store).await;
        (0..2)
            .all(|i| find(&all, "Killed", &format!("replica/{name}-{i}")).is_some())
            .then_some(())
    })
    .await;
}
