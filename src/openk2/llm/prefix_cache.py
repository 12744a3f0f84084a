"""Prefix caching: the attention cache of token prefixes that earlier requests computed, reused.

An agent loop resends the whole conversation every turn, so each request starts with the previous
one's tokens. The cache keeps per-token cache tensors (for K2 the MLA latent c^KV and the shared
rotary key, kv_lora_rank + qk_rope_head_dim values per token and layer: small, which is what makes
this cheap) in blocks of `block_size` tokens, each block keyed by its tokens and everything before
them (a hash chain), least recently used blocks evicted first. A request reuses the longest chain of
blocks that matches its prompt and computes only the rest.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch

# One sequence's cache: tensors whose first dimension is the token position, e.g. per layer
# [tokens, kv_lora_rank] and [tokens, qk_rope_head_dim] for K2's MLA.
SequenceKV = list[torch.Tensor]


@dataclass
class _Block:
    tokens: tuple[int, ...]
    kv: SequenceKV


@dataclass
class PrefixCacheStats:
    queried_tokens: int = 0  # prompt tokens looked up
    hit_tokens: int = 0  # of them, found in the cache

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.queried_tokens if self.queried_tokens else 0.0


class PrefixCache:
    def __init__(self, capacity_tokens: int = 65_536, block_size: int = 16) -> None:
        if capacity_tokens < block_size or block_size < 1:
            raise ValueError(
                f"capacity_tokens, block_size: expected capacity >= block size >= 1, got "
                f"{capacity_tokens}, {block_size}"
            )
        self.block_size = block_size
        self.capacity_blocks = capacity_tokens // block_size
        self.stats = PrefixCacheStats()
        self._blocks: OrderedDict[int, _Block] = OrderedDict()

    def _keys(self, token_ids: list[int]) -> list[tuple[int, tuple[int, ...]]]:
        """(chain key, tokens) of every full block of `token_ids`."""
        keys = []
        parent = 0
        for start in range(0, len(token_ids) - self.block_size + 1, self.block_size):
            tokens = tuple(token_ids[start : start + self.block_size])
            parent = hash((parent, tokens))
            keys.append((parent, tokens))
        return keys

    def lookup(self, token_ids: list[int]) -> tuple[int, SequenceKV | None]:
        """(how many leading tokens are cached, their cache); at least one token is always left to compute."""
        self.stats.queried_tokens += len(token_ids)
        found: list[_Block] = []
        for key, tokens in self._keys(token_ids[:-1]):
            block = self._blocks.get(key)
            if block is None or block.tokens != tokens:
                break
            self._blocks.move_to_end(key)
            found.append(block)
        if not found:
            return 0, None
        cached = len(found) * self.block_size
        self.stats.hit_tokens += cached
        kv = [torch.cat([block.kv[part] for block in found]) for part in range(len(found[0].kv))]
        return cached, kv

    def insert(self, token_ids: list[int], kv: SequenceKV) -> None:
        """Remember the full blocks of `token_ids`, whose cache is `kv` (one row per token)."""
        for number, (key, tokens) in enumerate(self._keys(token_ids)):
            if key in self._blocks:
                self._blocks.move_to_end(key)
                continue
            start = number * self.block_size
            block_kv = [part[start : start + self.block_size].clone() for part in kv]
            self._blocks[key] = _Block(tokens, block_kv)
            while len(self._blocks) > self.capacity_blocks:
                self._blocks.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (after a weight update the cached values are stale)."""
        self._blocks.clear()

    @property
    def cached_tokens(self) -> int:
        return len(self._blocks) * self.block_size
