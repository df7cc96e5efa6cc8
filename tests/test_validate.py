"""Time scales that keep the model's outcome: the check against the nominal prediction, and `auto` climbing.

Simulator only: no real run. The profile is fixed (this project's reference machine, rounded) so the scales
and outcomes do not depend on where the tests run.
"""

from __future__ import annotations

import pytest

import asyncsim as a
from asyncsim.profile import LoopProfile, MachineProfile
from asyncsim.scenario import build_scenario
from asyncsim.sim import run_scenario
from asyncsim.validate import Outcome, ScaleCheck, check_scale, choose_time_scale, replay_machine

PROFILE = MachineProfile(
    cpu_rate=4e7, loops={"asyncio": LoopProfile(loop_step_s=9e-6, sleep_overshoot_s=2.3e-4, task_create_s=7e-6,
                                                timer_floor_s=1.15e-3, timer_granularity_s=1e-3)},
    thread_sleep_overshoot_s=1.6e-4, thread_switch_s=1.5e-5, process_dispatch_s=2e-4)

TPM_BINDS = "service llm tpm (server)"


def llm_batch(*, tasks: int = 300, tpm: float = 100_000) -> a.Workload:
    """models/llm_batch.yaml, smaller, under asyncio:5 with a 5-second token bucket just below what 5 calls in
    flight ask for: at scale 1 the TPM limit binds and answers 429s (tasks fail after 3); an overhead of a
    third of a call slows the calls enough that it never does."""
    return a.Workload.from_dict({
        "name": "llm-small", "arrivals": {"batch": tasks}, "task": [{"cpu": 0.002}, {"call": "llm"}],
        "services": {"llm": {
            "ttft": {"lognormal": {"mean": 0.4, "cv": 0.5}}, "tpot": 0.02,
            "tokens": {"input": {"lognormal": {"mean": 800, "cv": 0.3}},
                       "output": {"lognormal": {"mean": 150, "cv": 0.6}}, "max_tokens": 512},
            "rate_limit": {"tpm": tpm, "count_max_tokens": True, "window": 5},
            "retry": {"max_retries": 2}}},
        "strategy": "asyncio:5"})


def test_auto_time_scale_rises_until_the_429s_and_the_binding_limit_hold():
    w = llm_batch()
    choice = choose_time_scale(w, [w.strategy], PROFILE)
    # the timers alone allow 3 × 1.23 ms (floor 1 ms granularity + 0.23 ms overshoot) / 3.38 s mean call
    assert choice.start == pytest.approx(0.0011)
    first = choice.rejected[0]
    assert first.time_scale == choice.start
    # there the timers add up to 1.1 s to every 3.4 s call (the loop's select() rounds up to 0.9 s, counted from
    # when it went idle, then 0.2 s late): the bucket hardly empties, and no task fails
    assert first.nominal.failed > 0
    assert first.scaled.failed == 0
    assert first.scaled.rate_limited < 0.1 * first.nominal.rate_limited
    assert (first.nominal.binding, first.scaled.binding) == (TPM_BINDS, "concurrency (asyncio:5)")
    assert choice.start < choice.time_scale < 1
    assert choice.matches
    (kept,) = choice.checks
    assert kept.time_scale == choice.time_scale
    assert kept.scaled.binding == TPM_BINDS
    assert abs(kept.scaled.failed - kept.nominal.failed) <= max(1, 0.05 * kept.nominal.failed)
    reason = choice.reason()
    assert reason.startswith(f"time scale {choice.time_scale:g}: the smallest at which the prediction keeps")
    assert f"{choice.start:g}: failed 0 vs {first.nominal.failed}, 429s {first.scaled.rate_limited} vs" in reason
    assert f"binding limit concurrency (asyncio:5) vs {TPM_BINDS}" in reason
    assert choice.to_dict()["rejected"][0]["scaled"]["failed"] == 0


