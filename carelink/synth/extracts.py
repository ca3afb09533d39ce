"""Assemble and write the partner extracts, their activity files, truth.csv and pipeline.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from carelink.synth import consent, formats
from carelink.synth import households as hh
from carelink.synth.errors import RECORD_CASES, RecordSet
from carelink.synth.people import People
from carelink.synth.sources import SOURCES, SourceSpec

#: Labels describing the person behind a record (on every record of that person).
PERSON_CASES: tuple[str, ...] = ("twin", "jr_sr", "care_home")
#: Labels added while formatting or across sources.
EXTRA_CASES: tuple[str, ...] = ("title", "consent_conflict")
#: Every label truth.csv can carry, in the order they are listed.
ALL_CASES: tuple[str, ...] = PERSON_CASES + RECORD_CASES + EXTRA_CASES
#: Labels of records changed in a nightly delivery (``generate_nights``), listed after ``ALL_CASES``.
UPDATE_CASES: tuple[str, ...] = ("updated_moved", "updated_nhs", "updated_surname", "updated_typo", "updated_dob")
ACTIVITY_START = hh.REFERENCE_DATE - np.timedelta64(365 * 3 + 1, "D")  # 2023-11-01


@dataclass
class Extract:
    """One source's finished extract, rows sorted by record id."""

    spec: SourceSpec
    frame: pl.DataFrame
    pid: np.ndarray
    record_id: np.ndarray
    cases: dict[str, np.ndarray]
    consent: np.ndarray | None  # shared-care consent value per row, if the source records it
    #: Per-row values before typos, for later corrections: "given", "family", "postcode".
    raw: dict[str, np.ndarray] | None = None


def assemble(rng: np.random.Generator, rs: RecordSet, people: People, pc: consent.PersonConsent) -> Extract:
    """Format one source's records into its own columns and sort them by record id."""
    spec = rs.spec
    cols = spec.columns
    given, family, titled = formats.format_names(rng, rs)
    address, postcode = formats.format_addresses(rng, rs)
    data = {
        cols["record_id"]: formats.record_ids(rng, spec.id_prefix, spec.id_digits, rs.n),
        cols["nhs_number"]: formats.format_nhs(rng, rs),
        cols["given_name"]: given,
        cols["family_name"]: family,
        cols["date_of_birth"]: formats.format_dates(rs.dob, spec.date_format),
        cols["sex"]: formats.format_sex(rs, rng),
        cols["address"]: address,
        cols["postcode"]: postcode,
    }
    if "ndop_opt_out" in cols:
        data[cols["ndop_opt_out"]] = np.where(pc.ndop[rs.pid], "Y", "N")
        data[cols["type1_opt_out"]] = np.where(pc.type1[rs.pid], "Y", "N")
    scr = None
    if "shared_care_consent" in cols:
        scr, scr_dates = consent.scr_consent(rng, spec.name, pc.stance[rs.pid], people.skeleton.dob[rs.pid])
        data[cols["shared_care_consent"]] = pl.Series(scr, dtype=pl.Utf8)
        data[cols["shared_care_consent_date"]] = formats.format_dates(scr_dates, spec.date_format)
    frame = pl.DataFrame(
        [v.alias(k) if isinstance(v, pl.Series) else pl.Series(k, v, dtype=pl.Utf8) for k, v in data.items()]
    )
    blank_to_null = [
        pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
        for c, t in frame.schema.items()
        if t == pl.Utf8
    ]
    frame = frame.with_columns(blank_to_null)
    cases = dict(rs.cases)
    cases["title"] = titled
    for name, mask in (("twin", people.twin), ("jr_sr", people.jr_sr), ("care_home", people.care_home)):
        cases[name] = mask[rs.pid]
    order = frame[cols["record_id"]].arg_sort().to_numpy()
    frame = frame.select(pl.all().gather(order))
    raw = {
        "given": rs.given if rs.given_intended is None else rs.given_intended,
        "family": rs.family if rs.family_intended is None else rs.family_intended,
        "postcode": rs.postcode if rs.postcode_intended is None else rs.postcode_intended,
    }
    return Extract(
        spec=spec,
        frame=frame,
        pid=rs.pid[order],
        record_id=frame[cols["record_id"]].to_numpy().astype(object),
        cases={k: v[order] for k, v in cases.items()},
        consent=None if scr is None else scr[order],
        raw={k: v[order] for k, v in raw.items()},
    )


def _write_csv(frame: pl.DataFrame, path: Path, encoding: str) -> None:
    text = frame.write_csv(date_format="%Y-%m-%d")
    path.write_bytes(text.encode(encoding))


def write_extract(out_dir: Path, ex: Extract) -> Path:
    """Write one extract in its declared format and encoding; return its path."""
    path = out_dir / ex.spec.path
    if ex.spec.format == "parquet":
        ex.frame.write_parquet(path, compression="zstd", statistics=False)
    else:
        _write_csv(ex.frame, path, ex.spec.encoding)
    return path


def activity_path(spec: SourceSpec) -> str:
    """File name of a source's activity extract."""
    return f"{spec.name}_activity.csv"


