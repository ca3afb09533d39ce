"""The link stage, run at the hub: all sources' nodes → trained model, scored edges, clusters, person registry."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import gc
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from carelink import __version__
from carelink.config import LinkageConfig
from carelink.errors import DataQualityError, InputFileError, IntegrityError
from carelink.link import model
from carelink.link.blocking import check_blocking_budget, choose_rules
from carelink.link.carry import Since, assign_people, clustering_made
from carelink.link.clustering import COMPONENT, EXCUSING, TALLIES, ClusterStats
from carelink.link.households import household_evidence
from carelink.link.registry import Registry, person_keys, rows_in
from carelink.link.report import write_report
from carelink.link.scoring import NODE_ID, NodePairs, PairScorer, with_node_ids
from carelink.pseudonymise.stage import verify_delivery
from carelink.tables import (
    cut_like,
    file_sha256,
    in_aligned_pieces,
    read_parquet_metadata,
    write_json,
    write_parquet_files,
)

log = logging.getLogger(__name__)
#: DuckDB's memory limit unless CARELINK_DUCKDB_MEMORY_LIMIT says otherwise; beyond it DuckDB spills to disk.
DUCKDB_MEMORY_LIMIT = "3GB"
MODEL_FORMAT = "carelink-model/1"


@dataclass
class LinkResult:
    """What the link stage did."""

    records: int
    edges: int
    people: int
    model_path: Path
    trained: bool
    linkage_key_id: str
    cluster_stats: ClusterStats | None = None
    timings: dict[str, float] = field(default_factory=dict)
    records_rescored: int = 0
    records_with_people_carried: int = 0


def load_nodes(folders: list[Path], columns: Callable[[str], bool] | None = None) -> tuple[pl.DataFrame, str]:
    """Read every source's nodes (only the columns ``columns`` accepts, where given; ``record_token`` always),
    refusing sources made with different linkage keys."""
    frames, key_ids = [], {}
    for folder in folders:
        if not (folder / "nodes.parquet").is_file():
            raise InputFileError(folder / "nodes.parquet", "not found: pseudonymise this source first")
    with ThreadPoolExecutor(max_workers=pl.thread_pool_size(), thread_name_prefix="verify") as pool:
        manifests = list(pool.map(verify_delivery, folders))  # hashing runs without the GIL: sources side by side
    for folder, manifest in zip(folders, manifests, strict=True):
        path = folder / "nodes.parquet"
        key_ids[folder.name] = manifest.get("linkage_key_id", "unknown")
        if read_parquet_metadata(path).get("linkage_key_id") != key_ids[folder.name]:
            raise IntegrityError(f"{path}: made with another key than its manifest says")
        wanted = None
        if columns is not None:
            wanted = [name for name in pq.read_schema(path).names if name == "record_token" or columns(name)]
        frames.append(pl.read_parquet(path, columns=wanted))
    if len(set(key_ids.values())) > 1:
        listing = ", ".join(f"{name}={key_id}" for name, key_id in sorted(key_ids.items()))
        raise IntegrityError(f"sources were pseudonymised with different linkage keys ({listing}); re-run them with one key")
    nodes = _stacked(frames)
    if nodes["record_token"].n_unique() != nodes.height:
        raise IntegrityError("two sources share a record token; were the same nodes delivered twice?")
    return nodes, next(iter(key_ids.values()))


def _stacked(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The sources' frames (emptied from the list) as one, every column cut in the same places (``tables.
    in_aligned_pieces``; the sources' pieces as read, where they agree): columns computed from it then share its
    layout, so handing it to DuckDB copies nothing (a frame whose columns are cut in different places is copied
    whole: 6.5 GB at ten million records). Sources with sealed fields have extra columns."""
    frame = pl.concat(frames, how="diagonal_relaxed", rechunk=False)
    frames.clear()
    return in_aligned_pieces(frame)


