//! Pacemaker's node-attribute tools as a resource agent inside a berth container sees them:
//! `crm_attribute`, `crm_master` and `crm_node`. They are the berth binary itself, bind-mounted
//! under those names beside it (see [`super::layout`]), and chosen by the name they are run as.
//!
//! Agents report their promotion score with them: `crm_master -l reboot -v 10`, or, through
//! ocf-shellfuncs' `ocf_promotion_score`, `crm_attribute -p -l reboot -v 10`. The tools keep a
//! replica's attributes in one JSON file (named by `BERTH_ATTRIBUTES`, which the remote agent
//! sets for its agents); the remote agent reads the promotion score back after every
//! operation and reports it, and the controller promotes the highest scores.
//!
//! Only this replica's own attributes exist here: `-N` naming another node is refused. Run by
//! hand in the container (`docker exec`), the tools find the file in `/run/berth` and take the
//! host name, which is the replica's name, as the node's.
//! Lifetime `reboot` (Pacemaker's transient attributes) lasts until the container restarts;
//! `forever` lasts as long as the replica's directory on its host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::attributes::{AttrKey, AttrOp, DEFAULT_SET, Section, query_line};
use crate::model::layout::{LATER_TOOLS, TOOLS};
use crate::model::validate::parse_score;

/// The environment variable naming the attributes file.
pub const ENV_FILE: &str = "BERTH_ATTRIBUTES";
/// The environment variable naming this replica's node (as Pacemaker passes it to agents).
pub const ENV_NODE: &str = "OCF_RESKEY_CRM_meta_on_node";

/// The Pacemaker version `pacemakerd -$` reports: the release whose tools and formats berth
/// follows (ocf-shellfuncs asks it before it trusts `crm_node -n`).
pub const PACEMAKER_VERSION: &str = "2.1.5";

/// Whether `name` is one of the tools.
pub fn is_tool(name: &str) -> bool {
    TOOLS.contains(&name) || LATER_TOOLS.contains(&name)
}

/// Pacemaker's exit codes the tools use.
const EX_USAGE: i32 = 64;
const EX_CANTCREAT: i32 = 73;
const EX_NOSUCH: i32 = 105;

/// One attribute's value and lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attr {
    pub value: String,
    /// `reboot` or `forever`.
    pub lifetime: String,
}

/// A replica's attributes, by name.
pub type Attrs = BTreeMap<String, Attr>;

/// The attribute holding a resource's promotion score (Pacemaker's `master-<resource>`; a
/// clone instance's `:N` suffix is not part of it).
pub fn promotion_name(resource: &str) -> String {
    let base = resource.split(':').next().unwrap_or(resource);
    format!("master-{base}")
}

/// The attributes in `path` (none when it does not exist or cannot be read).
pub fn read(path: &Path) -> Attrs {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `attrs` to `path` whole (temp file, then rename).
pub(crate) fn write(path: &Path, attrs: &Attrs) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(attrs).expect("attributes serialize"),
    )?;
    std::fs::rename(&tmp, path)
}

/// Drops the `reboot` attributes: the remote agent does this when its container starts.
pub fn clear_transient(path: &Path) -> std::io::Result<()> {
    let mut attrs = read(path);
    let before = attrs.len();
    attrs.retain(|_, a| a.lifetime != "reboot");
    if attrs.len() == before {
        return Ok(());
    }
    write(path, &attrs)
}

/// The promotion score of `resource` in `path`, when one is set.
pub fn promotion_score(path: &Path, resource: &str) -> Option<i64> {
    read(path)
        .get(&promotion_name(resource))
        .and_then(|a| parse_score(&a.value))
}

/// What one call asks for.
#[derive(Debug, Clone, PartialEq, Default)]
struct Request {
    name: Option<String>,
    value: Option<String>,
    delete: bool,
    query: bool,
    quiet: bool,
    lifetime: Option<String>,
    /// `--type`: nodes, status or crm_config.
    kind: Option<String>,
    /// `--set-name` (crm_config).
    set: Option<String>,
    node: Option<String>,
    default: Option<String>,
    /// `--promotion[=resource]` (always, for crm_master): the resource, when named.
    promotion: Option<Option<String>>,
    /// crm_node `-n`.
    print_name: bool,
    /// crm_node `-l`, `-p`, `-q`.
    members: Option<MembersQuery>,
}

