//! etcd: where desired state, observed state and everything between them live.
//!
//! [`Store`] wraps one etcd client under a key prefix ([`keys::Keys`]). It offers raw
//! get/list/put/delete with revision-based optimistic concurrency ([`Expect`]): a write says
//! what it expects the key's revision to be, and a concurrent writer that got there first
//! turns it into [`StoreError::Conflict`], never into a lost update. Typed bundle operations
//! sit on top; [`watch`] is the one watch helper everything else uses.

mod bundles;
pub mod keys;
pub mod lease;
pub mod members;
mod types;
pub mod watch;

pub use bundles::{decode_bundle, decode_entry, encode_bundle};
pub use types::*;

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp, TxnOpResponse,
};

use crate::model::manifest::{self, ParseError};
use crate::model::{Bundle, BundleStatus, ValidationErrors, validate::validate};
pub use keys::Keys;
pub use members::Members;

/// Operations per transaction when writing or reading many keys (etcd's default
/// `--max-txn-ops` is 128).
pub const TXN_OPS: usize = 100;

/// The most bytes of keys and values berth puts in one transaction: etcd refuses requests
/// over `--max-request-bytes` (1.5 MiB by default), so writes are batched under 1 MiB.
pub const TXN_BYTES: usize = 1024 * 1024;

/// The largest stored bundle value (etcdctl, apply, charts): an assignment carries the whole
/// bundle, and one node's assignments and statuses must stay far below etcd's limits.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;

/// The largest gRPC message berth decodes from etcd (the client's default is 4 MiB; a
/// watch response or a transaction of reads can be larger). Lists are paged regardless.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Keys per page of a list.
pub const LIST_PAGE: i64 = 1000;

/// A KV client that decodes messages up to [`MAX_MESSAGE`].
pub fn kv(client: &Client) -> etcd_client::KvClient {
    client.kv_client().max_decoding_message_size(MAX_MESSAGE)
}

/// A watch client that decodes messages up to [`MAX_MESSAGE`].
pub fn watcher(client: &Client) -> etcd_client::WatchClient {
    client.watch_client().max_decoding_message_size(MAX_MESSAGE)
}

/// The first key after every key that starts with `prefix` (etcd's range end for it).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("not empty") += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// Every key under `prefix` in pages of [`LIST_PAGE`] keys, all read at one revision (the
/// first page's, or `revision`), so that a list of any size fits the message limits. Each
/// page goes to the preferred member (another one if it cannot be reached).
pub async fn list_paged(
    members: &Members,
    prefix: &str,
    revision: Option<i64>,
) -> Result<(i64, Vec<Kv>), etcd_client::Error> {
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut rev = revision.unwrap_or(0);
    let mut out = Vec::new();
    loop {
        let mut opts = GetOptions::new()
            .with_range(end.clone())
            .with_limit(LIST_PAGE);
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        let page = members.call(|c| {
            let (from, opts) = (from.clone(), opts.clone());
            async move { kv(&c).get(from, Some(opts)).await }
        });
        let resp = crate::metrics::get().etcd("list", page).await?;
        if rev == 0 {
            rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        }
        out.extend(resp.kvs().iter().map(Kv::from));
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((rev, out)),
        }
    }
}

