"""Twin benchmark: how fast `asyncsim twin` runs a program whose real run takes over ten minutes.

Program: experiments/programs/summarise.py, unmodified — 2,000 summaries with the real openai client, 8 in
flight, 20 retries, against a key of 180 RPM (burst 10): the key alone holds the real run to ≥ 10 minutes (2,000 / 180
per minute). Prints, side by side in one run:

* the twin: wall time and CPU time of `twin.run_program`, the virtual elapsed time the program printed, the
  requests and 429s, and wall seconds per request (bounded by the client library's own CPU per request,
  which the twin runs for real: target ≤ 30 s in all);
* the simulator on the same services with the openai-python profile (`asyncio:8`): its wall time and
  predicted T_total, for scale.

Figures only: nothing here fails on timing. `--json PATH` also saves them.

    python benchmarks/bench_twin.py [--docs 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
from pathlib import Path

import asyncsim as a
from asyncsim import twin
from asyncsim.services import CLIENT_PROFILES

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "experiments" / "programs" / "summarise.py"
SERVICES = ROOT / "experiments" / "programs" / "summarise.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    sets = {"env.DOCS": args.docs, "env.CONCURRENCY": 8, "env.MAX_RETRIES": 20,
            "services.llm.rate_limit.rpm": 180}
    out = io.StringIO()
    w0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out):
        result = twin.run_program(PROGRAM, services=SERVICES, sets=sets, seed=0)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    printed = json.loads(out.getvalue().strip().splitlines()[-1])
    llm = result.services["llm"]

    services = twin.load_services(SERVICES, {"services.llm.rate_limit.rpm": 180})
    retry = a.Retry(**{**CLIENT_PROFILES["openai-python"].retry, "max_retries": 20})
    spec = services.services["llm"].model_copy(update={"client": "openai-python", "retry": retry})
    model = a.Workload(name="summarise", arrivals=a.Batch(count=args.docs), task=(a.call("llm"),),
                       services={"llm": spec})
    s0 = time.perf_counter()
    predicted = a.simulate(model, strategy="asyncio:8", seed=0)
    sim_wall = time.perf_counter() - s0

    figures = {
        "docs": args.docs, "twin_wall_s": wall, "twin_cpu_s": cpu, "virtual_elapsed_s": printed["elapsed"],
        "done": printed["done"], "failed": printed["failed"], "requests": llm.requests,
        "rate_limited": llm.rate_limited, "wall_ms_per_request": wall / max(1, llm.requests) * 1e3,
        "speedup": printed["elapsed"] / wall, "simulator_wall_s": sim_wall, "simulator_t_total_s": predicted.t_total,
        "python": platform.python_version(),
    }
    print(f"twin: {args.docs} summaries ({printed['failed']} failed), {llm.requests} requests "
          f"({llm.rate_limited} 429s), the program's own "
          f"clock {printed['elapsed'] / 60:.1f} min; wall {wall:.1f} s (CPU {cpu:.1f} s), "
          f"{figures['wall_ms_per_request']:.2f} ms per request, {figures['speedup']:.0f}x faster than real time")
    print(f"simulator (openai-python profile, asyncio:8): T_total {predicted.t_total / 60:.1f} min in "
          f"{sim_wall:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "command": sys.argv}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
