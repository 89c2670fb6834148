//! Chart repositories, laid out as Helm's, so that either tool reads the other's:
//!
//! - a package is `<name>-<version>.tgz`, a gzipped tar with the chart's files under
//!   `<name>/`;
//! - a repository is a directory served over HTTP(S) with an `index.yaml` listing every
//!   package's metadata, its URL (relative to the repository or absolute) and its SHA-256
//!   `digest`;
//! - the repositories a user added are in `repositories.yaml` (name and URL), each one's
//!   index cached beside it (`<cache>/<name>-index.yaml`) by `repo add` and `repo update`.
//!
//! Packages come from the network and are untrusted: an archive is read into memory within
//! size limits, only regular files at plain relative paths under one top directory are taken,
//! and a downloaded package must match the digest its index gives before it is read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Chart, ChartError, from_files, load, load_err};

/// The largest package or index fetched or read (compressed), and the most an archive may
/// unpack to, in all and per file (Helm's limits are of the same order).
pub const MAX_DOWNLOAD: usize = 20 << 20;
pub const MAX_UNPACKED: u64 = 50 << 20;
pub const MAX_FILE: u64 = 5 << 20;

/// A repository's `index.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub api_version: String,
    #[serde(default)]
    pub entries: BTreeMap<String, Vec<Entry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// One package in an index: its `Chart.yaml` fields (those berth does not read are kept as
/// they are), where to get it, and its digest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    #[serde(default)]
    pub api_version: String,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

fn err(what: impl std::fmt::Display, reason: impl std::fmt::Display) -> ChartError {
    ChartError::Load {
        path: what.to_string(),
        reason: reason.to_string(),
    }
}

/// Lower-case hex SHA-256 of `bytes`, as an index's `digest`.
pub fn digest(bytes: &[u8]) -> String {
    crate::hex(&Sha256::digest(bytes))
}

fn now() -> String {
    crate::utc_time(crate::unix_now())
}

// ---- packages ------------------------------------------------------------------------------

/// Whether `rel` (a path relative to the chart, `/`-separated) is left out of a package:
/// anything hidden (a component starting with `.`, as `.git`; Helm's own default leaves out
/// hidden files under `templates/`), and what `.helmignore` says (see [`super::ignore`]).
fn ignored(rel: &str, is_dir: bool, rules: &super::ignore::Rules) -> bool {
    rel.split('/')
        .any(|c| c.starts_with('.') && c != ".helmignore")
        || rules.ignores(rel, is_dir)
}

/// Every file of the chart in `dir` (relative path → content), hidden and `.helmignore`d
/// ones left out; links are followed (the chart is the user's own).
fn chart_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, ChartError> {
    let rules = match std::fs::read_to_string(dir.join(".helmignore")) {
        Ok(t) => {
            super::ignore::Rules::parse(&t).map_err(|e| load_err(&dir.join(".helmignore"), e))?
        }
        Err(_) => super::ignore::Rules::default(),
    };
    let mut out = BTreeMap::new();
    let mut todo = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = todo.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| load_err(&d, e))? {
            let path = e.map_err(|e| load_err(&d, e))?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let rel = format!("{prefix}{name}");
            let meta = std::fs::metadata(&path).map_err(|e| load_err(&path, e))?;
            if meta.is_dir() {
                if !ignored(&rel, true, &rules) {
                    todo.push((path.clone(), format!("{rel}/")));
                }
            } else if meta.is_file() && !ignored(&rel, false, &rules) {
                out.insert(rel, std::fs::read(&path).map_err(|e| load_err(&path, e))?);
            }
        }
    }
    Ok(out)
}

