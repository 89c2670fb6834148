//! The watchdog: a small process beside the node agent (`berth watchdog`, started by the
//! agent in a process group of its own) that fences the node when the agent stops vouching
//! for it, whatever happened to the agent: killed with -9, stopped with SIGSTOP, hung, or
//! cut off from etcd. The agent arms it after every lease renewal with the time left until
//! its fence deadline; when the deadline passes without a new arm, the watchdog freezes the
//! node's scope and drops its addresses ([`fence::freeze_node`]). Then:
//!
//! - the agent comes back with the same lease (etcd was only unreachable): `thaw`;
//! - the agent learns its lease is gone: `kill`;
//! - no agent is connected (it died), or the freeze lasted `freeze_for`: kill.
//!
//! Pacemaker's sbd does the same with a hardware watchdog; here the "hardware" is a process
//! that needs neither etcd nor the engine, only the cgroup filesystem and netlink.
//!
//! The protocol is one line per request on `<state dir>/watchdog.sock` (root only, in the
//! agent's own state directory, never mounted into a container), answered by `ok`:
//! `arm <ms>`, `thaw`, `kill`, `disarm`, `exit`.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::fence::{self, Scope};

/// The socket's file name in the state directory.
pub const SOCKET: &str = "watchdog.sock";

/// What the watchdog guards and how.
#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    pub state_dir: PathBuf,
    /// The node's cgroup scope (None: only addresses can be dropped).
    pub scope: Option<Scope>,
    /// How long a freeze waits for the agent to thaw it before it becomes a kill.
    pub freeze_for: Duration,
}

/// A request from the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The agent vouches for the node this much longer.
    Arm(Duration),
    /// The lease outlived a freeze: let the containers run again.
    Thaw,
    /// The lease is gone: kill every container now.
    Kill,
    /// Stop guarding (maintenance: the containers are left to run).
    Disarm,
    /// Stop guarding and exit (the agent drained the node, or leaves it in maintenance).
    Exit,
}

impl Request {
    fn line(self) -> String {
        match self {
            Request::Arm(d) => format!("arm {}\n", d.as_millis()),
            Request::Thaw => "thaw\n".into(),
            Request::Kill => "kill\n".into(),
            Request::Disarm => "disarm\n".into(),
            Request::Exit => "exit\n".into(),
        }
    }

    fn parse(line: &str) -> Option<Request> {
        let mut w = line.split_whitespace();
        let r = match (w.next()?, w.next()) {
            ("arm", Some(ms)) => Request::Arm(Duration::from_millis(ms.parse().ok()?)),
            ("thaw", None) => Request::Thaw,
            ("kill", None) => Request::Kill,
            ("disarm", None) => Request::Disarm,
            ("exit", None) => Request::Exit,
            _ => return None,
        };
        w.next().is_none().then_some(r)
    }
}

/// The watchdog's state, stepped by requests and time (pure).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Guard {
    /// When to fence, while armed.
    deadline: Option<Instant>,
    /// When the fence froze the node, while frozen.
    frozen_at: Option<Instant>,
}

/// What the watchdog must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    None,
    Freeze,
    Thaw,
    Kill,
}

impl Guard {
    fn request(&mut self, r: Request, now: Instant) -> Effect {
        match r {
            Request::Arm(d) => {
                self.deadline = Some(now + d);
                Effect::None
            }
            Request::Thaw => {
                if self.frozen_at.take().is_some() {
                    Effect::Thaw
                } else {
                    Effect::None
                }
            }
            Request::Kill => {
                self.frozen_at = None;
                Effect::Kill
            }
            Request::Disarm | Request::Exit => {
                self.deadline = None;
                if self.frozen_at.take().is_some() {
                    Effect::Thaw
                } else {
                    Effect::None
                }
            }
        }
    }

    /// The next instant something is due.
    fn due(&self, freeze_for: Duration) -> Option<Instant> {
        match self.frozen_at {
            Some(at) => Some(at + freeze_for),
            None => self.deadline,
        }
    }

    /// Time passed `now`; `agent` says whether an agent is connected.
    fn tick(&mut self, now: Instant, freeze_for: Duration, agent: bool) -> Effect {
        if let Some(at) = self.frozen_at {
            if !agent || now >= at + freeze_for {
                self.frozen_at = None;
                return Effect::Kill;
            }
            return Effect::None;
        }
        match self.deadline {
            Some(d) if now >= d => {
                self.deadline = None;
                if agent && !freeze_for.is_zero() {
                    self.frozen_at = Some(now);
                    Effect::Freeze
                } else {
                    Effect::Kill
                }
            }
            _ => Effect::None,
        }
    }

    /// Nothing left to guard.
    fn idle(&self) -> bool {
        self.deadline.is_none() && self.frozen_at.is_none()
    }
}

