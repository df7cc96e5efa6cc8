"""From a real run to a model (issue 15): fit distributions with a stated rule; a service from an LLM call log
— latency as ttft + tpot × tokens, token sizes, failure rates, the rate limit when the log carries it —
written as a commented services block that `asyncsim twin --services` and model files read; and a whole
model (arrivals, task types and their steps, locks, services) from an `asyncsim record` folder (`fit_model`),
with a report that simulates it beside the recorded run (`model_report`).

The selection rule (`select`): lognormal, gamma and exponential are fitted by maximum likelihood (scipy.stats,
location 0); the one with the lowest AIC is kept if a Kolmogorov–Smirnov test does not reject it (p ≥ 0.01);
otherwise the samples themselves are used (empirical), as they are with fewer than MIN_SAMPLES (8) samples. A
sample with no spread is a constant.

A call log (`read_calls`, format `openai-log`) is JSON lines, one per request attempt: when it was sent
(`t`, `sent` or `timestamp`, seconds) and when it ended (`end`, or `duration` / `latency` after it), its
`status`, its tokens (`tokens_in` / `tokens_out`, or `usage` with `prompt_tokens` / `completion_tokens` or
Anthropic's `input_tokens` / `output_tokens`), and optionally `service` (or `model`), `retry_after` and the
`x-ratelimit-limit-requests` / `-tokens` values (`ratelimit_limit_requests`, `ratelimit_limit_tokens`).
`asyncsim serve --log` writes it. Format `otlp` reads the client spans of an OpenTelemetry JSON export
(`_otlp_calls`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .dists import Constant, Dist, Empirical, Exponential, Gamma, Lognormal
from .errors import ModelError
from .record import COUNTS, Check
from .report import header, metadata, plotting, png, write_report
from .spec import Workload
from .states import in_flight_steps, step_count

__all__ = ["Call", "Fitted", "ModelFit", "Recording", "ServiceFit", "fit_model", "fit_report", "fit_service",
           "model_report", "read_calls", "read_recording", "select", "services_yaml"]

FAMILIES = ("lognormal", "gamma", "exponential")
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")
KS_ALPHA = 0.01
MIN_SAMPLES = 8  # fewer samples than this are not fitted to a family: they are kept as they are (empirical)


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
        if self.family == "empirical" and self.n < MIN_SAMPLES:
            return f"empirical: only {self.n} samples (a family is fitted from {MIN_SAMPLES})"
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
    if positive.size < MIN_SAMPLES:  # (zeros are left out of the families' fits)
        return Fitted(Empirical(values=tuple(data.tolist())), "empirical", data.size, {}, None, data)
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
    client: str | None = None  # the User-Agent that sent it, when recorded

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
    if fmt not in FORMATS:
        raise ModelError(f"--format: {fmt!r} is not supported (supported: {', '.join(FORMATS)})")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelError(f"cannot read the call log: {exc.strerror}", source=str(path)) from None
    if fmt == "otlp":
        return _otlp_calls(text, path)
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
                          _number(row, ("ratelimit_remaining_requests", "x-ratelimit-remaining-requests"), where),
                          str(row["client"]) if row.get("client") else None))
    if not calls:
        raise ModelError("the call log holds no calls", source=str(path))
    return calls


FORMATS = ("openai-log", "otlp")
# OpenTelemetry attributes read from a client span (semantic conventions: HTTP, and GenAI for the tokens; the
# older names as instrumentations still send them)
_STATUS = ("http.response.status_code", "http.status_code")
_HOST_KEYS = ("server.address", "net.peer.name", "http.host", "gen_ai.system")
_TOKENS_IN = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
_TOKENS_OUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")


def _otlp_calls(text: str, path: Path) -> list[Call]:
    """The request attempts in an OTLP JSON export (one ExportTraceServiceRequest object, or one per line as
    the collector's file exporter writes): each client span (kind CLIENT) with an HTTP status or GenAI
    attributes is an attempt; its status is the HTTP one, else 200 for a span without an error and 500 with
    one; times are relative to the earliest span."""
    try:
        documents = [json.loads(text)]
    except json.JSONDecodeError:
        documents = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    documents.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ModelError(f"{path.name}: line {number}: not JSON ({exc.msg})") from None
    rows: list[tuple[str, int, int, int, float | None, float | None]] = []
    for d, document in enumerate(documents):
        if not isinstance(document, dict) or not isinstance(document.get("resourceSpans"), list):
            raise ModelError(f"{path.name}: document {d + 1}: not an OTLP trace export (no resourceSpans)")
        for r, resource in enumerate(document["resourceSpans"]):
            for c, scope in enumerate(resource.get("scopeSpans") or resource.get("instrumentationLibrarySpans") or []):
                for i, span in enumerate(scope.get("spans") or []):
                    where = f"{path.name}: resourceSpans[{r}].scopeSpans[{c}].spans[{i}]"
                    if span.get("kind") not in (3, "SPAN_KIND_CLIENT"):
                        continue
                    attrs = {a.get("key"): _otlp_value(a.get("value") or {}) for a in span.get("attributes") or []}
                    status = next((attrs[k] for k in _STATUS if k in attrs), None)
                    if status is None and not any(str(k).startswith("gen_ai.") for k in attrs):
                        continue  # not a call to an API
                    if status is None:
                        status = 500 if (span.get("status") or {}).get("code") in (2, "STATUS_CODE_ERROR") else 200
                    try:
                        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
                        code = int(status)
                    except (KeyError, TypeError, ValueError) as exc:
                        raise ModelError(f"{where}: needs startTimeUnixNano, endTimeUnixNano and a numeric "
                                         f"status ({exc})") from None
                    if end < start:
                        raise ModelError(f"{where}: it ends before it starts")
                    host = next((str(attrs[k]) for k in _HOST_KEYS if attrs.get(k)), str(span.get("name") or "llm"))
                    tin = next((float(attrs[k]) for k in _TOKENS_IN if k in attrs), None)
                    tout = next((float(attrs[k]) for k in _TOKENS_OUT if k in attrs), None)
                    rows.append((host, start, end, code, tin, tout))
    if not rows:
        raise ModelError("the OTLP export holds no client spans of API calls (kind CLIENT, with "
                         "http.response.status_code or gen_ai.* attributes)", source=str(path))
    t0 = min(r[1] for r in rows)
    return [Call(host, (start - t0) / 1e9, (end - t0) / 1e9, code, tin, tout)
            for host, start, end, code, tin, tout in sorted(rows, key=lambda r: r[1])]


def _otlp_value(value: dict[str, Any]) -> Any:
    """An OTLP AnyValue's Python value (intValue arrives as a string in JSON)."""
    for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if key in value:
            return int(value[key]) if key == "intValue" else value[key]
    return None


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
    # from a recording (`fit_model`): the client library (its User-Agent), the most retries a call took, the
    # connection cap it waited for (most attempts ever in flight, when tasks waited with that many)
    agent: str | None = None
    client: str | None = None
    max_retries: int | None = None
    connections: int | None = None
    connection_waits: int = 0
    retries_told: bool = False  # max_retries is the program's client's own (else the most a call took)
    connect: float | None = None  # the extra wait of the tasks that opened the connections, and how many did
    connecting: int = 0
    alias: str | None = None  # its name in the model when two hosts would share one

    @property
    def key(self) -> str:
        """Its name in a model: a host's main label (api.openai.com: openai; an address: api), else the name."""
        return self.alias or _service_key(self.name)

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
        lines += [f"  {f.key}:",
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
        lines += _client_lines(f)
    return "\n".join(lines) + "\n"


def _client_lines(f: ServiceFit) -> list[str]:
    lines = []
    if f.client is not None:
        lines.append(f"    client: {f.client}    # its User-Agent: {f.agent}")
    elif f.agent is not None:
        lines.append(f"    # the client ({f.agent}) has no profile: set client (its retry rules) if it retries; "
                     "retries the program wrote itself are folded into the call")
    if f.max_retries is not None:
        lines.append(f"    retry: {{max_retries: {f.max_retries}}}    # " + (
            "the program's client's own (its max_retries)" if f.retries_told else
            "the most retries a call took (a lower bound unless a call failed after them)"))
    if f.connections is not None:
        lines.append(f"    connections: {f.connections}    # the most attempts in flight; {f.connection_waits} "
                     "task(s) waited for another's connection")
    if f.connect is not None:
        lines.append(f"    connect: {_round(f.connect)}    # the first {f.connecting} tasks (no more than connections "
                     "were open at once) waited this much longer before their call (mean): opening a connection")
    return lines


def _service_key(name: str) -> str:
    if not _HOST.fullmatch(name) and name != "localhost":
        return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "service"
    labels = name.split(".")
    if name == "localhost" or all(x.isdigit() for x in labels):
        return "api"
    return labels[-2] if len(labels) >= 2 else labels[0]


def _dist_rows(dists: dict[str, Fitted]) -> list[str]:
    """A Markdown table of fitted distributions: the family kept, samples, each family's AIC, KS p."""
    lines = ["| what | kept | samples | AIC (lower is better) | KS p |", "| --- | --- | ---: | --- | ---: |"]
    for what, fitted in dists.items():
        aic = ", ".join(f"{k} {v:.1f}" for k, v in sorted(fitted.aic.items(), key=lambda kv: kv[1])) or "-"
        ks = "-" if fitted.ks_p is None else f"{fitted.ks_p:.2g}"
        lines.append(f"| {what} | {fitted.family} | {fitted.n} | {aic} | {ks} |")
    return lines


def _cdf_figure(dists: dict[str, Fitted], rng: np.random.Generator, label: str = "logged") -> bytes:
    """One panel per distribution: its samples' CDF and the fitted one's."""
    plt, sns = plotting()
    cols = min(len(dists), 3)
    rows = math.ceil(len(dists) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(dists):]:
        ax.set_visible(False)
    for ax, (what, fitted) in zip(axes.flat, dists.items(), strict=False):
        sns.ecdfplot(fitted.samples, ax=ax, label=label)
        sns.ecdfplot(fitted.dist.sample(rng, 20_000), ax=ax, label=f"fitted ({fitted.family})", linestyle="--")
        ax.set_title(what, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return png(fig)


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
                  *_dist_rows(f.distributions())]
        name = f"cdf_{f.name}.png"
        figures[name] = _cdf_figure(f.distributions(), rng)
        lines += ["", f"![CDFs of {f.name}: logged vs fitted]({name})", ""]
    lines += ["## The services block", "", "```yaml", yaml_text.rstrip(), "```"]
    return write_report(out_dir, lines, figures)


# ------------------------------------------------------------------------------------------ a recorded run

MIN_WAIT = 0.001  # a gap between a task's turns on the loop shorter than this is the loop's, not a wait
MIN_SHARE = 0.10  # a task type is kept when at least this share of the tasks has its step sequence
_AGENTS = (("AsyncOpenAI/Python", "openai-python"), ("OpenAI/Python", "openai-python"),
           ("AsyncAnthropic/Python", "anthropic-python"), ("Anthropic/Python", "anthropic-python"))


_IO, _HANDOFF = ("io",), ("handoff",)  # a wait for the outside world; for another of the program's tasks


@dataclass(frozen=True)
class _Walk:
    """One task's life as model steps: its waits in order (`tokens`: ("call", service), ("io",), ("handoff",),
    ("acquire", lock), ("release", lock)), the CPU before, between and after them, and each io or handoff
    wait's start and length."""

    tokens: tuple[tuple[Any, ...], ...]
    cpu: tuple[float, ...]  # len(tokens) + 1
    io: tuple[tuple[float, float], ...]  # one per io or handoff token: when it began, how long it lasted
    attempts: tuple[int, ...]  # one per ("call", ...) token: the attempts it took


@dataclass(frozen=True)
class Recording:
    """What `asyncsim record` wrote: per task its events (tasks.jsonl), the program's locks and clients
    (program.json), its calls (calls.jsonl)."""

    tasks: list[dict[str, Any]]
    locks: dict[int, dict[str, Any]]
    calls: list[Call]
    clients: list[dict[str, Any]]


def read_recording(folder: str | Path) -> Recording:
    """The tasks, locks, calls and clients of an `asyncsim record` folder.

    Raises:
        ModelError: a missing file, or a line that is not a task (file, line and field named).
    """
    folder = Path(folder)
    try:
        lines = (folder / "tasks.jsonl").read_text().splitlines()
        meta = json.loads((folder / "program.json").read_text())
    except OSError as exc:
        raise ModelError(f"fit: {folder} holds no recording with tasks ({exc.strerror}: {exc.filename}); make "
                         f"one with asyncsim record --out {folder} -- python PROGRAM.py") from None
    except ValueError as exc:
        raise ModelError(f"fit: {folder}/program.json is not JSON ({exc})") from None
    tasks = []
    for number, line in enumerate(lines, 1):
        where = f"{folder.name}/tasks.jsonl: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{where}: not JSON ({exc.msg}; a truncated recording?)") from None
        if not isinstance(row, dict) or not isinstance(row.get("events"), list):
            raise ModelError(f"{where}: a task is an object with created, done, failed and events")
        for i, event in enumerate(row["events"]):
            shape = {"cpu": (5, 6), "call": (5,), "acquire": (4,), "release": (3,)}
            if (not isinstance(event, list) or not event or len(event) not in shape.get(event[0], ())
                    or not all(isinstance(x, int | float) for x in event[1:3])):
                raise ModelError(f"{where}: events[{i}]: not an event ({event!r}; cpu, call, acquire or release)")
        if not isinstance(row.get("created"), int | float):
            raise ModelError(f"{where}: created must be a number (got {row.get('created')!r})")
        tasks.append(row)
    if not tasks:
        raise ModelError(f"fit: {folder}/tasks.jsonl holds no tasks")
    locks = {int(k): v for k, v in (meta.get("locks") or {}).items()}
    calls_file = folder / "calls.jsonl"
    calls = read_calls(calls_file) if calls_file.exists() and calls_file.stat().st_size else []
    return Recording(tasks, locks, calls, list(meta.get("clients") or []))


def _walk(events: Sequence[list[Any]], min_wait: float) -> _Walk:
    """A task's events (tasks.jsonl) as model steps (module section docstring of `fit_model`)."""
    turns = sorted((e for e in events if e[0] == "cpu"), key=lambda e: e[2])
    marks = sorted((e for e in events if e[0] != "cpu"), key=lambda e: e[1])
    tokens: list[tuple[Any, ...]] = []
    cpu, attempts = [0.0], list[int]()
    io: list[tuple[float, float]] = []
    last_call: dict[str, Any] | None = None  # the call token being built: its service, whether its last try failed
    m = 0
    for i, (_, _ready, start, end, spent, *_) in enumerate(turns):
        # the marks made during this turn split its CPU by time; those made before the next turn became ready
        # (a request a library writes in a callback of its own) count as made at its end
        limit = turns[i + 1][1] if i + 1 < len(turns) else math.inf
        at = start
        while m < len(marks) and marks[m][1] < limit:
            mark = marks[m]
            t = min(max(mark[1], start), end)
            cpu[-1] += spent * (t - at) / (end - start) if end > start else 0.0
            at = t
            if mark[0] == "call":
                failed = not 200 <= mark[4] < 300
                if last_call is not None and last_call["service"] == mark[3] and last_call["failed"]:
                    while tokens and tokens[-1] in (_IO, _HANDOFF):  # the back-off before this retry is the client's
                        tokens.pop()
                        io.pop()
                        cpu[-2] += cpu.pop()
                    attempts[-1] += 1
                else:
                    tokens.append(("call", mark[3]))
                    cpu.append(0.0)
                    attempts.append(1)
                last_call = {"service": mark[3], "failed": failed, "end": mark[2]}
            else:
                tokens.append((mark[0], mark[-1]))
                cpu.append(0.0)
                last_call = None if mark[0] == "acquire" else last_call
            m += 1
        cpu[-1] += spent * (end - at) / (end - start) if end > start else spent
        if i + 1 < len(turns):
            gap_end = turns[i + 1][1]  # when the next turn became ready
            if gap_end - end < min_wait:
                continue
            in_call = last_call is not None and last_call["end"] > end
            in_lock = tokens and tokens[-1][0] == "acquire" and marks[m - 1][2] >= gap_end - min_wait
            if not in_call and not in_lock:
                # woken by another task's step: it waited for that task (a queue, an event, a library's pool)
                tokens.append(_HANDOFF if len(turns[i + 1]) > 5 and turns[i + 1][5] == "task" else _IO)
                io.append((end, gap_end - end))
                cpu.append(0.0)
                last_call = None if last_call is None or not last_call["failed"] else last_call
    return _Walk(tuple(tokens), tuple(cpu), tuple(io), tuple(attempts))


def _fold(walk: _Walk, target: tuple[tuple[Any, ...], ...]) -> _Walk | None:
    """`walk` with io waits left out until its tokens are `target` (their CPU joined to the CPU before them);
    None when leaving out io waits does not make it `target`."""
    i = 0
    while i < len(walk.tokens):
        if i < len(target) and walk.tokens[i] == target[i]:
            i += 1
        elif walk.tokens[i] == _IO:
            walk = _drop_io(walk, i)
        else:
            return None
    return walk if walk.tokens == target else None


def _drop_io(walk: _Walk, index: int) -> _Walk:
    """`walk` without its token `index` (an io or handoff wait)."""
    tokens, cpu, io = list(walk.tokens), list(walk.cpu), list(walk.io)
    io.pop(sum(t in (_IO, _HANDOFF) for t in tokens[:index]))
    tokens.pop(index)
    cpu[index] += cpu.pop(index + 1)
    return _Walk(tuple(tokens), tuple(cpu), tuple(io), walk.attempts)


def _unwrap(walk: _Walk) -> _Walk:
    """`walk` without its first and last tokens (a lock around the whole task), their CPU joined inside."""
    cpu = list(walk.cpu[1:-1])
    cpu[0] += walk.cpu[0]
    cpu[-1] += walk.cpu[-1]
    return _Walk(walk.tokens[1:-1], tuple(cpu), walk.io, walk.attempts)


def _fitted(samples: Sequence[float] | np.ndarray) -> Fitted:
    """`select`, or a constant for a single sample."""
    data = np.asarray(samples, dtype=float)
    if data.size < 2:
        return Fitted(Constant(float(data[0])), "constant", data.size, {}, None, data)
    return select(data)


@dataclass(frozen=True)
class ModelFit:
    """A model fitted from a recording: its YAML, each fitted distribution by its place in the model (for the
    report's plots), its services' fits, and notes on what was left out or assumed."""

    yaml: str
    workload: Workload  # the YAML, read
    distributions: dict[str, Fitted]
    services: list[ServiceFit]
    notes: list[str]


def fit_model(folder: str | Path, *, name: str | None = None, min_wait: float = MIN_WAIT) -> ModelFit:
    """A whole model (arrivals, task types and steps, locks, services) fitted from an `asyncsim record` folder.

    Each finished task becomes a sequence of steps: its CPU on the loop between waits (`cpu`), its calls
    (`call`: one per logical call, its retries and their back-off being the client's), other waits of at least
    `min_wait` (`io`), and the asyncio semaphores and locks it held (`use` of a pool of their capacity; one
    held around every task's whole work is the strategy's limit, `asyncio:K`). A wait that another task ended
    (it handed over a connection, a queue item) is not a step: right before a call it is the client's
    connection cap (`connections`: the most attempts seen in flight), else queueing the model makes. Tasks
    with the same sequence form a type (kept at >= MIN_SHARE of the tasks; a rarer task joins a kept type when
    leaving out some of its io waits makes it one — the first requests' connecting —, else it is left out and
    said so); each slot's samples are fitted with `select`. Arrivals: a batch when every task was created
    within 5% of the run, else Poisson when the gaps fit an exponential (above the smallest gap, what the loop adds
    to each), a uniform stream when they are even, otherwise the recorded times.

    Raises:
        ModelError: an unreadable recording, or no task that finished.
    """
    import yaml

    folder = Path(folder)
    recording = read_recording(folder)
    tasks, locks, calls = recording.tasks, recording.locks, recording.calls
    notes: list[str] = []
    finished = [t for t in tasks if t.get("done") is not None and not t.get("failed")]
    if not finished:
        raise ModelError(f"fit: none of the {len(tasks)} tasks in {folder} finished (workers that loop on a queue "
                         "until cancelled are not fitted as a model yet; fit their calls: asyncsim fit "
                         f"{folder}/calls.jsonl)")
    if len(finished) < len(tasks):
        notes.append(f"{len(tasks) - len(finished)} of {len(tasks)} tasks failed or never finished: their steps "
                     "are not fitted (they still arrive; the services' failures and retries make them fail)")
    walks = [_walk(t["events"], min_wait) for t in finished]

    # waits another task ended: before a call, a connection handed over (the service's connection cap)
    by_service: dict[str, list[Call]] = {}
    for c in calls:
        by_service.setdefault(c.service, []).append(c)
    sent = {k: np.sort([c.sent for c in v]) for k, v in by_service.items()}
    ended = {k: np.sort([c.end for c in v]) for k, v in by_service.items()}
    peak = {k: int(step_count(sent[k], sent[k], ended[k]).max()) for k in by_service}
    waits: dict[str, int] = {}  # per service: waits for a connection another task gave back
    handoffs = 0  # other waits for another task (a queue, an event): the model's own contention, or unseen
    for i, w in enumerate(walks):
        while _HANDOFF in w.tokens:
            j = w.tokens.index(_HANDOFF)
            after = w.tokens[j + 1] if j + 1 < len(w.tokens) else None
            if after is not None and after[0] == "call":
                waits[after[1]] = waits.get(after[1], 0) + 1
            else:
                handoffs += 1
            w = _drop_io(w, j)
        walks[i] = w
    if handoffs:
        notes.append(f"{handoffs} wait(s) for another task (an asyncio.Queue, an Event, a library's pool) are not "
                     "steps: the model's own queueing stands for them where it has it")

    # task types
    counts: dict[tuple[tuple[Any, ...], ...], int] = {}
    for w in walks:
        counts[w.tokens] = counts.get(w.tokens, 0) + 1
    ranked = sorted(counts, key=lambda k: (-counts[k], len(k)))
    kept = [k for k in ranked if counts[k] >= MIN_SHARE * len(walks)][:5] or ranked[:1]
    groups: dict[tuple[tuple[Any, ...], ...], list[_Walk]] = {k: [] for k in kept}
    left_out, folded = 0, 0
    for w in walks:
        if w.tokens in groups:
            groups[w.tokens].append(w)
            continue
        target = next((k for k in kept if _fold(w, k) is not None), None)
        if target is None:
            left_out += 1
        else:
            groups[target].append(_fold(w, target))  # type: ignore[arg-type]
            folded += 1
    # a type that is a bigger one with waits before its call, of no more tasks than connections were open at
    # once, is the first tasks connecting: those waits are the service's `connect`
    connecting: dict[str, tuple[int, float]] = {}  # per service: tasks that connected first, their extra wait
    for small in sorted(groups, key=lambda k: len(groups[k])):
        big = next((k for k in groups if len(groups[k]) > len(groups[small]) and _fold(groups[small][0], k)), None)
        if big is not None and len(groups[small]) <= max(peak.values(), default=0):
            starters = groups.pop(small)
            moved = [w for w in (_fold(w, big) for w in starters) if w is not None]
            groups[big] += moved
            lost = sum(x[1] for w in starters for x in w.io) - sum(x[1] for w in moved for x in w.io)
            service = next((t[1] for t in big if t[0] == "call"), None)
            if service is not None:
                connecting[service] = (len(starters), lost / len(starters))
    if folded:
        notes.append(f"{folded} task(s) had extra waits (e.g. the first requests' connecting) and were fitted as "
                     "their type without them")
    if left_out:
        notes.append(f"{left_out} task(s) of rare step sequences (< {MIN_SHARE:.0%} of the tasks each) are left out "
                     "of the steps")

    # a lock around every task's whole work is the strategy's limit
    strategy = "asyncio"
    def around(k: tuple[tuple[Any, ...], ...]) -> bool:  # a lock held once around all but a little CPU
        if len(k) < 2 or k[0][0] != "acquire" or k[-1] != ("release", k[0][1]):
            return False
        if sum(t[0] in ("acquire", "release") and t[1] == k[0][1] for t in k) != 2:
            return False
        inside = sum(sum(w.cpu) for w in groups[k])
        return sum(w.cpu[0] + w.cpu[-1] for w in groups[k]) <= 0.1 * inside

    outer = {k[0] for k in groups}
    if len(outer) == 1 and all(around(k) for k in groups):
        lock = next(iter(outer))[1]
        strategy = f"asyncio:{locks.get(lock, {}).get('capacity', 1)}"
        groups = {k[1:-1]: [_unwrap(w) for w in ws] for k, ws in groups.items()}
        notes.append(f"the {locks.get(lock, {}).get('kind', 'lock')} of capacity {strategy.split(':')[1]} held around "
                     "each task's work is the strategy's limit")

    # services
    fits: list[ServiceFit] = []
    for host, its in by_service.items():
        fit = fit_service(host, its)
        agents = [c.client for c in its if c.client]
        agent = max(set(agents), key=agents.count) if agents else None
        client = next((p for prefix, p in _AGENTS if agent and agent.startswith(prefix)), None)
        tries = [a for ws in groups.values() for w in ws for (tok, a) in
                 zip([t for t in w.tokens if t[0] == "call"], w.attempts, strict=True) if tok[1] == host]
        most = max(tries, default=1) - 1
        # the program's own client says its retry budget; else the most a call took, when above the profile's
        told = sorted({c["max_retries"] for c in recording.clients if c.get("user_agent") == agent})
        retries = told[-1] if client and told else most if client and most > 2 else None
        first, connect = connecting.get(host, (0, 0.0))
        fit = replace(fit, agent=agent, client=client, max_retries=retries, retries_told=bool(client and told),
                      connections=peak[host] if waits.get(host) else None, connection_waits=waits.get(host, 0),
                      connect=connect if first else None, connecting=first)
        if any(f.key == fit.key for f in fits):
            fit = replace(fit, alias=f"{fit.key}{len(fits) + 1}")
        fits.append(fit)
    keys = {f.name: f.key for f in fits}

    # the YAML
    dists: dict[str, Fitted] = {}
    total = sum(len(ws) for ws in groups.values())
    lines = [f"# fitted by asyncsim fit from {folder}: each number with where it came from",
             f"name: {name or folder.name}",
             f"description: fitted from a recorded run of {len(tasks)} tasks",
             *[f"# {n}" for n in notes], *_arrivals_lines(tasks, folder)]
    pools: dict[str, int] = {}
    if len(groups) == 1:
        (sig, ws), = groups.items()
        lines.append(f"task:    # the step sequence of {len(ws)} of {len(finished)} finished tasks")
        lines += _step_lines(sig, ws, keys, locks, pools, dists, "task", "  ")
    else:
        lines.append("tasks:    # task types: each a step sequence seen in the run, weighted by its count")
        for i, (sig, ws) in enumerate(groups.items()):
            lines += [f"  - name: type{i + 1}", f"    weight: {len(ws)}    # {len(ws)} of {total} tasks",
                      "    steps:"]
            lines += _step_lines(sig, ws, keys, locks, pools, dists, f"tasks[{i}].steps", "      ")
    if pools:
        lines.append("pools:")
        lines += [f"  {k}: {{capacity: {v}}}    # an asyncio lock of the program, its capacity"
                  for k, v in pools.items()]
    if fits:
        lines += services_yaml(fits, f"{folder}/calls.jsonl").splitlines()[1:]
    lines.append(f"strategy: {strategy}")
    text = "\n".join(lines) + "\n"
    for f in fits:
        for what, fd in f.distributions().items():
            dists[f"services.{f.key}.{what}"] = fd
    workload = Workload.from_dict(yaml.safe_load(text), source="the fitted model")  # a model asyncsim reads
    return ModelFit(text, workload, dists, fits, notes)


def _cv(x: np.ndarray) -> float:
    """The coefficient of variation of `x` (0 when its mean is not positive)."""
    return float(x.std() / x.mean()) if x.mean() > 0 else 0.0


def _arrivals_lines(tasks: Sequence[dict[str, Any]], folder: Path) -> list[str]:
    """The arrivals block: when the tasks were created (fit_model's docstring)."""
    created = np.sort([float(t["created"]) for t in tasks])
    ends = [float(t["done"]) for t in tasks if t.get("done") is not None]
    span = (max(ends, default=created[-1]) - created[0]) or 1.0
    n = len(created)
    if n == 1 or created[-1] - created[0] <= 0.05 * span:
        return [f"arrivals: {{batch: {n}}}    # all {n} tasks created within {created[-1] - created[0]:.3g} s of "
                "the first"]
    gaps = np.diff(created)
    cv = _cv(gaps)
    if n >= 10 and cv < 0.1:
        return [f"arrivals: {{uniform: {{interval: {_round(float(gaps.mean()))}, count: {n}}}}}    # gaps between "
                f"creations: mean {gaps.mean():.4g} s, cv {cv:.2f}"]
    if n >= 10:
        fitted = _fitted(gaps)
        # a program that sleeps an exponential gap between creations adds what the loop always adds to each (the
        # timeout rounded up to whole milliseconds, the wake-up, the work in between): the gaps are an exponential
        # above that floor, so it is their excess over the smallest gap whose cv tells (a loaded host's 80 gaps
        # 5 ms apart: cv 0.71 whole, 0.95 above the floor; gamma-2 gaps: 0.75 above it, median of 2,000 draws)
        above = _cv(gaps - gaps.min())
        if fitted.family == "exponential" or (fitted.family in ("gamma", "lognormal") and abs(above - 1) < 0.15):
            return [f"arrivals: {{poisson: {{rate: {_round(1 / float(gaps.mean()))}, count: {n}}}}}    # gaps "
                    f"between creations: {fitted.comment()}, cv {cv:.2f} ({above:.2f} above the smallest)"]
    times = [_round(float(t - created[0])) for t in created]
    return [f"arrivals:    # the recorded creation times (gaps: cv {cv:.2f}, neither a batch nor a Poisson or "
            "uniform stream)", f"  trace: {{times: {times}}}"]


def _step_lines(sig: tuple[tuple[Any, ...], ...], walks: Sequence[_Walk], keys: dict[str, str],
                locks: dict[int, dict[str, Any]], pools: dict[str, int], dists: dict[str, Fitted], path: str,
                indent: str) -> list[str]:
    """The steps of one task type as YAML lines (nested `use` for the locks it held), each commented."""
    import yaml

    stack: list[tuple[list[str], str, str, str]] = [([], indent, path, "")]  # lines, indent, path, pool

    def add(line: str) -> None:
        lines, ind, _, _ = stack[-1]
        lines.append(ind + "- " + line)

    def place() -> str:
        lines, _, p, _ = stack[-1]
        return f"{p}[{sum(1 for x in lines if x.startswith(stack[-1][1] + '- '))}]"

    def cpu(slot: int) -> None:
        samples = [w.cpu[slot] for w in walks]
        if float(np.mean(samples)) < 1e-6:
            return
        fitted = _fitted(samples)
        dists[place() + ".cpu"] = fitted
        value = yaml.safe_dump(fitted.yaml(), default_flow_style=True, width=10_000).strip()
        add(f"cpu: {value}    # on the loop: {fitted.comment()}")

    n_io = 0
    for j, token in enumerate(sig):
        cpu(j)
        if token[0] == "call":
            tries = [w.attempts[sum(t[0] == "call" for t in sig[:j])] for w in walks]
            add(f"call: {keys.get(token[1], token[1])}    # {len(walks)} calls, {sum(tries)} attempts")
        elif token[0] == "io":
            fitted = _fitted([w.io[n_io][1] for w in walks])
            n_io += 1
            dists[place() + ".io"] = fitted
            value = yaml.safe_dump(fitted.yaml(), default_flow_style=True, width=10_000).strip()
            add(f"io: {value}    # a wait (a timer, another socket): {fitted.comment()}")
        elif token[0] == "acquire":
            info = locks.get(token[1], {"kind": "Lock", "capacity": 1})
            pool = f"{info['kind'].lower()}{token[1]}"
            pools[pool] = int(info["capacity"])
            ind = stack[-1][1]
            stack.append(([], ind + "      ", place() + ".use.steps", pool))
        elif token[0] == "release" and len(stack) > 1:
            _close(stack)
    cpu(len(sig))
    while len(stack) > 1:  # a lock never given back: held to the end
        _close(stack)
    return stack[0][0]


def _close(stack: list[tuple[list[str], str, str, str]]) -> None:
    """Wrap the innermost steps in a `use` of their pool, one level up."""
    lines, _, _, pool = stack.pop()
    if not lines:
        return
    outer, ind, _, _ = stack[-1]
    outer += [f"{ind}- use:    # held the program's {pool}", f"{ind}    pool: {pool}", f"{ind}    steps:", *lines]


def model_report(fit: ModelFit, check: Check, folder: str | Path, out_dir: str | Path,
                 command: Sequence[str] | None = None) -> Path:
    """The fit report of a model fitted from a recording: the fitted model simulated beside the recorded run
    (figures, tasks in flight over time), each fitted distribution's CDF against its samples, the notes, and
    the YAML. Returns the report's path."""
    tasks = read_recording(folder).tasks
    rows = check.rows()
    lines = header(f"A model fitted from {folder}", meta=metadata(command),
                   question="does the fitted model reproduce the recorded run?",
                   answer=f"simulated, T_total {check.predicted.t_total:.3g} s against {check.recorded.t_total:.3g} s "
                          f"recorded ({check.error:+.1%}); p95 latency {rows[2][2]:.3g} s against {rows[2][1]:.3g} s.")
    lines += [f"| figure | recorded | fitted model, simulated (means of {len(check.runs)}) | error |",
              "| --- | ---: | ---: | ---: |"]
    for what, rec, pred in rows:
        error = f"{pred - rec:+g}" if what in COUNTS or not rec else f"{pred / rec - 1:+.1%}"
        lines.append(f"| {what} | {rec:.4g} | {pred:.4g} | {error} |")
    plt, _ = plotting()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    created = np.array([float(t["created"]) for t in tasks])
    done = np.array([np.nan if t.get("done") is None else float(t["done"]) for t in tasks])
    for label, arrival, end in (("recorded", created - created.min(), done - created.min()),
                                ("fitted model (its first replication)", check.runs[0].arrival, check.runs[0].done)):
        times, level = in_flight_steps(arrival, end)
        ax.step(np.r_[0.0, times], np.r_[0, level], where="post", label=label)
    ax.set(xlabel="time (s)", ylabel="tasks in flight", title="Tasks in flight over time")
    ax.legend()
    figures: dict[str, bytes | None] = {"in_flight.png": png(fig)}
    lines += ["", "![tasks in flight over time, recorded and simulated](in_flight.png)", ""]
    if fit.notes:
        lines += ["## What the fit assumed or left out", "", *[f"- {n}" for n in fit.notes], ""]
    lines += ["## Each fitted distribution", "", *_dist_rows(fit.distributions)]
    if fit.distributions:
        figures["cdfs.png"] = _cdf_figure(fit.distributions, np.random.default_rng(0), "recorded")
        lines += ["", "![CDFs: recorded samples vs fitted distributions](cdfs.png)", ""]
    lines += ["## The model", "", "```yaml", fit.yaml.rstrip(), "```"]
    return write_report(out_dir, lines, figures)