/// Parses `args` (without the program name) for `tool`.
fn parse(tool: &str, args: &[String]) -> Result<Request, Usage> {
    let mut r = Request::default();
    if tool == "crm_master" {
        r.promotion = Some(None);
    }
    let mut it: std::collections::VecDeque<String> = args.iter().cloned().collect();
    while let Some(arg) = it.pop_front() {
        let (flag, inline) = split_flag(&arg, &mut it, &['D', 'G', 'Q', 'q', 'V']);
        let mut value = |what: &'static str| -> Result<String, Usage> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.pop_front().ok_or_else(|| Usage::NeedsValue {
                    flag: flag.clone(),
                    what,
                }),
            }
        };
        match (tool, flag.as_str()) {
            ("crm_node", "-n" | "--name") => r.print_name = true,
            ("crm_node", "-l" | "--list") => r.members = Some(MembersQuery::List),
            ("crm_node", "-p" | "--partition") => r.members = Some(MembersQuery::Partition),
            ("crm_node", "-q" | "--quorum") => r.members = Some(MembersQuery::Quorum),
            ("crm_node", "-V" | "--verbose") => {}
            ("crm_node", _) => {
                return Err(Usage::Unsupported {
                    arg,
                    supported: "-n -l -p -q",
                });
            }
            (_, "-n" | "--name") => r.name = Some(value("name")?),
            (_, "-v" | "--update" | "--attr-value") => r.value = Some(value("value")?),
            (_, "-D" | "--delete") => r.delete = true,
            (_, "-G" | "--query") => r.query = true,
            (_, "-Q" | "-q" | "--quiet") => r.quiet = true,
            (_, "-l" | "--lifetime") => r.lifetime = Some(value("lifetime")?),
            (_, "-t" | "--type") => r.kind = Some(value("type")?),
            (_, "-s" | "--set-name") => r.set = Some(value("set name")?),
            (_, "-N" | "--node") => r.node = Some(value("node name")?),
            (_, "-d" | "--default") => r.default = Some(value("default")?),
            ("crm_attribute", "-p" | "--promotion") => r.promotion = Some(inline),
            ("crm_master", "-r" | "--resource") => r.promotion = Some(Some(value("resource")?)),
            ("crm_master", "-i" | "--id") => {
                value("XML id")?;
            }
            (_, "-V" | "--verbose") => {}
            _ => {
                let supported = if tool == "crm_master" {
                    "-n -v -D -G -Q -l -t -s -N -d -r"
                } else {
                    "-n -v -D -G -Q -l -t -s -N -d -p"
                };
                return Err(Usage::Unsupported { arg, supported });
            }
        }
    }
    check(tool, r)
}

/// One argument as a flag and its value given inline (`--long=value`, `-xvalue`); a
/// cluster of `switches` (`-GQ`: short flags that take no value) gives its first and leaves
/// the rest to come next.
fn split_flag(
    arg: &str,
    rest_args: &mut std::collections::VecDeque<String>,
    switches: &[char],
) -> (String, Option<String>) {
    let mut chars = arg.chars();
    let short = match (chars.next(), chars.next()) {
        (Some('-'), Some(c)) if c != '-' && !chars.as_str().is_empty() => {
            Some((c, chars.as_str().to_string()))
        }
        _ => None,
    };
    match (arg.split_once('='), short) {
        (Some((f, v)), _) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        (_, Some((c, rest))) if switches.contains(&c) => {
            rest_args.push_front(format!("-{rest}"));
            (format!("-{c}"), None)
        }
        (_, Some((c, rest))) => (format!("-{c}"), Some(rest)),
        _ => (arg.to_string(), None),
    }
}

/// The flags given make one request: crm_node prints something; the others do at most one
/// of set, delete and query, in a section their flags can name.
fn check(tool: &str, r: Request) -> Result<Request, Usage> {
    if tool == "crm_node" {
        if !r.print_name && r.members.is_none() {
            return Err(Usage::OneOf("-n, -l, -p and -q"));
        }
        return Ok(r);
    }
    if [r.value.is_some(), r.delete, r.query]
        .iter()
        .filter(|b| **b)
        .count()
        > 1
    {
        return Err(Usage::OneOf("-v, -D and -G"));
    }
    // The section the flags name (checked here: a bad --type or --lifetime is a usage error).
    section(&r)?;
    Ok(r)
}

