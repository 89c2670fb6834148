//! Releases in etcd: `<prefix>/releases/<name>/<revision>` holds what each revision rendered.
//! Every change (install, upgrade, rollback, uninstall) is one etcd transaction over the
//! bundles and the release records, guarded by the revisions read, so that it lands whole or
//! not at all.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Chart, ChartError, RELEASE_ANNOTATION, ReleaseInfo, Rendered, render};
use crate::model::validate::validate;
use crate::model::{Bundle, manifest};
use crate::store::{Expect, Store, Write, decode_bundle, encode_bundle};

/// Where a revision stands, with Helm's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Deployed,
    Superseded,
    Uninstalled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deployed => "deployed",
            Status::Superseded => "superseded",
            Status::Uninstalled => "uninstalled",
        }
    }
}

/// One revision of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub name: String,
    pub revision: u32,
    /// `<chart name>-<chart version>`.
    pub chart: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    pub values: Json,
    /// The rendered manifests, as `berth chart template` prints them.
    pub manifest: String,
    pub bundles: Vec<String>,
    pub status: Status,
    /// `Install complete`, `Upgrade complete`, `Rollback to 2`, …
    pub description: String,
    /// Seconds since the Unix epoch.
    pub updated: u64,
}

use crate::unix_now as now;

/// Helm's rule for a release name: a DNS-1123 label (lower-case letters, digits and '-',
/// starting and ending with a letter or digit) of at most 53 characters. The name is part of
/// etcd keys (`releases/<name>/<revision>`), so a `/`, a newline or `..` in it would reach
/// other keys or make the release unreadable; every release operation checks it first.
pub fn check_name(name: &str) -> Result<(), ChartError> {
    const MAX: usize = 53;
    let why = if name.is_empty() {
        Some("required".to_string())
    } else if name.len() > MAX {
        Some(format!("longer than {MAX} characters"))
    } else {
        // A label may start with a digit here (checked as if it were a letter).
        let as_label = match name.strip_prefix(|c: char| c.is_ascii_digit()) {
            Some(rest) => format!("a{rest}"),
            None => name.to_string(),
        };
        crate::model::validate::label_problem(&as_label)
            .map(|w| w.replacen(&format!("{as_label:?}: "), "", 1))
    };
    match why {
        None => Ok(()),
        Some(w) => Err(ChartError::Release(
            name.into(),
            format!("not a release name: {w}"),
        )),
    }
}

/// Every revision of a release, oldest first, with each record's mod revision.
pub async fn history(store: &Store, name: &str) -> Result<Vec<(Release, i64)>, ChartError> {
    check_name(name)?;
    let (_, kvs) = store.list(&store.keys().releases(name)).await?;
    kvs.into_iter()
        .map(|kv| {
            serde_json::from_slice::<Release>(&kv.value)
                .map(|r| (r, kv.mod_revision))
                .map_err(|e| ChartError::Release(name.into(), format!("{}: {e}", kv.key)))
        })
        .collect()
}

/// The latest revision of every release.
pub async fn list(store: &Store) -> Result<Vec<Release>, ChartError> {
    let (_, kvs) = store.list(&store.keys().all_releases()).await?;
    let mut latest: std::collections::BTreeMap<String, Release> = Default::default();
    for kv in kvs {
        let r: Release = serde_json::from_slice(&kv.value)
            .map_err(|e| ChartError::Release(kv.key.clone(), e.to_string()))?;
        // Keys sort by revision within a release, so the last one seen is the latest.
        latest.insert(r.name.clone(), r);
    }
    Ok(latest.into_values().collect())
}

/// Renders a chart for a release, with its values; nothing is written.
pub fn template(chart: &Chart, name: &str, values: &Json) -> Result<Rendered, ChartError> {
    check_name(name)?;
    let info = ReleaseInfo {
        name: name.to_string(),
        revision: 1,
        is_install: true,
    };
    render(chart, values, &info)
}

/// Installs a release (revision 1). Refused when the name has any history.
pub async fn install(
    store: &Store,
    chart: &Chart,
    name: &str,
    values: Json,
) -> Result<Release, ChartError> {
    let hist = history(store, name).await?;
    if !hist.is_empty() {
        return Err(ChartError::Release(
            name.into(),
            "already exists (use upgrade, or uninstall it first)".into(),
        ));
    }
    render_and_deploy(store, chart, name, &hist, values, "Install complete").await
}

