"""Pipeline configuration: YAML validated into frozen, typed objects.

Every error names the file and the key at fault. Paths in a config are relative to the config file and may not
point outside its folder (a config must not be able to read ``/etc/passwd`` or another partner's extract).
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import hashlib
import json
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from carelink.errors import ConfigError
from carelink.export.purposes import SHIPPED_PURPOSES, PurposeError, PurposeRules, parse_purpose
from carelink.pseudonymise.hardening import HARDENINGS

SOURCE_KINDS = ("health", "social_care", "voluntary")
FORMATS = ("csv", "parquet")
#: Canonical person fields a source may map. ``record_id`` is required.
PERSON_FIELDS = (
    "record_id",
    "nhs_number",
    "shared_id",  # a partnership-wide identifier other than the NHS number (e.g. a council person ID)
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "address",
    "postcode",
)
CONSENT_FIELDS = (
    "ndop_opt_out",
    "ndop_opt_out_date",
    "type1_opt_out",
    "type1_opt_out_date",
    "shared_care_consent",
    "shared_care_consent_date",
    "research_consent",
    "research_consent_date",
    "sensitive_category",
)
ACTIVITY_FIELDS = ("record_id", "activity_date", "activity_type")
#: Python text codecs that rewrite what they read (backslash escapes, domain names) rather than decode a file.
NOT_FILE_ENCODINGS = ("unicode-escape", "raw-unicode-escape", "punycode", "idna")
PURPOSES = tuple(SHIPPED_PURPOSES)  # direct_care, planning, research (carelink/data/purposes.yaml)
ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class TableSpec:
    """One extract file: where it is and how to read it."""

    path: Path
    format: str = "csv"
    encoding: str = "utf-8"
    delimiter: str = ","
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    columns: dict[str, str] = field(default_factory=dict)  # canonical field -> column in the extract
    # consent field -> {value as the extract spells it: canonical value}, beyond the built-in spellings
    consent_values: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceConfig:
    """A partner's extract and how it maps onto the canonical schema."""

    name: str
    kind: str
    table: TableSpec
    activity: TableSpec | None = None
    reversible: tuple[str, ...] = ()  # fields sealed with AES-SIV so a key holder can reverse them (direct care)


@dataclass(frozen=True)
class ExportConfig:
    """One recipient and the purpose it receives data for."""

    recipient: str
    purpose: str
    legal_basis: str | None = None  # e.g. "CAG 21/CAG/0001": stands in for research consent where the purpose allows


@dataclass(frozen=True)
class KeysConfig:
    """Where the keys are; ``None`` paths mean carelink creates them in the workspace."""

    linkage: Path | None = None
    export: Path | None = None
    passphrase_env: str = "CARELINK_PASSPHRASE"
    passphrase_file: Path | None = None


#: Blocking budget: comparisons the rules may make, counted rule by rule before de-duplication (``link.blocking``).
#: Ten million records make about 250 million; a placeholder value shared by a hundred thousand records, 5 billion.
DEFAULT_MAX_COMPARISONS = 1_000_000_000


@dataclass(frozen=True)
class LinkageConfig:
    """Linkage settings."""

    threshold: float = 0.95
    model: Path | None = None
    max_comparisons: int = DEFAULT_MAX_COMPARISONS
    u_max_pairs: int = 1_000_000
    em_max_pairs: int = 1_000_000
    engine: str = "duckdb"
    bloom_hardening: str = "none"


