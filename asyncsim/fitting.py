"""From a real run to a model (issue 15, first part): fit distributions with a stated rule, and a service from
an LLM call log — latency as ttft + tpot × tokens, token sizes, failure rates, the rate limit when the log
carries it — written as a commented services block that `asyncsim twin --services` and model files read.

The selection rule (`select`): lognormal, gamma and exponential are fitted by maximum likelihood (scipy.stats,
location 0); the one with the lowest AIC is kept if a Kolmogorov–Smirnov test does not reject it (p ≥ 0.01);
otherwise the samples themselves are used (empirical). A sample with no spread is a constant.

A call log (`read_calls`, format `openai-log`) is JSON lines, one per request attempt: when it was sent
(`t`, `sent` or `timestamp`, seconds) and when it ended (`end`, or `duration` / `latency` after it), its
`status`, its tokens (`tokens_in` / `tokens_out`, or `usage` with `prompt_tokens` / `completion_tokens` or
Anthropic's `input_tokens` / `output_tokens`), and optionally `service` (or `model`), `retry_after` and the
`x-ratelimit-limit-requests` / `-tokens` values (`ratelimit_limit_requests`, `ratelimit_limit_tokens`).
`asyncsim serve --log` writes it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dists import Constant, Dist, Empirical, Exponential, Gamma, Lognormal
from .errors import ModelError
from .report import header, metadata, plotting, png, write_report

__all__ = ["Call", "Fitted", "ServiceFit", "fit_report", "fit_service", "read_calls", "select", "services_yaml"]

FAMILIES = ("lognormal", "gamma", "exponential")
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")
KS_ALPHA = 0.01


@dataclass(frozen=True)
class Fitted:
    """A distribution fitted to `n` samples: the one kept (`family`), each candidate's AIC, the KS p-value of
    the one kept (None for a constant or empirical), and the samples (for the report's plots)."""

    dist: Dist
    family: str
    n: int
    aic: dict[str, float]
    ks_p: float | None
    samples: np.ndarray = field(repr=False)

    def yaml(self) -> Any:
        """The model-file form: a number, or `{family: {...}}`."""
        d = self.dist
        if isinstance(d, Constant):
            return _round(d.value)
        if isinstance(d, Empirical):
            return {"empirical": {"values": [_round(v) for v in self.samples.tolist()]}}
        if isinstance(d, Exponential):
            return {"exponential": {"mean": _round(d.mean)}}
        return {self.family: {"mean": _round(d.mean), "cv": _round(d.cv)}}

    def comment(self) -> str:
        """Where it came from, for the YAML."""
        if self.family == "constant":
            return f"constant: all {self.n} samples equal"
        rivals = ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.aic.items(), key=lambda kv: kv[1]))
        if self.family == "empirical":
            return f"empirical: {self.n} samples (no family passed KS at p ≥ {KS_ALPHA}; AIC {rivals})"
        return f"{self.family}: n {self.n}, AIC {rivals}, KS p {self.ks_p:.2g}"


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def select(samples: Sequence[float] | np.ndarray, families: Sequence[str] = FAMILIES) -> Fitted:
    """Fit each family to `samples` (≥ 0) and keep the best by AIC if KS does not reject it (module docstring).

    Raises:
        ModelError: fewer than two samples, or a negative or non-finite one.
    """
    from scipy import stats

    data = np.asarray(samples, dtype=float)
    if data.size < 2 or not np.all(np.isfinite(data)) or np.any(data < 0):
        raise ModelError(f"fit: needs at least two finite samples >= 0 (got {data.size})")
    if np.ptp(data) <= 1e-12 * max(1.0, abs(float(data.mean()))):
        return Fitted(Constant(float(data.mean())), "constant", data.size, {}, None, data)
    positive = data[data > 0]
    scipy_of = {"lognormal": stats.lognorm, "gamma": stats.gamma, "exponential": stats.expon}
    aic: dict[str, float] = {}
    params: dict[str, tuple[float, ...]] = {}
    for family in families:
        dist = scipy_of[family]
        with np.errstate(all="ignore"):
            p = dist.fit(positive, floc=0)
            loglik = float(np.sum(dist.logpdf(positive, *p)))
        if math.isfinite(loglik):
            k = len(p) - 1  # the location is fixed at 0
            aic[family] = 2 * k - 2 * loglik
            params[family] = p
    if not aic:
        return Fitted(Empirical(values=tuple(data.tolist())), "empirical", data.size, aic, None, data)
    best = min(aic, key=aic.__getitem__)
    p_value = float(stats.kstest(positive, scipy_of[best].cdf, args=params[best]).pvalue)
    if p_value < KS_ALPHA:
        return Fitted(Empirical(values=tuple(data.tolist())), "empirical", data.size, aic, p_value, data)
    p = params[best]
    if best == "exponential":
        dist_: Dist = Exponential(p[1])
    elif best == "lognormal":
        dist_ = Lognormal(mu=math.log(p[2]), sigma=p[0])
    else:
        dist_ = Gamma.model_validate({"mean": p[0] * p[2], "cv": 1 / math.sqrt(p[0])})
    return Fitted(dist_, best, data.size, aic, p_value, data)


