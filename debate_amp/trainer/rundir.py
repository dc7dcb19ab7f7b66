"""The run directory: start, resume or overwrite, and never mix two recipes' output by accident.

- A directory with training output (metrics, transcripts or checkpoints) refuses a new start: ``--resume``
  continues it from its latest whole checkpoint, ``--overwrite`` deletes it and starts again. A directory holding
  only a warm start (``debate-amp sft``) or a run killed before its first update is reused as it is.
- A directory whose ``config.yaml`` differs from the recipe refuses to start without one of the two flags, naming
  the keys that differ.
- ``--resume`` refuses a recipe that changes what is trained: only the keys in :data:`RESUME_MAY_CHANGE` may
  differ from the run's ``config.yaml`` (``trainer.updates`` only upwards).
- Every input is checked before anything in the directory is written: the run's label store must open.
- On resume, what the lost updates (after the checkpoint) left behind is put aside, not deleted: their transcripts
  move to ``transcripts/superseded/``, and ``metrics.jsonl`` keeps the lines up to the checkpoint (the rest go to
  ``metrics.superseded.jsonl``). The label store is kept whole: a human answer is never thrown away.

Every process calls :func:`plan_run_dir` (it only reads); the main process then calls :func:`apply_plan`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from debate_amp.agents.labels import LabelStoreError, check_label_store
from debate_amp.config import Config, ConfigError, config_to_dict, load_config
from debate_amp.durable import closest_existing, write_whole
from debate_amp.trainer import checkpoint


class RunDirError(ValueError):
    """The run directory cannot be used as asked; one line naming the directory and what to do."""


@dataclass(frozen=True)
class RunPlan:
    run_dir: Path
    overwrite: bool = False
    resume_from: Path | None = None  # a whole checkpoint
    resume_update: int = 0
    note: str = ""


# What a run writes; a directory holding none of these is not a run, and --overwrite never deletes it.
RUN_FILES = (
    "config.yaml",
    "metrics.jsonl",
    "labels.sqlite",
    "final.json",
    "sft",
    "checkpoints",
    "transcripts",
    "model",
    "ida",
)


# What any resumed run may change: threads, where it logs and where it lives. None changes what is trained.
_RUN_MAY_CHANGE = (
    "run.torch_threads",
    "run.log_with",  # where the scalars are also sent; metrics.jsonl is the record
    "run.output_dir",  # where the run lives: a run directory copied or moved elsewhere resumes there
    "run.name",
)

# What a resumed run may change in its recipe: how long it runs, how often it saves and evaluates, and the above. Any
# other key changes what is trained (the model, the data, the objective, the schedules' shape), and a run resumed
# with it would be neither the old run nor a new one.
RESUME_MAY_CHANGE = (
    "trainer.updates",  # upwards only
    "trainer.max_minutes",
    "trainer.save_every",
    "trainer.keep_last",
    "trainer.eval_every",
    "trainer.eval_size",
    "trainer.max_bad_updates",
    *_RUN_MAY_CHANGE,
)


def plan_run_dir(cfg: Config, *, resume: bool = False, overwrite: bool = False) -> RunPlan:
    run_dir = _writable(cfg)
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    replay = cfg.human.replay_from
    if replay is not None and not replay.endswith(".jsonl"):
        try:
            check_label_store(replay)
        except LabelStoreError as e:
            raise RunDirError(f"human.replay_from: {e}") from None
    if overwrite:
        _check_deletable(run_dir, Path(cfg.run.output_dir), cfg.human.store)
        return RunPlan(run_dir, overwrite=True, note=f"--overwrite: {run_dir} is started afresh")
    try:
        check_label_store(run_dir / "labels.sqlite")
    except LabelStoreError as e:
        raise RunDirError(
            f"{e}; nothing was written: move it aside (it may hold human answers) and run again"
        ) from None
    root = run_dir / "checkpoints"
    latest = checkpoint.latest_checkpoint(root)
    if resume:
        if latest is None:
            return RunPlan(run_dir, note=f"--resume: no checkpoint in {root}, starting from the beginning")
        update = checkpoint.load_state(latest)["update"]
        changed = _resume_changes(cfg, run_dir / "config.yaml")
        note = f"resuming {run_dir} from update {update}"
        if changed:
            note += f" with {changed}"
        return RunPlan(run_dir, resume_from=latest, resume_update=update, note=note)
    changed = _recipe_changes(cfg, run_dir / "config.yaml")
    if changed:
        try:
            _resume_changes(cfg, run_dir / "config.yaml")
            options = "pass --resume to continue it with this recipe or --overwrite to start again"
        except RunDirError:
            options = "pass --overwrite to start again, or another run.name (a resume may not change these keys)"
        raise RunDirError(f"{run_dir} holds a run of a different recipe ({changed}); {options}")
    if latest is not None or _has_training_output(run_dir):
        where = f"checkpoints up to {latest.name}" if latest is not None else "training output but no checkpoint"
        raise RunDirError(
            f"{run_dir} already holds a run of this recipe ({where}); "
            "pass --resume to continue it or --overwrite to start again"
        )
    return RunPlan(run_dir)


def plan_sft_dir(cfg: Config, *, overwrite: bool = False) -> RunPlan:
    """``debate-amp sft``: a directory that already holds a warm start or training output is refused (its ``sft/``
    is a trained run's KL reference) unless ``overwrite``."""
    run_dir = _writable(cfg)
    if overwrite:
        _check_deletable(run_dir, Path(cfg.run.output_dir), cfg.human.store)
        return RunPlan(run_dir, overwrite=True, note=f"--overwrite: {run_dir} is started afresh")
    a0 = run_dir / cfg.sft.output_subdir / "config.json"
    if a0.is_file() or _has_training_output(run_dir):
        what = "training output" if _has_training_output(run_dir) else f"a warm start ({a0.parent})"
        raise RunDirError(f"{run_dir} already holds {what}; pass --overwrite to start again, or another run.name")
    return RunPlan(run_dir)


# What a resumed IDA run (``debate-amp ida --resume``) may change: how many rounds, the time limit and where it logs.
IDA_RESUME_MAY_CHANGE = ("ida.rounds", "ida.max_minutes", *_RUN_MAY_CHANGE)


def finished_rounds(ida_dir: Path) -> int:
    """The last IDA round whose folder ``round_<r>/`` is whole (written under a temporary name and renamed when
    done; ``round.json`` is its last file), counting up from 1: 0 when none is."""
    r = 0
    while (ida_dir / f"round_{r + 1}" / "round.json").is_file():
        r += 1
    return r


def plan_ida_dir(cfg: Config, *, resume: bool = False, overwrite: bool = False) -> RunPlan:
    """``debate-amp ida``: a directory holding IDA rounds (``ida/``) refuses a new start without ``resume`` (continue
    after the last finished round: ``RunPlan.resume_update``) or ``overwrite``; one holding a ``train`` run, or a
    run of another recipe, refuses too. Only reads."""
    run_dir = _writable(cfg)
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    if overwrite:
        _check_deletable(run_dir, Path(cfg.run.output_dir), cfg.human.store)
        return RunPlan(run_dir, overwrite=True, note=f"--overwrite: {run_dir} is started afresh")
    try:
        check_label_store(run_dir / "labels.sqlite")
    except LabelStoreError as e:
        raise RunDirError(
            f"{e}; nothing was written: move it aside (it may hold human answers) and run again"
        ) from None
    if _has_training_output(run_dir):
        raise RunDirError(
            f"{run_dir} holds a `debate-amp train` run; pass --overwrite to start again, or another run.name"
        )
    ida_dir = run_dir / "ida"
    done = finished_rounds(ida_dir)
    if resume:
        changed = _resume_changes(cfg, run_dir / "config.yaml", IDA_RESUME_MAY_CHANGE, "ida.rounds")
        note = f"resuming {run_dir} after round {done}" if done else f"--resume: no finished round in {ida_dir}"
        return RunPlan(run_dir, resume_update=done, note=note + (f" with {changed}" if changed else ""))
    changed = _recipe_changes(cfg, run_dir / "config.yaml")
    if changed:
        try:
            _resume_changes(cfg, run_dir / "config.yaml", IDA_RESUME_MAY_CHANGE, "ida.rounds")
            options = "pass --resume to continue it with this recipe or --overwrite to start again"
        except RunDirError:
            options = "pass --overwrite to start again, or another run.name (a resume may not change these keys)"
        raise RunDirError(f"{run_dir} holds a run of a different recipe ({changed}); {options}")
    if ida_dir.exists():
        raise RunDirError(
            f"{run_dir} already holds IDA rounds ({done} finished); pass --resume to continue or --overwrite to "
            "start again"
        )
    return RunPlan(run_dir)


def _writable(cfg: Config) -> Path:
    """The run directory, once it is known that it can be written: it, or the closest folder on the way to it."""
    run_dir = cfg.run_dir
    existing = closest_existing(run_dir)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"{run_dir}: cannot write in {existing} (run.output_dir, run.name)")
    return run_dir


