//! The controller (`berth controller`): turns bundles into per-node assignments, keeps them
//! right as nodes and replicas come and go, and writes each bundle's status. Several may run;
//! one leads through an etcd election, the others wait in it.
//!
//! - [`placement`]: where every replica runs (pure, deterministic);
//! - this file: the election, one watch of the whole prefix into a cache, and a reconcile
//!   that reads the cache, places, and writes only what changed.

pub mod notify;
pub mod pacing;
pub mod placement;
pub mod reconcile;
pub mod rollout;
pub mod status;
pub mod view;
pub mod whatif;

pub use status::{Candidate, pick_promoted};
pub use view::{Live, View};

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::lease::keep_alive;
use crate::store::watch::{Cache, WatchConfig, watch_prefix};
use crate::store::{Keys, Store, StoreError, Write, batches};

/// A watch event without the keys under `prefix` (None when nothing is left of it).
fn without_prefix(
    ev: crate::store::watch::WatchEvent,
    prefix: &str,
) -> Option<crate::store::watch::WatchEvent> {
    use crate::store::watch::WatchEvent;
    match ev {
        WatchEvent::Listed {
            revision,
            mut items,
        } => {
            items.retain(|kv| !kv.key.starts_with(prefix));
            Some(WatchEvent::Listed { revision, items })
        }
        WatchEvent::Put(kv) if kv.key.starts_with(prefix) => None,
        WatchEvent::Deleted { ref key, .. } if key.starts_with(prefix) => None,
        ev => Some(ev),
    }
}

/// The CPU time this thread has used, where the platform tells.
fn thread_cpu() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes only the timespec it is given.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
        ok.then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(unix))]
    None
}

/// Gives the pages a pass freed back to the system (glibc keeps them otherwise: a pass over
/// 30,000 replicas builds and drops tens of MB, and the holes it leaves stay resident).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This controller's name in the election (default: host name and pid).
    pub name: String,
    /// Leadership lease TTL (default 5 s): a standby takes over this long after a leader
    /// dies.
    pub lease_ttl: Duration,
    /// A full reconcile this often without events (default 10 s), skipped when nothing
    /// changed since the last successful one (failure-timeout expiry comes back by itself,
    /// through the reconcile's requeue time; the rest is event driven).
    pub resync: Duration,
    /// Where to serve /metrics, /healthz and /readyz (none by default; the CLI gives one).
    pub metrics: Option<std::net::SocketAddr>,
}

impl ControllerConfig {
    pub fn new(name: impl Into<String>) -> Self {
        ControllerConfig {
            name: name.into(),
            lease_ttl: Duration::from_secs(5),
            resync: Duration::from_secs(10),
            metrics: None,
        }
    }
}

use crate::unix_now;

/// Campaigns for leadership and leads until `shutdown`; a controller that loses its lease
/// stops acting and campaigns again.
pub async fn run(
    store: Store,
    cfg: ControllerConfig,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let election = store.keys().election();
    // Ready while it can campaign or lead (etcd answers): a standby is ready to take over.
    let ready = crate::metrics::Ready::default();
    crate::metrics::spawn(cfg.metrics, ready.clone());
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let lease = match store.grant_lease(cfg.lease_ttl).await {
            Ok(l) => {
                ready.set(true);
                l
            }
            Err(e) => {
                ready.set(false);
                tracing::warn!("controller: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(cfg.lease_ttl / 3) => continue,
                }
            }
        };
        let (renewed_tx, _renewed) = watch::channel(tokio::time::Instant::now());
        let leading = CancellationToken::new();
        // Stops the keep-alive when this round ends (shutdown, or a failed campaign).
        let round = shutdown.child_token();
        let lease_task = {
            let (store, round, leading) = (store.clone(), round.clone(), leading.clone());
            let ttl = cfg.lease_ttl;
            tokio::spawn(async move {
                let end = keep_alive(&store, lease, ttl, Some(ttl), &renewed_tx, &round).await;
                leading.cancel();
                end
            })
        };
        tracing::info!(name = %cfg.name, "campaigning for leadership");
        let campaign = store.members().call(|mut c| {
            let (election, name) = (election.clone(), cfg.name.clone());
            async move { c.campaign(election, name, lease).await }
        });
        let won = tokio::select! {
            _ = leading.cancelled() => None,
            r = campaign => match r {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(name = %cfg.name, "controller: campaign: {e}");
                    None
                }
            },
        };
        if let Some(resp) = won {
            lead_and_resign(&store, &cfg, resp, &leading).await;
        }
        leading.cancel();
        round.cancel();
        let _ = lease_task.await;
        let _ = store.revoke_lease(lease).await;
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

