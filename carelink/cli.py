"""The carelink command line: parses arguments, calls one library function, maps errors to exit codes."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from carelink import __version__
from carelink.errors import EXIT_USAGE, CarelinkError, ConfigError

log = logging.getLogger("carelink")


def _configure_logging(verbose: bool, json_logs: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("splink", "py4j"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                           "message": record.getMessage()})


def handle_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ``CarelinkError`` into a one-line message and its exit code (a traceback only with --debug)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return function(*args, **kwargs)
        except CarelinkError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)

    return wrapper


@click.group()
@click.version_option(__version__, prog_name="carelink")
@click.option("--verbose", "-v", is_flag=True, help="Log each step (INFO level).")
@click.option("--json-logs", is_flag=True, help="Log as JSON lines, for schedulers.")
@click.option("--debug", is_flag=True, help="Show a traceback on error.")
def main(verbose: bool, json_logs: bool, debug: bool) -> None:
    """carelink: link partner extracts into one pseudonymised, consent-aware dataset.

    Example:

        carelink synth --people 5000 --out demo && carelink run demo/pipeline.yaml --workspace ws
    """
    _configure_logging(verbose, json_logs)


config_argument = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
workspace_option = click.option("--workspace", "-w", required=True, type=click.Path(file_okay=False, path_type=Path),
                                help="Workspace folder (runs, state, keys).")


@main.command()
@click.option("--people", default=5000, show_default=True, type=click.IntRange(1, 20_000_000), help="People to generate.")
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed (same seed, same files).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--nights", type=click.IntRange(1, 366), help="Write a sequence of nightly full extracts (night_01/ …).")
@handle_errors
def synth(people: int, seed: int, out: Path, nights: int | None) -> None:
    """Generate a synthetic partnership: five extracts, activity, truth.csv and pipeline.yaml.

    With --nights N, N nightly deliveries of the same partnership (new, updated and deleted records each night),
    each a complete folder with its own truth.csv, pipeline.yaml and changes.json.

    Example:

        carelink synth --people 10000 --seed 7 --out demo
        carelink synth --people 10000 --nights 5 --out nights
    """
    from carelink.synth import generate_nights, generate_partnership

    if nights:
        for night in generate_nights(out, people=people, seed=seed, nights=nights):
            changes = night.changes.get("totals", {}) if night.changes else {}
            click.echo(f"night {night.night:>2}: {night.records:,} records  "
                       + "  ".join(f"{k} {v:,}" for k, v in changes.items() if k != "records"))
        click.echo(f"next: carelink run {out / 'night_01' / 'pipeline.yaml'} --workspace WORKSPACE, then night_02 …")
        return
    summary = generate_partnership(out, people=people, seed=seed)
    total = sum(summary.records_per_source.values())
    click.echo(f"wrote {total:,} records of {summary.people:,} people to {out}")
    for source, count in summary.records_per_source.items():
        click.echo(f"  {source:<12} {count:>9,}")
    click.echo(f"next: carelink run {out / 'pipeline.yaml'} --workspace WORKSPACE")


@main.command()
@config_argument
@workspace_option
@click.option("--retrain", is_flag=True, help="Train a new model even when one exists.")
@click.option("--full", is_flag=True, help="Standardise, pseudonymise and rescore every record, not only those new or changed since the last run.")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), help="Override linkage.engine from the config.")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), help="Also score the result against a truth file.")
@handle_errors
def run(config: Path, workspace: Path, retrain: bool, full: bool, engine: str | None, truth: Path | None) -> None:
    """Run every stage (ingest, pseudonymise, link, export) in a new run; publish it only if all pass.

    Example:

        carelink run demo/pipeline.yaml --workspace ws --truth demo/truth.csv
    """
    from carelink.config import load_config
    from carelink.link.evaluate import evaluate_run
    from carelink.pipeline import run_all
    from carelink.workspace import Workspace

    settings = load_config(config)
    if engine:
        settings = dataclasses.replace(settings, linkage=dataclasses.replace(settings.linkage, engine=engine))
    report = run_all(settings, Workspace(workspace), retrain=retrain, full=full)
    scores = evaluate_run(report.run.folder, truth) if truth else None
    click.echo(_summary(report, scores))


def _stage_command(stage: str) -> Callable[..., None]:
    @config_argument
    @workspace_option
    @handle_errors
    def command(config: Path, workspace: Path, **options: Any) -> None:
        from carelink.config import load_config
        from carelink.pipeline import RunReport, run_stage
        from carelink.workspace import Workspace

        settings = load_config(config)  # before a run folder exists, so a bad config leaves nothing behind
        space = Workspace(workspace)
        with space.lock():
            run_ = space.new_run() if stage == "ingest" else space.latest_run()
            report = RunReport(run_)
            run_stage(stage, settings, space, run_, report, retrain=options.get("retrain", False),
                      full=options.get("full", False))
            if stage == "export":
                space.publish(run_)
        detail = ""
        if report.link is not None:
            detail = f"; {report.link.people:,} people, model {'trained' if report.link.trained else 'loaded'}"
        click.echo(f"{stage}: done in {report.timings[stage]:.1f} s{detail} (run {run_.run_id})")

    command.__doc__ = f"""Run the {stage} stage only ({'starts a new run' if stage == 'ingest' else 'continues the latest run'}).

    Example:

        carelink {stage} demo/pipeline.yaml --workspace ws
    """
    return command


main.command(name="ingest")(
    click.option("--full", is_flag=True, help="Standardise every row, carrying none from the current run.")(
        _stage_command("ingest")))
main.command(name="export")(_stage_command("export"))
main.command(name="pseudonymise")(
    click.option("--full", is_flag=True, help="Pseudonymise every record, carrying none from the current run.")(
        _stage_command("pseudonymise")))
main.command(name="link")(
    click.option("--full", is_flag=True, help="Rescore every record, not only new or changed ones.")(
        click.option("--retrain", is_flag=True, help="Train a new model.")(_stage_command("link"))))


@main.command()
@config_argument
@workspace_option
@handle_errors
def train(config: Path, workspace: Path) -> None:
    """Train a new linkage model on the latest run's pseudonymised nodes; later links load it.

    Example:

        carelink train demo/pipeline.yaml --workspace ws
    """
    from carelink.config import load_config
    from carelink.link.stage import train_model
    from carelink.workspace import Workspace

    settings = load_config(config)
    space = Workspace(workspace)
    with space.lock():
        run_ = space.latest_run()
        model_path = settings.linkage.model or space.state / "model.json"
        folders = [run_.pseudonymise / source.name for source in settings.sources]
        trained = train_model(folders, model_path, settings.linkage, config_digest=settings.digest())
    prior = trained["probability_two_random_records_match"]
    click.echo(f"trained on run {run_.run_id}: model written to {model_path} (prior match probability {prior:.3g})")


@main.command()
@workspace_option
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), help="source,record_id,entity_id[,cases] CSV.")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path),
              help="Clerical labels: record_l,record_r,match CSV (records as source:record_id or tokens).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def evaluate(workspace: Path, truth: Path | None, labels: Path | None, as_json: bool) -> None:
    """Score the workspace's current person assignment against a truth file or clerical labels.

    With a truth file: pairwise and cluster-level precision, recall and F1, the same across thresholds, and errors
    broken down by the truth's ``cases`` column. With labels: precision and recall on the labelled pairs.

    Example:

        carelink evaluate --workspace ws --truth demo/truth.csv --json
        carelink evaluate --workspace ws --labels reviewed_pairs.csv
    """
    from carelink.link.evaluate import evaluate_labels, evaluate_run
    from carelink.workspace import Workspace

    if (truth is None) == (labels is None):
        raise ConfigError(None, None, "give either --truth or --labels")
    space = Workspace(workspace)
    current = space.current_run() or space.latest_run()
    scores = evaluate_run(current.folder, truth) if truth else evaluate_labels(current.folder, labels)
    if as_json:
        click.echo(json.dumps(scores, indent=2, sort_keys=True))
        return
    if labels:
        click.echo(f"on {scores['pairs_scored']:,} labelled pairs: precision {scores['precision']:.4f}  recall "
                   f"{scores['recall']:.4f}  F1 {scores['f1']:.4f}  ({scores['false_links']} false links, "
                   f"{scores['missed_links']} missed)")
        return
    click.echo(_scores_line(scores))
    clusters = scores["cluster_level"]
    click.echo(f"cluster level: precision {clusters['precision']:.4f}  recall {clusters['recall']:.4f}  "
               f"F1 {clusters['f1']:.4f}")
    click.echo("across thresholds: " + "  ".join(f"{row['threshold']}: F1 {row['f1']:.4f}"
                                                 for row in scores["across_thresholds"]))
    for label, precision in (scores.get("precision_among") or {}).items():
        if precision is not None:
            click.echo(f"pairwise precision among people with a {label} record: {precision:.4f}")
    if "errors_by_case" in scores:
        by_case = scores["errors_by_case"]
        click.echo("errors by case (false links / missed links):" + ("" if by_case else " none"))
        for label, counts in by_case.items():
            click.echo(f"  {label:<20} {counts['false_links']:>6,} {counts['missed_links']:>6,}")


@main.command()
@click.argument("records", nargs=-1)
@workspace_option
@click.option("--person", help="Explain a person instead: its records and the links holding them together.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def explain(records: tuple[str, ...], workspace: Path, person: str | None, as_json: bool) -> None:
    """Explain why two records link (or not): agreement and match weight per feature, and the total.

    Records are record tokens, or SOURCE:RECORD_ID where the partner's re-identification map is in the workspace.

    Example:

        carelink explain gp:G0001234 acute:RX0005678 --workspace ws
        carelink explain --person P000000042 --workspace ws
    """
    from carelink.link.explain import explain_pair, explain_person
    from carelink.workspace import Workspace

    space = Workspace(workspace)
    run_ = space.current_run() or space.latest_run()
    if person:
        result = explain_person(run_.folder, person)
    elif len(records) == 2:
        result = explain_pair(run_.folder, records[0], records[1])
    else:
        raise ConfigError(None, None, "name two records, or a person with --person")
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    elif person:
        click.echo(f"{person}: {len(result['records'])} records")
        for record in result["records"]:
            click.echo(f"  {record['source']:<12} {record['record_token']}")
        for link in result["links"]:
            click.echo(f"  {link['record_token_l'][:12]}… — {link['record_token_r'][:12]}…  weight "
                       f"{link['match_weight']:6.2f}  probability {link['match_probability']:.4f}")
    else:
        click.echo(f"{'prior':<14} {'':<32} {result['prior_weight']:7.2f}")
        for part in result["comparisons"]:
            tf = part["term_frequency_adjustment"]
            extra = f"  (term frequency {tf:+.2f})" if tf else ""
            click.echo(f"{part['comparison']:<14} {part['level']:<32} {part['match_weight'] or 0:7.2f}{extra}")
        click.echo(f"{'total':<14} {'':<32} {result['match_weight']:7.2f}  → match probability "
                   f"{result['match_probability']:.4f}")


@main.command()
@workspace_option
@click.option("--check", is_flag=True, help="Exit 1 when a leak scan failed or risk is over a threshold.")
@click.option("--max-reidentified", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Largest share of records a worst-case frequency attack may re-identify.")
@click.option("--max-below-k", default=0.95, show_default=True, type=click.FloatRange(0, 1),
              help="Largest share of records in quasi-identifier classes smaller than k.")
@handle_errors
def report(workspace: Path, check: bool, max_reidentified: float, max_below_k: float) -> None:
    """Summarise the latest run's pseudonymisation reports; with --check, gate a nightly job on them.

    Example:

        carelink report --workspace ws --check --max-reidentified 0.3
    """
    from carelink.errors import DataQualityError
    from carelink.pseudonymise.report import check_reports
    from carelink.tables import read_json
    from carelink.workspace import Workspace

    run_ = Workspace(workspace).latest_run()
    for path in sorted(run_.pseudonymise.glob("*/pseudonymisation_report.json")):
        data = read_json(path)
        risk = data["risk"]
        click.echo(f"{data['source']:<12} leak scan {'passed' if data['leak_scan']['passed'] else 'FAILED'}  "
                   f"frequency attack {risk['worst_frequency_attack_share_records']:.1%} of records  "
                   f"below k {risk['k_anonymity']['share_below_k']:.1%}  ({path.with_suffix('.html')})")
    if check:
        problems = check_reports(run_.folder, max_reidentified_share=max_reidentified, max_share_below_k=max_below_k)
        if problems:
            raise DataQualityError("; ".join(problems))
        click.echo("check passed")


@main.command()
@click.argument("person_id")
@workspace_option
@handle_errors
def history(person_id: str, workspace: Path) -> None:
    """Show what happened to a person ID: created, merged into another, split from another.

    Example:

        carelink history P000000042 --workspace ws
    """
    from carelink.link.registry import Registry, person_history
    from carelink.workspace import Workspace

    space = Workspace(workspace)
    current = space.current_run()
    if current is None:
        raise ConfigError(None, None, f"{workspace} has no successful run yet")
    registry = Registry.load(current.link)
    events = person_history(registry, person_id)
    records = registry.record_count(person_id)
    if events.height == 0 and records == 0:
        raise ConfigError(None, None, f"{person_id} is not in the registry of {workspace}")
    for row in events.iter_rows(named=True):
        related = f" {row['related_person_id']}" if row["related_person_id"] else ""
        click.echo(f"{row['run_id']}  {row['event']:<12} {row['person_id']}{related}  ({row['records']} records)")
    click.echo(f"{person_id} now holds {records} records")


@main.command()
@click.argument("export_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@handle_errors
def verify(export_dir: Path) -> None:
    """Check an export folder's files against its manifest checksums and schemas.

    Example:

        carelink verify ws/runs/RUN/export/cct_analytics/planning
    """
    from carelink.errors import IntegrityError
    from carelink.export.stage import verify_export

    problems = verify_export(export_dir)
    if problems:
        raise IntegrityError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    click.echo(f"{export_dir}: verified")


@main.command()
@workspace_option
@click.option("--last", default=10, show_default=True, type=click.IntRange(1, 1000), help="How many runs to show.")
@handle_errors
def status(workspace: Path, last: int) -> None:
    """Show the last runs of a workspace and which one is current.

    Example:

        carelink status --workspace ws
    """
    from carelink.tables import read_json
    from carelink.workspace import Workspace

    space = Workspace(workspace)
    current = space.current_run()
    for run_ in space.runs_newest_first()[:last]:
        manifest_path = run_.folder / "manifest.json"
        manifest = read_json(manifest_path) if manifest_path.is_file() else {}
        marker = "*" if current and current.run_id == run_.run_id else " "
        people = manifest.get("counts", {}).get("people")
        total = sum(manifest.get("timings_seconds", {}).values())
        click.echo(f"{marker} {run_.run_id}  {manifest.get('status', 'incomplete'):<10} people={people}  {total:.1f} s")


@main.group()
def keys() -> None:
    """Create, show and rotate key files (encrypted at rest; passphrase from CARELINK_PASSPHRASE or a file)."""


passphrase_file_option = click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
                                      help="File holding the passphrase (default: $CARELINK_PASSPHRASE).")


@main.command()
@click.argument("sealed_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The linkage key file the values were sealed with.")
@passphrase_file_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Parquet file to write.")
@handle_errors
def reidentify(sealed_file: Path, key_file: Path, passphrase_file: Path | None, out: Path) -> None:
    """Open the sealed (reversible) columns of a file — e.g. a direct-care record_map — with the linkage key.

    Only fields a source's config marks ``reversible`` are sealed; everything else stays one-way. Run this at a
    partner that holds the linkage key, for direct care; the output holds identifiers and must stay there.

    Example:

        carelink reidentify exports/cct_direct_care/direct_care/record_map.parquet --key keys/linkage.key --out ids.parquet
    """
    from carelink.keys import load_key_file, resolve_passphrase
    from carelink.pseudonymise.reversible import reidentify_file

    key = load_key_file(key_file, resolve_passphrase(passphrase_file=passphrase_file), expected_kind="linkage")
    opened = reidentify_file(sealed_file, key, out)
    click.echo(f"opened {', '.join(f'{n:,} {c}' for c, n in opened.items())} with key {key.key_id}; wrote {out}")


@keys.command("new")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["linkage", "export"]), default="linkage", show_default=True)
@passphrase_file_option
@handle_errors
def keys_new(path: Path, kind: str, passphrase_file: Path | None) -> None:
    """Create a new key file (mode 0600).

    Example:

        CARELINK_PASSPHRASE=... carelink keys new keys/linkage.key --kind linkage
    """
    from carelink.keys import new_key_file, resolve_passphrase

    key = new_key_file(path, kind, resolve_passphrase(passphrase_file=passphrase_file))
    click.echo(f"created {kind} key {key.key_id} in {path}")


@keys.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@handle_errors
def keys_show(path: Path) -> None:
    """Show a key file's kind, key ID and creation date (no passphrase needed; never the key).

    Example:

        carelink keys show keys/linkage.key
    """
    from carelink.keys import describe_key_file

    for name, value in describe_key_file(path).items():
        click.echo(f"{name}: {value}")


@keys.command("rotate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@passphrase_file_option
@handle_errors
def keys_rotate(path: Path, passphrase_file: Path | None) -> None:
    """Replace a key with a new one, keeping the old file as ``<name>.<key id>.retired``.

    Example:

        carelink keys rotate keys/linkage.key
    """
    from carelink.keys import resolve_passphrase, rotate_key_file

    key, retired = rotate_key_file(path, resolve_passphrase(passphrase_file=passphrase_file))
    click.echo(f"new key {key.key_id} in {path}; old key kept in {retired}")


def _scores_line(scores: dict) -> str:
    return (f"pairwise precision {scores['precision']:.4f}  recall {scores['recall']:.4f}  F1 {scores['f1']:.4f}  "
            f"({scores['false_links']:,} false links, {scores['missed_links']:,} missed, "
            f"{scores['records_scored']:,} records scored)")


def _summary(report: Any, scores: dict | None) -> str:
    lines = [f"run {report.run.run_id} succeeded and is now current", "",
             "source          rows in  standardised  quarantined  carried from the last run (ingest / pseudonymise)"]
    carried = {r.source: r.records_carried for r in report.pseudonymise}
    for result in report.ingest:
        r = result.records
        lines.append(f"{result.source:<14} {r.rows_in:>8,}  {r.rows_standardised:>12,}  {r.rows_quarantined:>11,}  "
                     f"{result.records_carried:>11,} / {carried.get(result.source, 0):,}")
    link = report.link
    lines += ["", f"people found: {link.people:,} from {link.records:,} records "
              f"({link.edges:,} scored pairs; model {'trained' if link.trained else 'loaded'}; "
              f"{link.records_rescored:,} records scored afresh, "
              f"{link.records_with_people_carried:,} kept last night's person without clustering)"]
    spread = "  ".join(f"{k} source{'s' if k > 1 else ''}: {v:,}" for k, v in report.people_by_source_count.items())
    lines.append(f"people by number of sources: {spread}")
    for e in report.exports:
        lines.append(f"export {e.recipient}/{e.purpose}: {e.people:,} people ({e.people_withheld:,} withheld), "
                     f"{e.activity_rows:,} activity rows")
    if scores:
        lines += ["", "linkage against truth: " + _scores_line(scores)]
    timings = "  ".join(f"{stage} {seconds:.1f}s" for stage, seconds in report.timings.items())
    lines += ["", f"time: {timings}", f"outputs: {report.run.folder}"]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(standalone_mode=True) or EXIT_USAGE)
