"""Distributions: moments match their parameters, draws are seeded and never negative, fit recovers parameters."""

from __future__ import annotations

import numpy as np
import pytest

import asyncsim as a

N = 200_000  # the sample mean's relative standard error is cv/sqrt(N) <= 0.5%: compare within 2%


@pytest.mark.parametrize(
    "dist",
    [
        a.Constant(0.25),
        a.Uniform(low=0.1, high=0.3),
        a.Exponential(0.5),
        a.Normal(mean=1.0, sd=0.2),
        a.Normal(mean=0.1, sd=0.3),  # heavily truncated: the mean is the truncated one
        a.Lognormal(mean=0.3, cv=0.5),
        a.Lognormal(mu=-1.0, sigma=0.4),
        a.Gamma(mean=2.0, cv=0.3),
        a.Empirical(values=(0.1, 0.2, 0.7)),
    ],
)
def test_sample_moments_match_and_are_never_negative(dist):
    x = dist.sample(np.random.default_rng(1), N)
    assert x.shape == (N,)
    assert (x >= 0).all()
    assert x.mean() == pytest.approx(dist.mean, rel=0.02)
    assert x.var() == pytest.approx(dist.var, rel=0.05, abs=1e-12)


def test_lognormal_mean_cv_parametrisation():
    d = a.Lognormal(mean=0.3, cv=0.5)
    assert d.mean == pytest.approx(0.3)
    assert d.cv == pytest.approx(0.5)


def test_same_generator_state_same_draws():
    d = a.Gamma(mean=1, cv=0.5)
    assert np.array_equal(d.sample(np.random.default_rng(7), 10), d.sample(np.random.default_rng(7), 10))


@pytest.mark.parametrize(
    ("family", "true"),
    [("lognormal", a.Lognormal(mean=0.4, cv=0.6)), ("gamma", a.Gamma(mean=0.4, cv=0.6)),
     ("exponential", a.Exponential(0.4))],
)
def test_fit_recovers_mean_and_cv(family, true):
    samples = true.sample(np.random.default_rng(3), 50_000)
    fitted = a.fit(samples, family)
    assert fitted.mean == pytest.approx(true.mean, rel=0.03)
    assert fitted.cv == pytest.approx(true.cv, rel=0.05)


def test_fit_rejects_bad_input():
    with pytest.raises(a.ModelError, match="at least two"):
        a.fit([1.0])
    with pytest.raises(a.ModelError, match="unknown family 'weibull'"):
        a.fit([1.0, 2.0], "weibull")
    assert a.fit([1.0, 2.0, 2.0], "empirical").mean == pytest.approx(5 / 3)