def node_hardening(folders: list[Path]) -> str:
    """The Bloom-filter hardening every source's nodes were made with (refusing a mixture: the filters would not
    compare)."""
    found = {folder.name: read_parquet_metadata(folder / "nodes.parquet").get("bloom_hardening", "none")
             for folder in folders}
    if len(set(found.values())) > 1:
        listing = ", ".join(f"{name}={hardening}" for name, hardening in sorted(found.items()))
        raise IntegrityError(f"sources were pseudonymised with different Bloom-filter hardenings ({listing}); "
                             "re-run them with one linkage.bloom_hardening")
    return next(iter(found.values()), "none")


def model_input(nodes: pl.DataFrame) -> pl.DataFrame:
    """The columns the model needs, with Bloom-filter popcounts precomputed."""
    bits = [
        pl.col(c).list.eval(pl.element().bitwise_count_ones()).list.sum().cast(pl.Int32).alias(f"{c}_bits")
        for c in model.BLOOM_COLUMNS
    ]
    return nodes.select("record_token", "source", *model.MODEL_COLUMNS).with_columns(bits)


def _duckdb_connection() -> Any:
    """One embedded DuckDB instance: a memory limit makes it spill to disk instead of growing until the machine runs
    out, and a link opens one instance, so the limit holds for the whole link."""
    import duckdb

    limit = os.environ.get("CARELINK_DUCKDB_MEMORY_LIMIT", DUCKDB_MEMORY_LIMIT)
    spill = tempfile.mkdtemp(prefix="carelink-duckdb-")
    atexit.register(shutil.rmtree, spill, ignore_errors=True)
    return duckdb.connect(config={"memory_limit": limit, "temp_directory": spill})


def _db_api(engine: str, connection: Any = None):
    """A Splink backend for ``engine``: DuckDB embedded (on ``connection`` when given), or Spark. Each linker gets its
    own backend object, because Splink caches intermediate tables per backend by name, not by settings."""
    if engine == "spark":
        from carelink.link.spark import spark_api

        return spark_api()
    from splink import DuckDBAPI

    return DuckDBAPI(connection=connection if connection is not None else _duckdb_connection())


def train(linker: Any, frame: pl.DataFrame, config: LinkageConfig,
          sample_linker: Callable[[dict[str, Any], pl.DataFrame], AbstractContextManager[Any]]) -> dict[str, Any]:
    """Estimate the prior, u by random sampling and m by EM on several blocks; return what was done.

    Rules and blocks that generate no pairs on this data (no NHS numbers at all, say) are skipped and reported. A
    block with more pairs than ``config.em_max_pairs`` is trained on a sample of the records (``em_sample``) by a
    linker of its own (``with sample_linker(settings, records)``, which lets the sample go after), and its estimates
    join ``linker``'s (``_em_on_sample``).
    """
    training = linker.training
    deterministic = [rule for rule in model.DETERMINISTIC_RULES if rule.pairs(frame)]
    if not deterministic:
        raise DataQualityError("no two records agree on NHS number and date of birth, or on full name and date of "
                               "birth: there is nothing to estimate the match rate from")
    training.estimate_probability_two_random_records_match([r.sql() for r in deterministic], recall=0.8)
    training.estimate_u_using_random_sampling(max_pairs=config.u_max_pairs, seed=1)
    used = []
    for block in model.EM_BLOCKS:
        pairs = block.pairs(frame)
        if pairs < 100:
            log.info("link: EM block %s skipped (%d pairs)", block.sql(), pairs)
            continue
        records = em_sample(frame, pairs, config.em_max_pairs)
        if records is frame:
            training.estimate_parameters_using_expectation_maximisation(block.sql(),
                                                                        estimate_without_term_frequencies=True)
        else:
            with sample_linker(linker.misc.save_model_to_json(None), records) as sampled:
                _em_on_sample(linker, sampled, block)
        used.append({"block": block.sql(), "pairs": pairs, "pairs_sampled": min(pairs, config.em_max_pairs),
                     "records_sampled": records.height})
        del records  # a sample is let go before the next is taken
    return {"deterministic_rules": [r.sql() for r in deterministic], "em_blocks": used,
            "u_max_pairs": config.u_max_pairs}


