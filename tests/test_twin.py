"""`asyncsim twin`: a user's own asyncio program on a virtual clock that charges its CPU (issue 14, part 1).

Blocking the loop with `time.sleep` costs exactly its seconds of virtual time (no CPU noise), so most
figures here are exact to the microseconds the callbacks' own CPU adds; real CPU work is checked through the
trace's own accounting (the loop's records add up to T_total), which holds however fast the machine is.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

import asyncsim as a
from asyncsim import twin
from asyncsim.cli import main
from asyncsim.real.cpuwork import burn

EPS = 0.02  # seconds: the callbacks' own CPU (microseconds each) and the twin's bookkeeping


def test_an_hour_of_waiting_costs_nothing_and_timers_keep_their_order():
    order = []

    async def wait(i: int) -> None:
        await asyncio.sleep(3600 - i)  # the last created wakes first
        order.append(i)

    async def program() -> float:
        await asyncio.gather(*(wait(i) for i in range(50)))
        return time.monotonic()

    r = twin.run(program)
    assert r.t_total == pytest.approx(3600, abs=EPS)
    assert (r.tasks, r.completed) == (50, 50)
    assert order == list(range(49, -1, -1))
    assert r.latency.p50 == pytest.approx(3600 - 24.5, abs=1 + EPS)


def test_blocking_the_loop_holds_up_every_task_as_a_real_loop_does():
    """Ten tasks wake at once after 1 s; each then blocks the loop 100 ms: they finish 100 ms apart, the last
    at 2 s, and while one runs the others wait for the loop (resume records: the loop's lag)."""
    async def job() -> None:
        await asyncio.sleep(1.0)
        time.sleep(0.1)  # work on the loop (here a blocking call: exact virtual time)

    async def program() -> None:
        await asyncio.gather(*(job() for _ in range(10)))

    r = twin.run(program)
    assert r.t_total == pytest.approx(2.0, abs=EPS)
    assert sorted(r.done.tolist()) == pytest.approx([1.1 + 0.1 * k for k in range(10)], abs=EPS)
    frame = r.trace.to_frame()
    lag = frame.query("kind == 'resume'")
    assert (lag.start - lag.enqueue).sum() == pytest.approx(0.1 * sum(range(10)), abs=EPS)  # 0 + 0.1 + ... + 0.9
    waits = frame.query("kind == 'io'")
    assert (waits.end - waits.start).sum() == pytest.approx(10 * 1.0, abs=EPS)


def test_a_semaphore_admits_in_fifo_order_and_bounds_the_tasks_in_flight():
    finished = []

    async def job(i: int, sem: asyncio.Semaphore) -> None:
        async with sem:
            await asyncio.sleep(0.5)
            finished.append(i)

    async def program() -> None:
        sem = asyncio.Semaphore(4)
        await asyncio.gather(*(job(i, sem) for i in range(12)))

    r = twin.run(program)
    assert r.t_total == pytest.approx(1.5, abs=EPS)
    assert finished == list(range(12))
    assert sorted(r.done.tolist()) == pytest.approx([0.5] * 4 + [1.0] * 4 + [1.5] * 4, abs=EPS)


def test_cpu_work_is_charged_and_scaled_and_the_records_account_for_it():
    """Tasks that only compute run back to back on the loop: T_total is the sum of their CPU records, and
    --cpu-scale 0.5 halves it (to the noise of measuring CPU twice)."""
    async def work() -> None:
        burn(200_000)

    async def program() -> None:
        await asyncio.gather(*(work() for _ in range(8)))

    one = twin.run(program)
    cpu = one.trace.to_frame().query("kind == 'cpu'")
    assert one.t_total == pytest.approx(cpu.cpu_s.sum(), rel=1e-6, abs=1e-4)
    assert one.t_total > 0.001  # it did charge the work
    halves = [twin.run(program, cpu_scale=0.5).t_total / twin.run(program).t_total for _ in range(3)]
    assert min(abs(h - 0.5) for h in halves) < 0.1  # a measurement: one of three within 20%


def test_a_failed_task_counts_as_failed_and_a_lone_main_is_the_task():
    async def bad() -> None:
        await asyncio.sleep(1)
        raise ValueError("no")

    async def program() -> None:
        await asyncio.gather(bad(), asyncio.sleep(2), return_exceptions=True)

    r = twin.run(program)
    assert (r.tasks, r.failed, r.completed) == (2, 1, 1)

    async def alone() -> None:  # no tasks of its own: the main coroutine is the one task
        await asyncio.sleep(0.25)

    r = twin.run(alone)
    assert (r.tasks, r.t_total) == (1, pytest.approx(0.25, abs=EPS))


@pytest.mark.parametrize(("body", "what"), [
    ("await asyncio.open_connection('api.openai.com', 443)", "a network connection"),
    ("await asyncio.get_running_loop().getaddrinfo('example.com', 80)", r"resolving example.com:80"),
    ("await asyncio.to_thread(sum, [1, 2])", "an executor job"),
    ("await asyncio.create_subprocess_exec('true')", "a subprocess"),
])
def test_what_the_twin_cannot_run_yet_fails_at_once_saying_so(body, what):
    scope: dict = {"asyncio": asyncio}
    exec(f"async def program():\n    {body}\n", scope)
    with pytest.raises(twin.TwinError, match=f"{what}.*is not supported in virtual time yet"):
        twin.run(scope["program"])


def test_a_program_waiting_forever_is_an_error_not_a_hang():
    async def program() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(twin.TwinError, match="waits forever"):
        twin.run(program)


PROGRAM = '''
import asyncio, sys, time

async def fetch(sem):
    async with sem:
        time.sleep(0.002)         # parsing on the loop
        await asyncio.sleep(0.5)  # the network

async def main(n, limit):
    sem = asyncio.Semaphore(limit)
    t0 = time.monotonic()
    await asyncio.gather(*(fetch(sem) for _ in range(n)))
    print(f"done in {time.monotonic() - t0:.3f} s")

if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
'''


def test_the_command_runs_an_unmodified_program_with_its_arguments(tmp_path, capsys):
    path = tmp_path / "crawl.py"
    path.write_text(PROGRAM)
    assert main(["twin", str(path), "--json", "--", "40", "8"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # the program's own print went to stderr
    assert (data["tasks"], data["completed"]) == (40, 40)
    # the simulator's ideal asyncio:8 for the same tasks (2 ms on the loop, then a 0.5 s wait) says the same
    w = a.Workload(arrivals=a.Batch(count=40), task=(a.cpu(0.002), a.io(0.5)))
    predicted = a.simulate(w, strategy="asyncio:8").t_total
    assert data["t_total"] == pytest.approx(predicted, abs=0.005)
    assert f"done in {data['t_total']:.2f}" in captured.err  # its clock read virtual time
    assert main(["twin", str(path), "--", "x", "8"]) == 1
    assert "crawl.py raised ValueError" in capsys.readouterr().err
    assert main(["twin", str(tmp_path / "nope.py")]) == 1
    assert "no program at" in capsys.readouterr().err
