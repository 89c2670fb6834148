//! Table tests of the node agent's core: each row one situation, named for what it proves.

use super::*;
use crate::model::Bundle;
use crate::model::cluster::OpRecord;
use crate::model::container::{self, LABEL_BUNDLE, LABEL_REPLICA};
use crate::node::plan::Action;

const NODE: &str = "n1";

fn timing() -> Timing {
    Timing {
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(1000),
        stable_after: Duration::from_secs(10),
    }
}

fn key(i: u32) -> ReplicaKey {
    ReplicaKey {
        bundle: "web".into(),
        index: i,
    }
}

fn bundle() -> Bundle {
    serde_json::from_value(serde_json::json!({
        "apiVersion": crate::model::API_VERSION,
        "kind": crate::model::KIND,
        "metadata": {"name": "web"},
        "spec": {"docker": {"image": "busybox", "replicas": 2}},
    }))
    .unwrap()
}

fn desired(i: u32) -> DesiredContainer {
    container::desired(&bundle(), i, std::path::Path::new("/state"), None).unwrap()
}

fn want(replicas: &[u32]) -> Desired {
    replicas.iter().map(|&i| (key(i), Ok(desired(i)))).collect()
}

/// A container of replica `i` as the engine lists it, conforming to its desired spec.
fn listed(i: u32, id: &str, running: bool) -> Observed {
    Observed {
        id: id.into(),
        name: desired(i).name,
        labels: desired(i).labels(NODE),
        running,
    }
}

fn event(action: &str, id: &str, i: u32) -> EngineEvent {
    let mut attributes = BTreeMap::from([
        (LABEL_BUNDLE.to_string(), "web".to_string()),
        (LABEL_REPLICA.to_string(), i.to_string()),
    ]);
    if action == "die" {
        attributes.insert("exitCode".into(), "1".into());
    }
    EngineEvent {
        id: id.into(),
        action: action.into(),
        attributes,
    }
}

fn status(writes: &StatusWrites, k: &ReplicaKey) -> ReplicaStatus {
    let (_, bytes) = writes.puts.iter().find(|(p, _)| p == k).expect("written");
    serde_json::from_slice(bytes).unwrap()
}

/// The hold a replica's restart waits for, as the plan sees it: a stopped container of the
/// replica is started at once, or held until the returned instant.
fn hold_after(core: &mut Core, i: u32, now: Instant) -> Option<Instant> {
    let p = core.plan(&want(&[i]), &[listed(i, "c", false)], now);
    match p.actions.as_slice() {
        [Action::Start { .. }] => None,
        [] => p.wake_at,
        other => panic!("unexpected plan {other:?}"),
    }
}

#[test]
fn failures_in_a_row_back_off_exponentially_up_to_the_cap() {
    // (failures so far, expected restart delay after the next one)
    let rows = [
        (0, Duration::ZERO),
        (1, Duration::from_millis(100)),
        (2, Duration::from_millis(200)),
        (3, Duration::from_millis(400)),
        (4, Duration::from_millis(800)),
        (5, Duration::from_millis(1000)),
        (30, Duration::from_millis(1000)),
    ];
    for (before, delay) in rows {
        let mut core = Core::new(NODE, timing());
        let t0 = Instant::now();
        for _ in 0..before {
            core.engine_event(&event("die", "c", 0), None, t0, 1);
        }
        core.engine_event(&event("die", "c", 0), None, t0, 1);
        let hold = hold_after(&mut core, 0, t0);
        if delay.is_zero() {
            assert_eq!(hold, None, "after {before} failures: restarts at once");
        } else {
            assert_eq!(hold, Some(t0 + delay), "after {before} failures");
        }
    }
}

#[test]
fn a_container_that_ran_stable_after_starts_its_backoff_afresh() {
    let mut core = Core::new(NODE, timing());
    let t0 = Instant::now();
    for _ in 0..4 {
        core.engine_event(&event("die", "c", 0), None, t0, 1);
    }
    core.engine_event(&event("start", "c", 0), None, t0, 1);
    let later = t0 + Duration::from_secs(11);
    core.engine_event(&event("die", "c", 0), None, later, 2);
    assert_eq!(hold_after(&mut core, 0, later), None);
}

