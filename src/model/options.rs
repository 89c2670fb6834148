//! A bundle's `options`: extra `docker run` flags, parsed into what the create call takes.
//!
//! Only flags berth maps are accepted. Flags that clash with what berth manages are refused
//! with the field to use instead, and any other flag is refused as unsupported: a flag is
//! never silently ignored.

use std::collections::BTreeMap;

use serde::Serialize;

/// Parsed `docker run` options.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunOptions {
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub log_driver: Option<String>,
    pub log_opts: BTreeMap<String, String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// CPUs in billionths (`--cpus 1.5` → 1_500_000_000).
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub entrypoint: Option<String>,
    /// name → (soft, hard).
    pub ulimits: BTreeMap<String, (i64, i64)>,
    pub privileged: bool,
    pub read_only: bool,
    pub init: bool,
    pub security_opt: Vec<String>,
    pub shm_size: Option<i64>,
    /// mount point → options.
    pub tmpfs: BTreeMap<String, String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_option: Vec<String>,
    pub add_host: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub group_add: Vec<String>,
    pub devices: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    // Added after containers were created with this struct's hash (model::container):
    // left out of it when unset, so that those containers are not replaced.
    /// `--ipc`, `--pid`, `--uts`, `--userns`: a namespace mode (`host`, `private`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    /// `--hostname`: replaces the replica's name as the host name (Pacemaker passes the
    /// options after its own, so the user's wins there too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `--health-cmd` (run by a shell), `--no-healthcheck`, and the timings (nanoseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_cmd: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_healthcheck: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_start_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_retries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
}

/// Why a command line does not split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordsError {
    #[error("unterminated single quote")]
    SingleQuote,
    #[error("unterminated double quote")]
    DoubleQuote,
    #[error("trailing backslash")]
    TrailingBackslash,
}

/// Why a bundle's `options` cannot be used, naming the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error(transparent)]
    Words(#[from] WordsError),
    #[error("{0:?}: not a flag (the image and command are set by the bundle)")]
    NotAFlag(String),
    #[error("{flag}: not allowed: {why}")]
    NotAllowed { flag: String, why: &'static str },
    #[error("{flag}: {value:?} is not true or false")]
    NotBool { flag: String, value: String },
    #[error("{0}: not supported by berth")]
    Unsupported(String),
    #[error("{0}: needs a value")]
    NeedsValue(String),
    #[error("{flag} {value}: {why}")]
    BadValue {
        flag: String,
        value: String,
        why: &'static str,
    },
}

/// Splits a command line into words as a POSIX shell would: whitespace separates, single
/// quotes keep everything, double quotes keep everything but `\"` and `\\`, a backslash
/// outside quotes escapes the next character. No variables, globs or substitutions.
pub fn split_words(line: &str) -> Result<Vec<String>, WordsError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(WordsError::SingleQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(WordsError::DoubleQuote),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(WordsError::DoubleQuote),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(WordsError::TrailingBackslash),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Why a flag cannot be used, pointing at the bundle field that covers it.
fn refused(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "--restart" => "berth restarts containers itself (with backoff, counting failures)",
        "--name" => "berth names containers <bundle>-docker-<i>",
        "--env-file" => {
            "a file on the host running berth's command, not on the nodes: put the variables in -e/--env"
        }
        "--cidfile" => "a file on the host: berth records containers in etcd",
        "-p" | "--publish" | "-P" | "--publish-all" | "--expose" => {
            "use a port-mapping (spec.network.portMappings)"
        }
        "-v" | "--volume" | "--mount" | "--volumes-from" => {
            "use a storage-mapping (spec.storageMappings)"
        }
        "--net" | "--network" => "use the network attribute (spec.docker.network)",
        "--rm" => "berth removes containers itself when a replica leaves the node",
        "-d" | "--detach" | "-i" | "--interactive" | "-t" | "--tty" | "-a" | "--attach" => {
            "berth runs every container detached, without a terminal"
        }
        "--pull" => "pull the image on the host beforehand",
        _ => return None,
    })
}

