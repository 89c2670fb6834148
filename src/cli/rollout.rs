//! `berth rollout status|pause|resume|undo|history BUNDLE`, in kubectl's shape.

use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::table::Table;
use crate::model::Bundle;
use crate::model::rollout::RolloutControl;
use crate::store::{Expect, Store};

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Follow a bundle's rollout until it completes; fail when it is paused, failed or
    /// rolled back, or at the timeout.
    Status {
        name: String,
        /// How long to wait (Pacemaker time syntax).
        #[arg(long, default_value = "5min")]
        timeout: String,
        /// Wait for the rollout to finish (`--watch=false`: print where it is and return).
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
    },
    /// Replace nothing more until `resume`.
    Pause { name: String },
    /// Go on with a paused rollout.
    Resume { name: String },
    /// Apply the spec of an earlier generation again (by default the one before the
    /// current): a new generation, rolled out like any change.
    Undo {
        name: String,
        /// The generation to go back to (`berth rollout history` lists them).
        #[arg(long = "to-revision", visible_alias = "to-generation")]
        to: Option<i64>,
    },
    /// The generations whose spec is kept (the current one and the last 10 before it that
    /// were rolled out), for `undo`.
    History { name: String },
}

pub async fn run(store: &Store, cmd: RolloutCommand, out: &mut impl Write) -> Result<()> {
    match cmd {
        RolloutCommand::Status {
            name,
            timeout,
            watch,
        } => status(store, &name, &timeout, watch, out).await,
        RolloutCommand::Pause { name } => {
            current(store, &name).await?;
            let since = crate::unix_now();
            let control = RolloutControl {
                paused: true,
                since,
            };
            store
                .put(
                    &store.keys().rollout(&name),
                    serde_json::to_vec(&control)?,
                    Expect::Any,
                )
                .await?;
            writeln!(out, "bundle {name} rollout paused")?;
            Ok(())
        }
        RolloutCommand::Resume { name } => {
            current(store, &name).await?;
            store
                .delete(&store.keys().rollout(&name), Expect::Any)
                .await?;
            writeln!(out, "bundle {name} rollout resumed")?;
            Ok(())
        }
        RolloutCommand::History { name } => {
            let mut t = Table::new(vec!["GENERATION", "IMAGE", "REPLICAS", ""]);
            for row in history_rows(store, &name).await? {
                t.row(row.to_vec());
            }
            t.print(out, true)?;
            Ok(())
        }
        RolloutCommand::Undo { name, to } => undo(store, &name, to, out).await,
    }
}

/// `rollout status`: the rollout's line, or (`watch`) wait until it completes.
async fn status(
    store: &Store,
    name: &str,
    timeout: &str,
    watch: bool,
    out: &mut impl Write,
) -> Result<()> {
    let current = current(store, name).await?;
    if !watch {
        let r = current.status.as_ref().and_then(|s| s.rollout.as_ref());
        match r {
            Some(r) => writeln!(out, "{}", super::cluster::rollout_line(name, r))?,
            None => writeln!(out, "{name}: waiting for the controller")?,
        }
        return Ok(());
    }
    let timeout =
        crate::model::duration::parse(timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    super::cluster::wait_rollouts(store, &[name.to_string()], timeout, true).await?;
    writeln!(out, "bundle {name} successfully rolled out")?;
    Ok(())
}

/// `rollout undo`: the spec of generation `to` (or the one before the current) written
/// back, over the value read only.
async fn undo(store: &Store, name: &str, to: Option<i64>, out: &mut impl Write) -> Result<()> {
    let got = store
        .get_bundle(name)
        .await?
        .with_context(|| format!("bundle {name} not found"))?;
    let now = got.value.metadata.generation.unwrap_or(0);
    let kept = history(store, name).await?;
    let back = match to {
        Some(g) if g == now => bail!("--to-revision {g}: that is the current generation"),
        Some(g) => kept
            .into_iter()
            .find(|b| b.metadata.generation == Some(g))
            .with_context(|| {
                format!(
                    "--to-revision {g}: generation {g} of {name} is not in its history \
                     (berth rollout history {name} lists those kept)"
                )
            })?,
        None => kept
            .into_iter()
            .rev()
            .find(|b| b.metadata.generation.is_some_and(|g| g < now))
            .with_context(|| format!("bundle {name} has no earlier generation kept"))?,
    };
    let g = back.metadata.generation.unwrap_or(0);
    let mut b = got.value;
    b.spec = back.spec;
    b.status = None;
    // Only over the value read: a change made meanwhile is not undone blindly.
    store
        .put_bundle(&b, Expect::Revision(got.mod_revision))
        .await?;
    writeln!(
        out,
        "bundle {name} rolled back to the spec of generation {g}"
    )?;
    Ok(())
}

/// `rollout history`'s rows, oldest first: generation, image, replicas, and `current` for
/// the current one (the generations kept before it, then it).
pub async fn history_rows(store: &Store, name: &str) -> Result<Vec<[String; 4]>> {
    let current = current(store, name).await?;
    let now = current.metadata.generation.unwrap_or(0);
    let mut kept = history(store, name).await?;
    kept.retain(|b| b.metadata.generation.is_some_and(|g| g < now));
    kept.push(current);
    Ok(kept
        .iter()
        .map(|b| {
            let g = b.metadata.generation.unwrap_or(0);
            [
                g.to_string(),
                b.spec.container().1.image.clone(),
                b.spec.replicas().to_string(),
                if g == now { "current" } else { "" }.to_string(),
            ]
        })
        .collect())
}

/// The stored bundle (with its status), or a clear error.
async fn current(store: &Store, name: &str) -> Result<Bundle> {
    Ok(store
        .get_bundle(name)
        .await?
        .with_context(|| format!("bundle {name} not found"))?
        .value)
}

/// The specs the history keeps for a bundle, oldest first.
async fn history(store: &Store, name: &str) -> Result<Vec<Bundle>> {
    let (_, kvs) = store.list(&store.keys().spec_history(name)).await?;
    Ok(kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Bundle>(&kv.value).ok())
        .filter(|b| b.name() == name)
        .collect())
}
