"""The workspace: run folders, the ``current`` pointer, persistent state, the lock and the keys.

Layout::

    WORKSPACE/
      runs/<run_id>/ingest/<source>/…           standardised, quarantine, validation (partner side)
      runs/<run_id>/pseudonymise/<source>/…     nodes, activity, reid_map, report
      runs/<run_id>/link/…                      edges, person_map, model.json
      runs/<run_id>/export/<recipient>/<purpose>/…
      runs/<run_id>/manifest.json
      state/                                    registry, history, model.json, recipient_ids/ (survive runs)
      keys/                                     keys carelink created when the config names none
      current                                   run id of the last fully successful run
      latest                                    run id of the most recently started run
      .lock                                     held while a run writes

A run becomes ``current`` only after every stage and check passed (write–audit–publish), so a failed or killed
run never replaces the last good output.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from carelink.config import PipelineConfig
from carelink.errors import ConfigError, KeyFileError, WorkspaceLockedError
from carelink.keys import Key, load_key_file, new_key_file, resolve_passphrase
from carelink.tables import write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One run's folder."""

    run_id: str
    folder: Path

    def stage(self, name: str) -> Path:
        return self.folder / name

    @property
    def ingest(self) -> Path:
        return self.folder / "ingest"

    @property
    def pseudonymise(self) -> Path:
        return self.folder / "pseudonymise"

    @property
    def link(self) -> Path:
        return self.folder / "link"

    @property
    def export(self) -> Path:
        return self.folder / "export"


class Workspace:
    """A folder holding runs, state and keys."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.runs = self.root / "runs"
        self.state = self.root / "state"
        self.keys = self.root / "keys"

    def new_run(self) -> Run:
        """Create a fresh run folder and mark it as the latest."""
        now = dt.datetime.now(dt.UTC)
        run_id = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
        folder = self.runs / run_id
        folder.mkdir(parents=True, exist_ok=False)
        write_text(run_id + "\n", self.root / "latest")
        return Run(run_id, folder)

    def _pointer(self, name: str) -> Run | None:
        path = self.root / name
        if not path.is_file():
            return None
        run_id = path.read_text(encoding="utf-8").strip()
        folder = self.runs / run_id
        return Run(run_id, folder) if folder.is_dir() else None

    def latest_run(self) -> Run:
        """The most recently started run (what single-stage commands continue)."""
        run = self._pointer("latest")
        if run is None:
            raise ConfigError(self.root, None, "no run in this workspace yet: run `carelink ingest` or `carelink run` first")
        return run

    def current_run(self) -> Run | None:
        """The last run that fully succeeded, if any."""
        return self._pointer("current")

    def publish(self, run: Run) -> None:
        """Make ``run`` current (an atomic rename of the pointer file)."""
        write_text(run.run_id + "\n", self.root / "current")

    def runs_newest_first(self) -> list[Run]:
        if not self.runs.is_dir():
            return []
        return [Run(p.name, p) for p in sorted(self.runs.iterdir(), reverse=True) if p.is_dir()]

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace lock; a lock left by a process that no longer runs is taken over."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = _read_lock(path)
                if other and other.get("host") == holder["host"] and not _alive(int(other.get("pid", 0))):
                    log.warning("removing stale lock of process %s (started %s)", other.get("pid"), other.get("since"))
                    path.unlink(missing_ok=True)
                    continue
                raise WorkspaceLockedError(
                    f"{self.root}: workspace is locked by process {other.get('pid')} on {other.get('host')} "
                    f"since {other.get('since')}; if that process is gone, delete {path}"
                ) from None
            with os.fdopen(fd, "w") as handle:
                json.dump(holder, handle)
            break
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def resolve_key(self, config: PipelineConfig, kind: str) -> Key:
        """Load the ``linkage`` or ``export`` key the config names, or create it in the workspace (and say so).

        Each stage asks only for the key it needs: partners the linkage key, the hub the export key.
        """
        configured = config.keys.linkage if kind == "linkage" else config.keys.export
        return self._key(configured, kind, self._passphrase(config))

    def _passphrase(self, config: PipelineConfig) -> str:
        keys = config.keys
        if keys.passphrase_file or os.environ.get(keys.passphrase_env):
            return resolve_passphrase(keys.passphrase_env, keys.passphrase_file)
        if keys.linkage or keys.export:
            raise KeyFileError(f"{config.path}: the config names key files; set {keys.passphrase_env} "
                               "or keys.passphrase_file to open them")
        path = self.keys / "passphrase"
        if not path.is_file():
            self.keys.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
            log.warning("created a passphrase for workspace keys in %s (set %s and name key files in the "
                        "config for production)", path, keys.passphrase_env)
        return resolve_passphrase(keys.passphrase_env, path)

    def _key(self, configured: Path | None, kind: str, passphrase: str) -> Key:
        if configured is not None:
            return load_key_file(configured, passphrase, expected_kind=kind)
        path = self.keys / f"{kind}.key"
        if path.is_file():
            return load_key_file(path, passphrase, expected_kind=kind)
        self.keys.mkdir(parents=True, exist_ok=True)
        key = new_key_file(path, kind, passphrase)
        log.warning("the config names no %s key: created %s (key ID %s)", kind, path, key.key_id)
        return key


def _read_lock(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
