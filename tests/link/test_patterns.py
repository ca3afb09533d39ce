"""Issue 10's linkage patterns, one constructed case each, asserting linked or not linked end to end.

The constructed records (``patterns_data``) are appended to the extracts of a generated background partnership, so
the model is trained by EM on realistic data as in production, and the whole pipeline (ingest → pseudonymise → link
→ export) runs once for the module. A failing assertion prints the evidence: the pair's match probability and the
match weight of each comparison, and for a wrong merge the scored links inside the merged person.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import pytest

from carelink import keys as carelink_keys
from carelink.config import load_config
from carelink.link.evaluate import assignment, pairwise_scores, read_truth
from carelink.link.explain import explain_pair
from carelink.pipeline import run_all
from carelink.synth import generate_partnership
from carelink.tables import read_json
from carelink.workspace import Workspace

from . import patterns_data as data

pytestmark = pytest.mark.slow

#: Background people: enough for EM to learn a stable model, few enough for one run of ~20 s.
BACKGROUND_PEOPLE = 2000
SEED = int(os.environ.get("CARELINK_PATTERNS_SEED", "20"))
#: Seed of the (test-only, repeatable) workspace keys.
KEY_SEED = int(os.environ.get("CARELINK_PATTERNS_KEY_SEED", "1"))


class Linkage:
    """The persons one run assigned to the constructed records, named by their keys."""

    def __init__(self, run_folder: Path, records: list[data.Rec], threshold: float, truth: Path) -> None:
        self.folder = run_folder
        self.threshold = threshold
        self.truth = truth
        self.records = {r.key: r for r in records}
        tokens = {}
        for path in (run_folder / "pseudonymise").glob("*/reid_map.parquet"):
            for record_id, token in pl.read_parquet(path).select("record_id", "record_token").iter_rows():
                tokens[(path.parent.name, record_id)] = token
        missing = [r.key for r in records if (r.source, r.record_id) not in tokens]
        assert not missing, f"constructed records not ingested (quarantined?): {missing}"
        self.token = {r.key: tokens[(r.source, r.record_id)] for r in records}
        self.key_of = {token: key for key, token in self.token.items()}
        self.person_map = pl.read_parquet(run_folder / "link" / "person_map.parquet")
        self.person_of = dict(self.person_map.select("record_token", "person_id").iter_rows())
        self.edges = pl.read_parquet(run_folder / "link" / "edges.parquet")

    def person(self, key: str) -> str:
        return self.person_of[self.token[key]]

    def linked(self, left: str, right: str) -> bool:
        return self.person(left) == self.person(right)

    def name(self, token: str) -> str:
        return self.key_of.get(token, f"background:{token[:10]}")

    def _ref(self, key: str) -> str:
        record = self.records[key]
        return f"{record.source}:{record.record_id}"

    def explain(self, left: str, right: str) -> str:
        """The pair scored by the run's model, comparison by comparison."""
        scored = explain_pair(self.folder, self._ref(left), self._ref(right))
        parts = ", ".join(
            f"{c['comparison']}={c['level']} {c['match_weight']:+.2f}"
            + (f" (tf {c['term_frequency_adjustment']:+.2f})" if c.get("term_frequency_adjustment") else "")
            for c in scored["comparisons"])
        return (f"{left} ~ {right}: match_probability={scored['match_probability']:.6f} "
                f"match_weight={scored['match_weight']:+.2f} [prior {scored['prior_weight']:+.2f}; {parts}]")

    def edge(self, left: str, right: str) -> str:
        """What the run did with the pair: scored above the threshold or not, and the clustering's constraint counts."""
        low, high = sorted((self.token[left], self.token[right]))
        row = self.edges.filter((pl.col("record_token_l") == low) & (pl.col("record_token_r") == high))
        stats = read_json(self.folder / "link" / "linkage_report.json").get("clustering", {})
        if row.height == 0:
            return f"  run: no edge kept for {left} ~ {right} (below 0.5 or not blocked); clustering {stats}"
        return (f"  run: edge {left} ~ {right} p={row['match_probability'][0]:.6f} (threshold {self.threshold}); "
                f"clustering {stats}")

    def merged_links(self, key: str) -> str:
        """The scored links above the threshold inside the person holding ``key`` (how a wrong merge came about)."""
        members = self.person_map.filter(pl.col("person_id") == self.person(key))["record_token"]
        inside = self.edges.filter(pl.col("record_token_l").is_in(members.implode())
                                   & pl.col("record_token_r").is_in(members.implode())
                                   & (pl.col("match_probability") >= self.threshold))
        weights = [c for c in inside.columns if c.startswith("mw_") and not c.startswith("mw_tf_")]

        def weight(row: dict, column: str) -> str:
            tf = row.get(f"mw_tf_adj_{column[3:]}")
            return f"{column[3:]} {row[column]:+.2f}" + (f" (tf {tf:+.2f})" if tf else "")

        lines = [f"person {self.person(key)} holds {', '.join(sorted(self.name(t) for t in members))}; its links:"]
        for row in inside.sort("match_weight", descending=True).iter_rows(named=True):
            detail = ", ".join(weight(row, c) for c in weights if row[c] is not None)
            lines.append(f"  {self.name(row['record_token_l'])} ~ {self.name(row['record_token_r'])}: "
                         f"p={row['match_probability']:.6f} w={row['match_weight']:+.2f} [{detail}]")
        return "\n".join(lines)