/// `berth chart package DIR`: the chart (checked by loading it) as
/// `<dest>/<name>-<version>.tgz`. Returns its path.
pub fn package(dir: &Path, dest: &Path) -> Result<PathBuf, ChartError> {
    let chart = load(dir)?;
    semver::Version::parse(&chart.meta.version).map_err(|e| {
        load_err(
            &dir.join("Chart.yaml"),
            format!(
                "version {:?}: not semantic versioning: {e}",
                chart.meta.version
            ),
        )
    })?;
    let files = chart_files(dir)?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mtime = crate::unix_now();
    for (rel, content) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        let path = format!("{}/{rel}", chart.meta.name);
        tar.append_data(&mut h, &path, content.as_slice())
            .map_err(|e| err(&path, e))?;
    }
    let bytes = tar
        .into_inner()
        .and_then(|gz| gz.finish())
        .map_err(|e| err(dir.display(), e))?;
    std::fs::create_dir_all(dest).map_err(|e| load_err(dest, e))?;
    let out = dest.join(format!("{}-{}.tgz", chart.meta.name, chart.meta.version));
    write_new(&out, &bytes)?;
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), ChartError> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| load_err(path, e))
}

/// Reads a package (`.tgz` bytes; `origin` names it in errors) into its files: only regular
/// files, each at a plain relative path under the same top directory, within the size
/// limits. Returns the top directory's name and the files relative to it.
pub fn unpack(
    bytes: &[u8],
    origin: &str,
) -> Result<(String, BTreeMap<String, Vec<u8>>), ChartError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut top: Option<String> = None;
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| err(origin, format!("not a gzipped tar: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| err(origin, format!("not a gzipped tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| err(origin, e))?
            .to_string_lossy()
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(err(
                origin,
                format!("{path}: a {kind:?} entry; a chart package holds regular files only"),
            ));
        }
        let Some((first, rest)) = place(&path, origin)? else {
            continue;
        };
        match &top {
            None => top = Some(first),
            Some(t) if *t == first => {}
            Some(t) => {
                return Err(err(
                    origin,
                    format!("{path}: a second top directory (the first is {t:?})"),
                ));
            }
        }
        let size = entry.header().size().map_err(|e| err(origin, e))?;
        total += size;
        if size > MAX_FILE || total > MAX_UNPACKED {
            return Err(err(
                origin,
                format!(
                    "{path}: unpacks to more than {} MiB a file or {} MiB in all",
                    MAX_FILE >> 20,
                    MAX_UNPACKED >> 20
                ),
            ));
        }
        let mut content = Vec::with_capacity(size as usize);
        entry
            .take(MAX_FILE + 1)
            .read_to_end(&mut content)
            .map_err(|e| err(origin, format!("{path}: {e}")))?;
        files.insert(rest, content);
    }
    let top = top.ok_or_else(|| err(origin, "an empty package"))?;
    Ok((top, files))
}

/// Where a package entry goes: its top directory and its path below it (None: an empty
/// path), or why it may not be unpacked (not a plain relative path, or not inside a top
/// directory).
fn place(path: &str, origin: &str) -> Result<Option<(String, String)>, ChartError> {
    let parts: Vec<&str> = Path::new(path)
        .components()
        .map(|c| match c {
            Component::Normal(n) => n.to_str().ok_or(()),
            _ => Err(()),
        })
        .collect::<Result<_, _>>()
        .map_err(|()| {
            err(
                origin,
                format!("{path}: not a plain relative path (absolute, or with ..)"),
            )
        })?;
    let [first, rest @ ..] = parts.as_slice() else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Err(err(
            origin,
            format!("{path}: a file outside the chart's directory"),
        ));
    }
    Ok(Some((first.to_string(), rest.join("/"))))
}

/// Loads a chart from a package's bytes.
pub fn load_package(bytes: &[u8], origin: &str) -> Result<Chart, ChartError> {
    let (_, files) = unpack(bytes, origin)?;
    from_files(Path::new(origin), &files)
}

/// `berth chart pull --untar`: writes a package's files to `<dest>/<top>/`, which must not
/// exist (nothing is overwritten).
pub fn untar(bytes: &[u8], origin: &str, dest: &Path) -> Result<PathBuf, ChartError> {
    let (top, files) = unpack(bytes, origin)?;
    let root = dest.join(&top);
    if root.exists() {
        return Err(load_err(&root, "already exists; nothing was written"));
    }
    for (rel, content) in &files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| load_err(parent, e))?;
        }
        std::fs::write(&path, content).map_err(|e| load_err(&path, e))?;
    }
    Ok(root)
}