/// A tool's command line that berth's tools do not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Usage {
    #[error("{flag}: needs a {what}")]
    NeedsValue { flag: String, what: &'static str },
    #[error("{arg}: not supported inside a berth container (supported: {supported})")]
    Unsupported {
        arg: String,
        supported: &'static str,
    },
    #[error("give one of {0}")]
    OneOf(&'static str),
    #[error(transparent)]
    Section(#[from] crate::model::attributes::AttrError),
}

/// The CIB section a request is about: a promotion score is transient; otherwise
/// crm_attribute's `--type` and `--lifetime` decide, a node attribute being permanent by
/// default.
fn section(r: &Request) -> Result<Section, crate::model::attributes::AttrError> {
    // Inside a replica every node attribute has a node: this one's, by default.
    Section::of_call(
        r.kind.as_deref(),
        r.lifetime.as_deref(),
        true,
        r.promotion.is_some(),
    )
}

/// Runs the tool named `tool` with `args`; returns its exit code.
pub fn main(tool: &str, args: &[String]) -> i32 {
    let out = &mut std::io::stdout().lock();
    let err = &mut std::io::stderr().lock();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    // Run by hand in a container (docker exec), without an agent's environment: the
    // replica's directory and its host name (the replica's name) serve.
    let dir = Path::new(crate::model::layout::REMOTE_DIR);
    let file = env(ENV_FILE)
        .map(PathBuf::from)
        .or_else(|| dir.is_dir().then(|| dir.join("attributes.json")));
    let node = env(ENV_NODE).or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
    });
    // The attribute daemon beside the file, when the remote agent runs one: the cluster's
    // attributes; otherwise only this replica's own, in the file.
    let backend = match file {
        Some(f) if super::attrd::socket_beside(&f).exists() => {
            Some(Backend::Daemon(super::attrd::socket_beside(&f)))
        }
        Some(f) => Some(Backend::File(f)),
        None => None,
    };
    let result = if tool == "crm_mon" {
        crm_mon(args, backend, out)
    } else if tool == "cibadmin" {
        cibadmin(args, backend, out)
    } else if tool == "attrd_updater" {
        attrd_updater(args, backend, node, out)
    } else if tool == "pacemakerd" {
        pacemakerd(args, out)
    } else {
        run(tool, args, backend, node, env("OCF_RESOURCE_INSTANCE"), out)
    };
    match result {
        Ok(code) => code,
        Err((code, msg)) => {
            let _ = writeln!(err, "{tool}: {msg}");
            code
        }
    }
}

/// `crm_mon`: `-1`, `-r`, `-X`/`--as-xml`, `--output-as=xml|text` (see
/// [`super::crm_mon`]).
fn crm_mon(
    args: &[String],
    backend: Option<Backend>,
    out: &mut impl Write,
) -> Result<i32, (i32, String)> {
    let usage = |m: String| (EX_USAGE, m);
    let mut as_xml = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-1" | "--one-shot" | "-r" | "--inactive" | "-V" | "--verbose" => {}
            "-X" | "--as-xml" | "--output-as=xml" => as_xml = true,
            "--output-as=text" => as_xml = false,
            "--output-as" => match it.next().map(String::as_str) {
                Some("xml") => as_xml = true,
                Some("text") => as_xml = false,
                other => {
                    return Err(usage(format!(
                        "--output-as {}: expected xml or text",
                        other.unwrap_or("")
                    )));
                }
            },
            other => {
                return Err(usage(format!(
                    "{other}: not supported inside a berth container (supported: -1 -r -X --as-xml --output-as)"
                )));
            }
        }
    }
    let Some(Backend::Daemon(socket)) = backend else {
        return Err(usage(
            "crm_mon needs the attribute daemon (a replica run by a node agent)".into(),
        ));
    };
    let reply = super::attrd::ask(&socket, &super::attrd::ToolRequest::Members)
        .map_err(|e| (EX_CANTCREAT, e.to_string()))?;
    let members = reply.members.unwrap_or_default();
    let shown = if as_xml {
        let request = std::iter::once("crm_mon")
            .chain(args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        super::crm_mon::xml(&members, &request)
    } else {
        super::crm_mon::text(&members)
    };
    let _ = out.write_all(shown.as_bytes());
    Ok(0)
}