def test_auto_time_scale_stops_at_the_timers_when_the_outcome_holds():
    w = llm_batch(tpm=1e7)  # the limit never binds: nothing for overheads to change
    choice = choose_time_scale(w, [w.strategy], PROFILE)
    assert choice.time_scale == choice.start
    assert choice.rejected == ()
    assert "the smallest this machine's timers allow (1.23 ms per timed wait ≤ 1/3 of the shortest mean wait, " \
           "task[1].call: 3.38 s), and it keeps" in choice.reason()


def test_a_scale_forced_above_1_is_kept_and_said_to_change_the_outcome():
    # 1 ms calls: the timers force a scale above 1, where each wait still carries a third of a call more than
    # on sockets; 10 calls in flight then ask for fewer requests than the 6,667/s limit lets through
    w = a.Workload.from_dict({
        "name": "fast", "arrivals": {"batch": 300}, "task": [{"call": "api"}],
        "services": {"api": {"latency": 0.001, "rate_limit": {"rpm": 400_000, "window": 0.01},
                             "retry": {"max_retries": 1, "initial": 0.001}}},
        "strategy": "asyncio:10"})
    choice = choose_time_scale(w, [w.strategy], PROFILE)
    assert choice.time_scale == choice.start == pytest.approx(3.7)
    assert choice.rejected == ()
    assert not choice.matches
    (check,) = choice.checks
    assert check.nominal.failed > check.scaled.failed
    assert "3.7: the smallest this machine's timers allow (1.23 ms per timed wait" in choice.reason()
    assert f"but it changes the nominal outcome, at 3.7 vs nominal: asyncio:10: failed {check.scaled.failed} " \
           f"vs {check.nominal.failed}" in choice.reason()


def test_a_distorting_explicit_scale_is_reported():
    w = llm_batch()
    sc = a.build_scenario(w, strategy=w.strategy)
    check = check_scale(sc, PROFILE, 0.0011)
    assert not check.matches
    warning = check.warning()
    assert warning is not None
    assert warning.startswith("time scale 0.0011 changes asyncio:5's outcome from the nominal prediction (scale 1, "
                              f"waits on sockets): failed 0 vs {check.nominal.failed}")
    data = check.to_dict()
    assert data["matches"] is False
    assert data["nominal_time_scale"] == 1.0
    assert data["differences"][0] == f"failed 0 vs {check.nominal.failed}"
    kept = check_scale(sc, PROFILE, 0.5)
    assert kept.matches
    assert kept.warning() is None


@pytest.mark.parametrize(("scaled", "nominal", "differs"), [
    (0, 0, False), (1, 0, False), (2, 0, True),          # a count within 1 of the nominal matches...
    (95, 100, False), (94, 100, True), (105, 100, False),  # ...or within 5% of it
])
def test_counts_match_within_one_or_five_percent(scaled, nominal, differs):
    ref = Outcome(nominal, nominal, nominal, "cpu")
    assert bool(Outcome(scaled, nominal, nominal, "cpu").differences(ref)) is differs
    assert bool(Outcome(nominal, scaled, nominal, "cpu").differences(ref)) is differs


def test_binding_limits_tied_at_both_scales_match():
    nominal = Outcome(0, None, None, "arrivals", ("arrivals", "service model (batching)"))
    tied = Outcome(0, None, None, "service model (batching)", ("service model (batching)", "arrivals"))
    moved = Outcome(0, None, None, "cpu", ("cpu", "arrivals"))
    assert tied.differences(nominal) == []
    assert moved.differences(nominal) == ["binding limit cpu vs arrivals"]
    assert ScaleCheck("asyncio", 0.1, nominal, moved).summary() == "failed 0 vs 0, binding limit cpu"


