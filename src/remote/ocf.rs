//! Running a resource agent's action the way the OCF resource agent API specifies: the agent
//! at `$OCF_ROOT/resource.d/<provider>/<type>`, the action as its only argument, parameters
//! as `OCF_RESKEY_<name>` in the environment, the operation's timeout and interval as
//! `OCF_RESKEY_CRM_meta_timeout` / `_interval` (milliseconds, as Pacemaker passes them), and
//! the result read from the exit code. The timeout is enforced: an agent still running when
//! it expires is killed with its whole process group.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::io::Read;
use std::os::unix::process::CommandExt;

use super::reaper::Reaper;

pub use crate::model::operation::Action;

/// The OCF exit codes (OCF resource agent API, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rc {
    Success,
    ErrGeneric,
    ErrArgs,
    ErrUnimplemented,
    ErrPerm,
    ErrInstalled,
    ErrConfigured,
    NotRunning,
    RunningPromoted,
    FailedPromoted,
    /// Any other code the agent returned.
    Other(i32),
    /// Killed by a signal (not by berth's timeout).
    Signaled(i32),
    /// berth killed it at the operation's timeout.
    TimedOut,
}

impl Rc {
    /// From an exit code.
    pub fn from_code(code: i32) -> Rc {
        match code {
            0 => Rc::Success,
            1 => Rc::ErrGeneric,
            2 => Rc::ErrArgs,
            3 => Rc::ErrUnimplemented,
            4 => Rc::ErrPerm,
            5 => Rc::ErrInstalled,
            6 => Rc::ErrConfigured,
            7 => Rc::NotRunning,
            8 => Rc::RunningPromoted,
            9 => Rc::FailedPromoted,
            n => Rc::Other(n),
        }
    }

    /// The exit code (-1 for a timeout or a signal).
    pub fn code(self) -> i32 {
        match self {
            Rc::Success => 0,
            Rc::ErrGeneric => 1,
            Rc::ErrArgs => 2,
            Rc::ErrUnimplemented => 3,
            Rc::ErrPerm => 4,
            Rc::ErrInstalled => 5,
            Rc::ErrConfigured => 6,
            Rc::NotRunning => 7,
            Rc::RunningPromoted => 8,
            Rc::FailedPromoted => 9,
            Rc::Other(n) => n,
            Rc::Signaled(_) | Rc::TimedOut => -1,
        }
    }

    /// The specification's name for it (`OCF_NOT_RUNNING`, …).
    pub fn name(self) -> String {
        match self {
            Rc::Success => "OCF_SUCCESS".into(),
            Rc::ErrGeneric => "OCF_ERR_GENERIC".into(),
            Rc::ErrArgs => "OCF_ERR_ARGS".into(),
            Rc::ErrUnimplemented => "OCF_ERR_UNIMPLEMENTED".into(),
            Rc::ErrPerm => "OCF_ERR_PERM".into(),
            Rc::ErrInstalled => "OCF_ERR_INSTALLED".into(),
            Rc::ErrConfigured => "OCF_ERR_CONFIGURED".into(),
            Rc::NotRunning => "OCF_NOT_RUNNING".into(),
            Rc::RunningPromoted => "OCF_RUNNING_PROMOTED".into(),
            Rc::FailedPromoted => "OCF_FAILED_PROMOTED".into(),
            Rc::Other(n) => format!("exit code {n}"),
            Rc::Signaled(s) => format!("killed by signal {s}"),
            Rc::TimedOut => "timed out".into(),
        }
    }
}

/// One resource agent instance: where it is and what it is given.
#[derive(Debug, Clone)]
pub struct Agent {
    /// `OCF_ROOT` (conventionally `/usr/lib/ocf`).
    pub root: PathBuf,
    pub provider: String,
    pub kind: String,
    /// `OCF_RESOURCE_INSTANCE`: the primitive's id (with the replica's suffix in a bundle).
    pub instance: String,
    /// Instance attributes, passed as `OCF_RESKEY_<name>`.
    pub params: Vec<(String, String)>,
    /// More environment: the meta attributes (`OCF_RESKEY_CRM_meta_*`), and where the node
    /// attribute tools are (see `supervisor::agent_env`).
    pub env: Vec<(String, String)>,
}

/// The outcome of one action.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rc: Rc,
    /// Standard output (the meta-data XML for meta-data), then standard error, truncated.
    pub output: String,
    pub took: Duration,
}

