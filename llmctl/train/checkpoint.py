"""Full training-state checkpoints without pickle, written atomically.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` holding safetensors (model,
optimizer tensors, RNG states) and JSON (everything else). It is written under a
`.partial` name, its manifest (sha256 of every file) is written last, and only then is
the folder renamed into place: a folder without a manifest never counts, so a kill in
the middle of a save leaves the previous checkpoint as the latest complete one.
Nothing here unpickles, so a crafted state file cannot run code.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np

from llmctl import faults
from llmctl.errors import TrainingError
from llmctl.files import disk_full, file_sha256
from llmctl.runs.directory import MANIFEST, checkpoint_name, complete_checkpoints
from llmctl.train.sharding import (fsdp_version, full_model_state, full_optimizer_state, load_full_model_state,
                                   load_full_optimizer_state)


def _write_json(path: Path, data) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


# -- RNG state ------------------------------------------------------------------------
def rng_state() -> tuple[dict, dict]:
    import torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    version, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    plain = {
        "numpy": [version, keys.tolist(), pos, has_gauss, gauss],
        "python": [py_version, list(py_state), py_gauss],
    }
    return tensors, plain


def set_rng_state(tensors: dict, plain: dict) -> None:
    import torch

    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    version, keys, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((version, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    py_version, py_state, py_gauss = plain["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


# -- optimizer state ------------------------------------------------------------------
def _split_optimizer(state_dict: dict) -> tuple[dict, dict]:
    tensors, plain = {}, {"param_groups": state_dict["param_groups"], "scalars": {}}
    for pid, entry in state_dict["state"].items():
        for key, value in entry.items():
            if hasattr(value, "detach"):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain["scalars"][f"{pid}.{key}"] = value
    return tensors, plain


def _join_optimizer(tensors: dict, plain: dict) -> dict:
    state: dict = {}
    for name, value in list(tensors.items()) + list(plain["scalars"].items()):
        # pid: an index, or under FSDP a parameter name (with dots); state keys have none
        pid, key = name.rsplit(".", 1)
        state.setdefault(int(pid) if pid.isdigit() else pid, {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def _check_optimizer_shapes(path: Path, optimizer, state_dict: dict) -> None:
    """torch loads moment tensors of the wrong shape without a word and fails at the next
    step; say it now. It happens when the checkpoint was written with the CPU speed-ups
    and is resumed without them (or on CUDA), or the other way round: the seen-rows
    embedding keeps AdamW moments for fewer rows than the full table."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ids = [i for group in state_dict["param_groups"] for i in group["params"]]
    for param, pid in zip(params, ids):
        moment = state_dict["state"].get(pid, {}).get("exp_avg")
        if moment is not None and tuple(moment.shape) != tuple(param.shape):
            raise TrainingError(
                f"Checkpoint {path} holds optimizer state of shape {tuple(moment.shape)} for a parameter "
                f"of shape {tuple(param.shape)}: it was written with different CPU speed-ups "
                "(see cpu_speedups in the run's environment.json).",
                "Resume on the same kind of device with the same LLMCTL_CPU_SPEEDUPS setting, "
                "or start a new run with --output-dir.",
            )


# -- model state ----------------------------------------------------------------------
def _save_model_state(model, file: str) -> None:
    """The full model; for a LoRA run only what trains (adapter + head): the frozen base is
    reloaded from the base model on --resume, so saving it would only cost disk and time."""
    from safetensors.torch import save_file, save_model

    from llmctl.models.adapters import is_peft_model, trainable_state

    if is_peft_model(model):
        save_file(trainable_state(model), file)
    else:
        save_model(model, file)


def _load_model_state(model, file: str) -> None:
    from safetensors.torch import load_file, load_model

    from llmctl.models.adapters import is_peft_model, load_trainable_state

    if is_peft_model(model):
        load_trainable_state(model, load_file(file))
    else:
        load_model(model, file)