/// Leads while `leading` holds, then resigns (so that a standby takes over at once rather
/// than when the lease runs out).
async fn lead_and_resign(
    store: &Store,
    cfg: &ControllerConfig,
    won: etcd_client::CampaignResponse,
    leading: &CancellationToken,
) {
    tracing::info!(name = %cfg.name, "leading");
    let mut c = Controller::new(store.clone(), cfg.clone());
    c.leader_key = won
        .leader()
        .map(|k| String::from_utf8_lossy(k.key()).into_owned());
    c.lead(leading).await;
    if let Some(key) = won.leader().cloned() {
        let _ = store
            .members()
            .call(|mut c| {
                let key = key.clone();
                async move {
                    c.resign(Some(etcd_client::ResignOptions::new().with_leader(key)))
                        .await
                }
            })
            .await;
    }
    tracing::info!(name = %cfg.name, "no longer leading");
}

/// The leader's state: a cache of everything under the prefix, and what it wrote last.
struct Controller {
    store: Store,
    keys: Keys,
    cfg: ControllerConfig,
    cache: Cache,
    /// This leader's election key: every write is guarded by its existence.
    leader_key: Option<String>,
    /// The cluster as the cache shows it, brought up to date key by key before each pass.
    live: Live,
    events: crate::events::Recorder,
    /// The bundles whose status the last pass held back ([`reconcile::Outcome::deferred`]).
    deferred: std::collections::BTreeSet<String>,
}

impl Controller {
    fn new(store: Store, cfg: ControllerConfig) -> Self {
        Controller {
            keys: store.keys().clone(),
            cache: Cache::tracking(),
            leader_key: None,
            live: Live::slim(),
            deferred: Default::default(),
            events: crate::events::Recorder::spawn(
                store.clone(),
                format!("controller/{}", cfg.name),
                crate::events::EventConfig::default(),
            ),
            store,
            cfg,
        }
    }

    async fn lead(&mut self, leading: &CancellationToken) {
        let mut events = Box::pin(watch_prefix(
            self.store.members().clone(),
            self.keys.root(),
            WatchConfig::default(),
        ));
        let mut synced = false;
        let mut resync = tokio::time::interval(self.cfg.resync);
        // When passes run: after news, a retry or a requeue, no sooner after the last than
        // it took (see `pacing`).
        let mut pacing = pacing::Pacing::default();
        loop {
            let mut wake = pacing::Wake::News;
            tokio::select! {
                _ = leading.cancelled() => return,
                _ = crate::sleep_until(pacing.hold_until()), if pacing.hold_until().is_some() => {
                    wake = pacing::Wake::HoldOver;
                }
                _ = crate::sleep_until(pacing.timer_at()), if pacing.timer_at().is_some() => {
                    wake = pacing::Wake::Timer;
                }
                ev = events.next() => {
                    self.take(ev, &mut synced);
                    while let Some(ev) = events.next().now_or_never() {
                        self.take(ev, &mut synced);
                    }
                }
                _ = resync.tick() => {}
            }
            if !pacing.should_pass(wake, self.cache.revision, tokio::time::Instant::now()) {
                continue;
            }
            if synced && !leading.is_cancelled() {
                self.pass(&mut pacing).await;
            }
        }
    }

    /// Takes one watch event into the cache. Events are not the controller's input: they
    /// neither fill its cache nor wake a pass.
    fn take(
        &mut self,
        ev: Option<Result<crate::store::watch::WatchEvent, crate::store::watch::WatchError>>,
        synced: &mut bool,
    ) {
        match ev {
            Some(Ok(ev)) => {
                let Some(ev) = without_prefix(ev, &self.keys.events()) else {
                    return;
                };
                if matches!(ev, crate::store::watch::WatchEvent::Listed { .. }) {
                    *synced = true;
                }
                self.cache.apply(&ev);
            }
            Some(Err(e)) => tracing::warn!("controller watch: {e}"),
            None => {}
        }
    }

