"""Distributions of durations and sizes: frozen, validated, sampled from an explicit numpy Generator.

In a model file a distribution is a bare number (a constant) or one key naming the family:
`{exponential: {mean: 0.5}}`, `{lognormal: {mean: 0.3, cv: 0.5}}`, `{empirical: {values: [...]}}`.
No distribution ever returns a negative value, and none is accepted whose draws could overflow (see
`MAX_DRAW`).
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from ._model import Frozen, single_key, tagged_union, unwrap
from .errors import ModelError

__all__ = [
    "MAX_DRAW", "Constant", "Dist", "Empirical", "Exponential", "Gamma", "Lognormal", "Normal", "Uniform", "fit",
]

MAX_DRAW = 1e150
"""The largest draw a distribution may make (in practice): squares and products of two draws (variances,
tokens x seconds per token) summed over 1e8 draws then stay finite, as 1e150² x 1e8 = 1e308 < 1.8e308."""
TAIL = 1e-12
"""The upper-tail probability of the quantile checked against MAX_DRAW: one draw in a trillion goes beyond it."""


class _Dist(Frozen):
    """Common behaviour: `sample(rng, size)`, `mean`, `var`.

    The range rule, checked when a distribution is made: its mean, its standard deviation and its 1 - TAIL
    quantile (`_tail`) must each be finite and at most MAX_DRAW (a `ValueError` naming the figure and its
    value otherwise). Why that bounds every draw, not only most: constant, uniform and empirical draws never
    pass the quantile; exponential, gamma and normal tails fall off exponentially or faster, so a draw 1e158
    times the quantile (an overflow) cannot happen; a lognormal's variance is finite only while exp(sigma²) is
    (sigma < 26.7), and an overflowing draw is then over 13 sigma beyond the quantile (odds below 1e-90).
    """

    kind: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        return unwrap(data, cls.kind)

    @model_validator(mode="after")
    def _valid(self, info: Any) -> _Dist:
        self._check(info)  # the family's own rules first: the figures below need a well-formed distribution
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # scipy warns on overflow; the figures say it as inf or nan
            mean, var, tail = _figure(lambda: self.mean), _figure(lambda: self.var), _figure(self._tail)
        # a variance below 0 is rounding (scipy's truncnorm far in its tail): no spread; max keeps a nan
        sd = math.sqrt(max(var, 0.0))
        for what, value in (("mean", mean), ("standard deviation", sd), (f"1 - {TAIL:g} quantile", tail)):
            if not value <= MAX_DRAW:  # also catches nan
                raise ValueError(f"{self._describe()} is out of range: its {what} is {value:.3g} (the mean, standard "
                                 f"deviation and 1 - {TAIL:g} quantile must be finite and at most {MAX_DRAW:g})")
        return self

    def _check(self, info: Any) -> None:
        """The family's own rules (raise ValueError); `info.context` may hold `base_dir`."""

    @abstractmethod
    def _tail(self) -> float:
        """The 1 - TAIL quantile (the draw exceeded once in 1/TAIL draws)."""

    def _describe(self) -> str:
        params = self.model_dump(by_alias=True, exclude_none=True)
        return f"{self.kind}({', '.join(f'{k}={v:g}' for k, v in params.items() if isinstance(v, float | int))})"

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """`size` independent draws (float64, all >= 0)."""
        return self._sample(rng, size)

    @abstractmethod
    def _sample(self, rng: np.random.Generator, size: int) -> np.ndarray: ...

    @property
    @abstractmethod
    def mean(self) -> float:
        """Expected value."""

    @property
    @abstractmethod
    def var(self) -> float:
        """Variance."""

    @property
    def cv(self) -> float:
        """Coefficient of variation (sd / mean); 0 for a zero mean."""
        return math.sqrt(self.var) / self.mean if self.mean > 0 else 0.0


class Constant(_Dist):
    """Always the same value (a bare number in a model file)."""

    kind: ClassVar[str] = "constant"
    value: float = Field(ge=0, le=MAX_DRAW, alias="constant")

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:  # replaces the base's: the field itself is called 'constant'
        if (isinstance(data, (int, float)) and not isinstance(data, bool)) or _number(data):
            return {"constant": data}
        return data

    def __init__(self, value: float | None = None, /, **data: Any) -> None:
        if value is not None:
            data["value"] = value
        super().__init__(**data)

    def _sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value)

    def _tail(self) -> float:
        return self.value

    @property
    def mean(self) -> float:
        return self.value

    @property
    def var(self) -> float:
        return 0.0