def em_sample(frame: pl.DataFrame, pairs: int, max_pairs: int) -> pl.DataFrame:
    """``frame`` itself when a block's ``pairs`` are at most ``max_pairs``; else the records whose node id falls in
    a share of sqrt(max_pairs / pairs), so about ``max_pairs`` of the block's pairs are among them (as Splink's own
    sampling picks them, but before any query reads the records: Splink filters them inside the query that prepares
    all of them, 97 s for the birth-date block at ten million records). The share is taken by a multiplicative hash
    of the node id, so the same records give the same sample."""
    if pairs <= max_pairs:
        return frame
    share = (max_pairs / pairs) ** 0.5
    ids = frame[NODE_ID].to_numpy().astype(np.uint64)
    bucket = (ids * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)  # Fibonacci hashing: the product's top 32 bits
    return frame.filter(pl.Series(bucket < np.uint64(int(share * 2**32))))


def _em_on_sample(linker: Any, sampled: Any, block: model.Block) -> None:
    """Run EM for ``block`` on ``sampled`` (a linker over a sample of the records, holding ``linker``'s parameters
    so far) and add its m estimates to ``linker``'s, which then takes each level's median over the blocks, as after
    an EM run of its own (Splink has no public call to merge estimates, hence its private members)."""
    sampled.training.estimate_parameters_using_expectation_maximisation(block.sql(),
                                                                        estimate_without_term_frequencies=True)
    ours, theirs = linker._settings_obj.comparisons, sampled._settings_obj.comparisons
    for comparison, trained in zip(ours, theirs, strict=True):
        for level, trained_level in zip(comparison._comparison_levels_excluding_null,
                                        trained._comparison_levels_excluding_null, strict=True):
            for estimate in trained_level._trained_m_probabilities:
                level._add_trained_m_probability(estimate["probability"], estimate["description"])
    linker._populate_m_u_from_trained_values()


def u_without_matches(settings: dict[str, Any], floor: float = 0.25) -> dict[str, Any]:
    """Settings whose u-probabilities no longer count the true matches that random sampling drew.

    Random pairs are a mixture: P(level) = λ·m + (1 − λ)·u, with λ the probability that two random records match.
    Splink's random-sampling estimate is the left-hand side; where matches are dense (a small partnership, a file
    with many duplicates) λ·m is of the same order as u for the rarest agreement levels (identifier or address
    agreement), which then look far commoner among non-matches than they are. Solving for u removes that; ``floor``
    keeps each corrected u at no less than that share of the sampled one, so no weight grows without bound.
    """
    prior = settings["probability_two_random_records_match"]
    comparisons = []
    for comparison in settings["comparisons"]:
        levels = [dict(level) for level in comparison["comparison_levels"]]
        scored = [level for level in levels if not level.get("is_null_level") and level.get("u_probability")
                  and level.get("m_probability") is not None and not level.get("fix_u_probability")]
        for level in scored:
            sampled = level["u_probability"]
            level["u_probability"] = max((sampled - prior * level["m_probability"]) / (1 - prior), floor * sampled)
        total = sum(level["u_probability"] for level in scored)
        for level in scored:
            level["u_probability"] /= total
        comparisons.append({**comparison, "comparison_levels": levels})
    return {**settings, "comparisons": comparisons}


def _open_backend(frame: pl.DataFrame, config: LinkageConfig, connection: Any = None,
                  name: str = "nodes") -> tuple[Any, Any]:
    """A Splink backend and ``frame`` registered in it as ``name`` (unique within ``connection``).

    DuckDB reads the frame's own memory: exported at polars' newest Arrow level (string views, its list layout) the
    frame is not copied, where the default level copies it (6.5 GB of 9 at ten million records)."""
    db_api = _db_api(config.engine, connection)
    level = pl.CompatLevel.oldest() if config.engine == "spark" else pl.CompatLevel.newest()
    return db_api, db_api.register(frame.to_arrow(compat_level=level), dataset_display_name=name)


def _linker(table: Any, settings: dict[str, Any]) -> Any:
    """A Splink linker with ``settings`` over a registered table."""
    from splink import Linker

    return Linker(table, settings, log_level=logging.ERROR)