    /// One pass: the view brought up to date, reconciled, its writes committed (guarded by
    /// the leader key) and its events recorded; `pacing` told how it went.
    #[tracing::instrument(name = "pass", skip_all, fields(leader = %self.cfg.name, revision = self.cache.revision))]
    async fn pass(&mut self, pacing: &mut pacing::Pacing) {
        let started = std::time::Instant::now();
        let cpu = thread_cpu();
        let view = self.live.update(&self.keys, &mut self.cache);
        view.deferred = Some(std::mem::take(&mut self.deferred));
        let read = started.elapsed();
        let now = unix_now();
        let outcome = reconcile::reconcile(&self.keys, view, &self.cache.items, now);
        // The pass's own CPU (its wall time counts the cores it waited for too: with etcd
        // and agents busy, passes of 0.4 s CPU took 1 s, and waiting as long again doubled
        // that delay).
        let cost = match (cpu, thread_cpu()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => started.elapsed(),
        };
        tracing::debug!(
            "reconcile pass: view read in {read:?}, decided in {:?} ({cost:?} CPU)",
            started.elapsed() - read
        );
        // A ban running out changes placement without an event: come back then.
        let requeue = outcome
            .requeue_at
            .map(|at| tokio::time::Instant::now() + Duration::from_secs(at.saturating_sub(now)));
        // Statuses held back are written by the next pass, event or not.
        let again = !outcome.deferred.is_empty();
        self.deferred = outcome.deferred;
        let seen = self.cache.revision;
        let metrics = crate::metrics::get();
        metrics.reconciles.inc();
        if !outcome.writes.is_empty() {
            tracing::debug!(
                revision = seen,
                "reconcile: {} writes",
                outcome.writes.len()
            );
        }
        let writing = std::time::Instant::now();
        let committed = self.commit(outcome.writes).await;
        tracing::debug!("reconcile: committed in {:?}", writing.elapsed());
        if committed.is_ok() {
            for (kind, reason, object, message) in outcome.events {
                self.events.record(kind, reason, object, message);
            }
        }
        metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.reconcile_micros.fetch_add(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        release_freed_memory();
        let now = tokio::time::Instant::now();
        let retry = pacing.passed(seen, cost, requeue, again, committed.is_ok(), now);
        if let (Err(e), Some(wait)) = (committed, retry) {
            tracing::warn!("controller reconcile: {e}; retrying in {wait:?}");
        }
    }

    /// Writes in transactions bounded by operations and bytes. A transaction etcd refuses
    /// is retried one write at a time, so that one bundle's write (too large, say) fails
    /// alone and every other one is still written; each write that still fails is logged
    /// with its key, and the first is returned after the rest went through, so that the
    /// loop retries. A conflict is the election guard gone: this leader is deposed, and
    /// writes nothing more.
    async fn commit(&mut self, writes: Vec<Write>) -> Result<(), StoreError> {
        let guard = self.leader_key.clone();
        let guard = guard.as_deref();
        let mut first_err = None;
        // Keeps a write's failure (logged with its key); a conflict ends the writing.
        let mut failed = |w: &Write, e: StoreError| match e {
            StoreError::TxnConflict { .. } => Err(e),
            e => {
                tracing::warn!(key = %w.key(), "controller write failed: {e}");
                first_err.get_or_insert(e);
                Ok(())
            }
        };
        // What was written goes into the cache at once: the next pass must not write it
        // again while the watch is still catching up (at 30,000 replicas it lags by
        // seconds, and passes that rewrite it kept the controller busy forever).
        for batch in batches(writes) {
            let e = match self.store.commit_guarded(&batch, guard).await {
                Ok(rev) => {
                    self.cache.wrote(batch, rev);
                    continue;
                }
                Err(e) => e,
            };
            if batch.len() == 1 {
                failed(&batch[0], e)?;
                continue;
            }
            for w in batch {
                match self
                    .store
                    .commit_guarded(std::slice::from_ref(&w), guard)
                    .await
                {
                    Ok(rev) => self.cache.wrote(vec![w], rev),
                    Err(e) => failed(&w, e)?,
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
