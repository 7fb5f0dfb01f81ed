"""`llmctl finetune` as a function: recipe in, events out, run directory on disk. Three steps:

    checked = preflight(recipe)     # llmctl.core.preflight: every check that needs no weights
    setup = build(checked)          # tokenizer, features, model, optimizer: a typed Setup
    for event in run(setup):        # the run directory, the one loop (llmctl.train.loop), metrics.json
        console.show(event)         # the last event is Finished(result)

`finetune(recipe, ...)` chains them. Order matters for the user: the recipe, the data and the model
source are checked before anything heavy loads, and the run directory is created only once they
pass and the model has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from llmctl import faults
from llmctl.core.preflight import Checked, check_batch_split, preflight
from llmctl.errors import Interrupted, UsageError
from llmctl.events import Checkpointed, Evaluated, Finished, Stopped
from llmctl.runs.directory import RunDir, checkpoint_step
from llmctl.runs.environment import environment
from llmctl.runs.model_card import rewrite_model_card
from llmctl.train import tracking

if TYPE_CHECKING:  # types only: `llmctl --help` must not import torch
    import torch
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

    from llmctl.config.schema import Recipe
    from llmctl.data.features import Features

__all__ = ["Checked", "Finished", "Setup", "build", "finetune", "preflight", "run"]


def finetune(recipe: Recipe, resume: bool = False, overwrite: bool = False, device: str | None = None,
             force_resume: bool = False) -> Iterator:
    """The three steps in order; a generator, so nothing is checked before the caller iterates."""
    checked = preflight(recipe, resume=resume, overwrite=overwrite, device=device, force_resume=force_resume)
    yield from run(build(checked))


@dataclass
class Setup:
    """Everything a run needs, built and loaded, with nothing written to the run directory yet."""

    checked: Checked
    precision: str  # fp32 | bf16 | fp16, as resolved for the device
    accelerator: Accelerator
    sharded: dict | None  # the FSDP settings, None when the model is not sharded
    tokenizer: PreTrainedTokenizerBase
    train_features: Features
    eval_features: Features | None
    data_info: dict  # the feature cache's report, for metrics.json's "data"
    model: torch.nn.Module  # prepared by accelerate (wrapped for FSDP / DDP)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    total_steps: int
    fingerprint: dict  # stored in checkpoints, checked on resume
    resume_from: Path | None  # the checkpoint --resume continues from
    speedups: list[str] = field(default_factory=list)  # the CPU speed-ups applied
    lora: dict | None = None  # the adapter's summary (trainable parameters, layers) for a LoRA run
    distiller: object | None = None  # llmctl.train.distill.Distiller for a `distill:` run


def build(checked: Checked) -> Setup:
    """Load the heavy libraries, the tokenizer, the features and the seeded model; prepare the
    optimizer. Tokenizing can still reject the data, and --resume can still be refused: both
    happen here, before the run directory exists."""
    from llmctl.console import RowsProgress, tell
    from llmctl.data.prepare import train_features as train_features_for
    from llmctl.core.tokenizer import tokenizer_for
    from llmctl.models.load import auto_class, load_model
    from llmctl.models.quiet import USER_TOKENIZERS_PARALLELISM, quiet_libraries
    from llmctl.train.accelerator import make_accelerator
    from llmctl.train.fingerprint import fingerprint

    recipe, run, task, dev = checked.recipe, checked.run, checked.task, checked.device
    quiet_libraries()
    import torch
    from accelerate.utils import set_seed

    from llmctl.models.precision import resolve_precision
    from llmctl.train.loop import plan_steps
    from llmctl.train.optim import build_optimizer, build_scheduler, gradient_checkpointing
    from llmctl.train.sharding import fsdp_settings, prepare_for_training

    precision = resolve_precision(recipe.train.precision, dev)
    accelerator = make_accelerator(precision, dev,
                                   trackers=tracking.accelerator_options(recipe.train.report_to, run.path))
    check_batch_split(recipe.train.batch_size, accelerator.num_processes)
    # Tokenizing can still reject the data (a QA question longer than max_length): do it
    # before the run directory exists, so fixing the data and rerunning needs no --overwrite.
    tokenizer = tokenizer_for(recipe, task, checked.train_split)
    train_features, data_info = train_features_for(task, checked.train_split, tokenizer, recipe.data,
                                                   recipe.data.cache, RowsProgress, USER_TOKENIZERS_PARALLELISM)
    tell(train_features)
    eval_features = tell(task.featurize(checked.eval_split, tokenizer)) if checked.eval_split is not None else None
    distiller = None
    if recipe.distill is not None:  # before the seed: the teacher's run takes none of the run's random numbers
        from llmctl.core.distill import build_distiller
        from llmctl.console import note

        told: list[str] = []
        distiller, train_features = build_distiller(recipe, task, train_features, tokenizer, accelerator.device, told)
        for line in told:
            note(line)
    resume = checked.mode == "resume"
    resume_from = run.latest_checkpoint() if resume else None  # partial ones are removed by run.open
    if resume and resume_from is None and (run.path / "metrics.json").is_file():
        raise UsageError(f"Run {run.path} already finished.", "Use --overwrite to train it again.")

    # Seeded model, features, optimizer.
    set_seed(recipe.train.seed)
    if recipe.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    from llmctl.models.adapters import quantization_config, wrap

    quantized = quantization_config(recipe.peft) if recipe.peft is not None else None  # QLoRA: a 4-bit base
    if recipe.model.init_from is not None:  # the source's weights, cut to model.layers
        from llmctl.core.distill import init_student

        model = init_student(auto_class(task.auto_model), recipe, tokenizer, **task.model_kwargs())
    else:
        model = load_model(auto_class(task.auto_model), recipe.model, tokenizer, quantization_config=quantized,
                           **task.model_kwargs())
    if recipe.train.gradient_checkpointing and not gradient_checkpointing(model):
        raise UsageError(f"{type(model).__name__} does not support gradient checkpointing.",
                         "Set train.gradient_checkpointing=false.")
    lora = None
    if recipe.peft is not None:
        from llmctl.models.trust import base_digests

        model, lora = wrap(model, recipe.peft, task.auto_model, checked.base)
        # in environment.json too, so --resume can check it before a model is saved
        lora["base_sha256"] = checked.base_sha256 if resume else base_digests(checked.base)
        tell_lora(lora)
    speedups, attach_to_optimizer = [], None
    sharded = fsdp_settings(accelerator)
    if dev == "cpu" and sharded is None:
        from llmctl.train.speedups.apply import speed_up_cpu_training

        # On the transformers model inside the adapter: each speed-up checks the module types it
        # rewrites, and the seen-rows embedding declines a frozen embedding (LoRA freezes it).
        speedups, attach_to_optimizer = speed_up_cpu_training(model.get_base_model() if lora else model,
                                                              train_features, tokenizer, precision,
                                                              adamw=recipe.train.optimizer.startswith("adamw"))
    steps_per_epoch, total_steps = plan_steps(len(train_features), recipe.train)
    run_print = fingerprint(recipe, train_features, eval_features, _test_file(recipe))
    if resume_from is not None:
        _check_resumable(resume_from, run_print, checked.force_resume)

    def make_optimizer(model):
        optimizer = build_optimizer(model, recipe.train)
        if attach_to_optimizer is not None:
            attach_to_optimizer(optimizer)
        return optimizer, build_scheduler(optimizer, recipe.train, total_steps)

    model, optimizer, scheduler = prepare_for_training(accelerator, model, make_optimizer)
    # Columns the starting weights compute once (DPO's reference log-probs; cached with the features).
    train_features = tell(task.reference_columns(train_features, model, accelerator, recipe.data.cache))
    if eval_features is not None:
        eval_features = tell(task.reference_columns(eval_features, model, accelerator, recipe.data.cache))
    return Setup(checked=checked, precision=precision, accelerator=accelerator, sharded=sharded, tokenizer=tokenizer,
                 train_features=train_features, eval_features=eval_features, data_info=data_info, model=model,
                 optimizer=optimizer, scheduler=scheduler, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                 fingerprint=run_print, resume_from=resume_from, speedups=speedups, lora=lora, distiller=distiller)


def run(setup: Setup) -> Iterator:
    """Create the run directory (only now: every check has passed and the model is loaded, so a start
    that fails leaves nothing behind), run the one loop, write metrics.json; yields the loop's events,
    then Finished(result)."""
    from llmctl.train.loop import LoopSetup, train_loop
    from llmctl.train.sharding import full_model_state

    checked, accelerator = setup.checked, setup.accelerator
    recipe, run_dir, task, lora = checked.recipe, checked.run, checked.task, setup.lora
    faults.hook("write", step=0, name="run.lock")  # tests make two starts race here
    run_dir.open(checked.mode, is_main=accelerator.is_main_process, resume_from=setup.resume_from)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_start(setup)

    meta = task.metadata() | {"precision": setup.precision}  # eval and predict run in the precision it trained in
    if lora:
        # what `llmctl export --base` checks a relocated base model against
        meta["peft"] = lora

    def save_best(info: dict) -> None:
        """Called on every process: under FSDP gathering the weights takes all of them."""
        state = full_model_state(setup.model) if setup.sharded else None
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(setup.model)
            run_dir.save_model(unwrapped, setup.tokenizer, meta, info, state_dict=state,
                               extra_files=task.model_files(unwrapped.config))

    resume_from = setup.resume_from
    tracker = tracking.RunTracking.start(accelerator, recipe, run_dir.path,
                                         checkpoint_step(resume_from) if resume_from is not None else 0,
                                         recipe.train.metric_for_best or task.default_metric())
    loop = LoopSetup(
        task=task, tokenizer=setup.tokenizer, accelerator=accelerator, model=setup.model, optimizer=setup.optimizer,
        scheduler=setup.scheduler, train_features=setup.train_features, eval_features=setup.eval_features,
        eval_split=checked.eval_split, cfg=recipe.train, total_steps=setup.total_steps,
        steps_per_epoch=setup.steps_per_epoch, checkpoint_dir=run_dir.checkpoints, save_best=save_best,
        precision=setup.precision, resume_from=resume_from, fingerprint=setup.fingerprint,
        distiller=setup.distiller,
    )
    outcome = "failed"  # what the trackers are told when the run ends
    try:
        for event in train_loop(loop):
            if isinstance(event, Evaluated) and accelerator.is_main_process:
                run_dir.append_metrics({"step": event.step, "epoch": round(event.epoch, 4), **event.metrics})
            tracker.record(event)  # train_log.jsonl, trackers, pictures: after metrics.jsonl, which curves.png draws
            if isinstance(event, Checkpointed) and not accelerator.is_main_process:
                continue
            if isinstance(event, Stopped):
                result = _finish(event, setup)
                yield event
                outcome = "finished"
                yield Finished(result)
                return
            yield event
    except Interrupted:
        outcome = "interrupted"
        raise
    finally:
        tracker.end(outcome)
        run_dir.unlock()


def _write_start(setup: Setup) -> None:
    """environment.json and recipe.yaml, on the main process, as the run starts."""
    import torch

    from llmctl.config.load import recipe_to_yaml

    checked, accelerator, lora = setup.checked, setup.accelerator, setup.lora
    run = checked.run
    # environment.json first: it is what marks the directory as llmctl's (for --resume and
    # --overwrite), so a run killed right after starting can still be resumed.
    env = environment(str(accelerator.device), accelerator.num_processes)
    # argv: the latest command (a resume's); first_argv: the command that started the run.
    env["first_argv"] = (run.first_argv() if checked.mode == "resume" else None) or env["argv"]
    run.write_json("environment.json", env
                   | {"precision": setup.precision, "cpu_speedups": setup.speedups,
                      "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
                   | _distributed_info(accelerator, setup.sharded, checked.device)
                   | ({"peft": lora, "cpu_speedups_note": LORA_SPEEDUPS_NOTE} if lora else {}))
    run.write_text("recipe.yaml", recipe_to_yaml(checked.recipe))


def _finish(stopped: Stopped, setup: Setup) -> dict:
    """The run's result: metrics.json (and the model card) on the main process, the test split scored."""
    checked, accelerator = setup.checked, setup.accelerator
    run = checked.run
    result = _result(stopped, run, accelerator, setup.precision, setup.total_steps) | {"data": setup.data_info}
    if setup.lora:
        result["peft"] = setup.lora
    if setup.distiller is not None:
        result["distill"] = setup.distiller.info
    if checked.test_split is not None:
        result["test_metrics"] = _evaluate_saved(run, checked.task, setup.tokenizer, accelerator, setup.model,
                                                 checked.test_split, checked.recipe.train.eval_batch_size)
    result["metric_rows"] = _metric_rows(checked)
    if accelerator.is_main_process:
        run.write_json("metrics.json", result)
        rewrite_model_card(run.path, {"train": checked.train_split, "validation": checked.eval_split,
                                      "test": checked.test_split})
    return result


