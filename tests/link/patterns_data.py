"""Constructed records for the linkage-pattern tests (issue 10), and how to add them to a generated partnership.

Each record has a ``key`` the tests name it by (``twins_nhs_jack_gp``). A record's NHS number is ``None`` (blank in
the extract), a literal value written as is (a placeholder such as ``0000000000``), or a ``#label``: a valid number
from the 999 test range that no background person holds, the same number for every record with that label. Labels
listed together in ``CONSECUTIVE`` get consecutive valid numbers, as twins do.

Postcodes are chosen with a ``9Z?`` inward code so that no background household shares them (the fixture checks).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace

import polars as pl

from carelink.config import PipelineConfig, SourceConfig
from carelink.synth.nhs import valid_test_numbers

#: Sources whose extracts print NHS numbers in 3-3-4 groups.
SPACED_NHS = ("acute", "voluntary")
#: Sources whose address column holds only the first line (no town).
FIRST_LINE_ONLY = ("gp",)


@dataclass(frozen=True)
class Rec:
    """One constructed person record in one source."""

    key: str
    source: str
    given: str
    family: str
    dob: str | None  # ISO date, or None for blank
    sex: str  # M or F
    address: str  # first line
    town: str
    postcode: str
    nhs: str | None = None  # None, a literal value, or "#label"

    @property
    def record_id(self) -> str:
        return f"PAT-{self.key.upper().replace('_', '-')}"


def person(prefix: str, sources: Iterable[str], *, given: str, family: str, dob: str | None, sex: str, address: str,
           town: str, postcode: str, nhs: str | None = None, **per_source: dict) -> list[Rec]:
    """One person's records, keyed ``<prefix>_<source>``; ``per_source={"voluntary": {"nhs": None}}`` overrides."""
    base = dict(given=given, family=family, dob=dob, sex=sex, address=address, town=town, postcode=postcode, nhs=nhs)
    return [Rec(key=f"{prefix}_{source}", source=source, **(base | per_source.get(source, {}))) for source in sources]


def _home(address: str, town: str, postcode: str) -> dict[str, str]:
    return {"address": address, "town": town, "postcode": postcode}


# --- Twins with NHS numbers: consecutive valid numbers, everything else shared but the forename (and sex). ---------
_H1 = _home("14 Thornfield Avenue", "Leeds", "LS17 9ZA")
_H2 = _home("7 Larch Close", "Wakefield", "WF2 9ZA")
_H3 = _home("22 Moorview Drive", "Bradford", "BD13 9ZA")
TWINS_NHS = [
    *person("twins_nhs_jack", ["gp", "acute"], given="JACK", family="HARGREAVES", dob="2014-03-22", sex="M",
            nhs="#twins_nhs_jack", **_H1),
    *person("twins_nhs_jake", ["gp", "acute"], given="JAKE", family="HARGREAVES", dob="2014-03-22", sex="M",
            nhs="#twins_nhs_jake", **_H1),
    *person("twins_nhs_oliver", ["gp", "community"], given="OLIVER", family="BRADSHAW", dob="2019-07-04", sex="M",
            nhs="#twins_nhs_oliver", **_H2),
    *person("twins_nhs_olivia", ["gp", "community"], given="OLIVIA", family="BRADSHAW", dob="2019-07-04", sex="F",
            nhs="#twins_nhs_olivia", **_H2),
    *person("twins_nhs_emily", ["gp", "acute"], given="EMILY", family="OKAFOR", dob="2009-11-30", sex="F",
            nhs="#twins_nhs_emily", **_H3),
    *person("twins_nhs_sophie", ["gp", "acute"], given="SOPHIE", family="OKAFOR", dob="2009-11-30", sex="F",
            nhs="#twins_nhs_sophie", **_H3),
]

