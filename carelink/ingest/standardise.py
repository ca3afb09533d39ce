"""Standardisers for names, dates, sex, postcodes and NHS numbers, as vectorised polars expressions.

Each standardiser returns the clean value (null when it cannot be trusted) and, where it matters for linkage or the
IG report, a status saying why a value is missing. Every standardiser is idempotent: applying it to its own output
gives the same output.
"""

from __future__ import annotations

import datetime as dt

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


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    stripped = expr.str.strip_chars()
    return pl.when(stripped == "").then(None).otherwise(stripped)


def ascii_upper(expr: pl.Expr) -> pl.Expr:
    """Upper-case and fold accents to ASCII (ZOË → ZOE); NFC and NFD inputs give the same result.

    Invisible characters (zero-width space, soft hyphen, a stray byte-order mark, control codes other than white
    space) are dropped like accents, so they never split one word into two.
    """
    invisible = r"[\p{Mn}\p{Cf}[\p{Cc}&&[^\s]]]"
    folded = expr.str.normalize("NFKD").str.replace_all(invisible, "").str.to_uppercase()
    for letter, ascii_form in _NOT_DECOMPOSABLE.items():
        folded = folded.str.replace_all(letter, ascii_form, literal=True)
    return folded


def standardise_name(expr: pl.Expr) -> pl.Expr:
    """Upper case, ASCII-folded, titles and punctuation removed; null when nothing is left."""
    words = (
        ascii_upper(expr)
        .str.replace_all(r"['`’‘ʼ\".]", "")  # apostrophes, and the quotes typed for them (O"Brien)
        .str.replace_all(r"[^A-Z]+", " ")
        .str.strip_chars()
        .str.split(" ")
        .list.eval(pl.element().filter((pl.element() != "") & ~pl.element().is_in(TITLES)))
        .list.join(" ")
    )
    return pl.when(words == "").then(None).otherwise(words)


def standardise_address(expr: pl.Expr) -> pl.Expr:
    """Upper case, ASCII-folded, punctuation to single spaces."""
    cleaned = ascii_upper(expr).str.replace_all(r"[^A-Z0-9]+", " ").str.strip_chars()
    return pl.when(cleaned == "").then(None).otherwise(cleaned)


def standardise_sex(expr: pl.Expr) -> pl.Expr:
    """Map the many spellings of sex to M, F or U; null when blank."""
    key = ascii_upper(_blank_to_null(expr)).str.replace_all(r"\s+", " ")
    code = key.replace_strict(_SEX_WORDS, default="U", return_dtype=pl.String)
    return pl.when(key.is_null()).then(None).otherwise(code)


def postcode_compact(expr: pl.Expr) -> pl.Expr:
    """The postcode upper-cased with every non-alphanumeric removed."""
    return ascii_upper(expr).str.replace_all(r"[^A-Z0-9]", "")


def standardise_postcode(expr: pl.Expr) -> pl.Expr:
    """Normalise to ``AA9A 9AA``; null when the value is not a UK postcode."""
    compact = postcode_compact(expr)
    formatted = compact.str.slice(0, compact.str.len_chars() - 3) + " " + compact.str.slice(-3)
    return pl.when(compact.str.contains(POSTCODE_PATTERN)).then(formatted).otherwise(None)


def postcode_status(expr: pl.Expr) -> pl.Expr:
    """Why a postcode is or is not usable."""
    compact = postcode_compact(expr)
    return (
        pl.when(compact.is_null() | (compact == ""))
        .then(pl.lit(POSTCODE_MISSING))
        .when(compact.str.contains(POSTCODE_PATTERN))
        .then(pl.lit(POSTCODE_VALID))
        .otherwise(pl.lit(POSTCODE_INVALID))
    )


def nhs_digits(expr: pl.Expr) -> pl.Expr:
    """The NHS number with spaces, dashes and dots removed."""
    return expr.str.strip_chars().str.replace_all(r"[\s\-.]", "")


def _modulus11_ok(digits: pl.Expr) -> pl.Expr:
    weighted = pl.sum_horizontal(
        digits.str.slice(i, 1).cast(pl.Int32, strict=False) * (10 - i) for i in range(9)
    )
    check = 11 - weighted % 11
    check = pl.when(check == 11).then(0).otherwise(check)
    return (check != 10) & (check == digits.str.slice(9, 1).cast(pl.Int32, strict=False))


def nhs_number_status(expr: pl.Expr) -> pl.Expr:
    """Classify an NHS number: valid, missing, invalid_format, failed_check_digit or placeholder."""
    digits = nhs_digits(expr)
    return (
        pl.when(digits.is_null() | (digits == ""))
        .then(pl.lit(NHS_MISSING))
        .when(~digits.str.contains(r"^[0-9]{10}$"))
        .then(pl.lit(NHS_BAD_FORMAT))
        .when(digits.str.contains(r"^(0{10}|1{10}|2{10}|3{10}|4{10}|5{10}|6{10}|7{10}|8{10}|9{10}|0123456789|1234567890)$"))
        .then(pl.lit(NHS_PLACEHOLDER))
        .when(_modulus11_ok(digits))
        .then(pl.lit(NHS_VALID))
        .otherwise(pl.lit(NHS_BAD_CHECK))
    )


def standardise_nhs_number(expr: pl.Expr) -> pl.Expr:
    """Ten digits when the number is valid (Modulus 11, not a placeholder); otherwise null."""
    return pl.when(nhs_number_status(expr) == NHS_VALID).then(nhs_digits(expr)).otherwise(None)


def standardise_identifier(expr: pl.Expr) -> pl.Expr:
    """A local identifier: upper case, ASCII letters and digits only (spaces, dashes and punctuation removed);
    null when nothing is left."""
    cleaned = ascii_upper(expr).str.replace_all(r"[^A-Z0-9]", "")
    return pl.when(cleaned == "").then(None).otherwise(cleaned)


def parse_date(expr: pl.Expr, formats: tuple[str, ...], reference_date: dt.date) -> pl.Expr:
    """Parse with each format in turn (first that fits wins); two-digit years never land in the future."""
    text = _blank_to_null(expr)
    attempts = []
    for fmt in formats:
        parsed = text.str.strptime(pl.Date, fmt, strict=False, exact=True)
        if "%Y" in fmt:  # "05/06/30" must not become the year 30 AD; let a %y format take it
            parsed = pl.when(parsed.dt.year() < 100).then(None).otherwise(parsed)
        if "%y" in fmt:
            parsed = pl.when(parsed > reference_date).then(parsed.dt.offset_by("-100y")).otherwise(parsed)
        attempts.append(parsed)
    return pl.coalesce(attempts) if len(attempts) > 1 else attempts[0]


def birth_date_status(raw: pl.Expr, parsed: pl.Expr, reference_date: dt.date) -> pl.Expr:
    """Why a date of birth is or is not usable."""
    text = _blank_to_null(raw)
    return (
        pl.when(text.is_null())
        .then(pl.lit(DATE_MISSING))
        .when(parsed.is_null())
        .then(pl.lit(DATE_UNPARSEABLE))
        .when(parsed.is_in(PLACEHOLDER_DATES))
        .then(pl.lit(DATE_PLACEHOLDER))
        .when((parsed < EARLIEST_BIRTH) | (parsed > reference_date))
        .then(pl.lit(DATE_OUT_OF_RANGE))
        .otherwise(pl.lit(DATE_VALID))
    )
