//! Changes to one stored bundle's spec from the command line: `berth scale` (kubectl scale)
//! and `berth start` / `berth stop` (its target-role, as `crm resource start|stop`). Each
//! reads the bundle, changes the one field, and writes it back only over the value it read
//! (a change made meanwhile is not overwritten blindly); the new value is validated as
//! `apply` validates it, and rolled out like any change.

use std::io::Write;

use anyhow::{Context, Result};

use crate::model::{Bundle, NvPair};
use crate::store::{Expect, Store};

/// Reads bundle `name`, lets `change` edit its spec (and say what it did), and writes it
/// back over the revision read. A change that leaves the spec as it was writes nothing.
async fn edit(
    store: &Store,
    name: &str,
    change: impl FnOnce(&mut Bundle) -> Result<String>,
) -> Result<String> {
    let got = store
        .get_bundle(name)
        .await?
        .with_context(|| format!("bundle {name} not found"))?;
    let mut b = got.value.desired();
    let said = change(&mut b)?;
    if b == got.value.desired() {
        return Ok(format!("bundle/{name} unchanged"));
    }
    store
        .put_bundle(&b, Expect::Revision(got.mod_revision))
        .await
        .with_context(|| format!("bundle/{name}"))?;
    Ok(said)
}

/// `berth scale bundle NAME --replicas N`: the bundle's `replicas`.
pub async fn scale(store: &Store, name: &str, replicas: u32, out: &mut impl Write) -> Result<()> {
    let said = edit(store, name, |b| {
        let engine = b
            .spec
            .docker
            .as_mut()
            .or(b.spec.podman.as_mut())
            .context("the bundle has no docker or podman container to scale")?;
        engine.replicas = Some(replicas);
        Ok(format!("bundle/{name} scaled to {replicas} replica(s)"))
    })
    .await?;
    writeln!(out, "{said}")?;
    Ok(())
}

/// `berth stop BUNDLE` sets its `target-role` meta attribute to Stopped (its replicas stop
/// and stay stopped); `berth start BUNDLE` removes it (pcs resource enable: the default,
/// Started, again).
pub async fn target_role(store: &Store, name: &str, run: bool, out: &mut impl Write) -> Result<()> {
    let said = edit(store, name, |b| {
        b.spec.meta_attributes.retain(|p| p.name != "target-role");
        if run {
            return Ok(format!("bundle/{name} started (target-role unset)"));
        }
        b.spec.meta_attributes.push(NvPair {
            id: None,
            name: "target-role".into(),
            value: Some("Stopped".into()),
        });
        Ok(format!("bundle/{name} stopped (target-role=Stopped)"))
    })
    .await?;
    writeln!(out, "{said}")?;
    Ok(())
}