def settings_for_engine(settings: dict[str, Any], engine: str, hardening: str = "none") -> dict[str, Any]:
    """A trained model's settings with every comparison's SQL written for ``engine``.

    The Bloom-filter SQL indexes arrays, 1-based in DuckDB and 0-based in Spark, which SQL translation does not
    shift; so the SQL is regenerated from the model definition, keeping the trained m and u probabilities.
    """
    dialect = "spark" if engine == "spark" else "duckdb"
    if settings.get("sql_dialect") == dialect:
        return settings
    fresh = {c["output_column_name"]: c
             for c in model.comparisons(dialect, model.has_household_levels(settings), hardening)}
    comparisons = []
    for comparison in settings["comparisons"]:
        target = fresh.get(comparison["output_column_name"])
        if target is None or len(target["comparison_levels"]) != len(comparison["comparison_levels"]):
            raise IntegrityError(f"the model's comparison {comparison['output_column_name']!r} does not match this "
                                 "version of carelink; retrain with --retrain")
        levels = [{**level, "sql_condition": new["sql_condition"]}
                  for level, new in zip(comparison["comparison_levels"], target["comparison_levels"], strict=True)]
        comparisons.append({**comparison, "comparison_levels": levels})
    return {**settings, "comparisons": comparisons, "sql_dialect": dialect}


def _stored_model(model_path: Path, key_id: str, hardening: str) -> dict[str, Any]:
    stored = _read_model(model_path)
    if stored["training"]["linkage_key_id"] != key_id:
        raise IntegrityError(f"{model_path}: model was trained on data pseudonymised with key "
                             f"{stored['training']['linkage_key_id']}, this data uses {key_id}; retrain with --retrain")
    if stored["training"].get("bloom_hardening", "none") != hardening:
        raise IntegrityError(f"{model_path}: model was trained on Bloom filters hardened "
                             f"{stored['training'].get('bloom_hardening', 'none')!r}, this data is {hardening!r}; "
                             "retrain with --retrain")
    return stored


def train_model(node_folders: list[Path], model_path: Path, config: LinkageConfig, *,
                config_digest: str = "") -> dict[str, Any]:
    """Train a new model on every source's nodes and write it to ``model_path``; return its Splink settings."""
    nodes, key_id = load_nodes(node_folders)
    return _train_and_save(nodes, model_input(nodes), key_id, node_hardening(node_folders), model_path, config,
                           config_digest)


def _train_and_save(nodes: pl.DataFrame, frame: pl.DataFrame, key_id: str, hardening: str, model_path: Path,
                    config: LinkageConfig, config_digest: str,
                    rules: tuple[model.Block, ...] = model.BLOCKING_RULES) -> dict[str, Any]:
    """Decide the household levels, train, write ``model.json``; return the trained Splink settings.

    Splink works on integer node ids (its sampling and pair filters compare unique ids); the stored model names the
    record token, as the nodes do.
    """
    dialect = "spark" if config.engine == "spark" else "duckdb"
    connection = None if config.engine == "spark" else _duckdb_connection()
    frame = with_node_ids(frame)
    opened = itertools.count()

    def fresh_linker(settings: dict[str, Any], records: pl.DataFrame = frame) -> Any:
        _, table = _open_backend(records, config, connection, f"nodes_{next(opened)}")
        return _linker(table, {**settings, "unique_id_column_name": NODE_ID})

    evidence = household_evidence(fresh_linker, frame, dialect, hardening)
    log.info("link: %s of %s pairs sharing surname and residence with other forenames were the same person "
             "(judged by %s): household levels %s", f"{evidence.same_person:,}", f"{evidence.judged:,}",
             evidence.judged_by, "on" if evidence.relatives_present else "off")
    linker = fresh_linker(model.settings(dialect, evidence.relatives_present, hardening))
    training = train(linker, frame, config, _sample_linker(config)) | {"households": evidence.as_dict(),
                                                                       "bloom_hardening": hardening}
    trained = u_without_matches(linker.misc.save_model_to_json(None))
    settings = model.with_blocking({**trained, "unique_id_column_name": "record_token"}, rules)
    _write_model(settings, model_path, nodes, key_id, config_digest, training)
    log.info("link: trained a new model (%s)", model_path)
    return settings


