"""`llmctl finetune` as a function: recipe in, events out, run directory on disk.

    for event in finetune(recipe, resume=False):
        console.show(event)          # the last event is Finished(result)

Order matters for the user: the recipe, the data and the model source are checked
before anything heavy loads, and the run directory is created only once they pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from llmctl import faults
from llmctl.errors import Interrupted, UsageError
from llmctl.events import Checkpointed, Evaluated, Finished, Stopped
from llmctl.runs.model_card import rewrite_model_card
from llmctl.runs.directory import RunDir, checkpoint_step, environment
from llmctl.train import tracking


def finetune(recipe, resume: bool = False, overwrite: bool = False, device: str | None = None,
             force_resume: bool = False) -> Iterator:
    from llmctl.console import RowsProgress, note, tell
    from llmctl.models.quiet import USER_TOKENIZERS_PARALLELISM
    from llmctl.models.load import auto_class
    from llmctl.train.accelerator import make_accelerator
    from llmctl.models.quiet import quiet_libraries
    from llmctl.data.prepare import train_features as train_features_for
    from llmctl.models.devices import device_type
    from llmctl.models.load import check_head_size, check_size, check_source, load_config, load_model, load_tokenizer
    from llmctl.tasks import TASKS
    from llmctl.train.fingerprint import fingerprint

    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other.", "Pass one of them.")
    mode = "resume" if resume else "overwrite" if overwrite else "fresh"
    run = RunDir(Path(recipe.output_dir))
    # refusals only; nothing written yet (open() checks again, under the lock, that nothing changed)
    run.check(mode, force=force_resume, inputs=_local_inputs(recipe), recipe_file=_recipe_file(recipe))
    tracking.check_installed(recipe.train.report_to)
    dev = device_type(device)

    # 1. Everything that can be checked without a model: data, labels, model source and size.
    task = TASKS[recipe.task](recipe.data)
    train_split = tell(task.load_split("train", recipe.data.train))
    task = task.with_labels(task.fit(train_split))
    eval_split = tell(task.load_split("validation", recipe.data.validation)) if recipe.data.validation else None
    test_split = tell(task.load_split("test", recipe.data.test)) if recipe.data.test else None
    check_source(recipe.model.name_or_path, recipe.model.allow_pickle_weights, recipe.model.gguf_file)
    for item in task.check_model(recipe.model) or ():  # e.g. a head the checkpoint lacks, started at random
        note(item.text)
    config = load_config(recipe.model)
    task = task.for_model(config)  # multiple-choice picks its head by architecture
    check_size(recipe.model, task.auto_model, full_finetune=recipe.peft is None, config=config)
    _check_metric_for_best(recipe, task)  # after for_model: a task's metrics may depend on the architecture
    _check_max_length(recipe)
    check_head_size(recipe, task)  # transformers would refuse it only after the run started
    base_sha256 = None
    if recipe.peft is not None:
        from llmctl.models.adapters import check_before_load
        from llmctl.models.gguf import path as gguf_path
        from llmctl.models.trust import base_digests, check_base_unchanged, recorded_base

        check_before_load(recipe.peft, dev)
        # A LoRA run continues only on the base it started on: a base replaced at the same path
        # would pair the saved adapter with other weights.
        base = gguf_path(recipe.model.name_or_path, recipe.model.gguf_file)
        base_sha256 = base_digests(base)
        if resume:
            check_base_unchanged(base, recorded_base(run.path), f"run {run.path}", base_sha256)

    # 2. Heavy libraries and the processes.
    quiet_libraries()
    import torch
    from accelerate.utils import set_seed

    from llmctl.models.precision import resolve_precision
    from llmctl.train.loop import LoopSetup, plan_steps, train_loop
    from llmctl.train.optim import build_optimizer, build_scheduler
    from llmctl.train.sharding import fsdp_settings, full_model_state, prepare_for_training

    precision = resolve_precision(recipe.train.precision, dev)
    accelerator = make_accelerator(precision, dev,
                                   trackers=tracking.accelerator_options(recipe.train.report_to, run.path))
    if recipe.train.batch_size % accelerator.num_processes:
        raise UsageError(
            f"train.batch_size {recipe.train.batch_size} does not split evenly over {accelerator.num_processes} processes.",
            "Choose a batch size divisible by the number of processes.",
        )
    # Tokenizing can still reject the data (a QA question longer than max_length): do it
    # before the run directory exists, so fixing the data and rerunning needs no --overwrite.
    tokenizer = load_tokenizer(recipe.model, **task.tokenizer_kwargs())
    train_features, data_info = train_features_for(task, train_split, tokenizer, recipe.data, recipe.data.cache,
                                                   RowsProgress, USER_TOKENIZERS_PARALLELISM)
    tell(train_features)
    eval_features = tell(task.featurize(eval_split, tokenizer)) if eval_split is not None else None
    resume_from = run.latest_checkpoint() if resume else None  # partial ones are removed by run.open
    if resume and resume_from is None and (run.path / "metrics.json").is_file():
        raise UsageError(f"Run {run.path} already finished.", "Use --overwrite to train it again.")

    # 3. Seeded model, features, optimizer.
    set_seed(recipe.train.seed)
    if recipe.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    from llmctl.models.adapters import quantization_config, wrap

    quantized = quantization_config(recipe.peft) if recipe.peft is not None else None  # QLoRA: a 4-bit base
    model = load_model(auto_class(task.auto_model), recipe.model, tokenizer, quantization_config=quantized,
                       **task.model_kwargs())
    lora = None  # the adapter's summary (trainable parameters, layers) for a LoRA run
    if recipe.peft is not None:
        # `base`: a GGUF base is named by its file, so an adapter run can load it back (llmctl.models.adapters).
        model, lora = wrap(model, recipe.peft, task.auto_model, base)
        lora["base_sha256"] = base_sha256  # in environment.json too, so --resume can check it before a model is saved
        tell_lora(lora)
    speedups, attach_to_optimizer = [], None
    sharded = fsdp_settings(accelerator)
    if dev == "cpu" and sharded is None:
        from llmctl.train.speedups.apply import speed_up_cpu_training

        # On the transformers model inside the adapter: each speed-up checks the module types it
        # rewrites, and the seen-rows embedding declines a frozen embedding (LoRA freezes it).
        speedups, attach_to_optimizer = speed_up_cpu_training(model.get_base_model() if lora else model,
                                                              train_features, tokenizer, precision)
    steps_per_epoch, total_steps = plan_steps(len(train_features), recipe.train)
    run_print = fingerprint(recipe, train_features, eval_features, _test_file(recipe))
    if resume_from is not None:
        _check_resumable(resume_from, run_print, force_resume)

    def build(model):
        optimizer = build_optimizer(model, recipe.train)
        if attach_to_optimizer is not None:
            attach_to_optimizer(optimizer)
        return optimizer, build_scheduler(optimizer, recipe.train, total_steps)

    model, optimizer, scheduler = prepare_for_training(accelerator, model, build)

    # 4. Every check has passed and the model is loaded: only now is the directory created,
    # or cleared for --overwrite, so a start that fails leaves nothing behind.
    faults.hook("write", step=0, name="run.lock")  # tests make two starts race here
    run.open(mode, is_main=accelerator.is_main_process, resume_from=resume_from)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        from llmctl.config.load import recipe_to_yaml

        # environment.json first: it is what marks the directory as llmctl's (for --resume and
        # --overwrite), so a run killed right after starting can still be resumed.
        env = environment(str(accelerator.device), accelerator.num_processes)
        # argv: the latest command (a resume's); first_argv: the command that started the run.
        env["first_argv"] = (run.first_argv() if mode == "resume" else None) or env["argv"]
        run.write_json("environment.json", env
                       | {"precision": precision, "cpu_speedups": speedups,
                          "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
                       | _distributed_info(accelerator, sharded, dev)
                       | ({"peft": lora, "cpu_speedups_note": LORA_SPEEDUPS_NOTE} if lora else {}))
        run.write_text("recipe.yaml", recipe_to_yaml(recipe))

    meta = task.metadata() | {"precision": precision}  # eval and predict run in the precision it trained in
    if lora:
        # what `llmctl export --base` checks a relocated base model against
        meta["peft"] = lora

    def save_best(info: dict) -> None:
        """Called on every process: under FSDP gathering the weights takes all of them."""
        state = full_model_state(model) if sharded else None
        if accelerator.is_main_process:
            run.save_model(accelerator.unwrap_model(model), tokenizer, meta, info, state_dict=state)

    tracker = tracking.RunTracking.start(accelerator, recipe, run.path,
                                         checkpoint_step(resume_from) if resume_from is not None else 0,
                                         recipe.train.metric_for_best or task.default_metric())
    setup = LoopSetup(
        task=task, tokenizer=tokenizer, accelerator=accelerator, model=model, optimizer=optimizer,
        scheduler=scheduler, train_features=train_features, eval_features=eval_features, eval_split=eval_split,
        cfg=recipe.train, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        checkpoint_dir=run.checkpoints, save_best=save_best, precision=precision, resume_from=resume_from,
        fingerprint=run_print,
    )
    outcome = "failed"  # what the trackers are told when the run ends
    try:
        for event in train_loop(setup):
            if isinstance(event, Evaluated) and accelerator.is_main_process:
                run.append_metrics({"step": event.step, "epoch": round(event.epoch, 4), **event.metrics})
            tracker.record(event)  # train_log.jsonl, trackers, pictures: after metrics.jsonl, which curves.png draws
            if isinstance(event, Checkpointed) and not accelerator.is_main_process:
                continue
            if isinstance(event, Stopped):
                result = _result(event, run, accelerator, precision, total_steps) | {"data": data_info}
                if lora:
                    result["peft"] = lora
                if test_split is not None:
                    result["test_metrics"] = _evaluate_saved(run, task, tokenizer, accelerator, model,
                                                             test_split, recipe.train.eval_batch_size)
                if accelerator.is_main_process:
                    run.write_json("metrics.json", result)
                    rewrite_model_card(run.path, {"train": train_split, "validation": eval_split, "test": test_split})
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
        run.unlock()


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


def _local_inputs(recipe) -> dict[str, Path]:
    """The run's own model and data files, which --overwrite must never delete."""
    found = {}
    for key in ("train", "validation", "test"):
        spec = getattr(recipe.data, key, None)
        if spec and Path(spec).expanduser().exists():
            found[f"data.{key} file"] = Path(spec)
    if Path(recipe.model.name_or_path).expanduser().exists():
        found["model (model.name_or_path)"] = Path(recipe.model.name_or_path)
    return found


