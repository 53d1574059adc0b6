"""A KV cache that grows in place, for the engine's many short forward passes.

transformers' ``DynamicLayer`` builds a new tensor for the whole cache at every
forward pass (``torch.cat``): with a full window about 40 MB copied per decision
on the embedded model, and again for every token a reply generates. Here keys
and values live in buffers with ``CACHE_GROWTH`` tokens to spare, new tokens are
written in place, and ``keys``/``values`` are views of the filled part, so the
inherited ``crop`` is still a slice. Buffers take the dtype and device of the
states written into them, so a bf16 model on CUDA gets a bf16 CUDA cache.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

CACHE_GROWTH = 256  # tokens of spare room a KV cache layer gains when it is full


class AppendLayer(DynamicLayer):
    """A KV cache layer that writes new tokens into spare room instead of concatenating."""

    def lazy_initialization(self, key_states, value_states):
        super().lazy_initialization(key_states, value_states)
        self._buffers = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if self._buffers is None or end > self._buffers[0].shape[-2]:
            self._buffers = [_grown(old, new, start, end + CACHE_GROWTH)
                             for old, new in ((self.keys, key_states), (self.values, value_states))]
        keys, values = self._buffers
        keys[..., start:end, :] = key_states
        values[..., start:end, :] = value_states
        self.keys, self.values = keys[..., :end, :], values[..., :end, :]
        return self.keys, self.values


def _grown(old: torch.Tensor, new: torch.Tensor, filled: int, size: int) -> torch.Tensor:
    """A buffer of ``size`` positions holding the ``filled`` ones of ``old`` (dtype and device of ``new``)."""
    buffer = new.new_empty((*new.shape[:-2], size, new.shape[-1]))
    if filled:
        buffer[..., :filled, :] = old
    return buffer


def new_cache(config) -> DynamicCache:
    """A DynamicCache whose full-attention layers append in place; sliding-window layers stay as they are."""
    cache = DynamicCache(config=config)
    cache.layers = [AppendLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    if cache.layer_class_to_replicate is DynamicLayer:
        cache.layer_class_to_replicate = AppendLayer
    return cache
