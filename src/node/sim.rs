//! A **simulated** container engine: containers are entries in memory, nothing runs. It
//! implements [`Engine`] the way Docker behaves where the node agent depends on it (names
//! are unique per engine, a create of a taken name is refused with a conflict, `die` and
//! `destroy` events on removal, events filtered by the owner labels), so that the agent's
//! logic can be tested and benchmarked without Docker, for one node or a thousand sharing a
//! process. It is for unit tests of the agent's logic and for scale benchmarks; tests that
//! claim Docker behaviour use [`super::engine::DockerEngine`] against the real dockerd.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use super::engine::{Engine, EngineAction, EngineError, EngineEvent, EngineInfo, Observed};
use crate::model::container::{DesiredContainer, LABEL_MANAGED_BY, LABEL_NODE};

/// One simulated container.
#[derive(Debug, Clone)]
struct SimContainer {
    name: String,
    labels: BTreeMap<String, String>,
    running: bool,
    /// What it was created from, for tests to inspect.
    spec: DesiredContainer,
}

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, SimContainer>,
    next_id: u64,
    /// Calls made, per operation (`create`, `start`, `remove`), for tests and benchmarks.
    calls: BTreeMap<&'static str, u64>,
    /// How long a removal takes (a container's stop grace), default none.
    remove_latency: Duration,
    /// Removals in progress now, and the most at once.
    removing: u64,
    most_removing: u64,
}

/// The simulated engine. Clones share one engine (as node agents sharing a host would).
#[derive(Clone)]
pub struct SimEngine {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<EngineEvent>,
}

impl Default for SimEngine {
    fn default() -> Self {
        SimEngine::new()
    }
}

