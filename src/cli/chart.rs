//! `berth chart …`: Helm's verbs over berth's charts and releases.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::table::Table;
use crate::chart::{self, release, repo};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ChartCommand {
    /// Print the manifests a chart renders for a release (nothing is written).
    #[command(disable_version_flag = true)]
    Template {
        release: String,
        #[command(flatten)]
        chart: ChartArg,
        #[command(flatten)]
        values: ValuesArgs,
    },
    /// Install a chart as a new release.
    #[command(disable_version_flag = true)]
    Install {
        release: String,
        #[command(flatten)]
        chart: ChartArg,
        #[command(flatten)]
        values: ValuesArgs,
    },
    /// Upgrade a release to a chart (and values): applies the difference.
    #[command(disable_version_flag = true)]
    Upgrade {
        release: String,
        #[command(flatten)]
        chart: ChartArg,
        #[command(flatten)]
        values: ValuesArgs,
        /// Install the release if it does not exist.
        #[arg(short, long)]
        install: bool,
    },
    /// Re-apply an earlier revision (default: the previous one) as a new revision.
    Rollback {
        release: String,
        revision: Option<u32>,
    },
    /// Delete a release's bundles and (unless --keep-history) its history.
    Uninstall {
        release: String,
        #[arg(long)]
        keep_history: bool,
    },
    /// List releases (their latest revision).
    List,
    /// Show every revision of a release.
    History { release: String },
    /// Package a chart directory as `<name>-<version>.tgz` (Helm's layout).
    Package {
        dir: PathBuf,
        /// Where to write the package.
        #[arg(short = 'd', long, default_value = ".")]
        destination: PathBuf,
    },
    /// Download a chart from a repository (its digest checked against the index).
    #[command(disable_version_flag = true)]
    Pull {
        /// REPOSITORY/CHART.
        chart: String,
        /// An exact version or a semver range (default: the latest release).
        #[arg(long)]
        version: Option<String>,
        #[arg(short = 'd', long, default_value = ".")]
        destination: PathBuf,
        /// Unpack it into `<destination>/<chart>/` instead of keeping the .tgz.
        #[arg(long)]
        untar: bool,
    },
    /// Chart repositories: add, list, update, remove, and index a directory of packages.
    #[command(subcommand)]
    Repo(RepoCommand),
}

/// `berth chart repo …`. The list is `repositories.yaml` (`BERTH_REPOSITORY_CONFIG`, default
/// `~/.config/berth/repositories.yaml`); indexes are cached in `BERTH_REPOSITORY_CACHE`
/// (default `~/.cache/berth/repository`).
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Add a repository (its index.yaml is fetched and read first).
    Add {
        name: String,
        url: String,
        /// Replace a repository already added under that name with another URL.
        #[arg(long)]
        force_update: bool,
    },
    /// List the repositories added.
    List,
    /// Fetch the indexes again (all, or those named).
    Update { names: Vec<String> },
    /// Remove a repository and its cached index.
    Remove { name: String },
    /// Write `<dir>/index.yaml` for the packages (`*.tgz`) in a directory.
    Index {
        dir: PathBuf,
        /// The URL the repository is served at (default: URLs relative to the index).
        #[arg(long)]
        url: Option<String>,
    },
}

/// Which chart: a chart directory, a package (`.tgz`), or REPOSITORY/CHART from a repository
/// added with `berth chart repo add`.
#[derive(Debug, Args)]
pub struct ChartArg {
    pub chart: String,
    /// For REPOSITORY/CHART: an exact version or a semver range (default: the latest
    /// release).
    #[arg(long)]
    pub version: Option<String>,
}

/// Values on top of the chart's values.yaml: -f files, then --set, later ones winning.
#[derive(Debug, Args)]
pub struct ValuesArgs {
    /// A values file (repeatable).
    #[arg(short = 'f', long = "values")]
    pub files: Vec<PathBuf>,
    /// key=value[,key=value] (repeatable; dotted keys for nesting).
    #[arg(long = "set")]
    pub set: Vec<String>,
}

