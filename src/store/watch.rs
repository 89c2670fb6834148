//! The one watch helper: a prefix, listed once, then watched from the revision after the list,
//! resumed from the last revision seen when the connection drops, and listed again when etcd
//! has compacted past that revision.
//!
//! Modelled on kube-runtime's watcher: an explicit state machine stepped inside
//! `futures::stream::unfold`. Errors are yielded, not fatal: the stream goes on after a
//! backoff, so a consumer logs them and keeps reading.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchStream};
use futures::Stream;

use super::{Kv, Members};

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Every key under the prefix at `revision`: the first list, and each re-list after a
    /// compaction. A key missing from it no longer exists; consumers swap their whole view.
    Listed { revision: i64, items: Vec<Kv> },
    /// A key was created or changed.
    Put(Kv),
    /// A key was deleted at `revision`.
    Deleted { key: String, revision: i64 },
}

/// A failed step. The stream retries by itself after a backoff; the consumer only reports it.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("list {prefix}: {source}")]
    List {
        prefix: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("watch {prefix} from revision {from}: {source}")]
    Watch {
        prefix: String,
        from: i64,
        #[source]
        source: etcd_client::Error,
    },
    #[error("watch {prefix} dropped at revision {at}; resuming")]
    Dropped { prefix: String, at: i64 },
}

/// Watch settings: the retry backoff, doubling from `initial` up to `max`, reset by the first
/// step that succeeds.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

enum State {
    /// Must list the prefix (at start, and after a compaction).
    List,
    /// Listed up to `rev`; `stream` is open (on member `member`), or None after a drop.
    Watch {
        rev: i64,
        stream: Option<Box<WatchStream>>,
        member: usize,
    },
}

struct Machine {
    members: Members,
    prefix: String,
    cfg: WatchConfig,
    state: State,
    pending: VecDeque<WatchEvent>,
    /// Set after a failure: wait this long before the next step.
    /// Failed steps in a row (the retry waits [`crate::backoff::Backoff::nth`] of it).
    failures: u32,
}

/// Watches every key under `prefix`: yields one [`WatchEvent::Listed`] first, then changes.
/// The watch runs on the preferred member and moves to the next when that one fails.
pub fn watch_prefix(
    members: Members,
    prefix: impl Into<String>,
    cfg: WatchConfig,
) -> impl Stream<Item = Result<WatchEvent, WatchError>> + Send + 'static {
    let m = Machine {
        members,
        prefix: prefix.into(),
        cfg,
        state: State::List,
        pending: VecDeque::new(),
        failures: 0,
    };
    futures::stream::unfold(m, |mut m| async move {
        let item = m.step().await;
        Some((item, m))
    })
}

impl Machine {
    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// The wait before the next try: none after a success, else the one backoff's.
    fn backoff(&self) -> Option<Duration> {
        let b = crate::backoff::Backoff {
            first: self.cfg.initial_backoff,
            max: self.cfg.max_backoff,
        };
        self.failures.checked_sub(1).map(|n| b.nth(n))
    }

    /// Runs until there is something to yield.
    async fn step(&mut self) -> Result<WatchEvent, WatchError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            if let Some(b) = self.backoff() {
                tokio::time::sleep(b).await;
            }
            match &self.state {
                State::List => return self.list().await,
                State::Watch {
                    rev, stream: None, ..
                } => {
                    let from = *rev + 1;
                    self.open(from).await?;
                }
                State::Watch {
                    stream: Some(_), ..
                } => self.read().await?,
            }
        }
    }

    /// Lists the prefix whole; the watch then starts after the list's revision.
    async fn list(&mut self) -> Result<WatchEvent, WatchError> {
        let (revision, items) = super::list_paged(&self.members, &self.prefix, None)
            .await
            .map_err(|source| {
                self.failed();
                WatchError::List {
                    prefix: self.prefix.clone(),
                    source,
                }
            })?;
        self.failures = 0;
        self.state = State::Watch {
            rev: revision,
            stream: None,
            member: 0,
        };
        Ok(WatchEvent::Listed { revision, items })
    }

    /// Opens a watch from revision `from` on the current member.
    async fn open(&mut self, from: i64) -> Result<(), WatchError> {
        // Fragmented: a revision with more events than one message holds arrives in
        // pieces instead of failing the stream.
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_fragment();
        let (member, client) = self.members.current().await;
        let opened = match client {
            Ok(c) => {
                super::watcher(&c)
                    .watch(self.prefix.clone(), Some(opts))
                    .await
            }
            Err(e) => Err(e),
        };
        match opened {
            Ok(s) => {
                self.state = State::Watch {
                    rev: from - 1,
                    stream: Some(Box::new(s)),
                    member,
                };
                Ok(())
            }
            Err(source) => {
                if super::members::unreachable(&source) {
                    self.members.failed(member);
                }
                self.failed();
                Err(WatchError::Watch {
                    prefix: self.prefix.clone(),
                    from,
                    source,
                })
            }
        }
    }

    /// Reads one message of the open watch into `pending`. A compacted or cancelled
    /// watch lists again; a dropped one is opened again from where it was.
    async fn read(&mut self) -> Result<(), WatchError> {
        let State::Watch {
            rev,
            stream: Some(s),
            member,
        } = &mut self.state
        else {
            return Ok(());
        };
        match s.message().await {
            Ok(Some(resp)) => {
                self.failures = 0;
                if resp.compact_revision() > 0 || resp.canceled() {
                    // The revisions we need are gone (or etcd dropped the watch): only a
                    // fresh list can tell what changed.
                    tracing::info!(
                        prefix = %self.prefix,
                        compacted = resp.compact_revision(),
                        reason = resp.cancel_reason(),
                        "watch cancelled, listing again"
                    );
                    self.state = State::List;
                    return Ok(());
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let kv = Kv::from(kv);
                    *rev = (*rev).max(kv.mod_revision);
                    self.pending.push_back(match ev.event_type() {
                        EventType::Put => WatchEvent::Put(kv),
                        EventType::Delete => WatchEvent::Deleted {
                            key: kv.key,
                            revision: kv.mod_revision,
                        },
                    });
                }
                Ok(())
            }
            Ok(None) | Err(_) => {
                let (at, member) = (*rev, *member);
                self.members.failed(member);
                self.state = State::Watch {
                    rev: at,
                    stream: None,
                    member,
                };
                self.failed();
                crate::metrics::get().watch_restarts.inc();
                Err(WatchError::Dropped {
                    prefix: self.prefix.clone(),
                    at,
                })
            }
        }
    }
}

