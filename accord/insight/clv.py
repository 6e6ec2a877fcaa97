"""Customer lifetime value: BG/NBD for how many purchases, Gamma-Gamma for what each is worth (docs/insight.md).

Plain numpy and scipy, no Django: the fit takes transactions as arrays and returns parameters and per-customer
predictions. The models and their conventions are those of the papers:

- Fader, Hardie and Lee (2005), "Counting your customers the easy way: an alternative to the Pareto/NBD model"
  (BG/NBD): a customer buys at a Poisson rate (gamma-distributed across customers, r and alpha) until they
  drop out, which they may do after any purchase with a probability p (beta-distributed, a and b).
- Fader, Hardie and Lee (2005), "RFM and CLV: using iso-value curves for customer base analysis", and Fader &
  Hardie's note "The Gamma-Gamma model of monetary value" (2013): the value of a customer's transactions
  varies around their own mean, which varies across customers (p, q, gamma).

Conventions: purchases on the same day are one transaction (their values summed); the first transaction is not
a repeat (x counts repeats, t_x is the time of the last one since the first, T the time from the first to the
end of calibration); Gamma-Gamma is fitted on customers with at least one repeat, on the mean value of their
repeat transactions. Both are fitted by maximum likelihood with analytic gradients (L-BFGS-B on the logarithms
of the parameters, which keeps them positive); a fit that does not converge is refused, not reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

MIN_CUSTOMERS = 30
UNIT_DAYS = {"week": 7, "day": 1}
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class FitError(ValueError):
    """The data cannot be fitted, or the fit did not converge; the message says why in words."""


@dataclass
class Summary:
    """Per customer, in time units: repeat transactions x, time of the last t_x, age T, and monetary value.

    `first_value` is the value of the first transaction; `mean_repeat` the mean value of the repeat ones (0
    without repeats). Customers whose first purchase falls after the calibration end are not in it.
    """

    ids: IntArray
    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    mean_repeat: FloatArray
    first_value: FloatArray
    unit: str

    def __len__(self) -> int:
        return len(self.ids)


def summarise(customer: IntArray, day: IntArray, value: FloatArray, calibration_end: int, unit: str = "week") -> Summary:
    """Transactions (customer id, day number, value) up to and including `calibration_end` (a day number).

    Lines of one customer on one day are one transaction, their values summed. A free purchase (value 0) is
    still a purchase, as in the CDNOW data; a day whose net value is negative (refunds of earlier days) is not.
    (Orders that were refunded in full are taken out before they get here: see `accord.insight.orders`.)
    """
    if unit not in UNIT_DAYS:
        raise FitError(f"unit '{unit}' must be one of {', '.join(UNIT_DAYS)}")
    customer = np.asarray(customer, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    keep = day <= calibration_end
    customer, day, value = customer[keep], day[keep], value[keep]
    if len(customer) == 0:
        empty = np.zeros(0)
        return Summary(np.zeros(0, dtype=np.int64), empty, empty, empty, empty, empty, unit)
    # One transaction per (customer, day): sort by both, sum each run.
    order = np.lexsort((day, customer))
    customer, day, value = customer[order], day[order], value[order]
    starts = np.flatnonzero(np.r_[True, (customer[1:] != customer[:-1]) | (day[1:] != day[:-1])])
    tc, td, tv = customer[starts], day[starts], np.add.reduceat(value, starts)
    bought = tv >= 0
    tc, td, tv = tc[bought], td[bought], tv[bought]
    firsts = np.flatnonzero(np.r_[True, tc[1:] != tc[:-1]])
    counts = np.diff(np.r_[firsts, len(tc)])
    lasts = firsts + counts - 1
    scale = float(UNIT_DAYS[unit])
    first_day = td[firsts]
    x = (counts - 1).astype(np.float64)
    repeat_sum = np.add.reduceat(tv, firsts) - tv[firsts]
    mean_repeat = np.divide(repeat_sum, x, out=np.zeros_like(repeat_sum), where=x > 0)
    return Summary(
        ids=tc[firsts], x=x, t_x=(td[lasts] - first_day) / scale, T=(calibration_end - first_day) / scale,
        mean_repeat=mean_repeat, first_value=tv[firsts], unit=unit,
    )


# -- BG/NBD -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BgNbd:
    """Fitted BG/NBD parameters (r, alpha in the summary's time unit, a, b) and the fit's log-likelihood."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int
    cov_log: FloatArray | None = field(default=None, compare=False, repr=False)  # of log(r, alpha, a, b)

    @property
    def params(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.a, self.b])

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b, "log_likelihood": self.log_likelihood}