def _check_deletable(run_dir: Path, output_dir: Path, human_store: str | None = None) -> None:
    """--overwrite deletes only a run directory: directly inside ``run.output_dir``, holding what a run writes, and
    nothing in it that people gave (:func:`_peoples_work`)."""
    if not run_dir.exists():
        return
    if run_dir.is_symlink() or run_dir.resolve().parent != output_dir.resolve():
        raise RunDirError(f"--overwrite: refusing to delete {run_dir}: it is not a folder directly inside {output_dir}")
    if not run_dir.is_dir() or not any((run_dir / name).exists() for name in RUN_FILES):
        raise RunDirError(
            f"--overwrite: refusing to delete {run_dir}: it does not look like a run directory "
            f"(none of {', '.join(RUN_FILES)})"
        )
    stores = {store.resolve(): store for store in sorted(run_dir.rglob("*.sqlite"))}
    if human_store is not None and Path(human_store).resolve().is_relative_to(run_dir.resolve()):
        stores.setdefault(Path(human_store).resolve(), Path(human_store))  # the recipe's store, whatever its name
    for store in stores.values():
        if work := _peoples_work(store):
            raise RunDirError(
                f"--overwrite: refusing to delete {run_dir}: {store} holds {work}; move the file out of the run "
                f"first (a label store's answers can be exported: debate-amp labels {run_dir} --export FILE)"
            )