/// `pacemakerd -$` (`--version`): the version line agents parse. There is no daemon to run
/// inside a replica: anything else is refused.
fn pacemakerd(args: &[String], out: &mut impl Write) -> Result<i32, (i32, String)> {
    match args {
        [a] if a == "-$" || a == "--version" => {
            let _ = writeln!(
                out,
                "Pacemaker {PACEMAKER_VERSION} (berth {})\nWritten by Andrew Beekhof and the Pacemaker project contributors",
                env!("CARGO_PKG_VERSION")
            );
            Ok(0)
        }
        _ => Err((
            EX_USAGE,
            "only -$ (--version) inside a berth container: the cluster is berth's".into(),
        )),
    }
}

/// `attrd_updater`: a transient attribute of this replica's node (or `-N`'s): `-U`/`-v`/`-B`
/// sets it (once stored), `-D` deletes it, `-Q` prints `name="…" host="…" value="…"` (`-A`:
/// one line per node that has it). Dampening (`-d`), sets (`-S`) and `-p` are accepted and
/// have no effect: every write is stored at once.
fn attrd_updater(
    args: &[String],
    backend: Option<Backend>,
    me: Option<String>,
    out: &mut impl Write,
) -> Result<i32, (i32, String)> {
    let usage = |m: String| (EX_USAGE, m);
    let AttrdArgs {
        name,
        value,
        node,
        delete,
        query,
        all,
    } = AttrdArgs::parse(args)?;
    let name = name.ok_or_else(|| usage("--name: required".into()))?;
    let me = me.ok_or_else(|| usage(format!("{ENV_NODE} is not set and there is no host name")))?;
    let Some(Backend::Daemon(socket)) = backend else {
        return Err(usage(
            "attrd_updater needs the attribute daemon (a replica run by a node agent)".into(),
        ));
    };
    let node = node.unwrap_or(me);
    let key = AttrKey {
        section: Section::Status,
        owner: node.clone(),
        name: name.clone(),
    };
    use super::attrd::{ToolRequest, ask};
    let request = match (&value, delete, query) {
        (Some(v), false, false) => ToolRequest::Write {
            write: AttrOp::Set {
                key,
                value: v.clone(),
            },
        },
        (None, true, false) => ToolRequest::Write {
            write: AttrOp::Delete { key },
        },
        (None, false, true) if all => ToolRequest::List {
            section: Section::Status,
            owner: None,
        },
        (None, false, true) => ToolRequest::Get { key },
        _ => return Err(usage("give one of -U, -D and -Q".into())),
    };
    let reply = ask(&socket, &request).map_err(|e| (EX_CANTCREAT, e.to_string()))?;
    if let Some(e) = reply.error {
        return Err((EX_CANTCREAT, e));
    }
    if !query {
        return Ok(0);
    }
    let found: Vec<(String, String)> = if all {
        reply
            .values
            .into_iter()
            .filter(|(k, _)| k.name == name)
            .map(|(k, v)| (k.owner, v))
            .collect()
    } else {
        reply.value.map(|v| (node, v)).into_iter().collect()
    };
    if found.is_empty() {
        return Err(no_such(&name));
    }
    for (host, v) in found {
        let _ = writeln!(out, "name=\"{name}\" host=\"{host}\" value=\"{v}\"");
    }
    Ok(0)
}

/// `attrd_updater`'s command line.
#[derive(Debug, Default)]
struct AttrdArgs {
    name: Option<String>,
    value: Option<String>,
    node: Option<String>,
    delete: bool,
    query: bool,
    all: bool,
}

