"""Scheduling policies and task classes in the simulator, against queueing theory (fixed seeds); deadlock
reports and run limits."""

from __future__ import annotations

import numpy as np
import pytest

import asyncsim as a
from asyncsim.errors import DeadlockError, RunLimitError
from asyncsim.policies import Policy
from asyncsim.rules.queues import Ticket, WaitQueue
from asyncsim.theory import mg1_mean_sojourn, priority_mean_sojourn


def two_classes(policy, *, lams=(0.3, 0.3), mean=1.0, n=4000, where="service") -> a.Workload:
    """Two Poisson classes (class 0 more urgent) sharing one exponential server: a service queue or the
    asyncio admission limit."""
    classes = [{"name": f"c{k}", "priority": k, "arrivals": {"poisson": {"rate": lam, "count": n}},
                "steps": [{"call": "srv"}] if where == "service" else [{"io": {"exponential": {"mean": mean}}}]}
               for k, lam in enumerate(lams)]
    data = {"tasks": classes, "strategy": "asyncio" if where == "service" else "asyncio:1"}
    if where == "service":
        data["services"] = {"srv": {"latency": {"exponential": {"mean": mean}}, "concurrency": 1, "policy": policy}}
    else:
        data["policy"] = policy
    return a.Workload.from_dict(data)


def class_sojourns(w: a.Workload, seeds: range) -> np.ndarray:
    """Per seed, per class: mean latency (rows: seeds)."""
    return np.array([[c.latency.mean for c in a.simulate(w, seed=s).classes.values()] for s in seeds])


def _close(measured: np.ndarray, theory: list[float], *, rel_bias: float = 0.03) -> None:
    """Theory within 4 standard errors of the mean over seeds, plus a small allowance for the warm-up bias."""
    mean = measured.mean(axis=0)
    se = measured.std(axis=0, ddof=1) / np.sqrt(measured.shape[0])
    for m, s, t in zip(mean, se, theory, strict=True):
        assert abs(m - t) <= 4 * s + rel_bias * t, (mean, se, theory)


@pytest.mark.parametrize("where", ["service", "admission"])
def test_non_preemptive_priority_matches_cobham(where):
    measured = class_sojourns(two_classes("priority", where=where), range(8))
    _close(measured, priority_mean_sojourn([0.3, 0.3], [1.0, 1.0], [2.0, 2.0], preemptive=False))
    # and the urgent class really is served first
    assert measured[:, 0].mean() < mg1_mean_sojourn(0.6, 1.0, 1.0) < measured[:, 1].mean()


def test_preemptive_resume_priority_matches_its_closed_form():
    w = two_classes({"priority": {"preemptive": True}})
    measured = class_sojourns(w, range(8))
    theory = priority_mean_sojourn([0.3, 0.3], [1.0, 1.0], [2.0, 2.0], preemptive=True)
    _close(measured, theory)
    # class 0 sees an M/M/1 of its own: the lower class cannot delay it at all
    assert theory[0] == pytest.approx(1 / (1 - 0.3))


def test_fifo_gives_both_classes_the_mg1_sojourn():
    measured = class_sojourns(two_classes("fifo"), range(8))
    _close(measured, [mg1_mean_sojourn(0.6, 1.0, 1.0)] * 2)


def test_sjf_reduces_mean_latency_against_fifo_on_the_same_scenario():
    def model(policy: str) -> a.Workload:
        return a.Workload.from_dict({
            "tasks": [{"name": "short", "arrivals": {"poisson": {"rate": 0.4, "count": 3000}},
                       "steps": [{"io": {"exponential": {"mean": 0.2}}}]},
                      {"name": "long", "arrivals": {"poisson": {"rate": 0.2, "count": 1500}},
                       "steps": [{"io": {"exponential": {"mean": 3.0}}}]}],
            "strategy": "asyncio:1", "policy": policy})
    fifo, sjf = (a.simulate(model(p), seed=4) for p in ("fifo", "sjf"))
    assert sjf.latency.mean < 0.8 * fifo.latency.mean
    assert sjf.classes["short"].latency.mean < fifo.classes["short"].latency.mean
    assert sjf.tasks == fifo.tasks
    assert sjf.completed == fifo.completed


@pytest.mark.parametrize("weights", [(1, 1, 1), (1, 2, 3)])
def test_fair_share_gives_saturated_tenants_their_weighted_share(weights):
    tenants = [{"name": f"t{k}", "weight": wgt, "arrivals": {"batch": 3000},
                "steps": [{"use": {"pool": "gpu", "steps": [{"io": {"exponential": {"mean": 0.1}}}]}}]}
               for k, wgt in enumerate(weights)]
    w = a.Workload.from_dict({"tasks": tenants, "pools": {"gpu": {"capacity": 4, "policy": "fair"}}})
    r = a.simulate(w, seed=2)
    # while every tenant still has work queued, slots go to tenants in proportion to their weights
    horizon = min(c.t_total for c in r.classes.values())
    done_by = [int(((r.task_type == k) & (r.done <= horizon)).sum()) for k in range(len(weights))]
    shares = np.array(done_by) / sum(done_by)
    expected = np.array(weights) / sum(weights)
    np.testing.assert_allclose(shares, expected, atol=0.02)