def test_a_profile_gives_an_offload_its_two_legs_and_a_blocking_caller_its_round_trip():
    legs = PROFILE.model_copy(update={"process_submit_s": 2.5e-4, "process_return_s": 2e-4})
    offload = legs.machine_for(a.parse_strategy("asyncio:4+processes:2"), a.Machine(), time_scale=0.5)
    assert (offload.process_dispatch_s, offload.process_return_s) == pytest.approx((5e-4, 4e-4))
    blocking = legs.machine_for(a.parse_strategy("processes:2"), a.Machine())
    assert (blocking.process_dispatch_s, blocking.process_return_s) == (2e-4, 0.0)
    # a profile made before the legs were measured: the whole round trip before the job, as before
    old = PROFILE.machine_for(a.parse_strategy("asyncio:4+processes:2"), a.Machine())
    assert (old.process_dispatch_s, old.process_return_s) == (2e-4, 0.0)


def test_a_profile_gives_an_event_loops_thread_executor_its_workers_turnaround():
    legs = {"thread_turnaround_s": 2e-5, "thread_submit_s": 7e-6, "thread_return_s": 5e-6, "loop_race_idle_s": 3e-3,
            "loop_wake_s": 6e-5}
    measured = PROFILE.model_copy(update=legs)
    offload = measured.machine_for(a.parse_strategy("asyncio:4+threads:2"), a.Machine(), time_scale=0.5)
    assert [getattr(offload, k) for k in legs] == pytest.approx([4e-5, 1.4e-5, 1e-5, 6e-3, 1.2e-4])
    for other in ("threads:4", "asyncio:4", "asyncio:4+processes:2"):
        machine = measured.machine_for(a.parse_strategy(other), a.Machine())
        assert [getattr(machine, k) for k in legs] == [0.0] * 5
    old = PROFILE.machine_for(a.parse_strategy("asyncio+threads:2"), a.Machine())
    assert [getattr(old, k) for k in legs] == [0.0] * 5


def test_a_profile_gives_the_loop_the_share_of_races_it_measured():
    measured = PROFILE.model_copy(update={"loop_race_wins": 0.0})
    assert measured.machine_for(a.parse_strategy("asyncio:4+threads:2"), a.Machine()).loop_race_wins == 0.0
    # a profile made before the share was measured: every second race, as before, or what the user's machine says
    assert PROFILE.machine_for(a.parse_strategy("asyncio:4+threads:2"), a.Machine()).loop_race_wins == 0.5
    assert PROFILE.machine_for(a.parse_strategy("asyncio:4+threads:2"),
                               a.Machine(loop_race_wins=0.25)).loop_race_wins == 0.25


def test_a_profile_gives_every_strategy_its_cpu_jitter_and_a_replay_none():
    """The spread of the same work's time is the machine's, whatever runs on it; a replay takes each CPU step's
    measured time, which has it already."""
    measured = PROFILE.model_copy(update={"cpu_jitter_cv": 0.02})
    for name in ("sequential", "threads:4", "processes:2", "asyncio", "asyncio:4+threads:2", "asyncio:4+processes:2"):
        strategy = a.parse_strategy(name)
        machine = measured.machine_for(strategy, a.Machine())
        assert machine.cpu_jitter_cv == 0.02
        w = a.Workload(arrivals=a.Batch(count=3), task=(a.cpu(0.001),))
        out = run_scenario(build_scenario(w, seed=0, strategy=strategy), machine)
        assert replay_machine(machine, strategy, out).cpu_jitter_cv == 0.0
    assert PROFILE.machine_for(a.parse_strategy("asyncio"), a.Machine()).cpu_jitter_cv == 0.0  # made before


def test_a_profile_gives_a_blocking_pool_its_workers_turnaround():
    measured = PROFILE.model_copy(update={"process_turnaround_s": 1e-4, "busy_wake_s": 5e-4})
    blocking = measured.machine_for(a.parse_strategy("processes:2"), a.Machine(), time_scale=0.5)
    assert (blocking.process_turnaround_s, blocking.busy_wake_s) == pytest.approx((2e-4, 0.0))
    offload = measured.machine_for(a.parse_strategy("asyncio:4+processes:2"), a.Machine(), time_scale=0.5)
    assert (offload.process_turnaround_s, offload.busy_wake_s) == pytest.approx((0.0, 1e-3))
    # a profile made before the turnaround was measured: the whole round trip between tasks, as before
    assert PROFILE.machine_for(a.parse_strategy("processes:2"), a.Machine()).process_turnaround_s == 2e-4