def _sample_linker(config: LinkageConfig) -> Callable[[dict[str, Any], pl.DataFrame], AbstractContextManager[Any]]:
    """Linkers over samples of the records, each on a DuckDB instance of its own that is closed after: a sample
    registered beside the records stays as long as their instance (with the four samples of ten million records
    kept, the link peak rose from 13.2 to 15.9 GB in use)."""
    @contextlib.contextmanager
    def sample_linker(settings: dict[str, Any], records: pl.DataFrame) -> Iterator[Any]:
        db_api, table = _open_backend(records, config)
        try:
            yield _linker(table, {**settings, "unique_id_column_name": NODE_ID})
        finally:
            if config.engine != "spark":
                db_api.duckdb_con.close()

    return sample_linker


#: The node columns clustering, the registry and the report read (the rest is needed only to score).
AFTER_SCORING = ("record_token", "source", "source_kind", "age_band", "nhs_number_token", *EXCUSING)


def link(node_folders: list[Path], out_folder: Path, state_folder: Path, config: LinkageConfig, *, run_id: str,
         previous: Path | None = None, retrain: bool = False, incremental: bool = True,
         config_digest: str = "") -> LinkResult:
    """Link every source's nodes, cluster them into people and write the person registry into ``out_folder``.

    ``previous`` is the link folder of the last successful run: its registry keeps person IDs stable, and with
    ``incremental`` only records that are new or changed since then are scored (against everyone), the previous
    run's scores being kept for the rest. Loads the trained model in ``state_folder`` when there is one; trains (and
    says so) when asked or when there is none — a new model always rescores everything.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    nodes, key_id = load_nodes(node_folders)
    hardening = node_hardening(node_folders)
    frame = with_row_hash(model_input(nodes))
    counted: dict[str, int] = {}  # the comparisons of each rule counted while choosing, reused by the budget check
    rules = choose_rules(frame, model.BLOCKING_RULES, counted)
    comparisons = check_blocking_budget(frame, rules, config.max_comparisons, counted)
    model_path = config.model or state_folder / "model.json"
    trained = retrain or not model_path.is_file()
    timings["load"] = time.perf_counter() - started
    t0 = time.perf_counter()
    if trained:
        _train_and_save(nodes, frame.drop("row_hash"), key_id, hardening, model_path, config, config_digest, rules)
        gc.collect()  # the training backend is gone before scoring opens its own
        timings["train"] = time.perf_counter() - t0
    stored = _stored_model(model_path, key_id, hardening)
    if not trained:
        log.info("link: loaded the model trained on %s (%s)", stored["training"]["trained_at"], model_path)
    settings = model.with_blocking(settings_for_engine(stored["splink"], config.engine, hardening), rules)
    t0 = time.perf_counter()
    model_sha = file_sha256(model_path)
    # the last run's scores are passed unnamed, so that _score can let them go once it has what it keeps
    parts, since = _score(frame, settings, rules, config, sum(comparisons.values()),
                          _previous_scores(previous, model_sha, config.threshold)
                          if incremental and not trained else None)
    changed = frame.height if since is None else since.rescored
    # what the rest needs of the records; the match features (Bloom filters, variant lists) are let go before the
    # pairs become edges by token and kept and fresh pairs are put in order (the stage's peak otherwise)
    population = frame.select("record_token", "row_hash")
    del frame
    nodes = nodes.select(AFTER_SCORING)
    gc.collect()
    edges = _in_token_order(parts)
    del parts
    timings["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prior_registry = Registry.load(previous) if previous is not None else Registry.empty()
    people = assign_people(nodes, edges, config.threshold, prior_registry, run_id, since)
    del prior_registry, since
    registry, cluster_stats = people.registry, people.stats
    timings["people"] = time.perf_counter() - t0
    if registry.records.height != nodes.height:
        raise DataQualityError(f"the registry holds {registry.records.height} records for {nodes.height} nodes")
    t0 = time.perf_counter()
    meta = {"linkage_key_id": key_id, "model_sha256": model_sha}
    # each registry row's node, found by sorting numbers: no join of ten million tokens for the person map's source,
    # and the report counts people in the nodes' order on the IDs' numbers
    rows = rows_in(nodes["record_token"], registry.records["record_token"])
    if rows is None:
        person_map = registry.records.join(nodes.select("record_token", "source"), on="record_token",
                                           maintain_order="left")
        reported = person_map
    else:
        # gathered as categories: gathering ten million strings took 4.1 s, their codes 0.9 s
        source = nodes["source"].cast(pl.Categorical).gather(rows).cast(pl.String)
        person_map = registry.records.with_columns(source)
        keys = person_keys(registry.records["person_id"])
        by_node = keys.clear(nodes.height).scatter(rows, keys)
        reported = nodes.select("record_token", "source", "age_band", "source_kind").with_columns(by_node)
    population = pl.concat([population, people.components], how="horizontal")
    population_meta = meta | {"row_hash_format": ROW_HASH_FORMAT, "clustering": clustering_made(config.threshold)}
    write_parquet_files([(edges, out_folder / "edges.parquet", meta),
                         (population, out_folder / "population.parquet", population_meta),
                         (person_map, out_folder / "person_map.parquet", meta), *registry.files(out_folder)])
    del person_map
    model_document = _read_model(model_path)
    write_json(model_document, out_folder / "model.json")
    timings["write"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = write_report(out_folder, nodes=nodes, edges=edges, person_map=reported, model_document=model_document,
                          threshold=config.threshold, cluster_stats=asdict(cluster_stats), comparisons=comparisons,
                          run_id=run_id)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    person_count = report["counts"]["people"]
    log.info("link: %d records (%d scored afresh), %d edges, %d people", nodes.height, changed, edges.height,
             person_count)
    return LinkResult(nodes.height, edges.height, person_count, model_path, trained, key_id, cluster_stats, timings,
                      records_rescored=changed, records_with_people_carried=people.carried)


#: How ``with_row_hash`` hashes, kept in ``population.parquet``: hashes made another way are not compared.
ROW_HASH_FORMAT = "list-columns-hashed-first/1"


def with_row_hash(frame: pl.DataFrame) -> pl.DataFrame:
    """Add a hash of every match feature, so a record whose features changed since the last run is noticed.

    List columns (Bloom filters, variant tokens) are hashed one by one, side by side, and their hashes hashed with
    the other features: hashing the rows with the lists in them took twice as long (4.9 s against 2.1 s at 10M)."""
    features = [c for c in frame.columns if c != "record_token"]
    parts = frame.select(pl.col(c).hash(seed=0) if isinstance(frame.schema[c], pl.List) else pl.col(c)
                         for c in features)
    # cut like the frame: a frame that once held a column in other pieces is copied whole into one piece by the
    # next select, even after that column is dropped (6.7 GB at 10M, when node ids were added for scoring)
    return frame.with_columns(cut_like(parts.hash_rows(seed=0).alias("row_hash"), frame))


def _previous_scores(previous: Path | None, model_sha: str, threshold: float) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The last run's population and scored pairs, when they were made with this model; the population's
    components (``link.carry``) only where they were made as tonight's would be."""
    if previous is None or not (previous / "population.parquet").is_file():
        return None
    if read_parquet_metadata(previous / "edges.parquet").get("model_sha256") != model_sha:
        log.info("link: the model changed since the last run; scoring everything")
        return None
    made = read_parquet_metadata(previous / "population.parquet")
    if made.get("row_hash_format") != ROW_HASH_FORMAT:
        log.info("link: the last run's records were fingerprinted another way; scoring everything")
        return None
    population = pl.read_parquet(previous / "population.parquet")
    if made.get("clustering") != clustering_made(threshold):
        population = population.select("record_token", "row_hash")
    return population, pl.read_parquet(previous / "edges.parquet")