# --- Twins without NHS numbers (social care and voluntary extracts that hold none). ----------------------------------
_H4 = _home("3 Beech Grove", "Halifax", "HX3 9ZA")
_H5 = _home("41 Albert Road", "Huddersfield", "HD9 9ZA")
_H6 = _home("18 Priestley Gardens", "Leeds", "LS20 9ZA")
TWINS_NO_NHS = [
    *person("twins_none_jack", ["social_care", "voluntary"], given="JACK", family="ATKINSON", dob="2012-05-09",
            sex="M", **_H4),
    *person("twins_none_jake", ["social_care", "voluntary"], given="JAKE", family="ATKINSON", dob="2012-05-09",
            sex="M", **_H4),
    *person("twins_none_oliver", ["social_care", "voluntary"], given="OLIVER", family="KHAN", dob="2016-02-14",
            sex="M", **_H5),
    *person("twins_none_olivia", ["social_care", "voluntary"], given="OLIVIA", family="KHAN", dob="2016-02-14",
            sex="F", **_H5),
    *person("twins_none_amelia", ["social_care", "voluntary"], given="AMELIA", family="PRIESTLEY", dob="2011-08-19",
            sex="F", **_H6),
    *person("twins_none_isla", ["social_care", "voluntary"], given="ISLA", family="PRIESTLEY", dob="2011-08-19",
            sex="F", **_H6),
]

# --- Twins with NHS numbers in health extracts and none in the voluntary one: chaining through NHS-less records. ----
_H7 = _home("9 Cavendish Mount", "Wakefield", "WF4 9ZB")
TWINS_MIXED = [
    *person("twins_mixed_jack", ["gp", "acute", "voluntary"], given="JACK", family="SUTCLIFFE", dob="2015-10-02",
            sex="M", nhs="#twins_mixed_jack", voluntary={"nhs": None}, **_H7),
    *person("twins_mixed_jake", ["gp", "acute", "voluntary"], given="JAKE", family="SUTCLIFFE", dob="2015-10-02",
            sex="M", nhs="#twins_mixed_jake", voluntary={"nhs": None}, **_H7),
]

# --- Parent and child with the same name at one address (Sr/Jr), different dates of birth. --------------------------
_H8 = _home("56 Kirkstall Lane", "Leeds", "LS5 9ZA")
_H9 = _home("9 Station Road", "Halifax", "HX6 9ZA")
JR_SR = [
    *person("jrsr_nhs_sr", ["gp", "acute"], given="DAVID", family="WILSON", dob="1961-08-12", sex="M",
            nhs="#jrsr_nhs_sr", **_H8),
    *person("jrsr_nhs_jr", ["gp", "acute"], given="DAVID", family="WILSON", dob="1989-01-27", sex="M",
            nhs="#jrsr_nhs_jr", **_H8),
    *person("jrsr_none_sr", ["social_care", "voluntary"], given="MICHAEL", family="HOLROYD", dob="1955-04-03",
            sex="M", **_H9),
    *person("jrsr_none_jr", ["social_care", "voluntary"], given="MICHAEL", family="HOLROYD", dob="1984-10-19",
            sex="M", **_H9),
]

# --- A care home: 20 unrelated residents at one address and postcode, common elderly names. ------------------------
CARE_HOME_RESIDENTS = (  # forename, surname, date of birth, sex
    ("MARGARET", "SMITH", "1931-02-11", "F"), ("DOROTHY", "SMITH", "1929-06-30", "F"),
    ("JOAN", "HOLMES", "1934-09-15", "F"), ("BETTY", "WALKER", "1928-12-02", "F"),
    ("MARY", "JONES", "1936-03-21", "F"), ("JEAN", "SMITH", "1932-07-08", "F"),
    ("PATRICIA", "JONES", "1940-10-10", "F"), ("DORIS", "TAYLOR", "1930-01-19", "F"),
    ("IRENE", "BROOK", "1933-05-05", "F"), ("EDNA", "WOOD", "1927-11-23", "F"),
    ("MARGARET", "BROWN", "1938-04-17", "F"), ("MARY", "WALKER", "1935-08-29", "F"),
    ("JOHN", "SMITH", "1930-03-14", "M"), ("WILLIAM", "JONES", "1933-12-25", "M"),
    ("GEORGE", "TAYLOR", "1929-09-09", "M"), ("KENNETH", "HOLMES", "1936-06-06", "M"),
    ("ARTHUR", "WOOD", "1931-07-31", "M"), ("ALBERT", "WRIGHT", "1926-02-28", "M"),
    ("HAROLD", "GREEN", "1934-10-01", "M"), ("RONALD", "BROWN", "1937-05-22", "M"),
)
_CARE_HOME = _home("Ashgrove Care Home, 12 Park Lane", "Leeds", "LS15 9ZA")
CARE_HOME = [
    rec
    for i, (given, family, dob, sex) in enumerate(CARE_HOME_RESIDENTS)
    for rec in person(f"care_{i:02d}", ["gp", "social_care"], given=given, family=family, dob=dob, sex=sex,
                      nhs=f"#care_{i:02d}", social_care={"nhs": None} if i % 2 else {}, **_CARE_HOME)
]
CARE_HOME_PEOPLE = [f"care_{i:02d}" for i in range(len(CARE_HOME_RESIDENTS))]