/// A local copy of a prefix kept current by [`WatchEvent`]s (kube's reflector store).
#[derive(Debug, Default, Clone)]
pub struct Cache {
    pub items: BTreeMap<String, Kv>,
    /// The revision the copy reflects.
    pub revision: i64,
    /// Keys this process deleted ([`Cache::wrote`]) whose delete event has not come back
    /// yet, with the delete's revision: an older put of them arriving meanwhile is stale.
    deleted: BTreeMap<String, i64>,
    /// What changed since [`Cache::take_changes`], when kept ([`Cache::tracking`]).
    changes: Option<Changes>,
}

/// The keys of a [`Cache`] that changed (put at a new revision, or removed) since they
/// were last taken; `all` when a list replaced everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub all: bool,
    pub keys: std::collections::BTreeSet<String>,
}

impl Cache {
    /// A cache that keeps which keys change, for a reader that follows it key by key
    /// ([`Cache::take_changes`]): the first take says `all`.
    pub fn tracking() -> Cache {
        Cache {
            changes: Some(Changes {
                all: true,
                keys: Default::default(),
            }),
            ..Cache::default()
        }
    }

    /// The keys that changed since the last take (`all` when this cache does not track).
    pub fn take_changes(&mut self) -> Changes {
        match &mut self.changes {
            Some(c) => std::mem::take(c),
            None => Changes {
                all: true,
                ..Changes::default()
            },
        }
    }

    /// Whether this cache keeps its changes ([`Cache::tracking`]).
    pub fn tracks(&self) -> bool {
        self.changes.is_some()
    }

    fn changed(&mut self, key: &str) {
        if let Some(c) = &mut self.changes
            && !c.all
        {
            c.keys.insert(key.to_string());
        }
    }

    /// Applies writes this process committed at `revision`, before their events come back
    /// through the watch (which then applies the same again): a writer that reads its own
    /// cache does not write the same values twice while the watch lags behind. The values
    /// move into the cache (a pass's 30,000 assignments are not held twice).
    pub fn wrote(&mut self, writes: Vec<super::Write>, revision: i64) {
        for w in writes {
            match w {
                super::Write::Put { key, value, .. } => {
                    let kv = self.items.entry(key).or_insert_with_key(|key| Kv {
                        key: key.clone(),
                        value: Vec::new(),
                        create_revision: revision,
                        mod_revision: 0,
                        version: 0,
                        lease: 0,
                    });
                    if kv.mod_revision < revision {
                        kv.value = value;
                        kv.mod_revision = revision;
                        kv.version += 1;
                        let key = kv.key.clone();
                        self.changed(&key);
                    }
                }
                super::Write::Delete { key, .. } => {
                    if self
                        .items
                        .get(&key)
                        .is_some_and(|kv| kv.mod_revision < revision)
                    {
                        self.items.remove(&key);
                        self.changed(&key);
                        self.deleted.insert(key, revision);
                    }
                }
                super::Write::DeletePrefix { prefix } => {
                    let gone: Vec<String> = self
                        .items
                        .range::<str, _>((
                            std::ops::Bound::Included(prefix.as_str()),
                            std::ops::Bound::Unbounded,
                        ))
                        .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                        .filter(|(_, kv)| kv.mod_revision < revision)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in gone {
                        self.items.remove(&key);
                        self.changed(&key);
                        self.deleted.insert(key, revision);
                    }
                }
            }
        }
    }