def _recipe_file(recipe) -> Path | None:
    """The recipe's own file, which --resume and --overwrite must not rewrite or delete."""
    source = getattr(recipe, "_source", None)
    return Path(source) if source and Path(source).is_file() else None


def _test_file(recipe) -> Path | None:
    """data.test as a local file: its bytes go into the resume fingerprint (the test split is only
    tokenized at the end, so there are no features to hash when the run resumes)."""
    spec = getattr(recipe.data, "test", None)
    return Path(spec).expanduser() if spec and Path(spec).expanduser().is_file() else None


def _check_metric_for_best(recipe, task) -> None:
    """A misspelled train.metric_for_best would otherwise fail at the first evaluation."""
    import difflib

    wanted, names = recipe.train.metric_for_best, task.metric_names()
    if wanted is None or names is None or wanted in names:
        return
    close = difflib.get_close_matches(wanted, names, n=1)
    raise UsageError(
        f"train.metric_for_best: '{wanted}' is not a metric of task {recipe.task}; it reports {', '.join(names)}.",
        f"Did you mean '{close[0]}'?" if close else "Use one of those names.",
    )


def _check_max_length(recipe) -> None:
    """A max_length past the model's position table crashes mid-training (index out of range)."""
    from llmctl.models.load import model_max_positions

    limit = model_max_positions(recipe.model)
    for key in ("max_length", "max_target_length"):
        value = getattr(recipe.data, key, None)
        if limit and value and value > limit:
            raise UsageError(
                f"data.{key} {value} is more than model {recipe.model.name_or_path} can take ({limit} positions).",
                f"Set data.{key} to at most {limit} (e.g. --set data.{key}={limit}).",
            )


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
