"""The lifetime-value models against the published CDNOW fit, an independent implementation, and data drawn from
known parameters."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize

from accord.insight import clv

EPOCH = dt.date(1970, 1, 1)
CALIBRATION_END = dt.date(1997, 9, 30)  # the end of week 39 of the CDNOW cohort (first purchases in Q1 1997)


def cdnow_file() -> Path:
    """CDNOW_sample.txt as the `lifetimes` package (a dev dependency, MIT) ships it; the data is never committed."""
    path = Path(str(importlib.metadata.distribution("lifetimes").locate_file("lifetimes/datasets/CDNOW_sample.txt")))
    assert path.exists(), f"{path} is missing: install the dev extra (pip install -e '.[dev]')"
    return path


def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw transactions of the 2,357-customer CDNOW sample: customer, day number, amount in US dollars."""
    customer, day, value = [], [], []
    for line in cdnow_file().read_text().splitlines():
        _master, sample_id, date, _quantity, amount = line.split()
        customer.append(int(sample_id))
        day.append((dt.date(int(date[:4]), int(date[4:6]), int(date[6:])) - EPOCH).days)
        value.append(float(amount))
    return np.array(customer), np.array(day), np.array(value)


@pytest.fixture(scope="module")
def cdnow_summary() -> clv.Summary:
    customer, day, value = cdnow()
    return clv.summarise(customer, day, value, (CALIBRATION_END - EPOCH).days, "week")


def close(value: float, published: float, tolerance: float = 0.005) -> bool:
    return abs(value - published) <= tolerance * abs(published)


def test_it_reproduces_the_published_bgnbd_fit_of_cdnow_from_the_raw_transactions(cdnow_summary: clv.Summary) -> None:
    # Fader, Hardie and Lee (2005): r=0.243, alpha=4.414, a=0.793, b=2.426, LL=-9582.4 on 2,357 customers.
    model = clv.fit_bgnbd(cdnow_summary)
    assert model.customers == len(cdnow_summary) == 2357
    assert close(model.r, 0.243) and close(model.alpha, 4.414) and close(model.a, 0.793) and close(model.b, 2.426)
    assert close(model.log_likelihood, -9582.4, 0.0001)
    # The summary's conventions, checked on the first customer (purchases 1997-01-01, 01-18, 08-02, 12-12):
    first = 0
    assert cdnow_summary.ids[first] == 1
    assert cdnow_summary.x[first] == 2  # two repeats in calibration; 12-12 is after it
    assert cdnow_summary.t_x[first] == pytest.approx(213 / 7)
    assert cdnow_summary.T[first] == pytest.approx(272 / 7)


def test_it_reproduces_the_published_gamma_gamma_fit_of_cdnow(cdnow_summary: clv.Summary) -> None:
    # Fader, Hardie and Lee (2005, "RFM and CLV") and Fader and Hardie (2013, "The Gamma-Gamma model of monetary
    # value"): p=6.25, q=3.74, gamma=15.44 on the 946 repeat customers; log-likelihood -4055.9 (the value
    # CLVTools' correctness test holds its own fit of the note to: -4055.9177).
    money = clv.fit_gamma_gamma(cdnow_summary)
    assert money.customers == 946
    assert close(money.p, 6.25) and close(money.q, 3.74) and close(money.gamma, 15.44)
    assert close(money.log_likelihood, -4055.9, 0.0001)
    # The mean repeat value of customer 1: (29.73 + 14.96) / 2.
    assert cdnow_summary.mean_repeat[0] == pytest.approx(22.345)


def test_its_fit_and_predictions_agree_with_the_lifetimes_package(cdnow_summary: clv.Summary) -> None:
    lifetimes = pytest.importorskip("lifetimes")
    s = cdnow_summary
    ours, money = clv.fit_bgnbd(s), clv.fit_gamma_gamma(s)
    theirs = lifetimes.BetaGeoFitter().fit(s.x, s.t_x, s.T)
    for name in ("r", "alpha", "a", "b"):
        assert theirs.params_[name] == pytest.approx(getattr(ours, name), rel=2e-3)
    # Predictions from the same parameters must be the same numbers (a second implementation of the formulas).
    theirs.params_ = theirs.params_.copy()
    for name in ("r", "alpha", "a", "b"):
        theirs.params_[name] = getattr(ours, name)
    expected = theirs.conditional_expected_number_of_purchases_up_to_time(39, s.x, s.t_x, s.T)
    alive = theirs.conditional_probability_alive(s.x, s.t_x, s.T)
    assert np.allclose(clv.expected_purchases(ours, 39, s.x, s.t_x, s.T), expected, rtol=1e-8)
    assert np.allclose(clv.probability_alive(ours, s.x, s.t_x, s.T), alive, rtol=1e-8)
    gg = lifetimes.GammaGammaFitter()
    repeat = s.x > 0
    gg.fit(s.x[repeat], s.mean_repeat[repeat])
    assert gg.params_["p"] == pytest.approx(money.p, rel=2e-3)
    assert gg.params_["q"] == pytest.approx(money.q, rel=2e-3)
    assert gg.params_["v"] == pytest.approx(money.gamma, rel=2e-3)
    gg.params_ = gg.params_.copy()
    gg.params_["p"], gg.params_["q"], gg.params_["v"] = money.p, money.q, money.gamma
    spend = gg.conditional_expected_average_profit(s.x[repeat], s.mean_repeat[repeat])
    assert np.allclose(clv.expected_value(money, s.x[repeat], s.mean_repeat[repeat]), spend, rtol=1e-8)


