//! The node agent's side of each replica's control channel: per replica with a primitive, a
//! task long-polling its remote agent for reports and one asking it for roles, in order;
//! and the replica's way to the cluster's attributes: a task long-polling the writes its
//! tools ask for, storing each in etcd within the replica's scope and bounds, and one
//! sending it what it may see of them whenever that changes. The wire protocol itself is
//! [`crate::remote::channel`].

use std::sync::{Arc, Mutex};

use crate::model::attributes::{AttrAck, AttrKey, AttrOp, Guest, Members, Scope, Section};
use crate::model::cluster::{ReplicaState, ReplicaStatus};
use crate::store::{Expect, Store, StoreError, Write};

/// Every attribute the node agent knows of (from its watch of `<prefix>/attributes/`).
pub type Known = Arc<Mutex<BTreeMap<AttrKey, String>>>;

/// What one replica sees of the cluster: the attributes its scope may read, and the
/// members.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    attrs: Vec<(AttrKey, String)>,
    members: Members,
    /// The node agent has read all of it (the attributes, the hosts and the bundle's
    /// replicas listed once): only such a view is sent, so that a replica's tools never
    /// answer from a cluster not read yet (a returning redis would find no master).
    complete: bool,
    /// The hosts online with their registrations' leases: a host's transient attribute is
    /// stored under its host's lease, so that it goes when the host leaves the cluster
    /// (Pacemaker clears a departed node's status section).
    leases: BTreeMap<String, i64>,
}

type View = Arc<Seen>;

/// The most attributes one node (or property set) may have in one section through
/// replicas' writes.
pub const MAX_ATTRS_PER_OWNER: usize = 64;

/// Writes one replica may make: a burst of this many, then this many a second.
const WRITE_BURST: u32 = 50;
const WRITES_PER_SECOND: u32 = 10;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::core::Desired;
use super::local::replica_files;
use super::plan::ReplicaKey;
use crate::model::cluster::{Notification, PrimitiveState, Role};
use crate::model::layout;

/// A report from a replica's remote agent.
pub type Report = (ReplicaKey, PrimitiveState);

/// How the node agent reaches a replica's remote agent: the replica's host directory (the
/// authkey in `config/`, the unix socket in `run/`) and, when the bundle sets control-port,
/// a TCP address instead.
#[derive(Debug, Clone, PartialEq)]
struct Channel {
    state_dir: PathBuf,
    key: ReplicaKey,
    tcp: Option<std::net::SocketAddrV4>,
    /// The replica's attribute scope (none: no attribute tasks).
    scope: Option<Scope>,
}

/// A stream to a remote agent, over either transport.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

impl Channel {
    /// A connection and the channel's key; none while the container is not up. The key is
    /// read from the read-only `config/`; the socket in the container's `run/` is dialled
    /// through its own inode, so a link planted in its place is never followed.
    async fn connect(&self) -> Option<(Box<dyn Stream>, String)> {
        let dir = replica_files(&self.state_dir, &self.key.bundle, self.key.index).ok()?;
        let authkey = dir
            .sub(layout::CONFIG_SUBDIR)
            .and_then(|c| c.read(layout::AUTHKEY, 4096))
            .ok()?;
        let authkey = String::from_utf8(authkey).ok()?.trim().to_string();
        let dial = async {
            let s: Box<dyn Stream> = match self.tcp {
                Some(addr) => Box::new(tokio::net::TcpStream::connect(addr).await.ok()?),
                None => {
                    let (_fd, path) = dir
                        .sub(layout::RUN_SUBDIR)
                        .and_then(|r| r.socket(layout::CONTROL_SOCKET))
                        .ok()?;
                    Box::new(tokio::net::UnixStream::connect(path).await.ok()?)
                }
            };
            Some(s)
        };
        let s = tokio::time::timeout(Duration::from_secs(5), dial)
            .await
            .ok()??;
        Some((s, authkey))
    }
}