/// Upgrades a release to a new revision: applies what changed, deletes the bundles the chart
/// no longer renders. With `install`, a release that does not exist is installed.
pub async fn upgrade(
    store: &Store,
    chart: &Chart,
    name: &str,
    values: Json,
    install_missing: bool,
) -> Result<Release, ChartError> {
    let hist = history(store, name).await?;
    if current(&hist).is_none() {
        if install_missing && hist.is_empty() {
            return install(store, chart, name, values).await;
        }
        return Err(ChartError::Release(
            name.into(),
            "has no deployed revision".into(),
        ));
    }
    render_and_deploy(store, chart, name, &hist, values, "Upgrade complete").await
}

/// Renders the chart as the release's next revision (an install when it has no history)
/// and deploys it.
async fn render_and_deploy(
    store: &Store,
    chart: &Chart,
    name: &str,
    hist: &[(Release, i64)],
    values: Json,
    description: &str,
) -> Result<Release, ChartError> {
    let info = ReleaseInfo {
        name: name.to_string(),
        revision: next_revision(hist),
        is_install: hist.is_empty(),
    };
    let rendered = render(chart, &values, &info)?;
    deploy(
        store,
        name,
        hist,
        chart_ref(chart),
        values,
        rendered,
        description,
    )
    .await
}

/// Re-applies an earlier revision (default: the one before the latest) as a new revision.
pub async fn rollback(
    store: &Store,
    name: &str,
    revision: Option<u32>,
) -> Result<Release, ChartError> {
    let hist = history(store, name).await?;
    let latest = hist
        .last()
        .ok_or_else(|| ChartError::Release(name.into(), "not found".into()))?
        .0
        .revision;
    let want = revision
        .filter(|r| *r > 0)
        .unwrap_or(latest.saturating_sub(1));
    let (target, _) = hist
        .iter()
        .find(|(r, _)| r.revision == want)
        .ok_or_else(|| ChartError::Release(name.into(), format!("has no revision {want}")))?;
    let mut bundles = manifest::parse(&target.manifest)
        .map_err(|e| ChartError::Release(name.into(), format!("revision {want}: {e}")))?
        .bundles;
    for b in &mut bundles {
        super::mark(b, name);
    }
    let invalid: Vec<String> = bundles
        .iter()
        .filter_map(|b| validate(b).err().map(|e| e.to_string()))
        .collect();
    if !invalid.is_empty() {
        return Err(ChartError::Invalid(invalid));
    }
    let rendered = Rendered {
        manifest: target.manifest.clone(),
        bundles,
    };
    let chart = (target.chart.clone(), target.app_version.clone());
    let values = target.values.clone();
    deploy(
        store,
        name,
        &hist,
        chart,
        values,
        rendered,
        &format!("Rollback to {want}"),
    )
    .await
}

/// Deletes a release's bundles. Its history is deleted too (Helm's default), or kept with
/// the last revision marked uninstalled when `keep_history`. Returns the deleted bundles.
pub async fn uninstall(
    store: &Store,
    name: &str,
    keep_history: bool,
) -> Result<Vec<String>, ChartError> {
    let hist = history(store, name).await?;
    if hist.is_empty() {
        return Err(ChartError::Release(name.into(), "not found".into()));
    }
    let mut writes = Vec::new();
    let mut deleted = Vec::new();
    if let Some((cur, _)) = current(&hist) {
        for b in &cur.bundles {
            if let Some(expect) = owned(store, name, b).await? {
                writes.push(Write::Delete {
                    key: store.keys().bundle(b),
                    expect,
                });
                deleted.push(b.clone());
            }
        }
    }
    let (last, last_rev) = hist.last().expect("history is not empty");
    if keep_history {
        let mut r = last.clone();
        r.status = Status::Uninstalled;
        r.description = "Uninstallation complete".into();
        r.updated = now();
        writes.push(put_release(store, &r, Expect::Revision(*last_rev)));
    } else {
        for (r, rev) in &hist {
            writes.push(Write::Delete {
                key: store.keys().release(name, r.revision),
                expect: Expect::Revision(*rev),
            });
        }
    }
    store.commit(writes).await?;
    Ok(deleted)
}

