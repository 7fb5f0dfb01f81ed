"""Text generation and zero-shot scoring with decoder-only LMs (GPT-2, Llama, Qwen2, ...) and T5-family
(encoder-decoder) models. Nothing here prints: rows and text pieces go to the caller's callbacks, warnings
to the `llmctl` logger, and the command (llmctl.cli.generate, llmctl.cli._rows) renders them.

    prompts.py   read prompts from arguments, a txt / jsonl / csv / tsv file or stdin; chat messages
    model.py     which checkpoints generate, tokenizer + model loading, context limits
    generate.py  batched generation with stop strings and finish reasons
    decoding.py  the decoding settings transformers gets: only the options given
    stream.py    hand text to the caller as tokens come (one prompt), never past a stop string
    run.py       generate_text: prompts in, rows handed over per batch (on_rows) or text per token (stream)
    zeroshot.py  score each label's verbalizer by log-likelihood (`llmctl eval` with zero_shot)
    fewshot.py   zero_shot.num_fewshot: examples before each prompt, drawn as lm-evaluation-harness draws them
    choices.py   zero-shot multiple choice with a generative model
    loglikelihood.py  log P(continuation | context), tokenized and scored as lm-evaluation-harness does
"""