def activity_frame(spec: SourceSpec, record_id: np.ndarray, dates: np.ndarray, kinds: np.ndarray) -> pl.DataFrame:
    """Return activity rows (record id, ``activity_date`` as a Date, ``activity_type``) in the given order."""
    return pl.DataFrame(
        {
            spec.id_column: pl.Series(record_id, dtype=pl.Utf8),
            "activity_date": pl.Series(dates.astype("datetime64[D]")).cast(pl.Date),
            "activity_type": pl.Series(kinds, dtype=pl.Utf8),
        }
    )


def write_activity_frame(out_dir: Path, spec: SourceSpec, frame: pl.DataFrame) -> Path:
    """Write activity rows (dates as Date) in the source's activity date format and encoding."""
    text = frame.with_columns(pl.col("activity_date").dt.strftime(spec.activity_date_format).fill_null(""))
    path = out_dir / activity_path(spec)
    _write_csv(text, path, spec.encoding)
    return path


def make_activity(rng: np.random.Generator, ex: Extract, people: People) -> pl.DataFrame:
    """Draw 0-10 dated activity rows per record (more for frailer people), sorted by record and date."""
    spec = ex.spec
    frailty = people.frailty[ex.pid]
    counts = np.minimum(rng.poisson(spec.activity_mean * (0.3 + 1.7 * frailty)), 10)
    row_of = np.repeat(np.arange(len(ex.pid)), counts)
    lo = np.maximum(people.skeleton.dob[ex.pid][row_of], ACTIVITY_START)
    span = (hh.REFERENCE_DATE - lo).astype(np.int64)
    dates = lo + (rng.random(len(row_of)) * span).astype(np.int64).astype("timedelta64[D]")
    p = np.array(spec.activity_weights) / sum(spec.activity_weights)
    kinds = np.array(spec.activity_types, dtype=object)[rng.choice(len(p), size=len(row_of), p=p)]
    order = np.lexsort((dates, row_of))
    return activity_frame(spec, ex.record_id[row_of][order], dates[order], kinds[order])


def truth_frame(ex: Extract) -> pl.DataFrame:
    """Return the truth rows (source, record_id, entity_id, cases) for one extract."""
    labels = [c for c in ALL_CASES + UPDATE_CASES if c in ex.cases and ex.cases[c].any()]
    if labels:
        flags = pl.DataFrame({name: ex.cases[name] for name in labels})
        cases = flags.select(
            pl.concat_str([pl.when(pl.col(c)).then(pl.lit(c)) for c in labels], separator=";", ignore_nulls=True)
        ).to_series()
    else:
        cases = pl.Series(np.full(len(ex.pid), "", dtype=object), dtype=pl.Utf8)
    entity = pl.Series(ex.pid).cast(pl.Utf8).str.zfill(7)
    return pl.DataFrame(
        {
            "source": pl.Series([ex.spec.name] * len(ex.pid), dtype=pl.Utf8),
            "record_id": pl.Series(ex.record_id, dtype=pl.Utf8),
            "entity_id": "E" + entity,
            "cases": cases,
        }
    ).with_columns(pl.when(pl.col("cases") == "").then(None).otherwise(pl.col("cases")).alias("cases"))


def write_truth(out_dir: Path, extracts: list[Extract]) -> Path:
    """Write truth.csv: one row per record of every extract."""
    path = out_dir / "truth.csv"
    _write_csv(pl.concat([truth_frame(ex) for ex in extracts]), path, "utf-8")
    return path


def pipeline_config(sources: tuple[SourceSpec, ...] = SOURCES, reference_date: Any = None) -> dict:
    """Return the pipeline.yaml content describing the extracts, with paths relative to it.

    ``reference_date`` (a date or ISO string) defaults to ``REFERENCE_DATE``; nightly deliveries use their own date.
    """
    entries = []
    for spec in sources:
        entry: dict = {
            "name": spec.name,
            "kind": spec.kind,
            "path": spec.path,
            "format": spec.format,
            "encoding": spec.encoding,
        }
        if spec.date_format is not None:
            entry["date_format"] = spec.date_format
        entry["columns"] = dict(spec.columns)
        entry["activity"] = {
            "path": activity_path(spec),
            "format": "csv",
            "encoding": spec.encoding,
            "date_format": spec.activity_date_format,
            "columns": {
                "record_id": spec.id_column,
                "activity_date": "activity_date",
                "activity_type": "activity_type",
            },
        }
        entries.append(entry)
    return {
        "partnership": "demo",
        "reference_date": str(hh.REFERENCE_DATE if reference_date is None else reference_date),
        "sources": entries,
        "exports": [
            {"recipient": "cct_direct_care", "purpose": "direct_care"},
            {"recipient": "cct_analytics", "purpose": "planning"},
        ],
    }


def write_pipeline_yaml(out_dir: Path, reference_date: Any = None) -> Path:
    """Write pipeline.yaml for the synthetic partnership (``reference_date`` as in ``pipeline_config``)."""
    path = out_dir / "pipeline.yaml"
    header = "# Synthetic partnership written by carelink.synth; paths are relative to this file.\n"
    body = yaml.safe_dump(
        pipeline_config(reference_date=reference_date), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    path.write_text(header + body, encoding="utf-8")
    return path
