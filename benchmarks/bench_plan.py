"""Plan benchmark: wall time of a capacity plan with a fixed number of replications against adaptive ones.

    python benchmarks/bench_plan.py [--quick]

For llm_batch (which asyncio limit finishes the batch soonest without losing tickets) and rag_query (which
asyncio limit keeps p95 under 4.5 s at 8 requests/s), the same plan runs side by side: with a fixed
`-r 20` at every setting, and adaptively (`-r 5 --max-replications 40 --precision 2%`: more runs only while
a setting's SLO decision is open or its T_total is less precise than 2%). Prints, per model and way: the
answer, the simulations run and the wall time, and the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from asyncsim.plan import parse_slo, parse_vary, plan
from asyncsim.sweep import load_raw

ROOT = Path(__file__).resolve().parent.parent
# (model, --vary, SLOs, what it asks)
CASES = [
    ("llm_batch", "strategy=asyncio:1..64", ["t_total < 15m"], "the asyncio limit that finishes soonest"),
    ("rag_query", "strategy=asyncio:1..64", ["p95 < 4.5s"], "the asyncio limit that keeps p95 under 4.5 s"),
]


def _timed(raw: dict[str, Any], base: Path, vary: str, slos: list[str], **how: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = plan(raw, vary=parse_vary(vary), slos=[parse_slo(s) for s in slos], base_dir=base, **how)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="rag_query only, fewer replications")
    args = parser.parse_args(argv)
    cases = CASES[1:] if args.quick else CASES
    fixed_r = 6 if args.quick else 20
    print(f"{'model':<11} {'way':<40} {'answer':>14} {'runs':>6} {'wall':>8}")
    for name, vary, slos, what in cases:
        raw, base = load_raw(ROOT / "models" / f"{name}.yaml")
        fixed, t_fixed = _timed(raw, base, vary, slos, replications=fixed_r)
        adaptive, t_adaptive = _timed(raw, base, vary, slos, replications=5, max_replications=40, precision=0.02)
        for way, result, seconds in ((f"fixed -r {fixed_r}", fixed, t_fixed),
                                     ("adaptive -r 5..40, precision 2%", adaptive, t_adaptive)):
            print(f"{name:<11} {way:<40} {result.value!s:>14} {result.runs:>6} {seconds:>7.1f}s")
        print(f"{name:<11} {what}: adaptive/fixed wall time {t_adaptive / t_fixed:.2f}x, runs "
              f"{adaptive.runs}/{fixed.runs}; same answer: {adaptive.value == fixed.value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
