//! The store's vocabulary: a stored key and value, write preconditions, writes, and the
//! errors every store call returns.

use super::*;

/// A key and its value as etcd holds them, with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: i64,
    /// Revision of the last write: what [`Expect::Revision`] compares.
    pub mod_revision: i64,
    /// Writes since creation (1 after the first): a bundle's `metadata.generation`.
    pub version: i64,
    pub lease: i64,
}

impl Kv {
    /// A key as its first write left it at `revision` (version 1, no lease): what a cache
    /// holds for a value written once; tests build their caches from these.
    pub fn first_write(key: String, value: Vec<u8>, revision: i64) -> Kv {
        Kv {
            key,
            value,
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: 0,
        }
    }
}

impl From<&etcd_client::KeyValue> for Kv {
    fn from(kv: &etcd_client::KeyValue) -> Self {
        Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        }
    }
}

/// What a write expects of the key it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist (create).
    Absent,
    /// The key must be at this mod revision (update what was read).
    Revision(i64),
    /// No expectation: last writer wins. For keys only one writer owns (status).
    Any,
}

/// One write of an all-or-nothing [`Store::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put {
        key: String,
        value: Vec<u8>,
        expect: Expect,
    },
    Delete {
        key: String,
        expect: Expect,
    },
    /// Every key under `prefix` (one operation, however many keys: a node gone takes its
    /// assignments with one, not one per bundle). Only for keys one writer owns.
    DeletePrefix {
        prefix: String,
    },
}

impl Write {
    /// Bytes of key and value this write sends.
    pub fn size(&self) -> usize {
        match self {
            Write::Put { key, value, .. } => key.len() + value.len(),
            Write::Delete { key, .. } => key.len(),
            Write::DeletePrefix { prefix } => prefix.len(),
        }
    }

    /// The key written (a prefix delete's prefix).
    pub fn key(&self) -> &str {
        match self {
            Write::Put { key, .. } | Write::Delete { key, .. } => key,
            Write::DeletePrefix { prefix } => prefix,
        }
    }
}

/// A value read from etcd with the revisions an update must quote.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// Why a store operation failed, and how to react.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The client could not be set up (bad endpoint, unreadable TLS file). Give up.
    #[error("cannot set up the etcd client for {endpoints}: {reason}")]
    Setup { endpoints: String, reason: String },
    /// etcd did not answer or refused. Retry with backoff.
    #[error("etcd {op} {key}: {source}")]
    Etcd {
        op: &'static str,
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    /// Someone else wrote the key since it was read. Re-read, re-decide, retry.
    #[error(
        "conflict on {key}: expected revision {expected}, found {found} (someone else wrote it first; re-read and retry)"
    )]
    Conflict {
        key: String,
        expected: i64,
        /// 0 when the key is gone.
        found: i64,
    },
    /// A transaction found one of its keys changed since it was read; nothing was written.
    /// Re-read and retry.
    #[error(
        "a concurrent writer changed one of the {keys} keys of this transaction; nothing was written (re-read and retry)"
    )]
    TxnConflict { keys: usize },
    /// A create found the key already there.
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    /// The key is not there.
    #[error("{key} not found")]
    NotFound { key: String },
    /// A stored value is not a valid bundle (for instance, a bad `etcdctl put`).
    #[error("{key}: {source}")]
    Decode {
        key: String,
        #[source]
        source: DecodeError,
    },
    /// A bundle to be written failed validation; nothing was written. Fix the input.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

/// Why a stored bundle value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("value is not UTF-8")]
    Utf8,
    #[error("value is {0} bytes; a stored bundle may be at most {MAX_BUNDLE_BYTES}")]
    TooLarge(usize),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("value holds {0} bundles; a bundle key holds exactly one")]
    Count(usize),
    #[error("value names bundle {value:?} but the key names {key:?}")]
    NameMismatch { key: String, value: String },
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("status is not berth's JSON: {0}")]
    Status(#[source] serde_json::Error),
}

/// A bundle list read at one revision: bundles (or why one could not be read) with their
/// status when berth has written one.
#[derive(Debug)]
pub struct BundleList {
    pub revision: i64,
    pub items: Vec<Result<Versioned<Bundle>, StoreError>>,
}
