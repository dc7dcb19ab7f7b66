"""Files and folders that a kill (SIGKILL included) leaves whole or as they were, never torn.

A run's markers depend on it: ``sft/config.json`` says A[0] is on disk, a stage's ``final.json`` that the stage
finished, ``config.yaml`` what a ``--resume`` must match. Each is written beside its place, flushed to the disk, then
renamed into it (a rename is atomic, and durable once its folder is flushed too).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's data, or a folder's entries (a rename is durable once its folder is flushed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def closest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` if it exists, else the nearest of its parents that does (where a folder for it would be made)."""
    path = Path(path)
    return next(p for p in (path, *path.parents) if p.exists())


def write_whole(path: str | os.PathLike[str], text: str | Iterable[str]) -> Path:
    """Write ``text`` (a string, or its pieces in order) to ``path``: to a temporary file in the same folder,
    flushed, then renamed over ``path``. Readers see the old file or the new one, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.writelines([text] if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


@contextmanager
def written_whole(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A folder written whole or not at all: the caller writes into the folder this yields (``.partial-<name>``
    beside ``path``); then every file is flushed and the folder renamed to ``path`` (replacing one that is there).
    A kill during the write leaves ``path`` as it was (or absent) and the partial folder aside, which the next write
    clears. (A model folder's ``config.json`` says A[0] is on disk: a warm start that did not finish is redone, not
    loaded half written.)"""
    path = Path(path)
    if path.name in ("", ".", ".."):  # a folder that holds its writer (or the run) is never renamed away
        raise ValueError(f"{path}: not a folder of its own to write whole")
    partial, replaced = path.with_name(f".partial-{path.name}"), path.with_name(f".replaced-{path.name}")
    for leftover in (partial, replaced):
        if leftover.exists():  # from a write that was killed
            shutil.rmtree(leftover)
    partial.mkdir(parents=True)
    yield partial
    for file in partial.rglob("*"):
        if file.is_file():
            fsync_path(file)
    fsync_path(partial)
    if path.exists():
        os.replace(path, replaced)  # a folder cannot be renamed over a folder that holds files
    os.replace(partial, path)
    fsync_path(path.parent)
    shutil.rmtree(replaced, ignore_errors=True)