#[test]
fn the_die_of_a_container_the_agent_stops_is_no_failure() {
    let mut core = Core::new(NODE, timing());
    core.stopping("c");
    let ev = event("die", "c", 0);
    assert_eq!(core.failure_of(&ev), None);
    core.engine_event(&ev, None, Instant::now(), 1);
    let w = core.statuses(&want(&[0]), &BTreeMap::new(), &[], Instant::now(), 1);
    let st = status(&w, &key(0));
    assert!(st.fail_counts.is_empty() && st.last_failure.is_none());
}

/// A replica removed on purpose (its bundle stopped) while promoted is not reported
/// promoted any longer: created here again, it shows no promotion until its new remote agent
/// reports (galera would otherwise join a cluster that is gone instead of bootstrapping).
#[test]
fn a_container_stopped_on_purpose_leaves_no_role_behind() {
    let mut core = Core::new(NODE, timing());
    core.engine_event(&event("start", "c", 0), None, Instant::now(), 1);
    core.primitive(
        &key(0),
        PrimitiveState {
            state: Phase::Started,
            role: Some(Role::Promoted),
            ..Default::default()
        },
    );
    core.stopping("c");
    core.engine_event(&event("die", "c", 0), None, Instant::now(), 2);
    let w = core.statuses(&want(&[0]), &BTreeMap::new(), &[], Instant::now(), 2);
    let prim = status(&w, &key(0))
        .primitive
        .clone()
        .expect("the last report");
    assert_eq!((prim.state, prim.role), (Phase::Stopped, None));
}

#[test]
fn an_unexpected_die_counts_a_failure_on_this_node_with_the_exit_code() {
    let mut core = Core::new(NODE, timing());
    let ev = event("die", "0123456789abcdef", 0);
    assert_eq!(core.failure_of(&ev), Some(key(0)));
    core.engine_event(&ev, None, Instant::now(), 7);
    let w = core.statuses(&want(&[0]), &BTreeMap::new(), &[], Instant::now(), 7);
    let st = status(&w, &key(0));
    assert_eq!(st.fail_counts, BTreeMap::from([(NODE.to_string(), 1)]));
    let f = st.last_failure.unwrap();
    assert_eq!(f.reason, "container 0123456789ab exited with code 1");
    assert_eq!(f.time, 7);
}

#[test]
fn a_dead_primitive_is_stopped_without_a_role_and_its_failed_op_is_the_reason() {
    let left = PrimitiveState {
        state: Phase::Started,
        role: Some(Role::Promoted),
        wanted_role: Some(Role::Promoted),
        last: [OpRecord {
            action: crate::model::operation::Action::Monitor,
            interval_ms: 10_000,
            rc: 7,
            rc_name: "not running".into(),
            at: 1,
            took_ms: 3,
            output: "gone\nsecond line".into(),
        }]
        .into(),
        ..Default::default()
    };
    let mut core = Core::new(NODE, timing());
    core.engine_event(&event("die", "c", 0), Some(left), Instant::now(), 1);
    let w = core.statuses(&want(&[0]), &BTreeMap::new(), &[], Instant::now(), 1);
    let st = status(&w, &key(0));
    let p = st.primitive.unwrap();
    assert_eq!(
        (p.state, p.role, p.wanted_role),
        (Phase::Stopped, None, None)
    );
    assert_eq!(
        st.last_failure.unwrap().reason,
        "container c exited with code 1: monitor not running (7): gone"
    );
}