impl SimEngine {
    /// An empty engine.
    pub fn new() -> SimEngine {
        // Events are broadcast to every subscriber; a slow one that falls this far behind
        // sees a gap (as a dropped Docker event stream would) and resyncs.
        let (events, _) = broadcast::channel(4096);
        SimEngine {
            state: Arc::new(Mutex::new(State::default())),
            events,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(
        &self,
        id: &str,
        action: EngineAction,
        labels: &BTreeMap<String, String>,
        exit: Option<i64>,
    ) {
        let mut attributes = labels.clone();
        if let Some(code) = exit {
            attributes.insert("exitCode".into(), code.to_string());
        }
        let _ = self.events.send(EngineEvent {
            id: id.to_string(),
            action,
            attributes,
        });
    }

    /// The container dies by itself (its process exited with `code`), as a crash would:
    /// not running any more, a `die` event. False when there is no such running container.
    pub fn kill(&self, name: &str, code: i64) -> bool {
        let found = {
            let mut st = self.state();
            st.containers
                .iter_mut()
                .find(|(_, c)| c.name == name && c.running)
                .map(|(id, c)| {
                    c.running = false;
                    (id.clone(), c.labels.clone())
                })
        };
        match found {
            Some((id, labels)) => {
                self.emit(&id, EngineAction::Die, &labels, Some(code));
                true
            }
            None => false,
        }
    }

    /// The containers by name: running or not, and the spec each was created from.
    pub fn containers(&self) -> BTreeMap<String, (bool, DesiredContainer)> {
        self.state()
            .containers
            .values()
            .map(|c| (c.name.clone(), (c.running, c.spec.clone())))
            .collect()
    }

    /// Every removal takes `d` from now on (as a container that ignores SIGTERM waits out
    /// its stop grace).
    pub fn set_remove_latency(&self, d: Duration) {
        self.state().remove_latency = d;
    }

    /// The most removals that were in progress at once.
    pub fn most_concurrent_removals(&self) -> u64 {
        self.state().most_removing
    }

    /// How many times each operation was called.
    pub fn calls(&self, op: &str) -> u64 {
        self.state().calls.get(op).copied().unwrap_or(0)
    }

    fn refused(op: &'static str, target: &str, reason: &str, conflict: bool) -> EngineError {
        EngineError::Simulated {
            op,
            target: target.to_string(),
            reason: reason.to_string(),
            conflict,
        }
    }
}

fn owned_by(labels: &BTreeMap<String, String>, node: &str) -> bool {
    labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some("berth")
        && labels.get(LABEL_NODE).map(String::as_str) == Some(node)
}

impl Engine for SimEngine {
    async fn describe(&self, _node: &str) -> Result<EngineInfo, EngineError> {
        Ok(EngineInfo {
            name: "simulated engine".into(),
            cpus: 2,
            memory: 24 << 30,
            cgroup_parent: None,
        })
    }

    async fn list(&self, node: &str) -> Result<Vec<Observed>, EngineError> {
        Ok(self
            .state()
            .containers
            .iter()
            .filter(|(_, c)| owned_by(&c.labels, node))
            .map(|(id, c)| Observed {
                id: id.clone(),
                name: c.name.clone(),
                labels: c.labels.clone(),
                running: c.running,
            })
            .collect())
    }

    async fn create(&self, c: &DesiredContainer, node: &str) -> Result<String, EngineError> {
        let mut st = self.state();
        *st.calls.entry("create").or_default() += 1;
        if st.containers.values().any(|o| o.name == c.name) {
            return Err(Self::refused(
                "create",
                &c.name,
                "the name is in use by another container",
                true,
            ));
        }
        st.next_id += 1;
        let id = format!("sim{:060}", st.next_id);
        st.containers.insert(
            id.clone(),
            SimContainer {
                name: c.name.clone(),
                labels: c.labels(node),
                running: false,
                spec: c.clone(),
            },
        );
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        let labels = {
            let mut st = self.state();
            *st.calls.entry("start").or_default() += 1;
            let c = st
                .containers
                .get_mut(id)
                .ok_or_else(|| Self::refused("start", id, "no such container", false))?;
            if c.running {
                return Ok(());
            }
            c.running = true;
            c.labels.clone()
        };
        self.emit(id, EngineAction::Start, &labels, None);
        Ok(())
    }

    async fn remove(&self, id: &str, _stop_timeout: Option<Duration>) -> Result<(), EngineError> {
        let latency = {
            let mut st = self.state();
            st.removing += 1;
            st.most_removing = st.most_removing.max(st.removing);
            st.remove_latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.state().removing -= 1;
        let gone = {
            let mut st = self.state();
            *st.calls.entry("remove").or_default() += 1;
            st.containers.remove(id)
        };
        let c = gone.ok_or_else(|| Self::refused("remove", id, "no such container", false))?;
        if c.running {
            // Stopped on request: Docker reports the SIGTERM/SIGKILL exit.
            self.emit(id, EngineAction::Die, &c.labels, Some(137));
        }
        self.emit(id, EngineAction::Destroy, &c.labels, None);
        Ok(())
    }

    fn events(&self, node: &str) -> BoxStream<'static, Result<EngineEvent, EngineError>> {
        let node = node.to_string();
        let rx = tokio_stream_from(self.events.subscribe());
        rx.filter_map(move |ev| {
            let keep = ev
                .as_ref()
                .map(|e| owned_by(&e.attributes, &node))
                .unwrap_or(true);
            futures::future::ready(keep.then_some(ev))
        })
        .boxed()
    }
}

/// A broadcast receiver as a stream; a gap (the receiver fell behind) ends it with an
/// error, so that the agent reconnects and resyncs.
fn tokio_stream_from(
    rx: broadcast::Receiver<EngineEvent>,
) -> BoxStream<'static, Result<EngineEvent, EngineError>> {
    futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Ok(ev) => Some((Ok(ev), Some(rx))),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((
                Err(SimEngine::refused(
                    "events",
                    "",
                    &format!("{n} events missed"),
                    false,
                )),
                None,
            )),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::seed;
    use std::path::Path;

    fn desired(i: u32) -> DesiredContainer {
        crate::model::container::desired(&seed(), i, Path::new("/s"), None).unwrap()
    }

    #[tokio::test]
    async fn behaves_as_the_agent_relies_on() {
        let e = SimEngine::new();
        let mut events = e.events("n1");
        let id = e.create(&desired(0), "n1").await.unwrap();
        let again = e.create(&desired(0), "n2").await.unwrap_err();
        assert!(again.is_name_conflict(), "a taken name is a conflict");
        e.start(&id).await.unwrap();
        let listed = e.list("n1").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].running);
        assert!(
            e.list("n2").await.unwrap().is_empty(),
            "other nodes see nothing"
        );
        assert!(e.kill("httpd-bundle-docker-0", 3));
        e.remove(&id, None).await.unwrap();
        let got: Vec<(String, Option<String>)> = events
            .by_ref()
            .take(3)
            .map(|ev| {
                let ev = ev.unwrap();
                (
                    ev.action.as_str().to_string(),
                    ev.attributes.get("exitCode").cloned(),
                )
            })
            .collect()
            .await;
        assert_eq!(
            got,
            [
                ("start".to_string(), None),
                ("die".to_string(), Some("3".to_string())),
                ("destroy".to_string(), None)
            ]
        );
        assert!(e.containers().is_empty());
        assert_eq!(
            (e.calls("create"), e.calls("start"), e.calls("remove")),
            (2, 1, 1)
        );
    }
}