/// Splits writes into transactions of at most [`TXN_OPS`] operations and [`TXN_BYTES`]
/// bytes, in order. A write larger than the byte limit alone is a batch of its own (etcd
/// refuses it, and only it).
pub fn batches(writes: Vec<Write>) -> Vec<Vec<Write>> {
    let mut out: Vec<Vec<Write>> = Vec::new();
    let mut bytes = 0;
    for w in writes {
        let size = w.size();
        let full = out
            .last()
            .is_none_or(|b| b.len() >= TXN_OPS || bytes + size > TXN_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        out.last_mut().expect("pushed above").push(w);
    }
    out
}

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/berth";
/// The default endpoint: a local etcd, as `scripts/setup.sh` and `berth up` start it.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

/// How to reach etcd. Defaults: [`DEFAULT_ENDPOINT`], prefix [`DEFAULT_PREFIX`], no TLS, no
/// user.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// User and password, for an etcd with authentication enabled.
    pub user: Option<(String, String)>,
    /// CA certificate (PEM) to verify the server: turns TLS on.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// How long to wait for a connection before an operation fails.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive while a stream is open: a ping after this long without traffic
    /// (etcd refuses pings more often than every 5 s by default), and a connection that does
    /// not answer it within `keep_alive_timeout` is dropped, so a silent network partition
    /// ends a watch instead of hanging it.
    pub keep_alive: Duration,
    pub keep_alive_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            endpoints: vec![DEFAULT_ENDPOINT.to_string()],
            prefix: DEFAULT_PREFIX.to_string(),
            user: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            connect_timeout: Duration::from_secs(3),
            keep_alive: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreConfig {
    /// Endpoints from a comma-separated list (`--etcd` / `BERTH_ETCD`); `host:port` gets
    /// `http://`, or `https://` when TLS is configured.
    #[must_use]
    pub fn with_endpoints(mut self, list: &str) -> Self {
        self.endpoints = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        self
    }

    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn tls(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some()
    }

    fn urls(&self) -> Vec<String> {
        let scheme = if self.tls() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect()
    }
}

/// The etcd members under one prefix. Cloning is cheap (clients are shared channels).
#[derive(Clone)]
pub struct Store {
    members: Members,
    keys: Keys,
    endpoints: String,
}

impl Store {
    /// Connects (lazily: an unreachable etcd shows up as an error on the first operation,
    /// after the connect timeout). With several endpoints, requests go to one member at a
    /// time and fail over to the next ([`Members`]).
    pub async fn connect(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let endpoints = cfg.urls().join(",");
        let setup = |reason: String| StoreError::Setup {
            endpoints: endpoints.clone(),
            reason,
        };
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(cfg.connect_timeout)
            .with_keep_alive(cfg.keep_alive, cfg.keep_alive_timeout)
            // etcd refuses pings on a connection without streams (and more often than its
            // --grpc-keepalive-min-time, 5 s) with GoAway(too_many_pings): ping only while a
            // watch or keep-alive is open, which is what must notice a silent partition.
            .with_keep_alive_while_idle(false)
            // A member cut off from the others answers Unavailable instead of holding a
            // watch or keep-alive it cannot serve, so the request moves to another member.
            .with_require_leader(true);
        if let Some((u, p)) = &cfg.user {
            opts = opts.with_user(u, p);
        }
        if cfg.tls() {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| setup(format!("cannot read {}: {e}", p.display())))
            };
            let mut tls = TlsOptions::new();
            if let Some(ca) = &cfg.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            match (&cfg.cert_file, &cfg.key_file) {
                (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c)?, read(k)?)),
                (None, None) => {}
                _ => {
                    return Err(setup(
                        "a client certificate needs both cert and key files".into(),
                    ));
                }
            }
            opts = opts.with_tls(tls);
        }
        if cfg.endpoints.is_empty() {
            return Err(setup("no endpoint given".into()));
        }
        Ok(Store {
            members: Members::new(cfg.urls(), opts),
            keys: Keys::new(&cfg.prefix),
            endpoints,
        })
    }

    /// The key layout under this store's prefix.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The etcd members, for the watch helper, leases and elections.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// A request to the preferred member, failed over to the others when it cannot be
    /// reached ([`Members::call`]), with the KV client's decode limit raised.
    async fn kv_call<T, F, Fut>(&self, op: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(etcd_client::KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        crate::metrics::get()
            .etcd("kv", self.members.call(|c| op(kv(&c))))
            .await
    }

    fn etcd(op: &'static str, key: &str) -> impl FnOnce(etcd_client::Error) -> StoreError {
        let key = key.to_string();
        move |source| StoreError::Etcd { op, key, source }
    }

    /// The store's current revision (etcd's header revision).
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let key = self.keys.root();
        let resp = self
            .kv_call(|mut kv| {
                let key = key.clone();
                async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await
            .map_err(Self::etcd("get", &key))?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// One key, if present.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, StoreError> {
        let resp = self
            .kv_call(|mut kv| async move { kv.get(key, None).await })
            .await
            .map_err(Self::etcd("get", key))?;
        Ok(resp.kvs().first().map(Kv::from))
    }

    /// Every key under a prefix, with the revision it was read at (in pages, all at that
    /// one revision).
    pub async fn list(&self, prefix: &str) -> Result<(i64, Vec<Kv>), StoreError> {
        list_paged(&self.members, prefix, None)
            .await
            .map_err(Self::etcd("list", prefix))
    }

    /// Runs one transaction ([`Store::kv_call`]).
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, etcd_client::Error> {
        self.kv_call(|mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// Writes a value if the key is as expected; returns the new mod revision.
    pub async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<i64, StoreError> {
        let op = TxnOp::put(key, value, None);
        self.guarded("put", key, op, expect).await
    }

    /// Deletes a key if it is as expected; returns the deletion's revision.
    pub async fn delete(&self, key: &str, expect: Expect) -> Result<i64, StoreError> {
        if expect == Expect::Absent {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let op = TxnOp::delete(key, None);
        let rev = self.guarded("delete", key, op, expect).await?;
        Ok(rev)
    }

    /// Puts `value` at `key`, attached to `lease` when given (gone with it), unless the key
    /// holds exactly that already under that lease (then nothing is written and no revision
    /// is made). Whether it wrote.
    pub async fn put_if_changed(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<bool, StoreError> {
        let opts = lease.map(|l| etcd_client::PutOptions::new().with_lease(l));
        let txn = Txn::new()
            .when(vec![
                Compare::value(key, CompareOp::Equal, value.clone()),
                Compare::lease(key, CompareOp::Equal, lease.unwrap_or(0)),
            ])
            .or_else(vec![TxnOp::put(key, value, opts)]);
        let resp = self.txn(txn).await.map_err(Self::etcd("put", key))?;
        Ok(!resp.succeeded())
    }

    /// Runs one operation in a transaction guarded by `expect`; on failure reads the key to
    /// say what was found instead.
    async fn guarded(
        &self,
        op_name: &'static str,
        key: &str,
        op: TxnOp,
        expect: Expect,
    ) -> Result<i64, StoreError> {
        let when = match expect {
            Expect::Absent => vec![Compare::create_revision(key, CompareOp::Equal, 0)],
            Expect::Revision(r) => vec![Compare::mod_revision(key, CompareOp::Equal, r)],
            Expect::Any => vec![],
        };
        let txn = Txn::new()
            .when(when)
            .and_then(vec![op])
            .or_else(vec![TxnOp::get(key, None)]);
        let resp = self.txn(txn).await.map_err(Self::etcd(op_name, key))?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        if resp.succeeded() {
            if op_name == "delete"
                && let Some(TxnOpResponse::Delete(d)) = resp.op_responses().first()
                && d.deleted() == 0
            {
                return Err(StoreError::NotFound {
                    key: key.to_string(),
                });
            }
            return Ok(rev);
        }
        let found = match resp.op_responses().first() {
            Some(TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0),
            _ => 0,
        };
        Err(match expect {
            Expect::Absent => StoreError::AlreadyExists {
                key: key.to_string(),
            },
            Expect::Revision(_) if found == 0 => StoreError::NotFound {
                key: key.to_string(),
            },
            Expect::Revision(expected) => StoreError::Conflict {
                key: key.to_string(),
                expected,
                found,
            },
            Expect::Any => unreachable!("an unguarded transaction always succeeds"),
        })
    }

    /// Writes several keys, in transactions under [`TXN_OPS`] operations and [`TXN_BYTES`]
    /// bytes ([`batches`]), so that many replica statuses cost a few round trips. Returns
    /// how many transactions (etcd revisions) that took.
    pub async fn put_many(&self, items: Vec<(String, Vec<u8>)>) -> Result<usize, StoreError> {
        let writes = items
            .into_iter()
            .map(|(key, value)| Write::Put {
                key,
                value,
                expect: Expect::Any,
            })
            .collect();
        let batches = batches(writes);
        let n = batches.len();
        for batch in batches {
            self.commit(batch).await?;
        }
        Ok(n)
    }

    /// Reads several keys, in transactions of at most [`TXN_OPS`] reads.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Kv>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(TXN_OPS) {
            let ops: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
            let resp = self
                .txn(Txn::new().and_then(ops))
                .await
                .map_err(Self::etcd("get", &chunk[0]))?;
            out.extend(resp.op_responses().into_iter().map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(Kv::from),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// Deletes a key only while it still holds `value` (so that a key another writer has
    /// taken over since is left alone). Returns whether it deleted.
    pub async fn delete_if_value(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when(vec![Compare::value(key, CompareOp::Equal, value.to_vec())])
            .and_then(vec![TxnOp::delete(key, None)]);
        let resp = self.txn(txn).await.map_err(Self::etcd("delete", key))?;
        Ok(resp.succeeded())
    }

    /// Grants a lease of `ttl` and creates `key` under it, only if the key does not exist
    /// ([`StoreError::AlreadyExists`] otherwise; the lease is then revoked). Returns the
    /// lease id.
    pub async fn create_with_new_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<i64, StoreError> {
        let lease = self.grant_lease(ttl).await?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(
                key,
                value,
                Some(etcd_client::PutOptions::new().with_lease(lease)),
            )]);
        let resp = self.txn(txn).await;
        match resp {
            Ok(r) if r.succeeded() => Ok(lease),
            other => {
                let _ = self.revoke_lease(lease).await;
                match other {
                    Err(e) => Err(Self::etcd("put", key)(e)),
                    Ok(_) => Err(StoreError::AlreadyExists { key: key.into() }),
                }
            }
        }
    }

    /// Writes keys under a lease, in one transaction (a few keys: events).
    pub async fn put_leased(
        &self,
        items: Vec<(String, Vec<u8>)>,
        lease: i64,
    ) -> Result<(), StoreError> {
        let first = items.first().map(|(k, _)| k.clone()).unwrap_or_default();
        let ops: Vec<TxnOp> = items
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, Some(etcd_client::PutOptions::new().with_lease(lease))))
            .collect();
        self.txn(Txn::new().and_then(ops))
            .await
            .map_err(Self::etcd("put", &first))?;
        Ok(())
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1); returns its id.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let ttl = ttl.as_secs().max(1) as i64;
        let resp = self
            .members
            .call(|mut c| async move { c.lease_grant(ttl, None).await })
            .await
            .map_err(Self::etcd("lease grant", ""))?;
        Ok(resp.id())
    }

    /// Revokes a lease: every key under it is deleted at once.
    pub async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        self.members
            .call(|mut c| async move { c.lease_revoke(lease).await })
            .await
            .map_err(Self::etcd("lease revoke", &lease.to_string()))?;
        Ok(())
    }

    /// Commits several writes at once: all of them, or (when any key is not as expected)
    /// none, reported as [`StoreError::TxnConflict`].
    pub async fn commit(&self, writes: Vec<Write>) -> Result<i64, StoreError> {
        self.commit_guarded(&writes, None).await
    }

    /// [`Store::commit`], and only while `guard` exists: a leader passes its election key,
    /// which vanishes with its lease, so that a deposed leader cannot write.
    pub async fn commit_guarded(
        &self,
        writes: &[Write],
        guard: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut when = Vec::new();
        if let Some(g) = guard {
            when.push(Compare::create_revision(g, CompareOp::Greater, 0));
        }
        let mut ops = Vec::new();
        for w in writes {
            let (key, expect) = match w {
                Write::Put { key, value, expect } => {
                    ops.push(TxnOp::put(key.clone(), value.clone(), None));
                    (key, expect)
                }
                Write::Delete { key, expect } => {
                    ops.push(TxnOp::delete(key.clone(), None));
                    (key, expect)
                }
                Write::DeletePrefix { prefix } => {
                    let range = etcd_client::DeleteOptions::new().with_prefix();
                    ops.push(TxnOp::delete(prefix.clone(), Some(range)));
                    continue;
                }
            };
            match expect {
                Expect::Absent => {
                    when.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0))
                }
                Expect::Revision(r) => {
                    when.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *r))
                }
                Expect::Any => {}
            }
        }
        let first = writes
            .first()
            .map(Write::key)
            .unwrap_or_default()
            .to_string();
        let resp = self
            .txn(Txn::new().when(when).and_then(ops))
            .await
            .map_err(Self::etcd("commit", &first))?;
        if !resp.succeeded() {
            return Err(StoreError::TxnConflict { keys: writes.len() });
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, bytes: usize) -> Write {
        Write::Put {
            key: key.into(),
            value: vec![b'x'; bytes],
            expect: Expect::Any,
        }
    }

    #[test]
    fn batches_are_bounded_by_operations_and_bytes() {
        let many: Vec<Write> = (0..250).map(|i| put(&i.to_string(), 10)).collect();
        let b = batches(many);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [100, 100, 50]);
        let big = vec![put("a", 600 * 1024), put("b", 600 * 1024), put("c", 10)];
        let b = batches(big);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2]);
        // One write over the limit goes alone (etcd refuses it, and only it).
        let huge = vec![put("a", 10), put("b", 2 * TXN_BYTES), put("c", 10)];
        let b = batches(huge);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(
            b.iter()
                .all(|w| w.iter().map(Write::size).sum::<usize>() <= TXN_BYTES || w.len() == 1)
        );
    }

    #[test]
    fn a_prefix_range_ends_after_every_key_under_it() {
        assert_eq!(prefix_end(b"/berth/"), b"/berth0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn an_oversized_value_is_refused_before_parsing() {
        let v = vec![b'a'; MAX_BUNDLE_BYTES + 1];
        assert!(matches!(
            decode_bundle("x", &v),
            Err(DecodeError::TooLarge(_))
        ));
    }
}