# -- a second implementation, written from the papers' equations one customer at a time (no numpy, no scipy) --


def plain_bgnbd_ll(r: float, alpha: float, a: float, b: float, x: float, t_x: float, T: float) -> float:
    """ln L of one customer, Fader, Hardie and Lee (2005), eq. 6, term by term with math.lgamma."""
    def ln_beta(u: float, v: float) -> float:
        return math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v)

    common = math.lgamma(r + x) + r * math.log(alpha) - math.lgamma(r)
    alive = ln_beta(a, b + x) - ln_beta(a, b) + common - (r + x) * math.log(alpha + T)
    if x == 0:
        return alive
    dropped = ln_beta(a + 1, b + x - 1) - ln_beta(a, b) + common - (r + x) * math.log(alpha + t_x)
    top = max(alive, dropped)
    return top + math.log(math.exp(alive - top) + math.exp(dropped - top))


def plain_gamma_gamma_ll(p: float, q: float, g: float, x: float, m: float) -> float:
    """ln f(m | p, q, gamma, x) of one customer: the density of the mean of x transactions, Fader and Hardie (2013)."""
    return (math.lgamma(p * x + q) - math.lgamma(p * x) - math.lgamma(q) + q * math.log(g) + p * x * math.log(x)
            + (p * x - 1) * math.log(m) - (p * x + q) * math.log(g + m * x))


def plain_hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """Gauss's hypergeometric series, summed until its terms no longer count (|z| < 1)."""
    total, term, n = 1.0, 1.0, 0
    while abs(term) > 1e-17 * abs(total):
        term *= (a + n) * (b + n) / ((c + n) * (n + 1)) * z
        total += term
        n += 1
    return total


def test_a_plain_implementation_of_the_equations_agrees_and_the_fit_is_its_maximum(cdnow_summary: clv.Summary) -> None:
    s = cdnow_summary
    model, money = clv.fit_bgnbd(s), clv.fit_gamma_gamma(s)
    customers = list(zip(s.x.tolist(), s.t_x.tolist(), s.T.tolist(), strict=True))
    repeat = [(x, m) for x, m in zip(s.x.tolist(), s.mean_repeat.tolist(), strict=True) if x > 0]

    def bgnbd(params: np.ndarray) -> float:
        return math.fsum(plain_bgnbd_ll(*params, x, t_x, T) for x, t_x, T in customers)

    def gamma_gamma(params: np.ndarray) -> float:
        return math.fsum(plain_gamma_gamma_ll(*params, x, m) for x, m in repeat)

    at, g_at = model.params, np.array([money.p, money.q, money.gamma])
    assert bgnbd(at) == pytest.approx(model.log_likelihood, rel=1e-10)
    assert gamma_gamma(g_at) == pytest.approx(money.log_likelihood, rel=1e-10)
    # The fitted parameters are the maximum of the plain likelihoods too: a 1% step either way in any one of
    # them lowers it.
    for best, ll in ((at, bgnbd), (g_at, gamma_gamma)):
        top = ll(best)
        for i in range(len(best)):
            for factor in (0.99, 1.01):
                moved = best.copy()
                moved[i] *= factor
                assert ll(moved) < top, (i, factor)
    # The predictions, from eq. 10 and 13 with the series summed by hand, for the first 200 customers.
    r, alpha, a, b = at.tolist()
    t = 39.0
    for i in range(200):
        x, t_x, T = customers[i]
        odds = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
        alive = 1 / (1 + odds)
        series = plain_hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        purchases = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * series) * alive
        one = (np.array([x]), np.array([t_x]), np.array([T]))
        assert clv.probability_alive(model, *one)[0] == pytest.approx(alive, rel=1e-10)
        assert clv.expected_purchases(model, t, *one)[0] == pytest.approx(purchases, rel=1e-9)


