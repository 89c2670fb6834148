//! The resource classes the remote agent runs, behind one `run(action)`:
//!
//! - `ocf`: an OCF resource agent ([`super::ocf`]);
//! - `lsb`: an init script, `<init.d>/<type> start|stop|status` (`/etc/init.d` unless configured), with LSB's exit codes
//!   (status: 0 running, 3 not running, anything else a failure);
//! - `command`: berth's own plain supervised command. `type` is the program, instance
//!   attribute `args` its arguments (split like a shell would), and the optional `health`
//!   attribute a probe command run at each monitor (exit 0 is healthy). start spawns it in a
//!   process group of its own; monitor checks that it still runs and, when there is a probe,
//!   that the probe passes; stop sends SIGTERM to the group, then SIGKILL at the timeout.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::os::unix::process::{CommandExt, ExitStatusExt};
use tokio::sync::oneshot;

use super::ocf::{Action, Agent, Outcome, Rc, SpawnError};
use super::reaper::Reaper;
use crate::model::options::{WordsError, split_words};
use crate::model::remote::RemoteConfig;

/// A supervised command's running process.
pub struct Running {
    pid: i32,
    exited: oneshot::Receiver<ExitStatus>,
}

/// One primitive of a supported class.
pub enum Resource {
    Ocf(Agent),
    Lsb {
        script: PathBuf,
    },
    Command {
        program: String,
        args: Vec<String>,
        health: Option<Vec<String>>,
        running: Mutex<Option<Running>>,
    },
}

fn outcome(rc: Rc, output: impl Into<String>, start: Instant) -> Outcome {
    Outcome {
        rc,
        output: output.into(),
        took: start.elapsed(),
    }
}

/// Runs a process to completion through the reaper, with a timeout (killing its group).
async fn run_to_end(
    reaper: &Reaper,
    program: &str,
    args: &[String],
    timeout: Duration,
) -> Result<ExitStatus, SpawnError> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let (child, exited) = reaper.spawn(&mut cmd).map_err(|source| SpawnError {
        path: program.to_string(),
        source,
    })?;
    match tokio::time::timeout(timeout, exited).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(_)) => Ok(ExitStatus::from_raw(1 << 8)),
        Err(_) => {
            // The process group the child leads.
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            Ok(ExitStatus::from_raw(Signal::SIGKILL as i32))
        }
    }
}

/// Why the configured primitive cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("args: {0}")]
    Args(WordsError),
    #[error("health: {0}")]
    Health(WordsError),
    #[error("class {0:?} is not supported (ocf, lsb, command)")]
    Class(String),
}

impl Resource {
    /// Builds the resource for the configured primitive (class ocf, lsb or command); `env` is
    /// the extra environment an OCF agent runs with (see `supervisor::agent_env`).
    pub fn new(cfg: &RemoteConfig, env: Vec<(String, String)>) -> Result<Resource, ResourceError> {
        let p = &cfg.primitive;
        let params: Vec<(String, String)> = p
            .instance_attributes
            .iter()
            .map(|nv| (nv.name.clone(), nv.value.clone().unwrap_or_default()))
            .collect();
        let kind = p.kind.as_str();
        match p.class.as_str() {
            "ocf" => Ok(Resource::Ocf(Agent {
                root: cfg.ocf_root.clone(),
                provider: p.provider.clone().unwrap_or_default(),
                kind: kind.to_string(),
                instance: cfg.instance.clone(),
                params,
                env,
            })),
            "lsb" => Ok(Resource::Lsb {
                script: cfg.initd.join(kind),
            }),
            "command" => {
                let get = |name: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                let args = match get("args") {
                    Some(a) => split_words(&a).map_err(ResourceError::Args)?,
                    None => Vec::new(),
                };
                let health = match get("health") {
                    Some(h) => Some(split_words(&h).map_err(ResourceError::Health)?),
                    None => None,
                };
                Ok(Resource::Command {
                    program: kind.to_string(),
                    args,
                    health: health.filter(|h| !h.is_empty()),
                    running: Mutex::new(None),
                })
            }
            other => Err(ResourceError::Class(other.to_string())),
        }
    }

    /// Runs one action with its timeout.
    pub async fn run(
        &self,
        reaper: &Reaper,
        action: Action,
        timeout: Duration,
        interval: Duration,
    ) -> Result<Outcome, SpawnError> {
        self.run_with(reaper, action, (timeout, interval), &[])
            .await
    }

