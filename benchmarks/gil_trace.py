"""How long each thread of a real asyncio+threads run waits for the GIL, traced from its futex calls, against the
simulator's replay of the same run (~10 s a run; tracing needs root and tracefs).

    python benchmarks/gil_trace.py [--runs N] [--strategy asyncio:10+threads:4] [--workload mixed|offload]

The workload is the validation suite's `mixed` one (80 tasks at once: 4 ms of CPU, a 40 ms wait, 2 ms of CPU;
CPU steps run on the executor's threads), or with `--workload offload` its `offload-0.5ms` one (120 tasks:
0.5 ms of CPU, a 20 ms wait, 0.5 ms of CPU). CPython 3.11 waits for the GIL on a condition variable with a timeout
of the switch interval (Python/ceval_gil.c take_gil: COND_TIMED_WAIT), which glibc implements with futex waits
on two words; a thread's GIL wait is a run of such waits, each ending in a wake-up (a drop_gil signalled it) or a
timeout (then it asks the holder to drop the GIL, if no switch happened meanwhile). Printed per run: for the loop
thread and the executor's threads, how many GIL waits, their total, median, 90th percentile and longest, and how
many wake-ups and timeouts each took; then the same waits in the simulator's replay of that run (sim/cpu.py Gil).
Measured here (2026-12-04, asyncio:10+threads:4, two runs; replayed T_total -6.4%, -4.1%): the loop thread
waited 60 and 56 times, 313 and 334 ms in all (median 4.5, 5.1 ms; 1.4 wake-ups and 0.4 timeouts per wait: a
woken waiter that finds the GIL taken again sleeps a fresh interval), the replay's loop 61 and 56 times, 342 and
360 ms: the loop is modelled. The executor's threads waited 162 times, 793 and 822 ms, with 2.1-2.2 wake-ups per
wait; replayed 145-146 times, 621-657 ms: the real workers wait a fifth longer, where the replay runs short.
With the work queue's protocol (2026-12-06 evening, sim/resources.py WorkQueue, and a new worker's start behind a
worker forced off the GIL): three runs of 623, 849 and 611 ms replayed -1.2%, -0.5%, +1.0%; the loop waited 52, 57
and 46 times (327, 514, 328 ms), replayed 55, 63, 55 (336, 590, 342 ms); the executor's threads 96, 190, 99 times
(641, 1458, 621 ms), replayed 105, 156, 106 (671, 1413, 730 ms).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core_balance import TRACING, _write, tracing_unavailable

import asyncsim as a
from asyncsim.api import result_of
from asyncsim.profile import MachineProfile
from asyncsim.real import run_real
from asyncsim.real.calibrate import calibrate
from asyncsim.scenario import build_scenario
from asyncsim.sim import cpu
from asyncsim.sim.run import run_scenario
from asyncsim.strategies import parse_strategy
from asyncsim.validate import relative_errors, replay_machine, replay_scenario

EVENTS = ("syscalls/sys_enter_futex", "syscalls/sys_exit_futex")
_CALL = re.compile(r"-(\d+)\s+\[\d+\].*?\s(\d+\.\d+): sys_futex(\(uaddr: (0x[0-9a-f]+), op: (0x[0-9a-f]+).*"
                   r"utime: (0x[0-9a-f]+|0)| -> (0x[0-9a-f]+))")
_TIMEDOUT = -110 & 0xFFFFFFFFFFFFFFFF  # -ETIMEDOUT as the tracepoint prints it
_FUTEX_WAIT_BITSET_PRIVATE = "0x89"


def mixed() -> a.Workload:
    """The validation suite's mixed workload."""
    return a.Workload(name="mixed", arrivals=a.Batch(count=80), task=(a.cpu(0.004), a.io(0.04), a.cpu(0.002)))


def offload() -> a.Workload:
    """The validation suite's offload-0.5ms workload."""
    return a.Workload(name="offload-0.5ms", arrivals=a.Batch(count=120),
                      task=(a.cpu(0.0005), a.io(0.02), a.cpu(0.0005)))


WORKLOADS = {"mixed": mixed, "offload": offload}


def gil_waits(raw: str, gap: float = 2e-4) -> dict[int, list[tuple[float, int, int]]]:
    """Per thread id: each GIL wait as (seconds, wake-ups, timeouts), from a raw trace of futex calls. The GIL's
    condition variable is the two futex words most waited on with a timeout (glibc's two signal groups); waits
    less than `gap` apart are one GIL wait."""
    calls: list[tuple[int, float, str, str, bool, str]] = []
    for line in raw.splitlines():
        if m := _CALL.search(line):
            calls.append((int(m.group(1)), float(m.group(2)), m.group(4) or "", m.group(5) or "",
                          (m.group(6) or "0") != "0", m.group(7) or ""))
    timed: dict[str, int] = defaultdict(int)
    for _tid, _t, addr, op, has_timeout, _ret in calls:
        if op == _FUTEX_WAIT_BITSET_PRIVATE and has_timeout:
            timed[addr] += 1
    words = set(sorted(timed, key=timed.__getitem__, reverse=True)[:2])
    pending: dict[int, float] = {}
    spans: dict[int, list[tuple[float, float, bool]]] = defaultdict(list)  # tid -> (enter, exit, timed out)
    for tid, t, addr, op, _has_timeout, ret in calls:
        if addr:
            if addr in words and op == _FUTEX_WAIT_BITSET_PRIVATE:
                pending[tid] = t
            else:
                pending.pop(tid, None)
        elif tid in pending:
            spans[tid].append((pending.pop(tid), t, int(ret, 16) == _TIMEDOUT))
    out: dict[int, list[tuple[float, int, int]]] = {}
    for tid, seq in spans.items():
        waits: list[list[float]] = []  # [start, end, wake-ups, timeouts]
        for enter, leave, timed_out in seq:
            if not waits or enter - waits[-1][1] >= gap:
                waits.append([enter, leave, 0, 0])
            w = waits[-1]
            w[1] = leave
            w[3 if timed_out else 2] += 1
        out[tid] = [(w[1] - w[0], int(w[2]), int(w[3])) for w in waits]
    return out


