//! `berth apply` and `berth delete`.

use std::io::Write;

use anyhow::{Context, Result, bail};

use super::{ApplyArgs, DeleteArgs, duplicate_names, read_manifests};
use crate::model::manifest;
use crate::model::validate::validate;
use crate::store::{Expect, Store, StoreError, decode_bundle};

/// What apply did (or, with --dry-run, would do) to one bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Configured,
    Unchanged,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Configured => "configured",
            Change::Unchanged => "unchanged",
        }
    }
}

/// The bundles in manifest files, parsed and validated (warnings printed): an error when
/// there are none, a name is given twice, or any is invalid (each field and reason).
pub(super) fn checked(files: &[String]) -> Result<Vec<crate::model::Bundle>> {
    let parsed = read_manifests(files)?;
    for w in &parsed.warnings {
        say!("warning: {w}");
    }
    if parsed.bundles.is_empty() {
        bail!("no bundles found in {}", files.join(", "));
    }
    let dups = duplicate_names(&parsed.bundles);
    if !dups.is_empty() {
        bail!("bundle(s) given more than once: {}", dups.join(", "));
    }
    let invalid: Vec<String> = parsed
        .bundles
        .iter()
        .filter_map(|b| validate(b).err().map(|e| e.to_string()))
        .collect();
    if !invalid.is_empty() {
        bail!("nothing applied:\n  {}", invalid.join("\n  "));
    }
    Ok(parsed.bundles)
}

/// Parses and validates every manifest first; writes only when all of them pass, so a bad
/// file never leaves half of a set applied.
pub async fn apply(store: &Store, args: &ApplyArgs, out: &mut impl Write) -> Result<()> {
    let bundles = checked(&args.files)?;
    let overlaps = conflicts(store, &bundles).await?;
    if !overlaps.is_empty() {
        bail!("nothing applied:\n  {}", overlaps.join("\n  "));
    }
    for b in &bundles {
        let b = b.desired();
        let key = store.keys().bundle(b.name());
        let current = store.get(&key).await?;
        let (change, expect) = match &current {
            None => (Change::Created, Expect::Absent),
            Some(kv) => {
                let same = decode_bundle(b.name(), &kv.value)
                    .map(|cur| cur.desired() == b)
                    .unwrap_or(false);
                let change = if same {
                    Change::Unchanged
                } else {
                    Change::Configured
                };
                (change, Expect::Revision(kv.mod_revision))
            }
        };
        if args.dry_run {
            writeln!(out, "bundle/{} {} (dry run)", b.name(), change.as_str())?;
            if change == Change::Configured {
                // Compare like with like: the stored value may be JSON or XML.
                let before = current
                    .as_ref()
                    .map(|kv| match decode_bundle(b.name(), &kv.value) {
                        Ok(cur) => manifest::to_yaml(&[cur.desired()]),
                        Err(_) => String::from_utf8_lossy(&kv.value).into_owned(),
                    })
                    .unwrap_or_default();
                let after = manifest::to_yaml(std::slice::from_ref(&b));
                for line in diff_lines(&before, &after) {
                    writeln!(out, "  {line}")?;
                }
            }
            continue;
        }
        if change != Change::Unchanged {
            store
                .put_bundle(&b, expect)
                .await
                .with_context(|| format!("bundle/{}", b.name()))?;
        }
        writeln!(out, "bundle/{} {}", b.name(), change.as_str())?;
    }
    if args.wait && !args.dry_run {
        out.flush()?;
        let timeout = crate::model::duration::parse(&args.timeout)
            .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
        let names: Vec<String> = bundles.iter().map(|b| b.name().to_string()).collect();
        super::cluster::wait_rollouts(store, &names, timeout, false).await?;
    }
    Ok(())
}

/// Bundles of this apply whose replica addresses overlap a stored bundle's (other than its
/// own stored value) or another's of the same apply, or whose constraints name a bundle
/// that is neither stored nor applied now: each refused with the field and why.
async fn conflicts(store: &Store, new: &[crate::model::Bundle]) -> Result<Vec<String>> {
    let stored = store.list_bundles().await?;
    let applying: std::collections::BTreeSet<&str> = new.iter().map(|b| b.name()).collect();
    let others: Vec<crate::model::Bundle> = stored
        .items
        .into_iter()
        .filter_map(|r| r.ok())
        .map(|v| v.value)
        .filter(|b| !applying.contains(b.name()))
        .collect();
    // Stored bundles count as older than anything applied now; among the new ones, the
    // order of the files decides.
    let known: std::collections::BTreeSet<&str> = others
        .iter()
        .map(|b| b.name())
        .chain(applying.iter().copied())
        .collect();
    let unknown = crate::model::constraints::unknown_references(new, &known);
    let all = others.iter().map(|b| (b, 0)).chain(new.iter().zip(1..));
    Ok(crate::model::address_overlaps(all)
        .into_iter()
        .filter(|(newer, _)| applying.contains(newer.as_str()))
        .map(|(newer, older)| {
            format!(
                "bundle {newer:?} is invalid: spec.network.ipRangeStart: the replicas' addresses overlap bundle {older:?}'s"
            )
        })
        .chain(unknown)
        .collect())
}

/// Deletes bundles by name or by the names in manifests, each guarded by the revision it was
/// read at so that a concurrent update is not silently deleted.
pub async fn delete(store: &Store, args: &DeleteArgs, out: &mut impl Write) -> Result<()> {
    let mut names = args.names.clone();
    if !args.files.is_empty() {
        names.extend(
            read_manifests(&args.files)?
                .bundles
                .iter()
                .map(|b| b.name().to_string()),
        );
    }
    if names.is_empty() {
        bail!("name the bundles to delete, or give -f FILE");
    }
    if args.kind.is_none() && !args.names.is_empty() {
        bail!("say what to delete: berth delete bundle NAME");
    }
    let mut missing = Vec::new();
    for name in &names {
        let key = store.keys().bundle(name);
        let Some(kv) = store.get(&key).await? else {
            missing.push(name.clone());
            continue;
        };
        match store.delete(&key, Expect::Revision(kv.mod_revision)).await {
            Ok(_) => writeln!(out, "bundle/{name} deleted")?,
            Err(StoreError::NotFound { .. }) => missing.push(name.clone()),
            Err(e) => return Err(e).with_context(|| format!("bundle/{name}")),
        }
    }
    if !missing.is_empty() && !args.ignore_not_found {
        bail!("bundle(s) not found: {}", missing.join(", "));
    }
    Ok(())
}

/// A line diff (`similar`'s Myers diff, linear in memory): `- old` / `+ new` lines only.
fn diff_lines(before: &str, after: &str) -> Vec<String> {
    similar::TextDiff::from_lines(before, after)
        .iter_all_changes()
        .filter_map(|c| {
            let sign = match c.tag() {
                similar::ChangeTag::Equal => return None,
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
            };
            Some(format!("{sign} {}", c.value().trim_end_matches('\n')))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_only_changed_lines() {
        let d = diff_lines("a\nreplicas: 3\nc\n", "a\nreplicas: 5\nc\n");
        assert_eq!(d, vec!["- replicas: 3", "+ replicas: 5"]);
    }
}
