"""asyncsim: predict how a workload behaves under sequential, threads, processes and asyncio — and check it.

    >>> import asyncsim
    >>> w = asyncsim.load("models/web_fetch.yaml")
    >>> r = asyncsim.simulate(w, strategy="asyncio:20", seed=1)
    >>> r.t_total, r.latency.p95, r.concurrency.mean, r.resources[asyncsim.ResourceId("loop")].utilization
"""

from __future__ import annotations

from ._version import __version__
from .api import Summary, compare, fast_refusal, replicate, replication_seeds, simulate
from .dists import Constant, Empirical, Exponential, Gamma, Lognormal, Normal, Uniform, fit
from .errors import AsyncSimError, ModelError, SimulationError
from .profile import MachineProfile
from .real import run_real
from .real.calibrate import calibrate
from .results import Result
from .scenario import Scenario, build_scenario
from .services import RateLimit, Retry, Server
from .spec import (
    Batch,
    Call,
    Closed,
    Cpu,
    Io,
    Machine,
    Parallel,
    Periodic,
    Poisson,
    Pool,
    Service,
    TaskType,
    TraceArrivals,
    Use,
    Workload,
    call,
    cpu,
    io,
    load,
    parallel,
    use,
)
from .stats import ClassStats, Concurrency, Cost, Latency, ResourceStats, ServiceStats, StageStats, TimeSplit
from .steady import Steady
from .strategies import Asyncio, Processes, Sequential, Threads, parse_strategy
from .trace import ResourceId, Trace
from .validate import Validation, validate

__all__ = [
    "AsyncSimError", "Asyncio", "Batch", "Call", "ClassStats", "Closed", "Concurrency", "Constant", "Cost", "Cpu",
    "Empirical", "Exponential", "Gamma", "Io", "Latency", "Lognormal", "Machine", "MachineProfile", "ModelError",
    "Normal", "Parallel", "Periodic", "Poisson", "Pool", "Processes", "RateLimit", "ResourceId", "ResourceStats",
    "Result", "Retry", "Scenario", "Sequential", "Server", "Service", "ServiceStats", "SimulationError", "StageStats",
    "Steady", "Summary", "TaskType", "Threads", "TimeSplit", "Trace", "TraceArrivals", "Uniform", "Use", "Validation",
    "Workload", "__version__", "build_scenario", "calibrate", "call", "compare", "cpu", "fast_refusal", "fit", "io",
    "load",
    "parallel", "parse_strategy", "replicate", "replication_seeds", "run_real", "simulate", "use", "validate",
]