def _score(frame: pl.DataFrame, settings: dict[str, Any], rules: tuple[model.Block, ...], config: LinkageConfig,
           comparisons: int, baseline: tuple[pl.DataFrame, pl.DataFrame] | None,
           ) -> tuple[list[pl.DataFrame | NodePairs], Since | None]:
    """Scored pairs of ``frame`` (at p >= 0.5), in parts for ``_in_token_order`` (edges, or pairs by node id on
    DuckDB), and with ``baseline`` what changed since (for ``carry.assign_people``). ``comparisons`` is what the
    rules were counted to compare (before de-duplication).

    With ``baseline`` (the last run's population and edges, made with this model), last run's scores are kept among
    records unchanged since, and only pairs touching a new or changed record are scored.
    """
    if baseline is None:
        changed, kept = None, None
    else:
        population, old_edges = baseline
        previous_row, gone = _changes(frame.select("record_token", "row_hash"), population)
        changed = pl.Series(previous_row < 0)
        # a kept pair has neither end gone: a filter by the few gone tokens, not joins with the millions unchanged
        gone_tokens = gone.implode()
        lost = old_edges.select(pl.col("record_token_l").is_in(gone_tokens) | pl.col("record_token_r").is_in(gone_tokens)
                                ).to_series()
        kept = old_edges.filter(~lost)
        lost_ends = old_edges.filter(lost & (old_edges["match_probability"] >= config.threshold))["record_token_l"]
        components = population.select(COMPONENT, *TALLIES) if COMPONENT in population.columns else None
        lost_components = (population.filter(pl.col("record_token").is_in(lost_ends.implode()))[COMPONENT]
                           if components is not None else pl.Series(COMPONENT, [], dtype=pl.UInt64))
        del baseline, population, old_edges, lost, lost_ends, gone_tokens  # (2.6 GB of last run's edges at 10M)
        gc.collect()
        since = Since(previous_row, changed.to_numpy().copy(), lost_components, gone, components)
        if not changed.any():
            return [kept], since
    scoring = frame.drop("row_hash")
    if config.engine == "spark":
        fresh: pl.DataFrame | NodePairs = _score_with_splink_blocking(scoring, settings, config, changed)
    else:
        if changed is not None:
            scoring = scoring.with_columns(cut_like(changed.alias("changed"), scoring))
        scoring = with_node_ids(scoring)
        db_api, table = _open_backend(scoring, config)
        fresh = PairScorer(db_api, table, scoring, settings).score(
            rules, touching=None if changed is None else "changed", comparisons=comparisons)
        db_api.duckdb_con.close()  # its tables and buffers are freed before the edges are put together
        del db_api, table, scoring
    if kept is None:
        return [fresh], None
    since.touched[_strong_rows(fresh, frame["record_token"], config.threshold)] = True
    return [kept, fresh], since


