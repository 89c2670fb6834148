//! The etcd store against a real etcd: optimistic concurrency, and the watch helper across a
//! dropped connection and a compaction.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use berth::store::watch::{Cache, WatchConfig, WatchEvent, watch_prefix};
use berth::store::{Expect, StoreError};
use common::{PrivateEtcd, Proxy, TestPrefix, connect_checked, etcd_endpoint, eventually};
use futures::StreamExt;

fn seed() -> berth::model::Bundle {
    let xml = include_str!("../manifests/httpd-bundle.xml");
    berth::model::cib::import(xml).unwrap().bundles.remove(0)
}

#[tokio::test]
async fn two_concurrent_updates_one_wins_the_other_conflicts() {
    let p = TestPrefix::new("conflict");
    let store = p.store().await;
    let rev = store.put_bundle(&seed(), Expect::Absent).await.unwrap();
    let read = store.get_bundle("httpd-bundle").await.unwrap().unwrap();
    assert_eq!(read.mod_revision, rev);

    let mut a = read.value.clone();
    a.spec.docker.as_mut().unwrap().replicas = Some(4);
    let mut b = read.value.clone();
    b.spec.docker.as_mut().unwrap().image = "pcmk:httpd-2".into();
    let (ra, rb) = tokio::join!(
        store.put_bundle(&a, Expect::Revision(read.mod_revision)),
        store.put_bundle(&b, Expect::Revision(read.mod_revision)),
    );
    let (winner, loser) = match (&ra, &rb) {
        (Ok(_), Err(_)) => (&a, rb.unwrap_err()),
        (Err(_), Ok(_)) => (&b, ra.unwrap_err()),
        other => panic!("exactly one update must win: {other:?}"),
    };
    match loser {
        StoreError::Conflict {
            expected, found, ..
        } => {
            assert_eq!(expected, read.mod_revision);
            assert!(found > expected);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let stored = store
        .get_bundle("httpd-bundle")
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(
        stored.desired(),
        winner.desired(),
        "the winner's update is what is stored"
    );

    // A create of an existing bundle and a guarded delete of a stale revision fail too.
    assert!(matches!(
        store.put_bundle(&seed(), Expect::Absent).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store
            .delete_bundle("httpd-bundle", Expect::Revision(read.mod_revision))
            .await,
        Err(StoreError::Conflict { .. })
    ));
}

/// Reads events until the cache equals `want`, recording every put and delete revision.
async fn follow(
    events: &mut (
             impl futures::Stream<Item = Result<WatchEvent, berth::store::watch::WatchError>> + Unpin
         ),
    cache: &mut Cache,
    seen: &mut Vec<i64>,
    lists: &mut usize,
    errors: &mut usize,
    want: &BTreeMap<String, Vec<u8>>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view: BTreeMap<String, Vec<u8>> = cache
            .items
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        if &view == want {
            return;
        }
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("watch did not converge: have {view:?}, want {want:?}"))
            .expect("the watch stream never ends");
        match ev {
            Ok(ev) => {
                match &ev {
                    WatchEvent::Listed { .. } => *lists += 1,
                    WatchEvent::Put(kv) => seen.push(kv.mod_revision),
                    WatchEvent::Deleted { revision, .. } => seen.push(*revision),
                }
                cache.apply(&ev);
            }
            Err(_) => *errors += 1,
        }
    }
}