/// A replica's control-channel tasks.
struct Watcher {
    token: CancellationToken,
    /// The role to ask for; every send is one more request (the latest value wins).
    role: tokio::sync::watch::Sender<Role>,
    /// The clone notification to deliver (every send is one more request).
    notify: tokio::sync::watch::Sender<Option<Notification>>,
    /// What the replica may see of the cluster's attributes (sent when it changes).
    view: tokio::sync::watch::Sender<View>,
    channel: Channel,
}

/// Every replica's control-channel tasks.
pub struct Links {
    state_dir: PathBuf,
    watchers: BTreeMap<ReplicaKey, Watcher>,
    reports: UnboundedSender<Report>,
    /// Where replicas' attribute writes go (none: no attribute tasks).
    store: Option<Store>,
    known: Known,
    /// The hosts online (`<prefix>/nodes/`), with their registrations' leases.
    hosts: BTreeMap<String, i64>,
    /// The hosts in standby, and those left in maintenance.
    standby: BTreeSet<String>,
    maintenance: BTreeSet<String>,
    /// The attributes and the hosts have been listed once.
    listed: (bool, bool),
    /// The replica statuses of the bundles whose replicas here see the members, by bundle.
    replicas: BTreeMap<String, BTreeMap<u32, ReplicaStatus>>,
}

impl Links {
    /// Links whose reports arrive on `reports`; with `store`, replicas' attribute writes are
    /// stored there.
    pub fn new(state_dir: &Path, reports: UnboundedSender<Report>, store: Option<Store>) -> Links {
        Links {
            state_dir: state_dir.to_path_buf(),
            watchers: BTreeMap::new(),
            reports,
            store,
            known: Known::default(),
            hosts: BTreeMap::new(),
            standby: BTreeSet::new(),
            maintenance: BTreeSet::new(),
            listed: (false, false),
            replicas: BTreeMap::new(),
        }
    }

    /// The hosts online changed (name → registration lease).
    pub fn hosts(&mut self, hosts: BTreeMap<String, i64>) {
        self.hosts = hosts;
        self.listed.1 = true;
        self.refresh();
    }

    /// The hosts in standby changed.
    pub fn standby(&mut self, hosts: BTreeSet<String>) {
        self.standby = hosts;
        self.refresh();
    }

    /// The hosts left in maintenance changed.
    pub fn maintenance(&mut self, hosts: BTreeSet<String>) {
        self.maintenance = hosts;
        self.refresh();
    }

    /// A bundle's replica statuses changed.
    pub fn replicas(&mut self, bundle: &str, statuses: BTreeMap<u32, ReplicaStatus>) {
        self.replicas.insert(bundle.to_string(), statuses);
        self.refresh();
    }

    /// The bundles whose replicas here see the cluster's members (their statuses are
    /// watched).
    pub fn member_bundles(&self) -> BTreeSet<String> {
        self.watchers
            .values()
            .filter_map(|w| Some(w.channel.scope.as_ref()?.bundle.clone()))
            .collect()
    }

    /// The cluster's attributes changed: each replica is sent what it may see of them, when
    /// that changed.
    pub fn attributes(&mut self, all: BTreeMap<AttrKey, String>) {
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = all;
        self.listed.0 = true;
        self.refresh();
    }

    /// Sends each replica what it sees now, when that changed.
    fn refresh(&self) {
        for w in self.watchers.values() {
            if let Some(scope) = &w.channel.scope {
                let view = self.view_of(scope);
                w.view.send_if_modified(|v| {
                    let changed = **v != *view;
                    if changed {
                        *v = view;
                    }
                    changed
                });
            }
        }
    }