// ---- index ---------------------------------------------------------------------------------

/// `berth chart repo index DIR [--url URL]`: an index of every `*.tgz` in `dir`, each URL
/// the file's name (under `url` when given), written to `<dir>/index.yaml`.
pub fn index(dir: &Path, url: Option<&str>) -> Result<Index, ChartError> {
    let mut idx = Index {
        api_version: "v1".into(),
        entries: BTreeMap::new(),
        generated: Some(now()),
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| load_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tgz"))
        .collect();
    names.sort();
    for path in names {
        let bytes = std::fs::read(&path).map_err(|e| load_err(&path, e))?;
        let chart = load_package(&bytes, &path.display().to_string())?;
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let link = match url {
            Some(u) => format!("{}/{file}", u.trim_end_matches('/')),
            None => file.into_owned(),
        };
        idx.entries
            .entry(chart.meta.name.clone())
            .or_default()
            .push(Entry {
                api_version: chart.meta.api_version.clone(),
                name: chart.meta.name.clone(),
                version: chart.meta.version.clone(),
                app_version: chart.meta.app_version.clone(),
                description: chart.meta.description.clone(),
                urls: vec![link],
                created: Some(now()),
                digest: Some(digest(&bytes)),
                other: BTreeMap::new(),
            });
    }
    for list in idx.entries.values_mut() {
        list.sort_by_key(|e| std::cmp::Reverse(version_of(&e.version)));
    }
    let text = serde_yaml::to_string(&idx).map_err(|e| err(dir.display(), e))?;
    write_new(&dir.join("index.yaml"), text.as_bytes())?;
    Ok(idx)
}

fn version_of(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v.trim_start_matches('v')).ok()
}

/// Parses an index (bytes fetched from `origin`).
pub fn parse_index(bytes: &[u8], origin: &str) -> Result<Index, ChartError> {
    crate::model::manifest::check_flow_depth(&String::from_utf8_lossy(bytes))
        .map_err(|e| err(origin, e))?;
    let idx: Index = serde_yaml::from_slice(bytes)
        .map_err(|e| err(origin, format!("not a chart repository index: {e}")))?;
    if idx.api_version != "v1" {
        return Err(err(
            origin,
            format!("apiVersion {:?}: a repository index is v1", idx.api_version),
        ));
    }
    Ok(idx)
}

impl Index {
    /// The entry of `chart` that `version` selects: an exact version, a semver range
    /// (`^1.2`, `>=1.0, <2`), or (none) the highest version that is not a pre-release.
    pub fn find(&self, chart: &str, version: Option<&str>) -> Result<&Entry, NotFound> {
        let list = self
            .entries
            .get(chart)
            .ok_or_else(|| NotFound::Chart(chart.to_string()))?;
        let exact = version.and_then(version_of);
        let range = match (version, &exact) {
            (Some(v), None) => {
                Some(
                    semver::VersionReq::parse(v).map_err(|e| NotFound::BadVersion {
                        version: v.to_string(),
                        why: e.to_string(),
                    })?,
                )
            }
            _ => None,
        };
        list.iter()
            .filter_map(|e| version_of(&e.version).map(|v| (v, e)))
            .filter(|(v, _)| match (&exact, &range) {
                (Some(x), _) => v == x,
                (None, Some(r)) => r.matches(v),
                (None, None) => v.pre.is_empty(),
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, e)| e)
            .ok_or_else(|| match version {
                Some(v) => NotFound::NoMatch {
                    chart: chart.to_string(),
                    version: v.to_string(),
                },
                None => NotFound::NoRelease(chart.to_string()),
            })
    }
}

/// Why an index has no entry for a chart and version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    #[error("no chart {0:?} in the repository")]
    Chart(String),
    #[error("--version {version:?}: not a version or a range: {why}")]
    BadVersion { version: String, why: String },
    #[error("chart {chart:?} has no version matching {version:?}")]
    NoMatch { chart: String, version: String },
    #[error("chart {0:?} has no released version")]
    NoRelease(String),
}