def test_the_parameters_standard_errors_agree_with_the_lifetimes_package(cdnow_summary: clv.Summary) -> None:
    # The CLV band rests on the fits' covariance (the inverse Hessian of each log-likelihood, in log-parameters);
    # lifetimes computes its standard errors from its own (autograd) Hessian in the parameters themselves.
    lifetimes = pytest.importorskip("lifetimes")
    s = cdnow_summary
    ours, money = clv.fit_bgnbd(s), clv.fit_gamma_gamma(s)
    assert ours.cov_log is not None and money.cov_log is not None
    se = ours.params * np.sqrt(np.diag(ours.cov_log))  # delta method: sd(theta) = theta sd(log theta)
    theirs = lifetimes.BetaGeoFitter().fit(s.x, s.t_x, s.T).summary["se(coef)"]
    assert np.allclose(se, [theirs["r"], theirs["alpha"], theirs["a"], theirs["b"]], rtol=5e-3)
    repeat = s.x > 0
    g_se = np.array([money.p, money.q, money.gamma]) * np.sqrt(np.diag(money.cov_log))
    g_theirs = lifetimes.GammaGammaFitter().fit(s.x[repeat], s.mean_repeat[repeat]).summary["se(coef)"]
    assert np.allclose(g_se, [g_theirs["p"], g_theirs["q"], g_theirs["v"]], rtol=5e-3)


def test_the_clv_band_is_the_spread_of_clv_over_the_parameters_uncertainty(cdnow_summary: clv.Summary) -> None:
    # The 90% band is clv +- 1.645 sd by the delta method; drawing the seven parameters from their (log-normal)
    # distribution and computing each draw's CLV must give about the same spread.
    s = cdnow_summary
    model, money = clv.fit_bgnbd(s), clv.fit_gamma_gamma(s)
    assert model.cov_log is not None and money.cov_log is not None
    pick = np.r_[np.flatnonzero(s.x > 0)[:15], np.flatnonzero(s.x == 0)[:5]]
    few = clv.Summary(s.ids[pick], s.x[pick], s.t_x[pick], s.T[pick], s.mean_repeat[pick], s.first_value[pick], s.unit)
    band = clv.predict(model, money, few, 52)
    cov = np.zeros((7, 7))
    cov[:4, :4], cov[4:, 4:] = model.cov_log, money.cov_log
    centre = np.log(np.r_[model.params, money.p, money.q, money.gamma])
    draws = np.exp(np.random.default_rng(7).multivariate_normal(centre, cov, 1000))
    values = np.array([clv.discounted_clv(clv.BgNbd(*d[:4], 0.0, 0), clv.GammaGamma(*d[4:], 0.0, 0), few, 52, 0.1)
                       for d in draws])
    sd = (band.clv_high - band.clv) / 1.645
    assert np.all(sd > 0)
    assert np.allclose(values.std(axis=0) / sd, 1.0, atol=0.12)
    assert np.all((band.clv_low < band.clv) & (band.clv < band.clv_high))


def test_the_gradients_are_the_derivatives_of_the_log_likelihoods(cdnow_summary: clv.Summary) -> None:
    s = cdnow_summary
    at = np.array([0.3, 5.0, 0.9, 2.0])
    error = optimize.check_grad(lambda p: clv.bgnbd_log_likelihood(p, s.x, s.t_x, s.T)[0],
                                lambda p: clv.bgnbd_log_likelihood(p, s.x, s.t_x, s.T)[1], at)
    assert error < 1e-3 * np.linalg.norm(clv.bgnbd_log_likelihood(at, s.x, s.t_x, s.T)[1])
    repeat = s.x > 0
    g_at = np.array([5.0, 3.0, 12.0])
    error = optimize.check_grad(lambda p: clv.gamma_gamma_log_likelihood(p, s.x[repeat], s.mean_repeat[repeat])[0],
                                lambda p: clv.gamma_gamma_log_likelihood(p, s.x[repeat], s.mean_repeat[repeat])[1], g_at)
    assert error < 1e-3 * np.linalg.norm(clv.gamma_gamma_log_likelihood(g_at, s.x[repeat], s.mean_repeat[repeat])[1])


