"""Evaluate a person assignment against a truth file (``source,record_id,entity_id[,cases]``).

Pairwise figures count pairs of records: a true positive is a pair in the same person and the same true entity.
Only records present in both the truth and the workspace are scored; the rest are counted and reported.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from carelink.errors import InputFileError


def read_truth(path: Path) -> pl.DataFrame:
    """Read a truth CSV, every column as text."""
    if not path.is_file():
        raise InputFileError(path, "truth file not found")
    try:
        truth = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise InputFileError(path, f"cannot be read as CSV: {str(exc).splitlines()[0]}") from None
    missing = {"source", "record_id", "entity_id"} - set(truth.columns)
    if missing:
        raise InputFileError(path, f"truth file lacks column(s) {', '.join(sorted(missing))}", row=0)
    return truth


def _pairs(counts: pl.Series) -> int:
    return int((counts * (counts - 1) // 2).sum())


def pairwise_scores(assigned: pl.DataFrame) -> dict[str, float | int]:
    """Pairwise precision, recall and F1 of ``assigned`` (columns ``person_id``, ``entity_id``)."""
    predicted = _pairs(assigned.group_by("person_id").len()["len"])
    true = _pairs(assigned.group_by("entity_id").len()["len"])
    correct = _pairs(assigned.group_by("person_id", "entity_id").len()["len"])
    precision = correct / predicted if predicted else 1.0
    recall = correct / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_pairs": true, "predicted_pairs": predicted,
            "correct_pairs": correct, "false_links": predicted - correct, "missed_links": true - correct}


def assignment(reid_maps: dict[str, pl.DataFrame], person_map: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Join truth → each partner's re-identification map → the person map."""
    tokens = pl.concat([m.select(pl.lit(source).alias("source"), "record_id", "record_token")
                        for source, m in sorted(reid_maps.items())])
    people = person_map.select("record_token", "person_id")
    return truth.join(tokens, on=["source", "record_id"], how="inner").join(people, on="record_token", how="inner")


def errors_by_case(assigned: pl.DataFrame) -> dict[str, dict[str, int]]:
    """False and missed links broken down by the truth file's ``cases`` labels (a pair counts for each label of
    either record)."""
    if "cases" not in assigned.columns:
        return {}
    left = assigned.select("record_token", "person_id", "entity_id", pl.col("cases").fill_null(""))
    pairs = left.join(left, on="person_id", suffix="_r").filter(pl.col("record_token") < pl.col("record_token_r"))
    false_links = pairs.filter(pl.col("entity_id") != pl.col("entity_id_r"))
    truths = left.join(left, on="entity_id", suffix="_r").filter(pl.col("record_token") < pl.col("record_token_r"))
    missed = truths.filter(pl.col("person_id") != pl.col("person_id_r"))

    def tally(frame: pl.DataFrame) -> dict[str, int]:
        labels = frame.select(
            pl.concat_list(pl.col("cases").str.split(";"), pl.col("cases_r").str.split(";")).list.unique().alias("c")
        ).explode("c").filter(pl.col("c") != "")
        labels = pl.concat([labels, pl.DataFrame({"c": ["(all)"] * frame.height})])
        return dict(labels.group_by("c").len().sort("c").iter_rows())

    result: dict[str, dict[str, int]] = {}
    for kind, frame in (("false_links", false_links), ("missed_links", missed)):
        for label, count in tally(frame).items():
            result.setdefault(label, {"false_links": 0, "missed_links": 0})[kind] = count
    return result


def precision_among(assigned: pl.DataFrame, label: str) -> float | None:
    """Pairwise precision among the records of people whose records carry ``label`` (e.g. twins)."""
    if "cases" not in assigned.columns:
        return None
    entities = assigned.filter(pl.col("cases").fill_null("").str.split(";").list.contains(label))["entity_id"].unique()
    subset = assigned.filter(pl.col("entity_id").is_in(entities.implode()))
    return pairwise_scores(subset)["precision"] if subset.height else None


def cluster_scores(assigned: pl.DataFrame) -> dict[str, float]:
    """Cluster-level figures: the share of predicted people that are exactly one true entity (precision) and of true
    entities reproduced exactly as one person (recall)."""
    people = assigned.group_by("person_id").agg(pl.col("record_token").sort().str.join(",").alias("members"))
    entities = assigned.group_by("entity_id").agg(pl.col("record_token").sort().str.join(",").alias("members"))
    exact = people.join(entities, on="members").height
    precision, recall = exact / people.height, exact / entities.height
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "exact_clusters": exact}