async fn snapshot(store: &berth::store::Store, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let (_, kvs) = store.list(prefix).await.unwrap();
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

#[tokio::test]
async fn watch_resumes_after_its_connection_drops_missing_and_duplicating_nothing() {
    let p = TestPrefix::new("watchdrop");
    let direct = p.store().await;
    let proxy = Proxy::start(etcd_endpoint()).await;
    let mut cfg = p.config().with_endpoints(&proxy.addr.to_string());
    cfg.keep_alive = Duration::from_millis(500);
    let behind = connect_checked(&cfg).await;
    let root = direct.keys().root();

    direct
        .put(&format!("{root}a"), b"1".to_vec(), Expect::Any)
        .await
        .unwrap();
    let cfg = WatchConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    let mut events = Box::pin(watch_prefix(behind.client(), root.clone(), cfg));
    let (mut cache, mut seen, mut lists, mut errors) = (Cache::default(), vec![], 0, 0);
    let want = snapshot(&direct, &root).await;
    follow(
        &mut events,
        &mut cache,
        &mut seen,
        &mut lists,
        &mut errors,
        &want,
    )
    .await;
    assert_eq!(lists, 1);

    let mut written = Vec::new();
    for i in 0..5 {
        written.push(
            direct
                .put(&format!("{root}k{i}"), vec![b'x'; i], Expect::Any)
                .await
                .unwrap(),
        );
    }
    let want = snapshot(&direct, &root).await;
    follow(
        &mut events,
        &mut cache,
        &mut seen,
        &mut lists,
        &mut errors,
        &want,
    )
    .await;

    proxy.sever();
    for i in 5..10 {
        written.push(
            direct
                .put(&format!("{root}k{i}"), vec![b'y'; i], Expect::Any)
                .await
                .unwrap(),
        );
    }
    written.push(
        direct
            .delete(&format!("{root}k0"), Expect::Any)
            .await
            .unwrap(),
    );
    written.push(
        direct
            .put(&format!("{root}k1"), b"changed".to_vec(), Expect::Any)
            .await
            .unwrap(),
    );
    // Wait until the watcher has noticed the cut (it yields an error), then let it back.
    eventually(
        Duration::from_secs(10),
        "the watch to notice the cut",
        || {
            let got = futures::FutureExt::now_or_never(events.next());
            let noticed = matches!(got, Some(Some(Err(_))));
            async move { noticed.then_some(()) }
        },
    )
    .await;
    proxy.restore();
    let want = snapshot(&direct, &root).await;
    follow(
        &mut events,
        &mut cache,
        &mut seen,
        &mut lists,
        &mut errors,
        &want,
    )
    .await;

    assert_eq!(lists, 1, "a resumed watch must not re-list");
    assert_eq!(
        seen, written,
        "every write seen once, in order, none missing or repeated"
    );
}

#[tokio::test]
async fn watch_relists_after_compaction() {
    // Compaction is server-wide: it runs on an etcd of this test's own.
    let etcd = PrivateEtcd::start().await;
    let p = TestPrefix::new("watchcompact");
    let direct = connect_checked(&p.config().with_endpoints(&etcd.endpoint)).await;
    let proxy = Proxy::start(etcd.endpoint.clone()).await;
    let mut cfg = p.config().with_endpoints(&proxy.addr.to_string());
    cfg.keep_alive = Duration::from_millis(500);
    let behind = connect_checked(&cfg).await;
    let root = direct.keys().root();
    for i in 0..3 {
        direct
            .put(&format!("{root}k{i}"), b"v".to_vec(), Expect::Any)
            .await
            .unwrap();
    }
    let cfg = WatchConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    let mut events = Box::pin(watch_prefix(behind.client(), root.clone(), cfg));
    let (mut cache, mut seen, mut lists, mut errors) = (Cache::default(), vec![], 0, 0);
    let want = snapshot(&direct, &root).await;
    follow(
        &mut events,
        &mut cache,
        &mut seen,
        &mut lists,
        &mut errors,
        &want,
    )
    .await;

    proxy.sever();
    direct
        .delete(&format!("{root}k0"), Expect::Any)
        .await
        .unwrap();
    direct
        .put(&format!("{root}k1"), b"new".to_vec(), Expect::Any)
        .await
        .unwrap();
    let last = direct
        .put(&format!("{root}k3"), b"v".to_vec(), Expect::Any)
        .await
        .unwrap();
    // Compact past every revision the watcher has seen: it cannot resume, only re-list.
    direct.client().compact(last, None).await.unwrap();
    proxy.restore();
    let want = snapshot(&direct, &root).await;
    follow(
        &mut events,
        &mut cache,
        &mut seen,
        &mut lists,
        &mut errors,
        &want,
    )
    .await;
    assert_eq!(lists, 2, "the compaction forces exactly one re-list");
    assert!(cache.revision >= last);
}
