//! `berth chart …`: Helm's verbs over berth's charts and releases.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::table::Table;
use crate::chart::{self, release};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ChartCommand {
    /// Print the manifests a chart renders for a release (nothing is written).
    Template {
        release: String,
        chart: PathBuf,
        #[command(flatten)]
        values: ValuesArgs,
    },
    /// Install a chart as a new release.
    Install {
        release: String,
        chart: PathBuf,
        #[command(flatten)]
        values: ValuesArgs,
    },
    /// Upgrade a release to a chart (and values): applies the difference.
    Upgrade {
        release: String,
        chart: PathBuf,
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

fn load(chart: &std::path::Path, v: &ValuesArgs) -> Result<(chart::Chart, serde_json::Value)> {
    let c = chart::load(chart)?;
    let values = chart::values(&c, &v.files, &v.set)?;
    Ok((c, values))
}

pub(super) fn time(secs: u64) -> String {
    // UTC, as `date -u +%FT%TZ` prints it, without a date crate.
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let (y, mo, d) = civil(days as i64);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's civil-from-days.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

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
            let (c, v) = load(&chart, &values)?;
            write!(out, "{}", release::template(&c, &release, &v)?.manifest)?;
        }
        ChartCommand::Install {
            release,
            chart,
            values,
        } => {
            let (c, v) = load(&chart, &values)?;
            let r = release::install(&store().await?, &c, &release, v).await?;
            summary(out, &r)?;
        }
        ChartCommand::Upgrade {
            release,
            chart,
            values,
            install,
        } => {
            let (c, v) = load(&chart, &values)?;
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
        ChartCommand::List => {
            let mut t = Table::new(vec![
                "NAME",
                "REVISION",
                "UPDATED",
                "STATUS",
                "CHART",
                "APP VERSION",
            ]);
            for r in release::list(&store().await?).await? {
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
        }
        ChartCommand::History { release } => {
            let hist = release::history(&store().await?, &release).await?;
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