def _metric_rows(checked: Checked) -> dict:
    """Which rows "metrics" (the validation split, cut by data.max_eval_samples) and "test_metrics"
    (the whole test split) were computed on."""
    from llmctl.core.evaluation import rows_covered

    rows = {}
    if checked.eval_split is not None:
        rows["metrics"] = rows_covered(checked.eval_split.where, len(checked.eval_split),
                                       checked.recipe.data.max_eval_samples, "data.max_eval_samples", "validation")
    if checked.test_split is not None:
        rows["test_metrics"] = rows_covered(checked.test_split.where, len(checked.test_split), None, "", "test")
    return rows


LORA_SPEEDUPS_NOTE = ("LoRA: the CPU speed-ups run on the adapted model (fast dropout covers the LoRA dropout too; "
                      "in bf16 the frozen base linears are stored in bf16, the values autocast computes with); "
                      "seen_embedding_rows is off because the embedding is frozen, and labelled_positions_only "
                      "falls back to the stock forward because peft's token-classification wrapper passes return_dict.")


def tell_lora(lora: dict) -> None:
    from llmctl.console import note

    share = lora["trainable_parameters"] / max(1, lora["total_parameters"])
    note(f"LoRA r {lora['r']}, alpha {lora['alpha']:g} on {', '.join(lora['target_modules'][:8])}"
         f"{' ...' if len(lora['target_modules']) > 8 else ''}: {lora['trainable_parameters']:,} of "
         f"{lora['total_parameters']:,} parameters train ({share:.2%})"
         + (f"; {', '.join(lora['modules_to_save'])} trained in full" if lora["modules_to_save"] else ""))