/// Why an action could not be run at all (the agent is missing or not executable).
#[derive(Debug, thiserror::Error)]
#[error("cannot run {path}: {source}")]
pub struct SpawnError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

impl Agent {
    /// `$OCF_ROOT/resource.d/<provider>/<type>`.
    pub fn path(&self) -> PathBuf {
        self.root
            .join("resource.d")
            .join(&self.provider)
            .join(&self.kind)
    }

    /// Runs `action` with the operation's `timeout` and `interval` (and `extra` environment);
    /// kills the agent's process group at the timeout. The child is waited for through the
    /// reaper (see [`Reaper`]).
    pub async fn run(
        &self,
        reaper: &Reaper,
        action: Action,
        (timeout, interval): (Duration, Duration),
        extra: &[(String, String)],
    ) -> Result<Outcome, SpawnError> {
        let path = self.path();
        let mut cmd = self.command(&path, action, (timeout, interval), extra);
        let start = Instant::now();
        let (mut child, exited) = reaper.spawn(&mut cmd).map_err(|source| SpawnError {
            path: path.display().to_string(),
            source,
        })?;
        let pgid = child.id() as i32;
        // Pipes are read on blocking threads; a daemon the agent started may keep them open,
        // so the output is taken as far as it came when the agent itself exits.
        let out = read_pipe(child.stdout.take());
        let err = read_pipe(child.stderr.take());
        let rc = match tokio::time::timeout(timeout, exited).await {
            Ok(Ok(status)) => match (status.code(), status.signal()) {
                (Some(c), _) => Rc::from_code(c),
                (None, Some(s)) => Rc::Signaled(s),
                (None, None) => Rc::ErrGeneric,
            },
            Ok(Err(_)) => Rc::ErrGeneric,
            Err(_) => {
                // The process group the agent leads (process_group(0)).
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                Rc::TimedOut
            }
        };
        let mut output = String::from_utf8_lossy(&grab(out).await).into_owned();
        output.push_str(&String::from_utf8_lossy(&grab(err).await));
        // Cut at a character boundary: the agent's output may be any bytes.
        crate::model::cluster::truncate_utf8(&mut output, 4096);
        Ok(Outcome {
            rc,
            output,
            took: start.elapsed(),
        })
    }

    /// The agent's command for `action`: the OCF environment (root, version, instance, type,
    /// provider, the operation's timeout and interval, every parameter as `OCF_RESKEY_*`),
    /// no input, both outputs piped, in a process group of its own.
    fn command(
        &self,
        path: &Path,
        action: Action,
        (timeout, interval): (Duration, Duration),
        extra: &[(String, String)],
    ) -> std::process::Command {
        let mut cmd = std::process::Command::new(path);
        cmd.arg(action.as_str())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .env("OCF_ROOT", &self.root)
            .env("OCF_FUNCTIONS_DIR", self.root.join("lib/heartbeat"))
            .env("OCF_RA_VERSION_MAJOR", "1")
            .env("OCF_RA_VERSION_MINOR", "1")
            .env("OCF_RESOURCE_INSTANCE", &self.instance)
            .env("OCF_RESOURCE_TYPE", &self.kind)
            .env("OCF_RESOURCE_PROVIDER", &self.provider)
            .env(
                "OCF_RESKEY_CRM_meta_timeout",
                timeout.as_millis().to_string(),
            )
            .env(
                "OCF_RESKEY_CRM_meta_interval",
                interval.as_millis().to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (k, v) in &self.params {
            cmd.env(format!("OCF_RESKEY_{k}"), v);
        }
        cmd
    }
}

/// Reads the first 64 KiB of an agent's output pipe on a blocking thread.
fn read_pipe(pipe: Option<impl Read + Send + 'static>) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.by_ref().take(64 * 1024).read_to_end(&mut buf);
            // The rest is read and dropped: a pipe closed early would kill a talkative agent
            // (SIGPIPE) and fail an operation that succeeded.
            let _ = std::io::copy(&mut p, &mut std::io::sink());
        }
        buf
    })
}

