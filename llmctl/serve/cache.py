"""Key/value caches that keep room to grow, for the running batch.

transformers' DynamicLayer appends a step's keys and values with torch.cat, which copies the whole
cache every step. For a batch of 32 GPT-2-small sequences 150 tokens long, that is some 350 MB
written per step, and the step's time rose with every token. A RoomyLayer keeps each layer's keys
and values in a buffer with ROOM spare columns: a step writes its one column in place and
returns a view, and only every ROOM-th step (or after the batch splices new rows in, batch.py)
copies the cache into a new buffer. Rows that leave are cut in place: the kept rows move up within
the buffers. The values are the same; only where they live changes.
"""

from __future__ import annotations

import functools

# Spare columns per buffer: a copy every ROOM steps instead of every step, for at most ROOM columns
# of memory per sequence and layer beyond what the cache holds.
ROOM = 32
_moves = [0]  # buffers moved so far: the engine hands freed memory back after a step that moved any


def moves() -> int:
    return _moves[0]


def release_freed() -> None:
    """Hand the pages of freed blocks back to the system (glibc's malloc_trim). A cache that grows a
    row or a few columns at a time leaves holes the next, larger, block cannot use: 32 GPT-2-small
    sequences joining one by one took a batch 600 MB above its idle size for a 315 MB cache, and
    320 MB with the holes handed back. A few milliseconds; nothing where the C library has no such call."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): the allocator keeps its own ways
        return None


def roomy_cache(config):
    """A DynamicCache for `config` whose full-attention layers keep room to grow (sliding-window
    layers, already bounded by their window, stay as transformers builds them)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    roomy = _roomy_class()
    cache.layers = [roomy() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def cut(layer, rows: list[int], columns: int) -> None:
    """Keep these rows of a cache layer and drop its first `columns` columns: in place within a
    RoomyLayer's buffers, so sequences leaving allocate nothing; by indexing for any other layer."""
    if isinstance(layer, _roomy_class()) and layer.keep(rows, columns):
        return
    layer.keys, layer.values = layer.keys[rows, :, columns:], layer.values[rows, :, columns:]


def layer_types(model) -> list[str]:
    """The kind of each layer of the model's cache ("full_attention", "sliding_attention", ...)."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    kinds, _ = get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))
    return kinds


def _slot(attribute: str, slot: int):
    """`keys` / `values` of a RoomyLayer: replacing one with a tensor that is not its view lets the
    buffers go at once, else they would live on beside the spliced cache."""

    def assign(layer, tensor):
        setattr(layer, attribute, tensor)
        if layer._buffers is not None and tensor is not layer._buffers[slot]:
            layer._buffers = None

    return property(lambda layer: getattr(layer, attribute), assign)


@functools.cache
def _roomy_class():  # defined on first use: transformers is imported only when a server builds its batch
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        """`keys` / `values` are views of a run of columns (from `_start`) of larger buffers.
        Whoever replaces them (the batch's splice) lets the buffers go at once, and the next update
        moves the new ones into buffers with room; a cut (`cut`) stays within them."""

        _buffers = None  # [key buffer, value buffer, keys view, values view]
        _start = 0  # the buffers' column where the views begin

        keys = _slot("_keys", 2)
        values = _slot("_values", 3)

        def update(self, key_states, value_states, *args, **kwargs):
            import torch

            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            keys, values = self.keys, self.values
            have = keys.shape[-2] if keys.dim() == 4 else 0
            new = key_states.shape[-2]
            buffers, start = self._buffers, self._start
            if buffers is None or start + have + new > buffers[0].shape[-2]:
                rows, heads, _, width = key_states.shape
                room = have + new + ROOM
                key_buffer = torch.empty(rows, heads, room, width, dtype=key_states.dtype, device=key_states.device)
                value_shape = (rows, value_states.shape[1], room, value_states.shape[-1])
                value_buffer = torch.empty(value_shape, dtype=value_states.dtype, device=value_states.device)
                if have:
                    key_buffer[:, :, :have] = keys
                    value_buffer[:, :, :have] = values
                buffers, start = [key_buffer, value_buffer], 0
                _moves[0] += 1
            rows, end = key_states.shape[0], start + have + new
            buffers[0][:rows, :, start + have:end] = key_states
            buffers[1][:rows, :, start + have:end] = value_states
            self._view(buffers, rows, start, end)
            return self.keys, self.values

        def keep(self, rows: list[int], cut: int) -> bool:
            """Keep these rows (ascending) and drop the first `cut` columns in place: each kept row
            moves up within the buffers. False when the layer is not in buffers (spliced since the
            last step)."""
            buffers = self._buffers
            if buffers is None:
                return False
            start, end = self._start, self._start + self.keys.shape[-2]
            for to, row in enumerate(rows):
                if to != row:
                    buffers[0][to, :, start:end] = buffers[0][row, :, start:end]
                    buffers[1][to, :, start:end] = buffers[1][row, :, start:end]
            self._view(buffers, len(rows), start + cut, end)
            return True

        def _view(self, buffers, rows: int, start: int, end: int) -> None:
            self._buffers = buffers[:2] + [buffers[0][:rows, :, start:end], buffers[1][:rows, :, start:end]]
            self._start = start
            self.keys, self.values = self._buffers[2], self._buffers[3]

    return RoomyLayer
