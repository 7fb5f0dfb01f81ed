"""The one way to get a model and tokenizer: hub ids, folders, GGUF files, run directories and
LoRA adapters; the checks every load passes (custom code, missing weights, size, the LoRA base);
precision and devices.
"""