/// The chart an argument names: a directory, a package file, else REPOSITORY/CHART.
async fn resolve(arg: &ChartArg) -> Result<chart::Chart> {
    let path = std::path::Path::new(&arg.chart);
    if path.exists() {
        anyhow::ensure!(
            arg.version.is_none(),
            "--version: only for a chart from a repository ({} is a local chart)",
            arg.chart
        );
        return Ok(if path.is_dir() {
            chart::load(path)?
        } else {
            let bytes =
                std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            repo::load_package(&bytes, &arg.chart)?
        });
    }
    let (entry, bytes) = repo::Repos::from_env()
        .download(&arg.chart, arg.version.as_deref())
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e} (and no chart directory or package at {:?})", arg.chart)
        })?;
    Ok(repo::load_package(
        &bytes,
        &format!("{}-{}", arg.chart, entry.version),
    )?)
}

async fn load(arg: &ChartArg, v: &ValuesArgs) -> Result<(chart::Chart, serde_json::Value)> {
    let c = resolve(arg).await?;
    let values = chart::values(&c, &v.files, &v.set)?;
    Ok((c, values))
}

pub(super) use crate::utc_time as time;

/// Runs a chart command; `store` is connected only for the verbs that need etcd.
pub async fn run(
    cmd: ChartCommand,
    store: impl AsyncFnOnce() -> Result<Store>,
    out: &mut impl Write,
) -> Result<()> {
    match cmd {
        ChartCommand::Template {
            release,
            chart,
            values,
        } => {
            let (c, v) = load(&chart, &values).await?;
            write!(out, "{}", release::template(&c, &release, &v)?.manifest)?;
        }
        ChartCommand::Install {
            release,
            chart,
            values,
        } => {
            let (c, v) = load(&chart, &values).await?;
            let r = release::install(&store().await?, &c, &release, v).await?;
            summary(out, &r)?;
        }
        ChartCommand::Upgrade {
            release,
            chart,
            values,
            install,
        } => {
            let (c, v) = load(&chart, &values).await?;
            let r = release::upgrade(&store().await?, &c, &release, v, install).await?;
            summary(out, &r)?;
        }
        ChartCommand::Rollback { release, revision } => {
            let r = release::rollback(&store().await?, &release, revision).await?;
            summary(out, &r)?;
        }
        ChartCommand::Uninstall {
            release,
            keep_history,
        } => {
            let deleted = release::uninstall(&store().await?, &release, keep_history).await?;
            for b in &deleted {
                writeln!(out, "bundle/{b} deleted")?;
            }
            writeln!(out, "release \"{release}\" uninstalled")?;
        }
        ChartCommand::List => list(&store().await?, out).await?,
        ChartCommand::History { release } => history(&store().await?, &release, out).await?,
        ChartCommand::Package { dir, destination } => {
            let path = repo::package(&dir, &destination)?;
            writeln!(out, "packaged {}", path.display())?;
        }
        ChartCommand::Pull {
            chart,
            version,
            destination,
            untar,
        } => pull(&chart, version.as_deref(), &destination, untar, out).await?,
        ChartCommand::Repo(cmd) => repo_command(cmd, out).await?,
    }
    Ok(())
}

/// `chart list`: every release, as helm list shows them.
async fn list(store: &Store, out: &mut impl Write) -> Result<()> {
    let mut t = Table::new(vec![
        "NAME",
        "REVISION",
        "UPDATED",
        "STATUS",
        "CHART",
        "APP VERSION",
    ]);
    for r in release::list(store).await? {
        t.row(vec![
            r.name.clone(),
            r.revision.to_string(),
            time(r.updated),
            r.status.as_str().into(),
            r.chart.clone(),
            r.app_version.clone().unwrap_or_default(),
        ]);
    }
    t.print(out, true)?;
    Ok(())
}