class _RepeatableSecrets:
    """Stands in for ``secrets`` in ``carelink.keys`` so the workspace keys, hence every token, are the same on every
    run: with a fresh random key the u-probabilities sampled in training (and so borderline verdicts) vary a little."""

    def __init__(self, seed: int) -> None:
        self._counter = itertools.count()
        self._seed = seed

    def token_bytes(self, n: int) -> bytes:
        block = f"carelink-test-patterns:{self._seed}:{next(self._counter)}".encode()
        return hashlib.shake_256(block).digest(n)

    def token_hex(self, n: int) -> str:
        return self.token_bytes(n).hex()

    def token_urlsafe(self, n: int) -> str:
        return base64.urlsafe_b64encode(self.token_bytes(n)).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Linkage:
    root = tmp_path_factory.mktemp("patterns")
    generate_partnership(root / "data", people=BACKGROUND_PEOPLE, seed=SEED)
    config = load_config(root / "data" / "pipeline.yaml")
    clashes = {r.postcode.replace(" ", "") for r in data.ALL_RECORDS} & data.background_values(config, "postcode")
    assert not clashes, f"constructed postcodes also used by background people: {clashes}"
    numbers = data.allocate_numbers(data.ALL_RECORDS, data.background_values(config, "nhs_number"))
    records = data.resolve(data.ALL_RECORDS, numbers)
    data.append_records(config, records)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(carelink_keys, "secrets", _RepeatableSecrets(KEY_SEED))
        report = run_all(config, Workspace(root / "workspace"))
    return Linkage(report.run.folder, records, config.linkage.threshold, root / "data" / "truth.csv")


def keys_of(prefix: str) -> list[str]:
    """The keys of one constructed person's records (``<prefix>_<source>``)."""
    keys = [r.key for r in data.ALL_RECORDS if r.key == f"{prefix}_{r.source}"]
    assert keys, prefix
    return keys


def assert_together(run: Linkage, keys: Iterable[str]) -> None:
    """Every record is assigned to one person."""
    keys = list(keys)
    apart = [(a, b) for a, b in itertools.combinations(keys, 2) if not run.linked(a, b)]
    if apart:
        evidence = [line for a, b in apart for line in (run.explain(a, b), run.edge(a, b))]
        evidence += [run.merged_links(k) for k in dict.fromkeys(k for pair in apart for k in pair)]
        pytest.fail("expected one person, got several:\n" + "\n".join(evidence))


def assert_apart(run: Linkage, *people: Iterable[str]) -> None:
    """No two groups of records share a person (each group being one true person's records)."""
    groups = [list(g) for g in people]
    merged = [(a, b) for g, h in itertools.combinations(groups, 2) for a in g for b in h if run.linked(a, b)]
    if merged:
        evidence = [run.merged_links(merged[0][0])] + [run.explain(a, b) for a, b in merged]
        pytest.fail("different people linked into one:\n" + "\n".join(evidence))


def test_background_partnership_links_well(run: Linkage) -> None:
    """A guard: the pattern tests mean something only if the model trained on the background is sound."""
    reid = {p.parent.name: pl.read_parquet(p) for p in (run.folder / "pseudonymise").glob("*/reid_map.parquet")}
    scores = pairwise_scores(assignment(reid, run.person_map, read_truth(run.truth)))
    assert scores["precision"] >= 0.98 and scores["recall"] >= 0.95, scores


# --- Twins ----------------------------------------------------------------------------------------------------------

TWINS_NHS = [("twins_nhs_jack", "twins_nhs_jake"), ("twins_nhs_oliver", "twins_nhs_olivia"),
             ("twins_nhs_emily", "twins_nhs_sophie")]
TWINS_NO_NHS = [("twins_none_jack", "twins_none_jake"), ("twins_none_oliver", "twins_none_olivia"),
                ("twins_none_amelia", "twins_none_isla")]


@pytest.mark.parametrize(("twin_a", "twin_b"), TWINS_NHS, ids=lambda t: t.rsplit("_", 1)[-1])
def test_twins_with_consecutive_nhs_numbers_are_not_linked(run: Linkage, twin_a: str, twin_b: str) -> None:
    assert_apart(run, keys_of(twin_a), keys_of(twin_b))


