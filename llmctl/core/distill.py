"""`distill:` and `model.init_from` in finetune: the checks that need no weights (preflight), the
student cut from its source's layers, and the teacher's outputs for the loop's loss
(llmctl.train.distill)."""

from __future__ import annotations

from pathlib import Path

from llmctl.errors import ModelError, RecipeError


def check(recipe, task, config) -> None:
    """Before any weight loads: model.layers exist in model.init_from; the teacher is a model whose
    tokenizer vocabulary (and, for classification, label set in order) is the student's."""
    if recipe.model.init_from is not None:
        from llmctl.models.init_from import check_layers

        check_layers(recipe.model.layers, config, recipe.model.init_from)
    if recipe.distill is None:
        return
    from transformers import AutoConfig, AutoTokenizer

    from llmctl.models.gate import pretrained
    from llmctl.models.load import load_tokenizer
    from llmctl.models.saved import find_model_dir

    teacher, student = recipe.distill.teacher, recipe.model.name_or_path
    folder = find_model_dir(teacher)
    if not (folder / "config.json").is_file():
        raise ModelError(f"distill.teacher {teacher}: not a run directory or saved model (no config.json).",
                         "Give the run directory of the teacher's `llmctl finetune`, or a save_pretrained folder.")
    vocab_t = pretrained(AutoTokenizer, folder).get_vocab()
    vocab_s = load_tokenizer(recipe.model).get_vocab()
    if vocab_t != vocab_s:
        raise RecipeError(f"distill.teacher {teacher} and model.name_or_path {student} have different tokenizer "
                          f"vocabularies ({len(vocab_t):,} and {len(vocab_s):,} tokens"
                          f"{', same size, other ids' if len(vocab_t) == len(vocab_s) else ''}); "
                          "the teacher's outputs can only teach a student that shares its tokenizer.",
                          "Start the student from the teacher's family (e.g. model.init_from: TEACHER with model.layers).")
    if recipe.distill.hidden_weight > 0:
        hidden_map(recipe, config, pretrained(AutoConfig, folder))
    if task.distill_targets == "sequence":
        t_config = pretrained(AutoConfig, folder)
        t_labels = [t_config.id2label[i] for i in range(t_config.num_labels)]
        s_labels = list(task.labels.names)
        if t_labels != s_labels:
            raise RecipeError(f"distill.teacher {teacher} predicts the labels {t_labels} and this run's data "
                              f"has {s_labels}: the teacher's logits must mean the student's labels, in the same order.",
                              "Distill on data with the teacher's labels (set data.label_names to its list).")


def hidden_map(recipe, student_config, teacher_config) -> list[int]:
    """distill.hidden_layers, checked, or the default: student layer j of m (1-based) matched to
    teacher layer round(j * n / m), so the last meets the last (PKD's "skip" choice)."""
    from llmctl.models.init_from import layer_count

    cfg, teacher = recipe.distill, recipe.distill.teacher
    m = len(recipe.model.layers) if recipe.model.layers else layer_count(student_config)
    n = layer_count(teacher_config)
    if student_config.hidden_size != teacher_config.hidden_size:
        raise RecipeError(f"distill.hidden_weight: the student's hidden states have {student_config.hidden_size} "
                          f"values and the teacher {teacher}'s {teacher_config.hidden_size}, so they cannot be "
                          "compared.", "Start the student from the teacher's layers (model.init_from) or drop "
                                       "distill.hidden_weight.")
    chosen = cfg.hidden_layers if cfg.hidden_layers is not None else [round((j + 1) * n / m) for j in range(m)]
    if len(chosen) != m or not all(1 <= layer <= n for layer in chosen):
        raise RecipeError(f"distill.hidden_layers {chosen}: give one teacher layer per student layer ({m}), each "
                          f"from 1 to {n} (the teacher {teacher} has {n}).",
                          f"e.g. distill.hidden_layers: {[round((j + 1) * n / m) for j in range(m)]}, or drop it.")
    return list(chosen)


def init_student(auto_class, recipe, tokenizer, **overrides):
    """model.init_from cut down to model.layers (llmctl.models.init_from)."""
    from llmctl.models.init_from import cut_layers
    from llmctl.models.load import load_model

    source = load_model(auto_class, recipe.model, tokenizer, **overrides)
    student = cut_layers(source, auto_class, recipe.model.layers)
    del source
    return student


def build_distiller(recipe, task, features, tokenizer, device, notes: list[str]):
    """(the loop's Distiller, the training features: with distill.augment, followed by their
    perturbed copies labelled by the teacher), the teacher's outputs read from the feature cache or computed now.
    Called before the training seed is set, so running the teacher changes nothing of the run's
    random numbers (alpha 0 trains exactly as without distill)."""
    from llmctl.data.inputs import local_files
    from llmctl.models.saved import find_model_dir
    from llmctl.train.distill import Distiller, teacher_targets

    cfg = recipe.distill
    folder = Path(find_model_dir(cfg.teacher))
    layers = None
    if cfg.hidden_weight > 0:
        from transformers import AutoConfig

        from llmctl.models.gate import pretrained
        from llmctl.models.load import load_config

        layers = hidden_map(recipe, load_config(recipe.model), pretrained(AutoConfig, folder))
    rows = len(features)
    if cfg.augment:
        from llmctl.train.augment import perturbed_copies

        features = perturbed_copies(features, cfg.augment, recipe.train.seed, tokenizer.mask_token_id,
                                    set(tokenizer.all_special_ids))
    use_cache = bool(recipe.data.cache and local_files(recipe.data.train))
    targets, source = teacher_targets(cfg, task, features, tokenizer, folder, device, use_cache, notes, layers)
    if cfg.augment:
        import numpy as np

        guesses = np.asarray(targets.columns["logits"][rows:]).argmax(-1)
        kept = float(np.mean(guesses == np.repeat(features.columns["labels"][:rows], cfg.augment)))
        features.columns["labels"][rows:] = guesses.tolist()
        notes.append(f"distill: {rows:,} training rows and {len(guesses):,} perturbed copies, labelled by the "
                     f"teacher ({kept:.1%} keep their row's label)")
    info = {"teacher": str(cfg.teacher), "alpha": cfg.alpha, "temperature": cfg.temperature,
            "top_k": cfg.top_k if task.distill_targets == "tokens" else None, "teacher_outputs": source}
    if layers:
        info |= {"hidden_weight": cfg.hidden_weight, "hidden_layers": layers}
    if cfg.augment:
        info |= {"augment": cfg.augment, "copies_keeping_their_label": round(kept, 4)}
    return Distiller(task.distill_targets, targets, cfg.alpha, cfg.temperature, info, cfg.hidden_weight), features
