"""NHS numbers: Modulus 11 check digits, the 999 test range and deliberate corruptions.

The synthetic partnership only ever issues numbers from the 999 000 0000 - 999 999 9999 test
range, so nothing it writes can collide with a real patient.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Modulus 11 weights applied to the first nine digits.
WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)
TEST_RANGE_START = 9_990_000_000
#: Values that systems use when the real number is unknown; never issued to a person.
PLACEHOLDER_NHS_NUMBERS: tuple[str, ...] = ("0000000000", "9999999999", "1111111111", "1234567890")


def nhs_check_digit(first_nine: str) -> int | None:
    """Return the Modulus 11 check digit for nine digits, or None when no valid number exists.

    Args:
        first_nine: the first nine digits of an NHS number.

    Returns:
        The check digit 0-9, or None when the remainder gives 10 (such numbers are never issued).
    """
    if len(first_nine) != 9 or not first_nine.isdigit():
        raise ValueError(f"need nine digits, got {first_nine!r}")
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid_nhs_number(value: str) -> bool:
    """Tell whether a 10-digit string (spaces allowed) has a correct Modulus 11 check digit."""
    digits = value.replace(" ", "")
    if len(digits) != 10 or not digits.isdigit():
        return False
    return nhs_check_digit(digits[:9]) == int(digits[9])


def is_test_range(value: str) -> bool:
    """Tell whether a number (spaces allowed) lies in the 999 000 0000 - 999 999 9999 test range."""
    digits = value.replace(" ", "")
    return len(digits) == 10 and digits.startswith("999") and digits.isdigit()


@lru_cache(maxsize=2)
def valid_test_numbers(wide: bool = False) -> np.ndarray:
    """Return every valid NHS number in the test range, ascending, excluding placeholder values (read-only).

    ``wide`` extends the range down to 990 000 0000 (about 9.1 million numbers) for populations larger than the
    999 test range holds (~909,000): synthetic numbers for scale benchmarks, outside the official test range.
    """
    start, count = (990_000_000, 10_000_000) if wide else (999_000_000, 1_000_000)
    first9 = start + np.arange(count, dtype=np.int64)
    total = np.zeros(first9.shape, dtype=np.int64)
    rest = first9.copy()
    for weight in WEIGHTS[::-1]:  # least significant digit carries weight 2
        total += (rest % 10) * weight
        rest //= 10
    check = 11 - total % 11
    check[check == 11] = 0
    ok = check != 10
    numbers = first9[ok] * 10 + check[ok]
    placeholders = np.array([int(p) for p in PLACEHOLDER_NHS_NUMBERS], dtype=np.int64)
    numbers = numbers[~np.isin(numbers, placeholders)]
    numbers.flags.writeable = False
    return numbers


def pool_for(people: int) -> np.ndarray:
    """The number pool a population of ``people`` draws from: the 999 test range while it suffices."""
    return valid_test_numbers(wide=people > len(valid_test_numbers()))


def allocate(rng: np.random.Generator, n: int, twin_pairs: np.ndarray) -> np.ndarray:
    """Issue n distinct valid test-range numbers; each twin pair gets consecutive valid numbers.

    Args:
        rng: random generator.
        n: how many people need a number.
        twin_pairs: int array of shape (k, 2) of person indices; the second of each pair receives
            the next valid number after the first's.

    Returns:
        int64 array of length n.
    """
    pool = pool_for(n)
    if n > len(pool):
        raise ValueError(f"the synthetic NHS ranges hold only {len(pool)} valid numbers; asked for {n}")
    numbers = np.zeros(n, dtype=np.int64)
    used = np.zeros(len(pool), dtype=bool)
    if len(twin_pairs):
        slots = rng.choice(len(pool) // 2, size=len(twin_pairs), replace=False) * 2
        numbers[twin_pairs[:, 0]] = pool[slots]
        numbers[twin_pairs[:, 1]] = pool[slots + 1]
        used[slots] = used[slots + 1] = True
    rest = np.ones(n, dtype=bool)
    if len(twin_pairs):
        rest[twin_pairs.ravel()] = False
    free = np.flatnonzero(~used)
    numbers[rest] = pool[rng.choice(free, size=int(rest.sum()), replace=False)]
    return numbers


def mistype(number: str, draws: np.ndarray) -> str:
    """Corrupt a valid number the way a keyboard would, so that its check digit fails.

    Args:
        number: a valid 10-digit number.
        draws: uniform [0, 1) draws (at least 3) that drive the choice of corruption.

    Returns:
        A string that is not a valid NHS number (wrong digit, transposed digits, or a digit dropped).
    """
    digits = list(number)
    kind = draws[0]
    pos = 3 + int(draws[1] * 7)  # keep the 999 prefix in most corruptions, as typists do
    if kind < 0.55:
        new = str((int(digits[pos]) + 1 + int(draws[2] * 9)) % 10)
        digits[pos] = new
    elif kind < 0.9:
        pos = min(pos, 8)
        if digits[pos] == digits[pos + 1]:
            digits[pos] = str((int(digits[pos]) + 1) % 10)
        else:
            digits[pos], digits[pos + 1] = digits[pos + 1], digits[pos]
    else:
        del digits[pos]
    out = "".join(digits)
    if is_valid_nhs_number(out):  # a substitution can land on a number whose check is 10 -> invalid anyway
        out = out[:9] + str((int(out[9]) + 1) % 10)
    return out


def allocate_more(rng: np.random.Generator, used: np.ndarray, n: int, twin_pairs: np.ndarray) -> np.ndarray:
    """Issue n more numbers that nobody has had yet, like ``allocate``, and mark them used.

    Args:
        rng: random generator.
        used: boolean mask over the population's pool (``pool_for``) of numbers already issued; updated in place.
        n: how many people need a number.
        twin_pairs: (k, 2) indices into the n new people; each pair gets consecutive valid numbers.

    Returns:
        int64 array of length n.
    """
    pool = valid_test_numbers(wide=len(used) > len(valid_test_numbers()))
    if n > int((~used).sum()):
        raise ValueError(f"the 999 test range has only {int((~used).sum())} unissued valid NHS numbers; asked for {n}")
    numbers = np.zeros(n, dtype=np.int64)
    rest = np.ones(n, dtype=bool)
    if len(twin_pairs):
        even = np.arange(0, len(pool) - 1, 2)
        free_pairs = even[~used[even] & ~used[even + 1]]
        slots = np.sort(rng.choice(free_pairs, size=len(twin_pairs), replace=False))
        numbers[twin_pairs[:, 0]] = pool[slots]
        numbers[twin_pairs[:, 1]] = pool[slots + 1]
        used[slots] = used[slots + 1] = True
        rest[twin_pairs.ravel()] = False
    picks = rng.choice(np.flatnonzero(~used), size=int(rest.sum()), replace=False)
    numbers[rest] = pool[picks]
    used[picks] = True
    return numbers
