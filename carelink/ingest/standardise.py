"""Standardisers for names, dates, sex, postcodes and NHS numbers, as vectorised polars expressions.

Each standardiser returns the clean value (null when it cannot be trusted) and, where it matters for linkage or the
IG report, a status saying why a value is missing. Every standardiser is idempotent: applying it to its own output
gives the same output.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import polars as pl

# Honorifics and post-nominals removed from name fields.
TITLES = (
    "MR", "MRS", "MS", "MISS", "MX", "MASTER", "DR", "PROF", "PROFESSOR", "REV", "REVD", "FR", "SIR", "DAME",
    "LADY", "LORD", "CAPT", "COL", "MAJ", "SGT", "CLLR", "HON", "OBE", "MBE", "CBE", "BSC", "PHD", "JP",
)

NHS_VALID = "valid"
NHS_MISSING = "missing"
NHS_BAD_FORMAT = "invalid_format"
NHS_BAD_CHECK = "failed_check_digit"
NHS_PLACEHOLDER = "placeholder"
NHS_STATUSES = (NHS_VALID, NHS_MISSING, NHS_BAD_FORMAT, NHS_BAD_CHECK, NHS_PLACEHOLDER)

DATE_VALID = "valid"
DATE_MISSING = "missing"
DATE_UNPARSEABLE = "unparseable"
DATE_OUT_OF_RANGE = "out_of_range"
DATE_PLACEHOLDER = "placeholder"
DATE_STATUSES = (DATE_VALID, DATE_MISSING, DATE_UNPARSEABLE, DATE_OUT_OF_RANGE, DATE_PLACEHOLDER)
EARLIEST_BIRTH = dt.date(1890, 1, 1)
#: Dates systems put in when the real one is unknown; they carry no information about the person.
PLACEHOLDER_DATES = (dt.date(1900, 1, 1), dt.date(1800, 1, 1), dt.date(1901, 1, 1), dt.date(1970, 1, 1))

POSTCODE_VALID = "valid"
POSTCODE_MISSING = "missing"
POSTCODE_INVALID = "invalid"
POSTCODE_STATUSES = (POSTCODE_VALID, POSTCODE_MISSING, POSTCODE_INVALID)
# Outward code (A9, A99, AA9, AA99, A9A, AA9A) then inward code (9AA).
POSTCODE_PATTERN = r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][ABD-HJLNP-UW-Z]{2}$"
POSTCODE_FORMATTED = r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}$"

SEX_CODES = ("M", "F", "U")
_SEX_WORDS = {
    "M": "M", "MALE": "M", "MAN": "M", "1": "M", "BOY": "M",
    "F": "F", "FEMALE": "F", "WOMAN": "F", "2": "F", "GIRL": "F",
    "U": "U", "UNKNOWN": "U", "X": "U", "0": "U", "9": "U", "I": "U", "INDETERMINATE": "U", "OTHER": "U",
    "NOT KNOWN": "U", "NOT SPECIFIED": "U",
}


#: Letters that Unicode does not decompose into a base letter plus accent, with their usual ASCII spelling.
_NOT_DECOMPOSABLE = {
    "ß": "SS", "ẞ": "SS", "Æ": "AE", "Œ": "OE", "Ø": "O", "Ł": "L", "Đ": "D", "Ð": "D", "Þ": "TH", "Ħ": "H",
    "Ŧ": "T", "Ŋ": "NG", "Ɨ": "I", "Ƶ": "Z", "ĸ": "K",
}


#: Whole words ``standardise_name`` drops (its words are A-Z runs between single spaces by then).
_TITLE_WORDS = r"\b(?:" + "|".join(TITLES) + r")\b"
#: NHS numbers systems use for "not known".
_PLACEHOLDER_NHS_NUMBERS = (*(str(d) * 10 for d in range(10)), "0123456789", "1234567890")


def _let(body: Callable[..., pl.Expr], *values: pl.Expr) -> pl.Expr:
    """``body(*values)`` with each value computed once.

    Polars evaluates a subexpression again wherever an expression uses it (a name used four times is folded four
    times); as fields of one struct the values are computed once and ``body`` may use them as often as it likes.
    ``body`` sees only these values: an inner ``_let`` must be given every value its body uses.
    """
    names = [f"_{i}" for i in range(len(values))]
    bound = pl.struct(*(value.alias(name) for value, name in zip(values, names, strict=True)))
    return bound.struct.with_fields(body(*map(pl.field, names)).alias("_result")).struct.field("_result")


def _empty_to_null(expr: pl.Expr) -> pl.Expr:
    return expr.replace("", None)


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return _empty_to_null(expr.str.strip_chars())


def ascii_upper(expr: pl.Expr) -> pl.Expr:
    """Upper-case and fold accents to ASCII (ZOË → ZOE); NFC and NFD inputs give the same result.

    Invisible characters (zero-width space, soft hyphen, a stray byte-order mark, control codes other than white
    space) are dropped like accents, so they never split one word into two.
    """
    invisible = r"[\p{Mn}\p{Cf}[\p{Cc}&&[^\s]]]"
    folded = expr.str.normalize("NFKD").str.replace_all(invisible, "").str.to_uppercase()
    return folded.str.replace_many(list(_NOT_DECOMPOSABLE), list(_NOT_DECOMPOSABLE.values()))


def standardise_name(expr: pl.Expr) -> pl.Expr:
    """Upper case, ASCII-folded, titles and punctuation removed; null when nothing is left."""
    words = (
        ascii_upper(expr)
        .str.replace_all(r"['`’‘ʼ\".]", "")  # apostrophes, and the quotes typed for them (O"Brien)
        .str.replace_all(r"[^A-Z]+", " ")
        .str.replace_all(_TITLE_WORDS, "")
        .str.replace_all(" +", " ")
        .str.strip_chars()
    )
    return _empty_to_null(words)


def standardise_address(expr: pl.Expr) -> pl.Expr:
    """Upper case, ASCII-folded, punctuation to single spaces."""
    return _empty_to_null(ascii_upper(expr).str.replace_all(r"[^A-Z0-9]+", " ").str.strip_chars())


def standardise_sex(expr: pl.Expr) -> pl.Expr:
    """Map the many spellings of sex to M, F or U; null when blank."""
    key = ascii_upper(_blank_to_null(expr)).str.replace_all(r"\s+", " ")
    return _let(lambda key: pl.when(key.is_null()).then(None)
                .otherwise(key.replace_strict(_SEX_WORDS, default="U", return_dtype=pl.String)), key)


def postcode_compact(expr: pl.Expr) -> pl.Expr:
    """The postcode upper-cased with every non-alphanumeric removed."""
    return ascii_upper(expr).str.replace_all(r"[^A-Z0-9]", "")


def standardise_postcode(expr: pl.Expr) -> pl.Expr:
    """Normalise to ``AA9A 9AA``; null when the value is not a UK postcode."""
    return _let(_formatted_postcode, postcode_compact(expr))


def _formatted_postcode(compact: pl.Expr) -> pl.Expr:
    spaced = compact.str.slice(0, compact.str.len_chars() - 3) + " " + compact.str.slice(-3)
    return pl.when(compact.str.contains(POSTCODE_PATTERN)).then(spaced).otherwise(None)


def postcode_status(expr: pl.Expr) -> pl.Expr:
    """Why a postcode is or is not usable."""
    return _let(_postcode_status, postcode_compact(expr))


def _postcode_status(compact: pl.Expr) -> pl.Expr:
    return (
        pl.when(compact.is_null() | (compact == ""))
        .then(pl.lit(POSTCODE_MISSING))
        .when(compact.str.contains(POSTCODE_PATTERN))
        .then(pl.lit(POSTCODE_VALID))
        .otherwise(pl.lit(POSTCODE_INVALID))
    )


def postcode_and_status(expr: pl.Expr) -> pl.Expr:
    """``standardise_postcode`` and ``postcode_status`` at once, as the fields ``postcode`` and
    ``postcode_status`` of a struct."""
    return _let(lambda compact: pl.struct(_formatted_postcode(compact).alias("postcode"),
                                          _postcode_status(compact).alias("postcode_status")), postcode_compact(expr))


def nhs_digits(expr: pl.Expr) -> pl.Expr:
    """The NHS number with spaces, dashes and dots removed."""
    return expr.str.strip_chars().str.replace_all(r"[\s\-.]", "")


def _modulus11_ok(digits: pl.Expr) -> pl.Expr:
    """Whether ten digits pass Modulus 11 (null or false for anything else)."""
    def ok(number: pl.Expr) -> pl.Expr:
        digit = [number // 10 ** (9 - i) % 10 for i in range(10)]
        check = 11 - sum(digit[i] * (10 - i) for i in range(9)) % 11
        check = pl.when(check == 11).then(0).otherwise(check)
        return (check != 10) & (check == digit[9])

    return _let(ok, digits.cast(pl.Int64, strict=False))


def _nhs_status(digits: pl.Expr) -> pl.Expr:
    return (
        pl.when(digits.is_null() | (digits == ""))
        .then(pl.lit(NHS_MISSING))
        .when(~digits.str.contains(r"^[0-9]{10}$"))
        .then(pl.lit(NHS_BAD_FORMAT))
        .when(digits.is_in(_PLACEHOLDER_NHS_NUMBERS))
        .then(pl.lit(NHS_PLACEHOLDER))
        .when(_modulus11_ok(digits))
        .then(pl.lit(NHS_VALID))
        .otherwise(pl.lit(NHS_BAD_CHECK))
    )


def nhs_number_status(expr: pl.Expr) -> pl.Expr:
    """Classify an NHS number: valid, missing, invalid_format, failed_check_digit or placeholder."""
    return _let(_nhs_status, nhs_digits(expr))


def standardise_nhs_number(expr: pl.Expr) -> pl.Expr:
    """Ten digits when the number is valid (Modulus 11, not a placeholder); otherwise null."""
    return _let(lambda digits: pl.when(_nhs_status(digits) == NHS_VALID).then(digits).otherwise(None),
                nhs_digits(expr))


def nhs_number_and_status(expr: pl.Expr) -> pl.Expr:
    """``standardise_nhs_number`` and ``nhs_number_status`` at once, as the fields ``nhs_number`` and
    ``nhs_number_status`` of a struct."""
    def both(digits: pl.Expr, status: pl.Expr) -> pl.Expr:
        return pl.struct(pl.when(status == NHS_VALID).then(digits).otherwise(None).alias("nhs_number"),
                         status.alias("nhs_number_status"))

    return _let(lambda digits: _let(both, digits, _nhs_status(digits)), nhs_digits(expr))


def standardise_identifier(expr: pl.Expr) -> pl.Expr:
    """A local identifier: upper case, ASCII letters and digits only (spaces, dashes and punctuation removed);
    null when nothing is left."""
    return _empty_to_null(ascii_upper(expr).str.replace_all(r"[^A-Z0-9]", ""))


def parse_date(expr: pl.Expr, formats: tuple[str, ...], reference_date: dt.date) -> pl.Expr:
    """Parse with each format in turn (first that fits wins); two-digit years never land in the future."""
    def attempt(text: pl.Expr, fmt: str) -> pl.Expr:
        parsed = text.str.strptime(pl.Date, fmt, strict=False, exact=True)
        if "%Y" in fmt:  # "05/06/30" must not become the year 30 AD; let a %y format take it
            parsed = _let(lambda date: pl.when(date.dt.year() < 100).then(None).otherwise(date), parsed)
        if "%y" in fmt:
            parsed = _let(lambda date: pl.when(date > reference_date).then(date.dt.offset_by("-100y"))
                          .otherwise(date), parsed)
        return parsed

    def first_fit(text: pl.Expr) -> pl.Expr:
        attempts = [attempt(text, fmt) for fmt in formats]
        return pl.coalesce(attempts) if len(attempts) > 1 else attempts[0]

    return _let(first_fit, _blank_to_null(expr))


def birth_date_status(raw: pl.Expr, parsed: pl.Expr, reference_date: dt.date) -> pl.Expr:
    """Why a date of birth is or is not usable."""
    return _let(lambda missing, parsed: (
        pl.when(missing)
        .then(pl.lit(DATE_MISSING))
        .when(parsed.is_null())
        .then(pl.lit(DATE_UNPARSEABLE))
        .when(parsed.is_in(PLACEHOLDER_DATES))
        .then(pl.lit(DATE_PLACEHOLDER))
        .when((parsed < EARLIEST_BIRTH) | (parsed > reference_date))
        .then(pl.lit(DATE_OUT_OF_RANGE))
        .otherwise(pl.lit(DATE_VALID))
    ), _blank_to_null(raw).is_null(), parsed)


def birth_date_and_status(expr: pl.Expr, formats: tuple[str, ...], reference_date: dt.date) -> pl.Expr:
    """The date of birth, null unless its status is valid, and its status, as the fields ``date_of_birth`` and
    ``date_of_birth_status`` of a struct."""
    def both(parsed: pl.Expr, status: pl.Expr) -> pl.Expr:
        return pl.struct(pl.when(status == DATE_VALID).then(parsed).otherwise(None).alias("date_of_birth"),
                         status.alias("date_of_birth_status"))

    return _let(lambda raw, parsed: _let(both, parsed, birth_date_status(raw, parsed, reference_date)),
                expr, parse_date(expr, formats, reference_date))


def statement_date(expr: pl.Expr, formats: tuple[str, ...], reference_date: dt.date) -> pl.Expr:
    """The date of a consent statement: parsed as ``parse_date`` does, and null when after the reference date (a
    statement cannot come from the future, so it is a typing error)."""
    return _let(lambda date: pl.when(date > reference_date).then(None).otherwise(date),
                parse_date(expr, formats, reference_date))