def scores_across_thresholds(run_folder: Path, assigned: pl.DataFrame,
                             thresholds: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)) -> list[dict]:
    """Pairwise figures had the run clustered at other thresholds (same edges, same constrained clustering)."""
    from carelink.link.clustering import cluster

    nodes = pl.concat([pl.read_parquet(p) for p in sorted((run_folder / "pseudonymise").glob("*/nodes.parquet"))],
                      how="diagonal_relaxed")
    edges = pl.read_parquet(run_folder / "link" / "edges.parquet")
    rows = []
    for threshold in thresholds:
        clusters, _ = cluster(nodes, edges, threshold)
        regrouped = assigned.drop("person_id").join(clusters.select("record_token", pl.col("cluster_id").alias("person_id")),
                                                    on="record_token")
        figures = pairwise_scores(regrouped)
        rows.append({"threshold": threshold, **{k: figures[k] for k in ("precision", "recall", "f1")}})
    return rows


def read_labels(path: Path) -> pl.DataFrame:
    """Clerical labels: CSV ``record_l,record_r,match`` (records as ``source:record_id`` or record tokens; match
    1/0, yes/no, true/false)."""
    if not path.is_file():
        raise InputFileError(path, "labels file not found")
    labels = pl.read_csv(path, infer_schema=False)
    missing = {"record_l", "record_r", "match"} - set(labels.columns)
    if missing:
        raise InputFileError(path, f"labels file lacks column(s) {', '.join(sorted(missing))}", row=0)
    decided = labels["match"].str.strip_chars().str.to_lowercase()
    known = {"1": True, "yes": True, "true": True, "match": True, "0": False, "no": False, "false": False,
             "non-match": False, "nonmatch": False}
    bad = labels.with_row_index("row").filter(~decided.is_in(list(known)))
    if bad.height:
        raise InputFileError(path, f"match must be 1/0, yes/no or true/false, not {bad['match'][0]!r}",
                             row=int(bad["row"][0]) + 1, field="match")
    return labels.with_columns(decided.replace_strict(known, return_dtype=pl.Boolean).alias("match"))


def evaluate_labels(run_folder: Path, labels_path: Path) -> dict:
    """Precision and recall of the run's person assignment on clerically labelled pairs."""
    from carelink.link.explain import resolve_record

    labels = read_labels(labels_path)
    person = dict(pl.read_parquet(run_folder / "link" / "person_map.parquet").select("record_token", "person_id")
                  .iter_rows())
    outcomes = []
    for left, right, match in labels.select("record_l", "record_r", "match").iter_rows():
        a, b = person.get(resolve_record(run_folder, left)), person.get(resolve_record(run_folder, right))
        if a is not None and b is not None:
            outcomes.append((match, a == b))
    tp = sum(1 for match, linked in outcomes if match and linked)
    fp = sum(1 for match, linked in outcomes if not match and linked)
    fn = sum(1 for match, linked in outcomes if match and not linked)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"labelled_pairs": labels.height, "pairs_scored": len(outcomes), "precision": precision, "recall": recall,
            "f1": f1, "false_links": fp, "missed_links": fn}


def evaluate_run(run_folder: Path, truth_path: Path) -> dict:
    """Score one run folder against the truth file."""
    truth = read_truth(truth_path)
    person_map_path = run_folder / "link" / "person_map.parquet"
    if not person_map_path.is_file():
        raise InputFileError(person_map_path, "not found: the run has not linked")
    reid_maps = {p.parent.name: pl.read_parquet(p) for p in sorted((run_folder / "pseudonymise").glob("*/reid_map.parquet"))}
    assigned = assignment(reid_maps, pl.read_parquet(person_map_path), truth)
    scores = pairwise_scores(assigned)
    scores["records_scored"] = assigned.height
    scores["truth_records_not_in_run"] = truth.height - assigned.height
    scores["people"] = assigned["person_id"].n_unique()
    scores["true_entities"] = assigned["entity_id"].n_unique()
    scores["cluster_level"] = cluster_scores(assigned)
    scores["across_thresholds"] = scores_across_thresholds(run_folder, assigned)
    if "cases" in assigned.columns:
        scores["errors_by_case"] = errors_by_case(assigned)
        scores["precision_among"] = {label: precision_among(assigned, label) for label in ("twin", "jr_sr", "care_home")}
    return scores