    fn view_of(&self, scope: &Scope) -> View {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let attrs = known
            .iter()
            .filter(|(k, _)| scope.may_read(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let statuses = self.replicas.get(&scope.bundle);
        let replicas = (0..scope.peers.len() as u32)
            .map(|i| {
                let name = format!("{}-{i}", scope.bundle);
                let st = statuses.and_then(|s| s.get(&i));
                // Running, as reported under its host's current registration.
                let running = st.is_some_and(|st| {
                    st.state == ReplicaState::Running && self.hosts.get(&st.node) == Some(&st.lease)
                });
                Guest {
                    name,
                    host: st.map(|st| st.node.clone()).unwrap_or_default(),
                    running,
                    promoted: running
                        && st
                            .and_then(|st| st.primitive.as_ref()?.role)
                            .is_some_and(|r| r == Role::Promoted),
                }
            })
            .collect();
        Arc::new(Seen {
            attrs,
            complete: self.listed == (true, true) && statuses.is_some(),
            leases: self.hosts.clone(),
            members: Members {
                bundle: scope.bundle.clone(),
                engine: scope.engine.clone(),
                image: scope.image.clone(),
                primitive: scope.primitive.clone(),
                agent: scope.agent.clone(),
                promotable: scope.promotable,
                hosts: self.hosts.keys().cloned().collect(),
                standby: self.standby.iter().cloned().collect(),
                maintenance: self.maintenance.iter().cloned().collect(),
                replicas,
            },
        })
    }

    /// Tasks for every replica with a primitive, and none for others (a replica whose
    /// channel changed gets new ones).
    pub fn converge(&mut self, desired: &Desired) {
        let want: BTreeMap<ReplicaKey, Channel> = desired
            .iter()
            .filter_map(|(k, d)| {
                let d = d.as_ref().ok()?;
                d.remote_config.as_ref()?;
                let ch = Channel {
                    state_dir: self.state_dir.clone(),
                    key: k.clone(),
                    tcp: d.control_tcp,
                    scope: self.store.as_ref().and(d.attr_scope.clone()),
                };
                Some((k.clone(), ch))
            })
            .collect();
        self.watchers.retain(|k, w| {
            let keep = want.get(k) == Some(&w.channel);
            if !keep {
                w.token.cancel();
            }
            keep
        });
        for (k, channel) in want {
            if self.watchers.contains_key(&k) {
                continue;
            }
            let token = CancellationToken::new();
            // The initial value is never sent: only later ones are.
            let (role, asked) = tokio::sync::watch::channel(Role::Unpromoted);
            tokio::spawn(watch_primitive(
                channel.clone(),
                k.clone(),
                self.reports.clone(),
                token.clone(),
            ));
            tokio::spawn(ask_roles(channel.clone(), k.clone(), asked, token.clone()));
            let (notify, notifies) = tokio::sync::watch::channel(None);
            tokio::spawn(send_notifies(
                channel.clone(),
                k.clone(),
                notifies,
                token.clone(),
            ));
            let first = channel
                .scope
                .as_ref()
                .map(|s| self.view_of(s))
                .unwrap_or_default();
            let (view, mut views) = tokio::sync::watch::channel(first);
            if let (Some(store), Some(scope)) = (&self.store, &channel.scope) {
                // The first view goes out as soon as the container is up.
                views.mark_changed();
                tokio::spawn(pump_attributes(
                    channel.clone(),
                    k.clone(),
                    store.clone(),
                    scope.clone(),
                    self.known.clone(),
                    views.clone(),
                    token.clone(),
                ));
                tokio::spawn(send_views(channel.clone(), k.clone(), views, token.clone()));
            }
            self.watchers.insert(
                k,
                Watcher {
                    token,
                    role,
                    notify,
                    view,
                    channel,
                },
            );
        }
    }

    /// Asks a replica's remote agent for `role` (through its own task, in order, so that a
    /// later request never overtakes an earlier one). No-op without a channel.
    pub fn ask(&self, k: &ReplicaKey, role: Role) {
        if let Some(w) = self.watchers.get(k) {
            w.role.send_replace(role);
        }
    }

    /// Delivers a clone notification to a replica's remote agent (through its own task).
    /// Sent again each time it is asked: the remote agent runs an id once, and one that came
    /// up after the first delivery (a restarted container) still gets it. No-op without a
    /// channel.
    pub fn notify(&self, k: &ReplicaKey, n: &Notification) {
        if let Some(w) = self.watchers.get(k) {
            w.notify.send_replace(Some(n.clone()));
        }
    }

    /// Stops every task.
    pub fn stop(&mut self) {
        for w in self.watchers.values() {
            w.token.cancel();
        }
        self.watchers.clear();
    }
}

/// Long-polls a replica's remote agent for changes of its primitive (the control channel's
/// `watch`), reporting each; while the container is not up, retries every half second.
async fn watch_primitive(
    channel: Channel,
    key: ReplicaKey,
    tx: UnboundedSender<Report>,
    token: CancellationToken,
) {
    let mut since = 0;
    loop {
        let attempt = async {
            let (s, authkey) = channel.connect().await?;
            crate::remote::channel::watch(s, &authkey, since).await.ok()
        };
        let got = tokio::select! {
            _ = token.cancelled() => return,
            got = attempt => got,
        };
        match got {
            Some(st) => {
                since = st.version;
                if tx.send((key.clone(), st)).is_err() {
                    return;
                }
            }
            None => {
                // A new remote agent (the container restarted) counts from 0 again.
                since = 0;
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Sends a replica's remote agent each notification handed over on `asked` (see
/// [`deliver`]).
async fn send_notifies(
    channel: Channel,
    key: ReplicaKey,
    asked: tokio::sync::watch::Receiver<Option<Notification>>,
    token: CancellationToken,
) {
    let send = async |ch: &Channel, n: Option<Notification>| {
        let Some(n) = n else { return Some(()) };
        let (s, authkey) = ch.connect().await?;
        crate::remote::channel::notify(s, &authkey, n).await.ok()?;
        Some(())
    };
    deliver(channel, key, asked, token, "the notification", send).await
}

/// Sends a replica's remote agent what it may see of the cluster's attributes, each time
/// that changes (see [`deliver`]).
async fn send_views(
    channel: Channel,
    key: ReplicaKey,
    views: tokio::sync::watch::Receiver<View>,
    token: CancellationToken,
) {
    let send = async |ch: &Channel, view: View| send_view(ch, &view).await;
    deliver(channel, key, views, token, "the cluster's attributes", send).await
}

/// Sends the remote agent behind `ch` what its replica sees; `None` when it is not up.
/// A view not complete yet is not sent (the complete one follows as a change).
async fn send_view(ch: &Channel, view: &Seen) -> Option<()> {
    if !view.complete {
        tracing::debug!(replica = %ch.key, "the cluster not read yet: no view sent");
        return Some(());
    }
    let (s, authkey) = ch.connect().await?;
    crate::remote::channel::cluster(s, &authkey, view.attrs.clone(), view.members.clone())
        .await
        .ok()
}

/// Long-polls a replica's remote agent for the attribute writes its tools ask for, stores
/// each (see [`store_write`]) and hands back the outcomes with the next poll. A remote agent
/// that has no mirror yet (it restarted) is sent the replica's view first.
async fn pump_attributes(
    channel: Channel,
    key: ReplicaKey,
    store: Store,
    scope: Scope,
    known: Known,
    views: tokio::sync::watch::Receiver<View>,
    token: CancellationToken,
) {
    let mut acks: Vec<AttrAck> = Vec::new();
    let mut bucket = crate::backoff::Bucket::new(WRITE_BURST, WRITES_PER_SECOND);
    loop {
        let attempt = async {
            let (s, authkey) = channel.connect().await?;
            Some(crate::remote::channel::attrs(s, &authkey, acks.clone()).await)
        };
        let got = tokio::select! {
            _ = token.cancelled() => return,
            got = attempt => got,
        };
        match got {
            Some(Ok(w)) => {
                acks.clear();
                if !w.mirrored {
                    let view = views.borrow().clone();
                    let sent = send_view(&channel, &view).await;
                    tracing::debug!(replica = %key, complete = view.complete, ?sent, "a remote agent without a view");
                }
                for write in w.writes {
                    let leases = views.borrow().leases.clone();
                    let error =
                        store_write(&store, &scope, &leases, &known, &mut bucket, &write.op)
                            .await
                            .err()
                            .map(|e| e.to_string());
                    if let Some(e) = &error {
                        tracing::info!(replica = %key, "attribute write refused: {e}");
                    }
                    acks.push(AttrAck {
                        id: write.id,
                        error,
                    });
                }
            }
            // Refused (a remote agent without an attribute daemon, or one going away): asked
            // again later, since the container's next remote agent may answer.
            Some(Err(crate::remote::channel::ChannelError::Refused(why))) => {
                tracing::debug!(replica = %key, "attribute poll refused: {why}");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            _ => {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Why a write of a replica's tools was not stored (the tool prints it).
#[derive(Debug, thiserror::Error)]
enum NotStored {
    /// Beyond what the replica may write, and why (see [`Scope::refuse`]).
    #[error("{0}")]
    OutOfScope(String),
    #[error(
        "more than {WRITES_PER_SECOND} attribute writes a second from this replica: not stored"
    )]
    TooFast,
    #[error("{section} {owner:?} has {MAX_ATTRS_PER_OWNER} attributes already: not stored")]
    Crowded { section: Section, owner: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores one write of a replica's tools, when its scope allows it (with the cluster's
/// hosts now, name → registration lease) and within its bounds (a value unchanged is not
/// written again: no etcd write at rest); why not otherwise. A host's transient attribute
/// is stored under the host's lease.
async fn store_write(
    store: &Store,
    scope: &Scope,
    leases: &BTreeMap<String, i64>,
    known: &Known,
    bucket: &mut crate::backoff::Bucket,
    op: &AttrOp,
) -> Result<(), NotStored> {
    let hosts: Vec<String> = leases.keys().cloned().collect();
    if let Some(why) = scope.refuse(op, &hosts) {
        return Err(NotStored::OutOfScope(why));
    }
    if !bucket.take() {
        return Err(NotStored::TooFast);
    }
    let keys = store.keys();
    match op {
        AttrOp::Set { key, value } => {
            let crowded = {
                let known = known.lock().unwrap_or_else(|e| e.into_inner());
                !known.contains_key(key)
                    && known
                        .keys()
                        .filter(|k| k.section == key.section && k.owner == key.owner)
                        .count()
                        >= MAX_ATTRS_PER_OWNER
            };
            if crowded {
                return Err(NotStored::Crowded {
                    section: key.section,
                    owner: key.owner.clone(),
                });
            }
            let at = keys.attribute(key.section, &key.owner, &key.name);
            let lease = match key.section {
                Section::Status => leases.get(&key.owner).copied(),
                _ => None,
            };
            store
                .put_if_changed(&at, value.clone().into_bytes(), lease)
                .await?;
        }
        AttrOp::Delete { key } => {
            let at = keys.attribute(key.section, &key.owner, &key.name);
            match store.delete(&at, Expect::Any).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        AttrOp::ClearTransient { node } => {
            let prefix = keys.attributes_of(Section::Status, node);
            store.commit(vec![Write::DeletePrefix { prefix }]).await?;
        }
    }
    Ok(())
}

/// Sends a replica's remote agent each role asked for on `asked` (see [`deliver`]).
async fn ask_roles(
    channel: Channel,
    key: ReplicaKey,
    asked: tokio::sync::watch::Receiver<Role>,
    token: CancellationToken,
) {
    let send = async |ch: &Channel, role: Role| {
        let (s, authkey) = ch.connect().await?;
        crate::remote::channel::set_role(s, &authkey, role)
            .await
            .ok()?;
        Some(())
    };
    deliver(channel, key, asked, token, "the role", send).await
}

/// Sends each value handed over on `asked` with `send`, in order, retrying every half
/// second while the channel is not up (a newer value replaces one not yet delivered).
async fn deliver<T: Clone>(
    channel: Channel,
    key: ReplicaKey,
    mut asked: tokio::sync::watch::Receiver<T>,
    token: CancellationToken,
    what: &str,
    send: impl AsyncFn(&Channel, T) -> Option<()>,
) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            r = asked.changed() => if r.is_err() { return },
        }
        loop {
            let value = asked.borrow_and_update().clone();
            if send(&channel, value).await.is_some() {
                tracing::debug!(replica = %key, "delivered {what}");
                break;
            }
            tracing::warn!(replica = %key, "could not deliver {what}; retrying");
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}
