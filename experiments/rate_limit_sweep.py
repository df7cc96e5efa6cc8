"""Concurrency limit under a rate limit: how many requests in flight finish a batch soonest without losing any?

    python experiments/rate_limit_sweep.py            # writes reports/rate_limit_sweep/ (report.md, PNGs, CSV)
    python experiments/rate_limit_sweep.py --quick    # a small grid, few replications (used by the tests)

models/llm_batch.yaml: 2,000 chat completions against 500 RPM / 200k TPM (charged on prompt + max_tokens),
openai-python's retries (2, honouring retry-after). The asyncio limit is swept, first as the model is (the
server answers 429 when a bucket is short), then with a client-side limiter at 95% of both limits. Pure
simulation; each run's lower bounds come from `asyncsim.bounds`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import _ai

from asyncsim.plan import parse_vary, plan
from asyncsim.report import fmt_s, header, metadata, publish
from asyncsim.sweep import load_raw

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "llm_batch.yaml"
LIMITS = [1, 2, 4, 6, 8, 10, 12, 16, 24, 32, 64]
QUICK_LIMITS = [2, 8, 16, 64]
SHARE = 0.95  # the client limiter's share of the server's limits
SERVER, LIMITER = "server 429s only", f"client limiter at {SHARE:.0%}"
# client libraries compared on the same key (services.llm.client), at limits around and above the safe one
CLIENTS = ["openai-python", "openai-python-1", "tenacity-random-exponential", "openai-cookbook-processor"]
CLIENT_LIMITS, QUICK_CLIENT_LIMITS = [8, 16, 64], [16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 limits and 3 replications")
    parser.add_argument("--out", default=str(ROOT / "reports" / "rate_limit_sweep"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replications", "-r", type=int, default=None, help="runs per point (default 20, quick 3)")
    parser.add_argument("--workers", "-w", type=int, default=2)
    args = parser.parse_args(argv)
    reps = args.replications or (3 if args.quick else 20)
    limits = QUICK_LIMITS if args.quick else LIMITS
    raw, _base = load_raw(MODEL)
    rate = raw["services"]["llm"]["rate_limit"]
    client = {"rpm": rate["rpm"] * SHARE, "tpm": rate["tpm"] * SHARE, "count_max_tokens": True}
    points = [{"strategy": f"asyncio:{k}", **({"services.llm.client_limit": client} if side == LIMITER else {})}
              for side in (SERVER, LIMITER) for k in limits]
    frame = _ai.run(raw, points, replications=reps, seed=args.seed, workers=args.workers)
    frame["limit"] = frame["strategy"].str.removeprefix("asyncio:").astype(int)
    frame["client"] = [SERVER if "services.llm.client_limit" not in points[p] else LIMITER for p in frame["point"]]
    frame["failed_max"] = frame.groupby("point")["failed"].transform("max")
    # the floor no limit can beat: the largest bound other than the concurrency cap itself
    rate_cols = [c for c in frame.columns if c.startswith("bound.") and not c.startswith("bound.concurrency")]
    frame["floor"] = frame[rate_cols].max(axis=1)
    summary = _ai.summarize(frame, ["client", "limit", "strategy"])

    def rows(side: str) -> object:
        return summary[summary["client"] == side].sort_values("limit")

    server, limited = rows(SERVER), rows(LIMITER)
    safe = server[server["failed_max_mean"] == 0]
    best = safe.loc[safe["t_total_mean"].idxmin()]
    floor = float(best["floor_mean"])
    floor_name = _floor_name(frame[frame["client"] == SERVER], rate_cols, rate)
    lossy = server[server["failed_mean"] > 0]
    first_loss = lossy.iloc[0] if len(lossy) else None
    worst = server.iloc[-1]
    lim_safe = limited[limited["failed_max_mean"] == 0]
    lim_429 = float(limited["svc.llm.rate_limited_mean"].max())
    lim_best = None
    if len(lim_safe):  # the smallest limit within 1% of the limiter's best time
        fastest = float(lim_safe["t_total_mean"].min())
        lim_best = lim_safe[lim_safe["t_total_mean"] <= fastest * 1.01].iloc[0]

    planned = plan(raw, vary=parse_vary(f"strategy=asyncio:1..{max(limits)}"), slos=[], replications=reps,
                   seed=args.seed)
    answer = (
        f"a limit of {best['limit']} ({best['strategy']}) has the highest goodput of the limits that lose no ticket: "
        f"{best['goodput_mean']:.3g} tickets/s, all {int(best['completed_mean']):,} in {fmt_s(best['t_total_mean'])} "
        f"± {fmt_s(best['t_total_ci95'])} for ${best['cost_mean']:.2f}, {best['t_total_mean'] / floor - 1:.0%} above "
        f"the {fmt_s(floor)} floor of the {floor_name} limit ({best['limit']} in flight alone need "
        f"{fmt_s(best['binding_s_mean'])}); searching every limit from 1 to {max(limits)}, `asyncsim plan` finds "
        f"{planned.value} to be the fastest that loses none ({fmt_s(planned.point.mean['t_total'])}; "
        f"{planned.evaluations} of the {max(limits)} settings evaluated)"
    )
    if first_loss is not None:
        answer += (f"; from {first_loss['limit']} up, 429s outlast openai-python's 2 retries and tickets are lost "
                   f"({first_loss['failed_mean']:,.0f} at {first_loss['limit']}, {worst['failed_mean']:,.0f} "
                   f"({worst['failed_fraction_mean']:.0%}) at {worst['limit']}): those runs end sooner only because "
                   "they did less, and the lost tickets would have to be sent again")
    if lim_best is not None:
        answer += (f"; a client-side limiter at {SHARE:.0%} of both limits leaves {lim_429:.0f} 429s and finishes "
                   f"every ticket in {fmt_s(lim_best['t_total_mean'])} ({lim_best['goodput_mean']:.3g} tickets/s) with "
                   f"any limit from {lim_best['limit']} up, "
                   f"{lim_best['t_total_mean'] / lim_best['floor_mean'] - 1:.1%} above its own "
                   f"{fmt_s(lim_best['floor_mean'])} floor.")
    else:
        answer += "."
    libraries, library_lines = _libraries(raw, client, QUICK_CLIENT_LIMITS if args.quick else CLIENT_LIMITS, reps,
                                          args)
    answer = answer.rstrip(".") + "; " + library_lines[0] + "."
    command = ["python", "experiments/rate_limit_sweep.py", *(argv if argv is not None else sys.argv[1:])]
    meta = metadata(command, seed=args.seed)
    lines = header("Concurrency limit under a rate limit", meta=meta,
                   question=f"for {int(best['completed_mean'] + best['failed_mean']):,} chat completions against "
                            f"{rate['rpm']:,g} RPM / {rate['tpm']:,g} TPM (charged on max_tokens) with openai-python's "
                            "retries, which asyncio limit finishes soonest without losing tickets to 429s, how far "
                            "above the rate limit's floor is it, and what does a client-side limiter change?",
                   answer=answer[0].upper() + answer[1:])
    lines += [
        "## Model", "",
        f"[`models/llm_batch.yaml`](../../models/llm_batch.yaml), swept over `strategy=asyncio:{{"
        f"{','.join(map(str, limits))}}}`; the second series adds `services.llm.client_limit: "
        f"{{rpm: {client['rpm']:g}, tpm: {client['tpm']:g}, count_max_tokens: true}}` (the client waits for its "
        f"own token buckets, {SHARE:.0%} of the server's, before sending). {reps} replications per point (seeds "
        f"derived from {args.seed}, the same at every point: paired), 95% confidence bands (Student t).", "",
        *_ai.yaml_block(MODEL), "",
        "## T_total and the floor", "",
        "![T_total against the asyncio limit](t_total.png)", "",
        "Dotted lines: the floor no concurrency limit can beat, the largest lower bound of `asyncsim.bounds` "
        "other than the concurrency cap (a minute's burst, then the rest of the tokens at the TPM rate; the "
        "client limiter's floor is 1/0.95 of the server's). Dashed: each point's binding bound, which is the "
        "concurrency cap while the limit is small (tasks × their own time / limit). A T_total *below* the floor "
        "means tickets were lost: a failed ticket stops charging tokens.", "",
        "## 429s, retries and lost tickets", "",
        "![429s, retries, lost tickets and goodput against the limit](errors.png)", "",
        "A 429 costs no tokens (the server refuses before generating); *tokens wasted* are those of accepted "
        "attempts that then failed with a 5xx (1% of attempts): the same at every limit while every ticket "
        "completes, fewer once tickets are lost before the server accepts them. With TPM charged on "
        "prompt + max_tokens (≈1,300 per request) and ≈3.4 s per answer, "
        "8 requests in flight ask for ≈185k TPM — just under the limit; from 10 up the bucket runs dry, the "
        "server answers 429 with a retry-after, the retries arrive together and a ticket that gets three 429s "
        "is lost. The limiter instead holds requests back (the *throttled* state) until its buckets allow them, "
        "so the server never refuses one and extra concurrency only waits.", "",
        "## Numbers", "", *_table(summary), "",
        "⚠ loses tickets: its T_total and goodput cover only what it completed, so it is not ranked. Cost is "
        "gpt-4o-mini's list price on the tokens of every request the server accepted (a 429 costs nothing; an "
        "answer that then failed with a 5xx does).", "",
        "The per-point summary (every service and bound column) is in [`summary.csv`](summary.csv).", "",
        *library_lines[1:],
    ]
    floors = {SERVER: float(server["floor_mean"].mean()), LIMITER: float(limited["floor_mean"].mean())}
    figures = {
        "t_total.png": _ai.band_panels(
            summary, x="limit", hue="client", xlabel="asyncio limit (requests in flight)",
            panels=[{"metric": "t_total", "ylabel": "T_total (s), 95% CI band", "floor": floors, "logy": "log",
                     "mark_lossy": True,
                     "floor_label": "floor (rate limit)", "curve": "binding_s",
                     "curve_label": "binding bound at this limit"}], cols=1),
        "errors.png": _ai.band_panels(
            summary, x="limit", hue="client", xlabel="asyncio limit (requests in flight)",
            panels=[{"metric": "svc.llm.rate_limited", "ylabel": "429 responses", "logy": "symlog"},
                    {"metric": "svc.llm.retries", "ylabel": "retries", "logy": "symlog"},
                    {"metric": "failed", "ylabel": "tickets lost (failed after retries)", "logy": "symlog"},
                    {"metric": "goodput", "ylabel": "goodput (tickets completed / s)", "mark_lossy": True}]),
    }
    return publish(args.out, lines, figures, {"summary.csv": summary.to_csv(index=False),
                                                   "clients.csv": libraries.to_csv(index=False)})


def _libraries(raw: dict, limiter: dict, limits: list[int], reps: int, args: argparse.Namespace) -> tuple:
    """The same key and batch under each client library's retry rules (`services.llm.client`): which finishes
    soonest without losing tickets. The cookbook processor brings its own limiter (at 95%, as its user sets
    max_requests_per_minute) and pauses 15 s after a 429. Returns the summary and the report's lines (the
    first: the answer's clause)."""
    points = [{"strategy": f"asyncio:{k}", "services.llm.client": name,
               **({"services.llm.client_limit": limiter} if name == "openai-cookbook-processor" else {})}
              for name in CLIENTS for k in limits]
    frame = _ai.run(raw, points, replications=reps, seed=args.seed, workers=args.workers)
    frame["limit"] = frame["strategy"].str.removeprefix("asyncio:").astype(int)
    frame["library"] = [points[p]["services.llm.client"] for p in frame["point"]]
    frame["failed_max"] = frame.groupby("point")["failed"].transform("max")
    summary = _ai.summarize(frame, ["library", "limit", "strategy"])
    safe = summary[summary["failed_max_mean"] == 0]
    best = safe.loc[safe["t_total_mean"].idxmin()] if len(safe) else None
    lossy = sorted(set(summary[summary["failed_mean"] > 0]["library"]))
    clause = (f"compared on the same key at limits {', '.join(map(str, limits))}, the {best['library']} client "
              f"finishes the batch soonest without losing a ticket ({best['strategy']}, "
              f"{fmt_s(best['t_total_mean'])})" if best is not None else
              "no client library finishes the batch without losing tickets at the limits compared")
    if lossy:
        clause += f"; {', '.join(lossy)} lose tickets at the higher limits"
    lines = ["## Client libraries on the same key", "",
             f"`services.llm.client` set to each profile (their retry rules, read from each library's source: "
             f"see the README) at limits {', '.join(map(str, limits))}; the cookbook processor with its own "
             f"limiter at {SHARE:.0%}. {reps} replications per point.", "",
             "| client library | limit | T_total | completed | failed | 429s | retries |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for _, r in summary.sort_values(["library", "limit"]).iterrows():
        mark = " ⚠" if float(r["failed_mean"]) > 0 else ""
        lines.append(f"| {r['library']} | {r['limit']}{mark} | {fmt_s(r['t_total_mean'])} | "
                     f"{r['completed_mean']:,.0f} | {r['failed_mean']:,.0f} | {r['svc.llm.rate_limited_mean']:,.0f} | "
                     f"{r['svc.llm.retries_mean']:,.0f} |")
    lines += ["", "⚠ loses tickets. openai-python (3.60) honours a retry-after up to 120 s and openai-python-1 up "
              "to 60 s, then both back off 0.5 s doubling (2 retries); tenacity waits 1 s to 60 s at random "
              "(5 retries) and reads no retry-after; the cookbook processor pauses all sending for 15 s after a "
              "429 and retries up to 4 times. The rows are in [`clients.csv`](clients.csv)."]
    return summary, [clause, *lines]


def _floor_name(frame: object, cols: list[str], rate: dict) -> str:
    """The limit that sets the floor, in words (`200,000 TPM`)."""
    name = frame[cols].mean().idxmax().removeprefix("bound.")  # type: ignore[attr-defined]
    for unit in ("tpm", "rpm"):
        if f" {unit} " in name:
            return f"{rate[unit]:,g} {unit.upper()}"
    return name


def _table(summary: object) -> list[str]:
    def ci(row: object, col: str, fmt: object = None) -> str:
        mean, half = float(row[f"{col}_mean"]), float(row[f"{col}_ci95"])  # type: ignore[index]
        f = fmt or (lambda v: f"{v:.3g}" if abs(v) < 10 else f"{v:,.0f}")
        return f(mean) if math.isnan(half) or half == 0 else f"{f(mean)} ± {f(half)}"

    lines = ["| client | limit | runs | T_total | completed | failed | goodput/s | cost ($) | 429s | retries | "
             "tokens wasted | binding limit | its bound | floor |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for _, r in summary.sort_values(["client", "limit"], ascending=[False, True]).iterrows():  # type: ignore[attr-defined]
        mark = " ⚠" if float(r["failed_mean"]) > 0 else ""
        lines.append(f"| {r['client']} | {r['limit']}{mark} | {r['replications']} | {ci(r, 't_total', fmt_s)} | "
                     f"{ci(r, 'completed')} | {ci(r, 'failed')} | {ci(r, 'goodput')} | "
                     f"{ci(r, 'cost', lambda v: f'{v:.3f}')} | {ci(r, 'svc.llm.rate_limited')} | "
                     f"{ci(r, 'svc.llm.retries')} | {ci(r, 'svc.llm.tokens_wasted')} | {r['binding']} | "
                     f"{fmt_s(r['binding_s_mean'])} | {fmt_s(r['floor_mean'])} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