def _test_file(recipe) -> Path | None:
    """data.test as a local file: its bytes go into the resume fingerprint (the test split is only
    tokenized at the end, so there are no features to hash when the run resumes)."""
    spec = getattr(recipe.data, "test", None)
    return Path(spec).expanduser() if spec and Path(spec).expanduser().is_file() else None


def _result(stopped, run: RunDir, accelerator, precision: str, total_steps: int) -> dict:
    metrics = {k: v for k, v in stopped.best.items() if k != "best_step"}
    rate = stopped.train_samples / stopped.train_runtime_s if stopped.train_runtime_s else 0.0
    return {
        "metrics": metrics,
        "best_step": stopped.best.get("best_step"),
        "output_dir": str(run.path),
        "model_dir": str(run.model),
        "train": {
            "samples": stopped.train_samples,
            "runtime_s": round(stopped.train_runtime_s, 3),
            "samples_per_second": round(rate, 3),
            "num_processes": accelerator.num_processes,
            "steps": stopped.step,
            "total_steps": total_steps,
            "precision": precision,
            "stopped": stopped.reason,
            "skipped_steps": stopped.skipped_steps,
        },
    }


def _evaluate_saved(run: RunDir, task, tokenizer, accelerator, model, split, batch_size: int) -> dict:
    """Score the saved (best) model on the test split, once, after training."""
    from safetensors.torch import load_file

    from llmctl.train.evaluate import evaluate
    from llmctl.train.sharding import fsdp_version, load_full_model_state

    unwrapped = accelerator.unwrap_model(model)
    adapter_file = run.model / "adapter_model.safetensors"
    if adapter_file.is_file() and fsdp_version(accelerator):
        from llmctl.models.adapters import by_model_names

        load_full_model_state(model, by_model_names(model, load_file(str(adapter_file))), strict=False)
    elif adapter_file.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(unwrapped, load_file(str(adapter_file)))
    elif fsdp_version(accelerator):
        # strict=False: save_pretrained drops tied copies (e.g. shared embeddings) from the file.
        load_full_model_state(model, load_file(str(run.model / "model.safetensors")), strict=False)
    else:
        unwrapped.load_state_dict(load_file(str(run.model / "model.safetensors")), strict=False)
    from llmctl.console import tell

    features = tell(task.featurize(split, tokenizer))
    return evaluate(task, model, tokenizer, accelerator, features, split, batch_size)


