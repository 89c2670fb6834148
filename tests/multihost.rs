//! The multi-host fault suite: two real Docker hosts (network namespaces, each with its own
//! dockerd) on one LAN with etcd on it, a controller, one node agent per host, and a
//! one-replica bundle at a LAN address. For each fault: the replica serves again from the
//! other host (seen from a client on the LAN), and at no sample (every 50 ms) is a live copy
//! on both hosts at once. Times and overlaps are printed for BENCHMARKS.md.

mod common;

use std::time::{Duration, Instant};

use common::hosts::{Lan, Sample, Signal};

const TTL: &str = "3s";

fn bundle_yaml(lan: &Lan) -> String {
    format!(
        "apiVersion: berth.io/v1alpha1
kind: Bundle
metadata:
  name: web
spec:
  docker:
    image: berth-test/httpd:1
    replicas: 1
    options: --stop-timeout 1
  network:
    ipRangeStart: {}
    hostNetmask: 24
    hostInterface: lan0
    portMappings:
      - id: http
        port: 8080
        internalPort: 80
",
        lan.address(100)
    )
}

/// A LAN of two hosts, agents on both (with `agent_flags`), a controller, and the bundle
/// serving; returns the host running it.
fn setup(agent_flags: &[&str]) -> (Lan, u32) {
    common::test_image();
    let mut lan = Lan::up(2, &["berth-test/httpd:1"]);
    let mut flags = vec!["--lease-ttl", TTL];
    flags.extend_from_slice(agent_flags);
    lan.start_agent(1, &flags);
    lan.start_agent(2, &flags);
    lan.start_controller("c1");
    let o = lan.berth(&["apply", "-f", "-"], Some(&bundle_yaml(&lan)));
    assert!(
        o.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ip = lan.address(100);
    let until = Instant::now() + Duration::from_secs(60);
    let host = loop {
        let on: Vec<u32> = (1..=2).filter(|&i| lan.live_on(i) > 0).collect();
        if on.len() == 1 && lan.serves(&ip, 8080, Duration::from_millis(300)) {
            break on[0];
        }
        assert!(
            Instant::now() < until,
            "the replica did not come up serving on one host: live {:?}\n{}\n{}",
            (1..=2).map(|i| lan.live_on(i)).collect::<Vec<_>>(),
            lan.agent_log(1),
            lan.agent_log(2)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (lan, host)
}

/// What a fault run measured.
#[derive(Debug)]
struct Outcome {
    /// From the fault to the first sample where the other host runs it and it serves.
    failover: Option<Duration>,
    /// The most live copies seen at once.
    most_copies: usize,
    samples: usize,
}

fn measure(samples: &[Sample], fault_at: Duration, other: u32) -> Outcome {
    let failover = samples
        .iter()
        .find(|s| s.at >= fault_at && s.live[other as usize - 1] > 0 && s.serving)
        .map(|s| s.at - fault_at);
    Outcome {
        failover,
        most_copies: samples.iter().map(Sample::copies).max().unwrap_or(0),
        samples: samples.len(),
    }
}

/// Injects `fault` on the host running the replica, samples until the other host serves it
/// and `settle` longer, and checks the replica moved with never two live copies.
fn failover(name: &str, agent_flags: &[&str], fault: impl FnOnce(&mut Lan, u32)) -> Lan {
    let (mut lan, from) = setup(agent_flags);
    let other = 3 - from;
    let ip = lan.address(100);
    let sampler = lan.sampler(&ip, 8080);
    std::thread::sleep(Duration::from_millis(300));
    let fault_at = sampler.now();
    fault(&mut lan, from);
    let until = Instant::now() + Duration::from_secs(40);
    while !(lan.live_on(other) > 0 && lan.serves(&ip, 8080, Duration::from_millis(300))) {
        assert!(
            Instant::now() < until,
            "{name}: the replica never served from host {other}\n{}\n{}",
            lan.agent_log(from),
            lan.agent_log(other)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Watch a while longer: a late second copy counts too.
    std::thread::sleep(Duration::from_secs(3));
    let samples = sampler.finish();
    let o = measure(&samples, fault_at, other);
    println!(
        "fault {name}: serving from the other host after {:?}; most live copies at once {} ({} samples)",
        o.failover, o.most_copies, o.samples
    );
    assert!(o.failover.is_some(), "{name}: no sample saw the failover");
    assert_eq!(
        o.most_copies,
        1,
        "{name}: two live copies at once: {:?}",
        samples
            .iter()
            .filter(|s| s.copies() > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    lan
}

#[test]
fn agent_killed_with_sigkill_its_watchdog_fences_before_the_replica_moves() {
    failover("agent kill -9", &[], |lan, h| {
        lan.stop_agent(h, Signal::Kill9)
    });
}

#[test]
fn agent_stopped_with_sigstop_is_fenced_and_stays_fenced_when_continued() {
    let mut moved_from = 0;
    let lan = failover("agent SIGSTOP", &[], |lan, h| {
        lan.stop_agent(h, Signal::Stop);
        moved_from = h;
    });
    // Continued: it finds its lease gone, kills the frozen copy and runs nothing.
    lan.continue_agent(moved_from);
    stays_only_on(
        &lan,
        3 - moved_from,
        6,
        "a continued agent's old copy came back to life",
    );
}

/// For `secs` (every 50 ms): the replica runs live on host `on` only.
fn stays_only_on(lan: &Lan, on: u32, secs: u64, what: &str) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        assert_eq!(lan.live_on(3 - on), 0, "{what}");
        assert_eq!(lan.live_on(on), 1, "{what}: not live on host {on}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn host_cut_off_from_etcd_is_fenced_and_rejoins_without_a_second_copy() {
    let mut cut = 0;
    let lan = failover("cut off from etcd", &[], |lan, h| {
        lan.cut(h);
        cut = h;
    });
    lan.heal(cut);
    // It registers again and runs nothing: the replica lives on the other host only.
    stays_only_on(&lan, 3 - cut, 8, "the healed host runs the replica again");
    assert!(
        lan.agent_log(cut).contains("registered anew"),
        "the healed agent did not register anew:\n{}",
        lan.agent_log(cut)
    );
}

#[test]
fn host_killed_its_replica_serves_from_the_other_host() {
    failover("host killed", &[], |lan, h| lan.kill_host(h));
}

#[test]
fn agent_drained_on_sigterm_its_replica_moves_without_overlap() {
    failover("agent drained (SIGTERM)", &[], |lan, h| {
        lan.stop_agent(h, Signal::Term)
    });
}

#[test]
fn agent_left_in_maintenance_keeps_its_replica_and_adopts_it_again() {
    kept_and_adopted(&["--on-stop", "maintenance"], Signal::Term);
}

/// A package upgrade (packaging/deb/prerm) stops the node agent with SIGUSR2, whatever its
/// `--on-stop`, and starts the new one: no replica restarts.
#[test]
fn agent_stopped_for_an_upgrade_keeps_its_replica_and_adopts_it_again() {
    kept_and_adopted(&[], Signal::Usr2);
}

/// The agent (started with `flags`) stopped with `how` leaves its replica running and
/// serving beyond its lease TTL; started again, it adopts the same container.
fn kept_and_adopted(flags: &[&str], how: Signal) {
    let (mut lan, from) = setup(flags);
    let id = lan
        .docker(
            from,
            &[
                "inspect",
                "-f",
                "{{.Id}} {{.State.StartedAt}}",
                "web-docker-0",
            ],
        )
        .unwrap();
    lan.stop_agent(from, how);
    // Longer than the lease TTL: the replica stays where it is, running and serving.
    stays_only_on(&lan, from, 6, "the replica moved or stopped in maintenance");
    assert!(lan.serves(&lan.address(100), 8080, Duration::from_millis(500)));
    let mut again = vec!["--lease-ttl", TTL];
    again.extend_from_slice(flags);
    lan.start_agent(from, &again);
    // Back: the same container is adopted, not replaced.
    let until = Instant::now() + Duration::from_secs(20);
    let store_rt = tokio::runtime::Runtime::new().unwrap();
    let store = store_rt.block_on(lan.store());
    loop {
        let key = store.keys().maintenance(&lan.node(from));
        if store_rt.block_on(store.get(&key)).unwrap().is_none() {
            break;
        }
        assert!(Instant::now() < until, "the node stayed in maintenance");
        std::thread::sleep(Duration::from_millis(100));
    }
    // For a while after the agent took over again: the same container, never another.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            lan.docker(
                from,
                &[
                    "inspect",
                    "-f",
                    "{{.Id}} {{.State.StartedAt}}",
                    "web-docker-0"
                ]
            )
            .as_ref(),
            Some(&id),
            "the container was replaced or restarted"
        );
        assert_eq!(lan.live_on(3 - from), 0);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dockerd_killed_the_replica_keeps_serving_where_it_is() {
    let (lan, from) = setup(&[]);
    let ip = lan.address(100);
    let sampler = lan.sampler(&ip, 8080);
    lan.kill_dockerd(from);
    std::thread::sleep(Duration::from_secs(8));
    let samples = sampler.finish();
    let down = samples.iter().filter(|s| !s.serving).count();
    println!(
        "fault dockerd killed: {down} of {} samples not serving; most live copies {}",
        samples.len(),
        samples.iter().map(Sample::copies).max().unwrap_or(0)
    );
    assert!(
        samples
            .iter()
            .all(|s| s.copies() == 1 && s.live[from as usize - 1] == 1)
    );
    assert_eq!(
        down, 0,
        "the replica stopped serving when only dockerd died"
    );
}

#[test]
fn leading_controller_killed_a_standby_leads_and_nothing_restarts() {
    let (mut lan, from) = setup(&[]);
    let id = lan
        .docker(from, &["inspect", "-f", "{{.Id}}", "web-docker-0"])
        .unwrap();
    lan.start_controller("c2");
    // c1 took the lead first (it placed the replica); it dies without resigning.
    lan.kill_controller(0);
    // A change only a leader can act on: a second replica, on the other host.
    let two = bundle_yaml(&lan).replace("replicas: 1", "replicas: 2");
    let o = lan.berth(&["apply", "-f", "-"], Some(&two));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let until = Instant::now() + Duration::from_secs(30);
    while lan.live_on(3 - from) == 0 {
        assert!(
            Instant::now() < until,
            "no standby controller placed the new replica"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        lan.docker(from, &["inspect", "-f", "{{.Id}}", "web-docker-0"]),
        Some(id),
        "the running replica was replaced when the leader changed"
    );
    assert_eq!(lan.live_on(from), 1);
}

/// Where each replica of `web` runs: (host, container id) for replica 0 and 1.
fn web_containers(lan: &Lan) -> Vec<(u32, String)> {
    (0..2)
        .map(|r| {
            let name = format!("web-docker-{r}");
            (1..=2)
                .find_map(|i| {
                    lan.docker(i, &["inspect", "-f", "{{.Id}}", &name])
                        .map(|id| (i, id))
                })
                .unwrap_or_else(|| panic!("{name} runs nowhere"))
        })
        .collect()
}

/// Every CLI call succeeds while a member is down (each is a fresh process, whose first
/// request goes to the first endpoint given).
fn cli_calls_succeed(lan: &Lan, what: &str) {
    for n in 0..10 {
        let args: &[&str] = if n % 2 == 0 {
            &["get", "bundles"]
        } else {
            &["status"]
        };
        let o = lan.berth(args, None);
        assert!(
            o.status.success(),
            "{what}: berth {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn wait_live_total(lan: &Lan, want: usize, what: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while (1..=2).map(|i| lan.live_on(i)).sum::<usize>() != want {
        assert!(
            Instant::now() < until,
            "{what}: never {want} live containers"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn etcd_members_lost_one_at_a_time_nothing_restarts_and_every_request_succeeds() {
    common::test_image();
    let mut lan = Lan::up_with_etcd(2, &["berth-test/httpd:1"], 3);
    // Riding out a leader election needs it to end before the fence: two thirds of the TTL
    // after the last renewal sent, which can be a quarter before the leader died. etcd's
    // elections take one to a few seconds (election timeout 1 s, randomised up to 2 s, then
    // a vote), so 8 s (5.3 s to the fence) rather than the 5 s default (see README).
    lan.start_agent(1, &["--lease-ttl", "8s"]);
    lan.start_agent(2, &["--lease-ttl", "8s"]);
    lan.start_controller("c1");
    let web = bundle_yaml(&lan).replace("replicas: 1", "replicas: 2");
    let o = lan.berth(&["apply", "-f", "-"], Some(&web));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (lan.address(100), lan.address(101));
    let until = Instant::now() + Duration::from_secs(60);
    while !(lan.live_on(1) == 1
        && lan.live_on(2) == 1
        && lan.serves(&a, 8080, Duration::from_millis(300))
        && lan.serves(&b, 8080, Duration::from_millis(300)))
    {
        assert!(Instant::now() < until, "web did not come up on both hosts");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = web_containers(&lan);
    let sampler = lan.sampler(&a, 8080);

    // The member every berth process tries first.
    lan.kill_etcd(0);
    cli_calls_succeed(&lan, "member 0 down");
    // Daemons still act: a new bundle is placed, started and reported.
    let other = bundle_yaml(&lan)
        .replace("name: web", "name: other")
        .replace(&lan.address(100), &lan.address(110));
    let o = lan.berth(
        &["apply", "-f", "-", "--wait", "--timeout", "30s"],
        Some(&other),
    );
    assert!(
        o.status.success(),
        "apply --wait with member 0 down: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    wait_live_total(&lan, 3, "member 0 down");
    lan.start_etcd(0);
    lan.wait_etcd_healthy();
    // The faults are independent: a lease TTL of quiet before the next one.
    std::thread::sleep(Duration::from_secs(8));

    // The leader: the cluster elects another while requests are in flight.
    let leader = lan.etcd_leader();
    lan.kill_etcd(leader);
    cli_calls_succeed(&lan, "leader down");
    let o = lan.berth(&["delete", "bundle", "other"], None);
    assert!(
        o.status.success(),
        "delete with the leader down: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    wait_live_total(&lan, 2, "leader down");
    lan.start_etcd(leader);
    lan.wait_etcd_healthy();
    // Longer than a lease TTL after the last fault.
    std::thread::sleep(Duration::from_secs(9));
    let samples = sampler.finish();

    let paused = samples
        .iter()
        .filter(|s| s.live.contains(&0) || !s.serving)
        .count();
    println!(
        "etcd members lost: {paused} of {} samples with a host's replicas not live or web \
         not serving",
        samples.len()
    );
    assert_eq!(
        paused,
        0,
        "a replica was fenced or stopped serving: {:?}",
        samples
            .iter()
            .filter(|s| s.live.contains(&0) || !s.serving)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(web_containers(&lan), before, "a web replica was replaced");
}

#[test]
fn a_full_disk_refuses_a_replica_there_with_the_reason_and_it_starts_once_freed() {
    common::test_image();
    let mut lan = Lan::up(2, &["berth-test/httpd:1"]);
    let disk = lan.disk(2);
    let flags = ["--lease-ttl", TTL, "--allow-source-dir", disk.as_str()];
    lan.start_agent(1, &flags);
    lan.start_controller("c1");
    // A per-replica directory under the disk, and no /etc/hosts copy: the address is the
    // first thing the agent must write down on the full disk.
    let web = bundle_yaml(&lan)
        .replace("    portMappings:", "    addHost: false\n    portMappings:")
        + &format!(
            "  storageMappings:\n    - id: data\n      sourceDirRoot: {disk}/src\n      targetDir: /data\n"
        );
    let o = lan.berth(&["apply", "-f", "-"], Some(&web));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ip = lan.address(100);
    let until = Instant::now() + Duration::from_secs(60);
    while !(lan.live_on(1) == 1 && lan.serves(&ip, 8080, Duration::from_millis(300))) {
        assert!(Instant::now() < until, "web did not come up on host 1");
        std::thread::sleep(Duration::from_millis(50));
    }
    lan.state_on_disk(2);
    lan.start_agent(2, &flags);
    let until = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&lan.berth(&["status"], None).stdout).contains(&lan.node(2)) {
        assert!(Instant::now() < until, "host 2's agent did not register");
        std::thread::sleep(Duration::from_millis(100));
    }
    lan.fill(2);
    let t0 = Instant::now();
    // The replica must move to host 2, whose agent cannot record the address it would add.
    lan.kill_host(1);
    let until = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let o = lan.berth(&["describe", "bundle", "web"], None);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if text.contains("No space left on device") {
            break text;
        }
        assert!(
            Instant::now() < until,
            "no replica reported the full disk:\n{text}\n{}",
            lan.agent_log(2)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "full disk: refused with the reason after {:?}",
        t0.elapsed()
    );
    assert!(reason.contains("cannot record"), "{reason}");
    let on_lan0 = std::process::Command::new("ip")
        .args(["-n", &lan.node(2), "-4", "addr", "show", "lan0"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&on_lan0.stdout).contains(&format!("{ip}/")),
        "the address was added without being recorded"
    );
    assert_eq!(lan.live_on(2), 0, "the replica started without its address");
    // Space again: it starts, serving, on host 2.
    lan.unfill(2);
    let t1 = Instant::now();
    let until = Instant::now() + Duration::from_secs(60);
    while !(lan.live_on(2) == 1 && lan.serves(&ip, 8080, Duration::from_millis(300))) {
        assert!(
            Instant::now() < until,
            "web did not start on host 2 once its disk had space\n{}",
            lan.agent_log(2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "full disk: serving on host 2 {:?} after space was freed",
        t1.elapsed()
    );
}

/// The generation label of each live `web` container on host `i`.
fn web_generations(lan: &Lan, i: u32) -> Vec<String> {
    lan.docker(
        i,
        &[
            "ps",
            "--filter",
            "label=berth.io/bundle=web",
            "--format",
            "{{.Label \"berth.io/generation\"}}",
        ],
    )
    .map(|out| out.lines().map(str::to_string).collect())
    .unwrap_or_default()
}

#[test]
fn a_bundle_changed_while_a_host_is_cut_off_converges_everywhere_after_healing() {
    common::test_image();
    let mut lan = Lan::up(2, &["berth-test/httpd:1"]);
    lan.start_agent(1, &["--lease-ttl", TTL]);
    lan.start_agent(2, &["--lease-ttl", TTL]);
    lan.start_controller("c1");
    let v1 = bundle_yaml(&lan).replace("replicas: 1", "replicas: 2");
    let o = lan.berth(&["apply", "-f", "-"], Some(&v1));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (lan.address(100), lan.address(101));
    let both_serve = |lan: &Lan| {
        lan.serves(&a, 8080, Duration::from_millis(300))
            && lan.serves(&b, 8080, Duration::from_millis(300))
    };
    let until = Instant::now() + Duration::from_secs(60);
    while !(lan.live_on(1) == 1 && lan.live_on(2) == 1 && both_serve(&lan)) {
        assert!(Instant::now() < until, "web did not come up on both hosts");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sampler = lan.sampler(&a, 8080);
    lan.cut(1);
    let until = Instant::now() + Duration::from_secs(20);
    while lan.live_on(1) != 0 {
        assert!(Instant::now() < until, "the cut-off host was not fenced");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A change that replaces every container (generation 2), made while host 1 is away.
    // Its replica cannot be placed meanwhile (one per host), which uses up the default
    // rollout budget (one unavailable): allowing two lets host 2's replica be replaced now.
    let v2 = v1.replace("--stop-timeout 1", "--stop-timeout 2")
        + "  metaAttributes:\n    - {name: berth-max-unavailable, value: \"2\"}\n";
    let o = lan.berth(&["apply", "-f", "-"], Some(&v2));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let until = Instant::now() + Duration::from_secs(30);
    while web_generations(&lan, 2) != ["2"] {
        assert!(
            Instant::now() < until,
            "host 2 did not take generation 2: {:?}",
            web_generations(&lan, 2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lan.heal(1);
    let until = Instant::now() + Duration::from_secs(40);
    while !(web_generations(&lan, 1) == ["2"]
        && web_generations(&lan, 2) == ["2"]
        && lan.live_on(1) == 1
        && both_serve(&lan))
    {
        assert!(
            Instant::now() < until,
            "not converged after healing: host 1 {:?}, host 2 {:?}\n{}",
            web_generations(&lan, 1),
            web_generations(&lan, 2),
            lan.agent_log(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let samples = sampler.finish();
    let most = samples
        .iter()
        .flat_map(|s| s.live.iter().copied())
        .max()
        .unwrap_or(0);
    assert_eq!(most, 1, "a host ran two copies at once");
}

#[test]
fn etcd_down_longer_than_the_lease_ttl_then_back_nothing_restarts() {
    // The outage: 8 s (over twice the 3 s TTL) unless BERTH_OUTAGE_SECS says otherwise
    // (scripts/bench-faults.sh measures longer ones).
    let outage = std::env::var("BERTH_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8u64);
    let (mut lan, from) = setup(&[]);
    let started = |lan: &Lan| {
        lan.docker(
            from,
            &[
                "inspect",
                "-f",
                "{{.Id}} {{.State.StartedAt}}",
                "web-docker-0",
            ],
        )
    };
    let before = started(&lan);
    let ip = lan.address(100);
    let sampler = lan.sampler(&ip, 8080);
    lan.kill_etcd(0);
    let down_at = sampler.now();
    // The fault lasts this long; nothing is being waited for.
    std::thread::sleep(Duration::from_secs(outage));
    lan.start_etcd(0);
    let up_at = sampler.now();
    let until = Instant::now() + Duration::from_secs(30);
    while !(lan.live_on(from) == 1 && lan.serves(&ip, 8080, Duration::from_millis(300))) {
        assert!(
            Instant::now() < until,
            "the replica did not come back after etcd did\n{}",
            lan.agent_log(from)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Seen by the loop above (the sampler may stop before its next sample).
    let back = sampler.now() - up_at;
    let samples = sampler.finish();
    let frozen: Vec<&Sample> = samples.iter().filter(|s| s.copies() == 0).collect();
    println!(
        "fault etcd down {outage} s: frozen for {:?} (from {:?} after etcd stopped); serving \
         again {back:?} after etcd started; most live copies {}",
        frozen.last().zip(frozen.first()).map(|(l, f)| l.at - f.at),
        frozen.first().map(|f| f.at - down_at),
        samples.iter().map(Sample::copies).max().unwrap_or(0)
    );
    assert_eq!(
        started(&lan),
        before,
        "the replica was restarted or replaced"
    );
    assert!(samples.iter().all(|s| s.copies() <= 1));
    assert_eq!(lan.live_on(3 - from), 0, "the replica moved");
}
