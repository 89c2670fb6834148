//! Placement throughput and memory at the scale the brief names: 1,000 nodes × 10,000
//! bundles × 3 replicas (replicas-per-host 1). The pure function only; no etcd.
//!
//! And the controller's view of 10,000 stored bundles, decoded on every pass or once per
//! write.
//!
//! Run: `cargo bench --bench placement`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth::controller::placement::{NodeView, Placement, ReplicaKey, place};
use berth::model::{Bundle, BundleSpec, ContainerSpec};
use criterion::{Criterion, criterion_group, criterion_main};

/// Counts live and peak heap bytes, to report the memory one placement needs.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn cluster() -> (Vec<Bundle>, Vec<NodeView>) {
    let bundles = (0..10_000)
        .map(|i| {
            Bundle::new(
                format!("b{i:05}"),
                BundleSpec {
                    docker: Some(ContainerSpec {
                        image: "img".into(),
                        replicas: Some(3),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
        })
        .collect();
    let nodes = (0..1_000)
        .map(|i| NodeView {
            name: format!("node{i:04}"),
            labels: BTreeMap::from([("zone".to_string(), format!("z{}", i % 3))]),
            ..Default::default()
        })
        .collect();
    (bundles, nodes)
}

fn current_of(p: &Placement) -> BTreeMap<ReplicaKey, String> {
    p.placed
        .iter()
        .flat_map(|(b, m)| {
            m.iter()
                .map(move |(i, n)| (ReplicaKey::new(b, *i), n.clone()))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (bundles, nodes) = cluster();
    let none: BTreeMap<ReplicaKey, String> = BTreeMap::new();
    let nohist: BTreeMap<ReplicaKey, berth::controller::placement::History> = BTreeMap::new();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let first = place(&bundles, &nodes, &none, &nohist, 0);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let placed: usize = first.placed.values().map(BTreeMap::len).sum();
    assert_eq!(placed, 30_000);
    let current = current_of(&first);
    // A node lost: its 30 replicas move; everything else stays.
    let mut fewer = nodes.clone();
    fewer.remove(0);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let after_loss = place(&bundles, &fewer, &current, &nohist, 0);
    let peak_steady = PEAK.load(Ordering::Relaxed) - before;
    let moved = current_of(&after_loss)
        .iter()
        .filter(|(k, n)| current.get(*k) != Some(*n))
        .count();
    println!(
        "placement memory: {:.1} MiB peak from empty, {:.1} MiB peak with 30,000 current; a lost node moved {moved} replicas",
        peak as f64 / (1 << 20) as f64,
        peak_steady as f64 / (1 << 20) as f64
    );

    let mut g = c.benchmark_group("placement 1000 nodes x 10000 bundles x 3");
    g.sample_size(10);
    g.bench_function("from empty", |b| {
        b.iter(|| place(&bundles, &nodes, &none, &nohist, 0))
    });
    g.bench_function("steady (nothing changed)", |b| {
        b.iter(|| place(&bundles, &nodes, &current, &nohist, 0))
    });
    g.bench_function("one node lost", |b| {
        b.iter(|| place(&bundles, &fewer, &current, &nohist, 0))
    });
    g.finish();

    // The controller's view of 10,000 stored bundles (YAML values, as `berth apply` stores
    // them): decoding every value on every reconcile, against decoding each once per write.
    let keys = berth::store::Keys::new("/bench");
    let mut cache = berth::store::watch::Cache::default();
    for (i, b) in bundles.iter().enumerate() {
        let key = keys.bundle(b.name());
        cache.items.insert(
            key.clone(),
            berth::store::Kv {
                key,
                value: berth::store::encode_bundle(b),
                create_revision: i as i64 + 1,
                mod_revision: i as i64 + 1,
                version: 1,
                lease: 0,
            },
        );
    }
    let mut tracked = berth::store::watch::Cache::tracking();
    tracked.apply(&berth::store::watch::WatchEvent::Listed {
        revision: 10_000,
        items: cache.items.values().cloned().collect(),
    });
    let mut live = berth::controller::Live::slim();
    assert_eq!(live.update(&keys, &mut tracked).bundles.len(), 10_000);
    let mut g = c.benchmark_group("controller view of 10000 stored bundles");
    g.sample_size(10);
    g.bench_function("decode every value (cold)", |b| {
        b.iter(|| berth::controller::View::read(&keys, &cache))
    });
    g.bench_function("kept up to date (nothing changed)", |b| {
        b.iter(|| live.update(&keys, &mut tracked).bundles.len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