def test_fifo_on_the_same_saturated_tenants_serves_them_in_arrival_order():
    tenants = [{"name": f"t{k}", "arrivals": {"batch": 100},
                "steps": [{"use": {"pool": "gpu", "steps": [{"io": 0.1}]}}]} for k in range(3)]
    r = a.simulate(a.Workload.from_dict({"tasks": tenants, "pools": {"gpu": 4}}), seed=0)
    # tenant 0's tasks arrived first (ties keep class order): it finishes before the others start much
    assert r.classes["t0"].t_total < r.classes["t1"].t_total < r.classes["t2"].t_total


def test_edf_misses_fewer_deadlines_than_fifo():
    def model(policy: str) -> a.Workload:
        return a.Workload.from_dict({
            "tasks": [{"name": "interactive", "deadline": 1.0, "arrivals": {"poisson": {"rate": 1.0, "count": 500}},
                       "steps": [{"io": {"exponential": {"mean": 0.2}}}]},
                      {"name": "batch", "deadline": 30.0, "arrivals": {"poisson": {"rate": 0.5, "count": 250}},
                       "steps": [{"io": {"exponential": {"mean": 1.0}}}]}],
            "strategy": "asyncio:1", "policy": policy})
    fifo, edf = (a.simulate(model(p), seed=1) for p in ("fifo", "edf"))
    missed = {p: sum(c.deadline_missed for c in r.classes.values()) for p, r in (("fifo", fifo), ("edf", edf))}
    # non-preemptive: a running batch task still makes some interactive ones late, but far fewer
    assert missed["edf"] < 0.7 * missed["fifo"]
    assert edf.classes["batch"].deadline_missed == 0


def test_lifo_serves_the_newest_waiter_first():
    w = a.Workload.from_dict({"arrivals": {"uniform": {"interval": 0.1, "count": 5}}, "task": [{"io": 1.0}],
                              "strategy": "asyncio:1", "policy": "lifo"})
    r = a.simulate(w, seed=0)
    # task 0 runs at once; tasks 1-4 queue; then the newest first: 4, 3, 2, 1
    np.testing.assert_allclose(r.done, [1.0, 5.0, 4.0, 3.0, 2.0])


def test_wait_queue_orders_by_policy_and_removes():
    def drain(q: WaitQueue) -> list[str]:
        return [q.pop() for _ in range(len(q))]
    tickets = {"a": Ticket(cls=0, priority=2, expected=3.0, deadline=5.0),
               "b": Ticket(cls=1, priority=1, expected=1.0, deadline=9.0),
               "c": Ticket(cls=0, priority=1, expected=2.0, deadline=1.0)}
    expected = {"fifo": ["a", "b", "c"], "lifo": ["c", "b", "a"], "priority": ["b", "c", "a"],
                "sjf": ["b", "c", "a"], "edf": ["c", "a", "b"], "fair": ["a", "b", "c"]}
    for kind, order in expected.items():
        q = WaitQueue(kind)
        for name, t in tickets.items():
            q.push(name, t)
        assert drain(q) == order, kind
    q = WaitQueue("priority")
    for name, t in tickets.items():
        q.push(name, t)
    assert q.remove("c")
    assert not q.remove("zz")
    assert drain(q) == ["b", "a"]


def test_policy_parsing_and_bad_values():
    assert Policy.model_validate("SJF").kind == "sjf"
    assert Policy.model_validate({"priority": {"preemptive": True}}).preemptive
    with pytest.raises(a.ModelError) as exc:
        a.Workload.from_dict({"arrivals": {"batch": 1}, "task": [{"use": {"pool": "p", "steps": [{"io": 1}]}}],
                              "pools": {"p": {"capacity": 1, "policy": {"priority": {"preemptive": True}}}}})
    assert exc.value.problems == ["pools.p.policy: only a service's queue can be preemptive (a running task or a "
                                  "held slot cannot be taken back)"]
    with pytest.raises(a.ModelError) as exc:
        a.Workload.from_dict({"arrivals": {"batch": 1}, "task": [{"io": 1}], "policy": "random"})
    assert exc.value.problems[0].startswith("policy.kind:")
    with pytest.raises(a.ModelError) as exc:
        a.Workload.from_dict({"tasks": [{"steps": [{"io": 1}], "arrivals": {"batch": 1}}, {"steps": [{"io": 1}]}]})
    assert exc.value.problems == ["arrivals: is required (or give every class in tasks its own arrivals)"]


# ------------------------------------------------------------------------------------ deadlocks, limits


