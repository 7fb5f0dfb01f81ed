"""Key/value caches that keep room to grow, for the running batch.

transformers' DynamicLayer appends a step's keys and values with torch.cat, which copies the whole
cache every step. For a batch of 32 GPT-2-small sequences 150 tokens long, that is some 350 MB
written per step, and the step's time rose with every token. A RoomyLayer keeps each layer's keys
and values in a buffer with ROOM spare columns: a step writes its one column in place and
returns a view, and only every ROOM-th step (or after the batch splices its layers, batch.py)
copies the cache into a new buffer. The values are the same; only where they live changes.
"""

from __future__ import annotations

import functools

# Spare columns per buffer: a copy every ROOM steps instead of every step, for at most ROOM columns
# of memory per sequence and layer beyond what the cache holds.
ROOM = 32


def roomy_cache(config):
    """A DynamicCache for `config` whose full-attention layers keep room to grow (sliding-window
    layers, already bounded by their window, stay as transformers builds them)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    roomy = _roomy_class()
    cache.layers = [roomy() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@functools.cache
def _roomy_class():  # defined on first use: transformers is imported only when a server builds its batch
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        """`keys` / `values` are views of the first columns of larger buffers. Whoever replaces
        them (the batch's splice and cut) makes the next update move them into a new buffer."""

        def update(self, key_states, value_states, *args, **kwargs):
            import torch

            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            keys, values = self.keys, self.values
            have = keys.shape[-2] if keys.dim() == 4 else 0
            new = key_states.shape[-2]
            buffers = getattr(self, "_buffers", None)
            if buffers is None or buffers[2] is not keys or buffers[0].shape[-2] < have + new \
                    or buffers[0].shape[0] != key_states.shape[0]:
                rows, heads, _, width = key_states.shape
                room = have + new + ROOM
                key_buffer = torch.empty(rows, heads, room, width, dtype=key_states.dtype, device=key_states.device)
                value_shape = (rows, value_states.shape[1], room, value_states.shape[-1])
                value_buffer = torch.empty(value_shape, dtype=value_states.dtype, device=value_states.device)
                if have:
                    key_buffer[:, :, :have] = keys
                    value_buffer[:, :, :have] = values
                buffers = [key_buffer, value_buffer, None]
            buffers[0][:, :, have:have + new] = key_states
            buffers[1][:, :, have:have + new] = value_states
            self.keys, self.values = buffers[0][:, :, :have + new], buffers[1][:, :, :have + new]
            buffers[2] = self.keys
            self._buffers = buffers
            return self.keys, self.values

    return RoomyLayer