async fn execute(cfg: &WatchdogConfig, e: Effect) {
    match e {
        Effect::None => {}
        Effect::Freeze => {
            tracing::error!("watchdog: the agent stopped vouching for this node: freezing it");
            fence::freeze_node(cfg.scope.as_ref(), &cfg.state_dir, Duration::from_secs(1)).await;
        }
        Effect::Thaw => {
            tracing::warn!("watchdog: lease still alive: thawing");
            if let Some(s) = &cfg.scope
                && let Err(e) = s.thaw()
            {
                tracing::error!("watchdog: {e}");
            }
        }
        Effect::Kill => {
            tracing::error!("watchdog: killing every container of this node");
            fence::kill_node(cfg.scope.as_ref(), &cfg.state_dir).await;
        }
    }
}

/// Runs the watchdog until told to exit, or until it has nothing left to guard and no agent
/// is connected. Returns at once when another watchdog already serves the state directory.
pub async fn serve(cfg: WatchdogConfig) -> std::io::Result<()> {
    let path = cfg.state_dir.join(SOCKET);
    if UnixStream::connect(&path).await.is_ok() {
        tracing::info!("watchdog: one already runs for {}", cfg.state_dir.display());
        return Ok(());
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let mut guard = Guard::default();
    let mut conn: Option<(
        BufReader<tokio::net::unix::OwnedReadHalf>,
        tokio::net::unix::OwnedWriteHalf,
    )> = None;
    let mut seen_agent = false;
    loop {
        let due = guard.due(cfg.freeze_for);
        let mut line = String::new();
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((s, _)) = accepted {
                    // A new agent (a restarted one) replaces the old connection.
                    let (r, w) = s.into_split();
                    conn = Some((BufReader::new(r), w));
                    seen_agent = true;
                }
                continue;
            }
            read = async {
                match conn.as_mut() {
                    Some((r, _)) => r.read_line(&mut line).await,
                    None => std::future::pending().await,
                }
            } => {
                match read {
                    Ok(n) if n > 0 => {
                        let Some(req) = Request::parse(&line) else {
                            tracing::warn!("watchdog: unknown request {:?}", line.trim());
                            continue;
                        };
                        let effect = guard.request(req, Instant::now());
                        execute(&cfg, effect).await;
                        if let Some((_, w)) = conn.as_mut() {
                            let _ = w.write_all(b"ok\n").await;
                        }
                        if req == Request::Exit {
                            let _ = std::fs::remove_file(&path);
                            return Ok(());
                        }
                    }
                    // The agent is gone (killed, or it closed the connection).
                    _ => {
                        conn = None;
                        let effect = guard.tick(Instant::now(), cfg.freeze_for, false);
                        execute(&cfg, effect).await;
                    }
                }
            }
            _ = crate::sleep_until(due) => {
                let effect = guard.tick(Instant::now(), cfg.freeze_for, conn.is_some());
                execute(&cfg, effect).await;
            }
        }
        if seen_agent && conn.is_none() && guard.idle() {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
    }
}

/// The agent's side: a task that keeps a connection to the watchdog (starting one when none
/// answers) and sends it requests in order. Sending never blocks the caller.
#[derive(Clone)]
pub struct Link {
    tx: mpsc::UnboundedSender<(Request, Option<tokio::sync::oneshot::Sender<()>>)>,
}

/// How the agent starts a watchdog.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// The berth binary, run as `berth watchdog`.
    pub binary: PathBuf,
    pub state_dir: PathBuf,
    /// The node's cgroup parent (see [`fence::cgroup_parent`]).
    pub scope: Option<String>,
    pub freeze_for: Duration,
}

impl Link {
    /// Starts the link task.
    pub fn start(spawn: Spawn) -> Link {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(link_task(spawn, rx));
        Link { tx }
    }

    /// Sends `r` (in order with earlier requests).
    pub fn send(&self, r: Request) {
        let _ = self.tx.send((r, None));
    }

    /// Sends `r` and waits (at most `within`) until the watchdog has acted on it.
    pub async fn send_wait(&self, r: Request, within: Duration) -> bool {
        let (done, rx) = tokio::sync::oneshot::channel();
        if self.tx.send((r, Some(done))).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }
}

async fn connect(spawn: &Spawn) -> std::io::Result<UnixStream> {
    let path = spawn.state_dir.join(SOCKET);
    if let Ok(s) = UnixStream::connect(&path).await {
        return Ok(s);
    }
    start_watchdog(spawn)?;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match UnixStream::connect(&path).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn start_watchdog(spawn: &Spawn) -> std::io::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spawn.state_dir.join("watchdog.log"))?;
    let mut cmd = tokio::process::Command::new(&spawn.binary);
    cmd.arg("watchdog")
        .arg("--state-dir")
        .arg(&spawn.state_dir)
        .arg("--freeze-for")
        .arg(format!("{}ms", spawn.freeze_for.as_millis()));
    if let Some(s) = &spawn.scope {
        cmd.arg("--scope").arg(s);
    }
    // Its own process group: a Ctrl-C meant for the agent's terminal does not reach it.
    cmd.process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Not waited for here: tokio reaps it when it exits; it outlives a killed agent.
    cmd.spawn()?;
    Ok(())
}

