"""The decoding settings handed to transformers: exactly the options given, nothing else.

transformers fills every setting left unset first from the checkpoint's generation_config.json
(a chat model's temperature 0.6 / top_p 0.9, or top_k 50), then from its own defaults (top_k
50 again), so `--sample` alone would not sample from the model's distribution. The checkpoint's
config is cut down to its token ids (eos, pad, decoder start, forced and suppressed tokens) and
cache settings; what it said about decoding is dropped and named in a warning, and each knob
llmctl exposes is passed explicitly: unset means off (top_k 0, top_p 1.0, temperature 1.0).
"""

from __future__ import annotations

KEEP = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "forced_bos_token_id",
        "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens", "bad_words_ids",
        "cache_implementation", "cache_config", "use_cache")
# Bookkeeping, or replaced by a setting every run passes (--max-new-tokens): dropped without a word.
QUIET = ("_from_model_config", "transformers_version", "max_length", "max_new_tokens", "output_attentions",
         "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate", "num_return_sequences")
# Values a checkpoint may write that change nothing, so dropping them needs no warning.
NEUTRAL = {"do_sample": False, "num_beams": 1, "temperature": 1.0, "top_p": 1.0, "typical_p": 1.0,
           "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "length_penalty": 1.0, "min_length": 0,
           "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "epsilon_cutoff": 0.0,
           "eta_cutoff": 0.0, "early_stopping": False, "num_beam_groups": 1, "diversity_penalty": 0.0}


def token_ids_only(model) -> dict:
    """Cut `model.generation_config` down to KEEP; returns the decoding settings dropped from it.

    Idempotent. The cut is needed as well as explicit knobs: transformers fills any knob left at
    None (min_p, penalty_alpha, ...) from the model's own config."""
    from transformers import GenerationConfig

    own = model.generation_config
    blank = GenerationConfig()
    missing = object()
    dropped = {k: v for k, v in own.to_dict().items()
               if k not in KEEP and k not in QUIET and v != getattr(blank, k, None) and v != NEUTRAL.get(k, missing)}
    model.generation_config = GenerationConfig(**{k: getattr(own, k) for k in KEEP if getattr(own, k, None) is not None})
    return dropped


def decoding(settings) -> dict:
    """The generate() knobs for `settings`. Sampling knobs only when sampling: under greedy or
    beam search transformers ignores them (and warns about any it considers set)."""
    knobs = {"do_sample": settings.sample, "num_beams": settings.num_beams,
             "repetition_penalty": settings.repetition_penalty or 1.0}
    if settings.sample:
        knobs |= {"temperature": settings.temperature or 1.0, "top_k": settings.top_k or 0,  # 0: top-k off
                  "top_p": settings.top_p or 1.0}
    return knobs


def generation_config(model, tokenizer, settings):
    """The config generate() runs with: the checkpoint's token ids, the user's decoding, nothing more."""
    import copy

    token_ids_only(model)
    config = copy.deepcopy(model.generation_config)
    config.update(**decoding(settings), max_new_tokens=settings.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    return config


def describe_dropped(dropped: dict) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(dropped.items()))
    return (f"the checkpoint's generation_config.json sets {shown}; llmctl generate ignores it (only the options "
            f"given apply, unset ones are off): pass e.g. --sample / --temperature / --top-k / --top-p to use them.")
