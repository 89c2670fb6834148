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

/// A watch under test, with what it has seen: put and delete revisions, lists, errors.
struct Watcher {
    events: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<WatchEvent, berth::store::watch::WatchError>> + Send>,
    >,
    cache: Cache,
    seen: Vec<i64>,
    lists: usize,
    errors: usize,
}

impl Watcher {
    /// Watches `root` through a store behind a cuttable proxy to `endpoint` (fast retries).
    async fn behind_proxy(p: &TestPrefix, endpoint: &str, root: &str) -> (Watcher, Proxy) {
        let proxy = Proxy::start(endpoint.to_string()).await;
        let mut cfg = p.config().with_endpoints(&proxy.addr.to_string());
        cfg.keep_alive = Duration::from_millis(500);
        cfg.keep_alive_timeout = Duration::from_millis(500);
        let behind = connect_checked(&cfg).await;
        let wcfg = WatchConfig {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        };
        let w = Watcher {
            events: Box::pin(watch_prefix(
                behind.members().clone(),
                root.to_string(),
                wcfg,
            )),
            cache: Cache::default(),
            seen: Vec::new(),
            lists: 0,
            errors: 0,
        };
        (w, proxy)
    }

    /// Reads events until the cache equals `want`, recording what it sees.
    async fn follow(&mut self, want: &BTreeMap<String, Vec<u8>>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let view: BTreeMap<String, Vec<u8>> = self
                .cache
                .items
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect();
            if &view == want {
                return;
            }
            let ev = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("watch did not converge: have {view:?}, want {want:?}"))
                .expect("the watch stream never ends");
            match ev {
                Ok(ev) => {
                    match &ev {
                        WatchEvent::Listed { .. } => self.lists += 1,
                        WatchEvent::Put(kv) => self.seen.push(kv.mod_revision),
                        WatchEvent::Deleted { revision, .. } => self.seen.push(*revision),
                    }
                    self.cache.apply(&ev);
                }
                Err(_) => self.errors += 1,
            }
        }
    }
}

async fn snapshot(store: &berth::store::Store, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let (_, kvs) = store.list(prefix).await.unwrap();
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

async fn put(store: &berth::store::Store, key: String, value: &[u8]) -> i64 {
    store.put(&key, value.to_vec(), Expect::Any).await.unwrap()
}

#[tokio::test]
async fn watch_resumes_after_its_connection_drops_missing_and_duplicating_nothing() {
    let p = TestPrefix::new("watchdrop");
    let direct = p.store().await;
    let root = direct.keys().root();
    put(&direct, format!("{root}a"), b"1").await;
    let (mut w, proxy) = Watcher::behind_proxy(&p, &etcd_endpoint(), &root).await;
    w.follow(&snapshot(&direct, &root).await).await;
    assert_eq!(w.lists, 1);

    let mut written = Vec::new();
    for i in 0..5 {
        written.push(put(&direct, format!("{root}k{i}"), &vec![b'x'; i]).await);
    }
    w.follow(&snapshot(&direct, &root).await).await;

    proxy.sever();
    for i in 5..10 {
        written.push(put(&direct, format!("{root}k{i}"), &vec![b'y'; i]).await);
    }
    written.push(
        direct
            .delete(&format!("{root}k0"), Expect::Any)
            .await
            .unwrap(),
    );
    written.push(put(&direct, format!("{root}k1"), b"changed").await);
    // Wait until the watcher has noticed the cut (it yields an error), then let it back.
    eventually(
        Duration::from_secs(10),
        "the watch to notice the cut",
        || {
            let got = futures::FutureExt::now_or_never(w.events.next());
            let noticed = matches!(got, Some(Some(Err(_))));
            async move { noticed.then_some(()) }
        },
    )
    .await;
    proxy.restore();
    w.follow(&snapshot(&direct, &root).await).await;

    assert_eq!(w.lists, 1, "a resumed watch must not re-list");
    assert_eq!(
        w.seen, written,
        "every write seen once, in order, none missing or repeated"
    );
}

#[tokio::test]
async fn watch_relists_after_compaction() {
    // Compaction is server-wide: it runs on an etcd of this test's own.
    let etcd = PrivateEtcd::start().await;
    let p = TestPrefix::new("watchcompact");
    let direct = connect_checked(&p.config().with_endpoints(&etcd.endpoint)).await;
    let root = direct.keys().root();
    for i in 0..3 {
        put(&direct, format!("{root}k{i}"), b"v").await;
    }
    let (mut w, proxy) = Watcher::behind_proxy(&p, &etcd.endpoint, &root).await;
    w.follow(&snapshot(&direct, &root).await).await;

    proxy.sever();
    direct
        .delete(&format!("{root}k0"), Expect::Any)
        .await
        .unwrap();
    put(&direct, format!("{root}k1"), b"new").await;
    let last = put(&direct, format!("{root}k3"), b"v").await;
    // Compact past every revision the watcher has seen: it cannot resume, only re-list.
    let (_, client) = direct.members().current().await;
    client.unwrap().compact(last, None).await.unwrap();
    proxy.restore();
    w.follow(&snapshot(&direct, &root).await).await;
    assert_eq!(w.lists, 2, "the compaction forces exactly one re-list");
    assert!(w.cache.revision >= last);
}

#[tokio::test]
async fn a_guarded_commit_writes_only_while_its_guard_key_exists() {
    let p = TestPrefix::new("guard");
    let store = p.store().await;
    let root = store.keys().root();
    let (guard, key) = (format!("{root}leader"), format!("{root}data"));
    let write = || {
        vec![berth::store::Write::Put {
            key: key.clone(),
            value: b"v".to_vec(),
            expect: Expect::Any,
        }]
    };
    let refused = store.commit_guarded(&write(), Some(&guard)).await;
    assert!(
        matches!(refused, Err(StoreError::TxnConflict { .. })),
        "{refused:?}"
    );
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "nothing written without the guard"
    );
    put(&store, guard.clone(), b"me").await;
    store.commit_guarded(&write(), Some(&guard)).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_some());
}

#[tokio::test]
async fn a_prefix_delete_takes_every_key_under_it_and_no_sibling() {
    use berth::store::Write;
    let p = TestPrefix::new("delprefix");
    let store = p.store().await;
    let keys = store.keys().clone();
    let mut items = Vec::new();
    for node in ["n1", "n10"] {
        for bundle in ["a", "b", "c"] {
            items.push((keys.assignment(node, bundle), b"{}".to_vec()));
        }
    }
    store.put_many(items).await.unwrap();
    let mut cache = Cache::default();
    for (key, value) in snapshot(&store, &keys.root()).await {
        let kv = berth::store::Kv::first_write(key.clone(), value, 1);
        cache.items.insert(key, kv);
    }
    let gone = [Write::DeletePrefix {
        prefix: keys.assignments("n1"),
    }];
    let rev = store.commit(gone.to_vec()).await.unwrap();
    cache.wrote(gone.to_vec(), rev);
    let left: Vec<String> = snapshot(&store, &keys.root()).await.into_keys().collect();
    let want: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|b| keys.assignment("n10", b))
        .collect();
    assert_eq!(left, want, "n1's keys go, n10's stay");
    // The writer's own cache agrees with etcd before the watch tells it.
    assert_eq!(cache.items.keys().cloned().collect::<Vec<_>>(), want);
}
