"""Unit tests of the generator's parts: NHS numbers, package name data, typos."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from carelink.synth import is_valid_nhs_number, load_nicknames, nhs, nhs_check_digit, reference
from carelink.synth.errors import typo


def test_check_digit_known_values():
    assert nhs_check_digit("943476591") == 9
    assert is_valid_nhs_number("943 476 5919")
    assert not is_valid_nhs_number("9434765918")
    assert not is_valid_nhs_number("943476591")
    # A remainder of 10 means no valid number exists for those nine digits (about 1 in 11).
    checks = [nhs_check_digit(f"99900{i:04d}") for i in range(1100)]
    assert 60 < checks.count(None) < 140
    assert all(is_valid_nhs_number(f"99900{i:04d}{c}") for i, c in enumerate(checks) if c is not None)


def test_test_range_pool_is_valid_and_excludes_placeholders():
    pool = nhs.valid_test_numbers()
    assert 900_000 < len(pool) < 910_000
    assert pool.min() >= 9_990_000_000 and pool.max() <= 9_999_999_999
    assert 9_999_999_999 not in set(pool[-10:].tolist())
    sample = np.random.default_rng(0).choice(pool, 2000, replace=False)
    assert all(is_valid_nhs_number(str(x)) for x in sample)


def test_allocate_gives_twins_consecutive_valid_numbers():
    rng = np.random.default_rng(1)
    pairs = np.array([[0, 1], [5, 6]])
    numbers = nhs.allocate(rng, 50, pairs)
    assert len(set(numbers.tolist())) == 50
    pool = nhs.valid_test_numbers()
    for a, b in pairs:
        i = int(np.searchsorted(pool, numbers[a]))
        assert pool[i + 1] == numbers[b]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 909_089), st.lists(st.floats(0, 0.999), min_size=3, max_size=3))
def test_mistyped_numbers_fail_the_check(index, draws):
    number = str(nhs.valid_test_numbers()[index])
    assert not is_valid_nhs_number(nhs.mistype(number, np.array(draws)))


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ'- ", min_size=1, max_size=20),
    st.lists(st.floats(0, 0.999), min_size=10, max_size=10),
)
def test_typo_changes_the_name(name, draws):
    out = typo(name, np.array(draws))
    assert out != name and out.strip()


def test_package_name_data():
    pools = reference.forename_pools()
    assert sum(len(p.names) for (g, s), p in pools.items() if s == "F") >= 200
    assert sum(len(p.names) for (g, s), p in pools.items() if s == "M") >= 200
    assert {g for g, _ in pools} == set(reference.GROUPS)
    surnames = reference.surname_pools()
    assert sum(len(p.names) for p in surnames.values()) >= 500
    british = surnames["british"]
    assert list(british.names[:6]) == ["SMITH", "JONES", "WILLIAMS", "TAYLOR", "BROWN", "DAVIES"]
    assert british.probabilities[0] > 10 * np.median(british.probabilities)  # Zipf-like
    for pool in list(pools.values()) + list(surnames.values()):
        for name in pool.names:
            name.encode("latin-1")
            assert name == name.upper()


def test_nicknames_csv():
    pairs = set(load_nicknames())
    assert len(pairs) >= 250
    for nick, canonical in [("PEGGY", "MARGARET"), ("MAGGIE", "MARGARET"), ("BILL", "WILLIAM"), ("WILL", "WILLIAM"),
                            ("BOB", "ROBERT"), ("LIZ", "ELIZABETH"), ("BETTY", "ELIZABETH"), ("SEUN", "OLUWASEUN"),
                            ("DAVE", "DAVID"), ("JIM", "JAMES"), ("KATE", "CATHERINE")]:  # fmt: skip
        assert (nick, canonical) in pairs
    assert all(n == n.upper() and c == c.upper() and n != c for n, c in pairs)