#[test]
fn start_outcomes() {
    // (name, outcome, restart, expected state, restart count, failures, held)
    let rows = [
        (
            "a start of a stopped container counts a restart",
            Started::Ok("c".into()),
            true,
            ReplicaState::Running,
            1,
            0,
            false,
        ),
        (
            "a first create counts no restart",
            Started::Ok("c".into()),
            false,
            ReplicaState::Running,
            0,
            0,
            false,
        ),
        (
            "a name still held is retried soon without counting a failure",
            Started::NameConflict("name in use".into()),
            false,
            ReplicaState::Failed,
            0,
            0,
            true,
        ),
        (
            "a failed create counts a failure",
            Started::Failed("no such image".into()),
            false,
            ReplicaState::Failed,
            0,
            1,
            false,
        ),
    ];
    for (name, outcome, restart, state, restarts, failures, held) in rows {
        let mut core = Core::new(NODE, timing());
        let now = Instant::now();
        let ok = matches!(outcome, Started::Ok(_));
        core.started(&key(0), outcome, restart, now, 1);
        let observed = if ok {
            core.observe(vec![listed(0, "c", false)])
        } else {
            Vec::new()
        };
        let w = core.statuses(&want(&[0]), &BTreeMap::new(), &observed, now, 1);
        let st = status(&w, &key(0));
        assert_eq!(st.state, state, "{name}");
        assert_eq!(st.restart_count, restarts, "{name}");
        assert_eq!(
            st.fail_counts.get(NODE).copied().unwrap_or(0),
            failures,
            "{name}"
        );
        assert_eq!(
            core.wake_at() == Some(now + Duration::from_millis(200)),
            held,
            "{name}"
        );
    }
}

#[test]
fn replica_states_from_the_container_and_memory() {
    let now = Instant::now();
    // (name, desired, listed, expected)
    type Row = (
        &'static str,
        Result<DesiredContainer, crate::node::core::Unrunnable>,
        Vec<Observed>,
        ReplicaState,
    );
    let rows: Vec<Row> = vec![
        (
            "a replica that cannot run is failed",
            Err(Unrunnable::Refused("not permitted".into())),
            vec![listed(0, "c", true)],
            ReplicaState::Failed,
        ),
        (
            "a running conforming container is running",
            Ok(desired(0)),
            vec![listed(0, "c", true)],
            ReplicaState::Running,
        ),
        (
            "a created, not running one is starting",
            Ok(desired(0)),
            vec![listed(0, "c", false)],
            ReplicaState::Starting,
        ),
        (
            "no container yet is pending",
            Ok(desired(0)),
            vec![],
            ReplicaState::Pending,
        ),
        (
            "another replica's container does not count",
            Ok(desired(0)),
            vec![listed(1, "other", true)],
            ReplicaState::Pending,
        ),
    ];
    for (name, d, observed, expected) in rows {
        let mut core = Core::new(NODE, timing());
        let desired = BTreeMap::from([(key(0), d)]);
        let w = core.statuses(&desired, &BTreeMap::new(), &observed, now, 1);
        assert_eq!(status(&w, &key(0)).state, expected, "{name}");
    }
}

#[test]
fn a_refused_replica_records_why_once() {
    let mut core = Core::new(NODE, timing());
    let desired = BTreeMap::from([(key(0), Err(Unrunnable::Refused("not permitted".into())))]);
    let w = core.statuses(&desired, &BTreeMap::new(), &[], Instant::now(), 5);
    assert_eq!(
        status(&w, &key(0)).last_failure,
        Some(Failure {
            reason: "not permitted".into(),
            time: 5
        })
    );
    core.wrote(w.puts);
    let again = core.statuses(&desired, &BTreeMap::new(), &[], Instant::now(), 9);
    assert!(
        again.puts.is_empty(),
        "the same reason is not a new failure"
    );
}

#[test]
fn only_changed_statuses_are_written_and_a_replica_that_left_is_deleted_by_its_bytes() {
    let mut core = Core::new(NODE, timing());
    let now = Instant::now();
    let w = core.statuses(&want(&[0, 1]), &BTreeMap::new(), &[], now, 1);
    assert_eq!(w.puts.len(), 2);
    let one = w.puts[1].1.clone();
    core.wrote(w.puts);
    let same = core.statuses(&want(&[0, 1]), &BTreeMap::new(), &[], now, 1);
    assert_eq!(same, StatusWrites::default());
    let left = core.statuses(&want(&[0]), &BTreeMap::new(), &[], now, 1);
    assert!(left.puts.is_empty());
    assert_eq!(left.gone, vec![(key(1), one)]);
}