def _dot(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Sum of products without BLAS: OpenBLAS's threaded dot of one long vector costs milliseconds when the
    machine is busy (thread hand-offs), where a single pass costs a tenth of one (bench/insight.py)."""
    return float(np.einsum("i,i->", a, b))


class _BgNbdTerms:
    """The BG/NBD log-likelihood and gradient of fixed data, evaluated fast for many parameter vectors.

    Terms that depend on x alone are summed per distinct repeat count (their weights added up), so the special
    functions run once per count; the per-customer work is a few logs and exps, and customers without a repeat
    (most of them, often) skip the "dropped out" term altogether.
    """

    def __init__(self, x: FloatArray, t_x: FloatArray, T: FloatArray, weights: FloatArray) -> None:
        self.ux, inverse = np.unique(x, return_inverse=True)
        self.wu = np.bincount(inverse, weights=weights, minlength=len(self.ux))  # weight per distinct count
        self.n = float(weights.sum())
        zero = x == 0
        self.T0, self.w0 = T[zero], weights[zero]
        self.x1, self.t1, self.T1, self.w1 = x[~zero], t_x[~zero], T[~zero], weights[~zero]
        self.i1 = inverse[~zero]

    def __call__(self, params: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = params
        ux, wu = self.ux, self.wu
        log_alpha = np.log(alpha)
        # Per count: ln A1 + ln A2 (Fader, Hardie and Lee 2005, eq. 6) and their derivatives.
        ll = _dot(wu, special.gammaln(r + ux) + special.gammaln(b + ux) - special.gammaln(a + b + ux)) \
            + self.n * (-special.gammaln(r) + r * log_alpha + special.gammaln(a + b) - special.gammaln(b))
        d_r = _dot(wu, special.digamma(r + ux)) + self.n * (log_alpha - special.digamma(r))
        d_alpha = self.n * r / alpha
        psi_ab = self.n * special.digamma(a + b) - _dot(wu, special.digamma(a + b + ux))
        d_a = psi_ab
        d_b = psi_ab + _dot(wu, special.digamma(b + ux)) - self.n * special.digamma(b)
        # No repeat: alive at T for sure; ln A3 = -r ln(alpha + T).
        log_aT0 = np.log(alpha + self.T0)
        ll -= r * _dot(self.w0, log_aT0)
        d_r -= _dot(self.w0, log_aT0)
        d_alpha -= r * _dot(self.w0, 1 / (alpha + self.T0))
        # Repeats: ln(A3 + A4) = ln A3 + softplus(d), d = ln A4 - ln A3; share4 = sigmoid(d).
        rx = r + self.x1
        log_aT, log_at = np.log(alpha + self.T1), np.log(alpha + self.t1)
        inv_b = np.divide(1.0, b + ux - 1, out=np.zeros_like(ux), where=ux > 0)
        log_c = np.log(a) + np.log(np.where(ux > 0, inv_b, 1.0))  # ln(a / (b + x - 1)) per count
        gap = log_aT - log_at
        d = log_c[self.i1] + rx * gap
        e = np.exp(-np.abs(d))
        share4 = np.where(d >= 0, 1 / (1 + e), e / (1 + e))
        w1 = self.w1
        ll += _dot(w1, np.maximum(d, 0) + np.log1p(e) - rx * log_aT)
        ws = w1 * share4
        d_r += _dot(ws, gap) - _dot(w1, log_aT)
        inv_T, inv_t = 1 / (alpha + self.T1), 1 / (alpha + self.t1)
        d_alpha -= _dot(w1 * rx, inv_T) - _dot(ws * rx, inv_T - inv_t)
        sum_s = float(ws.sum())
        d_a += sum_s / a
        d_b -= _dot(ws, inv_b[self.i1])
        return float(ll), np.array([d_r, d_alpha, d_a, d_b])


def bgnbd_log_likelihood(params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray,
                         weights: FloatArray | None = None) -> tuple[float, FloatArray]:
    """The BG/NBD log-likelihood (Fader, Hardie and Lee 2005, eq. 6) and its gradient in (r, alpha, a, b)."""
    w = np.ones_like(x) if weights is None else weights
    return _BgNbdTerms(np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float), w)(np.asarray(params))


def _aggregate(*columns: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Identical rows once, with how often they occur: the likelihood is a sum, so it is the same and faster."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(np.float64)


def _minimise(neg: Any, start: FloatArray, what: str, max_iterations: int) -> Any:
    result = optimize.minimize(neg, start, jac=True, method="L-BFGS-B",
                               options={"maxiter": max_iterations, "ftol": 1e-13, "gtol": 1e-7})
    if not result.success or not np.all(np.isfinite(result.x)):
        raise FitError(f"the {what} fit did not converge ({result.message}); nothing was reported")
    return result


def _hessian(grad_log: Any, at: FloatArray) -> FloatArray:
    """The Hessian of the negative log-likelihood in log-parameters, by central differences of the gradient."""
    n = len(at)
    h = np.zeros((n, n))
    for i in range(n):
        step = np.zeros(n)
        step[i] = 1e-5
        h[:, i] = (grad_log(at + step) - grad_log(at - step)) / 2e-5
    return (h + h.T) / 2


def _covariance(hessian: FloatArray) -> FloatArray | None:
    try:
        cov = np.asarray(np.linalg.inv(hessian), dtype=np.float64)
    except np.linalg.LinAlgError:
        return None
    return cov if np.all(np.isfinite(cov)) and np.all(np.diag(cov) >= 0) else None


def fit_bgnbd(summary: Summary, max_iterations: int = 2000) -> BgNbd:
    """Maximum-likelihood BG/NBD on every customer of the summary; refuses data that cannot identify it."""
    n = len(summary)
    if n < MIN_CUSTOMERS:
        raise FitError(f"{n} customer(s) with orders before the calibration end; a fit needs at least "
                       f"{MIN_CUSTOMERS}")
    if not np.any(summary.x > 0):
        raise FitError("no customer bought on two different days before the calibration end, so nothing tells "
                       "how often customers come back: a fit needs repeat purchases")
    if not np.any(summary.T > 0):
        raise FitError("every customer's first purchase is on the calibration end: there is no time to observe")
    (x, t_x, T), weights = _aggregate(summary.x, summary.t_x, summary.T)
    terms = _BgNbdTerms(x, t_x, T, weights)
    scale = max(float(np.mean(summary.T)), 1e-9)  # alpha lives in time units: start near the data's scale

    def neg(log_params: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(log_params)
        ll, grad = terms(params)
        if not np.isfinite(ll):
            return 1e300, np.zeros(4)
        return -ll / n, -grad * params / n  # per customer: the tolerances then mean the same at any size

    start = np.log(np.array([1.0, scale, 1.0, 1.0]))
    result = _minimise(neg, start, "BG/NBD", max_iterations)
    r, alpha, a, b = np.exp(result.x)
    ll, _grad = terms(np.exp(result.x))
    cov = _covariance(_hessian(lambda p: neg(p)[1] * n, result.x))
    return BgNbd(float(r), float(alpha), float(a), float(b), float(ll), n, cov)


def probability_alive(m: BgNbd, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """P(still a customer | x, t_x, T) (Fader, Hardie and Lee 2005, eq. 13); 1 for a customer with no repeat."""
    bx1 = np.where(x > 0, m.b + x - 1, 1.0)
    odds = np.where(x > 0, m.a / bx1 * np.exp((m.r + x) * (np.log(m.alpha + T) - np.log(m.alpha + t_x))), 0.0)
    return 1 / (1 + odds)


def expected_purchases(m: BgNbd, t: float | FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """E[purchases in the next t | x, t_x, T] (Fader, Hardie and Lee 2005, eq. 10)."""
    t = np.asarray(t, dtype=np.float64)
    z = t / (m.alpha + T + t)
    hyp = special.hyp2f1(m.r + x, m.b + x, m.a + m.b + x - 1, z)
    ratio = np.exp((m.r + x) * (np.log(m.alpha + T) - np.log(m.alpha + T + t)))
    first = (m.a + m.b + x - 1) / (m.a - 1) * (1 - ratio * hyp)
    return first * probability_alive(m, x, t_x, T)


# -- Gamma-Gamma ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma parameters (p, q, gamma in money) and the fit's log-likelihood."""

    p: float
    q: float
    gamma: float
    log_likelihood: float
    customers: int
    cov_log: FloatArray | None = field(default=None, compare=False, repr=False)  # of log(p, q, gamma)

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma, "log_likelihood": self.log_likelihood}

    @property
    def population_mean(self) -> float:
        """The expected value of a transaction of a customer we know nothing about: p gamma / (q - 1)."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else float("nan")


class _GammaGammaTerms:
    """The Gamma-Gamma log-likelihood and gradient of fixed data; as for BG/NBD, the special functions run once
    per distinct repeat count, and what depends only on the data (log m, x log m) is summed once."""

    def __init__(self, x: FloatArray, m: FloatArray, weights: FloatArray) -> None:
        self.ux, inverse = np.unique(x, return_inverse=True)
        self.wu = np.bincount(inverse, weights=weights, minlength=len(self.ux))
        self.n = float(weights.sum())
        log_m = np.log(m)
        self.s_log_m = _dot(weights, log_m)
        self.s_x_log_m = _dot(weights, x * log_m)
        self.x, self.xm, self.w, self.wx = x, x * m, weights, weights * x

    def __call__(self, params: FloatArray) -> tuple[float, FloatArray]:
        p, q, g = params
        ux, wu = self.ux, self.wu
        pu = p * ux
        log_gxm = np.log(g + self.xm)
        inv = 1 / (g + self.xm)
        s_log = _dot(self.w, log_gxm)
        s_x_log = _dot(self.wx, log_gxm)
        ll = _dot(wu, special.gammaln(pu + q) - special.gammaln(pu) + pu * np.log(ux)) \
            + self.n * (q * np.log(g) - special.gammaln(q)) + p * self.s_x_log_m - self.s_log_m - p * s_x_log - q * s_log
        psi = special.digamma(pu + q)
        d_p = _dot(wu * ux, psi - special.digamma(pu) + np.log(ux)) + self.s_x_log_m - s_x_log
        d_q = _dot(wu, psi) - self.n * special.digamma(q) + self.n * np.log(g) - s_log
        d_g = self.n * q / g - p * _dot(self.wx, inv) - q * _dot(self.w, inv)
        return float(ll), np.array([d_p, d_q, d_g])


def gamma_gamma_log_likelihood(params: FloatArray, x: FloatArray, m: FloatArray,
                               weights: FloatArray | None = None) -> tuple[float, FloatArray]:
    """The Gamma-Gamma log-likelihood of mean repeat values m over x transactions, and its gradient."""
    w = np.ones_like(x) if weights is None else weights
    return _GammaGammaTerms(np.asarray(x, float), np.asarray(m, float), w)(np.asarray(params))


def fit_gamma_gamma(summary: Summary, max_iterations: int = 2000) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on the customers with at least one repeat purchase."""
    repeat = (summary.x > 0) & (summary.mean_repeat > 0)
    n = int(repeat.sum())
    if n < MIN_CUSTOMERS:
        raise FitError(f"{n} customer(s) bought again before the calibration end; the value model needs at "
                       f"least {MIN_CUSTOMERS}")
    (x, m), weights = _aggregate(summary.x[repeat], summary.mean_repeat[repeat])
    terms = _GammaGammaTerms(x, m, weights)
    if np.ptp(m) == 0:
        raise FitError("every repeat customer's mean value is the same: their spread cannot be fitted")

    def neg(log_params: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(log_params)
        ll, grad = terms(params)
        if not np.isfinite(ll):
            return 1e300, np.zeros(3)
        return -ll / n, -grad * params / n

    start = np.log(np.array([1.0, 1.0, max(float(np.median(m)), 1e-9)]))
    result = _minimise(neg, start, "Gamma-Gamma", max_iterations)
    p, q, g = np.exp(result.x)
    ll, _grad = terms(np.exp(result.x))
    cov = _covariance(_hessian(lambda v: neg(v)[1] * n, result.x))
    return GammaGamma(float(p), float(q), float(g), float(ll), n, cov)


def expected_value(g: GammaGamma, x: FloatArray, mean_repeat: FloatArray) -> FloatArray:
    """E[value of a transaction | x repeats with mean value m]: a weighted mean of the population's and the
    customer's own; the population mean alone for a customer with no repeat (the prior)."""
    x = np.asarray(x, dtype=np.float64)
    own = np.where(x > 0, mean_repeat, 0.0)
    return (g.gamma + x * own) * g.p / (g.p * x + g.q - 1)


# -- lifetime value ---------------------------------------------------------------------------------------


@dataclass
class Predictions:
    """Per customer (in the summary's order): what the fitted models expect over the horizon."""

    ids: IntArray
    purchases: FloatArray  # expected purchases within the horizon
    alive: FloatArray  # probability of still being a customer
    value: FloatArray  # expected value per purchase
    clv: FloatArray  # discounted value of the horizon's purchases
    clv_low: FloatArray  # 90% band of clv from the parameters' uncertainty (delta method on the Hessian)
    clv_high: FloatArray
    prior_only: NDArray[np.bool_]  # no repeat purchase: the value is the population's (prior) mean


def discounted_clv(m: BgNbd, g: GammaGamma, s: Summary, horizon: float, discount_rate: float,
                   steps: int = 12) -> FloatArray:
    """The horizon's expected purchases, in `steps` slices, times the expected value, each slice discounted.

    `discount_rate` is per year; a slice ending at time t (in the summary's unit) is discounted by
    (1 + rate)^(t in years).
    """
    edges = np.linspace(0, horizon, steps + 1)
    years_per_unit = UNIT_DAYS[s.unit] / 365.25
    value = expected_value(g, s.x, s.mean_repeat)
    total = np.zeros(len(s))
    before = np.zeros(len(s))
    for end in edges[1:]:
        upto = expected_purchases(m, end, s.x, s.t_x, s.T)
        total += (upto - before) / (1 + discount_rate) ** (end * years_per_unit)
        before = upto
    return total * value


def predict(m: BgNbd, g: GammaGamma, s: Summary, horizon: float, discount_rate: float = 0.1) -> Predictions:
    """Per-customer predictions over `horizon` time units, with a 90% band of the CLV."""
    clv = discounted_clv(m, g, s, horizon, discount_rate)
    low, high = clv.copy(), clv.copy()
    if m.cov_log is not None and g.cov_log is not None:
        # Delta method: the CLV's gradient in the seven log-parameters by central differences, then
        # var = J Sigma J' with the two fits independent (block-diagonal covariance).
        base = np.log(np.r_[m.params, g.p, g.q, g.gamma])
        cov = np.zeros((7, 7))
        cov[:4, :4], cov[4:, 4:] = m.cov_log, g.cov_log
        jac = np.zeros((len(s), 7))
        for i in range(7):
            values = []
            for sign in (1, -1):
                shifted = base.copy()
                shifted[i] += sign * 1e-4
                p = np.exp(shifted)
                mm = BgNbd(p[0], p[1], p[2], p[3], 0.0, 0)
                gg = GammaGamma(p[4], p[5], p[6], 0.0, 0)
                values.append(discounted_clv(mm, gg, s, horizon, discount_rate))
            jac[:, i] = (values[0] - values[1]) / 2e-4
        sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, cov, jac), 0))
        low, high = np.maximum(clv - 1.645 * sd, 0), clv + 1.645 * sd
    return Predictions(
        ids=s.ids, purchases=expected_purchases(m, horizon, s.x, s.t_x, s.T), alive=probability_alive(m, s.x, s.t_x, s.T),
        value=expected_value(g, s.x, s.mean_repeat), clv=clv, clv_low=low, clv_high=high, prior_only=s.x == 0,
    )
