"""Text generation and zero-shot scoring with decoder-only LMs (GPT-2, Llama, Qwen2, ...) and T5-family
(encoder-decoder) models.

    prompts.py   read prompts from arguments, a txt / jsonl / csv / tsv file or stdin; chat messages
    model.py     which checkpoints generate, tokenizer + model loading, context limits
    generate.py  batched generation with stop strings and finish reasons
    decoding.py  the decoding settings transformers gets: only the options given
    output.py    rows printed in input order as batches finish; what Ctrl-C keeps
    stream.py    print tokens as they come (one prompt on a terminal)
    zeroshot.py  score each label's verbalizer by log-likelihood (`llmctl eval` with zero_shot)
    loglikelihood.py  log P(continuation | context), tokenized and scored as lm-evaluation-harness does
"""
