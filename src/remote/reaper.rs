//! PID 1's reaper. As a container's init (or a child subreaper outside one), the remote agent
//! inherits every orphaned process, and must wait for each so that none stays a zombie. One
//! task reaps every child on SIGCHLD and hands the exit status of the processes berth itself
//! spawned to whoever waits for them; the statuses of orphans are just collected.
//!
//! Because this reaper calls `waitpid(-1)`, nothing else in the remote agent may wait for
//! children itself: processes are spawned with `std::process::Command` and waited for here.

use std::collections::HashMap;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};

use std::os::unix::process::ExitStatusExt;

use tokio::sync::oneshot;

#[derive(Default)]
struct State {
    /// Children berth spawned, by pid, with where their exit status goes.
    waiting: HashMap<i32, oneshot::Sender<ExitStatus>>,
    /// Processes reaped that nobody waited for: orphans.
    orphans: u64,
}

/// The reaper: clone it freely.
#[derive(Clone)]
pub struct Reaper {
    state: Arc<Mutex<State>>,
}

impl Reaper {
    /// The process's one reaper (`waitpid(-1)` is process-wide, so there can be only one),
    /// started on first use. Outside PID 1 it also makes this process a child subreaper, so
    /// that orphans of its children come to it as they would to a container's init.
    pub fn global() -> &'static Reaper {
        static REAPER: std::sync::OnceLock<Reaper> = std::sync::OnceLock::new();
        REAPER.get_or_init(|| {
            if std::process::id() != 1
                && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
            {
                tracing::warn!("cannot become a child subreaper: {e}");
            }
            let reaper = Reaper {
                state: Arc::new(Mutex::new(State::default())),
            };
            let r = reaper.clone();
            std::thread::Builder::new()
                .name("berth-reaper".into())
                .spawn(move || r.reap_forever())
                .expect("spawning the reaper thread");
            reaper
        })
    }

    /// Blocks in `waitpid(-1)` and delivers each status. With no child at all, it looks
    /// again every 100 ms (in a container there is nearly always one: the service).
    fn reap_forever(&self) {
        loop {
            use nix::sys::wait::{WaitStatus, waitpid};
            // The raw status `ExitStatus` is built from, as wait(2) encodes it.
            let (pid, status) = match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), (code & 0xff) << 8),
                Ok(WaitStatus::Signaled(pid, sig, core)) => {
                    (pid.as_raw(), sig as i32 | if core { 0x80 } else { 0 })
                }
                Ok(_) => continue,
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
            };
            // The spawner holds this lock from before fork until the child is registered,
            // so a status is never looked up before its waiter exists.
            let mut st = self.state.lock().expect("reaper lock");
            match st.waiting.remove(&pid) {
                Some(tx) => {
                    let _ = tx.send(ExitStatus::from_raw(status));
                }
                None => st.orphans += 1,
            }
        }
    }

    /// Spawns a child and registers it before its exit can be reaped; await the receiver
    /// for its exit status.
    pub fn spawn(
        &self,
        cmd: &mut std::process::Command,
    ) -> std::io::Result<(std::process::Child, oneshot::Receiver<ExitStatus>)> {
        let mut st = self.state.lock().expect("reaper lock");
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        st.waiting.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    /// How many orphans (processes berth did not spawn) it has reaped.
    pub fn orphans(&self) -> u64 {
        self.state.lock().expect("reaper lock").orphans
    }
}
