"""What to offer each account next: "customers who bought this also bought", from order lines.

Item-to-item co-occurrence over accounts (which accounts bought both items), scored by confidence (the share
of buyers of one item who also bought the other) for pairs bought together more often than chance (lift > 1)
by at least `MIN_SUPPORT` accounts. An account's candidates are the items it has not bought, ranked by the sum
of the confidences from the items it has. Evaluated on held-out orders (the latest 20% of days) against the
popularity baseline (the most bought items the account does not have), with precision@k and recall@k.
Sparse matrices (scipy) throughout, scored in chunks of accounts, so 100,000 accounts fit in memory.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from .models import OrderLine

MIN_SUPPORT = 2
CHUNK = 4096
DENSE_ITEMS = 4000


@dataclass
class Model:
    """Item-to-item scores: `confidence[i, j]` = P(bought j | bought i) where lift > 1; `lift` alongside."""

    items: list[str]
    confidence: sparse.csr_matrix
    lift: sparse.csr_matrix
    popularity: NDArray[np.float64]  # buyers per item


def baskets(account: NDArray[np.int64], item: NDArray[np.int64], n_accounts: int, n_items: int) -> sparse.csr_matrix:
    """The accounts x items matrix: 1 where the account bought the item at least once."""
    x = sparse.csr_matrix((np.ones(len(account), dtype=np.float64), (account, item)), shape=(n_accounts, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def _bitsets(x: sparse.csr_matrix) -> NDArray[np.uint64]:
    """Each item's buyers as a row of bits (one bit per account), packed in 64-bit words."""
    n, m = x.shape
    bought = np.zeros((m, n), dtype=bool)
    bought[x.indices, np.repeat(np.arange(n), np.diff(x.indptr))] = True
    packed = np.packbits(bought, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return packed.view(np.uint64)


def cooccurrence(x: sparse.csr_matrix) -> NDArray[np.int64] | sparse.coo_matrix:
    """How many accounts bought both items, for every pair (the diagonal: an item's buyers).

    With a few hundred items, as bit sets: the count of a pair is the popcount of the AND of two items' rows of
    bits, a few thousand words each, for all pairs in vectorised passes; about three times faster than the
    sparse product X'X, whose cost grows with the square of each account's items rather than with accounts.
    Beyond that (many items: the pairs outnumber what the baskets hold), the sparse product, as a COO matrix."""
    n, m = x.shape
    per_account = np.diff(x.indptr).astype(np.float64)
    pairs = float(per_account @ per_account)  # the sparse product's work: each account's items squared
    words = m * m * (n / 64) / 2  # the bit sets' work: a popcount per word, for half the pairs
    if words > 4 * pairs or m * n > 256_000_000:
        return (x.T @ x).tocoo()
    bits = _bitsets(x)
    counts = np.zeros((m, m), dtype=np.int64)
    for i in range(m):
        row = np.bitwise_count(bits[i] & bits[i:]).sum(axis=1, dtype=np.int64)
        counts[i, i:] = row
        counts[i:, i] = row
    return counts


def fit(x: sparse.csr_matrix, items: list[str], min_support: int = MIN_SUPPORT) -> Model:
    """Co-occurrence counts, confidence and lift of every pair bought together by `min_support` accounts."""
    n = x.shape[0]
    together = cooccurrence(x)
    if isinstance(together, np.ndarray):
        buyers = np.diagonal(together).astype(np.float64)
        np.fill_diagonal(together, 0)
        i, j = np.nonzero(together >= min_support)
        c = together[i, j].astype(np.float64)
    else:
        buyers = np.asarray(x.sum(axis=0)).ravel()
        keep = (together.row != together.col) & (together.data >= min_support)
        i, j, c = together.row[keep], together.col[keep], together.data[keep]
    lift = c * n / (buyers[i] * buyers[j])
    chance = lift > 1
    i, j, c, lift = i[chance], j[chance], c[chance], lift[chance]
    shape = (len(items), len(items))
    return Model(
        items=items,
        confidence=sparse.csr_matrix((c / buyers[i], (i, j)), shape=shape),
        lift=sparse.csr_matrix((lift, (i, j)), shape=shape),
        popularity=buyers.astype(np.float64),
    )


def _top(scores: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recommend(model: Model, x: sparse.csr_matrix, k: int = 5) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per account, the k best items it has not bought (-1 where fewer than k have a score) and their scores."""
    n = x.shape[0]
    out = np.full((n, k), -1, dtype=np.int64)
    best = np.zeros((n, k))
    # A few thousand items: a dense item-item matrix (sparse rows times dense is one pass); beyond, stay sparse.
    dense = model.confidence.toarray() if len(model.items) <= DENSE_ITEMS else None
    for start in range(0, n, CHUNK):
        rows = x[start : start + CHUNK]
        scores = np.asarray(rows @ dense) if dense is not None else (rows @ model.confidence).toarray()
        scores[rows.nonzero()] = 0.0
        top = _top(scores, k)
        got = np.take_along_axis(scores, top, axis=1)
        out[start : start + CHUNK] = np.where(got > 0, top, -1)
        best[start : start + CHUNK] = got
    return out, best


def popular(model: Model, x: sparse.csr_matrix, k: int = 5) -> NDArray[np.int64]:
    """The baseline: per account, the k most bought items it has not bought."""
    n = x.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    order = np.argsort(-model.popularity, kind="stable")
    for start in range(0, n, CHUNK):
        rows = x[start : start + CHUNK]
        scores = np.tile(model.popularity + 1.0, (rows.shape[0], 1))  # +1: an unbought item still ranks above owned
        scores[rows.nonzero()] = 0.0
        out[start : start + CHUNK] = _top(scores, k) if len(order) else -1
    return out


@dataclass
class Evaluation:
    """precision@k and recall@k of the recommender and of the popularity baseline on held-out orders."""

    k: int
    cutoff: dt.date | None
    accounts: int  # accounts with both a training history and new items in the held-out orders
    precision: float
    recall: float
    baseline_precision: float
    baseline_recall: float

    def as_dict(self) -> dict[str, object]:
        return {"k": self.k, "cutoff": self.cutoff.isoformat() if self.cutoff else None, "accounts": self.accounts,
                "cooccurrence": {"precision": self.precision, "recall": self.recall},
                "popularity": {"precision": self.baseline_precision, "recall": self.baseline_recall}}


def _hits(recommended: NDArray[np.int64], truth: sparse.csr_matrix) -> NDArray[np.float64]:
    hits = np.zeros(recommended.shape[0])
    for col in range(recommended.shape[1]):
        items = recommended[:, col]
        valid = items >= 0
        rows = np.flatnonzero(valid)
        hits[rows] += np.asarray(truth[rows, items[valid]]).ravel()
    return hits


def evaluate_split(train: sparse.csr_matrix, test: sparse.csr_matrix, items: list[str], k: int = 5,
                   cutoff: dt.date | None = None) -> Evaluation:
    """Train on `train`, score on the items each account bought in `test` and not in `train`."""
    new = test - test.multiply(train)
    new.eliminate_zeros()
    eligible = np.flatnonzero((np.diff(train.indptr) > 0) & (np.diff(new.indptr) > 0))
    model = fit(train, items)
    tr, truth = train[eligible], new[eligible]
    wanted = np.diff(truth.indptr).astype(np.float64)
    ours, _scores = recommend(model, tr, k)
    base = popular(model, tr, k)
    n = max(len(eligible), 1)
    hits, base_hits = _hits(ours, truth), _hits(base, truth)
    return Evaluation(
        k=k, cutoff=cutoff, accounts=len(eligible),
        precision=float(hits.sum() / (k * n)), recall=float((hits / np.maximum(wanted, 1)).sum() / n),
        baseline_precision=float(base_hits.sum() / (k * n)),
        baseline_recall=float((base_hits / np.maximum(wanted, 1)).sum() / n),
    )


# -- from the database ------------------------------------------------------------------------------------


@dataclass
class Lines:
    """Order lines with a sku and a positive amount, as index arrays."""

    accounts: list[int]  # account pk by row index
    items: list[str]
    account: NDArray[np.int64]
    item: NDArray[np.int64]
    day: NDArray[np.int64]  # date ordinal


def load() -> Lines:
    rows = OrderLine.objects.filter(amount__gt=0).exclude(sku="").values_list("account_id", "sku", "ordered_on")
    account_ix: dict[int, int] = {}
    item_ix: dict[str, int] = {}
    a, i, d = [], [], []
    for account, sku, day in rows.iterator(chunk_size=5000):
        a.append(account_ix.setdefault(account, len(account_ix)))
        i.append(item_ix.setdefault(sku, len(item_ix)))
        d.append(day.toordinal())
    return Lines(list(account_ix), list(item_ix), np.array(a, dtype=np.int64), np.array(i, dtype=np.int64),
                 np.array(d, dtype=np.int64))


@dataclass(frozen=True)
class Offer:
    """An item to offer an account, with why: the item of theirs it is most bought with."""

    sku: str
    score: float
    because: str
    lift: float


def for_accounts(k: int = 5, only: int | None = None) -> dict[int, list[Offer]]:
    """account pk -> what to offer next, best first (accounts with no scored candidate are left out); `only`:
    just that account's (the model is still learnt from everyone's orders)."""
    lines = load()
    if not len(lines.account):
        return {}
    x = baskets(lines.account, lines.item, len(lines.accounts), len(lines.items))
    model = fit(x, lines.items)
    rows = [lines.accounts.index(only)] if only in lines.accounts else [] if only is not None else None
    top, scores = recommend(model, x if rows is None else x[rows], k)
    out: dict[int, list[Offer]] = {}
    conf = model.confidence.tocsc()
    for at, row in enumerate(range(len(lines.accounts)) if rows is None else rows):
        pk = lines.accounts[row]
        offers = []
        owned = x.indices[x.indptr[row] : x.indptr[row + 1]]
        for item, score in zip(top[at], scores[at], strict=True):
            if item < 0:
                continue
            column = conf[:, item].toarray().ravel()
            source = int(owned[np.argmax(column[owned])])
            offers.append(Offer(lines.items[item], float(score), lines.items[source],
                                float(model.lift[source, item])))
        if offers:
            out[pk] = offers
    return out


def evaluate(k: int = 5, holdout: float = 0.2) -> Evaluation:
    """Hold out the orders of the latest `holdout` share of days; train on the rest."""
    lines = load()
    if not len(lines.account):
        return Evaluation(k, None, 0, 0.0, 0.0, 0.0, 0.0)
    days = np.unique(lines.day)
    cutoff = int(days[min(len(days) - 1, int(len(days) * (1 - holdout)))])
    shape = (len(lines.accounts), len(lines.items))
    before = lines.day < cutoff
    train = baskets(lines.account[before], lines.item[before], *shape)
    test = baskets(lines.account[~before], lines.item[~before], *shape)
    return evaluate_split(train, test, lines.items, k, dt.date.fromordinal(cutoff))
