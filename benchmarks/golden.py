"""Byte-identical outputs: a digest of `run --json` for every shipped model under every strategy family.

    python benchmarks/golden.py --check       # compare with benchmarks/golden.json (exit 1 on any change)
    python benchmarks/golden.py --write       # record the current outputs' digests (after an intended change)

A refactoring that must not change behaviour (issue 11: one interpreter for every executor) is checked with
`--check` before it lands: the JSON of each run — every metric, to the last bit — must hash the same. It runs
the discrete-event engine (`engine="des"`); tests/test_fast.py holds the fast path to the same results. With
`--diff DIR` the outputs themselves are written to DIR, so two trees can be compared with `diff -r`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "benchmarks" / "golden.json"
STRATEGIES = ["sequential", "threads:8", "processes:2", "asyncio", "asyncio:16", "asyncio:16+threads:2",
              "asyncio:16+processes:2"]
SEEDS = (0, 1)


def outputs() -> dict[str, str]:
    """`run --json` (a Result's `to_dict()` with its flat metrics) for every model × strategy × seed."""
    sys.path.insert(0, str(ROOT))
    import asyncsim as a
    from asyncsim import _json
    from asyncsim.errors import ModelError

    out = {}
    for path in sorted((ROOT / "models").glob("*.yaml")):
        workload = a.load(path)
        for strategy in STRATEGIES:
            for seed in SEEDS:
                key = f"{path.stem} {strategy} {seed}"
                try:
                    result = a.simulate(workload, strategy=strategy, seed=seed, engine="des")
                except ModelError as exc:  # a pipeline under a blocking strategy: the refusal is the output
                    out[key] = str(exc)
                    continue
                out[key] = _json.dumps({**result.to_dict(), "events": result.events})
    return out


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="compare with the recorded digests")
    group.add_argument("--write", action="store_true", help="record the digests of the current outputs")
    parser.add_argument("--diff", metavar="DIR", help="also write every output to DIR (one file per run)")
    args = parser.parse_args(argv)
    current = outputs()
    if args.diff:
        folder = Path(args.diff)
        folder.mkdir(parents=True, exist_ok=True)
        for key, text in current.items():
            (folder / (key.replace(" ", "_").replace(":", "-").replace("+", "_") + ".json")).write_text(text)
    digests = {key: digest(text) for key, text in current.items()}
    if args.write:
        GOLDEN.write_text(json.dumps(digests, indent=1) + "\n")
        print(f"recorded {len(digests)} outputs in {GOLDEN.relative_to(ROOT)}")
        return 0
    recorded = json.loads(GOLDEN.read_text())
    changed = sorted(k for k in recorded.keys() | digests.keys() if recorded.get(k) != digests.get(k))
    for key in changed:
        print(f"changed: {key}")
    print(f"{len(digests) - len(changed)} of {len(digests)} outputs identical")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