def test_a_profile_gives_the_loop_its_limits_blocked_step_and_release_walk():
    loops = {"asyncio": PROFILE.loop().model_copy(update={"loop_block_s": 1.2e-6, "semaphore_scan_s": 1.7e-8})}
    measured = PROFILE.model_copy(update={"loops": loops})
    machine = measured.machine_for(a.parse_strategy("asyncio:100"), a.Machine(), time_scale=0.5)
    assert (machine.loop_block_s, machine.semaphore_scan_s) == pytest.approx((2.4e-6, 3.4e-8))
    for other in ("threads:4", "processes:2"):
        machine = measured.machine_for(a.parse_strategy(other), a.Machine())
        assert (machine.loop_block_s, machine.semaphore_scan_s) == (None, 0.0)
    # a profile made before they were measured: a blocked first step costs a resumption, as before; no walk
    old = PROFILE.machine_for(a.parse_strategy("asyncio:100"), a.Machine())
    assert (old.loop_block_s, old.semaphore_scan_s) == (None, 0.0)
    w = a.Workload(arrivals=a.Batch(count=4), task=(a.io(0.05),))
    sc = build_scenario(w, seed=0, strategy="asyncio:1")
    # three first steps wait at the limit while the first task sleeps 50 ms: at 0.1 s each they hold its
    # resumption until 0.3 s, then the three run one after another
    assert run_scenario(sc, a.Machine(loop_block_s=0.1)).done.max() == pytest.approx(0.3 + 3 * 0.05)
    # a resumption of 0.1 s: each task costs two (its first step, its wake-up); a blocked step one more, unless
    # measured apart
    assert run_scenario(sc, a.Machine(loop_step_s=0.1, loop_block_s=0.0)).done.max() == pytest.approx(4 * 0.25)
    assert run_scenario(sc, a.Machine(loop_step_s=0.1)).done.max() == pytest.approx(0.4 + 0.1 + 3 * 0.25)


def test_a_profile_gives_a_blocking_thread_pool_its_own_turnaround():
    measured = PROFILE.model_copy(update={"thread_turnaround_s": 2e-5, "thread_task_turnaround_s": 4e-6})
    assert measured.machine_for(a.parse_strategy("threads:8"), a.Machine(), time_scale=0.5).thread_turnaround_s == (
        pytest.approx(8e-6))
    assert measured.machine_for(a.parse_strategy("asyncio:4+threads:2"), a.Machine()).thread_turnaround_s == 2e-5
    for other in ("sequential", "processes:2", "asyncio:4"):
        assert measured.machine_for(a.parse_strategy(other), a.Machine()).thread_turnaround_s == 0.0
    # a profile made before it was measured: none, as before
    assert PROFILE.machine_for(a.parse_strategy("threads:8"), a.Machine()).thread_turnaround_s == 0.0


def test_a_profile_gives_threads_the_hand_off_to_a_core_that_idled():
    measured = PROFILE.model_copy(update={"thread_switch_idle_s": 1.5e-4})
    for threaded in ("threads:8", "asyncio:4+threads:2"):
        m = measured.machine_for(a.parse_strategy(threaded), a.Machine(), time_scale=0.5)
        assert (m.thread_switch_idle_s, m.thread_idle_after_s) == pytest.approx((3e-4, 2e-3))
    for other in ("sequential", "processes:2", "asyncio:4"):
        assert measured.machine_for(a.parse_strategy(other), a.Machine()).thread_switch_idle_s is None
    # a profile made before it was measured: every hand-off costs thread_switch_s, as before
    assert PROFILE.thread_switch_idle_s is None
    assert PROFILE.machine_for(a.parse_strategy("threads:8"), a.Machine()).thread_switch_idle_s is None