MACHINE_HUMANS = ("synthetic", "model", "replay")
"""The label store's ``human`` of answers no person gave (the simulated H, a frozen model, a replay)."""


def _peoples_work(store: Path) -> str | None:
    """What people gave that ``store`` holds, in words (None: nothing): a label store's answers not from a machine
    (:data:`MACHINE_HUMANS`), a judgment store's judgments (``debate-amp serve --judge``, whose default store lies
    beside the transcripts) and first answers. A store that cannot be read may hold either: it is never deleted.
    Reads only."""
    if not store.is_file():
        return None
    try:
        db = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            counts = []
            if "labels" in tables:
                marks = ",".join("?" * len(MACHINE_HUMANS))
                query = f"SELECT COUNT(*) FROM labels WHERE human NOT IN ({marks})"
                counts.append((db.execute(query, MACHINE_HUMANS).fetchone()[0], "answers from people"))
            if "judgments" in tables:
                counts.append((db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0], "judgments from people"))
            if "started" in tables:
                query = "SELECT COUNT(*) FROM started WHERE initial_answer IS NOT NULL"
                counts.append((db.execute(query).fetchone()[0], "first answers of judges"))
        finally:
            db.close()
    except sqlite3.Error as e:
        return f"data that cannot be read ({e}; it may be people's answers)"
    found = [f"{n} {what}" for n, what in counts if n]
    return ", ".join(found) or None