impl AttrdArgs {
    /// The flags as [`split_flag`] reads them (`--name=x`, `-nx`, `-QA` as well as
    /// `--name x`), as attrd_updater's own option parser takes them.
    fn parse(args: &[String]) -> Result<AttrdArgs, (i32, String)> {
        let usage = |m: String| (EX_USAGE, m);
        let mut r = AttrdArgs::default();
        let mut it: std::collections::VecDeque<String> = args.iter().cloned().collect();
        while let Some(arg) = it.pop_front() {
            let (flag, inline) = split_flag(&arg, &mut it, &['D', 'Q', 'A', 'p', 'R', 'V']);
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.pop_front())
                    .ok_or_else(|| usage(format!("{flag}: needs a value")))
            };
            match flag.as_str() {
                "-n" | "--name" => r.name = Some(value()?),
                "-U" | "--update" | "-v" | "-B" | "--update-both" => r.value = Some(value()?),
                "-N" | "--node" => r.node = Some(value()?),
                "-D" | "--delete" => r.delete = true,
                "-Q" | "--query" => r.query = true,
                "-A" | "--all" => r.all = true,
                "-d" | "--delay" | "-S" | "--set" | "-Y" | "--update-delay" => {
                    value()?;
                }
                "-l" | "--lifetime" => {
                    let l = value()?;
                    if l != "reboot" {
                        return Err(usage(format!(
                            "--lifetime {l}: only reboot (attrd keeps transient attributes)"
                        )));
                    }
                }
                "-p" | "--private" | "-R" | "--refresh" | "-V" | "--verbose" => {}
                _ => {
                    return Err(usage(format!(
                        "{arg}: not supported inside a berth container (supported: -n -U -v -B -D -Q -A -N -d -S -l -p)"
                    )));
                }
            }
        }
        Ok(r)
    }
}

/// `cibadmin -Q [--xpath X]` (`-A X`): the CIB the replica may see, or the elements the
/// XPath selects (several inside `<xpath-query>`, as cibadmin prints them; none: exit 105).
fn cibadmin(
    args: &[String],
    backend: Option<Backend>,
    out: &mut impl Write,
) -> Result<i32, (i32, String)> {
    let usage = |m: String| (EX_USAGE, m);
    let (mut query, mut xpath) = (false, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-Q" | "--query" => query = true,
            "-l" | "--local" | "-s" | "--sync-call" | "-V" | "--verbose" => {}
            "-A" | "--xpath" => {
                xpath = Some(
                    it.next()
                        .ok_or_else(|| usage(format!("{a}: needs an XPath")))?
                        .clone(),
                )
            }
            a if a.starts_with("--xpath=") => xpath = Some(a["--xpath=".len()..].to_string()),
            other => {
                return Err(usage(format!(
                    "{other}: not supported inside a berth container (supported: -Q, --xpath)"
                )));
            }
        }
    }
    if !query {
        return Err(usage(
            "only queries (-Q) are supported inside a berth container".into(),
        ));
    }
    let Some(Backend::Daemon(socket)) = backend else {
        return Err(usage(
            "cibadmin needs the attribute daemon (a replica run by a node agent)".into(),
        ));
    };
    let reply = super::attrd::ask(&socket, &super::attrd::ToolRequest::Cib)
        .map_err(|e| (EX_CANTCREAT, e.to_string()))?;
    let cib = super::cib::cib(&reply.values, &reply.members.unwrap_or_default());
    let mut shown = String::new();
    match xpath {
        None => cib.write(&mut shown, 0),
        Some(x) => {
            let found = super::cib::select(&cib, &x).map_err(|e| usage(e.to_string()))?;
            match found.as_slice() {
                [] => return Err(no_such(&x)),
                [one] => one.write(&mut shown, 0),
                many => {
                    shown.push_str("<xpath-query>\n");
                    for e in many {
                        e.write(&mut shown, 1);
                    }
                    shown.push_str("</xpath-query>\n");
                }
            }
        }
    }
    let _ = out.write_all(shown.as_bytes());
    Ok(0)
}

/// What `crm_node` lists of the cluster's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MembersQuery {
    /// `-l`: each host online, as `<id> <name> member` (ids by name order).
    List,
    /// `-p`: the hosts of this partition, on one line.
    Partition,
    /// `-q`: whether this partition has quorum: `1` (a replica's node agent holds its lease
    /// in etcd's quorum; a node that cannot is fenced, its replicas frozen).
    Quorum,
}