@dataclass(frozen=True)
class PipelineConfig:
    """The resolved pipeline configuration."""

    path: Path
    partnership: str
    reference_date: dt.date
    sources: tuple[SourceConfig, ...]
    exports: tuple[ExportConfig, ...]
    keys: KeysConfig
    linkage: LinkageConfig
    purposes: dict[str, PurposeRules] = field(default_factory=dict)  # the partnership's own, beyond the shipped ones
    consent_resolution: dict[str, str] = field(default_factory=dict)  # opt-out flag -> sticky | latest

    @property
    def folder(self) -> Path:
        """The folder the config file is in; relative paths resolve against it."""
        return self.path.parent

    def purpose_profiles(self) -> dict[str, PurposeRules]:
        """Every purpose an export may name: the shipped profiles and the partnership's own."""
        return {**SHIPPED_PURPOSES, **self.purposes}

    def source(self, name: str) -> SourceConfig:
        """Return the source called ``name``."""
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(self.path, "sources", f"no source named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-able data (for run manifests)."""
        return json.loads(json.dumps(asdict(self), default=str))

    def digest(self) -> str:
        """SHA-256 of the resolved config, for manifests and model metadata."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


class _Reader:
    """Reads typed values out of a YAML mapping, naming the file and key in every error."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.path, key, problem)

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def known_keys(self, data: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}" if key else unknown[0], f"unknown key (allowed: {', '.join(allowed)})")

    def string(self, data: dict[str, Any], name: str, key: str, *, default: str | None = None) -> str:
        value = data.get(name, default)
        if value is None:
            raise self.fail(f"{key}.{name}" if key else name, "is required")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key}.{name}" if key else name, "must be a non-empty string")
        return value

    def choice(self, data: dict[str, Any], name: str, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(data, name, key, default=default)
        if value not in choices:
            raise self.fail(f"{key}.{name}", f"{value!r} is not one of {', '.join(choices)}")
        return value

    def number(self, data: dict[str, Any], name: str, key: str, default: float, *, lo: float, hi: float) -> float:
        value = data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise self.fail(f"{key}.{name}", f"must be a number from {lo} to {hi}")
        return value

    def inside_path(self, value: Any, key: str, *, must_exist: bool = True) -> Path:
        """Resolve a path relative to the config folder, refusing one that escapes it."""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a path")
        folder = self.path.parent.resolve()
        resolved = (folder / value).resolve()
        if not resolved.is_relative_to(folder):
            raise self.fail(key, f"path {value!r} points outside the config's folder")
        if must_exist and not resolved.exists():
            raise self.fail(key, f"file {value!r} does not exist")
        if must_exist and not resolved.is_file():
            raise self.fail(key, f"{value!r} is not a file")
        return resolved


def _table(reader: _Reader, data: dict[str, Any], key: str, fields: tuple[str, ...], required: tuple[str, ...],
           extra_keys: tuple[str, ...] = ()) -> TableSpec:
    allowed = ("path", "format", "encoding", "delimiter", "date_format", "columns")
    reader.known_keys(data, key, allowed + extra_keys)
    path = reader.inside_path(data.get("path"), f"{key}.path")
    fmt = reader.choice(data, "format", key, FORMATS, default=path.suffix.lstrip(".").lower() or "csv")
    encoding = reader.string(data, "encoding", key, default="utf-8")
    try:
        "".encode(encoding)
        codec = codecs.lookup(encoding).name
    except (LookupError, UnicodeError):
        raise reader.fail(f"{key}.encoding", f"unknown encoding {encoding!r}") from None
    if codec in NOT_FILE_ENCODINGS:
        raise reader.fail(f"{key}.encoding", f"{encoding!r} is an escaping scheme, not a file encoding")
    delimiter = data.get("delimiter", ",")  # not reader.string: a tab is a delimiter, though blank
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n":
        raise reader.fail(f"{key}.delimiter", "must be a single character other than a quote or a line break")
    raw_formats = data.get("date_format", "%Y-%m-%d")
    formats = (raw_formats,) if isinstance(raw_formats, str) else raw_formats
    if not isinstance(formats, (list, tuple)) or not formats or not all(isinstance(f, str) and "%" in f for f in formats):
        raise reader.fail(f"{key}.date_format", "must be a strftime format such as '%d/%m/%Y', or a list of them")
    columns = reader.mapping(data.get("columns"), f"{key}.columns")
    for canonical, column in columns.items():
        if canonical not in fields:
            raise reader.fail(f"{key}.columns.{canonical}", f"not a canonical field (allowed: {', '.join(fields)})")
        if not isinstance(column, str) or not column:
            raise reader.fail(f"{key}.columns.{canonical}", "must name a column of the extract")
    for needed in required:
        if needed not in columns:
            raise reader.fail(f"{key}.columns.{needed}", "is required")
    if len(set(columns.values())) != len(columns):
        raise reader.fail(f"{key}.columns", "two canonical fields map to the same column")
    # NFC, as the readers normalise header names: a name typed on a Mac (NFD) matches one typed elsewhere.
    columns = {canonical: unicodedata.normalize("NFC", column) for canonical, column in columns.items()}
    return TableSpec(path, fmt, encoding, delimiter, tuple(formats), columns)


_BOOLEAN_CONSENT = ("ndop_opt_out", "type1_opt_out", "research_consent", "sensitive_category")
_SHARED_CARE_VALUES = ("granted", "withdrawn", "refused")


def _consent_values(reader: _Reader, data: Any, key: str) -> dict[str, dict[str, Any]]:
    """How a source spells its consent codes: ``{field: {spelling: true/false or granted/withdrawn/refused}}``."""
    where = f"{key}.consent_values"
    data = reader.mapping(data, where)
    result: dict[str, dict[str, Any]] = {}
    for name, spellings in data.items():
        if name not in _BOOLEAN_CONSENT + ("shared_care_consent",):
            raise reader.fail(f"{where}.{name}", "not a coded consent field")
        spellings = reader.mapping(spellings, f"{where}.{name}")
        for spelling, value in spellings.items():
            valid = isinstance(value, bool) if name in _BOOLEAN_CONSENT else value in _SHARED_CARE_VALUES
            if not valid:
                expected = "true or false" if name in _BOOLEAN_CONSENT else ", ".join(_SHARED_CARE_VALUES)
                raise reader.fail(f"{where}.{name}.{spelling}", f"must be {expected}")
        result[name] = {" ".join(str(s).upper().split()): v for s, v in spellings.items()}
    return result


def _consent_resolution(reader: _Reader, data: Any) -> dict[str, str]:
    """How opt-outs resolve across a person's records: ``sticky`` (any opt-out applies) or ``latest``."""
    data = reader.mapping(data, "consent_resolution")
    for flag, mode in data.items():
        if flag not in ("ndop_opt_out", "type1_opt_out"):
            raise reader.fail(f"consent_resolution.{flag}", "only ndop_opt_out and type1_opt_out can be configured")
        if mode not in ("sticky", "latest"):
            raise reader.fail(f"consent_resolution.{flag}", "must be sticky or latest")
    return dict(data)


def _source(reader: _Reader, data: Any, index: int) -> SourceConfig:
    key = f"sources[{index}]"
    data = reader.mapping(data, key)
    name = reader.string(data, "name", key)
    if not name.replace("_", "").isalnum():
        raise reader.fail(f"{key}.name", "may hold only letters, digits and underscores")
    kind = reader.choice(data, "kind", key, SOURCE_KINDS, default="health")
    table = _table(reader, data, key, PERSON_FIELDS + CONSENT_FIELDS, ("record_id",),
                   extra_keys=("name", "kind", "activity", "reversible", "consent_values"))
    if data.get("consent_values") is not None:
        table = dataclasses.replace(table, consent_values=_consent_values(reader, data["consent_values"], key))
    activity = None
    if data.get("activity") is not None:
        activity_data = reader.mapping(data["activity"], f"{key}.activity")
        activity_data.setdefault("date_format", data.get("date_format", "%Y-%m-%d"))
        activity_data.setdefault("encoding", table.encoding)
        activity = _table(reader, activity_data, f"{key}.activity", ACTIVITY_FIELDS, ACTIVITY_FIELDS)
    reversible = data.get("reversible") or []
    allowed = ("record_id", "nhs_number", "shared_id")
    if not isinstance(reversible, list) or any(f not in allowed for f in reversible):
        raise reader.fail(f"{key}.reversible", f"must be a list of fields from: {', '.join(allowed)}")
    for field_name in reversible:
        if field_name not in table.columns:
            raise reader.fail(f"{key}.reversible", f"{field_name} is not mapped in columns")
    return SourceConfig(name, kind, table, activity, tuple(dict.fromkeys(reversible)))


def load_config(path: Path | str) -> PipelineConfig:
    """Load and validate a pipeline YAML file."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(path, None, "config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0]
        raise ConfigError(path, None, f"not valid YAML: {problem}") from None
    reader = _Reader(path)
    data = reader.mapping(data, "(top level)")
    reader.known_keys(data, "", ("partnership", "reference_date", "sources", "exports", "keys", "linkage", "purposes",
                                 "consent_resolution"))
    partnership = reader.string(data, "partnership", "")
    reference_date = _reference_date(reader, data.get("reference_date"))
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise reader.fail("sources", "must be a non-empty list")
    sources = tuple(_source(reader, item, i) for i, item in enumerate(raw_sources))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise reader.fail("sources", "two sources share a name")
    purposes = _purposes(reader, data.get("purposes") or {})
    exports = tuple(_export(reader, item, i, {**SHIPPED_PURPOSES, **purposes})
                    for i, item in enumerate(data.get("exports") or []))
    targets = [(e.recipient, e.purpose) for e in exports]
    if len(set(targets)) != len(targets):
        raise reader.fail("exports", "two exports share a recipient and purpose")
    return PipelineConfig(
        path=path,
        partnership=partnership,
        reference_date=reference_date,
        sources=sources,
        exports=exports,
        keys=_keys(reader, data.get("keys") or {}),
        linkage=_linkage(reader, data.get("linkage") or {}),
        purposes=purposes,
        consent_resolution=_consent_resolution(reader, data.get("consent_resolution") or {}),
    )


def _reference_date(reader: _Reader, value: Any) -> dt.date:
    if value is None:
        return dt.date.today()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise reader.fail("reference_date", "must be a date such as 2026-11-01") from None


def _export(reader: _Reader, data: Any, index: int,
            purposes: dict[str, PurposeRules] = SHIPPED_PURPOSES) -> ExportConfig:
    key = f"exports[{index}]"
    data = reader.mapping(data, key)
    reader.known_keys(data, key, ("recipient", "purpose", "legal_basis"))
    recipient = reader.string(data, "recipient", key)
    if not recipient.replace("_", "").replace("-", "").isalnum():
        raise reader.fail(f"{key}.recipient", "may hold only letters, digits, '-' and '_'")
    purpose = reader.choice(data, "purpose", key, tuple(purposes), default="planning")
    legal_basis = None
    if data.get("legal_basis") is not None:
        legal_basis = reader.string(data, "legal_basis", key).strip()
        if "\n" in legal_basis or len(legal_basis) > 200:
            raise reader.fail(f"{key}.legal_basis", "must be one line of at most 200 characters")
        if not purposes[purpose].accepts_legal_basis:
            raise reader.fail(f"{key}.legal_basis", f"purpose {purpose!r} does not accept a legal basis")
    return ExportConfig(recipient, purpose, legal_basis)


def _purposes(reader: _Reader, data: Any) -> dict[str, PurposeRules]:
    """The partnership's own purposes (``purposes:``), each checked like the shipped profiles."""
    data = reader.mapping(data, "purposes")
    purposes = {}
    for name, body in data.items():
        if name in SHIPPED_PURPOSES:
            raise reader.fail(f"purposes.{name}", "a shipped purpose cannot be redefined; give yours another name")
        try:
            purposes[name] = parse_purpose(name, body)
        except PurposeError as exc:
            raise reader.fail(f"purposes.{name}" + (f".{exc.key}" if exc.key else ""), exc.problem) from None
    return purposes


def _keys(reader: _Reader, data: Any) -> KeysConfig:
    data = reader.mapping(data, "keys")
    reader.known_keys(data, "keys", ("linkage", "export", "passphrase_env", "passphrase_file"))
    paths = {name: reader.inside_path(data[name], f"keys.{name}") if data.get(name) else None for name in ("linkage", "export", "passphrase_file")}
    return KeysConfig(
        linkage=paths["linkage"],
        export=paths["export"],
        passphrase_env=reader.string(data, "passphrase_env", "keys", default="CARELINK_PASSPHRASE"),
        passphrase_file=paths["passphrase_file"],
    )


def _linkage(reader: _Reader, data: Any) -> LinkageConfig:
    data = reader.mapping(data, "linkage")
    reader.known_keys(data, "linkage", ("threshold", "model", "max_comparisons", "u_max_pairs", "em_max_pairs",
                                        "engine", "bloom_hardening"))
    model = reader.inside_path(data["model"], "linkage.model", must_exist=False) if data.get("model") else None
    return LinkageConfig(
        threshold=reader.number(data, "threshold", "linkage", 0.95, lo=0.5, hi=0.999999),
        model=model,
        max_comparisons=int(reader.number(data, "max_comparisons", "linkage", DEFAULT_MAX_COMPARISONS, lo=1, hi=1e12)),
        u_max_pairs=int(reader.number(data, "u_max_pairs", "linkage", 1_000_000, lo=1e4, hi=1e9)),
        em_max_pairs=int(reader.number(data, "em_max_pairs", "linkage", 1_000_000, lo=1e4, hi=1e10)),
        engine=reader.choice(data, "engine", "linkage", ENGINES, default="duckdb"),
        bloom_hardening=reader.choice(data, "bloom_hardening", "linkage", HARDENINGS, default="none"),
    )
