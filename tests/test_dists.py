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


@pytest.mark.parametrize(
    ("make", "figure"),
    [
        (lambda: a.Lognormal(mean=1e300, cv=1e10), "its mean is 1e+300"),
        (lambda: a.Lognormal(mu=1000, sigma=1), "its mean is inf"),  # exp(1000) overflows
        (lambda: a.Lognormal(mu=-2000, sigma=40), "its standard deviation is inf"),  # exp(sigma²) overflows
        (lambda: a.Gamma(mean=1e200, cv=2), "its mean is 1e+200"),
        (lambda: a.Normal(mean=-1e300, sd=1), "its mean is nan"),  # scipy's truncnorm gives up
        (lambda: a.Exponential(1e149), "its 1 - 1e-12 quantile is 2.76e+150"),  # mean x ln(1e12)
        (lambda: a.Uniform(low=0, high=1e200), "its mean is 5e+199"),
        (lambda: a.Empirical(values=(1.0, 1e200)), "its mean is 5e+199"),
    ],
)
def test_distributions_whose_draws_could_overflow_are_refused_with_the_figure(make, figure):
    with pytest.raises(ValueError, match="out of range") as info:
        make()
    assert figure in str(info.value)


@pytest.mark.parametrize(
    "dist",
    [
        a.Lognormal(mu=0, sigma=18),  # sd 1e141, 1 - 1e-12 quantile e^126.6: inside the rule, yet wild
        a.Gamma(mean=1e140, cv=30),
        a.Exponential(1e148),
        a.Normal(mean=-1e6, sd=1),  # far in its tail: scipy's variance is rounding noise, taken as 0
        a.Constant(1e150),
    ],
)
def test_draws_of_every_accepted_distribution_stay_finite_when_squared(dist):
    x = dist.sample(np.random.default_rng(0), 100_000)
    assert np.isfinite(x).all()
    assert np.isfinite(np.sum(x * x))


def test_a_gamma_too_narrow_to_sample_says_it_is_a_constant():
    with pytest.raises(ValueError, match=r"cv must be at least 1e-75 \(got 1e-200\); a gamma this narrow is the "
                                         r"constant 2"):
        a.Gamma(mean=2, cv=1e-200)