    /// [`Resource::run`] with more environment for this call (a notification's variables);
    /// `timing` is the operation's timeout and interval.
    pub async fn run_with(
        &self,
        reaper: &Reaper,
        action: Action,
        timing: (Duration, Duration),
        env: &[(String, String)],
    ) -> Result<Outcome, SpawnError> {
        let (timeout, _) = timing;
        match self {
            Resource::Ocf(agent) => agent.run(reaper, action, timing, env).await,
            Resource::Lsb { script } => run_lsb(reaper, script, action, timeout).await,
            Resource::Command {
                program,
                args,
                health,
                running,
            } => {
                let start = Instant::now();
                match action {
                    Action::Start => start_command(reaper, program, args, running),
                    Action::Monitor => {
                        monitor_command(reaper, health.as_deref(), running, timeout).await
                    }
                    Action::Stop => Ok(stop_command(running, timeout).await),
                    _ => Ok(outcome(
                        Rc::ErrUnimplemented,
                        "the command class has no such action",
                        start,
                    )),
                }
            }
        }
    }
}

/// An LSB init script's `start`, `stop` or `status` (for monitor), its exit code read as the
/// LSB says (3 from status: not running).
async fn run_lsb(
    reaper: &Reaper,
    script: &Path,
    action: Action,
    timeout: Duration,
) -> Result<Outcome, SpawnError> {
    let start = Instant::now();
    let verb = match action {
        Action::Start => "start",
        Action::Stop => "stop",
        Action::Monitor => "status",
        _ => {
            return Ok(outcome(
                Rc::ErrUnimplemented,
                "lsb has no such action",
                start,
            ));
        }
    };
    let status = run_to_end(
        reaper,
        &script.display().to_string(),
        &[verb.into()],
        timeout,
    )
    .await?;
    let rc = match (action, status.code()) {
        (_, Some(0)) => Rc::Success,
        (Action::Monitor, Some(3)) => Rc::NotRunning,
        (_, Some(_)) => Rc::ErrGeneric,
        (_, None) => Rc::TimedOut,
    };
    Ok(outcome(rc, "", start))
}

/// Starts a plain command in a process group of its own, remembered as running.
fn start_command(
    reaper: &Reaper,
    program: &str,
    args: &[String],
    running: &Mutex<Option<Running>>,
) -> Result<Outcome, SpawnError> {
    let start = Instant::now();
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).process_group(0);
    let (child, exited) = reaper.spawn(&mut cmd).map_err(|source| SpawnError {
        path: program.to_string(),
        source,
    })?;
    *running.lock().expect("command lock") = Some(Running {
        pid: child.id() as i32,
        exited,
    });
    Ok(outcome(Rc::Success, "", start))
}

/// A plain command runs while its process has not exited, and is healthy while its
/// `health` probe (if any) exits 0.
async fn monitor_command(
    reaper: &Reaper,
    health: Option<&[String]>,
    running: &Mutex<Option<Running>>,
    timeout: Duration,
) -> Result<Outcome, SpawnError> {
    let start = Instant::now();
    let alive = {
        let mut r = running.lock().expect("command lock");
        match r.as_mut() {
            Some(run) => match run.exited.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => true,
                _ => {
                    *r = None;
                    false
                }
            },
            None => false,
        }
    };
    if !alive {
        return Ok(outcome(Rc::NotRunning, "the command is not running", start));
    }
    if let Some(probe) = health {
        let status = run_to_end(reaper, &probe[0], &probe[1..], timeout).await?;
        if status.code() != Some(0) {
            return Ok(outcome(Rc::ErrGeneric, "the health probe failed", start));
        }
    }
    Ok(outcome(Rc::Success, "", start))
}

/// Stops a plain command: SIGTERM to its process group, SIGKILL at the stop timeout.
async fn stop_command(running: &Mutex<Option<Running>>, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let run = running.lock().expect("command lock").take();
    let Some(run) = run else {
        return outcome(Rc::Success, "not running", start);
    };
    // The command's own process group.
    let _ = killpg(Pid::from_raw(run.pid), Signal::SIGTERM);
    match tokio::time::timeout(timeout, run.exited).await {
        Ok(_) => outcome(Rc::Success, "", start),
        Err(_) => {
            let _ = killpg(Pid::from_raw(run.pid), Signal::SIGKILL);
            outcome(Rc::Success, "killed at the stop timeout", start)
        }
    }
}