class Uniform(_Dist):
    """Uniform on [low, high]."""

    kind: ClassVar[str] = "uniform"
    low: float = Field(ge=0)
    high: float = Field(ge=0)

    def _check(self, info: Any) -> None:
        if self.high < self.low:
            raise ValueError(f"high must be >= low (got low={self.low}, high={self.high})")

    def _sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size)

    def _tail(self) -> float:
        return self.high

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def var(self) -> float:
        return (self.high - self.low) ** 2 / 12


class Exponential(_Dist):
    """Exponential with the given mean."""

    kind: ClassVar[str] = "exponential"
    mean_: float = Field(gt=0, alias="mean")

    def __init__(self, mean: float | None = None, /, **data: Any) -> None:
        if mean is not None:
            data["mean"] = mean
        super().__init__(**data)

    def _sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.exponential(self.mean_, size)

    def _tail(self) -> float:
        return -self.mean_ * math.log(TAIL)

    @property
    def mean(self) -> float:
        return self.mean_

    @property
    def var(self) -> float:
        return self.mean_**2


class Normal(_Dist):
    """Normal(mean, sd) truncated at 0 (draws below 0 are redrawn, as scipy's truncnorm does)."""

    kind: ClassVar[str] = "normal"
    mean_: float = Field(alias="mean")
    sd: float = Field(gt=0)

    @cached_property
    def _frozen(self) -> Any:
        from scipy import stats  # imported when needed: scipy.stats alone costs ~75 MB

        return stats.truncnorm(-self.mean_ / self.sd, np.inf, loc=self.mean_, scale=self.sd)

    def _sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.asarray(self._frozen.rvs(size=size, random_state=rng), dtype=float)

    def _tail(self) -> float:
        return float(self._frozen.isf(TAIL))

    @property
    def mean(self) -> float:
        return float(self._frozen.mean())

    @property
    def var(self) -> float:
        return float(self._frozen.var())


class Lognormal(_Dist):
    """Lognormal given by its own mean and cv, or by the underlying normal's mu and sigma."""

    kind: ClassVar[str] = "lognormal"
    mean_: float | None = Field(None, gt=0, alias="mean")
    cv_: float | None = Field(None, gt=0, alias="cv")
    mu: float | None = None
    sigma: float | None = Field(None, gt=0)

    def _check(self, info: Any) -> None:
        by_moments = self.mean_ is not None and self.cv_ is not None
        by_params = self.mu is not None and self.sigma is not None
        partial = [self.mean_, self.cv_, self.mu, self.sigma].count(None) not in (2,)
        if by_moments == by_params or partial:
            raise ValueError("give either mean and cv, or mu and sigma")

    @property
    def _params(self) -> tuple[float, float]:
        if self.mu is not None and self.sigma is not None:
            return self.mu, self.sigma
        assert self.mean_ is not None
        assert self.cv_ is not None
        sigma2 = math.log1p(self.cv_**2)
        return math.log(self.mean_) - sigma2 / 2, math.sqrt(sigma2)

    def _sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        mu, sigma = self._params
        return rng.lognormal(mu, sigma, size)

    def _tail(self) -> float:
        mu, sigma = self._params
        return math.exp(mu + sigma * _Z_TAIL)

    @property
    def mean(self) -> float:
        mu, sigma = self._params
        return math.exp(mu + sigma**2 / 2)

    @property
    def var(self) -> float:
        mu, sigma = self._params
        return (math.exp(sigma**2) - 1) * math.exp(2 * mu + sigma**2)


class Gamma(_Dist):
    """Gamma given by its mean and cv (shape = 1/cv², scale = mean·cv²)."""

    kind: ClassVar[str] = "gamma"
    mean_: float = Field(gt=0, alias="mean")
    cv_: float = Field(gt=0, alias="cv")

    def _check(self, info: Any) -> None:
        if self.cv_**2 < 1 / MAX_DRAW:  # the shape 1/cv² would be out of range (or 1/0)
            raise ValueError(f"cv must be at least {MAX_DRAW**-0.5:g} (got {self.cv_:g}); a gamma this narrow is the "
                             f"constant {self.mean_:g}")

    def _sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.gamma(1 / self.cv_**2, self.mean_ * self.cv_**2, size)

    def _tail(self) -> float:
        from scipy.special import gammainccinv  # imported when needed, as scipy.stats is

        return self.mean_ * self.cv_**2 * float(gammainccinv(1 / self.cv_**2, TAIL))

    @property
    def mean(self) -> float:
        return self.mean_

    @property
    def var(self) -> float:
        return (self.mean_ * self.cv_) ** 2


