"""Cosmetic formatting of one source's records: letter case, titles, spacing, accents, address and
postcode layout, NHS number spacing, sex codes and record ids.

None of this changes what a record says about a person, so none of it is labelled in the truth
file, except a title in the forename field (``title``).
"""

from __future__ import annotations

import unicodedata

import numpy as np
import polars as pl

from carelink.synth import places
from carelink.synth.errors import RecordSet

_NON_ASCII = r"[^\x00-\x7F]"


def strip_accents(text: str) -> str:
    """Return ``text`` with diacritics removed (ZOË -> ZOE, JØRGENSEN -> JORGENSEN)."""
    decomposed = unicodedata.normalize("NFKD", text.replace("Ø", "O").replace("ø", "o"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _cased(col: pl.Expr, r: pl.Expr, probs: tuple[float, float, float]) -> pl.Expr:
    """Upper, title or lower case by a uniform draw ``r`` against (P(upper), P(title), P(lower))."""
    upper, title, _ = probs
    return (
        pl.when(r < upper)
        .then(col.str.to_uppercase())
        .when(r < upper + title)
        .then(col.str.to_titlecase())
        .otherwise(col.str.to_lowercase())
    )


def _strip_some(rng: np.random.Generator, values: np.ndarray, keep: float) -> np.ndarray:
    out = values.copy()
    idx = np.flatnonzero(pl.Series(values, dtype=pl.Utf8).str.contains(_NON_ASCII).to_numpy())
    idx = idx[rng.random(len(idx)) >= keep]
    out[idx] = [strip_accents(v) for v in out[idx]]
    return out


def format_names(rng: np.random.Generator, rs: RecordSet) -> tuple[pl.Series, pl.Series, np.ndarray]:
    """Return (forename column, surname column, mask of records with a title in the forename)."""
    style = rs.spec.style
    n = rs.n
    given = _strip_some(rng, rs.given, style.accents_kept)
    family = _strip_some(rng, rs.family, style.accents_kept)
    titled = rng.random(n) < style.title
    titles = np.full(n, "", dtype=object)
    for sex, (choices, weights) in places.TITLES.items():
        m = titled & (rs.sex == sex)
        titles[m] = np.array(choices, dtype=object)[rng.choice(len(choices), int(m.sum()), p=weights)]
    frame = pl.DataFrame(
        {
            "g": pl.Series(given, dtype=pl.Utf8),
            "f": pl.Series(family, dtype=pl.Utf8),
            "t": pl.Series(titles, dtype=pl.Utf8),
            **{k: rng.random(n) for k in ("rg", "rf", "pg", "pf", "sg", "sf", "ap")},
        }
    )
    drop, messy = style.punctuation_dropped, style.messy_spaces
    # Each step is materialised before the next so no branch is evaluated more than once.
    for col, r_case, r_punct, r_space, probs in (
        ("g", "rg", "pg", "sg", style.given_case),
        ("f", "rf", "pf", "sf", style.family_case),
    ):
        c = pl.col(col)
        apostrophe = pl.when(pl.col("ap") < 0.5).then(pl.lit("")).otherwise(pl.lit(" "))
        punct = pl.col(r_punct) < drop
        frame = frame.with_columns(
            pl.when(punct).then(c.str.replace_all("'", apostrophe, literal=True)).otherwise(c).alias(col)
        )
        frame = frame.with_columns(
            pl.when(punct).then(c.str.replace_all("-", " ", literal=True)).otherwise(c).alias(col)
        )
        frame = frame.with_columns(_cased(c, pl.col(r_case), probs).alias(col))
        r = pl.col(r_space)
        frame = frame.with_columns(
            pl.when(r < messy / 3)
            .then(pl.lit(" ") + c)
            .when(r < 2 * messy / 3)
            .then(c + pl.lit("  "))
            .when(r < messy)
            .then(c.str.replace(" ", "  ", literal=True))
            .otherwise(c)
            .alias(col)
        )
    with_title = (
        pl.when(pl.col("t") != "").then(pl.concat_str([pl.col("t"), pl.col("g")], separator=" ")).otherwise(pl.col("g"))
    )
    out = frame.select(with_title.alias("g"), pl.col("f"))
    return out["g"], out["f"], titled


def format_addresses(rng: np.random.Generator, rs: RecordSet) -> tuple[pl.Series, pl.Series]:
    """Return (address column, postcode column) in the source's own layout."""
    style = rs.spec.style
    n = rs.n
    frame = pl.DataFrame(
        {
            "premise": pl.Series(rs.premise, dtype=pl.Utf8),
            "street": pl.Series(rs.street, dtype=pl.Utf8),
            "town": pl.Series(rs.town, dtype=pl.Utf8),
            "postcode": pl.Series(rs.postcode, dtype=pl.Utf8),
            **{k: rng.random(n) for k in ("drop", "abbr", "town_r", "case", "pc")},
        }
    )
    drop_p = {"line1": 0.02, "full": 0.1, "full_upper": 0.1, "abbreviated": 0.2, "informal": 0.25}[style.address]
    town_p = {"line1": 0.0, "full": 1.0, "full_upper": 1.0, "abbreviated": 0.6, "informal": 0.3}[style.address]
    street, line = pl.col("street"), pl.col("line")
    if style.address in ("abbreviated", "informal"):
        abbrev = street.str.replace_many(
            [f" {k}" for k in places.STREET_ABBREVIATIONS], [f" {v}" for v in places.STREET_ABBREVIATIONS.values()]
        )
        frame = frame.with_columns(pl.when(pl.col("abbr") < 0.5).then(abbrev).otherwise(street).alias("street"))
    frame = frame.with_columns(
        pl.when((pl.col("premise") != "") & (pl.col("drop") >= drop_p))
        .then(pl.concat_str([pl.col("premise"), street], separator=", "))
        .otherwise(street)
        .alias("line")
    )
    frame = frame.with_columns(
        pl.when(pl.col("town_r") < town_p)
        .then(pl.concat_str([line, pl.col("town")], separator=", "))
        .otherwise(line)
        .alias("line")
    )
    if style.address == "full_upper":
        line = line.str.to_uppercase()
    elif style.address == "abbreviated":
        line = pl.when(pl.col("case") < 0.5).then(line.str.to_uppercase()).otherwise(line)
    elif style.address == "informal":
        line = pl.when(pl.col("case") < 0.3).then(line.str.to_lowercase()).otherwise(line)

    spaced, unspaced, lower_unspaced, _ = np.cumsum(style.postcode)
    pc = pl.col("postcode")
    postcode = (
        pl.when(pl.col("pc") < spaced)
        .then(pc)
        .when(pl.col("pc") < unspaced)
        .then(pc.str.replace(" ", "", literal=True))
        .when(pl.col("pc") < lower_unspaced)
        .then(pc.str.replace(" ", "", literal=True).str.to_lowercase())
        .otherwise(pc.str.to_lowercase())
    )
    out = frame.select(line.alias("address"), postcode.alias("postcode"))
    if style.address == "informal":  # informal records often lack the address line altogether
        out = out.with_columns(
            pl.when(pl.Series(rng.random(n)) < 0.05).then(pl.lit("")).otherwise(pl.col("address")).alias("address")
        )
    return out["address"], out["postcode"]


def format_nhs(rng: np.random.Generator, rs: RecordSet) -> pl.Series:
    """Return the NHS number column, spaced "999 123 4567" where the source does that."""
    s = pl.Series("nhs", rs.nhs, dtype=pl.Utf8)
    spaced = (rng.random(rs.n) < rs.spec.style.nhs_spaced) & (s.str.len_chars() == 10).to_numpy()
    frame = pl.DataFrame({"nhs": s, "spaced": spaced})
    c = pl.col("nhs")
    expr = (
        pl.when(pl.col("spaced"))
        .then(pl.concat_str([c.str.slice(0, 3), c.str.slice(3, 3), c.str.slice(6, 4)], separator=" "))
        .otherwise(c)
    )
    return frame.select(expr.alias("nhs"))["nhs"]


def format_sex(rs: RecordSet, rng: np.random.Generator) -> pl.Series:
    """Return the sex column in the source's own codes (voluntary leaves some blank)."""
    codes = rs.spec.style.sex_codes
    out = np.empty(rs.n, dtype=object)
    for sex, code in codes.items():
        out[rs.sex == sex] = code
    if rs.spec.name == "voluntary":
        out[(rs.sex == "U") & (rng.random(rs.n) < 0.5)] = ""
    return pl.Series("sex", out, dtype=pl.Utf8)


def format_dates(dates: np.ndarray, fmt: str | None) -> pl.Series:
    """Return dates as strings in ``fmt`` (empty when missing), or as a Date column when ``fmt`` is None."""
    series = pl.Series("d", dates.astype("datetime64[D]"))
    if fmt is None:
        return series.cast(pl.Date)
    return series.cast(pl.Date).dt.strftime(fmt).fill_null("")


def record_ids(rng: np.random.Generator, prefix: str, digits: int, n: int) -> np.ndarray:
    """Return n distinct record ids such as "RX0123456" (without a prefix: an integer with no leading zero)."""
    if prefix:
        values = rng.choice(10**digits, size=n, replace=False)
        ids = pl.Series(values).cast(pl.Utf8).str.zfill(digits)
        return (prefix + ids).to_numpy().astype(object)
    values = 10 ** (digits - 1) + rng.choice(9 * 10 ** (digits - 1), size=n, replace=False)
    return pl.Series(values).cast(pl.Utf8).to_numpy().astype(object)
