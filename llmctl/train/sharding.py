"""FSDP (fully sharded data parallel) under `accelerate launch --use_fsdp`: what the rest of
llmctl needs to know about a sharded model, in one place.

Under FSDP each process holds a shard of every parameter, gradient and optimizer moment, so
the places that read or write whole tensors go through here: the model's full state dict
(best model and checkpoints), the optimizer's full state dict (checkpoints), loading both
back (resume, the test split after training) and the model-then-optimizer order of FSDP1.
Full state dicts keep checkpoints in llmctl's own format (safetensors + JSON, no pickle), the
same as without FSDP; accelerate's save_state would write torch.distributed.checkpoint files,
whose metadata is pickled.

CPU: accelerate 1.16 turns `--use_fsdp` into FSDP only for accelerator devices
(accelerate/state.py: `distributed_type = FSDP` sits in the MULTI_GPU/MULTI_XPU/... branch),
so on CPU it silently falls back to DDP. torch's FSDP2 (`fully_shard`) does run on CPU with
gloo, so for `--fsdp_version 2` llmctl hands accelerate the plugin it built and switches the
state to FSDP; FSDP1 on CPU is refused (see `check_fsdp_request`).
"""

from __future__ import annotations

import os

CPU_FSDP_NOTE = ("accelerate runs FSDP only on accelerator devices; llmctl switched it on for CPU "
                 "(torch fully_shard over gloo)")


def fsdp_requested() -> bool:
    """True when launched with `accelerate launch --use_fsdp` (or an FSDP accelerate config)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_fsdp_request(cpu: bool) -> None:
    """FSDP1 on CPU cannot work here: accelerate's plugin refuses `sync_module_states` (on by
    default in `accelerate launch`) on CPU, and without it torch 2.13 crashes (SIGSEGV in
    torch/distributed/fsdp/_state_dict_utils.py param_hook) gathering a full state dict with
    offload_to_cpu, which accelerate sets for several processes. Say so before accelerate does."""
    from llmctl.errors import UsageError

    if cpu and fsdp_requested() and os.environ.get("FSDP_VERSION", "1") != "2":
        raise UsageError(
            "FSDP version 1 does not run on CPU (accelerate refuses it; torch crashes saving its state).",
            "Add --fsdp_version 2 to `accelerate launch` (or fsdp_version: 2 in the accelerate config file).",
        )


def fsdp_plugin_for_cpu(cpu: bool):
    """The plugin accelerate would build from the launch settings, when FSDP was asked for on CPU."""
    if not (cpu and fsdp_requested()):
        return None
    from accelerate.utils import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin()


def switch_on_cpu_fsdp(accelerator, plugin) -> None:
    """Make accelerate treat a several-process CPU run as FSDP (accelerate left it as DDP)."""
    from accelerate.utils import DistributedType

    state = accelerator.state
    if plugin is None or state.distributed_type != DistributedType.MULTI_CPU:
        return  # one process: nothing to shard; accelerate already set FSDP elsewhere
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)  # what accelerate does for GPUs
    from accelerate.state import PartialState

    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    # As accelerate does for GPUs: AcceleratorState copies PartialState's type back each
    # time it is built (prepare and gather build it), which would undo the switch.
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def fsdp_version(accelerator) -> int | None:
    """1 or 2 when the model is sharded with FSDP, else None."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        return None
    return accelerator.state.fsdp_plugin.fsdp_version


def fsdp_settings(accelerator) -> dict | None:
    """What environment.json records about the sharding, None without FSDP."""
    version = fsdp_version(accelerator)
    if version is None:
        return None
    plugin = accelerator.state.fsdp_plugin
    policy = getattr(plugin.auto_wrap_policy, "func", plugin.auto_wrap_policy)  # a partial once prepared
    settings = {"version": version, "reshard_after_forward": str(plugin.reshard_after_forward),
                "auto_wrap_policy": getattr(policy, "__name__", str(policy)),
                "transformer_cls_to_wrap": plugin.transformer_cls_names_to_wrap,
                "cpu_offload": str(plugin.cpu_offload), "cpu_ram_efficient_loading": plugin.cpu_ram_efficient_loading,
                "activation_checkpointing": plugin.activation_checkpointing,
                "mixed_precision": str(plugin.mixed_precision_policy)}
    if accelerator.device.type == "cpu":
        settings["note"] = CPU_FSDP_NOTE
    return settings


def prepare_for_training(accelerator, model, build):
    """`accelerator.prepare` the model and the optimizer `build(model)` returns as
    (optimizer, scheduler), in the order the sharding needs: FSDP1 replaces the parameters
    with flat shards, so its optimizer must be built on the prepared model; FSDP2 wants both
    in one prepare call (it swaps the optimizer's parameters for sharded ones); DDP and one
    process accept either."""
    if fsdp_version(accelerator) == 1:
        model = accelerator.prepare(model)
        optimizer, scheduler = build(model)
        return model, accelerator.prepare(optimizer), scheduler
    optimizer, scheduler = build(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, scheduler


def _options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def _plain(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch one


def full_model_state(model) -> dict:
    """The whole model's state dict on CPU, gathered from the shards: a collective, call it
    on every process; the main process gets the tensors, the others an empty dict."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return _unshare(get_model_state_dict(model, options=_options(cpu_offload=True)))


def full_optimizer_state(model, optimizer) -> dict:
    """The optimizer's state dict with whole moments keyed by parameter name (a collective)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, _plain(optimizer), options=_options(cpu_offload=True))


def load_full_model_state(model, state: dict, strict: bool = True) -> None:
    """Every process passes the whole state dict; each keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_options(strict=strict))


def load_full_optimizer_state(model, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, _plain(optimizer), state, options=_options())


def _unshare(state: dict) -> dict:
    """Tied weights (shared input/output embeddings) come back as one tensor under two
    names; safetensors refuses to write that, so the second name gets its own copy."""
    seen, out = set(), {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        out[name] = tensor.clone() if key in seen and tensor.numel() else tensor
        seen.add(key)
    return out