def simulate(n: int, r: float, alpha: float, a: float, b: float, p: float, q: float, gamma: float, days: int,
             seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transactions drawn from BG/NBD and Gamma-Gamma with known parameters (time in days)."""
    rng = np.random.default_rng(seed)
    customer, day, value = [], [], []
    rates = rng.gamma(r, 1 / alpha, n)
    drops = rng.beta(a, b, n)
    means = 1 / rng.gamma(q, 1 / gamma, n)  # nu ~ Gamma(q, gamma): a customer's mean is p / nu
    starts = rng.integers(0, days // 3, n)
    for i in range(n):
        t = float(starts[i])
        customer.append(i)
        day.append(int(t))
        value.append(rng.gamma(p, means[i]))
        while True:  # BG/NBD: the chance to drop out comes after each repeat purchase, not after the first
            t += rng.exponential(1 / rates[i])
            if t >= days:
                break
            customer.append(i)
            day.append(int(t))
            value.append(rng.gamma(p, means[i]))
            if rng.random() < drops[i]:
                break
    return np.array(customer), np.array(day), np.array(value)


def test_it_recovers_the_parameters_it_generated_the_data_from() -> None:
    truth = {"r": 0.8, "alpha": 40.0, "a": 0.6, "b": 3.0}
    customer, day, value = simulate(20_000, 0.8, 40.0, 0.6, 3.0, 6.0, 4.0, 15.0, 700, seed=3)
    # Whole days only: a second purchase on a day would be merged, so use rates well below one a day.
    s = clv.summarise(customer, day, value, 699, "day")
    model = clv.fit_bgnbd(s)
    for name, value_ in truth.items():
        assert getattr(model, name) == pytest.approx(value_, rel=0.06), name
    money = clv.fit_gamma_gamma(s)
    # Gamma-Gamma's parameters trade off against each other; their population mean p*gamma/(q-1) is well defined.
    assert money.population_mean == pytest.approx(6.0 * 15.0 / 3.0, rel=0.1)


def test_same_day_purchases_are_one_transaction_and_the_first_is_not_a_repeat() -> None:
    s = clv.summarise(np.array([7, 7, 7, 7]), np.array([0, 0, 14, 21]), np.array([10.0, 5.0, 20.0, 40.0]), 28, "week")
    assert list(s.x) == [2]  # day 0 (two lines) is the first; days 14 and 21 are repeats
    assert s.first_value[0] == 15.0
    assert s.mean_repeat[0] == 30.0
    assert s.t_x[0] == 3.0 and s.T[0] == 4.0


def test_a_refunded_day_is_no_purchase_but_a_free_one_is() -> None:
    s = clv.summarise(np.array([1, 1, 1]), np.array([0, 7, 14]), np.array([10.0, -3.0, 0.0]), 14, "day")
    assert s.x[0] == 1 and s.t_x[0] == 14.0  # day 7 (net negative) dropped, day 14 (free) kept


def test_it_refuses_fewer_than_30_customers() -> None:
    customer, day, value = simulate(29, 0.8, 20.0, 0.6, 3.0, 6.0, 4.0, 15.0, 300, seed=1)
    s = clv.summarise(customer, day, value, 299, "day")
    with pytest.raises(clv.FitError, match=r"29 customer.*at least 30"):
        clv.fit_bgnbd(s)


def test_it_refuses_orders_all_on_one_day() -> None:
    s = clv.summarise(np.arange(50), np.zeros(50, dtype=int), np.full(50, 10.0), 10, "day")
    with pytest.raises(clv.FitError, match="no customer bought on two different days"):
        clv.fit_bgnbd(s)


def test_it_refuses_a_fit_that_does_not_converge(cdnow_summary: clv.Summary) -> None:
    with pytest.raises(clv.FitError, match="did not converge"):
        clv.fit_bgnbd(cdnow_summary, max_iterations=2)


def test_a_one_purchase_customer_gets_the_prior_and_is_flagged(cdnow_summary: clv.Summary) -> None:
    model, money = clv.fit_bgnbd(cdnow_summary), clv.fit_gamma_gamma(cdnow_summary)
    p = clv.predict(model, money, cdnow_summary, 52)
    single = np.flatnonzero(cdnow_summary.x == 0)[0]
    assert p.prior_only[single] and not p.prior_only[0]
    assert p.value[single] == pytest.approx(money.population_mean)
    assert p.clv_low[0] < p.clv[0] < p.clv_high[0]
    # A longer horizon can only add purchases; discounting makes a later purchase worth less.
    longer = clv.predict(model, money, cdnow_summary, 104)
    assert np.all(longer.clv >= p.clv)
    undiscounted = clv.discounted_clv(model, money, cdnow_summary, 52, 0.0)
    assert np.all(undiscounted >= p.clv) and np.allclose(undiscounted, p.purchases * p.value)
