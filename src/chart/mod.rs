//! Helm-style charts: a chart directory rendered with a release's values into bundles, and
//! releases (install, upgrade, rollback, uninstall, history) kept in etcd.
//!
//! - this file: loading a chart (Helm's layout), merging values (`values.yaml` < `-f` files
//!   < `--set`, later ones winning, as Helm does), and rendering to validated bundles;
//! - [`render`](mod@render): Go templates through gtmpl, with the Sprig functions charts use most;
//! - [`schema`]: `values.schema.json` checks on the merged values;
//! - [`release`]: releases in etcd, each change one transaction;
//! - [`ignore`]: `.helmignore`, read as Helm reads it (first deciding rule wins).

pub mod ignore;
pub mod release;
pub mod render;
pub mod repo;
pub mod schema;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::model::validate::validate;
use crate::model::{Bundle, manifest};
use render::{RenderError, Renderer};

/// The annotation that marks a bundle as part of a release (Helm's release-name annotation).
pub const RELEASE_ANNOTATION: &str = "berth.io/release";

/// `Chart.yaml` (apiVersion v2). Other Helm fields (keywords, maintainers, …) are accepted
/// and ignored; dependencies are not supported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartMeta {
    pub api_version: String,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing)]
    pub dependencies: Option<serde_yaml::Value>,
}

/// A loaded chart.
#[derive(Debug, Clone)]
pub struct Chart {
    pub dir: PathBuf,
    pub meta: ChartMeta,
    /// `values.yaml`, as JSON (an empty object when the file is absent).
    pub values: Json,
    /// `templates/*` that are templates (`.yaml`, `.yml`, `.tpl`), by path relative to the
    /// chart (`templates/bundle.yaml`), in name order.
    pub templates: Vec<(String, String)>,
    pub schema: Option<Json>,
}