    /// Applies one event: a list replaces everything, a put inserts, a delete removes. An
    /// event older than what the copy holds for its key (this process's own write got there
    /// first, [`Cache::wrote`]) changes nothing, nor does one at the revision it holds (a
    /// key has one value per revision: the value held stays, as a reader left it).
    pub fn apply(&mut self, ev: &WatchEvent) {
        match ev {
            WatchEvent::Listed { revision, items } => {
                self.items = items
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.clone()))
                    .collect();
                self.revision = *revision;
                self.deleted.clear();
                if let Some(c) = &mut self.changes {
                    c.all = true;
                    c.keys.clear();
                }
            }
            WatchEvent::Put(kv) => {
                self.revision = self.revision.max(kv.mod_revision);
                if let Some(&at) = self.deleted.get(&kv.key) {
                    if kv.mod_revision < at {
                        return;
                    }
                    self.deleted.remove(&kv.key);
                }
                if self
                    .items
                    .get(&kv.key)
                    .is_some_and(|kept| kept.mod_revision >= kv.mod_revision)
                {
                    return;
                }
                self.items.insert(kv.key.clone(), kv.clone());
                self.changed(&kv.key);
            }
            WatchEvent::Deleted { key, revision } => {
                self.revision = self.revision.max(*revision);
                if self.deleted.get(key).is_some_and(|at| at <= revision) {
                    self.deleted.remove(key);
                }
                if self
                    .items
                    .get(key)
                    .is_some_and(|kept| kept.mod_revision > *revision)
                {
                    return;
                }
                if self.items.remove(key).is_some() {
                    self.changed(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expect, Write};

    fn kv(key: &str, value: &str, rev: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.into(),
            create_revision: 1,
            mod_revision: rev,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn a_tracking_cache_records_the_keys_that_changed_and_not_an_echo() {
        let mut c = Cache::tracking();
        assert!(c.take_changes().all, "the first take reads everything");
        c.apply(&WatchEvent::Put(kv("a", "x", 10)));
        c.wrote(
            vec![Write::Put {
                key: "b".into(),
                value: b"y".to_vec(),
                expect: Expect::Any,
            }],
            11,
        );
        let got = c.take_changes();
        assert!(!got.all);
        assert_eq!(got.keys, ["a".to_string(), "b".to_string()].into());
        // The echo of our own write (same revision) leaves the value as held.
        c.items.get_mut("b").unwrap().value.clear();
        c.apply(&WatchEvent::Put(kv("b", "y", 11)));
        assert!(c.items["b"].value.is_empty());
        c.apply(&WatchEvent::Deleted {
            key: "zz".into(),
            revision: 12,
        });
        assert_eq!(c.take_changes(), Changes::default(), "nothing changed");
        c.wrote(vec![Write::DeletePrefix { prefix: "a".into() }], 13);
        assert_eq!(c.take_changes().keys, ["a".to_string()].into());
        c.apply(&WatchEvent::Listed {
            revision: 14,
            items: vec![kv("c", "z", 14)],
        });
        assert!(c.take_changes().all, "a list replaces everything");
        // A cache that does not track is read whole every time.
        assert!(Cache::default().take_changes().all);
    }

    #[test]
    fn own_writes_are_not_undone_by_late_events() {
        let mut c = Cache::default();
        c.apply(&WatchEvent::Put(kv("a", "x", 10)));
        let put = |v: &str| Write::Put {
            key: "a".into(),
            value: v.into(),
            expect: Expect::Any,
        };
        c.wrote(vec![put("y")], 20);
        c.wrote(vec![put("z")], 30);
        // The watch lags: the event of the write at 20 comes after the one at 30 was made.
        c.apply(&WatchEvent::Put(kv("a", "y", 20)));
        assert_eq!(c.items["a"].value, b"z");
        c.apply(&WatchEvent::Put(kv("a", "z", 30)));
        assert_eq!(c.items["a"].mod_revision, 30);
        // A delete of our own, then a late put from before it: still deleted.
        c.wrote(
            vec![Write::Delete {
                key: "a".into(),
                expect: Expect::Any,
            }],
            40,
        );
        c.apply(&WatchEvent::Put(kv("a", "z", 35)));
        assert!(!c.items.contains_key("a"));
        c.apply(&WatchEvent::Deleted {
            key: "a".into(),
            revision: 40,
        });
        // A later put by someone else is applied.
        c.apply(&WatchEvent::Put(kv("a", "new", 50)));
        assert_eq!(c.items["a"].value, b"new");
    }
}