def test_nested_use_of_a_full_pool_is_reported_as_a_deadlock_with_its_cycle():
    w = a.Workload.from_dict({"arrivals": {"batch": 3},
                              "task": [{"io": 0.5}, {"use": {"pool": "db", "steps": [
                                  {"use": {"pool": "db", "steps": [{"io": 1}]}}]}}],
                              "pools": {"db": 2}})
    with pytest.raises(DeadlockError) as exc:
        a.simulate(w)
    err = exc.value
    # task 0 got both slots (its nested use found one free) and finished; tasks 1 and 2 took one each and
    # wait for a second that only they could give back
    assert err.time == 1.5
    assert err.holders == {"pool:db": ["task 1", "task 2"]}
    assert err.waits == {"task 1": ("pool:db", 1.5), "task 2": ("pool:db", 1.5)}
    assert err.cycle == ["task 1", "pool:db", "task 1"]
    assert "deadlock at t=1.5s: 2 of 3 tasks can never finish" in str(err)


def test_two_pools_taken_in_opposite_orders_deadlock_in_a_cycle():
    w = a.Workload.from_dict({
        "tasks": [{"name": "ab", "arrivals": {"batch": 1}, "steps": [{"use": {"pool": "a", "steps": [
            {"io": 1}, {"use": {"pool": "b", "steps": [{"io": 1}]}}]}}]},
                  {"name": "ba", "arrivals": {"batch": 1}, "steps": [{"use": {"pool": "b", "steps": [
                      {"io": 1}, {"use": {"pool": "a", "steps": [{"io": 1}]}}]}}]}],
        "pools": {"a": 1, "b": 1}})
    with pytest.raises(DeadlockError) as exc:
        a.simulate(w)
    assert exc.value.cycle == ["task 0", "pool:b", "task 1", "pool:a", "task 0"]


def test_run_limits_stop_a_run_and_name_the_limit():
    w = a.Workload.from_dict({"arrivals": {"poisson": {"rate": 50, "duration": 3600}}, "task": [{"io": 1}]})
    with pytest.raises(RunLimitError, match=r"stopped by --max-sim-time 10 s at t=10s") as exc:
        a.simulate(w, max_sim_time=10)
    assert exc.value.limit == "max_sim_time"
    with pytest.raises(RunLimitError, match="stopped by --max-events 500") as exc:
        a.simulate(w, max_events=500)
    assert exc.value.limit == "max_events"
    # a run that ends within its limits is untouched by them
    short = a.Workload.from_dict({"arrivals": {"batch": 10}, "task": [{"io": 1}]})
    assert a.simulate(short, max_sim_time=5).t_total == a.simulate(short).t_total == 1.0


def test_a_pipeline_orders_its_stage_queues_not_its_admission():
    with pytest.raises(a.ModelError) as exc:
        a.Workload.from_dict({"arrivals": {"batch": 2}, "stages": {"s": {"steps": [{"io": 1}]}}, "policy": "lifo"})
    assert exc.value.problems == ["policy: a pipeline admits its items in arrival order (they are all one class); "
                                  "order a stage's queue instead (stages.NAME.policy)"]


def test_validate_refuses_a_policy_the_real_runner_cannot_apply_between_processes(tmp_path, capsys):
    from asyncsim.cli import main

    model = tmp_path / "m.yaml"
    model.write_text("arrivals: {batch: 4}\ntask: [{use: {pool: p, steps: [{io: 0.01}]}}]\n"
                     "pools: {p: {capacity: 1, policy: lifo}}\n")
    assert main(["validate", str(model), "--strategy", "processes:2", "--time-scale", "1"]) == 2
    err = capsys.readouterr().err
    assert "pools.p.policy: the real runner orders waiters by policy under asyncio, threads" in err


def test_queue_schedule_serves_in_policy_order_and_preempts_in_virtual_time():
    from asyncsim.rules.queues import QueueSchedule

    low, high = Ticket(priority=1), Ticket(priority=0)
    plain = QueueSchedule(1, Policy(kind="priority"))
    jobs = [plain.submit(0.0, 1.0, low), plain.submit(0.1, 1.0, low), plain.submit(0.2, 1.0, high)]
    plain.advance(10.0)
    # non-preemptive: the urgent request waits for the running one, then goes before the earlier low one
    assert [plain.done[j] for j in jobs] == [[(0.0, 1.0)], [(2.0, 3.0)], [(1.0, 2.0)]]

    pre = QueueSchedule(1, Policy(kind="priority", preemptive=True))
    jobs = [pre.submit(0.0, 1.0, low), pre.submit(0.1, 1.0, low), pre.submit(0.2, 1.0, high)]
    assert pre.end_of(jobs[2]) == pytest.approx(1.2)
    assert pre.end_of(jobs[0]) is None  # suspended, back in the queue with 0.8 s left
    pre.advance(10.0)
    assert pre.done[jobs[2]] == [(pytest.approx(0.2), pytest.approx(1.2))]
    assert pre.done[jobs[0]] == [(0.0, pytest.approx(0.2)), (pytest.approx(1.2), pytest.approx(2.0))]
    assert pre.done[jobs[1]] == [(pytest.approx(2.0), pytest.approx(3.0))]