fn print_members(q: MembersQuery, m: &crate::model::attributes::Members, out: &mut impl Write) {
    let _ = match q {
        MembersQuery::List => m
            .hosts
            .iter()
            .enumerate()
            .try_for_each(|(i, h)| writeln!(out, "{} {h} member", i + 1)),
        MembersQuery::Partition => writeln!(out, "{}", m.hosts.join(" ")),
        MembersQuery::Quorum => writeln!(out, "1"),
    };
}

/// Where the tools keep attributes.
#[derive(Debug, Clone)]
enum Backend {
    /// The replica's own attributes only, in its file (no attribute daemon: a remote agent
    /// without a node agent polling it).
    File(PathBuf),
    /// The cluster's, through the remote agent's attribute daemon at this socket.
    Daemon(PathBuf),
}

fn run(
    tool: &str,
    args: &[String],
    backend: Option<Backend>,
    me: Option<String>,
    instance: Option<String>,
    out: &mut impl Write,
) -> Result<i32, (i32, String)> {
    let usage = |m: String| (EX_USAGE, m);
    let r = parse(tool, args).map_err(|e| usage(e.to_string()))?;
    let me = me.ok_or_else(|| usage(format!("{ENV_NODE} is not set and there is no host name")))?;
    if r.print_name {
        let _ = writeln!(out, "{me}");
        return Ok(0);
    }
    if let Some(q) = r.members {
        let Some(Backend::Daemon(socket)) = backend else {
            return Err(usage(
                "-l, -p and -q need the attribute daemon (a replica run by a node agent)".into(),
            ));
        };
        let reply = super::attrd::ask(&socket, &super::attrd::ToolRequest::Members)
            .map_err(|e| (EX_CANTCREAT, e.to_string()))?;
        let members = reply.members.unwrap_or_default();
        print_members(q, &members, out);
        return Ok(0);
    }
    let section = section(&r).map_err(|e| usage(e.to_string()))?;
    let name = attribute_name(&r, instance)?;
    let backend = backend.ok_or_else(|| {
        usage(format!(
            "{ENV_FILE} is not set: not running under berth remote"
        ))
    })?;
    match backend {
        Backend::File(file) => in_file(&file, &r, section, name, &me, out),
        Backend::Daemon(socket) => {
            let key = AttrKey {
                section,
                owner: match section {
                    Section::CrmConfig => r.set.clone().unwrap_or_else(|| DEFAULT_SET.into()),
                    _ => r.node.clone().unwrap_or_else(|| me.clone()),
                },
                name,
            };
            through_daemon(&socket, &r, key, out)
        }
    }
}

/// The attribute a request names: `--name`, or a promotion score's (`master-<resource>`,
/// the resource given or this one); a promotion score's value must be a score.
fn attribute_name(r: &Request, instance: Option<String>) -> Result<String, (i32, String)> {
    let usage = |m: String| (EX_USAGE, m);
    let name =
        match (&r.promotion, &r.name) {
            (Some(Some(rsc)), _) => promotion_name(rsc),
            (Some(None), _) => promotion_name(&instance.ok_or_else(|| {
                usage("OCF_RESOURCE_INSTANCE is not set: name the resource".into())
            })?),
            (None, Some(n)) => n.clone(),
            (None, None) => return Err(usage("--name: required".into())),
        };
    if let Some(v) = &r.value
        && r.promotion.is_some()
        && parse_score(v).is_none()
    {
        return Err(usage(format!(
            "--update {v}: a promotion score is an integer, INFINITY or -INFINITY"
        )));
    }
    Ok(name)
}

