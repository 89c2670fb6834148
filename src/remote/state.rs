//! The primitive's state as the remote agent keeps it: shared between the supervisor, the
//! control channel and (for a look after the container died) a state file.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::cluster::{Notification, PrimitiveState, Role};

/// The primitive's state, shared between the supervisor, the control channel and (for a
/// look after the container died) a state file.
#[derive(Default)]
pub struct Shared {
    state: Mutex<PrimitiveState>,
    changed: tokio::sync::Notify,
    /// Signalled when the node agent asks for a role (kept in the state's `wanted_role`).
    role_asked: tokio::sync::Notify,
    /// The clone notification the node agent asked for and the supervisor has not run yet
    /// (the latest wins), and the signal that one came.
    notify: Mutex<(Option<Notification>, u64)>,
    notify_asked: tokio::sync::Notify,
    /// Written (temp file, then rename) on every change, when set.
    file: Option<PathBuf>,
    /// The attribute daemon, when the replica has one (a node agent polls it).
    attrd: std::sync::OnceLock<std::sync::Arc<super::attrd::Attrd>>,
}

impl Shared {
    pub fn new(file: Option<PathBuf>) -> Shared {
        Shared {
            file,
            ..Shared::default()
        }
    }

    /// Gives the channel the replica's attribute daemon.
    pub fn set_attrd(&self, attrd: std::sync::Arc<super::attrd::Attrd>) {
        let _ = self.attrd.set(attrd);
    }

    /// The replica's attribute daemon, if it has one.
    pub fn attrd(&self) -> Option<&std::sync::Arc<super::attrd::Attrd>> {
        self.attrd.get()
    }

    /// The current state.
    pub fn get(&self) -> PrimitiveState {
        self.state.lock().expect("state lock").clone()
    }

    /// Reads the current state in place (no copy of its history).
    pub fn read<R>(&self, f: impl FnOnce(&PrimitiveState) -> R) -> R {
        f(&self.state.lock().expect("state lock"))
    }

    pub fn role(&self) -> Option<Role> {
        self.read(|st| st.role)
    }

    /// Changes the state, bumps its version, wakes watchers, writes the state file.
    pub fn update(&self, f: impl FnOnce(&mut PrimitiveState)) {
        self.change(true, f)
    }

    /// Changes the state; only a significant change bumps the version and wakes watchers
    /// (a successful recurring monitor is recorded quietly, so that a healthy primitive
    /// costs its watchers nothing).
    pub fn change(&self, significant: bool, f: impl FnOnce(&mut PrimitiveState)) {
        let snapshot = {
            let mut st = self.state.lock().expect("state lock");
            f(&mut st);
            if significant {
                st.version += 1;
            }
            st.clone()
        };
        if !significant {
            return;
        }
        self.changed.notify_waiters();
        if let Some(path) = &self.file {
            let tmp = path.with_extension("tmp");
            let json = serde_json::to_vec(&snapshot).expect("state serializes");
            if let Err(e) = std::fs::write(&tmp, json).and_then(|_| std::fs::rename(&tmp, path)) {
                tracing::warn!("writing {}: {e}", path.display());
            }
        }
    }

    /// Asks the supervisor to run the primitive in `role` (promoted or unpromoted). The
    /// request is part of the reported state, so that the controller knows a promotion is
    /// under way before it completes.
    pub fn ask_role(&self, role: Role) {
        self.update(|st| st.wanted_role = Some(role));
        self.role_asked.notify_one();
    }

    pub fn wanted_role(&self) -> Option<Role> {
        self.read(|st| st.wanted_role)
    }

    /// Completes when a role is asked for (see [`Shared::ask_role`]); a request made while
    /// no one waits is kept for the next waiter.
    pub fn role_asked(&self) -> tokio::sync::futures::Notified<'_> {
        self.role_asked.notified()
    }

    /// Wakes the next [`Shared::role_asked`] again (a request that arrived before the
    /// supervisor could act on it).
    pub fn repeat_role_request(&self) {
        self.role_asked.notify_one();
    }

    /// Asks the supervisor to run a clone notification. One it has already run or been asked
    /// for (its id is not above `notified` or the last asked) is ignored, so a repeated
    /// request runs nothing twice.
    pub fn ask_notify(&self, n: Notification) {
        let notified = self.read(|st| st.notified);
        {
            let mut slot = self.notify.lock().expect("notify lock");
            if n.id <= notified.max(slot.1) {
                return;
            }
            slot.1 = n.id;
            slot.0 = Some(n);
        }
        self.notify_asked.notify_one();
    }

    /// Completes when a notification is asked for (see [`Shared::ask_notify`]).
    pub fn notify_asked(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify_asked.notified()
    }

    /// The notification waiting to be run, taken.
    pub fn take_notify(&self) -> Option<Notification> {
        self.notify.lock().expect("notify lock").0.take()
    }

    /// The state once its version is above `since`, or the current one after `max`.
    pub async fn changed_since(&self, since: u64, max: Duration) -> PrimitiveState {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let notified = self.changed.notified();
            let st = self.get();
            if st.version > since {
                return st;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get();
            }
        }
    }
}
