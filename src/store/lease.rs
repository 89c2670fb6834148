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
    /// etcd said the lease is gone, or (with a `give_up` time) no renewal succeeded for
    /// that long.
    Lost,
    /// The shutdown token was cancelled.
    Shutdown,
}

/// Renews lease `id` every quarter of `ttl` (each renewal may take up to a third to be
/// answered: a renewal sent to a follower while the etcd cluster elects a new leader is
/// answered once it has one, which takes one to two seconds with etcd's defaults; renewing
/// every quarter leaves five twelfths of the TTL for that before the fence, two thirds of a
/// TTL after the last renewal sent; renewing more often would ride out longer elections but
/// make a dead node's lease expire later after its death) and publishes, for each successful
/// renewal, the
/// instant its request was *sent* on `renewed` (etcd restarts the TTL when it receives the
/// request, which is after the send: counting from the send never overestimates what is
/// left). A member that does not answer within a third of the TTL, or breaks the stream, is
/// left for the next one ([`super::Members`]), so a partition is noticed long before the lease
/// could expire.
///
/// `give_up`: after this long without a successful renewal the lease counts as lost without
/// etcd saying so (the controller gives up leadership after a TTL). Without it, renewals go
/// on until etcd answers: an etcd that was down or out of reach may still hold the lease (a
/// restarted etcd gives every lease a full TTL again), and only etcd can tell. The node
/// agent does this, frozen by its fence meanwhile.
pub async fn keep_alive(
    store: &Store,
    id: i64,
    ttl: Duration,
    give_up: Option<Duration>,
    renewed: &watch::Sender<Instant>,
    shutdown: &CancellationToken,
) -> LeaseEnd {
    let every = ttl / 4;
    let answer = ttl / 3;
    let members = store.members();
    let mut last_ok = Instant::now();
    loop {
        // Each session opens on the preferred member; a failed one marks it failed, so the
        // next session opens on another.
        let (member, client) = members.current().await;
        let session = async {
            let mut client = client.map_err(KeepAliveError::Connect)?;
            // Opening the stream renews once (etcd-client sends the first request and reads
            // its answer: a TTL of 0 is its "lease not found").
            let sent = Instant::now();
            let (mut keeper, mut stream) = match timeout(answer, client.lease_keep_alive(id)).await
            {
                Err(_) => return Err(KeepAliveError::Late("open")),
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(m))) if m.contains("not found") => {
                    return Ok(LeaseEnd::Lost);
                }
                Ok(Err(e)) => return Err(KeepAliveError::Failed("open", e)),
                Ok(Ok(opened)) => opened,
            };
            last_ok = sent;
            renewed.send_replace(sent);
            crate::metrics::get().renewed();
            loop {
                tokio::time::sleep(every).await;
                let sent = Instant::now();
                timeout(answer, keeper.keep_alive())
                    .await
                    .map_err(|_| KeepAliveError::Late("send"))?
                    .map_err(|e| KeepAliveError::Failed("send", e))?;
                match timeout(answer, stream.message())
                    .await
                    .map_err(|_| KeepAliveError::Late("answer"))?
                    .map_err(|e| KeepAliveError::Failed("answer", e))?
                {
                    Some(r) if r.ttl() > 0 => {
                        last_ok = sent;
                        renewed.send_replace(sent);
                        crate::metrics::get().renewed();
                    }
                    // TTL 0: etcd no longer knows the lease.
                    _ => return Ok(LeaseEnd::Lost),
                }
            }
        };
        let ended: Result<LeaseEnd, KeepAliveError> = tokio::select! {
            _ = shutdown.cancelled() => return LeaseEnd::Shutdown,
            ended = session => ended,
        };
        match ended {
            Ok(end) => return end,
            Err(why) => {
                tracing::info!(member = %members.url(member), lease = id, "lease keep-alive: {why}");
                members.failed(member);
            }
        }
        // The session failed (etcd unreachable or slow): retry (until `give_up`).
        if give_up.is_some_and(|g| last_ok.elapsed() >= g) {
            return LeaseEnd::Lost;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return LeaseEnd::Shutdown,
            _ = tokio::time::sleep(every / 2) => {}
        }
    }
}

/// Why a keep-alive session ended (it is tried again, on the next member).
#[derive(Debug, thiserror::Error)]
enum KeepAliveError {
    #[error("connect: {0}")]
    Connect(etcd_client::Error),
    /// A step (open, send, answer) that did not finish in time.
    #[error("{0} timed out")]
    Late(&'static str),
    #[error("{0}: {1}")]
    Failed(&'static str, etcd_client::Error),
}