# --- A spouse's NHS number on the other spouse's social care record. -------------------------------------------------
_H10 = _home("27 Rosemont Terrace", "Wakefield", "WF4 9ZA")
RELATIVE_NHS = [
    *person("relative_harold", ["gp", "acute"], given="HAROLD", family="THACKERAY", dob="1944-06-18", sex="M",
            nhs="#relative_harold", **_H10),
    *person("relative_joan", ["gp", "social_care"], given="JOAN", family="THACKERAY", dob="1947-02-03", sex="F",
            nhs="#relative_joan", social_care={"nhs": "#relative_harold"}, **_H10),
]

# --- Placeholder NHS numbers on records of different people (one pair a married couple). ----------------------------
PLACEHOLDER_PAIRS = [
    (Rec("placeholder0_a", "social_care", "SUSAN", "PICKLES", "1962-03-03", "F", "4 Lister Street", "Leeds",
         "LS8 9ZA", "0000000000"),
     Rec("placeholder0_b", "voluntary", "GARY", "FIRTH", "1971-09-14", "M", "60 Heather Way", "Bradford", "BD5 9ZA",
         "0000000000")),
    (Rec("placeholder1_a", "social_care", "ANNE", "LUMB", "1950-12-12", "F", "11 Calder View", "Halifax", "HX2 9ZA",
         "1111111111"),
     Rec("placeholder1_b", "voluntary", "ANNE", "SUGDEN", "1952-05-30", "F", "2 Wharfe Rise", "Leeds", "LS29 9ZA",
         "111 111 1111")),
    (Rec("placeholder9_a", "social_care", "KAREN", "OATES", "1966-01-25", "F", "35 Poplar Court", "Wakefield",
         "WF1 9ZA", "9999999999"),
     Rec("placeholder9_b", "voluntary", "BRIAN", "OATES", "1958-11-04", "M", "35 Poplar Court", "Wakefield",
         "WF1 9ZA", "9999999999")),
]
PLACEHOLDER_DIFFERENT = [rec for pair in PLACEHOLDER_PAIRS for rec in pair]

# --- The same person with a placeholder on one record and a valid number on another. --------------------------------
_H11 = _home("8 Crossley Crescent", "Bradford", "BD12 9ZA")
_H12 = _home("71 Hawthorn Walk", "Huddersfield", "HD1 9ZA")
PLACEHOLDER_SAME = [
    *person("placeholder_same_graham", ["gp", "social_care"], given="GRAHAM", family="ACKROYD", dob="1957-07-07",
            sex="M", nhs="#placeholder_same_graham", social_care={"nhs": "1111111111"}, **_H11),
    *person("placeholder_same_linda", ["acute", "voluntary"], given="LINDA", family="HAIGH", dob="1969-03-16",
            sex="F", nhs="#placeholder_same_linda", voluntary={"nhs": "0000000000"}, **_H12),
]

# --- Nicknames: the short form on an extract without NHS numbers. ---------------------------------------------------
NICKNAME = [
    *person("nickname_margaret", ["gp", "voluntary"], given="MARGARET", family="CLEGG", dob="1939-05-12", sex="F",
            nhs="#nickname_margaret", voluntary={"given": "PEGGY", "nhs": None},
            **_home("19 Linden Place", "Leeds", "LS13 9ZA")),
    *person("nickname_william", ["gp", "social_care"], given="WILLIAM", family="BOOTHROYD", dob="1945-08-08",
            sex="M", nhs="#nickname_william", social_care={"given": "BILL", "nhs": None},
            **_home("5 Saltaire Road", "Bradford", "BD21 9ZA")),
    *person("nickname_oluwaseun", ["acute", "voluntary"], given="OLUWASEUN", family="ADEYEMI", dob="1988-02-29",
            sex="M", nhs="#nickname_oluwaseun", voluntary={"given": "SEUN", "nhs": None},
            **_home("44 Nelson Street", "Leeds", "LS11 9ZA")),
]

