//! The remote agent's attribute daemon, Pacemaker's attrd as a replica sees it: the path
//! from `crm_attribute` inside a container to the cluster's attributes in etcd and back.
//!
//! ```text
//! crm_attribute ──attrd.sock──► remote agent ──control channel (`attrs`)──► node agent ──► etcd
//!    (a tool)     (this module:   outbox of writes,   ◄──acks, `cluster` view──   (scope and
//!                  mirror of what the replica may see)                            bounds)
//! ```
//!
//! A tool's write waits in the outbox until the node agent, long-polling the channel's
//! `attrs` verb, has stored it (or refused it) and said so in its next poll: a write is
//! acknowledged once stored, as attrd acknowledges. Reads are answered from a mirror that
//! the node agent replaces (`cluster` verb) whenever what the replica may see changes in
//! etcd. The socket lives beside the control socket, in the replica's `/run/berth`; anything
//! in the container may use it, and the node agent checks every write against the replica's
//! scope ([`crate::model::attributes::Scope`]).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::model::attributes::{AttrAck, AttrKey, AttrOp, AttrWrite, Members, Section};

/// The socket's file name, beside the attributes file in `/run/berth`.
pub const SOCKET: &str = "attrd.sock";

/// How long a tool's write waits for the node agent to store it.
pub const WRITE_WAIT: Duration = Duration::from_secs(10);
/// How long a read waits for the node agent's first view of the cluster after the remote
/// agent starts (a tool run by the start action must see the promoted peer, as the CIB shows
/// it to Pacemaker's tools); after that it answers from what it has.
pub const FIRST_VIEW_WAIT: Duration = Duration::from_secs(10);

/// The most writes waiting at once (a tool beyond it is refused at once: the node agent is
/// not keeping up, or not there).
const MAX_OUTBOX: usize = 256;

/// The longest request line a tool may send.
const MAX_REQUEST: u64 = 16 * 1024;

/// The socket of the attribute daemon whose attributes file is `attributes_file`.
pub fn socket_beside(attributes_file: &Path) -> PathBuf {
    attributes_file.with_file_name(SOCKET)
}

/// A tool's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "request")]
pub enum ToolRequest {
    /// One attribute's value.
    Get { key: AttrKey },
    /// Every attribute of a section (of one owner, when given).
    List {
        section: Section,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// A write, answered once stored.
    Write { write: AttrOp },
    /// The cluster's members as the replica sees them (`crm_node`, `crm_mon`).
    Members,
    /// Every attribute the replica sees, and the members (`cibadmin -Q`).
    Cib,
}

/// The answer to a tool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<(AttrKey, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Members>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Writes not yet acknowledged, oldest first.
    outbox: VecDeque<AttrWrite>,
    /// Outcomes of acknowledged writes, until their tool takes them.
    done: BTreeMap<u64, Option<String>>,
    /// What the replica may see of the cluster's attributes.
    mirror: BTreeMap<AttrKey, String>,
    /// Whether the node agent has sent the mirror yet (a new remote agent starts without).
    mirrored: bool,
    /// The cluster's members as the node agent last sent them.
    members: Members,
}

/// The daemon's state, shared by the tools' socket, the control channel and the supervisor.
#[derive(Debug)]
pub struct Attrd {
    me: String,
    inner: Mutex<Inner>,
    written: tokio::sync::Notify,
    acked: tokio::sync::Notify,
    /// Told when the node agent sends a view.
    viewed: tokio::sync::Notify,
    /// The replica's own attributes file (the promotion score the supervisor reads), kept in
    /// step with what is stored.
    file: Option<PathBuf>,
}

impl Attrd {
    /// The daemon of node `me`; its first write clears `me`'s transient attributes (the
    /// container started: Pacemaker clears a guest node's status section when it restarts).
    pub fn new(me: &str, file: Option<PathBuf>) -> Arc<Attrd> {
        let a = Attrd {
            me: me.to_string(),
            inner: Mutex::new(Inner {
                next: 1,
                ..Inner::default()
            }),
            written: tokio::sync::Notify::new(),
            acked: tokio::sync::Notify::new(),
            viewed: tokio::sync::Notify::new(),
            file,
        };
        a.enqueue(AttrOp::ClearTransient {
            node: me.to_string(),
        })
        .expect("an empty outbox has room");
        Arc::new(a)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, op: AttrOp) -> Result<u64, WriteError> {
        let mut inner = self.lock();
        if inner.outbox.len() >= MAX_OUTBOX {
            return Err(WriteError::Full);
        }
        let id = inner.next;
        inner.next += 1;
        inner.outbox.push_back(AttrWrite { id, op });
        drop(inner);
        self.written.notify_waiters();
        Ok(id)
    }

