"""Model files: the documented shape loads, bad values give one clear line per problem at its YAML path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import asyncsim as a
from asyncsim.spec import Workload

ISSUE_EXAMPLE = """
name: web-fetch
description: 500 pages fetched and parsed
arrivals: {batch: 500}
task:
  - cpu: 0.002
  - io: {lognormal: {mean: 0.3, cv: 0.5}}
  - use: {pool: db, steps: [{io: 0.01}]}
  - parallel: [[{io: 0.2}], [{io: 0.1}, {cpu: 0.001}]]
  - call: api
pools: {db: 10}
services:
  api: {latency: {exponential: {mean: 0.5}}, concurrency: 32}
strategy: asyncio:50
machine: {cores: 2, gil: true}
"""


def _write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(a.ModelError) as info:
        a.load(_write(tmp_path, text))
    return info.value.problems


def test_issue_example_loads(tmp_path):
    w = a.load(_write(tmp_path, ISSUE_EXAMPLE))
    assert w.name == "web-fetch"
    assert str(w.strategy) == "asyncio:50"
    assert w.pools["db"].capacity == 10
    assert w.services["api"].concurrency == 32
    steps = w.task_types[0].steps
    assert [type(s).__name__ for s in steps] == ["Cpu", "Io", "Use", "Parallel", "Call"]
    assert steps[1].duration.mean == pytest.approx(0.3)
    assert steps[3].branches[1][1].duration.value == 0.001


@pytest.mark.parametrize(
    ("arrivals", "count"),
    [
        ("{batch: 7}", 7),
        ("{poisson: {rate: 5.0, count: 9}}", 9),
        ("{uniform: {interval: 0.2, count: 4}}", 4),
        ("{trace: {times: [0, 0.5, 2]}}", 3),
        ("{closed: {users: 2, think: {exponential: {mean: 1.0}}, count: 5}}", 5),
    ],
)
def test_every_arrival_form_loads_and_runs(tmp_path, arrivals, count):
    w = a.load(_write(tmp_path, f"arrivals: {arrivals}\ntask: [{{io: 0.1}}]\n"))
    assert a.simulate(w).completed == count


def test_trace_file_and_empirical_file_are_read_relative_to_the_model(tmp_path):
    (tmp_path / "times.csv").write_text("time\n0\n0.5\n1.5\n")
    (tmp_path / "samples.txt").write_text("# seconds\n0.1\n0.2\n")
    text = "arrivals: {trace: {file: times.csv}}\ntask: [{io: {empirical: {file: samples.txt}}}]\n"
    w = a.load(_write(tmp_path, text))
    r = a.simulate(w, strategy="asyncio")
    assert r.completed == 3
    assert set(r.trace.to_frame().query("kind == 'io'").eval("end - start").round(9)) <= {0.1, 0.2}


def test_task_mix_with_weights(tmp_path):
    w = a.load(_write(tmp_path, """
        arrivals: {batch: 1000}
        tasks:
          - {name: short, weight: 3, steps: [{io: 0.1}]}
          - {name: long, weight: 1, steps: [{io: 1.0}]}
    """))
    frame = a.simulate(w).to_frame()
    share = (frame.type == "short").mean()
    assert 0.7 < share < 0.8  # 0.75 expected; ±0.05 is > 3.5 standard errors for n = 1000


def test_bad_values_name_their_yaml_path(tmp_path):
    problems = _problems(tmp_path, """
        arrivals: {batch: 0}
        task:
          - cpu: -0.002
          - io: {lognormal: {mean: 0.3, cv: 0}}
          - sleep: 1
          - io: {gama: 1}
        services:
          api: {latency: 0.1, concurrency: 0}
        strategy: asyncio:0
        machine: {cores: 2, foo: 1}
        extra: 1
    """)
    assert problems == [
        "arrivals.batch.count: must be >= 1 (got 0)",
        "task[0].cpu: must be >= 0 (got -0.002)",
        "task[1].io.lognormal.cv: must be > 0 (got 0)",
        "task[2]: not a valid step (allowed: cpu, io, call, use, parallel) (got {'sleep': 1})",
        "task[3].io: not a valid distribution (allowed: constant, uniform, exponential, normal, lognormal, "
        "gamma, empirical) (got {'gama': 1}); did you mean gamma?",
        "services.api.concurrency: must be >= 1 (got 0)",
        "strategy: asyncio needs a count >= 1, got 0 in 'asyncio:0'",
        "machine.foo: unknown key (allowed: cores, gil, switch_interval_s, loop_step_s, task_create_s, "
        "loop_block_s, semaphore_scan_s, thread_switch_s, thread_switch_idle_s, thread_idle_after_s, thread_start_s, "
        "thread_turnaround_s, thread_submit_s, thread_return_s, "
        "loop_race_idle_s, loop_race_wins, loop_wake_s, loop_read_s, process_dispatch_s, "
        "process_return_s, "
        "process_turnaround_s, "
        "process_start_s, process_wake_busy_s, busy_wake_s, core_balance_s, sleep_overshoot_s, timer_granularity_s, "
        "cpu_jitter_cv)",
        "extra: unknown key (allowed: name, description, arrivals, task, tasks, stages, pools, services, strategy, "
            "policy, machine)",
    ]


def test_unknown_keys_inside_distributions_and_steps(tmp_path):
    problems = _problems(tmp_path, """
        arrivals: {poisson: {rate: 1, count: 3, burst: 2}}
        task:
          - io: {exponential: {mean: 1, sd: 2}}
          - use: {pool: db, steps: [{io: 1}], timeout: 3}
        pools: {db: 1}
    """)
    assert problems == [
        "arrivals.poisson.burst: unknown key (allowed: rate, count, duration)",
        "task[0].io.exponential.sd: unknown key (allowed: mean)",
        "task[1].use.timeout: unknown key (allowed: pool, steps)",
    ]


def test_references_to_unknown_pools_and_services(tmp_path):
    problems = _problems(tmp_path, """
        arrivals: {batch: 1}
        task:
          - call: apx
          - use: {pool: dbx, steps: [{call: api}]}
        pools: {db: 1}
        services: {api: {latency: 1}}
    """)
    assert problems == [
        "task[0].call: unknown service 'apx' (known: api); did you mean api?",
        "task[1].use.pool: unknown pool 'dbx' (known: db); did you mean db?",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("arrivals: {batch: 1}\n",
         "task: give exactly one of task (a list of steps), tasks (a weighted mix) or stages"),
        ("arrivals: {poisson: {rate: 2}}\ntask: [{io: 1}]\n",
         "arrivals.poisson: give exactly one of count or duration (an open stream must end)"),
        ("arrivals: {batch: 1}\ntask: [{io: {uniform: {low: 2, high: 1}}}]\n",
         "task[0].io.uniform: high must be >= low (got low=2.0, high=1.0)"),
        ("arrivals: {batch: 1}\ntask: [{io: {lognormal: {mean: 1}}}]\n",
         "task[0].io.lognormal: give either mean and cv, or mu and sigma"),
        ("arrivals: {batch: 1}\ntask: []\n", "task: needs at least 1 item(s)"),
        ("arrivals: {trace: {times: [2, 1]}}\ntask: [{io: 1}]\n",
         "arrivals.trace: arrival times must be >= 0 and in increasing order"),
        ("arrivals: {batch: 1}\ntask: [{io: {empirical: {file: missing.csv}}}]\n",
         "task[0].io.empirical: cannot read"),
        ("arrivals: {batch: 1}\ntask: [{io: 1}]\nmachine: {cores: two}\n",
         "machine.cores: must be an integer (got 'two')"),
        ("arrivals: {batch: 1}\ntask: [{io: 1}]\nstrategy: threads\n",
         "strategy: threads needs a worker count, e.g. 'threads:8', got 'threads'"),
    ],
)
def test_each_problem_has_one_clear_line(tmp_path, text, problem):
    problems = _problems(tmp_path, text)
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(a.ModelError, match=r"line 2: not valid YAML"):
        a.load(_write(tmp_path, "arrivals: {batch: 1\ntask: [\n"))
    with pytest.raises(a.ModelError, match="must be a mapping"):
        a.load(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(a.ModelError, match="cannot read the model file"):
        a.load(tmp_path / "nope.yaml")


def test_model_error_is_a_value_error():
    with pytest.raises(ValueError, match="count"):
        Workload.from_dict({"arrivals": {"batch": 0}, "task": [{"io": 1}]})


def test_python_api_builds_the_same_model_as_yaml(tmp_path):
    from_yaml = a.load(_write(tmp_path, ISSUE_EXAMPLE))
    in_code = a.Workload(
        name="web-fetch", description="500 pages fetched and parsed",
        arrivals=a.Batch(count=500),
        task=(a.cpu(0.002), a.io(a.Lognormal(mean=0.3, cv=0.5)), a.use("db", [a.io(0.01)]),
              a.parallel([a.io(0.2)], [a.io(0.1), a.cpu(0.001)]), a.call("api")),
        pools={"db": a.Pool(capacity=10)},
        services={"api": a.Service(latency=a.Exponential(0.5), concurrency=32)},
        strategy="asyncio:50",
    )
    assert in_code == from_yaml
    assert a.simulate(in_code, seed=4).to_dict() == a.simulate(from_yaml, seed=4).to_dict()


def test_models_are_immutable_and_evolve_makes_validated_copies():
    w = a.Workload(arrivals=a.Batch(count=3), task=(a.io(1),))
    with pytest.raises(Exception, match="frozen"):
        w.name = "x"
    w2 = w.evolve(strategy="threads:2")
    assert str(w2.strategy) == "threads:2"
    assert str(w.strategy) == "asyncio"
    with pytest.raises(ValueError, match="asyncio needs a count"):
        w.evolve(strategy="asyncio:0")
