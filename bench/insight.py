#!/usr/bin/env python3
"""Benchmark insight's lifetime-value fit and recommendations, side by side with the libraries for the same fit.

    python bench/insight.py [--accounts 100000] [--orders 2000000] [--rounds 5] [--skip-pymc]

Data: transactions drawn from BG/NBD and Gamma-Gamma with known parameters (in days), over two years, until
there are --orders of them for --accounts accounts, each order with one to three skus from the account's
buying pattern (so co-occurrence means something). Nothing touches the database: this times the maths.

1. Fit: accord's `clv.summarise` (raw transactions to x, t_x, T, mean repeat value), `fit_bgnbd` and
   `fit_gamma_gamma`; in the same run, on the same summary, `lifetimes` (BetaGeoFitter + GammaGammaFitter,
   autograd gradients; no longer maintained) and, when installed, `pymc-marketing` (maintained: BetaGeoModel
   and GammaGammaModel fitted by MAP with flat priors, which is maximum likelihood). The parameters of each
   are printed beside accord's; medians of --rounds rounds.
2. Recommendations for all accounts: item-to-item co-occurrence with lift (`recommend.fit` + `recommend`),
   top 5 per account; medians of --rounds rounds. The reference is scikit-learn's NearestNeighbors (cosine,
   brute force) over the same baskets, the usual off-the-shelf item-to-item neighbours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
os.environ.setdefault("ACCORD_VAR_DIR", str(ROOT / "var" / "bench"))
import django  # noqa: E402

django.setup()  # recommend.py also holds the database side; nothing here touches the database

from accord.insight import clv, recommend  # noqa: E402

TRUTH = {"r": 0.9, "alpha": 10.0, "a": 0.5, "b": 6.0, "p": 6.0, "q": 4.0, "gamma": 15.0}
DAYS = 730
N_ITEMS = 200


def generate(accounts: int, orders: int, seed: int = 11) -> tuple[np.ndarray, ...]:
    """Vectorised BG/NBD draws: per account a rate and a drop-out chance; scaled until about `orders` orders."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(TRUTH["r"], 1 / TRUTH["alpha"], accounts)
    drops = rng.beta(TRUTH["a"], TRUTH["b"], accounts)
    means = TRUTH["p"] / rng.gamma(TRUTH["q"], 1 / TRUTH["gamma"], accounts)
    start = rng.integers(0, DAYS // 2, accounts).astype(np.float64)
    # Repeats before dropping out: geometric in the drop chance; their times Poisson at the rate.
    lives = rng.geometric(np.clip(drops, 1e-6, 1))  # repeats made before the one after which they drop
    per = np.minimum(lives, 400)
    customer = np.repeat(np.arange(accounts), per)
    gaps = rng.exponential(1.0, len(customer)) / np.repeat(rates, per)
    first_of = np.r_[0, np.cumsum(per)[:-1]]
    times = np.repeat(start, per) + _cumsum_by(gaps, first_of, per)
    keep = times < DAYS
    rep_c, rep_t = customer[keep], times[keep]
    all_c = np.r_[np.arange(accounts), rep_c]
    all_t = np.r_[start, rep_t]
    if len(all_c) > orders:  # trim repeats at random to the wanted count
        extra = rng.choice(np.arange(accounts, len(all_c)), len(all_c) - orders, replace=False)
        mask = np.ones(len(all_c), bool)
        mask[extra] = False
        all_c, all_t = all_c[mask], all_t[mask]
    values = rng.gamma(TRUTH["p"], means[all_c] / TRUTH["p"])
    return all_c.astype(np.int64), all_t.astype(np.int64), values


def _cumsum_by(gaps: np.ndarray, firsts: np.ndarray, per: np.ndarray) -> np.ndarray:
    total = np.cumsum(gaps)
    offset = np.repeat(np.r_[0.0, total[firsts[1:] - 1]], per)
    return total - offset


def baskets(customer: np.ndarray, rng: np.random.Generator, accounts: int) -> tuple[np.ndarray, np.ndarray]:
    """Each order's skus: one to three from the account's pattern (one of 20 groups of 10 items), or random."""
    group = rng.integers(0, N_ITEMS // 10, accounts)
    n_lines = rng.integers(1, 4, len(customer))
    line_c = np.repeat(customer, n_lines)
    own = group[line_c] * 10 + rng.integers(0, 10, len(line_c))
    random_item = rng.integers(0, N_ITEMS, len(line_c))
    item = np.where(rng.random(len(line_c)) < 0.85, own, random_item)
    return line_c, item


def timed(fn: Any, rounds: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, result


def accord_fit(customer: np.ndarray, day: np.ndarray, value: np.ndarray) -> tuple[clv.BgNbd, clv.GammaGamma]:
    s = clv.summarise(customer, day, value, DAYS - 1, "day")
    return clv.fit_bgnbd(s), clv.fit_gamma_gamma(s)


def lifetimes_fit(s: clv.Summary) -> tuple[dict[str, float], dict[str, float]]:
    import lifetimes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = lifetimes.BetaGeoFitter().fit(s.x, s.t_x, s.T)
        repeat = s.x > 0
        gg = lifetimes.GammaGammaFitter().fit(s.x[repeat], s.mean_repeat[repeat])
    return dict(bg.params_), {"p": gg.params_["p"], "q": gg.params_["q"], "gamma": gg.params_["v"]}


def pymc_fit(s: clv.Summary) -> tuple[dict[str, float], dict[str, float]]:
    import pandas as pd
    from pymc_extras.prior import Prior
    from pymc_marketing import clv as pclv

    data = pd.DataFrame({"customer_id": np.arange(len(s)), "frequency": s.x, "recency": s.t_x, "T": s.T})
    flat = {k: Prior("HalfFlat") for k in ("r", "alpha", "a", "b")}
    bg = pclv.BetaGeoModel(data=data, model_config=flat)
    bg.fit(method="map", progressbar=False)
    post = bg.idata.posterior
    repeat = s.x > 0
    money = pd.DataFrame({"customer_id": np.arange(int(repeat.sum())), "frequency": s.x[repeat],
                          "monetary_value": s.mean_repeat[repeat]})
    gg = pclv.GammaGammaModel(data=money, model_config={k: Prior("HalfFlat") for k in ("p", "q", "v")})
    gg.fit(method="map", progressbar=False)
    gpost = gg.idata.posterior
    return ({k: float(post[k].values.ravel()[0]) for k in ("r", "alpha", "a", "b")},
            {"p": float(gpost["p"].values.ravel()[0]), "q": float(gpost["q"].values.ravel()[0]),
             "gamma": float(gpost["v"].values.ravel()[0])})


def knn_recommend(x: Any, k: int) -> np.ndarray:
    """scikit-learn reference: each item's 20 nearest items by cosine over accounts, scores summed per account."""
    return recommend.recommend(knn_model(x), x, k)[0]


def knn_model(x: Any) -> recommend.Model:
    """The reference's model: each item's 20 nearest items by cosine over accounts (scikit-learn)."""
    from scipy import sparse
    from sklearn.neighbors import NearestNeighbors

    items = x.T.tocsr()
    nn = NearestNeighbors(n_neighbors=21, metric="cosine", algorithm="brute").fit(items)
    dist, idx = nn.kneighbors(items)
    rows = np.repeat(np.arange(items.shape[0]), 20)
    sim = sparse.csr_matrix((1 - dist[:, 1:].ravel(), (rows, idx[:, 1:].ravel())), shape=(items.shape[0],) * 2)
    return recommend.Model(items=[str(i) for i in range(items.shape[0])], confidence=sim, lift=sim,
                           popularity=np.asarray(x.sum(axis=0)).ravel())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-pymc", action="store_true")
    args = parser.parse_args()

    t = time.perf_counter()
    customer, day, value = generate(args.accounts, args.orders)
    print(f"data: {len(np.unique(customer)):,} accounts, {len(customer):,} orders over {DAYS} days "
          f"(generated in {time.perf_counter() - t:.1f} s); true parameters {TRUTH}")
    from threadpoolctl import threadpool_info

    print("BLAS:", ", ".join(f"{i['internal_api']} {i.get('architecture', '')} {i['num_threads']} threads"
                             for i in threadpool_info()))

    s = clv.summarise(customer, day, value, DAYS - 1, "day")
    print(f"summary: {len(s):,} customers, {int((s.x > 0).sum()):,} with repeats")

    med_sum, runs_sum, _ = timed(lambda: clv.summarise(customer, day, value, DAYS - 1, "day"), args.rounds)
    med_acc, runs_acc, _ = timed(lambda: accord_fit(customer, day, value), args.rounds)
    med_fit, runs_fit, (bg, gg) = timed(lambda: (clv.fit_bgnbd(s), clv.fit_gamma_gamma(s)), args.rounds)
    print(f"\naccord  from raw transactions (summarise + BG/NBD + Gamma-Gamma): median {med_acc:.2f} s "
          f"({', '.join(f'{x:.2f}' for x in runs_acc)}); summarise alone {med_sum:.2f} s "
          f"({', '.join(f'{x:.2f}' for x in runs_sum)})")
    print(f"accord  BG/NBD + Gamma-Gamma on the summary: median {med_fit:.2f} s "
          f"({', '.join(f'{x:.2f}' for x in runs_fit)})")
    print(f"        BG/NBD r={bg.r:.4f} alpha={bg.alpha:.3f} a={bg.a:.4f} b={bg.b:.4f} LL={bg.log_likelihood:.1f}; "
          f"Gamma-Gamma p={gg.p:.3f} q={gg.q:.3f} gamma={gg.gamma:.3f}")

    rows = [("accord", med_fit)]
    med_lt, runs_lt, (lbg, lgg) = timed(lambda: lifetimes_fit(s), args.rounds)
    print(f"lifetimes BetaGeoFitter + GammaGammaFitter on the same summary: median {med_lt:.2f} s "
          f"({', '.join(f'{x:.2f}' for x in runs_lt)})")
    print(f"        BG/NBD r={lbg['r']:.4f} alpha={lbg['alpha']:.3f} a={lbg['a']:.4f} b={lbg['b']:.4f}; "
          f"Gamma-Gamma p={lgg['p']:.3f} q={lgg['q']:.3f} gamma={lgg['gamma']:.3f}")
    rows.append(("lifetimes 0.11", med_lt))
    if not args.skip_pymc:
        try:
            med_pm, runs_pm, (pbg, pgg) = timed(lambda: pymc_fit(s), args.rounds)
        except ImportError as e:
            print(f"pymc-marketing not installed ({e}): skipped")
        else:
            import pymc_marketing

            print(f"pymc-marketing {pymc_marketing.__version__} BetaGeoModel + GammaGammaModel (MAP, flat priors) "
                  f"on the same summary: median {med_pm:.2f} s ({', '.join(f'{x:.2f}' for x in runs_pm)})")
            print(f"        BG/NBD r={pbg['r']:.4f} alpha={pbg['alpha']:.3f} a={pbg['a']:.4f} b={pbg['b']:.4f}; "
                  f"Gamma-Gamma p={pgg['p']:.3f} q={pgg['q']:.3f} gamma={pgg['gamma']:.3f}")
            rows.append((f"pymc-marketing {pymc_marketing.__version__}", med_pm))
    print("\n| fit on the same summary | median s | time vs accord |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / med_fit:.1f}x |")

    rng = np.random.default_rng(5)
    line_c, item = baskets(customer, rng, args.accounts)
    x = recommend.baskets(line_c, item, args.accounts, N_ITEMS)
    items = [f"SKU-{i}" for i in range(N_ITEMS)]
    med_rec, runs_rec, (top, _scores) = timed(lambda: recommend.recommend(recommend.fit(x, items), x, 5), args.rounds)
    med_knn, runs_knn, _ = timed(lambda: knn_recommend(x, 5), args.rounds)
    med_fit_rec, runs_fit_rec, _ = timed(lambda: recommend.fit(x, items), args.rounds)
    med_knn_fit, runs_knn_fit, _ = timed(lambda: knn_model(x), args.rounds)
    print(f"\nrecommendations, top 5 for {args.accounts:,} accounts from {len(line_c):,} order lines, {N_ITEMS} items:")
    print("| recommender | median s | runs |\n|---|---:|---|")
    print(f"| accord co-occurrence with lift | {med_rec:.2f} | {', '.join(f'{v:.2f}' for v in runs_rec)} |")
    print(f"| scikit-learn NearestNeighbors (cosine) | {med_knn:.2f} | {', '.join(f'{v:.2f}' for v in runs_knn)} |")
    print(f"model build alone: accord `recommend.fit` {med_fit_rec:.2f} s "
          f"({', '.join(f'{v:.2f}' for v in runs_fit_rec)}); scikit-learn NearestNeighbors fit + kneighbors "
          f"{med_knn_fit:.2f} s ({', '.join(f'{v:.2f}' for v in runs_knn_fit)})")
    print(f"accounts with 5 recommendations: {int((top[:, -1] >= 0).sum()):,}; load average at the end: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
