//! What the console's pages read: the cluster as one watch of the prefix shows it (the
//! controller's [`View`], read through the same code as `berth status`), the events, the
//! leading controller and the nodes' attributes; and a few numbers sampled every few
//! seconds for the charts. [`follow`] keeps it current and tells the live pages.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::controller::View;
use crate::events::Event;
use crate::model::attributes::Section;
use crate::model::cluster::ReplicaState;
use crate::store::keys::Key;
use crate::store::watch::{Cache, WatchConfig, WatchEvent, watch_prefix};
use crate::store::{Keys, Store};

/// The cluster as last read.
pub struct Snapshot {
    /// The etcd revision it reflects (0 before the first list).
    pub revision: i64,
    pub view: View,
    /// Events, oldest first (by last time).
    pub events: Vec<Event>,
    /// The leading controller's name, when one leads.
    pub leader: Option<String>,
    /// Node attributes by node: (section, name, value); permanent and transient.
    pub attributes: BTreeMap<String, Vec<(Section, String, String)>>,
    /// The watch's last error, while it retries (cleared by the next change).
    pub error: Option<String>,
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot {
            revision: 0,
            view: View::read(&Keys::new("/"), &Cache::default()),
            events: Vec::new(),
            leader: None,
            attributes: BTreeMap::new(),
            error: None,
        }
    }

    /// Reads everything the pages show from a cache of the prefix.
    pub fn read(keys: &Keys, cache: &Cache) -> Snapshot {
        let mut events: Vec<Event> = cache
            .items
            .range(keys.events()..)
            .take_while(|(k, _)| k.starts_with(&keys.events()))
            .filter_map(|(_, kv)| serde_json::from_slice(&kv.value).ok())
            .collect();
        events.sort_by_key(|e| (e.last_timestamp, e.first_timestamp));
        let mut attributes: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for (key, kv) in cache.items.range(keys.all_attributes()..) {
            if !key.starts_with(&keys.all_attributes()) {
                break;
            }
            if let Some(Key::Attribute {
                section: section @ (Section::Nodes | Section::Status),
                owner,
                name,
            }) = keys.parse(key)
            {
                let value = String::from_utf8_lossy(&kv.value).into_owned();
                let node = attributes.entry(owner.to_string()).or_default();
                node.push((section, name.to_string(), value));
            }
        }
        // etcd's election: the candidate whose key was created first leads.
        let election = format!("{}/", keys.election());
        let leader = cache
            .items
            .range(election.clone()..)
            .take_while(|(k, _)| k.starts_with(&election))
            .min_by_key(|(_, kv)| kv.create_revision)
            .map(|(_, kv)| String::from_utf8_lossy(&kv.value).into_owned());
        Snapshot {
            revision: cache.revision,
            view: View::read(keys, cache),
            events,
            leader,
            attributes,
            error: None,
        }
    }

    /// Replicas running now and failed now, as the pages show them, and restarts so far
    /// (over all replicas).
    pub fn counts(&self) -> (u64, u64, u64) {
        let (mut running, mut failed) = (0, 0);
        for b in self.view.bundles.values() {
            let rows = super::pages::rows_of(self, b.name());
            for i in 0..b.spec.replicas() {
                match super::pages::replica_text(self, b, rows, i).state {
                    ReplicaState::Running => running += 1,
                    ReplicaState::Failed => failed += 1,
                    _ => {}
                }
            }
        }
        let restarts = self
            .view
            .statuses
            .values()
            .map(|s| u64::from(s.restart_count))
            .sum();
        (running, failed, restarts)
    }
}

/// One sample for the charts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Unix seconds.
    pub at: u64,
    pub running: u64,
    pub failed: u64,
    /// Container restarts so far (all replicas), and fences recorded (events' counts).
    pub restarts: u64,
    pub fences: u64,
    /// The mean reconcile pass since the last sample (ms), when this process leads.
    pub reconcile_ms: Option<f64>,
}

/// How often the charts are sampled, and how many samples they keep (15 minutes).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const SAMPLES: usize = 180;

/// The snapshot and the samples, shared by the follower and the pages.
pub struct Shared {
    pub snapshot: RwLock<Arc<Snapshot>>,
    pub samples: RwLock<VecDeque<Sample>>,
    /// The revision of each new snapshot, for the live pages.
    pub changed: tokio::sync::watch::Sender<i64>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: RwLock::new(Arc::new(Snapshot::empty())),
            samples: RwLock::new(VecDeque::new()),
            changed: tokio::sync::watch::channel(0).0,
        })
    }

    /// The snapshot now (cheap: shared).
    pub fn now(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn publish(&self, snap: Snapshot) {
        let revision = snap.revision;
        match self.snapshot.write() {
            Ok(mut s) => *s = Arc::new(snap),
            Err(e) => *e.into_inner() = Arc::new(snap),
        }
        self.changed.send_replace(revision);
    }

    fn sample(&self, prev: &mut (u64, u64)) {
        let snap = self.now();
        let (running, failed, restarts) = snap.counts();
        let fences = snap
            .events
            .iter()
            .filter(|e| e.reason == "Fenced")
            .map(|e| u64::from(e.count))
            .sum();
        let m = crate::metrics::get();
        let (n, us) = (
            m.reconciles.get(),
            m.reconcile_micros
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let reconcile_ms = (n > prev.0).then(|| (us - prev.1) as f64 / (n - prev.0) as f64 / 1e3);
        *prev = (n, us);
        let sample = Sample {
            at: crate::unix_now(),
            running,
            failed,
            restarts,
            fences,
            reconcile_ms,
        };
        let mut samples = self.samples.write().unwrap_or_else(|e| e.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }
}

/// The fewest milliseconds between two snapshots: a burst of writes (a node's 100 replica
/// statuses) makes one, and a change still shows within a second.
const SETTLE: Duration = Duration::from_millis(200);

/// Follows the prefix until `shutdown`: each change (after [`SETTLE`]) becomes the shared
/// snapshot; every [`SAMPLE_EVERY`] a sample is taken.
pub async fn follow(store: Store, shared: Arc<Shared>, shutdown: CancellationToken) {
    let keys = store.keys().clone();
    let mut changes = Box::pin(watch_prefix(
        store.members().clone(),
        keys.root(),
        WatchConfig::default(),
    ));
    let mut cache = Cache::default();
    let mut sampling = tokio::time::interval(SAMPLE_EVERY);
    let mut prev = (0, 0);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sampling.tick() => shared.sample(&mut prev),
            ev = changes.next() => {
                let Some(ev) = ev else { return };
                let mut error = take(&mut cache, ev);
                let settle = tokio::time::sleep(SETTLE);
                tokio::pin!(settle);
                // Everything that arrives while settling goes into the same snapshot.
                loop {
                    tokio::select! {
                        _ = &mut settle => break,
                        ev = changes.next() => match ev {
                            Some(ev) => error = take(&mut cache, ev).or(error),
                            None => return,
                        },
                    }
                }
                while let Some(Some(ev)) = changes.next().now_or_never() {
                    error = take(&mut cache, ev).or(error);
                }
                let mut snap = Snapshot::read(&keys, &cache);
                snap.error = error;
                shared.publish(snap);
            }
        }
    }
}

/// Applies one watch item to the cache; its error, if it is one.
fn take(
    cache: &mut Cache,
    ev: Result<WatchEvent, crate::store::watch::WatchError>,
) -> Option<String> {
    match ev {
        Ok(ev) => {
            cache.apply(&ev);
            None
        }
        Err(e) => Some(e.to_string()),
    }
}
