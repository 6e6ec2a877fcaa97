"""Forecasts recover a known trend and weekly pattern, and a step change is caught on its first day."""

from __future__ import annotations

import numpy as np
import pytest

from accord.lib.forecast import MIN_DAYS, forecast, sudden_change

WEEK = np.array([100.0, 150.0, 120.0, 100.0, 50.0, -400.0, -500.0])  # Monday .. Sunday, added to the level


def series(days: int, seed: int, level: float = 1000.0, slope: float = 5.0, noise: float = 30.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """(truth, observed): a straight trend plus the weekly pattern, and the same with Gaussian noise."""
    t = np.arange(days)
    truth = level + slope * t + WEEK[t % 7]
    return truth, truth + np.random.default_rng(seed).normal(0.0, noise, days)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twelve_weeks_forecast_eight_weeks_ahead_within_their_intervals(seed: int) -> None:
    history, horizon = 84, 56
    truth, observed = series(history + horizon, seed)
    fc = forecast(list(observed[:history]), horizon)
    assert fc.ok, fc.reason
    assert len(fc.mean) == len(fc.lower) == len(fc.upper) == horizon
    ahead = truth[history:]
    inside = np.mean([lo <= v <= hi for lo, v, hi in zip(fc.lower, ahead, fc.upper, strict=True)])
    assert inside >= 0.95, f"only {inside:.0%} of the true values inside the 95% interval"
    # the trend: the last forecast week is where the truth is, within 3%
    assert abs(np.mean(fc.mean[-7:]) - np.mean(ahead[-7:])) / np.mean(ahead[-7:]) < 0.03
    # the weekly pattern: each weekday's offset from its week's mean, within 40 of the true one (noise is 30)
    days = np.arange(history, history + horizon) % 7
    offsets = [np.mean([m - np.mean(fc.mean[w:w + 7]) for m, w, d in
                        zip(fc.mean, range(horizon), days, strict=True) if d == day and w + 7 <= horizon])
               for day in range(7)]
    assert np.allclose(offsets, WEEK - WEEK.mean(), atol=40), np.round(offsets)
    # intervals widen with the horizon
    assert fc.upper[-1] - fc.lower[-1] > fc.upper[0] - fc.lower[0]


def test_a_step_change_is_caught_on_its_first_day_and_an_ordinary_day_is_not() -> None:
    _truth, observed = series(85, seed=3)
    ordinary = sudden_change(list(observed))
    assert ordinary is not None and not ordinary.sudden, ordinary
    # "a thousand e-mails a week become a thousand a day": the last day is three times its usual volume
    stepped = [*observed[:84], 3 * observed[84]]
    change = sudden_change(stepped)
    assert change is not None and change.sudden and change.direction == "up", change
    assert change.lower <= change.expected <= change.upper < change.actual
    dropped = [*observed[:84], 0.2 * observed[84]]
    down = sudden_change(dropped)
    assert down is not None and down.sudden and down.direction == "down"


def test_too_little_or_flat_history_says_so_and_draws_no_line() -> None:
    short = forecast([float(v) for v in range(MIN_DAYS - 1)], 14)
    assert not short.ok and short.mean == [] and f"{MIN_DAYS - 1} days" in short.reason
    assert "too little history" in short.reason
    flat = forecast([7.0] * 40, 14)
    assert not flat.ok and flat.mean == [] and "flat" in flat.reason
    assert sudden_change([1.0, 2.0, 3.0]) is None


def test_volumes_are_never_forecast_below_zero() -> None:
    _truth, observed = series(70, seed=4, level=300.0, slope=-6.0)  # falling to zero within the horizon
    fc = forecast(list(np.maximum(observed, 0.0)), 56)
    assert fc.ok, fc.reason
    assert min(fc.lower) >= 0.0 and min(fc.mean) >= 0.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        forecast([1.0] * 40, 0)
    with pytest.raises(ValueError, match="probability"):
        forecast([1.0] * 40, 7, interval=95)
    nan = forecast([1.0, float("nan")] * 20, 7)
    assert not nan.ok and "not a number" in nan.reason


def test_the_chart_draws_history_forecast_band_and_levels_and_says_them_in_words() -> None:
    import datetime as dt

    from accord.lib.charts import Level, forecast_chart

    _truth, observed = series(84 + 56, seed=5)
    history = [float(v) for v in observed[:84]]
    fc = forecast(history, 56)
    start = dt.date(2026, 9, 1)
    days = [start + dt.timedelta(days=i) for i in range(84)]
    ahead = [start + dt.timedelta(days=84 + i) for i in range(56)]
    level = 1500.0  # the forecast's trend crosses it a few weeks ahead
    svg = str(forecast_chart("fc", "Requests per day", days, history, ahead, fc.mean, fc.lower, fc.upper,
                             [Level("capacity", level)]))
    crossing = ahead[fc.first_crossing(level) or 0]
    assert fc.first_crossing(level) is not None
    assert 'class="band"' in svg and 'class="forecast"' in svg and 'class="history"' in svg
    assert 'data-value="1500"' in svg and f"crossed on {crossing:%d %b %Y}" in svg
    short = str(forecast_chart("fc", "Requests per day", days[:10], history[:10], [], [], [], [],
                               reason="too little history to forecast: 10 days"))
    assert 'class="band"' not in short and "too little history" in short and 'class="history"' in short
