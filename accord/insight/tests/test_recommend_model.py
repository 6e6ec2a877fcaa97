"""The co-occurrence counts behind recommendations: the bit-set path and the sparse-product path agree with a
plain count, pair by pair, and give the same model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import sparse

from accord.insight import recommend


def random_baskets(accounts: int, items: int, lines: int, seed: int) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    return recommend.baskets(rng.integers(0, accounts, lines), rng.integers(0, items, lines), accounts, items)


def plain_counts(x: sparse.csr_matrix) -> np.ndarray:
    """Accounts that bought both items, counted one account at a time."""
    m = x.shape[1]
    counts = np.zeros((m, m), dtype=np.int64)
    for row in range(x.shape[0]):
        owned = x.indices[x.indptr[row]:x.indptr[row + 1]]
        for i, j in itertools.product(owned, owned):
            counts[i, j] += 1
    return counts


@pytest.mark.parametrize(("accounts", "items", "lines"), [
    (1000, 12, 6000),  # few items: bit sets (1,000 accounts is not a multiple of 64: padded words)
    (70, 3, 150),
    (40, 900, 200),  # items outnumber what the baskets hold: the sparse product
])
def test_co_occurrence_counts_every_pair_exactly(accounts: int, items: int, lines: int) -> None:
    x = random_baskets(accounts, items, lines, seed=accounts + items)
    got = recommend.cooccurrence(x)
    dense = got if isinstance(got, np.ndarray) else got.toarray()
    assert isinstance(got, np.ndarray) == (items < 100)  # the path the size calls for was taken
    assert np.array_equal(dense, plain_counts(x))


def test_both_paths_give_the_same_model(monkeypatch: pytest.MonkeyPatch) -> None:
    x = random_baskets(500, 30, 4000, seed=3)
    items = [f"i{n}" for n in range(30)]
    bits = recommend.fit(x, items)
    monkeypatch.setattr(recommend, "cooccurrence", lambda x: (x.T @ x).tocoo())
    product = recommend.fit(x, items)
    assert bits.confidence.nnz > 50
    for name in ("confidence", "lift"):
        assert (getattr(bits, name) != getattr(product, name)).nnz == 0, name
    assert np.array_equal(bits.popularity, product.popularity)
    assert np.array_equal(recommend.recommend(bits, x, 5)[0], recommend.recommend(product, x, 5)[0])