    /// A tool's write: returns once the node agent has stored it (or refused it, with the
    /// reason), or fails after `wait`.
    pub async fn write(&self, op: AttrOp, wait: Duration) -> Result<(), WriteError> {
        let id = self.enqueue(op)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let acked = self.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            if let Some(outcome) = self.lock().done.remove(&id) {
                return outcome.map_or(Ok(()), |why| Err(WriteError::Refused(why)));
            }
            if tokio::time::timeout_at(deadline, acked).await.is_err() {
                let mut inner = self.lock();
                inner.outbox.retain(|w| w.id != id);
                return match inner.done.remove(&id) {
                    Some(outcome) => outcome.map_or(Ok(()), |why| Err(WriteError::Refused(why))),
                    None => Err(WriteError::NoAnswer(wait)),
                };
            }
        }
    }

    /// The value of `key` as the replica sees it.
    pub fn get(&self, key: &AttrKey) -> Option<String> {
        self.lock().mirror.get(key).cloned()
    }

    /// The attributes of `section` (of `owner`, when given).
    pub fn list(&self, section: Section, owner: Option<&str>) -> Vec<(AttrKey, String)> {
        self.lock()
            .mirror
            .iter()
            .filter(|(k, _)| k.section == section && owner.is_none_or(|o| k.owner == o))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The node agent's long-poll: takes the outcomes of the writes it stored (`acks`), then
    /// returns the writes still waiting, as soon as there is one (or empty after `max`).
    pub async fn pending(&self, acks: Vec<AttrAck>, max: Duration) -> Vec<AttrWrite> {
        if !acks.is_empty() {
            self.take_acks(acks);
        }
        let written = self.written.notified();
        tokio::pin!(written);
        written.as_mut().enable();
        {
            let inner = self.lock();
            if !inner.outbox.is_empty() {
                return inner.outbox.iter().cloned().collect();
            }
        }
        let _ = tokio::time::timeout(max, written).await;
        self.lock().outbox.iter().cloned().collect()
    }

    fn take_acks(&self, acks: Vec<AttrAck>) {
        let mut own = Vec::new();
        {
            let mut inner = self.lock();
            for ack in acks {
                let Some(pos) = inner.outbox.iter().position(|w| w.id == ack.id) else {
                    continue;
                };
                let w = inner.outbox.remove(pos).expect("found");
                if ack.error.is_none() {
                    // Read your own write: the mirror has it before etcd's echo comes back.
                    apply(&mut inner.mirror, &w.op, &self.me);
                    own.push(w.op.clone());
                }
                inner.done.insert(ack.id, ack.error);
            }
            // Outcomes nobody waits for any more (the tool gave up) do not pile up.
            while inner.done.len() > MAX_OUTBOX {
                inner.done.pop_first();
            }
        }
        self.keep_file(&own);
        self.acked.notify_waiters();
    }

    /// Replaces the mirror with what the node agent says the replica may see now (its own
    /// writes it has acknowledged are in it, or on their way).
    pub fn mirror(&self, view: Vec<(AttrKey, String)>, members: Members) {
        let mut inner = self.lock();
        inner.mirror = view.into_iter().collect();
        inner.members = members;
        inner.mirrored = true;
        drop(inner);
        self.viewed.notify_waiters();
    }

    /// Waits until the node agent has sent a view since this remote agent started, for at
    /// most `max`.
    pub async fn first_view(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let viewed = self.viewed.notified();
            tokio::pin!(viewed);
            viewed.as_mut().enable();
            if self.mirrored() || tokio::time::timeout_at(deadline, viewed).await.is_err() {
                return;
            }
        }
    }

    /// Every attribute the replica sees.
    pub fn all(&self) -> Vec<(AttrKey, String)> {
        let inner = self.lock();
        inner
            .mirror
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The cluster's members as the node agent last sent them.
    pub fn members(&self) -> Members {
        self.lock().members.clone()
    }

    /// Whether the node agent has sent the mirror since this remote agent started.
    pub fn mirrored(&self) -> bool {
        self.lock().mirrored
    }

    /// The replica's own node attributes, written through to its attributes file: the
    /// supervisor reads its promotion score there.
    fn keep_file(&self, ops: &[AttrOp]) {
        let Some(file) = &self.file else { return };
        let mine: Vec<&AttrOp> = ops
            .iter()
            .filter(|op| match op {
                AttrOp::Set { key, .. } | AttrOp::Delete { key } => {
                    key.owner == self.me && key.section != Section::CrmConfig
                }
                AttrOp::ClearTransient { .. } => false,
            })
            .collect();
        if mine.is_empty() {
            return;
        }
        let mut attrs = super::attrs::read(file);
        for op in mine {
            match op {
                AttrOp::Set { key, value } => {
                    let lifetime = if key.section == Section::Status {
                        "reboot"
                    } else {
                        "forever"
                    };
                    attrs.insert(
                        key.name.clone(),
                        super::attrs::Attr {
                            value: value.clone(),
                            lifetime: lifetime.into(),
                        },
                    );
                }
                AttrOp::Delete { key } => {
                    attrs.remove(&key.name);
                }
                AttrOp::ClearTransient { .. } => {}
            }
        }
        if let Err(e) = super::attrs::write(file, &attrs) {
            tracing::warn!("{}: {e}", file.display());
        }
    }
}

