//! Keeping an etcd lease alive, and knowing when it can no longer be: the node agent's
//! registration and fencing, and the controller's leadership, both stand on this.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::Store;

/// Why [`keep_alive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// etcd said the lease is gone, or no renewal succeeded for a whole TTL (so it is).
    Lost,
    /// The shutdown token was cancelled.
    Shutdown,
}

/// Renews lease `id` every third of `ttl` and publishes, for each successful renewal, the
/// instant its request was *sent* on `renewed` (etcd restarts the TTL when it receives the
/// request, which is after the send: counting from the send never overestimates what is
/// left). Each renewal must answer within a third of the TTL, so a partition is noticed long
/// before the lease could expire.
pub async fn keep_alive(
    store: &Store,
    id: i64,
    ttl: Duration,
    renewed: &watch::Sender<Instant>,
    shutdown: &CancellationToken,
) -> LeaseEnd {
    let every = ttl / 3;
    let mut client = store.client();
    let mut last_ok = Instant::now();
    loop {
        let session = async {
            let (mut keeper, mut stream) = timeout(every, client.lease_keep_alive(id))
                .await
                .ok()?
                .ok()?;
            loop {
                let sent = Instant::now();
                timeout(every, keeper.keep_alive()).await.ok()?.ok()?;
                match timeout(every, stream.message()).await.ok()?.ok()? {
                    Some(r) if r.ttl() > 0 => {
                        last_ok = sent;
                        renewed.send_replace(sent);
                    }
                    // TTL 0: etcd no longer knows the lease.
                    _ => return Some(LeaseEnd::Lost),
                }
                tokio::time::sleep(every).await;
            }
        };
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return LeaseEnd::Shutdown,
            ended = session => ended,
        };
        if let Some(end) = ended {
            return end;
        }
        // The session failed (etcd unreachable or slow): retry until the lease must have
        // expired.
        if last_ok.elapsed() >= ttl {
            return LeaseEnd::Lost;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return LeaseEnd::Shutdown,
            _ = tokio::time::sleep(every / 4) => {}
        }
    }
}