#[test]
fn seeding_keeps_failures_from_every_node_and_restarts_only_from_this_one() {
    let stored = |node: &str| {
        serde_json::to_vec(&ReplicaStatus {
            bundle: "web".into(),
            index: 0,
            node: node.into(),
            restart_count: 4,
            fail_counts: BTreeMap::from([("other".to_string(), 2)]),
            ..Default::default()
        })
        .unwrap()
    };
    // (name, stored status, restart count kept, other node's failures kept)
    let rows = [
        ("written by this node", Some(stored(NODE)), 4, true),
        (
            "moved here from another node",
            Some(stored("other")),
            0,
            true,
        ),
        ("never written", None, 0, false),
        ("unreadable", Some(b"{".to_vec()), 0, false),
    ];
    for (name, bytes, restarts, failures) in rows {
        let mut core = Core::new(NODE, timing());
        assert_eq!(core.unseeded(&want(&[0])), vec![key(0)], "{name}");
        core.seed(&key(0), bytes.as_deref());
        assert!(core.unseeded(&want(&[0])).is_empty(), "{name}: read once");
        let w = core.statuses(&want(&[0]), &BTreeMap::new(), &[], Instant::now(), 1);
        let st = status(&w, &key(0));
        assert_eq!(st.restart_count, restarts, "{name}");
        assert_eq!(st.fail_counts.get("other") == Some(&2), failures, "{name}");
    }
}

#[test]
fn a_die_event_wins_over_a_stale_container_list() {
    let mut core = Core::new(NODE, timing());
    core.stopping("c");
    core.engine_event(&event("die", "c", 0), None, Instant::now(), 1);
    core.engine_event(&event("die", "gone", 1), None, Instant::now(), 1);
    let seen = core.observe(vec![listed(0, "c", true), listed(1, "d", true)]);
    assert!(!seen[0].running, "the die event wins");
    assert!(seen[1].running, "no event: the list stands");
    // The event of an unlisted container is forgotten: a new list stands for it.
    let again = core.observe(vec![listed(1, "gone", true)]);
    assert!(again[0].running);
}

#[test]
fn roles_are_asked_for_started_replicas_not_in_or_asked_for_that_role() {
    let prim = |state, role, wanted| PrimitiveState {
        state,
        role,
        wanted_role: wanted,
        ..Default::default()
    };
    let p = Some(Role::Promoted);
    let u = Some(Role::Unpromoted);
    // (name, reported primitive, role it must run in, asked)
    let rows = [
        (
            "unpromoted, must promote",
            Some(prim(Phase::Started, u, None)),
            Role::Promoted,
            true,
        ),
        (
            "already promoted",
            Some(prim(Phase::Started, p, None)),
            Role::Promoted,
            false,
        ),
        (
            "promotion asked already",
            Some(prim(Phase::Started, u, p)),
            Role::Promoted,
            false,
        ),
        (
            "promoted, must demote",
            Some(prim(Phase::Started, p, None)),
            Role::Unpromoted,
            true,
        ),
        (
            "not started yet",
            Some(prim(Phase::Starting, None, None)),
            Role::Promoted,
            false,
        ),
        ("no report yet", None, Role::Promoted, false),
    ];
    for (name, reported, role, asked) in rows {
        let mut core = Core::new(NODE, timing());
        core.seed(&key(0), None);
        core.statuses(&want(&[0]), &BTreeMap::new(), &[], Instant::now(), 1);
        if let Some(st) = reported {
            core.primitive(&key(0), st);
        }
        let roles = BTreeMap::from([(key(0), role)]);
        let expect = if asked { vec![(key(0), role)] } else { vec![] };
        assert_eq!(core.roles_to_ask(&roles), expect, "{name}");
    }
}