async fn link_task(
    spawn: Spawn,
    mut rx: mpsc::UnboundedReceiver<(Request, Option<tokio::sync::oneshot::Sender<()>>)>,
) {
    let mut conn: Option<(
        BufReader<tokio::net::unix::OwnedReadHalf>,
        tokio::net::unix::OwnedWriteHalf,
    )> = None;
    // The last arm, re-sent to a new connection before anything else.
    let mut last_arm: Option<(Instant, Duration)> = None;
    while let Some((req, done)) = rx.recv().await {
        if let Request::Arm(d) = req {
            last_arm = Some((Instant::now(), d));
        }
        for attempt in 0..3 {
            if conn.is_none() {
                match connect(&spawn).await {
                    Ok(s) => {
                        let (r, w) = s.into_split();
                        let mut c = (BufReader::new(r), w);
                        if let Some((at, d)) = last_arm
                            && !matches!(req, Request::Arm(_))
                        {
                            let left = d.saturating_sub(at.elapsed());
                            let _ = exchange(&mut c, Request::Arm(left)).await;
                        }
                        conn = Some(c);
                    }
                    Err(e) => {
                        tracing::error!(
                            "watchdog at {}: {e}",
                            spawn.state_dir.join(SOCKET).display()
                        );
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected above");
            if exchange(c, req).await {
                if let Some(d) = done {
                    let _ = d.send(());
                }
                break;
            }
            conn = None;
        }
        if req == Request::Exit {
            conn = None;
            last_arm = None;
        }
    }
}

/// Sends one request and reads its `ok` (within a second).
async fn exchange(
    c: &mut (
        BufReader<tokio::net::unix::OwnedReadHalf>,
        tokio::net::unix::OwnedWriteHalf,
    ),
    r: Request,
) -> bool {
    let io = async {
        c.1.write_all(r.line().as_bytes()).await.ok()?;
        let mut line = String::new();
        c.0.read_line(&mut line).await.ok()?;
        (line.trim() == "ok").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), io).await,
        Ok(Some(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Arm(Duration::from_millis(3333)),
            Request::Thaw,
            Request::Kill,
            Request::Disarm,
            Request::Exit,
        ] {
            assert_eq!(Request::parse(&r.line()), Some(r));
        }
        assert_eq!(Request::parse("arm"), None);
        assert_eq!(Request::parse("arm x"), None);
        assert_eq!(Request::parse("kill now"), None);
        assert_eq!(Request::parse(""), None);
    }

    #[test]
    fn guard_table() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let ff = ms(1000);
        // Armed and renewed in time: nothing happens.
        let mut g = Guard::default();
        assert_eq!(g.request(Request::Arm(ms(100)), t0), Effect::None);
        assert_eq!(g.tick(t0 + ms(50), ff, true), Effect::None);
        // The deadline passes with the agent connected: freeze, then a thaw undoes it.
        assert_eq!(g.tick(t0 + ms(100), ff, true), Effect::Freeze);
        assert_eq!(g.due(ff), Some(t0 + ms(1100)));
        assert_eq!(g.request(Request::Thaw, t0 + ms(300)), Effect::Thaw);
        assert!(g.idle());
        // Frozen too long: kill.
        g.request(Request::Arm(ms(100)), t0);
        assert_eq!(g.tick(t0 + ms(100), ff, true), Effect::Freeze);
        assert_eq!(g.tick(t0 + ms(1099), ff, true), Effect::None);
        assert_eq!(g.tick(t0 + ms(1100), ff, true), Effect::Kill);
        // Frozen and the agent goes away: kill.
        g.request(Request::Arm(ms(100)), t0);
        assert_eq!(g.tick(t0 + ms(100), ff, true), Effect::Freeze);
        assert_eq!(g.tick(t0 + ms(150), ff, false), Effect::Kill);
        // The deadline passes with no agent: kill at once.
        g.request(Request::Arm(ms(100)), t0);
        assert_eq!(g.tick(t0 + ms(100), ff, false), Effect::Kill);
        // freeze_for 0: kill at once too.
        g.request(Request::Arm(ms(100)), t0);
        assert_eq!(g.tick(t0 + ms(100), Duration::ZERO, true), Effect::Kill);
        // Disarmed: the deadline is gone, nothing fires.
        g.request(Request::Arm(ms(100)), t0);
        assert_eq!(g.request(Request::Disarm, t0), Effect::None);
        assert_eq!(g.tick(t0 + ms(1000), ff, true), Effect::None);
        assert!(g.idle());
        // The agent says the lease is gone.
        assert_eq!(g.request(Request::Kill, t0), Effect::Kill);
    }
}