@pytest.mark.parametrize(("twin_a", "twin_b"), TWINS_NO_NHS, ids=lambda t: t.rsplit("_", 1)[-1])
def test_twins_without_nhs_numbers_are_not_linked(run: Linkage, twin_a: str, twin_b: str) -> None:
    assert_apart(run, keys_of(twin_a), keys_of(twin_b))


def test_twins_are_not_chained_through_records_without_nhs_numbers(run: Linkage) -> None:
    assert_apart(run, keys_of("twins_mixed_jack"), keys_of("twins_mixed_jake"))


@pytest.mark.parametrize("twin", [t for pair in [*TWINS_NHS, *TWINS_NO_NHS] for t in pair]
                         + ["twins_mixed_jack", "twins_mixed_jake"])
def test_each_twin_is_linked_across_sources(run: Linkage, twin: str) -> None:
    assert_together(run, keys_of(twin))


# --- Parent and child with the same name ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["nhs", "none"])
def test_parent_and_child_with_the_same_name_are_not_linked(run: Linkage, kind: str) -> None:
    assert_apart(run, keys_of(f"jrsr_{kind}_sr"), keys_of(f"jrsr_{kind}_jr"))


@pytest.mark.parametrize("prefix", ["jrsr_nhs_sr", "jrsr_nhs_jr", "jrsr_none_sr", "jrsr_none_jr"])
def test_parent_and_child_each_linked_across_sources(run: Linkage, prefix: str) -> None:
    assert_together(run, keys_of(prefix))


# --- Care home ------------------------------------------------------------------------------------------------------

def test_care_home_residents_are_not_linked_to_each_other(run: Linkage) -> None:
    assert_apart(run, *(keys_of(p) for p in data.CARE_HOME_PEOPLE))


@pytest.mark.parametrize("resident", data.CARE_HOME_PEOPLE)
def test_care_home_resident_records_from_two_sources_are_linked(run: Linkage, resident: str) -> None:
    assert_together(run, keys_of(resident))


# --- NHS numbers: a relative's, placeholders ------------------------------------------------------------------------

def test_spouse_nhs_number_on_a_record_does_not_merge_the_spouses(run: Linkage) -> None:
    assert_apart(run, keys_of("relative_harold"), keys_of("relative_joan"))


def test_record_with_spouse_nhs_number_still_joins_its_own_person(run: Linkage) -> None:
    assert_together(run, keys_of("relative_joan"))
    assert_together(run, keys_of("relative_harold"))


@pytest.mark.parametrize(("left", "right"), [(a.key, b.key) for a, b in data.PLACEHOLDER_PAIRS],
                         ids=["0000000000", "1111111111", "9999999999-couple"])
def test_placeholder_nhs_number_does_not_link_different_people(run: Linkage, left: str, right: str) -> None:
    assert_apart(run, [left], [right])


@pytest.mark.parametrize("prefix", ["placeholder_same_graham", "placeholder_same_linda"])
def test_placeholder_on_one_record_valid_number_on_another_are_linked(run: Linkage, prefix: str) -> None:
    assert_together(run, keys_of(prefix))


# --- One person looking like several --------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["nickname_margaret", "nickname_william", "nickname_oluwaseun"],
                         ids=["margaret-peggy", "william-bill", "oluwaseun-seun"])
def test_nickname_is_linked(run: Linkage, prefix: str) -> None:
    assert_together(run, keys_of(prefix))


def test_middle_name_in_forename_field_is_linked(run: Linkage) -> None:
    assert_together(run, keys_of("middle_mary_ann"))


def test_known_by_middle_name_with_nhs_number_is_linked(run: Linkage) -> None:
    assert_together(run, keys_of("known_middle_nhs"))


def test_known_by_middle_name_without_nhs_number_is_linked(run: Linkage) -> None:
    assert_together(run, keys_of("known_middle_none"))


def test_surname_changed_on_marriage_with_nhs_number_is_linked(run: Linkage) -> None:
    assert_together(run, keys_of("marriage_nhs"))


def test_surname_changed_on_marriage_without_nhs_number_is_linked(run: Linkage) -> None:
    """Same forename, date of birth and address; the later record has a new surname and no NHS number."""
    assert_together(run, keys_of("marriage_none"))


def test_default_date_of_birth_does_not_link_two_people_of_the_same_name(run: Linkage) -> None:
    assert_apart(run, ["default_dob_peter_a"], ["default_dob_peter_b"])


def test_default_date_of_birth_does_not_link_brothers_at_one_address(run: Linkage) -> None:
    assert_apart(run, ["default_dob_keith"], ["default_dob_derek"])


def test_second_registration_in_one_source_is_linked(run: Linkage) -> None:
    assert_together(run, ["second_reg_first_gp", "second_reg_second_gp"])