/// `chart history`: a release's revisions.
async fn history(store: &Store, release: &str, out: &mut impl Write) -> Result<()> {
    let hist = release::history(store, release).await?;
    if hist.is_empty() {
        anyhow::bail!("release {release:?} not found");
    }
    let mut t = Table::new(vec![
        "REVISION",
        "UPDATED",
        "STATUS",
        "CHART",
        "APP VERSION",
        "DESCRIPTION",
    ]);
    for (r, _) in hist {
        t.row(vec![
            r.revision.to_string(),
            time(r.updated),
            r.status.as_str().into(),
            r.chart,
            r.app_version.unwrap_or_default(),
            r.description,
        ]);
    }
    t.print(out, true)?;
    Ok(())
}

/// `chart pull`: a chart package from a repository, kept as it is or unpacked.
async fn pull(
    chart: &str,
    version: Option<&str>,
    destination: &std::path::Path,
    untar: bool,
    out: &mut impl Write,
) -> Result<()> {
    let (entry, bytes) = repo::Repos::from_env().download(chart, version).await?;
    let origin = format!("{chart}-{}", entry.version);
    let path = if untar {
        repo::untar(&bytes, &origin, destination)?
    } else {
        // Read before it is kept: a package berth cannot load is not written.
        repo::load_package(&bytes, &origin)?;
        let path = destination.join(format!("{}-{}.tgz", entry.name, entry.version));
        std::fs::create_dir_all(destination)?;
        std::fs::write(&path, &bytes)?;
        path
    };
    writeln!(
        out,
        "pulled {} {} to {}",
        entry.name,
        entry.version,
        path.display()
    )?;
    Ok(())
}

async fn repo_command(cmd: RepoCommand, out: &mut impl Write) -> Result<()> {
    let repos = repo::Repos::from_env();
    match cmd {
        RepoCommand::Add {
            name,
            url,
            force_update,
        } => {
            let idx = repos.add(&name, &url, force_update).await?;
            let charts: usize = idx.entries.values().map(Vec::len).sum();
            writeln!(
                out,
                "\"{name}\" has been added to your repositories ({charts} chart versions)"
            )?;
        }
        RepoCommand::List => {
            let f = repos.read()?;
            anyhow::ensure!(!f.repositories.is_empty(), "no repositories to show");
            let mut t = Table::new(vec!["NAME", "URL"]);
            for r in f.repositories {
                t.row(vec![r.name, r.url]);
            }
            t.print(out, true)?;
        }
        RepoCommand::Update { names } => {
            for n in repos.update(&names).await? {
                writeln!(
                    out,
                    "...Successfully got an update from the \"{n}\" chart repository"
                )?;
            }
        }
        RepoCommand::Remove { name } => {
            repos.remove(&name)?;
            writeln!(out, "\"{name}\" has been removed from your repositories")?;
        }
        RepoCommand::Index { dir, url } => {
            let idx = repo::index(&dir, url.as_deref())?;
            let charts: usize = idx.entries.values().map(Vec::len).sum();
            writeln!(
                out,
                "wrote {} ({charts} chart versions)",
                dir.join("index.yaml").display()
            )?;
        }
    }
    Ok(())
}

fn summary(out: &mut impl Write, r: &release::Release) -> std::io::Result<()> {
    writeln!(out, "NAME: {}", r.name)?;
    writeln!(out, "LAST DEPLOYED: {}", time(r.updated))?;
    writeln!(out, "STATUS: {}", r.status.as_str())?;
    writeln!(out, "REVISION: {}", r.revision)?;
    writeln!(out, "DESCRIPTION: {}", r.description)?;
    writeln!(out, "BUNDLES: {}", r.bundles.join(", "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_time() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time(1_795_478_400), "2026-11-24T00:00:00Z");
    }
}