// ---- repositories the user added -----------------------------------------------------------

/// `repositories.yaml` (Helm's file, with the fields berth uses).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoFile {
    #[serde(default)]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
    #[serde(default)]
    pub repositories: Vec<Repo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repo {
    pub name: String,
    pub url: String,
}

/// Where the repository list and the cached indexes live.
#[derive(Debug, Clone)]
pub struct Repos {
    /// `repositories.yaml`.
    pub config: PathBuf,
    /// The directory of cached indexes.
    pub cache: PathBuf,
}

impl Repos {
    /// The list at `BERTH_REPOSITORY_CONFIG` (default
    /// `$XDG_CONFIG_HOME/berth/repositories.yaml`, else `~/.config/berth/…`), the cache at
    /// `BERTH_REPOSITORY_CACHE` (default `$XDG_CACHE_HOME/berth/repository`, else
    /// `~/.cache/berth/repository`), as Helm's `HELM_REPOSITORY_*`.
    pub fn from_env() -> Repos {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let xdg = |var: &str, dflt: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(dflt))
        };
        Repos {
            config: std::env::var_os("BERTH_REPOSITORY_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    xdg("XDG_CONFIG_HOME", ".config").join("berth/repositories.yaml")
                }),
            cache: std::env::var_os("BERTH_REPOSITORY_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| xdg("XDG_CACHE_HOME", ".cache").join("berth/repository")),
        }
    }

    pub fn read(&self) -> Result<RepoFile, ChartError> {
        match std::fs::read(&self.config) {
            Ok(b) => crate::model::manifest::check_flow_depth(&String::from_utf8_lossy(&b))
                .map_err(|e| load_err(&self.config, e))
                .and_then(|()| serde_yaml::from_slice(&b).map_err(|e| load_err(&self.config, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RepoFile::default()),
            Err(e) => Err(load_err(&self.config, e)),
        }
    }

    fn write(&self, f: &RepoFile) -> Result<(), ChartError> {
        if let Some(d) = self.config.parent() {
            std::fs::create_dir_all(d).map_err(|e| load_err(d, e))?;
        }
        let text = serde_yaml::to_string(f).map_err(|e| load_err(&self.config, e))?;
        write_new(&self.config, text.as_bytes())
    }

    fn cached(&self, name: &str) -> PathBuf {
        self.cache.join(format!("{name}-index.yaml"))
    }

    /// Fetches `<url>/index.yaml` and caches it for `name`.
    async fn refresh(&self, name: &str, url: &str) -> Result<Index, ChartError> {
        let origin = format!("{}/index.yaml", url.trim_end_matches('/'));
        let bytes = fetch(&origin).await?;
        let idx = parse_index(&bytes, &origin)?;
        std::fs::create_dir_all(&self.cache).map_err(|e| load_err(&self.cache, e))?;
        write_new(&self.cached(name), &bytes)?;
        Ok(idx)
    }

    /// `repo add NAME URL`: the index must be fetched and read before anything is saved. A
    /// name already added with another URL is refused unless `force`.
    pub async fn add(&self, name: &str, url: &str, force: bool) -> Result<Index, ChartError> {
        check_name(name)?;
        let parsed = reqwest::Url::parse(url).map_err(|e| err(url, e))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(err(url, "only http and https repositories are supported"));
        }
        let mut f = self.read()?;
        if let Some(r) = f.repositories.iter().find(|r| r.name == name)
            && r.url != url
            && !force
        {
            return Err(err(
                name,
                format!(
                    "a repository of that name is already added ({}); use --force-update to replace it",
                    r.url
                ),
            ));
        }
        let idx = self.refresh(name, url).await?;
        f.repositories.retain(|r| r.name != name);
        f.repositories.push(Repo {
            name: name.into(),
            url: url.into(),
        });
        f.api_version = "v1".into();
        f.generated = Some(now());
        self.write(&f)?;
        Ok(idx)
    }

    /// `repo remove NAME`: the entry and its cached index.
    pub fn remove(&self, name: &str) -> Result<(), ChartError> {
        let mut f = self.read()?;
        let before = f.repositories.len();
        f.repositories.retain(|r| r.name != name);
        if f.repositories.len() == before {
            return Err(err(name, "no repository of that name"));
        }
        self.write(&f)?;
        let _ = std::fs::remove_file(self.cached(name));
        Ok(())
    }

    /// `repo update [NAME…]`: refetches the indexes (all when `names` is empty).
    pub async fn update(&self, names: &[String]) -> Result<Vec<String>, ChartError> {
        let f = self.read()?;
        for n in names {
            if !f.repositories.iter().any(|r| &r.name == n) {
                return Err(err(n, "no repository of that name"));
            }
        }
        let mut done = Vec::new();
        for r in &f.repositories {
            if names.is_empty() || names.contains(&r.name) {
                self.refresh(&r.name, &r.url).await?;
                done.push(r.name.clone());
            }
        }
        Ok(done)
    }

    /// The package `REPO/CHART` at `version` from the cached index: fetched, its digest
    /// checked against the index. Returns the entry and the package's bytes.
    pub async fn download(
        &self,
        reference: &str,
        version: Option<&str>,
    ) -> Result<(Entry, Vec<u8>), ChartError> {
        let (name, chart) = reference
            .split_once('/')
            .filter(|(n, c)| !n.is_empty() && !c.is_empty() && !c.contains('/'))
            .ok_or_else(|| err(reference, "expected REPOSITORY/CHART"))?;
        let f = self.read()?;
        let repo = f
            .repositories
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| {
                err(
                    reference,
                    format!("no repository named {name:?} (berth chart repo add {name} URL)"),
                )
            })?;
        let cached = self.cached(name);
        let bytes = std::fs::read(&cached).map_err(|e| {
            err(
                reference,
                format!("no index cached for {name:?} ({e}): run berth chart repo update {name}"),
            )
        })?;
        let idx = parse_index(&bytes, &cached.display().to_string())?;
        let entry = idx
            .find(chart, version)
            .map_err(|e| err(reference, e))?
            .clone();
        let link = entry.urls.first().ok_or_else(|| {
            err(
                reference,
                format!("the index gives no URL for {}", entry.version),
            )
        })?;
        let base = reqwest::Url::parse(&format!("{}/", repo.url.trim_end_matches('/')))
            .map_err(|e| err(&repo.url, e))?;
        let url = base.join(link).map_err(|e| err(link, e))?;
        let want = entry.digest.clone().ok_or_else(|| {
            err(
                reference,
                format!(
                    "the index gives no digest for {}: it cannot be verified",
                    entry.version
                ),
            )
        })?;
        let package = fetch(url.as_str()).await?;
        let got = digest(&package);
        if !got.eq_ignore_ascii_case(&want) {
            return Err(err(
                url,
                format!("sha256 {got} does not match the index's digest {want}; nothing was used"),
            ));
        }
        Ok((entry, package))
    }
}