#[test]
fn successful_recurring_monitors_are_not_news_and_a_failed_one_is() {
    let op = |action: &str, interval_ms, rc, at| OpRecord {
        action: crate::model::operation::Action::parse(action).unwrap(),
        interval_ms,
        rc,
        rc_name: String::new(),
        at,
        took_ms: 3,
        output: String::new(),
    };
    let report = |version, last: Vec<OpRecord>| PrimitiveState {
        version,
        state: Phase::Started,
        last: last.into(),
        ..Default::default()
    };
    let mut core = Core::new(NODE, timing());
    let now = Instant::now();
    let observed = [listed(0, "c0", true)];
    let started = vec![op("start", 0, 0, 1)];
    core.runtime.entry(key(0)).or_default();
    core.primitive(&key(0), report(1, started.clone()));
    let w = core.statuses(&want(&[0]), &BTreeMap::new(), &observed, now, 1);
    assert_eq!(w.puts.len(), 1);
    core.wrote(w.puts);
    // Monitors every 10 s, all fine, each report a new version: nothing to write.
    let mut last = started.clone();
    for (v, at) in [(2, 11), (3, 21), (4, 31)] {
        last.push(op("monitor", 10_000, 0, at));
        core.primitive(&key(0), report(v, last.clone()));
        let w = core.statuses(&want(&[0]), &BTreeMap::new(), &observed, now, at);
        assert!(w.puts.is_empty(), "a successful monitor was written");
    }
    // The start record falls out of the bounded history: no news either.
    last.remove(0);
    core.primitive(&key(0), report(5, last.clone()));
    let w = core.statuses(&want(&[0]), &BTreeMap::new(), &observed, now, 35);
    assert!(w.puts.is_empty(), "an evicted success was written");
    // A failed monitor is news.
    last.push(op("monitor", 10_000, 7, 41));
    core.primitive(&key(0), report(6, last.clone()));
    let w = core.statuses(&want(&[0]), &BTreeMap::new(), &observed, now, 41);
    let written = status(&w, &key(0));
    let ops = &written.primitive.expect("primitive").last;
    assert_eq!(ops.len(), 4, "the write carries the monitors it skipped");
}

/// Issue 31, item 10: a name held by a container this node does not own stays taken; each
/// refused create in a row waits twice as long (up to the longest backoff), and the replica's
/// status says why once (the same bytes are not written again).
#[test]
fn a_name_held_by_another_container_is_retried_with_a_growing_backoff() {
    let mut core = Core::new(NODE, timing());
    let mut now = Instant::now();
    let mut holds = Vec::new();
    let mut writes = 0;
    for _ in 0..6 {
        core.started(
            &key(0),
            Started::NameConflict("create x: 409 name in use".into()),
            false,
            now,
            1,
        );
        core.plan(&want(&[0]), &[], now);
        let hold = core.wake_at().unwrap() - now;
        holds.push(hold.as_millis());
        let w = core.statuses(&want(&[0]), &BTreeMap::new(), &[], now, 1);
        writes += w.puts.len();
        if let Some((_, bytes)) = w.puts.first() {
            let st: ReplicaStatus = serde_json::from_slice(bytes).unwrap();
            assert_eq!(st.state, ReplicaState::Failed);
            assert!(
                st.fail_counts.is_empty(),
                "not the replica's failure: {st:?}"
            );
        }
        core.wrote(w.puts);
        now += hold;
    }
    assert_eq!(holds, [200, 400, 800, 1000, 1000, 1000]);
    // Failed at once; the reason from the third conflict in a row on (the first may be a
    // copy on its way out), and not again.
    assert_eq!(writes, 2, "the status says it once");
    let st: ReplicaStatus = serde_json::from_slice(&core.written[&key(0)].bytes).unwrap();
    assert!(
        st.last_failure
            .as_ref()
            .is_some_and(|f| f.reason.contains("does not own")),
        "{st:?}"
    );
    assert_eq!(core.conflicts(&key(0)), 6);
    core.started(&key(0), Started::Ok("c".into()), false, now, 1);
    assert_eq!(core.conflicts(&key(0)), 0);
}

// The pass as step → ready → advance: what the shell is asked to do, stage by stage.

fn at(unix: u64) -> At {
    At {
        now: Instant::now(),
        unix,
    }
}

