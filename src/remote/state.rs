//! The primitive's state as the remote agent keeps it: shared between the supervisor, the
//! control channel and (for a look after the container died) a state file.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::cluster::{PrimitiveState, Role};

/// The primitive's state, shared between the supervisor, the control channel and (for a
/// look after the container died) a state file.
#[derive(Default)]
pub struct Shared {
    state: Mutex<PrimitiveState>,
    changed: tokio::sync::Notify,
    /// Signalled when the node agent asks for a role (kept in the state's `wanted_role`).
    role_asked: tokio::sync::Notify,
    /// Written (temp file, then rename) on every change, when set.
    file: Option<PathBuf>,
}

impl Shared {
    pub fn new(file: Option<PathBuf>) -> Shared {
        Shared {
            file,
            ..Shared::default()
        }
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