# --- A middle name inside the forename field. ------------------------------------------------------------------------
MIDDLE_NAME = person("middle_mary_ann", ["acute", "voluntary"], given="MARY ANN", family="HEBDEN", dob="1952-09-09",
                     sex="F", nhs="#middle_mary_ann", voluntary={"given": "MARY", "nhs": None},
                     **_home("13 Bluebell Drive", "Wakefield", "WF3 9ZA"))

# --- Known by the middle name: "JOHN PAUL" on one record, "PAUL" on another. -----------------------------------------
KNOWN_BY_MIDDLE = [
    *person("known_middle_none", ["gp", "voluntary"], given="JOHN PAUL", family="ASPINALL", dob="1963-12-01",
            sex="M", nhs="#known_middle_none", voluntary={"given": "PAUL", "nhs": None},
            **_home("30 Sycamore Way", "Leeds", "LS28 9ZA")),
    *person("known_middle_nhs", ["gp", "acute"], given="ROBERT JAMES", family="GREENWOOD", dob="1971-04-14",
            sex="M", nhs="#known_middle_nhs", acute={"given": "JAMES"},
            **_home("6 Fairfield Close", "Halifax", "HX2 9ZB")),
]

# --- Surname changed on marriage. -----------------------------------------------------------------------------------
MARRIAGE = [
    *person("marriage_nhs", ["acute", "gp"], given="SARAH", family="DENBY", dob="1990-06-21", sex="F",
            nhs="#marriage_nhs", gp={"family": "FOSTER"}, **_home("52 Wellington Road", "Leeds", "LS6 9ZA")),
    *person("marriage_none", ["gp", "voluntary"], given="RACHEL", family="LAYCOCK", dob="1986-01-13", sex="F",
            nhs="#marriage_none", voluntary={"family": "MIDGLEY", "nhs": None},
            **_home("17 Primrose Hill", "Huddersfield", "HD5 9ZA")),
]

# --- The default date of birth 1900-01-01 on records of different people. -------------------------------------------
DEFAULT_DOB = [
    # Two different men with one common name, in different towns: a date that agreed would link them.
    Rec("default_dob_peter_a", "voluntary", "PETER", "BROWN", "1900-01-01", "M", "90 Roundhay Road", "Leeds",
        "LS8 9ZB"),
    Rec("default_dob_peter_b", "social_care", "PETER", "BROWN", "1900-01-01", "M", "3 Chapel Street", "Bradford",
        "BD15 9ZA"),
    # Two brothers at one address, both given the default date.
    Rec("default_dob_keith", "voluntary", "KEITH", "MOSLEY", "1900-01-01", "M", "25 Otley Road", "Leeds", "LS23 9ZA"),
    Rec("default_dob_derek", "voluntary", "DEREK", "MOSLEY", "1900-01-01", "M", "25 Otley Road", "Leeds", "LS23 9ZA"),
]

# --- A second registration of the same person within one source. ----------------------------------------------------
SECOND_REGISTRATION = [
    *person("second_reg_first", ["gp"], given="NORMA", family="SHACKLETON", dob="1949-10-10", sex="F",
            nhs="#second_reg", **_home("64 Ilkley Road", "Bradford", "BD21 9ZB")),
    *person("second_reg_second", ["gp"], given="NORMA", family="SHACKLETON", dob="1949-10-10", sex="F", nhs=None,
            **_home("64 Ilkley Road", "Bradford", "BD21 9ZB")),
]