/// `op` applied to a mirror of node `me`'s view.
fn apply(mirror: &mut BTreeMap<AttrKey, String>, op: &AttrOp, me: &str) {
    match op {
        AttrOp::Set { key, value } => {
            mirror.insert(key.clone(), value.clone());
        }
        AttrOp::Delete { key } => {
            mirror.remove(key);
        }
        AttrOp::ClearTransient { node } if node == me => {
            mirror.retain(|k, _| !(k.section == Section::Status && k.owner == *node));
        }
        AttrOp::ClearTransient { .. } => {}
    }
}

/// Serves the tools on the unix socket at `path` until `shutdown`.
pub async fn serve(
    path: PathBuf,
    attrd: Arc<Attrd>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let attrd = attrd.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &attrd).await {
                        tracing::debug!("attrd: {e}");
                    }
                });
            }
        }
    }
}

async fn answer(stream: tokio::net::UnixStream, attrd: &Attrd) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut limited = (&mut reader).take(MAX_REQUEST);
    tokio::time::timeout(Duration::from_secs(5), limited.read_line(&mut line))
        .await
        .unwrap_or(Ok(0))?;
    let request = serde_json::from_str::<ToolRequest>(line.trim());
    if matches!(&request, Ok(r) if !matches!(r, ToolRequest::Write { .. })) {
        attrd.first_view(FIRST_VIEW_WAIT).await;
    }
    let reply = match request {
        Err(e) => ToolReply {
            error: Some(format!("not a request: {e}")),
            ..Default::default()
        },
        Ok(ToolRequest::Get { key }) => ToolReply {
            value: attrd.get(&key),
            ..Default::default()
        },
        Ok(ToolRequest::List { section, owner }) => ToolReply {
            values: attrd.list(section, owner.as_deref()),
            ..Default::default()
        },
        Ok(ToolRequest::Write { write }) => ToolReply {
            error: attrd
                .write(write, WRITE_WAIT)
                .await
                .err()
                .map(|e| e.to_string()),
            ..Default::default()
        },
        Ok(ToolRequest::Members) => ToolReply {
            members: Some(attrd.members()),
            ..Default::default()
        },
        Ok(ToolRequest::Cib) => ToolReply {
            values: attrd.all(),
            members: Some(attrd.members()),
            ..Default::default()
        },
    };
    let mut stream = reader.into_inner();
    let mut bytes = serde_json::to_vec(&reply).expect("replies serialize");
    bytes.push(b'\n');
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}

/// A tool's side: sends `request` to the daemon at `socket` and returns its reply.
pub fn ask(socket: &Path, request: &ToolRequest) -> Result<ToolReply, AskError> {
    use std::io::{BufRead, Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| AskError::Connect {
        socket: socket.to_path_buf(),
        source: e,
    })?;
    s.set_read_timeout(Some(
        WRITE_WAIT.max(FIRST_VIEW_WAIT) + Duration::from_secs(5),
    ))?;
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    s.write_all(&line)?;
    let mut reply = String::new();
    std::io::BufReader::new(&s)
        .take(super::channel::MAX_REPLY as u64)
        .read_line(&mut reply)
        .map_err(AskError::NoAnswer)?;
    serde_json::from_str(&reply).map_err(|e| AskError::Reply { reply, source: e })
}