/// The flags berth maps that take a value.
const VALUE_FLAGS: &[&str] = &[
    "-e",
    "--env",
    "-l",
    "--label",
    "--log-driver",
    "--log-opt",
    "--cap-add",
    "--cap-drop",
    "-m",
    "--memory",
    "--memory-swap",
    "--memory-reservation",
    "--cpus",
    "-c",
    "--cpu-shares",
    "--cpuset-cpus",
    "--pids-limit",
    "-u",
    "--user",
    "-w",
    "--workdir",
    "--entrypoint",
    "--ulimit",
    "--security-opt",
    "--shm-size",
    "--tmpfs",
    "--dns",
    "--dns-search",
    "--dns-option",
    "--dns-opt",
    "--add-host",
    "--sysctl",
    "--group-add",
    "--device",
    "--stop-signal",
    "--stop-timeout",
    "--ipc",
    "--pid",
    "--uts",
    "--userns",
    "-h",
    "--hostname",
    "--health-cmd",
    "--health-interval",
    "--health-timeout",
    "--health-start-period",
    "--health-retries",
    "--cpu-period",
    "--cpu-quota",
    "--oom-score-adj",
];

/// Parses a `docker run` flag string. The error names the flag and why.
pub fn parse(options: &str) -> Result<RunOptions, OptionError> {
    let words = split_words(options)?;
    let mut o = RunOptions::default();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let (flag, inline) = split_flag(word)?;
        if let Some(why) = refused(&flag) {
            return Err(OptionError::NotAllowed { flag, why });
        }
        if let Some(slot) = boolean_flag(&mut o, &flag) {
            *slot = boolean(&flag, inline.as_deref())?;
            continue;
        }
        if !VALUE_FLAGS.contains(&flag.as_str()) {
            return Err(OptionError::Unsupported(flag));
        }
        let value = match inline {
            Some(v) => v,
            None => words
                .next()
                .ok_or_else(|| OptionError::NeedsValue(flag.clone()))?,
        };
        let bad = |why: &'static str| OptionError::BadValue {
            flag: flag.clone(),
            value: value.clone(),
            why,
        };
        set(&mut o, &flag, value.clone(), &bad)?;
    }
    check_conflicts(&o)?;
    Ok(o)
}

/// A word as (flag, value given with it): `--flag=value`, `-eFOO=bar` (a short flag with its
/// value attached, split by characters: the flag's letter may be any character), or a flag.
fn split_flag(word: String) -> Result<(String, Option<String>), OptionError> {
    if !word.starts_with('-') || word == "-" {
        return Err(OptionError::NotAFlag(word));
    }
    Ok(match word.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ if !word.starts_with("--") && word.chars().count() > 2 => {
            let cut = word.char_indices().nth(2).map_or(word.len(), |(i, _)| i);
            (word[..cut].to_string(), Some(word[cut..].to_string()))
        }
        _ => (word, None),
    })
}

/// The field of a boolean flag (one that takes no value), or None.
fn boolean_flag<'o>(o: &'o mut RunOptions, flag: &str) -> Option<&'o mut bool> {
    Some(match flag {
        "--privileged" => &mut o.privileged,
        "--read-only" => &mut o.read_only,
        "--init" => &mut o.init,
        "--no-healthcheck" => &mut o.no_healthcheck,
        _ => return None,
    })
}

/// A boolean flag's value: none (true), or `--flag=true|false`.
fn boolean(flag: &str, inline: Option<&str>) -> Result<bool, OptionError> {
    match inline {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(OptionError::NotBool {
            flag: flag.to_string(),
            value: v.to_string(),
        }),
    }
}