ALL_RECORDS: list[Rec] = [
    *TWINS_NHS, *TWINS_NO_NHS, *TWINS_MIXED, *JR_SR, *CARE_HOME, *RELATIVE_NHS, *PLACEHOLDER_DIFFERENT,
    *PLACEHOLDER_SAME, *NICKNAME, *MIDDLE_NAME, *KNOWN_BY_MIDDLE, *MARRIAGE, *DEFAULT_DOB, *SECOND_REGISTRATION,
]
#: Labels that must receive consecutive valid NHS numbers (twins).
CONSECUTIVE = [
    ("#twins_nhs_jack", "#twins_nhs_jake"), ("#twins_nhs_oliver", "#twins_nhs_olivia"),
    ("#twins_nhs_emily", "#twins_nhs_sophie"), ("#twins_mixed_jack", "#twins_mixed_jake"),
]


def allocate_numbers(records: list[Rec], taken: set[str], start: int = 600_000) -> dict[str, str]:
    """A valid, unissued NHS number for every ``#label``; labels in ``CONSECUTIVE`` get adjacent valid numbers."""
    pool = [str(n) for n in valid_test_numbers()[start:]]
    free = iter(i for i in range(len(pool) - 1) if pool[i] not in taken)
    numbers: dict[str, str] = {}
    used: set[int] = set()
    for first, second in CONSECUTIVE:
        i = next(i for i in free if i not in used and i + 1 not in used and pool[i + 1] not in taken)
        numbers[first], numbers[second] = pool[i], pool[i + 1]
        used.update((i, i + 1))
    for label in sorted({r.nhs for r in records if r.nhs and r.nhs.startswith("#")} - set(numbers)):
        i = next(i for i in free if i not in used)
        numbers[label] = pool[i]
        used.add(i)
    return numbers


def resolve(records: list[Rec], numbers: dict[str, str]) -> list[Rec]:
    """Records with every ``#label`` replaced by its number."""
    return [replace(r, nhs=numbers[r.nhs]) if r.nhs and r.nhs.startswith("#") else r for r in records]


def _cells(rec: Rec, source: SourceConfig) -> dict[str, object]:
    """The record in the source's own columns and layout."""
    spec = source.table
    nhs = rec.nhs
    if nhs and source.name in SPACED_NHS and nhs.isdigit():
        nhs = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
    address = rec.address if source.name in FIRST_LINE_ONLY else f"{rec.address}, {rec.town}"
    dob: object = None
    if rec.dob is not None:
        date = dt.date.fromisoformat(rec.dob)
        dob = date if spec.format == "parquet" else date.strftime(spec.date_formats[0])
    values = {"record_id": rec.record_id, "nhs_number": nhs, "given_name": rec.given, "family_name": rec.family,
              "date_of_birth": dob, "sex": rec.sex, "address": address, "postcode": rec.postcode}
    return {spec.columns[field]: value for field, value in values.items() if field in spec.columns}


def append_records(config: PipelineConfig, records: list[Rec]) -> None:
    """Append the records to their sources' extracts, in each extract's own format, encoding and date layout."""
    for source in config.sources:
        mine = [r for r in records if r.source == source.name]
        if not mine:
            continue
        spec = source.table
        rows = [_cells(r, source) for r in mine]
        if spec.format == "parquet":
            frame = pl.read_parquet(spec.path)
            extra = pl.DataFrame(rows, schema={c: frame.schema[c] for c in rows[0]})
            pl.concat([frame, extra], how="diagonal").write_parquet(spec.path)
            continue
        with spec.path.open(encoding=spec.encoding, newline="") as handle:
            header = next(csv.reader(handle, delimiter=spec.delimiter))
        with spec.path.open("a", encoding=spec.encoding, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, delimiter=spec.delimiter, lineterminator="\n")
            writer.writerows({c: ("" if v is None else v) for c, v in row.items()} for row in rows)


def background_values(config: PipelineConfig, field: str) -> set[str]:
    """Every value of a canonical field in the background extracts, as digits (NHS) or compact upper case."""
    values: set[str] = set()
    for source in config.sources:
        spec = source.table
        if field not in spec.columns:
            continue
        if spec.format == "parquet":
            column = pl.read_parquet(spec.path)[spec.columns[field]].cast(pl.String)
        else:
            column = pl.read_csv(spec.path, infer_schema=False, encoding="utf8-lossy",
                                 separator=spec.delimiter)[spec.columns[field]]
        values.update(column.drop_nulls().str.to_uppercase().str.replace_all(r"[^0-9A-Z]", "").to_list())
    return values

