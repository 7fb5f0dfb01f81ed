"""Text generation and zero-shot scoring with GPT-2- (decoder-only) and T5-family (encoder-decoder) models.

    prompts.py   read prompts from arguments, a txt / jsonl file or stdin
    model.py     which checkpoints generate, tokenizer + model loading, context limits
    generate.py  batched generation with stop strings and finish reasons
    stream.py    print tokens as they come (one prompt on a terminal)
    zeroshot.py  score each label's verbalizer by log-likelihood (`llmctl eval` with zero_shot)
"""