# ------------------------------------------------------------------------------------------ call logs


@dataclass(frozen=True)
class Call:
    """One request attempt of a call log."""

    service: str
    sent: float
    end: float
    status: int
    tokens_in: float | None
    tokens_out: float | None
    retry_after: float | None = None
    limit_requests: float | None = None
    limit_tokens: float | None = None
    remaining_requests: float | None = None

    @property
    def latency(self) -> float:
        return self.end - self.sent


def _number(row: dict[str, Any], keys: Sequence[str], where: str, *, required: bool = False) -> float | None:
    for key in keys:
        value = row.get(key)
        if value is None and isinstance(row.get("usage"), dict):
            value = row["usage"].get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ModelError(f"{where}: {key} must be a number (got {value!r})")
            return float(value)
    if required:
        raise ModelError(f"{where}: give {' or '.join(keys)}")
    return None


def read_calls(path: str | Path, fmt: str = "openai-log") -> list[Call]:
    """The request attempts of a call log (module docstring).

    Raises:
        ModelError: an unknown format, an unreadable file, or a line that is not a call (line and field named).
    """
    if fmt != "openai-log":
        raise ModelError(f"--format: {fmt!r} is not supported yet (supported: openai-log)")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelError(f"cannot read the call log: {exc.strerror}", source=str(path)) from None
    calls = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ModelError(f"{where}: a call is a JSON object")
        sent = _number(row, ("t", "sent", "timestamp"), where, required=True)
        status = _number(row, ("status", "status_code"), where, required=True)
        assert sent is not None  # required above
        assert status is not None
        end = _number(row, ("end",), where)
        if end is None:
            duration = _number(row, ("duration", "latency"), where, required=True)
            assert duration is not None
            end = sent + duration
        if end < sent:
            raise ModelError(f"{where}: it ends ({end}) before it was sent ({sent})")
        service = row.get("service") or row.get("model") or "llm"
        calls.append(Call(str(service), sent, end, int(status),
                          _number(row, ("tokens_in", "prompt_tokens", "input_tokens"), where),
                          _number(row, ("tokens_out", "completion_tokens", "output_tokens"), where),
                          _number(row, ("retry_after",), where),
                          _number(row, ("ratelimit_limit_requests", "x-ratelimit-limit-requests"), where),
                          _number(row, ("ratelimit_limit_tokens", "x-ratelimit-limit-tokens"), where),
                          _number(row, ("ratelimit_remaining_requests", "x-ratelimit-remaining-requests"), where)))
    if not calls:
        raise ModelError("the call log holds no calls", source=str(path))
    return calls


@dataclass(frozen=True)
class ServiceFit:
    """A service fitted from its calls: each distribution, the latency model, the counts behind them."""

    name: str
    attempts: int
    ok: int
    rate_limited: int
    server_errors: int
    latency: Fitted | None = None  # when tokens are not known, or do not explain the latency
    ttft: Fitted | None = None
    tpot: float | None = None
    r2: float | None = None
    tokens_in: Fitted | None = None
    tokens_out: Fitted | None = None
    rpm: float | None = None
    tpm: float | None = None
    burst_requests: float | None = None
    retry_after: str | None = None

    def distributions(self) -> dict[str, Fitted]:
        """Each fitted distribution by its place in the service (for plots)."""
        named = {"latency": self.latency, "ttft": self.ttft, "tokens.input": self.tokens_in,
                 "tokens.output": self.tokens_out}
        return {k: v for k, v in named.items() if v is not None}


