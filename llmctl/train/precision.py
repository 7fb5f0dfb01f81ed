"""Kept only for bench/generate.py, which imports cpu_supports_bf16 from here; precision is
decided in llmctl/precision.py. Remove once bench/generate.py imports it from there."""

from llmctl.precision import cpu_supports_bf16  # noqa: F401