/// Updates, deletes or queries this replica's own attribute `name` in its file (no
/// attribute daemon: nothing else exists here).
fn in_file(
    file: &std::path::Path,
    r: &Request,
    section: Section,
    name: String,
    me: &str,
    out: &mut impl Write,
) -> Result<i32, (i32, String)> {
    let usage = |m: String| (EX_USAGE, m);
    if section == Section::CrmConfig {
        return Err(usage(
            "--type crm_config: only this replica's own attributes exist here (no attribute daemon)".into(),
        ));
    }
    if let Some(n) = &r.node
        && *n != me
    {
        return Err(usage(format!(
            "--node {n}: only this replica's own attributes ({me}) exist here (no attribute daemon)"
        )));
    }
    let io = |e: std::io::Error| (EX_CANTCREAT, format!("{}: {e}", file.display()));
    if let Some(v) = &r.value {
        let mut attrs = read(file);
        let lifetime = if section == Section::Status {
            "reboot"
        } else {
            "forever"
        };
        attrs.insert(
            name,
            Attr {
                value: v.clone(),
                lifetime: lifetime.into(),
            },
        );
        write(file, &attrs).map_err(io)?;
        return Ok(0);
    }
    if r.delete {
        let mut attrs = read(file);
        if attrs.remove(&name).is_some() {
            write(file, &attrs).map_err(io)?;
        }
        return Ok(0);
    }
    // A query (the default).
    let value = read(file)
        .get(&name)
        .map(|a| a.value.clone())
        .or(r.default.clone());
    match value {
        Some(v) if r.quiet => {
            let _ = writeln!(out, "{v}");
            Ok(0)
        }
        Some(v) => {
            let _ = writeln!(out, "{}", query_line(section, &name, &v));
            Ok(0)
        }
        None => Err(no_such(&name)),
    }
}

fn no_such(name: &str) -> (i32, String) {
    (
        EX_NOSUCH,
        format!("Error performing operation: No such device or address ({name})"),
    )
}

