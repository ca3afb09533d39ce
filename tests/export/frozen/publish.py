"""Publishing an export folder whole: build it in a temporary sibling folder, then rename it into place.

A failure while building leaves the previous export (if any) untouched and no half-written folder behind.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from carelink.tables import file_sha256

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield ``<target>.tmp-<pid>`` to write into; on success it replaces ``target``, on failure it is removed.

    The swap is two renames (old folder aside, new folder in), so a reader never sees a mixture of two exports;
    between them ``target`` is briefly absent. The old folder is deleted afterwards.
    """
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        _swap(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing an existing folder; restore the old one if that fails."""
    retired = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(target, retired)
    try:
        os.replace(staging, target)
    except OSError:
        if retired.exists():
            os.replace(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    log.debug("published %s", target)


def folder_files(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` by its POSIX path relative to it, the manifest excepted."""
    return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*"))
            if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST}


def file_entries(folder: Path) -> dict[str, dict[str, int | str]]:
    """The manifest's ``files`` section: checksum and size of every file in the folder."""
    return {name: {"sha256": file_sha256(path), "bytes": path.stat().st_size} for name, path in folder_files(folder).items()}