def fit_service(name: str, calls: Sequence[Call]) -> ServiceFit:
    """Fit `name`'s latency, tokens, failure rates and (from the log's headers) rate limit.

    Latency: over the OK attempts, a least-squares line latency = ttft + tpot × (output tokens − 1) when
    output tokens are known and the slope is positive and significant (p < 0.01, scipy.stats.linregress);
    ttft is then fitted to latency − tpot × (output − 1). Otherwise latency itself is fitted.

    Raises:
        ModelError: fewer than two OK attempts.
    """
    ok = [c for c in calls if 200 <= c.status < 300]
    if len(ok) < 2:
        raise ModelError(f"fit: service {name!r} has {len(ok)} successful call(s); at least two are needed")
    limited = sum(c.status == 429 for c in calls)
    errors = sum(c.status >= 500 for c in calls)
    lat = np.array([c.latency for c in ok])
    out = np.array([c.tokens_out if c.tokens_out is not None else np.nan for c in ok])
    fitted: dict[str, Any] = {}
    if np.all(np.isfinite(out)) and np.ptp(out) > 0:
        from scipy import stats

        x = np.maximum(out - 1, 0)
        line = stats.linregress(x, lat)
        if line.slope > 0 and line.pvalue < 0.01:
            fitted |= {"ttft": select(np.maximum(lat - line.slope * x, 0.0)), "tpot": float(line.slope),
                       "r2": float(line.rvalue**2)}
    if "ttft" not in fitted:
        fitted["latency"] = select(lat)
    tin = [c.tokens_in for c in ok if c.tokens_in is not None]
    tout = [c.tokens_out for c in ok if c.tokens_out is not None]
    if len(tin) >= 2:
        fitted["tokens_in"] = select(tin)
    if len(tout) >= 2:
        fitted["tokens_out"] = select(tout)
    rpm = max((c.limit_requests for c in calls if c.limit_requests), default=None)
    # a full bucket answers "remaining: capacity − 1": the most it ever said, plus one, is its burst (when below
    # a minute's worth, the provider enforces the limit over a shorter window)
    left = [c.remaining_requests for c in calls if c.remaining_requests is not None and 200 <= c.status < 300]
    burst = max(left) + 1 if left and rpm and max(left) + 1 < rpm else None
    tpm = max((c.limit_tokens for c in calls if c.limit_tokens), default=None)
    after = [c.retry_after for c in calls if c.status == 429 and c.retry_after is not None]
    mode = None
    if after:
        mode = "ceil_seconds" if all(float(a).is_integer() for a in after) else "exact"
    elif limited:
        mode = "none"
    return ServiceFit(name, len(calls), len(ok), limited, errors, rpm=rpm, tpm=tpm, burst_requests=burst,
                      retry_after=mode, **fitted)


