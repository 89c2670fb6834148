//! Bundles in etcd: typed get, list, put and delete of bundle keys, and the one way a
//! stored value is decoded (and checked) into a bundle.

use super::*;

impl Store {
    /// A bundle by name, with its status, if present.
    pub async fn get_bundle(&self, name: &str) -> Result<Option<Versioned<Bundle>>, StoreError> {
        let spec_key = self.keys.bundle(name);
        let status_key = self.keys.bundle_status(name);
        let txn = Txn::new().and_then(vec![
            TxnOp::get(spec_key.clone(), None),
            TxnOp::get(status_key, None),
        ]);
        let resp = self.txn(txn).await.map_err(Self::etcd("get", &spec_key))?;
        let mut got = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(Kv::from),
            _ => None,
        });
        let (spec, status) = (got.next().flatten(), got.next().flatten());
        spec.map(|kv| decode_entry(&self.keys, &kv, status.as_ref()))
            .transpose()
    }

    /// Every bundle with its status, read at one revision (one transaction of two range
    /// reads, whatever the number of bundles).
    pub async fn list_bundles(&self) -> Result<BundleList, StoreError> {
        let (bundles, statuses) = (self.keys.bundles(), self.keys.statuses());
        let (revision, specs) = list_paged(&self.members, &bundles, None)
            .await
            .map_err(Self::etcd("list", &bundles))?;
        let (_, statuses) = list_paged(&self.members, &statuses, Some(revision))
            .await
            .map_err(Self::etcd("list", &statuses))?;
        let status_of = |name: &str| {
            let key = self.keys.bundle_status(name);
            statuses.iter().find(|kv| kv.key == key)
        };
        let items = specs
            .iter()
            .filter_map(|kv| {
                let name = self.keys.bundle_name(&kv.key)?;
                Some(decode_entry(&self.keys, kv, status_of(name)))
            })
            .collect();
        Ok(BundleList { revision, items })
    }

    /// Validates and writes a bundle's desired state (as YAML); returns the new revision.
    /// Nothing is written when validation fails.
    pub async fn put_bundle(&self, bundle: &Bundle, expect: Expect) -> Result<i64, StoreError> {
        validate(bundle)?;
        let size = encode_bundle(bundle).len();
        if size > MAX_BUNDLE_BYTES {
            return Err(StoreError::Decode {
                key: self.keys.bundle(bundle.name()),
                source: DecodeError::TooLarge(size),
            });
        }
        let key = self.keys.bundle(bundle.name());
        self.put(&key, encode_bundle(bundle), expect).await
    }

    /// Deletes a bundle's desired state. Its status and replicas are cleaned up by the
    /// controller once the node agents report the containers gone.
    pub async fn delete_bundle(&self, name: &str, expect: Expect) -> Result<i64, StoreError> {
        self.delete(&self.keys.bundle(name), expect).await
    }

    /// Writes a bundle's status (berth only; last writer wins: one controller leads).
    pub async fn put_status(&self, name: &str, status: &BundleStatus) -> Result<i64, StoreError> {
        let value = serde_json::to_vec(status).expect("status always serializes");
        self.put(&self.keys.bundle_status(name), value, Expect::Any)
            .await
    }
}

/// A bundle from its spec key and, when berth has written one, its status key:
/// `metadata.generation` is the spec key's version.
pub fn decode_entry(
    keys: &Keys,
    spec: &Kv,
    status: Option<&Kv>,
) -> Result<Versioned<Bundle>, StoreError> {
    let decode = |source| StoreError::Decode {
        key: spec.key.clone(),
        source,
    };
    let name = keys.bundle_name(&spec.key).unwrap_or_default();
    let mut bundle = decode_bundle(name, &spec.value).map_err(decode)?;
    bundle.metadata.generation = Some(spec.version);
    if let Some(st) = status {
        bundle.status = Some(
            serde_json::from_slice::<BundleStatus>(&st.value)
                .map_err(|e| decode(DecodeError::Status(e)))?,
        );
    }
    Ok(Versioned {
        value: bundle,
        mod_revision: spec.mod_revision,
    })
}

/// The bytes berth stores for a bundle: its manifest as YAML, without status or generation.
pub fn encode_bundle(bundle: &Bundle) -> Vec<u8> {
    manifest::to_yaml(&[bundle.desired()]).into_bytes()
}

/// Reads a bundle key's value, in any of the three formats. The name comes from the key
/// when the value leaves it out, and must match it otherwise. The result is validated.
pub fn decode_bundle(key_name: &str, value: &[u8]) -> Result<Bundle, DecodeError> {
    if value.len() > MAX_BUNDLE_BYTES {
        return Err(DecodeError::TooLarge(value.len()));
    }
    let text = std::str::from_utf8(value).map_err(|_| DecodeError::Utf8)?;
    let mut parsed = manifest::parse(text)?.bundles;
    if parsed.len() != 1 {
        return Err(DecodeError::Count(parsed.len()));
    }
    let mut b = parsed.remove(0);
    if b.metadata.name.is_empty() {
        b.metadata.name = key_name.to_string();
    } else if b.metadata.name != key_name {
        return Err(DecodeError::NameMismatch {
            key: key_name.to_string(),
            value: b.metadata.name,
        });
    }
    b.status = None;
    b.validated()?;
    Ok(b)
}