def apply_plan(plan: RunPlan) -> None:
    """Main process: make the directory match the plan (delete on overwrite, set aside the lost updates on resume)."""
    if plan.overwrite and plan.run_dir.exists():
        shutil.rmtree(plan.run_dir)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    if plan.resume_from is None:
        if _has_training_output(plan.run_dir):  # --resume with no checkpoint: set all of it aside
            _set_aside(plan.run_dir, after_update=0)
        return
    _set_aside(plan.run_dir, after_update=plan.resume_update)


def _set_aside(run_dir: Path, after_update: int) -> None:
    for transcripts in (run_dir / "transcripts", run_dir / "transcripts" / "liar"):  # self-play, and the liar's
        superseded = transcripts / "superseded"
        for file in sorted(transcripts.glob("update_*.jsonl")):
            if int(file.stem.split("_")[1]) > after_update:
                superseded.mkdir(parents=True, exist_ok=True)
                dest = superseded / file.name
                n = 1
                while dest.exists():
                    dest = superseded / f"{file.stem}.{n}.jsonl"
                    n += 1
                os.replace(file, dest)
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        keep: list[str] = []
        lost: list[str] = []
        for line in metrics.read_text().splitlines(keepends=True):
            try:
                update = json.loads(line)["update"]
            except (json.JSONDecodeError, KeyError, TypeError):
                update = None  # a line cut by the kill
            (keep if update is not None and update <= after_update else lost).append(line)
        if lost:
            with open(run_dir / "metrics.superseded.jsonl", "a") as f:
                f.writelines(line if line.endswith("\n") else line + "\n" for line in lost)
        write_whole(metrics, keep)


def _has_training_output(run_dir: Path) -> bool:
    return (
        (run_dir / "metrics.jsonl").is_file()
        or any((run_dir / "transcripts").glob("update_*.jsonl"))
        or (run_dir / "checkpoints").is_dir()
    )


def _resume_changes(
    cfg: Config, saved: Path, may_change: tuple[str, ...] = RESUME_MAY_CHANGE, upwards: str = "trainer.updates"
) -> str:
    """'' when the recipe equals the run's ``config.yaml``; the allowed changes in words; :class:`RunDirError`
    naming the keys that may not change on resume (``may_change`` may, ``upwards`` only upwards)."""
    if not saved.is_file():
        return ""
    try:
        old = flatten_recipe(config_to_dict(load_config(saved)))
    except ConfigError as e:
        raise RunDirError(f"--resume: {saved} no longer loads ({e}); cannot check the recipe against it") from None
    new = flatten_recipe(config_to_dict(cfg))
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    refused = [k for k in changed if k not in may_change]
    if upwards in changed and int(new[upwards]) < int(old[upwards]):  # type: ignore[call-overload]
        refused.insert(0, upwards)
    if refused:
        what = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in refused[:3])
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        raise RunDirError(
            f"--resume would change what {saved.parent} trained ({what}{more}); a resume may change only "
            f"{', '.join(may_change)} ({upwards} upwards): pass --overwrite, or another run.name"
        )
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)


def _recipe_changes(cfg: Config, saved: Path) -> str:
    """'' when ``saved`` is absent or equal to ``cfg``; else the first differing keys, 'key: old -> new'."""
    if not saved.is_file():
        return ""
    try:
        old = flatten_recipe(config_to_dict(load_config(saved)))
    except ConfigError as e:
        return f"its config.yaml no longer loads: {e}"
    new = flatten_recipe(config_to_dict(cfg))
    diffs = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)
    ]
    if len(diffs) > 3:
        diffs = [*diffs[:3], f"and {len(diffs) - 3} more"]
    return "; ".join(diffs)


def flatten_recipe(data: dict, prefix: str = "") -> dict[str, object]:
    """A nested recipe dict as ``{"section.key": value}``."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten_recipe(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
