//! Several etcd members, used one at a time, with failover.
//!
//! etcd-client balances requests over every endpoint it is given, at random, and a request
//! that lands on a dead member fails (`tcp connect error`) even though the others would have
//! answered. berth instead keeps one client per member and sends everything to a preferred
//! one; a request that fails because that member cannot be reached (a transport error, or
//! etcd's `Unavailable`: down, restarting, or without a leader) moves the preference to the
//! next member and is sent again there, once per member. Watches and lease keep-alives, which
//! are streams, take the preferred member each time they (re)open and report the member as
//! failed when the stream breaks.
//!
//! A request retried this way may have reached the failed member before it broke. Every
//! write berth makes is either guarded by revisions (a repeat then fails as a conflict, which
//! callers already handle by reading again) or writes the same value again, so a repeat is
//! harmless.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Client, ConnectOptions, Error};
use tokio::sync::OnceCell;

/// The etcd members of one store. Cloning is cheap: clones share clients and the preference.
#[derive(Clone)]
pub struct Members {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Vec<Slot>,
    preferred: AtomicUsize,
    opts: ConnectOptions,
}

/// One member: its URL, and its client once connected (connecting with a user name asks
/// etcd for a token, which a dead member cannot give, so clients connect on first use).
struct Slot {
    url: String,
    client: OnceCell<Client>,
}

/// Whether an error means "this member cannot serve now" (try another), as opposed to an
/// answer (a refused request, a bad key) that every member would give.
pub fn unreachable(e: &Error) -> bool {
    match e {
        Error::TransportError(_) | Error::IoError(_) => true,
        Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
        _ => false,
    }
}

impl Members {
    /// Members at `urls` (at least one), each connected with `opts` on first use.
    pub fn new(urls: Vec<String>, opts: ConnectOptions) -> Members {
        assert!(!urls.is_empty(), "Members::new needs at least one URL");
        let slots = urls
            .into_iter()
            .map(|url| Slot {
                url,
                client: OnceCell::new(),
            })
            .collect();
        Members {
            inner: Arc::new(Inner {
                slots,
                preferred: AtomicUsize::new(0),
                opts,
            }),
        }
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.inner.slots.len()
    }

    /// Never true: there is at least one member.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The URL of member `index`, for messages.
    pub fn url(&self, index: usize) -> &str {
        &self.inner.slots[index % self.len()].url
    }

    /// The preferred member's index.
    pub fn preferred(&self) -> usize {
        self.inner.preferred.load(Ordering::Relaxed) % self.len()
    }

    /// The preferred member: its index, and its client (connected now if it was not yet).
    /// The index is what to pass to [`Members::failed`] when the client then fails.
    pub async fn current(&self) -> (usize, Result<Client, Error>) {
        let index = self.preferred();
        let slot = &self.inner.slots[index];
        let client = slot
            .client
            .get_or_try_init(|| Client::connect([slot.url.as_str()], Some(self.inner.opts.clone())))
            .await
            .cloned();
        (index, client)
    }

    /// Member `index` failed: prefer the next one (unless another caller has already moved
    /// the preference on).
    pub fn failed(&self, index: usize) {
        let next = (index + 1) % self.len();
        if next != index {
            let moved = self.inner.preferred.compare_exchange(
                index,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if moved.is_ok() {
                tracing::info!(
                    failed = %self.url(index),
                    next = %self.url(next),
                    "etcd member unreachable; using the next one"
                );
            }
        }
    }

    /// Runs `op` on the preferred member; when the member cannot be reached, on the next,
    /// and so on, once per member. Returns the first answer, or the last member's error.
    pub async fn call<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut last = None;
        for _ in 0..self.len() {
            let (index, client) = self.current().await;
            let result = match client {
                Ok(c) => op(c).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if unreachable(&e) => {
                    self.failed(index);
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.expect("at least one member was tried"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_moves_the_preference_once() {
        let m = Members::new(
            vec![
                "http://a:1".into(),
                "http://b:1".into(),
                "http://c:1".into(),
            ],
            ConnectOptions::new(),
        );
        assert_eq!(m.preferred(), 0);
        m.failed(0);
        assert_eq!(m.preferred(), 1);
        // A second caller that saw member 0 fail too does not skip member 1.
        m.failed(0);
        assert_eq!(m.preferred(), 1);
        m.failed(1);
        m.failed(2);
        assert_eq!(m.preferred(), 0, "wraps around");
    }

    #[test]
    fn only_unreachable_members_are_retried_elsewhere() {
        let status = |code| Error::GRpcStatus(tonic::Status::new(code, "x"));
        assert!(unreachable(&status(tonic::Code::Unavailable)));
        assert!(!unreachable(&status(tonic::Code::InvalidArgument)));
        assert!(!unreachable(&status(tonic::Code::PermissionDenied)));
        assert!(!unreachable(&Error::InvalidArgs("bad".into())));
    }
}