def _strong_rows(fresh: pl.DataFrame | NodePairs, tokens: pl.Series, threshold: float) -> np.ndarray:
    """The rows of ``tokens`` at an end of a freshly scored pair at or above ``threshold``."""
    if isinstance(fresh, NodePairs):
        strong = fresh.scored.filter(pl.col("match_probability") >= threshold)
        return np.concatenate([strong[f"{NODE_ID}_l"].to_numpy(), strong[f"{NODE_ID}_r"].to_numpy()]).astype(np.int64)
    strong = fresh.filter(pl.col("match_probability") >= threshold)
    ends = pl.concat([strong["record_token_l"], strong["record_token_r"]]).implode()
    return np.flatnonzero(tokens.is_in(ends).to_numpy())


def _changes(current: pl.DataFrame, previous: pl.DataFrame) -> tuple[np.ndarray, pl.Series]:
    """Each of ``current``'s records' row in ``previous`` (both ``record_token``, ``row_hash``) where it is unchanged
    since, -1 where it is new or changed; and the tokens of ``previous`` that are gone or changed (the ends of the
    pairs that no longer hold).

    A record is unchanged where both frames hold its token with the same row hash. The frames are joined on the
    64-bit hash alone and the tokens compared after (half the time of joining on both at ten million records);
    records sharing a hash (identical features) just meet more candidates.
    """
    pairs = current.select("row_hash", pl.col("record_token").alias("_token")).with_row_index("_row").join(
        previous.select("row_hash", "record_token").with_row_index("_previous_row"), on="row_hash", how="inner"
    ).filter(pl.col("_token") == pl.col("record_token"))
    previous_row = np.full(current.height, -1, dtype=np.int64)
    previous_row[pairs["_row"].to_numpy()] = pairs["_previous_row"].to_numpy()
    gone = np.ones(previous.height, dtype=bool)
    gone[pairs["_previous_row"].to_numpy()] = False
    return previous_row, previous["record_token"].filter(pl.Series(gone))