/// Why a tool got no usable answer from the attribute daemon.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("{}: {source}", socket.display())]
    Connect {
        socket: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("no answer from the attribute daemon: {0}")]
    NoAnswer(std::io::Error),
    #[error("the attribute daemon said {reply:?}: {source}")]
    Reply {
        reply: String,
        source: serde_json::Error,
    },
}

/// Why a tool's write was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("{MAX_OUTBOX} writes already wait for the node agent: not stored")]
    Full,
    /// The node agent refused it, saying why.
    #[error("{0}")]
    Refused(String),
    #[error("not stored: the node agent did not answer within {0:?}")]
    NoAnswer(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(owner: &str, name: &str) -> AttrKey {
        AttrKey {
            section: Section::Status,
            owner: owner.into(),
            name: name.into(),
        }
    }

    /// The node agent's poll, once the start's clear and the tool's write both wait.
    async fn both_waiting(a: &Attrd) -> Vec<AttrWrite> {
        loop {
            // (The tool's task runs on this thread too.)
            tokio::task::yield_now().await;
            let got = a.pending(vec![], Duration::from_secs(5)).await;
            if got.len() >= 2 {
                return got;
            }
        }
    }

    #[tokio::test]
    async fn a_write_is_answered_once_the_node_agent_acknowledges_it() {
        let a = Attrd::new("rds-0", None);
        let writer = {
            let a = a.clone();
            tokio::spawn(async move {
                a.write(
                    AttrOp::Set {
                        key: key("rds-1", "foo"),
                        value: "bar".into(),
                    },
                    Duration::from_secs(5),
                )
                .await
            })
        };
        // The node agent's poll: the start's clear first, then the tool's write.
        let got = both_waiting(&a).await;
        assert!(matches!(got[0].op, AttrOp::ClearTransient { .. }));
        let acks = got
            .iter()
            .map(|w| AttrAck {
                id: w.id,
                error: None,
            })
            .collect();
        assert!(a.pending(acks, Duration::from_millis(10)).await.is_empty());
        assert_eq!(writer.await.unwrap(), Ok(()));
        assert_eq!(a.get(&key("rds-1", "foo")).as_deref(), Some("bar"));
    }

    #[tokio::test(start_paused = true)]
    async fn reads_wait_for_the_node_agents_first_view_for_a_bounded_time() {
        let a = Attrd::new("rds-0", None);
        let waiting = tokio::spawn({
            let a = a.clone();
            async move {
                a.first_view(FIRST_VIEW_WAIT).await;
                a.get(&key("rds-1", "master-redis"))
            }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!waiting.is_finished(), "a read answered before any view");
        a.mirror(
            vec![(key("rds-1", "master-redis"), "1".into())],
            Members::default(),
        );
        assert_eq!(waiting.await.unwrap().as_deref(), Some("1"));
        // Without a node agent, reads answer after the wait, from what there is.
        let alone = Attrd::new("rds-0", None);
        let t = tokio::time::Instant::now();
        alone.first_view(FIRST_VIEW_WAIT).await;
        assert_eq!(t.elapsed(), FIRST_VIEW_WAIT);
        // Once viewed, at once.
        let t = tokio::time::Instant::now();
        a.first_view(FIRST_VIEW_WAIT).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_refused_write_says_why_and_an_unanswered_one_times_out() {
        let a = Attrd::new("rds-0", None);
        let refused = {
            let a = a.clone();
            tokio::spawn(async move {
                a.write(
                    AttrOp::Delete {
                        key: key("web-0", "x"),
                    },
                    Duration::from_secs(5),
                )
                .await
            })
        };
        let got = both_waiting(&a).await;
        let acks = vec![AttrAck {
            id: got[1].id,
            error: Some("not a replica of this bundle".into()),
        }];
        a.pending(acks, Duration::from_millis(1)).await;
        assert_eq!(
            refused.await.unwrap(),
            Err(WriteError::Refused("not a replica of this bundle".into()))
        );
        let lonely = a
            .write(
                AttrOp::Delete {
                    key: key("rds-0", "x"),
                },
                Duration::from_millis(50),
            )
            .await;
        assert_eq!(lonely, Err(WriteError::NoAnswer(Duration::from_millis(50))));
    }
}
