"""One-row decoding steps through numpy's BLAS (OpenBLAS in numpy's wheels) instead of PyTorch's (MKL
in its CPU wheels), when generation/tuning.py measured it faster on this device.

A step over one sequence is a string of matrix-vector products, bound by how fast the weights stream
from memory. Where this was written (2 AMD EPYC cores, AVX2) numpy's kernel read GPT-2-small's
weights in 20 ms per token against PyTorch's 29 to 36 ms; on other CPUs MKL may win, so nothing is
assumed. Only the Linear layers (and GPT-2's Conv1D) of an fp32 model on the CPU change, and only for
an input of one row; a product summed in another order differs in the last bit, as batching already
makes it (README, "Generation").

Two thread pools on two cores fight: OpenBLAS's and PyTorch's OpenMP workers each spin a while
after their work, and steps alternating between them ran at a sixth of their speed. So once a
one-row product has run, PyTorch's own ops (norms, attention over one position, the step's work on
the logits) stay on one thread, which for one row costs little, and numpy's BLAS has the cores; an
input of more rows (the prompt, a batch) gets PyTorch's threads back for that product and keeps them.
`one_row_threads_restored()` gives them back when a generation ends.
"""

from __future__ import annotations

import contextlib

_THREADS: list[int] = []  # PyTorch's thread count while one-row products hold it at 1


def install(model) -> int:
    """Route one-row inputs of the model's fp32 CPU Linear / Conv1D layers through numpy. A Linear
    weight must already be column-major (tuning.lay_out "columns"), so numpy reads it as [in, out]
    in place: no copy of any weight. Returns how many layers were routed."""
    import torch
    from transformers.pytorch_utils import Conv1D

    routed = 0
    for module in model.modules():
        # The classes themselves: a subclass may compute more than the product (Llama 4's MoE router).
        if type(module) is torch.nn.Linear:
            weight = module.weight.detach().t()  # [in, out]
        elif type(module) is Conv1D:
            weight = module.weight.detach()  # GPT-2 keeps [in, out] already
        else:
            continue
        if weight.dtype != torch.float32 or weight.device.type != "cpu" or not weight.is_contiguous():
            continue
        bias = module.bias.detach() if getattr(module, "bias", None) is not None else None
        module.forward = _one_row(module.forward, weight.numpy(), bias)
        routed += 1
    return routed


def _one_row(torch_forward, weight, bias):
    import torch

    def forward(x):
        if x.dtype != torch.float32 or x.numel() != x.shape[-1]:
            _torch_threads()
            return torch_forward(x)
        _one_thread()
        out = torch.from_numpy(x.detach().reshape(-1).numpy() @ weight)
        if bias is not None:
            out += bias
        return out.view(*x.shape[:-1], -1)

    return forward


def _one_thread() -> None:
    import torch

    if not _THREADS:
        _THREADS.append(torch.get_num_threads())
        torch.set_num_threads(1)


def _torch_threads() -> None:
    import torch

    if _THREADS:
        torch.set_num_threads(_THREADS.pop())


@contextlib.contextmanager
def one_row_threads_restored():
    """Around a generation: PyTorch's own thread count again at its end, when it ended on one-row steps."""
    try:
        yield
    finally:
        _torch_threads()