/// What a pipe's reader has read, waiting at most 200 ms more for it (a daemon the agent
/// started may hold the pipe open).
async fn grab(h: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    tokio::time::timeout(Duration::from_millis(200), h)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// Whether `path` exists and is executable (OCF_ERR_INSTALLED otherwise).
pub fn installed(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaper() -> &'static Reaper {
        Reaper::global()
    }
    use std::os::unix::fs::PermissionsExt;

    /// An OCF root with one agent, `test/echo`, that exits with `$OCF_RESKEY_rc` after
    /// writing its environment, and sleeps `$OCF_RESKEY_sleep` seconds first when set.
    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let agent_dir = dir.path().join("resource.d/test");
        std::fs::create_dir_all(&agent_dir).unwrap();
        let script = agent_dir.join("echo");
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             [ -n \"$OCF_RESKEY_sleep\" ] && sleep \"$OCF_RESKEY_sleep\"\n\
             echo \"action=$1 instance=$OCF_RESOURCE_INSTANCE type=$OCF_RESOURCE_TYPE provider=$OCF_RESOURCE_PROVIDER timeout=$OCF_RESKEY_CRM_meta_timeout interval=$OCF_RESKEY_CRM_meta_interval root=$OCF_ROOT\"\n\
             exit \"${OCF_RESKEY_rc:-0}\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn agent(root: &Path, params: &[(&str, &str)]) -> Agent {
        Agent {
            root: root.to_path_buf(),
            provider: "test".into(),
            kind: "echo".into(),
            instance: "web-apache:0".into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env: vec![],
        }
    }

    /// Issue 31, item 7: an agent that writes more than berth keeps (64 KiB) still exits
    /// as it meant to, not killed by SIGPIPE on a pipe closed early.
    #[tokio::test]
    async fn an_agent_with_more_output_than_is_kept_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let agent_dir = dir.path().join("resource.d/test");
        std::fs::create_dir_all(&agent_dir).unwrap();
        let script = agent_dir.join("echo");
        // 200 KiB on stdout, then success.
        std::fs::write(
            &script,
            "#!/bin/sh\ni=0\nwhile [ $i -lt 2000 ]; do\n  printf '%0100d\\n' $i\n  i=$((i+1))\ndone\nexit 0\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = agent(dir.path(), &[])
            .run(
                reaper(),
                Action::Monitor,
                (Duration::from_secs(10), Duration::ZERO),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(out.rc, Rc::Success, "{}", out.output);
        assert!(out.output.len() <= 4096);
    }

    #[tokio::test]
    async fn every_ocf_exit_code() {
        let r = root();
        let want = [
            Rc::Success,
            Rc::ErrGeneric,
            Rc::ErrArgs,
            Rc::ErrUnimplemented,
            Rc::ErrPerm,
            Rc::ErrInstalled,
            Rc::ErrConfigured,
            Rc::NotRunning,
            Rc::RunningPromoted,
            Rc::FailedPromoted,
        ];
        for (code, rc) in want.into_iter().enumerate() {
            let a = agent(r.path(), &[("rc", &code.to_string())]);
            let out = a
                .run(
                    reaper(),
                    Action::Monitor,
                    (Duration::from_secs(5), Duration::ZERO),
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(out.rc, rc, "exit {code}");
        }
        let a = agent(r.path(), &[("rc", "42")]);
        let out = a
            .run(
                reaper(),
                Action::Monitor,
                (Duration::from_secs(5), Duration::ZERO),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(out.rc, Rc::Other(42));
    }

    #[tokio::test]
    async fn the_environment_follows_the_specification() {
        let r = root();
        let a = agent(r.path(), &[]);
        let out = a
            .run(
                reaper(),
                Action::Monitor,
                (Duration::from_secs(20), Duration::from_secs(10)),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            out.output.trim(),
            format!(
                "action=monitor instance=web-apache:0 type=echo provider=test timeout=20000 interval=10000 root={}",
                r.path().display()
            )
        );
    }

    #[tokio::test]
    async fn the_timeout_kills_the_agent() {
        let r = root();
        let a = agent(r.path(), &[("sleep", "30")]);
        let out = a
            .run(
                reaper(),
                Action::Start,
                (Duration::from_millis(300), Duration::ZERO),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(out.rc, Rc::TimedOut);
        assert!(out.took < Duration::from_secs(5), "{:?}", out.took);
    }

    #[tokio::test]
    async fn a_missing_agent_cannot_be_spawned() {
        let r = root();
        let mut a = agent(r.path(), &[]);
        a.kind = "nope".into();
        assert!(!installed(&a.path()));
        assert!(
            a.run(
                reaper(),
                Action::Start,
                (Duration::from_secs(1), Duration::ZERO),
                &[],
            )
            .await
            .is_err()
        );
    }
}
