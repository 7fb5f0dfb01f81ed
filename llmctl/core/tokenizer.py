"""The run's tokenizer, for finetune, its dry run and the doctor: a pretrained model's own, a tokenizer
directory next to a new model (model.config), or one trained on the training split
(model.tokenizer.train) and kept in the cache (llmctl.data.tokenizer_cache) for the next run."""

from __future__ import annotations


def tokenizer_for(recipe, task, train_split):
    """The tokenizer; `train_split` (task.load_split's) is what a trained tokenizer learns from."""
    from llmctl.config.schema import TokenizerTrain
    from llmctl.console import note
    from llmctl.models.load import load_tokenizer

    model_cfg = recipe.model
    if isinstance(model_cfg.tokenizer, TokenizerTrain):
        from llmctl.data.tokenizer_cache import trained_tokenizer
        from llmctl.models.scratch import build_config, family

        spec = model_cfg.tokenizer
        folder, hit = trained_tokenizer(spec, family(build_config(model_cfg)), recipe.data,
                                        lambda: task.corpus(train_split), train_split.where, recipe.data.cache)
        model_cfg = model_cfg.model_copy(update={"tokenizer": str(folder)})
        tokenizer = load_tokenizer(model_cfg, **task.tokenizer_kwargs())
        note(f"tokenizer: {spec.train}, {len(tokenizer):,} tokens, "
             + (f"from the cache ({folder})" if hit else f"trained on {train_split.where} (cached in {folder})"))
    else:
        tokenizer = load_tokenizer(model_cfg, **task.tokenizer_kwargs())
    if model_cfg.scratch:
        from llmctl.models.scratch import build_config, fit_tokenizer

        said = fit_tokenizer(build_config(model_cfg), tokenizer)[1]
        if said:
            note(said)
    return tokenizer


def new_model_size(model_cfg, auto_class_name: str) -> dict | None:
    """A new model's parameters and the memory training it needs (weights, gradients, AdamW's two
    moments in fp32), counted on the meta device; None for a pretrained model."""
    if not model_cfg.scratch:
        return None
    import transformers

    from llmctl.models.load import load_config
    from llmctl.models.size import memory_needed

    config = load_config(model_cfg)
    found = memory_needed(getattr(transformers, auto_class_name), config)
    return None if found is None else {"model_type": config.model_type, "vocab_size": config.vocab_size} | found
