"""Checkpoints: everything a run needs to continue as if it had never stopped (DESIGN.md section 6).

``runs/<name>/checkpoints/update_000042/`` holds

    policy.safetensors          the policy's weights (or, with LoRA, its adapter)
    value_head.safetensors      the value head
    target_policy.safetensors   M_target (or, with LoRA, the target adapter)
    optimizer.safetensors       the optimizer's tensors ...
    optimizer.json              ... and the rest of its state (param groups, step counts that are not tensors)
    rng_rank<i>.safetensors     torch's CPU (and CUDA) generator state of process i
    rng_rank<i>.json            Python's and NumPy's global generators and the run's own generators of process i
    state.json                  the update counter, lambda, the KL coefficient, sampler budgets, ... (written last)

Tensors go to safetensors and everything else to JSON: nothing is unpickled when a run resumes. The exception is
DeepSpeed and FSDP, which shard parameters and optimizer state across processes: there the policy, value head and
optimizer go to ``accelerate_state/`` in accelerate's own format (``Accelerator.save_state``, whose optimizer file
is a torch pickle), and the rest is as above.

A checkpoint is written into ``checkpoints/.partial-update_000042/`` and renamed into place once every file is on
disk (fsynced), so a directory named ``update_*`` is always whole: a kill during the write leaves a ``.partial-``
directory, which the next save or resume removes. ``keep_last`` bounds how many whole checkpoints stay.

Nothing here knows about accelerate: the loop decides which process writes what and when to wait.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from debate_amp.durable import fsync_path

FORMAT_VERSION = 1
ACCELERATE_STATE = "accelerate_state"
_NAME = re.compile(r"^update_(\d{6})$")
_PARTIAL_PREFIX = ".partial-"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the directory and what is wrong."""


# ---------------------------------------------------------------------------------------------------------------
# Finding checkpoints


def checkpoint_dir(root: Path, update: int) -> Path:
    return root / f"update_{update:06d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Whole checkpoints under ``root``, oldest first: [(update, path)]."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and (path / "state.json").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    checkpoints = list_checkpoints(root)
    return checkpoints[-1][1] if checkpoints else None


# ---------------------------------------------------------------------------------------------------------------
# Writing (two phases: every process writes its RNG files into the partial directory, then the main process
# writes the rest and renames it into place)


def begin(root: Path, update: int) -> Path:
    """Main process: a fresh partial directory for ``update`` (stale partial directories are removed)."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(_PARTIAL_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = partial_dir(root, update)
    partial.mkdir()
    return partial


def partial_dir(root: Path, update: int) -> Path:
    return root / f"{_PARTIAL_PREFIX}update_{update:06d}"


def save_rng(
    directory: Path, rank: int, generators: dict[str, random.Random], local: dict[str, Any] | None = None
) -> None:
    """Every process: its global RNG states, the run's own ``random.Random`` generators (by name), and ``local``:
    any other JSON state that differs between processes (e.g. the sampler's budget counts)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    _save_tensors(tensors, directory / f"rng_rank{rank}.safetensors")
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    plain = {
        "python": _python_state(random.getstate()),
        "numpy": [np_kind, np.asarray(np_keys).tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "generators": {name: _python_state(g.getstate()) for name, g in generators.items()},
        "local": local or {},
    }
    _write_json(plain, directory / f"rng_rank{rank}.json")


def finish(
    root: Path,
    update: int,
    *,
    modules: dict[str, dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    keep_last: int | None,
) -> Path:
    """Main process, after every process's :func:`save_rng`: weights, optimizer and state, then the rename."""
    partial = partial_dir(root, update)
    for name, tensors in modules.items():
        _save_tensors(tensors, partial / f"{name}.safetensors")
    if optimizer is not None:
        opt_tensors, opt_plain = _flatten_optimizer(optimizer.state_dict())
        _save_tensors(opt_tensors, partial / "optimizer.safetensors")
        _write_json(opt_plain, partial / "optimizer.json")
    _write_json({"format_version": FORMAT_VERSION, **state}, partial / "state.json")
    fsync_path(partial)
    final = checkpoint_dir(root, update)
    if final.exists():  # the same update written again (a resumed run that redid it): replace it whole
        shutil.rmtree(final)
    os.replace(partial, final)
    fsync_path(root)
    if keep_last is not None:
        for _, old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------------------------
# Reading


def load_state(path: Path) -> dict[str, Any]:
    state = _read_json(path / "state.json")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {state.get('format_version')!r}, expected {FORMAT_VERSION}")
    return state


def load_tensors(path: Path, name: str) -> dict[str, torch.Tensor]:
    file = path / f"{name}.safetensors"
    if not file.is_file():
        raise CheckpointError(f"{path}: missing {file.name}")
    return load_file(str(file))


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    tensors = load_tensors(path, "optimizer")
    plain = _read_json(path / "optimizer.json")
    optimizer.load_state_dict(_unflatten_optimizer(tensors, plain))


def load_rng(path: Path, rank: int, generators: dict[str, random.Random]) -> dict[str, Any]:
    """Restore this process's RNG states and return its ``local`` state. A process with no file of its own (the
    run was saved with fewer processes) is an error."""
    file = path / f"rng_rank{rank}.json"
    if not file.is_file():
        raise CheckpointError(f"{path}: no RNG state for process {rank} (was the run saved with fewer processes?)")
    plain = _read_json(file)
    tensors = load_tensors(path, f"rng_rank{rank}")
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    random.setstate(_python_tuple(plain["python"]))
    kind, keys, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    for name, generator in generators.items():
        if name not in plain["generators"]:
            raise CheckpointError(f"{path}: no state for generator {name!r}")
        generator.setstate(_python_tuple(plain["generators"][name]))
    return plain.get("local", {})


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _save_tensors(tensors: dict[str, torch.Tensor], file: Path) -> None:
    # Clones break storage sharing (tied embeddings), which safetensors refuses to write.
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(file))
    fsync_path(file)


def _write_json(data: Any, file: Path) -> None:
    with open(file, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{file.parent}: missing {file.name}") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e.msg}, line {e.lineno})") from None


def _python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_tuple(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch's optimizer state dict -> (tensors by ``state.<param>.<key>``, everything else as JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for param_id, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{key}"] = value
            else:
                plain_state.setdefault(str(param_id), {})[key] = value
    return tensors, {"state": plain_state, "param_groups": state_dict["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = tensor
    for param_id, values in plain["state"].items():
        state.setdefault(int(param_id), {}).update(values)
    groups = plain["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}
