//! Events, as Kubernetes records them: what happened to an object (a bundle, a replica, a
//! node), why, who saw it, when first and last, and how many times. The controller and the
//! node agents record them through a [`Recorder`]; they are written to
//! `<prefix>/events/<kind>/<name>/<id>` under a lease, so that they expire (1 h after their
//! last write by default), and read by `berth events` and `berth describe`.
//!
//! Recording never blocks and never fails the caller: notes go through a bounded channel (a
//! full channel drops the note) to a task that writes them. Repeats of one event (same
//! object, reason and message from the same source) are counted into one key, written at
//! most once per [`EventConfig::min_interval`]; all writes share a budget
//! ([`EventConfig::per_second`], [`EventConfig::burst`]); so a crash loop updates one key's
//! count every few seconds instead of flooding etcd. A write that fails is kept and tried
//! again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::store::Store;

/// Normal or Warning, as Kubernetes' event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// One word: Scheduled, Started, Killed, Restarted, FailedStart, Fenced, Promoted, …
    pub reason: String,
    /// `bundle/<name>`, `replica/<name>` or `node/<name>`.
    pub object: String,
    pub message: String,
    /// Who recorded it: `controller/<name>` or `node/<name>`.
    pub source: String,
    /// Seconds since the Unix epoch.
    pub first_timestamp: u64,
    pub last_timestamp: u64,
    pub count: u32,
}

impl Event {
    /// The key's last part: the same for every repeat of this event from this source.
    pub fn id(&self) -> String {
        let h = Sha256::digest(format!(
            "{}\0{}\0{}",
            self.source, self.reason, self.message
        ));
        crate::hex(&h[..8])
    }

    /// The bundle this event is about, for a bundle or a replica (`<bundle>-<ordinal>`).
    pub fn bundle(&self) -> Option<&str> {
        match self.object.split_once('/')? {
            ("bundle", b) => Some(b),
            ("replica", r) => r
                .rsplit_once('-')
                .filter(|(_, i)| !i.is_empty() && i.bytes().all(|c| c.is_ascii_digit()))
                .map(|(b, _)| b),
            _ => None,
        }
    }
}

/// How events are kept and limited.
#[derive(Debug, Clone, Copy)]
pub struct EventConfig {
    /// How long an event lives after its last write (default 1 h).
    pub ttl: Duration,
    /// One event's repeats are written at most this often (default 10 s).
    pub min_interval: Duration,
    /// Writes per second across all events of this recorder (default 5), and how many may
    /// go at once (default 20).
    pub per_second: u32,
    pub burst: u32,
    /// The most distinct events kept in memory (default 1,000); the oldest goes first.
    pub max_kept: usize,
    /// The most new events waiting for the write budget (default 20, one burst): past it, a new event
    /// is dropped (counted in `berth_events_dropped_total`). A change that touches thousands
    /// of replicas records the first of them, not a queue that trickles into etcd for
    /// minutes after the cluster has settled.
    pub max_pending: usize,
    /// Similar events (same source, reason and type, objects of one kind) kept apart within
    /// 10 minutes (default 10, as Kubernetes); later ones are combined into one event.
    pub max_similar: usize,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            ttl: Duration::from_secs(3600),
            min_interval: Duration::from_secs(10),
            per_second: 5,
            burst: 20,
            max_kept: 1000,
            max_pending: 20,
            max_similar: 10,
        }
    }
}

/// What a part records: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Note>,
}

#[derive(Debug)]
struct Note {
    kind: EventType,
    reason: &'static str,
    object: String,
    message: String,
    at: u64,
}

/// The notes the channel holds before new ones are dropped.
const CHANNEL: usize = 1024;

impl Recorder {
    /// Starts the writer task for `source` (`controller/<name>`, `node/<name>`).
    pub fn spawn(store: Store, source: String, cfg: EventConfig) -> Recorder {
        let (tx, rx) = mpsc::channel(CHANNEL);
        tokio::spawn(writer(store, source, cfg, rx));
        Recorder { tx }
    }

    pub fn normal(
        &self,
        reason: &'static str,
        object: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.record(EventType::Normal, reason, object.into(), message.into());
    }

    pub fn warning(
        &self,
        reason: &'static str,
        object: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.record(EventType::Warning, reason, object.into(), message.into());
    }

    /// Records a Normal `reason` with `message` for each of `objects` (`replica/<name>`),
    /// or, past [`SUMMARIZE`] of them, one for `whole` (`node/<name>`) that names them
    /// ([`each_or_summary`]).
    pub fn normal_each(
        &self,
        reason: &'static str,
        whole: &str,
        objects: Vec<String>,
        message: &str,
    ) {
        for (object, message) in each_or_summary(whole, objects, message) {
            self.record(EventType::Normal, reason, object, message);
        }
    }