class Empirical(_Dist):
    """Resamples observed values with replacement; from `values` or a file (one number per line/CSV)."""

    kind: ClassVar[str] = "empirical"
    values: tuple[float, ...] | None = None
    file: Path | None = None
    _data: np.ndarray = PrivateAttr()

    def _check(self, info: Any) -> None:
        if (self.values is None) == (self.file is None):
            raise ValueError("give exactly one of values or file")
        if self.values is not None:
            data = np.asarray(self.values, dtype=float)
        else:
            assert self.file is not None
            base = (info.context or {}).get("base_dir") if info is not None else None
            path = self.file if self.file.is_absolute() or base is None else Path(base) / self.file
            data = _read_numbers(path)
        if data.size == 0:
            raise ValueError("needs at least one value")
        if not np.all(np.isfinite(data)) or np.any(data < 0):
            raise ValueError("values must be finite and >= 0")
        self._data = data

    def _describe(self) -> str:
        return f"empirical({self._data.size} values)"

    def _sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(self._data, size=size, replace=True)

    def _tail(self) -> float:
        return float(self._data.max())

    @property
    def mean(self) -> float:
        return float(self._data.mean())

    @property
    def var(self) -> float:
        return float(self._data.var())


def _read_numbers(path: Path) -> np.ndarray:
    """Numbers from a file: CSV (first numeric column) or one per line; '#' starts a comment."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    out: list[float] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        cell = line.split("#", 1)[0].split(",", 1)[0].strip()
        if not cell:
            continue
        try:
            number = float(cell)
        except ValueError:
            if not out and lineno == 1:  # a CSV header
                continue
            raise ValueError(f"{path.name} line {lineno}: not a number: {cell!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{path.name} line {lineno}: must be a finite number (got {cell!r})")
        out.append(number)
    return np.asarray(out, dtype=float)


def _figure(compute: Callable[[], float]) -> float:
    """`compute()`, or inf when it overflows (math.exp raises where numpy would give inf)."""
    try:
        return float(compute())
    except (OverflowError, ZeroDivisionError):
        return math.inf


_Z_TAIL = NormalDist().inv_cdf(1 - TAIL)  # the standard normal's 1 - TAIL quantile (7.03)


_FAMILIES: dict[str, type[_Dist]] = {
    c.kind: c for c in (Constant, Uniform, Exponential, Normal, Lognormal, Gamma, Empirical)
}


def _dist_tag(value: Any) -> str | None:
    if isinstance(value, _Dist):
        return value.kind
    if (isinstance(value, (int, float)) and not isinstance(value, bool)) or _number(value):
        return "constant"
    return single_key(value)


def _number(value: Any) -> bool:
    """Whether `value` is a number written as a string: YAML 1.1 reads `1e3` (no point, no exponent sign) as
    text, and a number field takes it (pydantic parses it), so a duration does too."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


Dist = tagged_union(_FAMILIES, _dist_tag, "distribution")
"""A field type accepting a number, `{family: {...}}`, or a distribution object."""


def fit(samples: Any, family: str = "lognormal") -> _Dist:
    """Fit `family` (lognormal, gamma, exponential, or empirical) to observed samples with scipy.

    Raises:
        ModelError: for fewer than two samples, negative samples or an unknown family.
    """
    data = np.asarray(samples, dtype=float)
    if data.size < 2 or np.any(data < 0) or not np.all(np.isfinite(data)):
        raise ModelError("fit: samples must be at least two finite values >= 0")
    if family == "empirical":
        return Empirical(values=tuple(data.tolist()))
    if family == "exponential":
        return Exponential(float(data.mean()))
    from scipy import stats  # imported when needed: scipy.stats alone costs ~75 MB

    if family == "lognormal":
        sigma, _, scale = stats.lognorm.fit(data[data > 0], floc=0)
        return Lognormal(mu=math.log(scale), sigma=sigma)
    if family == "gamma":
        shape, _, scale = stats.gamma.fit(data[data > 0], floc=0)
        return Gamma.model_validate({"mean": shape * scale, "cv": 1 / math.sqrt(shape)})
    raise ModelError(f"fit: unknown family {family!r} (allowed: lognormal, gamma, exponential, empirical)")