/// Sets what a flag with a value sets; `bad` makes the error for its value.
fn set(
    o: &mut RunOptions,
    flag: &str,
    value: String,
    bad: &dyn Fn(&'static str) -> OptionError,
) -> Result<(), OptionError> {
    let int = |v: &str| v.parse::<i64>().map_err(|_| bad("not an integer"));
    match flag {
        "-e" | "--env" => o.env.push(value),
        "-l" | "--label" => {
            let (k, v) = value.split_once('=').unwrap_or((&value, ""));
            if k.starts_with("berth.io/") {
                return Err(bad("labels under berth.io/ are berth's own"));
            }
            o.labels.insert(k.to_string(), v.to_string());
        }
        "--log-driver" => o.log_driver = Some(value),
        "--log-opt" => {
            let (k, v) = key_value(&value, bad)?;
            o.log_opts.insert(k, v);
        }
        "--cap-add" => o.cap_add.push(value),
        "--cap-drop" => o.cap_drop.push(value),
        "--cpuset-cpus" => o.cpuset_cpus = Some(value),
        "-u" | "--user" => o.user = Some(value),
        "-w" | "--workdir" => o.workdir = Some(value),
        "--entrypoint" => o.entrypoint = Some(value),
        "--security-opt" => o.security_opt.push(value),
        "--tmpfs" => {
            let (path, opts) = value.split_once(':').unwrap_or((&value, ""));
            if !path.starts_with('/') {
                return Err(bad("the mount point must be absolute"));
            }
            o.tmpfs.insert(path.to_string(), opts.to_string());
        }
        "--dns" => o.dns.push(value),
        "--dns-search" => o.dns_search.push(value),
        "--dns-option" | "--dns-opt" => o.dns_option.push(value),
        "--add-host" => o.add_host.push(value),
        "--sysctl" => {
            let (k, v) = key_value(&value, bad)?;
            o.sysctls.insert(k, v);
        }
        "--group-add" => o.group_add.push(value),
        "--device" => o.devices.push(value),
        "--stop-signal" => o.stop_signal = Some(value),
        "--stop-timeout" => o.stop_timeout = Some(int(&value)?),
        "--ipc" | "--pid" | "--uts" | "--userns" => set_namespace(o, flag, value, bad)?,
        "-h" | "--hostname" => {
            if !is_host_name(&value) {
                return Err(bad("not a host name"));
            }
            o.hostname = Some(value);
        }
        "--health-cmd"
        | "--health-interval"
        | "--health-timeout"
        | "--health-start-period"
        | "--health-retries" => set_health(o, flag, value, bad)?,
        _ => set_resource(o, flag, &value, bad)?,
    }
    Ok(())
}

fn key_value(
    value: &str,
    bad: &dyn Fn(&'static str) -> OptionError,
) -> Result<(String, String), OptionError> {
    let (k, v) = value
        .split_once('=')
        .ok_or_else(|| bad("expected key=value"))?;
    Ok((k.to_string(), v.to_string()))
}

/// A host name as `--hostname` takes it: dot-separated labels of letters, digits and '-'.
fn is_host_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// `--ipc`, `--pid`, `--uts`, `--userns`: a namespace mode, never another container's.
fn set_namespace(
    o: &mut RunOptions,
    flag: &str,
    value: String,
    bad: &dyn Fn(&'static str) -> OptionError,
) -> Result<(), OptionError> {
    let (allowed, slot): (&[&str], _) = match flag {
        "--ipc" => (&["", "none", "private", "shareable", "host"], &mut o.ipc),
        "--pid" => (&["", "host"], &mut o.pid),
        "--uts" => (&["", "host"], &mut o.uts),
        _ => (&["", "host"], &mut o.userns),
    };
    if value.starts_with("container:") {
        return Err(bad(
            "another container's namespace: berth places each replica on its own, and names its containers itself",
        ));
    }
    if !allowed.contains(&value.as_str()) {
        return Err(bad("not a namespace mode Docker takes here"));
    }
    *slot = Some(value);
    Ok(())
}

/// The health check's command, timings (nanoseconds) and retries.
fn set_health(
    o: &mut RunOptions,
    flag: &str,
    value: String,
    bad: &dyn Fn(&'static str) -> OptionError,
) -> Result<(), OptionError> {
    if flag == "--health-cmd" {
        o.health_cmd = Some(value);
        return Ok(());
    }
    if flag == "--health-retries" {
        let n = value.parse().ok().filter(|n: &i64| *n >= 0);
        o.health_retries = Some(n.ok_or_else(|| bad("not a count"))?);
        return Ok(());
    }
    let d = crate::model::duration::parse_go(&value)
        .ok()
        .filter(|d| *d >= 0)
        .ok_or_else(|| bad("not a duration (like 30s, 1m30s)"))?;
    let nanos = i64::try_from(d).map_err(|_| bad("too long"))?;
    match flag {
        "--health-interval" => o.health_interval = Some(nanos),
        "--health-timeout" => o.health_timeout = Some(nanos),
        _ => o.health_start_period = Some(nanos),
    }
    Ok(())
}

/// Memory, CPU, process and OOM limits.
fn set_resource(
    o: &mut RunOptions,
    flag: &str,
    value: &str,
    bad: &dyn Fn(&'static str) -> OptionError,
) -> Result<(), OptionError> {
    let int = || value.parse::<i64>().map_err(|_| bad("not an integer"));
    let size = || parse_size(value).map_err(bad);
    match flag {
        "-m" | "--memory" => o.memory = Some(size()?),
        "--memory-swap" => o.memory_swap = Some(if value == "-1" { -1 } else { size()? }),
        "--memory-reservation" => o.memory_reservation = Some(size()?),
        "--shm-size" => o.shm_size = Some(size()?),
        "--cpus" => {
            let cpus: f64 = value.parse().map_err(|_| bad("not a number"))?;
            if !(cpus > 0.0 && cpus.is_finite()) {
                return Err(bad("must be above 0"));
            }
            o.nano_cpus = Some((cpus * 1e9).round() as i64);
        }
        "-c" | "--cpu-shares" => o.cpu_shares = Some(int()?),
        "--pids-limit" => o.pids_limit = Some(int()?),
        "--ulimit" => {
            let (name, limits) = value
                .split_once('=')
                .ok_or_else(|| bad("expected name=soft[:hard]"))?;
            let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
            let n = |s: &str| s.parse::<i64>().map_err(|_| bad("limits must be integers"));
            o.ulimits.insert(name.to_string(), (n(soft)?, n(hard)?));
        }
        "--cpu-period" => o.cpu_period = Some(int()?),
        "--cpu-quota" => o.cpu_quota = Some(int()?),
        "--oom-score-adj" => {
            let n = int()?;
            if !(-1000..=1000).contains(&n) {
                return Err(bad("must be between -1000 and 1000"));
            }
            o.oom_score_adj = Some(n)
        }
        _ => return Err(OptionError::Unsupported(flag.to_string())),
    }
    Ok(())
}

/// Flags Docker takes one at a time.
fn check_conflicts(o: &RunOptions) -> Result<(), OptionError> {
    if o.no_healthcheck && o.health_cmd.is_some() {
        return Err(OptionError::BadValue {
            flag: "--no-healthcheck".into(),
            value: "true".into(),
            why: "conflicts with --health-cmd",
        });
    }
    if o.nano_cpus.is_some() && (o.cpu_period.is_some() || o.cpu_quota.is_some()) {
        return Err(OptionError::BadValue {
            flag: "--cpus".into(),
            value: format!("{}", o.nano_cpus.unwrap_or_default() as f64 / 1e9),
            why: "conflicts with --cpu-period and --cpu-quota (Docker takes one or the other)",
        });
    }
    if o.hostname.is_some() && o.uts.as_deref() == Some("host") {
        return Err(OptionError::BadValue {
            flag: "--hostname".into(),
            value: o.hostname.clone().unwrap_or_default(),
            why: "conflicts with --uts host (the host's name is shared)",
        });
    }
    Ok(())
}

/// Docker's sizes: a number with an optional b, k, m or g suffix (powers of 1024).
pub fn parse_size(v: &str) -> Result<i64, &'static str> {
    let t = v.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|s| !s.is_empty()).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| "not a size (like 512m or 2g)")?;
    if n < 0.0 {
        return Err("a size cannot be negative");
    }
    Ok((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            split_words(r#"-e "A=b c" -e 'D=$e' x\ y"#).unwrap(),
            vec!["-e", "A=b c", "-e", "D=$e", "x y"]
        );
        assert!(split_words("'open").is_err());
    }

    #[test]
    fn flags_people_use() {
        let o = parse(
            "-e A=1 --env=B=2 --log-driver json-file --log-opt max-size=10m --cap-add NET_ADMIN \
             --cap-drop ALL -m 512m --cpus 1.5 --user 1000:1000 --ulimit nofile=1024:2048 \
             --privileged --security-opt no-new-privileges --shm-size 64m --tmpfs /run:size=1m",
        )
        .unwrap();
        assert_eq!(o.env, vec!["A=1", "B=2"]);
        assert_eq!(o.log_driver.as_deref(), Some("json-file"));
        assert_eq!(o.log_opts["max-size"], "10m");
        assert_eq!(o.cap_add, vec!["NET_ADMIN"]);
        assert_eq!(o.cap_drop, vec!["ALL"]);
        assert_eq!(o.memory, Some(512 << 20));
        assert_eq!(o.nano_cpus, Some(1_500_000_000));
        assert_eq!(o.user.as_deref(), Some("1000:1000"));
        assert_eq!(o.ulimits["nofile"], (1024, 2048));
        assert!(o.privileged);
        assert_eq!(o.security_opt, vec!["no-new-privileges"]);
        assert_eq!(o.shm_size, Some(64 << 20));
        assert_eq!(o.tmpfs["/run"], "size=1m");
    }

    #[test]
    fn flags_openstack_deployments_use() {
        let o = parse(
            "--ipc=host --privileged=true --user=root --log-driver=journald \
             -e KOLLA_CONFIG_STRATEGY=COPY_ALWAYS --pid host -h db-0 --health-cmd 'pg_isready' \
             --health-interval 1m30s --health-retries 3 --oom-score-adj -500",
        )
        .unwrap();
        assert_eq!(o.ipc.as_deref(), Some("host"));
        assert_eq!(o.pid.as_deref(), Some("host"));
        assert!(o.privileged);
        assert_eq!(o.hostname.as_deref(), Some("db-0"));
        assert_eq!(o.health_cmd.as_deref(), Some("pg_isready"));
        assert_eq!(o.health_interval, Some(90_000_000_000));
        assert_eq!(o.health_retries, Some(3));
        assert_eq!(o.oom_score_adj, Some(-500));
        for (opts, why) in [
            (
                "--env-file /etc/x.env",
                "--env-file: not allowed: a file on the host",
            ),
            ("--ipc container:db", "another container's namespace"),
            ("--ipc shared", "not a namespace mode"),
            ("--hostname a_b", "not a host name"),
            ("--health-interval soon", "not a duration"),
            (
                "--no-healthcheck --health-cmd true",
                "conflicts with --health-cmd",
            ),
            ("--cpus 1 --cpu-quota 50000", "conflicts with --cpu-period"),
            ("--uts host --hostname x", "conflicts with --uts host"),
            ("--oom-score-adj 5000", "between -1000 and 1000"),
        ] {
            let e = parse(opts).unwrap_err().to_string();
            assert!(e.contains(why), "{opts}: {e}");
        }
    }

    #[test]
    fn refused_and_unknown_flags_say_why() {
        for (opts, why) in [
            ("--restart always", "--restart: not allowed: berth restarts"),
            ("-p 80:80", "-p: not allowed: use a port-mapping"),
            ("-v /a:/b", "-v: not allowed: use a storage-mapping"),
            ("--network host", "--network: not allowed"),
            ("--frobnicate", "--frobnicate: not supported by berth"),
            (
                "-e A=1 --frobnicate",
                "--frobnicate: not supported by berth",
            ),
            ("-m lots", "-m lots: not a size"),
            ("-e", "-e: needs a value"),
            ("image-name", "not a flag"),
        ] {
            let e = parse(opts).unwrap_err();
            assert!(e.to_string().contains(why), "{opts}: {e}");
        }
    }
}