fn reconcile(core: &mut Core, replicas: &[u32]) {
    let wanted = Wanted {
        containers: want(replicas),
        ..Default::default()
    };
    let pass = Input::Reconcile {
        wanted: Arc::new(wanted),
        host_refused: false,
    };
    core.step(pass, at(1));
}

fn written(fx: &Effects, k: &ReplicaKey) -> ReplicaStatus {
    let (_, bytes) = fx.puts.iter().find(|(p, _)| p == k).expect("written");
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn a_pass_reads_back_lists_acts_lists_again_then_writes_and_ends() {
    let mut core = Core::new(NODE, timing());
    reconcile(&mut core, &[0]);
    let fx = core.ready(at(1));
    assert_eq!((fx.read, fx.list, fx.done), (vec![key(0)], None, false));
    core.step(Input::Stored(vec![(key(0), None)]), at(1));
    let fx = core.ready(at(1));
    assert_eq!(fx.list, Some(Listing::ToPlan));
    core.step(Input::Listed(vec![]), at(1));
    let fx = core.ready(at(1));
    assert_eq!(fx.engine, vec![Action::Create(key(0))]);
    let started = vec![(key(0), Started::Ok("c0".into()), false)];
    let results = Results {
        started,
        wrote: false,
    };
    core.advance(results, at(2));
    let fx = core.ready(at(2));
    assert_eq!(fx.list, Some(Listing::AfterActing));
    assert!(fx.engine.is_empty() && !fx.done);
    core.step(Input::Listed(vec![listed(0, "c0", true)]), at(2));
    let fx = core.ready(at(2));
    assert!(fx.done);
    let st = written(&fx, &key(0));
    assert_eq!(
        (st.state, st.container_id.as_str()),
        (ReplicaState::Running, "c0")
    );
    assert_eq!(st.started_at, 2);
    core.advance(
        Results {
            wrote: true,
            ..Default::default()
        },
        at(2),
    );
    let fx = core.ready(at(2));
    assert!(fx.done && fx.puts.is_empty() && fx.list.is_none() && fx.engine.is_empty());
    // The next pass: read back no more, and nothing to write while nothing changed.
    reconcile(&mut core, &[0]);
    assert_eq!(core.ready(at(3)).list, Some(Listing::ToPlan));
    core.step(Input::Listed(vec![listed(0, "c0", true)]), at(3));
    assert!(core.ready(at(3)).engine.is_empty());
    core.step(Input::Listed(vec![listed(0, "c0", true)]), at(3));
    let fx = core.ready(at(3));
    assert!(fx.done && fx.puts.is_empty());
}

#[test]
fn a_failed_first_list_ends_the_pass_and_comes_back_in_a_second() {
    let mut core = Core::new(NODE, timing());
    reconcile(&mut core, &[]);
    assert_eq!(core.ready(at(1)).list, Some(Listing::ToPlan));
    let t = Instant::now();
    core.step(Input::ListFailed, At { now: t, unix: 1 });
    assert_eq!(core.wake_at(), Some(t + Duration::from_secs(1)));
    let fx = core.ready(at(1));
    assert!(fx.done && fx.engine.is_empty() && fx.puts.is_empty());
}

#[test]
fn a_failed_second_list_writes_nothing_but_still_signals() {
    let mut core = Core::new(NODE, timing());
    reconcile(&mut core, &[0]);
    core.step(Input::Stored(vec![(key(0), None)]), at(1));
    core.ready(at(1));
    core.step(Input::Listed(vec![listed(0, "c0", true)]), at(1));
    assert!(core.ready(at(1)).engine.is_empty());
    core.step(
        Input::Primitive(
            key(0),
            PrimitiveState {
                state: Phase::Started,
                role: Some(Role::Unpromoted),
                ..Default::default()
            },
        ),
        at(1),
    );
    let wanted = Wanted {
        containers: want(&[0]),
        roles: BTreeMap::from([(key(0), Role::Promoted)]),
        ..Default::default()
    };
    let pass = Input::Reconcile {
        wanted: Arc::new(wanted),
        host_refused: false,
    };
    core.step(pass, at(1));
    assert_eq!(core.ready(at(1)).list, Some(Listing::ToPlan));
    core.step(Input::Listed(vec![listed(0, "c0", true)]), at(1));
    assert!(core.ready(at(1)).engine.is_empty());
    core.step(Input::ListFailed, at(1));
    let fx = core.ready(at(1));
    assert!(fx.done && fx.puts.is_empty());
    assert_eq!(fx.roles, vec![(key(0), Role::Promoted)]);
}

#[test]
fn a_removal_handed_out_is_the_agents_own_stop_not_a_failure() {
    let mut core = Core::new(NODE, timing());
    reconcile(&mut core, &[]);
    core.ready(at(1));
    core.step(Input::Listed(vec![listed(0, "old", true)]), at(1));
    let fx = core.ready(at(1));
    assert!(matches!(fx.engine.as_slice(), [Action::Remove { id, .. }] if id == "old"));
    assert_eq!(core.failure_of(&event("die", "old", 0)), None);
}

#[test]
fn statuses_not_confirmed_written_are_handed_out_again() {
    let mut core = Core::new(NODE, timing());
    let report = |core: &mut Core| {
        let wanted = Wanted {
            containers: want(&[0]),
            ..Default::default()
        };
        core.step(Input::Report(Arc::new(wanted)), at(1));
        core.ready(at(1))
    };
    let first = report(&mut core);
    assert_eq!(first.puts.len(), 1);
    core.advance(Results::default(), at(1));
    let again = report(&mut core);
    assert_eq!(again.puts, first.puts);
    core.advance(
        Results {
            wrote: true,
            ..Default::default()
        },
        at(1),
    );
    assert!(report(&mut core).puts.is_empty());
}

#[test]
fn a_host_refusal_brings_the_next_pass_soon() {
    let mut core = Core::new(NODE, timing());
    let pass = Input::Reconcile {
        wanted: Arc::new(Wanted::default()),
        host_refused: true,
    };
    core.step(pass, at(1));
    core.ready(at(1));
    core.step(Input::Listed(vec![]), at(1));
    let t = Instant::now();
    core.ready(At { now: t, unix: 1 });
    assert_eq!(core.wake_at(), Some(t + Duration::from_secs(2)));
}

#[test]
fn a_cleanup_forgets_the_failures_read_back_in_the_same_pass() {
    let mut core = Core::new(NODE, timing());
    let stored = ReplicaStatus {
        bundle: "web".into(),
        index: 0,
        node: NODE.into(),
        fail_counts: BTreeMap::from([(NODE.to_string(), 3)]),
        last_failure: Some(Failure {
            reason: "exited".into(),
            time: 5,
        }),
        ..Default::default()
    };
    let wanted = Wanted {
        containers: want(&[0]),
        cleanups: BTreeMap::from([(key(0), 10)]),
        ..Default::default()
    };
    let pass = Input::Reconcile {
        wanted: Arc::new(wanted),
        host_refused: false,
    };
    core.step(pass, at(11));
    assert_eq!(core.ready(at(11)).read, vec![key(0)]);
    let bytes = serde_json::to_vec(&stored).unwrap();
    core.step(Input::Stored(vec![(key(0), Some(bytes))]), at(11));
    core.ready(at(11));
    core.step(Input::Listed(vec![listed(0, "c0", true)]), at(11));
    core.ready(at(11));
    core.step(Input::Listed(vec![listed(0, "c0", true)]), at(11));
    let st = written(&core.ready(at(11)), &key(0));
    assert!(st.fail_counts.is_empty() && st.last_failure.is_none());
}

#[test]
fn running_counts_the_list_as_newer_events_correct_it() {
    let mut core = Core::new(NODE, timing());
    core.step(
        Input::Event {
            event: event("die", "c0", 0),
            left: None,
        },
        at(1),
    );
    core.step(
        Input::Listed(vec![listed(0, "c0", true), listed(1, "c1", true)]),
        at(1),
    );
    assert_eq!(core.running(), 1, "c0's die wins over the lagging list");
}