    /// Records `kind` (for callers holding an [`EventType`]).
    pub fn record(&self, kind: EventType, reason: &'static str, object: String, message: String) {
        // Bounded: a message is an engine error or an agent's output at most.
        let message: String = message.chars().take(1024).collect();
        let _ = self.tx.try_send(Note {
            kind,
            reason,
            object,
            message,
            at: crate::unix_now(),
        });
    }
}

/// The most replicas one change records an event each for ([`each_or_summary`]).
pub const SUMMARIZE: usize = 3;

/// The events for one thing that happened to each of `objects` at once: one each, with
/// `message`, for up to [`SUMMARIZE`] of them; past that, one event for `whole` (the node
/// they are on) whose message counts them and names the first ten. A node agent starting
/// 30 replicas records one event that says so, not ten of them and a combined eleventh
/// naming only the last (and writes one key, not eleven).
pub fn each_or_summary(whole: &str, objects: Vec<String>, message: &str) -> Vec<(String, String)> {
    if objects.len() <= SUMMARIZE {
        return objects
            .into_iter()
            .map(|o| (o, message.to_string()))
            .collect();
    }
    const NAMED: usize = 10;
    let names: Vec<&str> = objects
        .iter()
        .take(NAMED)
        .map(|o| o.split_once('/').map_or(o.as_str(), |(_, n)| n))
        .collect();
    let more = match objects.len().saturating_sub(NAMED) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    vec![(
        whole.to_string(),
        format!(
            "{message}: {} replicas ({}{more})",
            objects.len(),
            names.join(", ")
        ),
    )]
}

/// An event in the writer's memory: the value, whether it has news to write, and when it
/// was last written.
struct Kept {
    event: Event,
    dirty: bool,
    written: Option<Instant>,
}

