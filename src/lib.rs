//! berth: Pacemaker's container bundles on plain Docker hosts, run the way a Kubernetes
//! operator runs.
//!
//! # Layout
//!
//! Start reading at [`model`]: the Bundle resource, Pacemaker's defaults, validation and the
//! formats it comes in (YAML, JSON, Pacemaker XML). It is pure and does no I/O.
//!
//! - [`model`]: types ([`model::Bundle`]), [`model::validate`], [`model::manifest`] (YAML and
//!   JSON), [`model::cib`] (Pacemaker XML), [`model::duration`] (Pacemaker time values).
//! - [`store`]: etcd. The key layout ([`store::keys`]), typed get/list/put/delete with
//!   revision-based optimistic concurrency ([`store::Store`]), and the one watch helper
//!   everything else uses ([`store::watch`]).
//! - [`node`]: the node agent (`berth node`): registers under a lease, watches its
//!   assignments, and converges the local Docker engine to them. Its pure core
//!   ([`node::core`], [`node::assigned`], [`node::plan`]) decides; the shell
//!   ([`node::agent`]) feeds it and acts through [`node::engine`] (bollard).
//! - [`controller`]: placement ([`controller::placement`]) and reconcile
//!   ([`controller::reconcile`]), both pure, and the leader-elected shell that commits
//!   assignments and bundle status.
//! - [`backoff`]: the one exponential backoff every retry uses.
//! - [`chart`]: Helm-style charts rendered with gtmpl, releases kept in etcd.
//! - [`remote`]: the remote agent (`berth remote`), PID 1 of each container of a bundle
//!   with a primitive: reaper, resource classes, supervisor, control channel.
//! - [`cli`]: the `berth` command: apply, get, describe, delete, watch, status, cib, chart,
//!   and the daemons node, controller and up. Nothing below reaches up into it.

pub mod backoff;

/// Sleeps until `at`; forever without one (a `select!` branch for "the next deadline, if
/// any": a restart hold, a monitor, a fence's kill).
pub async fn sleep_until<I: Into<tokio::time::Instant>>(at: Option<I>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Seconds since the Unix epoch (0 on a clock set before it): the one wall-clock reading
/// the parts record and compare (failure times, start times, bans, releases).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Bytes as lower-case hex (digests, keys, ids).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `secs` since the epoch as UTC, the way `date -u +%FT%TZ` prints it (RFC 3339).
pub fn utc_time(secs: u64) -> String {
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let (y, mo, d) = civil(days as i64);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days-from-civil).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's civil-from-days (the
/// inverse of [`days_from_civil`]). Kept by hand rather than taken from a calendar crate:
/// Go's templates reach years far outside the ±9999 such crates accept.
pub(crate) fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub mod chart;
pub mod cli;
pub mod controller;
pub mod events;
pub mod metrics;
pub mod model;
pub mod node;
pub mod remote;
pub mod store;