def _in_token_order(parts: list[pl.DataFrame | NodePairs]) -> pl.DataFrame:
    """The pairs ``_score`` returned as one table of edges: a single part as it is, kept and fresh pairs sorted by
    token."""
    edges = [part.edges() if isinstance(part, NodePairs) else part for part in parts]
    if len(edges) == 1:
        return edges[0]
    columns = edges[0].columns
    return pl.concat([part.select(columns) for part in edges], how="vertical_relaxed",
                     rechunk=False).sort("record_token_l", "record_token_r")


def _score_with_splink_blocking(frame: pl.DataFrame, settings: dict[str, Any], config: LinkageConfig,
                                changed: pl.Series | None) -> pl.DataFrame:
    """Scored pairs with Splink generating the candidates (the Spark backend): everything, or with ``changed`` the
    changed records within themselves and against the unchanged (term-frequency tables of the whole population)."""
    db_api, table = _open_backend(frame, config)
    linker = _linker(table, settings)
    if changed is None:
        return _tidy_edges(_as_polars(linker.inference.predict(threshold_match_probability=0.5, warning_mode="never")))
    for column in model.TF_COLUMNS:
        linker.table_management.compute_tf_table(column)
    changed_sdf = db_api.register(frame.filter(changed).to_arrow())
    scored = [linker.inference.predict_within(changed_sdf, threshold_match_probability=0.5, warning_mode="never")]
    if not changed.all():
        unchanged_sdf = db_api.register(frame.filter(~changed).to_arrow())
        scored.append(linker.inference.predict_between(changed_sdf, unchanged_sdf, threshold_match_probability=0.5,
                                                       warning_mode="never"))
    return pl.concat([_tidy_edges(_as_polars(sdf)) for sdf in scored], how="diagonal_relaxed")


def _as_polars(sdf: Any) -> pl.DataFrame:
    frame = pl.from_arrow(sdf.as_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def _tidy_edges(edges: pl.DataFrame) -> pl.DataFrame:
    """Keep the pair (smaller token on the left), its score and the match weight of each comparison."""
    keep = ["record_token_l", "record_token_r", "match_weight", "match_probability"]
    keep += [c for c in edges.columns if c.startswith("mw_")]
    low = pl.min_horizontal("record_token_l", "record_token_r")
    high = pl.max_horizontal("record_token_l", "record_token_r")
    tidy = edges.select(keep).with_columns(low.alias("record_token_l"), high.alias("record_token_r"))
    return tidy.sort("record_token_l", "record_token_r")


def _write_model(splink_settings: dict[str, Any], path: Path, nodes: pl.DataFrame, key_id: str, config_digest: str,
                 training: dict[str, Any]) -> None:
    import splink

    document = {
        "format": MODEL_FORMAT,
        "training": {
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "records": nodes.height,
            "records_per_source": dict(sorted(nodes.group_by("source").len().iter_rows())),
            "carelink_version": __version__,
            "splink_version": splink.__version__,
            "linkage_key_id": key_id,
            "config_sha256": config_digest,
            **training,
        },
        "splink": splink_settings,
    }
    write_json(document, path)


def _read_model(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"model file cannot be read: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise InputFileError(path, f"not a carelink model (expected format {MODEL_FORMAT})")
    return document