def services_yaml(fits: Sequence[ServiceFit], source: str) -> str:
    """The commented services block of `fits` (a file `asyncsim twin --services` and model files read)."""
    import yaml

    def dump(value: Any) -> str:
        if not isinstance(value, dict | list):
            return f"{value:g}" if isinstance(value, float) else str(value)
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()

    lines = [f"# fitted by asyncsim fit from {source}: each number with where it came from", "services:"]
    for f in fits:
        lines += [f"  {f.name}:",
                  f"    # {f.attempts} attempts: {f.ok} OK, {f.rate_limited} rate-limited (429), "
                  f"{f.server_errors} server errors (5xx)"]
        if _HOST.fullmatch(f.name):  # a recorded log names services by host: the twin answers it there
            lines.append(f"    host: {f.name}")
        if f.ttft is not None:
            lines += [f"    # latency = ttft + tpot × (output tokens − 1): least squares over {f.ok} OK calls, "
                      f"R² {f.r2:.2f}",
                      f"    ttft: {dump(f.ttft.yaml())}    # {f.ttft.comment()}",
                      f"    tpot: {_round(f.tpot or 0.0)}    # seconds per output token (the slope)"]
        elif f.latency is not None:
            lines.append(f"    latency: {dump(f.latency.yaml())}    # {f.latency.comment()}")
        tokens = {}
        if f.tokens_in is not None:
            tokens["input"] = f.tokens_in
        if f.tokens_out is not None:
            tokens["output"] = f.tokens_out
        elif f.ttft is not None:
            raise ModelError(f"fit: service {f.name!r}: ttft and tpot need output tokens")
        if tokens:
            lines.append("    tokens:")
            lines += [f"      {k}: {dump(v.yaml())}    # {v.comment()}" for k, v in tokens.items()]
        if f.server_errors:
            lines.append(f"    failures: {{server_error: {_round(f.server_errors / f.attempts)}}}    "
                         f"# {f.server_errors} of {f.attempts} attempts")
        if f.rpm or f.tpm:
            limit = {k: v for k, v in (("rpm", f.rpm), ("tpm", f.tpm), ("burst_requests", f.burst_requests)) if v}
            why = ("; burst_requests: the most x-ratelimit-remaining-requests said, plus one" if f.burst_requests
                   else " (no smaller burst seen in x-ratelimit-remaining: a minute's worth)")
            lines.append(f"    rate_limit: {dump(limit)}    # from the x-ratelimit-limit headers it logged{why}")
        elif f.rate_limited:
            lines.append(f"    # rate limit: {f.rate_limited} 429s, but the log carries no x-ratelimit-limit "
                         "values: set rate_limit (rpm, tpm) yourself")
        if f.retry_after is not None:
            lines.append(f"    server: {{retry_after: {f.retry_after}}}    # the 429s' retry-after, as logged")
    return "\n".join(lines) + "\n"


def fit_report(fits: Sequence[ServiceFit], source: str, out_dir: str | Path, yaml_text: str,
               command: Sequence[str] | None = None) -> Path:
    """The fit report: per service the counts and the latency model, and for each distribution its samples'
    CDF against the fitted one's (figures), then the YAML. Returns the report's path."""
    figures: dict[str, bytes | None] = {}
    lines = header(f"Fitted from {source}", meta=metadata(command),
                   question="which distributions and service parameters describe the logged calls?",
                   answer="; ".join(f"{f.name}: " + ", ".join(f"{k} {v.family}" for k, v in
                                                               f.distributions().items()) for f in fits) + ".")
    rng = np.random.default_rng(0)
    for f in fits:
        lines += [f"## {f.name}", "", f"{f.attempts} attempts: {f.ok} OK, {f.rate_limited} 429s, "
                  f"{f.server_errors} 5xx." + (f" Latency = ttft + {f.tpot:.4g} s × (output tokens − 1), R² "
                                               f"{f.r2:.2f}." if f.ttft is not None else ""), "",
                  "| what | kept | samples | AIC (lower is better) | KS p |", "| --- | --- | ---: | --- | ---: |"]
        for what, fitted in f.distributions().items():
            aic = ", ".join(f"{k} {v:.1f}" for k, v in sorted(fitted.aic.items(), key=lambda kv: kv[1])) or "-"
            ks = "-" if fitted.ks_p is None else f"{fitted.ks_p:.2g}"
            lines.append(f"| {what} | {fitted.family} | {fitted.n} | {aic} | {ks} |")
        plt, sns = plotting()
        dists = f.distributions()
        fig, axes = plt.subplots(1, len(dists), figsize=(4.2 * len(dists), 3.2), squeeze=False)
        for ax, (what, fitted) in zip(axes[0], dists.items(), strict=True):
            sns.ecdfplot(fitted.samples, ax=ax, label="logged")
            sns.ecdfplot(fitted.dist.sample(rng, 20_000), ax=ax, label=f"fitted ({fitted.family})", linestyle="--")
            ax.set_title(what)
            ax.legend()
        name = f"cdf_{f.name}.png"
        figures[name] = png(fig)
        lines += ["", f"![CDFs of {f.name}: logged vs fitted]({name})", ""]
    lines += ["## The services block", "", "```yaml", yaml_text.rstrip(), "```"]
    return write_report(out_dir, lines, figures)