async fn writer(store: Store, source: String, cfg: EventConfig, mut rx: mpsc::Receiver<Note>) {
    let keys = store.keys().clone();
    let mut memory: BTreeMap<String, Kept> = BTreeMap::new();
    let mut lease: Option<(i64, Instant)> = None;
    let mut budget = crate::backoff::Bucket::new(cfg.burst, cfg.per_second);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut open = true;
    while open || memory.values().any(|h| h.dirty) {
        tokio::select! {
            note = rx.recv(), if open => match note {
                Some(n) => take(&mut memory, &source, n, &cfg),
                None => open = false,
            },
            _ = tick.tick() => {}
        }
        // Refill the budget, then write what is due within it.
        let now = Instant::now();
        let allowed = budget.available();
        let due: Vec<String> = memory
            .iter()
            .filter(|(_, h)| h.dirty && h.written.is_none_or(|w| now >= w + cfg.min_interval))
            .map(|(k, _)| k.clone())
            .take(allowed)
            .collect();
        if due.is_empty() {
            if !open {
                // Closed with only repeats waiting out their interval: write them now.
                if memory.values().any(|h| h.dirty) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            continue;
        }
        // A lease per sixth of the TTL: each event lives between 5/6 TTL and the TTL after
        // its last write, and no keep-alive runs.
        let lease_id = match lease {
            Some((id, at)) if now < at + cfg.ttl / 6 => id,
            _ => match store.grant_lease(cfg.ttl).await {
                Ok(id) => {
                    lease = Some((id, now));
                    id
                }
                Err(e) => {
                    tracing::debug!("events: {e}");
                    continue;
                }
            },
        };
        let writes: Vec<(String, Vec<u8>)> = due
            .iter()
            .map(|k| {
                let value = serde_json::to_vec(&memory[k].event).expect("an event serializes");
                (keys.event(k), value)
            })
            .collect();
        budget.spend(writes.len());
        match store.put_leased(writes, lease_id).await {
            Ok(_) => {
                for k in &due {
                    if let Some(h) = memory.get_mut(k) {
                        h.dirty = false;
                        h.written = Some(now);
                    }
                }
            }
            Err(e) => {
                tracing::debug!("events: {e}");
                lease = None;
            }
        }
        // Forget what has expired in etcd anyway.
        memory.retain(|_, h| h.dirty || h.written.is_none_or(|w| now < w + cfg.ttl));
    }
}

/// Similar events (one source, reason and type, objects of one kind) past
/// [`EventConfig::max_similar`] within [`SIMILAR_WINDOW`] seconds are combined into one, as
/// Kubernetes' event aggregator does: `event` becomes that event (its message prefixed with
/// "(combined from similar events): ", its object the latest one) and its key is returned.
/// A node starting 30 replicas writes 10 events and one combined event, not 30.
fn combine(
    memory: &BTreeMap<String, Kept>,
    event: &mut Event,
    cfg: &EventConfig,
) -> Option<String> {
    let kind = object_kind(&event.object);
    let similar = memory
        .iter()
        .filter(|(k, h)| {
            !k.contains(COMBINED)
                && h.event.kind == event.kind
                && h.event.reason == event.reason
                && object_kind(&h.event.object) == kind
                && h.event.first_timestamp + SIMILAR_WINDOW >= event.first_timestamp
        })
        .count();
    if similar < cfg.max_similar {
        return None;
    }
    event.message = format!("(combined from similar events): {}", event.message);
    let h = Sha256::digest(format!(
        "{}\0{}\0{:?}\0combined",
        event.source, event.reason, event.kind
    ));
    Some(format!("{kind}/{COMBINED}/{}", crate::hex(&h[..8])))
}

/// `replica` of `replica/web-1`.
fn object_kind(object: &str) -> &str {
    object.split_once('/').map_or("", |(k, _)| k)
}

/// The name part of a combined event's key (`<kind>/~combined/<id>`): no object is named
/// so (`~` is in no bundle or node name).
const COMBINED: &str = "~combined";

/// How far back (seconds) similar events are counted ([`combine`]): 10 minutes, as Kubernetes.
pub const SIMILAR_WINDOW: u64 = 600;

/// Counts a note into memory (the oldest dropped when full; a new one dropped when
/// too many new ones wait already).
fn take(memory: &mut BTreeMap<String, Kept>, source: &str, n: Note, cfg: &EventConfig) {
    let max = cfg.max_kept;
    let mut event = Event {
        kind: n.kind,
        reason: n.reason.to_string(),
        object: n.object,
        message: n.message,
        source: source.to_string(),
        first_timestamp: n.at,
        last_timestamp: n.at,
        count: 1,
    };
    let key = format!("{}/{}", event.object, event.id());
    let key = match memory.contains_key(&key) {
        true => key,
        false => match combine(memory, &mut event, cfg) {
            Some(combined) => combined,
            None => key,
        },
    };
    match memory.get_mut(&key) {
        Some(h) => {
            h.event.object = event.object;
            h.event.message = event.message;
            h.event.count = h.event.count.saturating_add(1);
            h.event.last_timestamp = n.at;
            h.dirty = true;
        }
        None => {
            let pending = memory.values().filter(|h| h.written.is_none()).count();
            if pending >= cfg.max_pending {
                crate::metrics::get().events_dropped.inc();
                tracing::debug!(
                    "events: {} new ones wait already; dropped {} {}",
                    pending,
                    event.reason,
                    event.object
                );
                return;
            }
            if memory.len() >= max
                && let Some(oldest) = memory
                    .iter()
                    .min_by_key(|(_, h)| h.event.last_timestamp)
                    .map(|(k, _)| k.clone())
            {
                memory.remove(&oldest);
            }
            event.count = 1;
            memory.insert(
                key,
                Kept {
                    event,
                    dirty: true,
                    written: None,
                },
            );
        }
    }
}

/// Every stored event (under `<prefix>/events/`), oldest last-seen first; values that do
/// not decode are skipped.
pub async fn list(store: &Store) -> Result<Vec<Event>, crate::store::StoreError> {
    let (_, kvs) = store.list(&store.keys().events()).await?;
    let mut out: Vec<Event> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    out.sort_by_key(|e: &Event| (e.last_timestamp, e.first_timestamp));
    Ok(out)
}

/// How long ago `then` was, as kubectl prints ages (`5s`, `3m`, `2h`, `4d`).
pub fn age(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_replicas_get_an_event_each_many_one_for_their_node() {
        let replicas = |n: usize| (0..n).map(|i| format!("replica/b{i}-0")).collect();
        let few = each_or_summary("node/n1", replicas(3), "started on n1");
        assert_eq!(few.len(), 3);
        assert_eq!(few[2], ("replica/b2-0".into(), "started on n1".into()));
        let many = each_or_summary("node/n1", replicas(12), "started on n1");
        assert_eq!(
            many,
            [(
                "node/n1".to_string(),
                "started on n1: 12 replicas (b0-0, b1-0, b2-0, b3-0, b4-0, b5-0, b6-0, b7-0, \
                 b8-0, b9-0 and 2 more)"
                    .to_string()
            )]
        );
    }

    fn note(reason: &'static str, object: &str, message: &str, at: u64) -> Note {
        Note {
            kind: EventType::Warning,
            reason,
            object: object.into(),
            message: message.into(),
            at,
        }
    }

    #[test]
    fn repeats_are_counted_into_one_event() {
        let mut memory = BTreeMap::new();
        let cfg = EventConfig {
            max_kept: 10,
            ..EventConfig::default()
        };
        for at in 0..50 {
            take(
                &mut memory,
                "node/n1",
                note("FailedStart", "replica/web-1", "no such image", at),
                &cfg,
            );
        }
        take(
            &mut memory,
            "node/n1",
            note("Started", "replica/web-1", "started", 60),
            &cfg,
        );
        assert_eq!(memory.len(), 2);
        let failed = memory
            .values()
            .find(|h| h.event.reason == "FailedStart")
            .unwrap();
        assert_eq!(failed.event.count, 50);
        assert_eq!(
            (failed.event.first_timestamp, failed.event.last_timestamp),
            (0, 49)
        );
    }

    #[test]
    fn similar_events_past_ten_are_combined_into_one() {
        let mut memory = BTreeMap::new();
        let cfg = EventConfig {
            max_pending: 100,
            ..EventConfig::default()
        };
        for i in 0..30u64 {
            let n = note("Started", &format!("replica/b{i}-0"), "started", i);
            take(&mut memory, "node/n1", n, &cfg);
        }
        // Another reason, and another kind of object, are not similar.
        take(
            &mut memory,
            "node/n1",
            note("Killed", "replica/b0-0", "killed", 30),
            &cfg,
        );
        take(
            &mut memory,
            "node/n1",
            note("Started", "node/n1", "up", 30),
            &cfg,
        );
        assert_eq!(memory.len(), 13);
        let combined: Vec<&Event> = memory
            .values()
            .map(|h| &h.event)
            .filter(|e| e.message.starts_with("(combined from similar events): "))
            .collect();
        assert_eq!(combined.len(), 1);
        let c = combined[0];
        assert_eq!((c.count, c.object.as_str()), (20, "replica/b29-0"));
        assert_eq!((c.first_timestamp, c.last_timestamp), (10, 29));
        assert_eq!(c.bundle(), Some("b29"));
        // Ten minutes later, events are kept apart again.
        take(
            &mut memory,
            "node/n1",
            note("Started", "replica/x-0", "started", 700),
            &cfg,
        );
        assert!(memory.keys().any(|k| k.starts_with("replica/x-0/")));
    }

    #[test]
    fn the_oldest_event_goes_when_full() {
        let mut memory = BTreeMap::new();
        let cfg = EventConfig {
            max_kept: 3,
            ..EventConfig::default()
        };
        for i in 0..5u64 {
            take(
                &mut memory,
                "c",
                note("Scheduled", &format!("replica/web-{i}"), "m", i),
                &cfg,
            );
            // Written: no longer waiting.
            memory
                .values_mut()
                .for_each(|h| h.written = Some(Instant::now()));
        }
        let objects: Vec<&str> = memory.values().map(|h| h.event.object.as_str()).collect();
        assert_eq!(objects.len(), 3);
        assert!(!objects.contains(&"replica/web-0") && objects.contains(&"replica/web-4"));
    }

    #[test]
    fn new_events_past_the_backlog_are_dropped_repeats_still_count() {
        let mut memory = BTreeMap::new();
        let cfg = EventConfig {
            max_pending: 3,
            ..EventConfig::default()
        };
        for i in 0..10u64 {
            take(
                &mut memory,
                "c",
                note("Scheduled", &format!("replica/web-{i}"), "m", i),
                &cfg,
            );
        }
        assert_eq!(memory.len(), 3);
        take(
            &mut memory,
            "c",
            note("Scheduled", "replica/web-0", "m", 20),
            &cfg,
        );
        let first = memory
            .values()
            .find(|h| h.event.object == "replica/web-0")
            .unwrap();
        assert_eq!(first.event.count, 2);
    }

    #[test]
    fn an_event_knows_its_bundle() {
        let e = |object: &str| Event {
            kind: EventType::Normal,
            reason: "r".into(),
            object: object.into(),
            message: String::new(),
            source: "s".into(),
            first_timestamp: 0,
            last_timestamp: 0,
            count: 1,
        };
        assert_eq!(e("replica/web-x-12").bundle(), Some("web-x"));
        assert_eq!(e("bundle/web").bundle(), Some("web"));
        assert_eq!(e("node/n1").bundle(), None);
        assert_eq!(e("replica/web-").bundle(), None);
        assert_eq!(age(100, 40), "60s");
        assert_eq!(age(10_000, 0), "2h");
    }
}