def _distributed_info(accelerator, sharded: dict | None, dev: str) -> dict:
    """How the processes split the work, for environment.json (and why CPU speed-ups are off)."""
    info = {"distributed_type": str(accelerator.distributed_type).rsplit(".", 1)[-1]}
    if sharded is not None:
        info["fsdp"] = sharded
        if dev == "cpu":
            info["cpu_speedups_off"] = ("FSDP: the speed-ups swap modules and keep per-parameter optimizer "
                                        "hooks, which sharded parameters do not support")
    return info


def _check_resumable(checkpoint: Path, current: dict, force: bool) -> None:
    """Refuse to resume a checkpoint written by a different recipe, data or library versions."""
    import json

    from llmctl.train.fingerprint import differences

    try:
        saved = json.loads((checkpoint / "loop.json").read_text()).get("fingerprint", {})
    except (OSError, ValueError):
        return  # an unreadable checkpoint is reported by the checksum check when it loads
    changed = differences(saved, current)
    if changed and not force:
        raise UsageError(
            f"Cannot resume from {checkpoint}: the run has changed since it was written:\n  " + "\n  ".join(changed),
            "\nRestore the original settings, start a new run with --output-dir, or pass --force-resume to continue anyway.",
        )
    if changed:
        from llmctl.console import warn

        # Forced on: say what differs, since best-model selection may now compare two validation sets.
        warn(f"--force-resume: continuing {checkpoint} though " + "; ".join(changed) + ".")