/// A request answered by the attribute daemon: the cluster's attributes.
fn through_daemon(
    socket: &Path,
    r: &Request,
    key: AttrKey,
    out: &mut impl Write,
) -> Result<i32, (i32, String)> {
    use super::attrd::{ToolRequest, ask};
    let request = if let Some(v) = &r.value {
        ToolRequest::Write {
            write: AttrOp::Set {
                key: key.clone(),
                value: v.clone(),
            },
        }
    } else if r.delete {
        ToolRequest::Write {
            write: AttrOp::Delete { key: key.clone() },
        }
    } else {
        ToolRequest::Get { key: key.clone() }
    };
    let reply = ask(socket, &request).map_err(|e| (EX_CANTCREAT, e.to_string()))?;
    if let Some(e) = reply.error {
        // Refused (out of scope, too large, too fast) or not stored in time.
        return Err((EX_CANTCREAT, e));
    }
    if r.value.is_some() || r.delete {
        return Ok(0);
    }
    match reply.value.or(r.default.clone()) {
        Some(v) if r.quiet => {
            let _ = writeln!(out, "{v}");
            Ok(0)
        }
        Some(v) => {
            let _ = writeln!(out, "{}", query_line(key.section, &key.name, &v));
            Ok(0)
        }
        None => Err(no_such(&key.name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tool: &str, args: &str, file: &Path) -> (i32, String) {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        let mut out = Vec::new();
        let code = match run(
            tool,
            &args,
            Some(Backend::File(file.to_path_buf())),
            Some("web-0".into()),
            Some("web-apache:0".into()),
            &mut out,
        ) {
            Ok(c) => c,
            Err((c, m)) => {
                out.extend(m.bytes());
                c
            }
        };
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn attrd_updater_reads_its_flags_in_each_form_its_own_parser_takes() {
        let parse = |args: &str| {
            let args: Vec<String> = args.split_whitespace().map(String::from).collect();
            AttrdArgs::parse(&args)
        };
        for line in [
            "-p -n rmq-node -U rabbit@web-0",
            "--private --name=rmq-node --update=rabbit@web-0",
            "-p -nrmq-node -Urabbit@web-0",
            "-pn rmq-node -v rabbit@web-0 -l reboot",
        ] {
            let a = parse(line).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            assert_eq!(a.name.as_deref(), Some("rmq-node"), "{line}");
            assert_eq!(a.value.as_deref(), Some("rabbit@web-0"), "{line}");
            assert!(!a.delete && !a.query && !a.all, "{line}");
        }
        let a = parse("-QA -n rmq-node").unwrap();
        assert!(a.query && a.all && !a.delete);
        assert_eq!(a.name.as_deref(), Some("rmq-node"));
        let a = parse("-D --name rmq-node -N web-1").unwrap();
        assert!(a.delete);
        assert_eq!(a.node.as_deref(), Some("web-1"));
        // A value is taken as given, even one that looks like a flag.
        assert_eq!(parse("-n x -v -5").unwrap().value.as_deref(), Some("-5"));
        let (code, why) = parse("-n").unwrap_err();
        assert_eq!((code, why.as_str()), (EX_USAGE, "-n: needs a value"));
        let (code, why) = parse("-n x --lifetime=forever").unwrap_err();
        assert_eq!(code, EX_USAGE);
        assert!(why.contains("only reboot"), "{why}");
        let (_, why) = parse("-n x -z").unwrap_err();
        assert!(why.starts_with("-z: not supported"), "{why}");
    }

    #[test]
    fn crm_master_and_crm_attribute_promotion_set_the_same_score() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("attributes.json");
        assert_eq!(call("crm_master", "-l reboot -v 10", &f).0, 0);
        assert_eq!(promotion_score(&f, "web-apache"), Some(10));
        assert_eq!(call("crm_attribute", "-p -l reboot -v 20", &f).0, 0);
        assert_eq!(promotion_score(&f, "web-apache:2"), Some(20));
        assert_eq!(
            call("crm_attribute", "--promotion -G -Q", &f),
            (0, "20\n".into())
        );
        assert_eq!(
            call("crm_master", "-G", &f),
            (0, "scope=status  name=master-web-apache value=20\n".into())
        );
        assert_eq!(call("crm_master", "-l reboot -D", &f).0, 0);
        assert_eq!(promotion_score(&f, "web-apache"), None);
        let (code, msg) = call("crm_master", "-G -Q", &f);
        assert_eq!(code, EX_NOSUCH, "{msg}");
        assert_eq!(call("crm_master", "-GQ -d 0", &f), (0, "0\n".into()));
        // Another resource's score, named.
        assert_eq!(call("crm_attribute", "--promotion=db -v INFINITY", &f).0, 0);
        assert_eq!(promotion_score(&f, "db"), Some(1_000_000));
    }

    /// ocf-shellfuncs' `ocf_local_nodename`: `pacemakerd -$ | grep "Pacemaker .*" | awk
    /// '{ print $2 }'`, compared with 1.1.8 before it trusts `crm_node -n`.
    #[test]
    fn pacemakerd_reports_a_version_newer_than_ocf_shellfuncs_asks() {
        let mut out = Vec::new();
        assert_eq!(pacemakerd(&["-$".into()], &mut out), Ok(0));
        let text = String::from_utf8(out).unwrap();
        let line = text.lines().find(|l| l.contains("Pacemaker ")).unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some(PACEMAKER_VERSION));
        assert!(pacemakerd(&["--features".into()], &mut Vec::new()).is_err());
    }

    #[test]
    fn transient_attributes_are_cleared_and_permanent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("attributes.json");
        assert_eq!(call("crm_attribute", "-n a -v 1 -l reboot", &f).0, 0);
        assert_eq!(call("crm_attribute", "--name=b --update=2", &f).0, 0);
        clear_transient(&f).unwrap();
        let attrs = read(&f);
        assert_eq!(attrs.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(attrs["b"].lifetime, "forever");
    }

    #[test]
    fn bad_calls_are_refused_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("attributes.json");
        for (tool, args, says) in [
            ("crm_master", "-v high", "promotion score"),
            ("crm_attribute", "-n a -v 1 -N other", "--node other"),
            (
                "crm_attribute",
                "-n a -v 1 -l weekly",
                "--lifetime \"weekly\"",
            ),
            ("crm_attribute", "-n a -v 1 -D", "one of"),
            ("crm_attribute", "-v 1", "--name"),
            ("crm_attribute", "-n a -W", "-W: not supported"),
            (
                "crm_attribute",
                "-t crm_config -n a -v 1",
                "--type crm_config",
            ),
            ("crm_node", "-l", "need the attribute daemon"),
            ("crm_node", "-i", "-i: not supported"),
            ("crm_node", "", "give one of"),
        ] {
            let (code, msg) = call(tool, args, &f);
            assert_eq!(code, EX_USAGE, "{tool} {args}: {msg}");
            assert!(msg.contains(says), "{tool} {args}: {msg}");
        }
        assert!(!f.exists());
        assert_eq!(call("crm_node", "-n", &f), (0, "web-0\n".into()));
    }
}
