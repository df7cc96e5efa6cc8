"""states: the peak of tasks in flight, computed from two sorted copies, is the event sweep's maximum."""

from __future__ import annotations

import numpy as np

from asyncsim import states
from asyncsim.states import in_flight_steps, peak_in_flight


def _sweep_peak(arrival: np.ndarray, done: np.ndarray) -> int:
    _, levels = in_flight_steps(arrival, done)
    return int(levels.max()) if levels.size else 0


def test_peak_in_flight_is_the_event_sweeps_maximum_with_ties_and_unfinished_tasks(monkeypatch) -> None:
    monkeypatch.setattr(states, "_SLICE", 7)  # several slices even on small inputs
    rng = np.random.default_rng(7)
    for case in range(300):
        n = int(rng.integers(0, 60))
        arrival = np.round(rng.uniform(0, 5, n), int(rng.integers(0, 3)))  # coarse rounding: many ties
        done = arrival + np.round(rng.exponential(1.0, n), int(rng.integers(0, 3)))  # zero latencies too
        done[rng.random(n) < 0.1] = np.nan  # unfinished
        assert peak_in_flight(arrival, done) == _sweep_peak(arrival, done), case


def test_departures_leave_before_arrivals_at_the_same_moment() -> None:
    assert peak_in_flight(np.array([0.0, 1.0]), np.array([1.0, 2.0])) == 1
    assert peak_in_flight(np.array([0.0, 0.0, 0.5]), np.array([1.0, 1.0, 1.0])) == 3
    assert peak_in_flight(np.array([]), np.array([])) == 0