/// A repository name: letters, digits, `.`, `_`, `-`.
fn check_name(name: &str) -> Result<(), ChartError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || name.starts_with('.')
    {
        return Err(err(
            name,
            "a repository name is letters, digits, '.', '_' and '-' (not starting with '.')",
        ));
    }
    Ok(())
}

/// GETs `url` (http or https; rustls with the system's roots), at most [`MAX_DOWNLOAD`]
/// bytes, within 60 s.
pub async fn fetch(url: &str) -> Result<Vec<u8>, ChartError> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| err(url, e))?;
    let mut resp = client.get(url).send().await.map_err(|e| err(url, e))?;
    if !resp.status().is_success() {
        return Err(err(url, format!("HTTP {}", resp.status())));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| err(url, e))? {
        if out.len() + chunk.len() > MAX_DOWNLOAD {
            return Err(err(url, format!("larger than {} MiB", MAX_DOWNLOAD >> 20)));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .tgz of raw entries: (path, kind, content, link target).
    fn tgz(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, kind, content, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            // Set the name bytes directly: append_data refuses `..` and absolute paths,
            // which a hostile package has.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            t.append(&h, *content).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap()
    }

    const META: &[u8] = b"apiVersion: v2\nname: c\nversion: 1.0.0\n";

    #[test]
    fn a_package_holds_regular_files_under_one_directory() {
        use tar::EntryType::{Regular, Symlink};
        let good = tgz(&[
            ("c/Chart.yaml", Regular, META, None),
            ("c/templates/a.yaml", Regular, b"x: 1\n", None),
        ]);
        let chart = load_package(&good, "good.tgz").unwrap();
        assert_eq!(chart.meta.name, "c");
        assert_eq!(chart.templates.len(), 1);
        for (bad, says) in [
            (
                tgz(&[
                    ("c/Chart.yaml", Regular, META, None),
                    ("c/templates/a.yaml", Symlink, b"", Some("/etc/passwd")),
                ]),
                "regular files only",
            ),
            (
                tgz(&[("c/../../etc/x", Regular, b"x", None)]),
                "not a plain relative path",
            ),
            (
                tgz(&[("/etc/x", Regular, b"x", None)]),
                "not a plain relative path",
            ),
            (
                tgz(&[
                    ("c/Chart.yaml", Regular, META, None),
                    ("d/Chart.yaml", Regular, META, None),
                ]),
                "a second top directory",
            ),
            (
                tgz(&[("Chart.yaml", Regular, META, None)]),
                "outside the chart",
            ),
            (b"not gzip".to_vec(), "not a gzipped tar"),
            (tgz(&[]), "an empty package"),
        ] {
            let e = load_package(&bad, "bad.tgz").unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_package_unpacking_past_the_limit_is_refused() {
        let big = vec![b'a'; MAX_FILE as usize + 1];
        let bad = tgz(&[("c/values.yaml", tar::EntryType::Regular, &big, None)]);
        let e = load_package(&bad, "big.tgz").unwrap_err().to_string();
        assert!(e.contains("unpacks to more than"), "{e}");
    }

    #[test]
    fn hidden_files_and_helmignored_ones_are_left_out() {
        let r = super::super::ignore::Rules::parse("*.bak\ndocs/\n").unwrap();
        assert!(ignored(".git/config", false, &r) && !ignored(".helmignore", false, &r));
        assert!(ignored("templates/.x.yaml", false, &r));
        assert!(ignored("a.bak", false, &r) && ignored("docs", true, &r));
        assert!(!ignored("templates/bundle.yaml", false, &r));
    }

    fn entry(version: &str) -> Entry {
        Entry {
            name: "c".into(),
            version: version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn versions_are_chosen_as_helm_chooses_them() {
        let idx = Index {
            api_version: "v1".into(),
            entries: [(
                "c".to_string(),
                vec![
                    entry("1.0.0"),
                    entry("1.10.0"),
                    entry("2.0.0-rc.1"),
                    entry("1.2.0"),
                ],
            )]
            .into(),
            generated: None,
        };
        let pick = |v: Option<&str>| idx.find("c", v).map(|e| e.version.clone());
        assert_eq!(pick(None).unwrap(), "1.10.0");
        assert_eq!(pick(Some("1.2.0")).unwrap(), "1.2.0");
        assert_eq!(pick(Some("~1.2")).unwrap(), "1.2.0");
        assert_eq!(pick(Some(">=1.0, <1.5")).unwrap(), "1.2.0");
        assert_eq!(pick(Some("2.0.0-rc.1")).unwrap(), "2.0.0-rc.1");
        let no_match = NotFound::NoMatch {
            chart: "c".into(),
            version: "3".into(),
        };
        assert_eq!(pick(Some("3")).unwrap_err(), no_match);
        assert!(matches!(
            pick(Some("not a version")),
            Err(NotFound::BadVersion { .. })
        ));
        let d = idx.find("d", None).unwrap_err();
        assert_eq!(d.to_string(), "no chart \"d\" in the repository");
    }
}