# -- save / load ----------------------------------------------------------------------
def save_checkpoint(root: Path, step: int, accelerator, model, optimizer, scheduler, loop_state: dict) -> Path:
    """Write a checkpoint for `step` on every process; returns its folder."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    final = root / checkpoint_name(step)
    partial = root / (checkpoint_name(step) + ".partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()

    def target(name: str) -> str:
        faults.hook("write", step=step, name=name)
        return str(partial / name)

    try:
        rank = accelerator.process_index
        tensors, plain = rng_state()
        save_file(tensors, target(f"rng-{rank}.safetensors"))
        _write_json(target(f"rng-{rank}.json"), plain)
        model_state, opt_state = _gather_shards(accelerator, model, optimizer)
        if accelerator.is_main_process:
            if model_state is None:
                _save_model_state(accelerator.unwrap_model(model), target("model.safetensors"))
            else:
                save_file(model_state, target("model.safetensors"))
            opt_tensors, opt_plain = _split_optimizer(opt_state if opt_state is not None else optimizer.state_dict())
            save_file(opt_tensors, target("optimizer.safetensors"))
            _write_json(target("optimizer.json"), opt_plain)
            _write_json(target("scheduler.json"), scheduler.state_dict())
            if accelerator.scaler is not None:
                _write_json(target("scaler.json"), accelerator.scaler.state_dict())
            _write_json(target("loop.json"), loop_state | {"num_processes": accelerator.num_processes,
                                                           "fsdp": fsdp_version(accelerator)})
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            files = sorted(p.name for p in partial.iterdir())
            manifest = {"step": step, "files": {f: file_sha256(partial / f) for f in files}}
            _write_json(target(MANIFEST), manifest)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise TrainingError(
            f"Could not write checkpoint {final}: {'disk full' if disk_full(exc) else 'write failed'} "
            f"({getattr(exc, 'strerror', None) or exc}).",
            "Free disk space (or raise train.save_every); earlier checkpoints and the best model are intact, "
            "and --resume continues from the latest complete checkpoint.",
        ) from exc
    accelerator.wait_for_everyone()
    return final


def verify_checkpoint(path: Path) -> dict:
    """Check every file against the manifest; returns the manifest."""
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"Checkpoint {path} has no readable manifest.", "Delete that folder to resume from an earlier one.") from exc
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.is_file() or file_sha256(file) != digest:
            raise TrainingError(
                f"Checkpoint file {file} is missing or corrupt (checksum mismatch).",
                "Delete that checkpoint folder to resume from an earlier one.",
            )
    return manifest


def _read(file: Path, reader):
    """Read one checkpoint file with a parser that cannot run code; name the file if it fails."""
    from safetensors import SafetensorError

    try:
        return reader(str(file))
    except (SafetensorError, ValueError, OSError) as exc:
        kind = "safetensors" if file.suffix == ".safetensors" else "JSON"
        raise TrainingError(
            f"Checkpoint file {file} is not valid {kind} ({str(exc).splitlines()[0][:120]}).",
            "llmctl checkpoints hold only safetensors and JSON, never pickle; "
            "delete that checkpoint folder to resume from an earlier one.",
        ) from exc


def _json(name: str) -> dict:
    return json.loads(Path(name).read_text(encoding="utf-8"))


def load_checkpoint(path: Path, accelerator, model, optimizer, scheduler) -> dict:
    """Restore everything `save_checkpoint` wrote; returns the loop state."""
    from safetensors.torch import load_file

    verify_checkpoint(path)
    loop_state = _read(path / "loop.json", _json)
    if loop_state.get("num_processes") != accelerator.num_processes:
        raise TrainingError(
            f"Checkpoint {path} was written by {loop_state.get('num_processes')} process(es); "
            f"this run has {accelerator.num_processes}.",
            "Resume with the same number of processes.",
        )
    _check_same_sharding(path, loop_state, fsdp_version(accelerator))
    opt_plain = _read(path / "optimizer.json", _json)
    opt_state = _join_optimizer(_read(path / "optimizer.safetensors", load_file), opt_plain)
    if fsdp_version(accelerator):
        saved = _read(path / "model.safetensors", load_file)
        # strict=False only for LoRA, whose checkpoints hold the trainable tensors alone.
        load_full_model_state(model, saved, strict=len(saved) >= len(list(model.parameters())))
        load_full_optimizer_state(model, optimizer, opt_state)
    else:
        _read(path / "model.safetensors", lambda f: _load_model_state(accelerator.unwrap_model(model), f))
        _check_optimizer_shapes(path, optimizer, opt_state)
        optimizer.load_state_dict(opt_state)
    scheduler.load_state_dict(_read(path / "scheduler.json", _json))
    if accelerator.scaler is not None and (path / "scaler.json").is_file():
        accelerator.scaler.load_state_dict(_read(path / "scaler.json", _json))
    rank = accelerator.process_index
    set_rng_state(_read(path / f"rng-{rank}.safetensors", load_file), _read(path / f"rng-{rank}.json", _json))
    return loop_state


# -- FSDP: whole tensors from the shards, in the same files -------------------------------
def _gather_shards(accelerator, model, optimizer) -> tuple[dict | None, dict | None]:
    """Under FSDP, the full model and optimizer state (on the main process; gathering is a
    collective, so every process calls this); (None, None) otherwise."""
    if not fsdp_version(accelerator):
        return None, None
    state = full_model_state(model)
    trains = {name for name, p in model.named_parameters() if p.requires_grad}
    if len(trains) < len(state):
        # LoRA: only what trains, as without FSDP; the frozen base reloads from the base model.
        state = {name: tensor for name, tensor in state.items() if name in trains}
    return state, full_optimizer_state(model, optimizer)


def _check_same_sharding(path: Path, loop_state: dict, version: int | None) -> None:
    """FSDP checkpoints key optimizer state by parameter name, the others by index."""
    if bool(loop_state.get("fsdp")) != bool(version):
        wrote = f"with FSDP{loop_state['fsdp']}" if loop_state.get("fsdp") else "without FSDP"
        runs = f"with FSDP{version}" if version else "without FSDP"
        raise TrainingError(
            f"Checkpoint {path} was written {wrote}; this run is {runs}.",
            "Resume with the same `accelerate launch` settings it was written with.",
        )


def prune_checkpoints(root: Path, keep: int) -> None:
    for old in complete_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