/// Why a chart could not be loaded, rendered or installed. Not retryable except `Store`.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("{path}: {reason}")]
    Load { path: String, reason: String },
    #[error("--set {0}")]
    Set(String),
    #[error("values do not match values.schema.json:\n  {}", .0.join("\n  "))]
    Schema(Vec<String>),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("the chart renders invalid bundles, nothing was written:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("release {0:?}: {1}")]
    Release(String, String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn load_err(path: &Path, reason: impl ToString) -> ChartError {
    ChartError::Load {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// YAML text as JSON (so that values merge and validate in one shape); null is `{}`.
fn yaml_json(path: &Path, text: &str) -> Result<Json, ChartError> {
    manifest::check_flow_depth(text).map_err(|e| load_err(path, e))?;
    let v: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| load_err(path, e))?;
    let j = serde_json::to_value(v).map_err(|e| load_err(path, e))?;
    Ok(if j.is_null() {
        Json::Object(Default::default())
    } else {
        j
    })
}

/// Reads a YAML file as JSON.
fn yaml_file(path: &Path) -> Result<Json, ChartError> {
    let text = std::fs::read_to_string(path).map_err(|e| load_err(path, e))?;
    yaml_json(path, &text)
}

/// Whether a chart file is one the loader reads: the metadata, values, schema, and the
/// templates directly in `templates/` (`.yaml`, `.yml`, `.tpl`).
fn chart_file(rel: &str) -> bool {
    matches!(rel, "Chart.yaml" | "values.yaml" | "values.schema.json")
        || rel.strip_prefix("templates/").is_some_and(|name| {
            !name.contains('/')
                && [".yaml", ".yml", ".tpl"]
                    .iter()
                    .any(|ext| name.len() > ext.len() && name.ends_with(ext))
        })
}

/// Loads a chart directory laid out as Helm's.
pub fn load(dir: &Path) -> Result<Chart, ChartError> {
    let mut files = std::collections::BTreeMap::new();
    for rel in ["Chart.yaml", "values.yaml", "values.schema.json"] {
        let path = dir.join(rel);
        if rel == "Chart.yaml" || path.exists() {
            files.insert(
                rel.to_string(),
                std::fs::read(&path).map_err(|e| load_err(&path, e))?,
            );
        }
    }
    let tdir = dir.join("templates");
    if tdir.is_dir() {
        for e in std::fs::read_dir(&tdir).map_err(|e| load_err(&tdir, e))? {
            let path = e.map_err(|e| load_err(&tdir, e))?.path();
            let rel = format!(
                "templates/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            if path.is_file() && chart_file(&rel) {
                files.insert(rel, std::fs::read(&path).map_err(|e| load_err(&path, e))?);
            }
        }
    }
    from_files(dir, &files)
}

/// Loads a chart from its files (path relative to the chart → content); `origin` (a
/// directory or an archive) names them in errors.
pub fn from_files(
    origin: &Path,
    files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Chart, ChartError> {
    let text = |rel: &str| -> Result<Option<String>, ChartError> {
        files
            .get(rel)
            .map(|b| {
                String::from_utf8(b.clone())
                    .map_err(|_| load_err(&origin.join(rel), "not UTF-8 text"))
            })
            .transpose()
    };
    let meta_path = origin.join("Chart.yaml");
    let text_meta = text("Chart.yaml")?.ok_or_else(|| load_err(&meta_path, "missing"))?;
    manifest::check_flow_depth(&text_meta).map_err(|e| load_err(&meta_path, e))?;
    let meta: ChartMeta = serde_yaml::from_str(&text_meta).map_err(|e| load_err(&meta_path, e))?;
    if meta.api_version != "v2" {
        return Err(load_err(
            &meta_path,
            format!(
                "apiVersion {:?}: only v2 charts are supported",
                meta.api_version
            ),
        ));
    }
    if meta.dependencies.is_some() {
        return Err(load_err(&meta_path, "dependencies are not supported"));
    }
    let values = match text("values.yaml")? {
        Some(t) => yaml_json(&origin.join("values.yaml"), &t)?,
        None => Json::Object(Default::default()),
    };
    let schema = match text("values.schema.json")? {
        Some(t) => Some(
            serde_json::from_str(&t)
                .map_err(|e| load_err(&origin.join("values.schema.json"), e))?,
        ),
        None => None,
    };
    let mut templates = Vec::new();
    for rel in files
        .keys()
        .filter(|r| r.starts_with("templates/") && chart_file(r))
    {
        templates.push((rel.clone(), text(rel)?.unwrap_or_default()));
    }
    Ok(Chart {
        dir: origin.to_path_buf(),
        meta,
        values,
        templates,
        schema,
    })
}

/// Deep merge: maps merge key by key, anything else in `over` replaces `base`.
pub fn merge(base: &mut Json, over: &Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// One `--set` argument, `a.b=c,d=e`, as a values tree. Values are typed as Helm types them:
/// true/false, null, integers, else strings.
pub fn parse_set(arg: &str) -> Result<Json, ChartError> {
    let mut out = Json::Object(Default::default());
    for part in arg.split(',').filter(|p| !p.is_empty()) {
        let (path, raw) = part
            .split_once('=')
            .ok_or_else(|| ChartError::Set(format!("{part}: expected key=value")))?;
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(ChartError::Set(format!("{part}: empty key")));
        }
        if path.contains('[') {
            return Err(ChartError::Set(format!(
                "{part}: list indexes are not supported; use -f"
            )));
        }
        let value = match raw {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            "null" => Json::Null,
            n if n.parse::<i64>().is_ok() && !(n.len() > 1 && n.starts_with('0')) => {
                Json::from(n.parse::<i64>().unwrap_or_default())
            }
            s => Json::String(s.to_string()),
        };
        let tree = path.rsplit('.').fold(value, |acc, key| {
            Json::Object([(key.to_string(), acc)].into_iter().collect())
        });
        merge(&mut out, &tree);
    }
    Ok(out)
}

/// The release's values: the chart's, then each `-f` file, then each `--set`, then checked
/// against `values.schema.json` when the chart has one.
pub fn values(chart: &Chart, files: &[PathBuf], sets: &[String]) -> Result<Json, ChartError> {
    let mut v = chart.values.clone();
    for f in files {
        merge(&mut v, &yaml_file(f)?);
    }
    for s in sets {
        merge(&mut v, &parse_set(s)?);
    }
    if let Some(schema) = &chart.schema {
        let errors = schema::check(schema, &v);
        if !errors.is_empty() {
            return Err(ChartError::Schema(errors));
        }
    }
    Ok(v)
}

/// Marks a bundle as part of a release.
pub fn mark(b: &mut Bundle, release: &str) {
    b.metadata
        .annotations
        .insert(RELEASE_ANNOTATION.into(), release.to_string());
}

/// Who is rendering: the release name, its revision, install or upgrade.
#[derive(Debug, Clone)]
pub struct ReleaseInfo {
    pub name: String,
    pub revision: u32,
    pub is_install: bool,
}

/// What a chart rendered: the manifest text (each template's output under a `# Source:`
/// line, as Helm prints it) and the bundles, every one valid and marked with the release.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub manifest: String,
    pub bundles: Vec<Bundle>,
}

/// Renders every template (partials, files starting with `_`, only through include), then
/// parses and validates every bundle. Any failure refuses the whole chart.
pub fn render(chart: &Chart, values: &Json, release: &ReleaseInfo) -> Result<Rendered, ChartError> {
    let ctx = serde_json::json!({
        "Values": values,
        "Release": {
            "Name": release.name,
            "Namespace": "default",
            "Revision": release.revision,
            "IsInstall": release.is_install,
            "IsUpgrade": !release.is_install,
            "Service": "berth",
        },
        "Chart": {
            "Name": chart.meta.name,
            "Version": chart.meta.version,
            "AppVersion": chart.meta.app_version,
            "Description": chart.meta.description,
            "ApiVersion": chart.meta.api_version,
        },
    });
    let mut r = Renderer::new(&chart.templates)?;
    let mut manifest = String::new();
    let mut bundles: Vec<Bundle> = Vec::new();
    let mut problems = Vec::new();
    for (name, _) in &chart.templates {
        let file = name.rsplit('/').next().unwrap_or(name);
        if file.starts_with('_') || file.ends_with(".tpl") {
            continue;
        }
        let text = r.render(name, &ctx)?;
        if text.trim().is_empty() {
            continue;
        }
        manifest.push_str(&format!(
            "---\n# Source: {}/{name}\n{}\n",
            chart.meta.name,
            text.trim_end()
        ));
        match manifest::parse(&text) {
            Ok(parsed) => {
                for mut b in parsed.bundles {
                    mark(&mut b, &release.name);
                    if let Err(e) = validate(&b) {
                        problems.push(format!("{name}: {e}"));
                    }
                    if bundles.iter().any(|o| o.name() == b.name()) {
                        problems.push(format!("{name}: bundle {:?} rendered twice", b.name()));
                    }
                    bundles.push(b);
                }
            }
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(ChartError::Invalid(problems));
    }
    Ok(Rendered { manifest, bundles })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_parses_like_helm() {
        assert_eq!(
            parse_set("a.b=3,c=true,d=x,e=null,f=007").unwrap(),
            json!({"a": {"b": 3}, "c": true, "d": "x", "e": null, "f": "007"})
        );
        assert!(parse_set("noequals").is_err());
        assert!(parse_set("a[0]=1").is_err());
    }

    #[test]
    fn merge_is_deep_and_later_wins() {
        let mut v = json!({"a": {"x": 1, "y": 2}, "l": [1, 2]});
        merge(&mut v, &json!({"a": {"y": 3}, "l": [9]}));
        assert_eq!(v, json!({"a": {"x": 1, "y": 3}, "l": [9]}));
    }
}
