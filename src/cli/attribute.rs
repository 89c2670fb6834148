//! `berth attribute`: the cluster's attributes from outside, in `crm_attribute`'s shape.
//! Node attributes (permanent or transient), cluster properties and promotion scores are
//! one etcd key each (`<prefix>/attributes/<section>/<owner>/<name>`, see
//! [`crate::model::attributes`]); permanent node attributes are what location rules read.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use super::Exit;
use crate::model::attributes::{self, DEFAULT_SET, Section};
use crate::store::{Expect, Store, StoreError};

/// Pacemaker's exit code for an attribute that is not set (`CRM_EX_NOSUCH`).
const EX_NOSUCH: u8 = 105;

/// `berth attribute` (crm_attribute's flags).
#[derive(Debug, Args)]
pub struct AttributeArgs {
    /// The node whose attribute it is (a host, or a replica `<bundle>-<i>`).
    #[arg(short = 'N', long)]
    node: Option<String>,
    /// The attribute's name; without one, every attribute (of --node, --type) is listed.
    #[arg(short = 'n', long)]
    name: Option<String>,
    /// Set the attribute to this value.
    #[arg(short = 'v', long, conflicts_with_all = ["delete", "query"])]
    update: Option<String>,
    /// Delete the attribute.
    #[arg(short = 'D', long, conflicts_with = "query")]
    delete: bool,
    /// Print the attribute's value (the default).
    #[arg(short = 'G', long)]
    query: bool,
    /// Print only the value.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// `reboot` (transient: the status section) or `forever` (the nodes section).
    #[arg(short = 'l', long)]
    lifetime: Option<String>,
    /// The CIB section: nodes, status or crm_config (the default without --node).
    #[arg(short = 't', long = "type")]
    kind: Option<String>,
    /// The property set of a cluster property (default cib-bootstrap-options).
    #[arg(short = 's', long)]
    set_name: Option<String>,
    /// With a query: the value to print when the attribute is not set.
    #[arg(short = 'd', long)]
    default: Option<String>,
    /// The promotion score of resource RSC on --node (the transient `master-RSC`).
    #[arg(short = 'p', long, value_name = "RSC")]
    promotion: Option<String>,
}

/// Where one attribute lives.
struct Target {
    section: Section,
    owner: String,
    name: String,
}

fn target(args: &AttributeArgs) -> Result<(Section, Option<String>, Option<String>)> {
    let section = Section::of_call(
        args.kind.as_deref(),
        args.lifetime.as_deref(),
        args.node.is_some(),
        args.promotion.is_some(),
    )
    .map_err(anyhow::Error::msg)?;
    let owner = match section {
        Section::CrmConfig => {
            if args.node.is_some() {
                anyhow::bail!("--node: cluster properties (--type crm_config) belong to no node");
            }
            Some(args.set_name.clone().unwrap_or_else(|| DEFAULT_SET.into()))
        }
        _ => args.node.clone(),
    };
    if let Some(o) = &owner {
        attributes::check_owner(section, o).map_err(anyhow::Error::msg)?;
    }
    let name = match &args.promotion {
        Some(rsc) => {
            if args.name.is_some() {
                anyhow::bail!("--promotion names the attribute itself (master-RSC): drop --name");
            }
            Some(crate::remote::attrs::promotion_name(rsc))
        }
        None => args.name.clone(),
    };
    if let Some(n) = &name {
        attributes::check_name(n).map_err(anyhow::Error::msg)?;
    }
    Ok((section, owner, name))
}

/// Runs `berth attribute`.
pub async fn run(store: &Store, args: &AttributeArgs, out: &mut impl Write) -> Result<()> {
    let (section, owner, name) = target(args)?;
    let Some(name) = name else {
        if args.update.is_some() || args.delete {
            anyhow::bail!("--name is required to set or delete an attribute");
        }
        return list(store, section, args, out).await;
    };
    let Some(owner) = owner else {
        anyhow::bail!("--node is required for a node attribute");
    };
    let t = Target {
        section,
        owner,
        name,
    };
    let key = store.keys().attribute(t.section, &t.owner, &t.name);
    if let Some(value) = &args.update {
        attributes::check_value(value).map_err(anyhow::Error::msg)?;
        let lease = match t.section {
            Section::Status => transient_lease(store, &t.owner).await?,
            _ => None,
        };
        store
            .put_if_changed(&key, value.clone().into_bytes(), lease)
            .await?;
        return Ok(());
    }
    if args.delete {
        // Deleting what is not there is no error (crm_attribute -D says nothing either).
        match store.delete(&key, Expect::Any).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let value = match store.get(&key).await? {
        Some(kv) => String::from_utf8_lossy(&kv.value).into_owned(),
        None => match &args.default {
            Some(d) => d.clone(),
            None => {
                return Err(Exit {
                    code: EX_NOSUCH,
                    message: format!(
                        "error performing operation: no such attribute: {} {} {}",
                        t.section, t.owner, t.name
                    ),
                }
                .into());
            }
        },
    };
    if args.quiet {
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "{}",
            attributes::query_line(t.section, &t.name, &value)
        )?;
    }
    Ok(())
}

/// What a transient attribute of `owner` lives under: a host online's registration lease
/// (it goes when the host leaves the cluster, as Pacemaker clears a departed node's status
/// section), or nothing for a replica of a bundle (its remote agent clears them when the
/// replica's instance restarts). Refused for any other node: it has no membership to end.
async fn transient_lease(store: &Store, owner: &str) -> Result<Option<i64>> {
    let keys = store.keys();
    if let Some(kv) = store.get(&keys.node(owner)).await? {
        return Ok(Some(kv.lease));
    }
    if let Some((bundle, i)) = owner.rsplit_once('-')
        && i.parse::<u32>().is_ok()
        && store.get(&keys.bundle(bundle)).await?.is_some()
    {
        return Ok(None);
    }
    anyhow::bail!(
        "--node {owner:?}: neither a host online nor a replica of a bundle; a transient attribute (--lifetime reboot) lasts only while its node is in the cluster"
    )
}

/// Lists the attributes of `section` (of every section when neither a type nor a lifetime
/// narrows it), of `--node` or `--set-name` when given.
async fn list(
    store: &Store,
    section: Section,
    args: &AttributeArgs,
    out: &mut impl Write,
) -> Result<()> {
    let sections: Vec<Section> = if args.kind.is_none() && args.lifetime.is_none() {
        vec![Section::Nodes, Section::Status, Section::CrmConfig]
    } else {
        vec![section]
    };
    let mut table = super::table::Table::new(vec!["SECTION", "NODE/SET", "NAME", "VALUE"]);
    let mut found = false;
    for s in sections {
        let owner = match s {
            Section::CrmConfig => args.set_name.as_deref(),
            _ => args.node.as_deref(),
        };
        let prefix = match owner {
            Some(o) => store.keys().attributes_of(s, o),
            None => store.keys().attributes(s),
        };
        let (_, kvs) = store.list(&prefix).await?;
        for kv in kvs {
            if let Some(crate::store::keys::Key::Attribute { owner, name, .. }) =
                store.keys().parse(&kv.key)
            {
                found = true;
                table.row(vec![
                    s.to_string(),
                    owner.to_string(),
                    name.to_string(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                ]);
            }
        }
    }
    if !found {
        say!("No attributes found");
        return Ok(());
    }
    table.print(out, true)?;
    Ok(())
}