fn current(hist: &[(Release, i64)]) -> Option<&(Release, i64)> {
    hist.iter()
        .rev()
        .find(|(r, _)| r.status == Status::Deployed)
}

fn next_revision(hist: &[(Release, i64)]) -> u32 {
    hist.last().map_or(1, |(r, _)| r.revision + 1)
}

fn chart_ref(chart: &Chart) -> (String, Option<String>) {
    (
        format!("{}-{}", chart.meta.name, chart.meta.version),
        chart.meta.app_version.clone(),
    )
}

fn put_release(store: &Store, r: &Release, expect: Expect) -> Write {
    Write::Put {
        key: store.keys().release(&r.name, r.revision),
        value: serde_json::to_vec(r).expect("a release serializes"),
        expect,
    }
}

/// When bundle `b` exists and belongs to release `name`: the revision to guard its change
/// with. A bundle of another release, or of none, is refused.
async fn owned(store: &Store, name: &str, b: &str) -> Result<Option<Expect>, ChartError> {
    let Some(kv) = store.get(&store.keys().bundle(b)).await? else {
        return Ok(None);
    };
    let owner = decode_bundle(b, &kv.value)
        .ok()
        .and_then(|cur| cur.metadata.annotations.get(RELEASE_ANNOTATION).cloned());
    if owner.as_deref() != Some(name) {
        return Err(ChartError::Release(
            name.into(),
            format!(
                "bundle {b:?} exists and belongs to {}: refusing to take it over",
                owner.map_or("no release".to_string(), |o| format!("release {o:?}"))
            ),
        ));
    }
    Ok(Some(Expect::Revision(kv.mod_revision)))
}

/// Writes a new revision in one transaction: its bundles (unchanged ones left alone), the
/// deletion of the previous revision's bundles it no longer has, the new record, and the
/// previous deployed record marked superseded.
async fn deploy(
    store: &Store,
    name: &str,
    hist: &[(Release, i64)],
    (chart, app_version): (String, Option<String>),
    values: Json,
    rendered: Rendered,
    description: &str,
) -> Result<Release, ChartError> {
    let mut writes = Vec::new();
    for b in &rendered.bundles {
        let key = store.keys().bundle(b.name());
        match store.get(&key).await? {
            None => writes.push(Write::Put {
                key,
                value: encode_bundle(b),
                expect: Expect::Absent,
            }),
            Some(kv) => {
                let cur: Option<Bundle> = decode_bundle(b.name(), &kv.value).ok();
                let expect = owned(store, name, b.name())
                    .await?
                    .unwrap_or(Expect::Absent);
                if cur.map(|c| c.desired()) != Some(b.desired()) {
                    writes.push(Write::Put {
                        key,
                        value: encode_bundle(b),
                        expect,
                    });
                }
            }
        }
    }
    let keep: BTreeSet<&str> = rendered.bundles.iter().map(Bundle::name).collect();
    if let Some((prev, prev_rev)) = current(hist) {
        for old in prev.bundles.iter().filter(|b| !keep.contains(b.as_str())) {
            if let Some(expect) = owned(store, name, old).await? {
                writes.push(Write::Delete {
                    key: store.keys().bundle(old),
                    expect,
                });
            }
        }
        let mut superseded = prev.clone();
        superseded.status = Status::Superseded;
        writes.push(put_release(store, &superseded, Expect::Revision(*prev_rev)));
    }
    let release = Release {
        name: name.to_string(),
        revision: next_revision(hist),
        chart,
        app_version,
        values,
        manifest: rendered.manifest,
        bundles: rendered
            .bundles
            .iter()
            .map(|b| b.name().to_string())
            .collect(),
        status: Status::Deployed,
        description: description.to_string(),
        updated: now(),
    };
    writes.push(put_release(store, &release, Expect::Absent));
    store.commit(writes).await?;
    Ok(release)
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn release_names_follow_helms_rule() {
        for ok in ["r", "web", "web-1", "1web", "a".repeat(53).as_str()] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "required"),
            ("r/0000000009", "'/' is not allowed"),
            ("a\nb", "'\\n' is not allowed"),
            ("../../bundles/x", "'.' is not allowed"),
            ("Web", "'W' is not allowed"),
            ("web-", "must not end with '-'"),
            ("-web", "must start with"),
            (&"a".repeat(54), "longer than 53"),
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