def traced_run(sc: Any) -> tuple[Any, dict[int, list[tuple[float, int, int]]]]:
    """A real run of `sc` with this process's futex calls traced: its output and the GIL waits per thread."""
    pid = os.getpid()
    _write("trace", "")
    for event in EVENTS:
        _write(f"events/{event}/filter", f"common_pid >= {pid}")  # this process's threads (their ids follow)
        _write(f"events/{event}/enable", "1")
    _write("tracing_on", "1")
    try:
        out = run_real(sc, time_scale=1.0, loop="asyncio")
    finally:
        _write("tracing_on", "0")
        for event in EVENTS:
            _write(f"events/{event}/enable", "0")
            _write(f"events/{event}/filter", "0")
    raw = (TRACING / "trace").read_text()
    _write("trace", "")
    return out, gil_waits(raw)


@contextmanager
def model_waits() -> Iterator[tuple[dict[int, list[float]], list[int]]]:
    """Log the simulator's GIL waits per SimThread while inside: (waits by thread id, the loop threads' ids)."""
    waits: dict[int, list[float]] = defaultdict(list)
    loops: list[int] = []
    acquire, loop_init = cpu.Gil.acquire, cpu.Loop.__init__

    def logged(self: cpu.Gil, thread: cpu.SimThread) -> Any:
        event = acquire(self, thread)
        if event is not None:
            since = self.env.now
            event.callbacks.append(lambda _e: waits[id(thread)].append(self.env.now - since))
        return event

    def noted(self: cpu.Loop, env: Any, thread: cpu.SimThread) -> None:
        loops.append(id(thread))
        loop_init(self, env, thread)

    cpu.Gil.acquire, cpu.Loop.__init__ = logged, noted  # type: ignore[method-assign]
    try:
        yield waits, loops
    finally:
        cpu.Gil.acquire, cpu.Loop.__init__ = acquire, loop_init  # type: ignore[method-assign]


def _line(who: str, waits: list[float], wakes: int | None = None, timeouts: int | None = None) -> str:
    w = sorted(waits)
    text = (f"{who}: {len(w)} GIL waits, {sum(w) * 1e3:.0f} ms in all, median {statistics.median(w) * 1e3:.1f} ms, "
            f"p90 {w[int(0.9 * len(w))] * 1e3:.1f} ms, longest {w[-1] * 1e3:.1f} ms")
    if wakes is not None and timeouts is not None:
        text += f"; per wait {wakes / len(w):.1f} wake-ups, {timeouts / len(w):.1f} timeouts"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--strategy", default="asyncio:10+threads:4")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mixed")
    args = parser.parse_args(argv)
    why = tracing_unavailable()
    if why is not None:
        print(f"tracing unavailable: {why}")
        return 0
    strategy = parse_strategy(args.strategy)
    if not (strategy.on_loop and strategy.threaded):
        parser.error(f"--strategy: an asyncio+threads strategy, got {args.strategy!r}")
    profile: MachineProfile = calibrate(repeats=1)
    sc = build_scenario(WORKLOADS[args.workload](), seed=0, strategy=strategy)
    machine = profile.machine_for(strategy, sc.workload.machine, time_scale=1.0, loop="asyncio", emulated_waits=True)
    run_real(sc, time_scale=1.0, loop="asyncio")  # warm up
    me = os.getpid()
    for k in range(args.runs):
        out, real = traced_run(sc)
        with model_waits() as (sim, loops):
            replayed = run_scenario(replay_scenario(sc, out), replay_machine(machine, strategy, out), engine="des")
        measured = result_of(sc, out)
        err = relative_errors(result_of(sc, replayed), measured)["t_total"]
        print(f"run {k + 1}: real T_total {measured.t_total * 1e3:.0f} ms, replayed {err:+.1%}")
        loop = real.get(me, [])
        if loop:
            print("   real loop thread     " + _line("", [w for w, _, _ in loop], sum(n for _, n, _ in loop),
                                                     sum(n for _, _, n in loop)).lstrip(": "))
        workers = [w for tid, ws in real.items() if tid != me for w in ws]
        if workers:
            print("   real executor threads " + _line("", [w for w, _, _ in workers],
                                                      sum(n for _, n, _ in workers),
                                                      sum(n for _, _, n in workers)).lstrip(": "))
        model_loop = [w for tid in loops for w in sim.get(tid, [])]
        model_workers = [w for tid, ws in sim.items() if tid not in loops for w in ws]
        if model_loop:
            print("   replayed loop thread " + _line("", model_loop).lstrip(": "))
        if model_workers:
            print("   replayed executor threads " + _line("", model_workers).lstrip(": "))
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
