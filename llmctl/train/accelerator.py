"""The Accelerator a run trains (or evaluates) under, for the resolved precision and device."""

from __future__ import annotations


def make_accelerator(precision: str, device: str | None = None, trackers: dict | None = None):
    """An Accelerator for the resolved precision; works alone, under torchrun or accelerate launch
    (with --use_fsdp too, CPU included: llmctl.train.sharding). `trackers`: log_with and where
    they write (llmctl.train.tracking.accelerator_options)."""
    from accelerate import Accelerator

    from llmctl.models.precision import accelerate_mixed_precision
    from llmctl.train.sharding import check_fsdp_request, fsdp_plugin_for_cpu, switch_on_cpu_fsdp

    cpu = device == "cpu"
    check_fsdp_request(cpu)
    plugin = fsdp_plugin_for_cpu(cpu)
    accelerator = Accelerator(mixed_precision=accelerate_mixed_precision(precision), cpu=cpu, fsdp_plugin=plugin,
                              **(trackers or {}))
    switch_on_cpu_fsdp(accelerator, plugin)
    return accelerator
