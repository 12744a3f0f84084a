"""OpenK2's model under continuous batching: per-sequence MLA latent caches, one decoding step for all.

Per token and layer the cache holds what MLA decodes from (K2 report §2.3): the normalised latent c^KV
(kv_lora_rank values) and the rotated shared key k^R (qk_rope_head_dim values), nothing per head.
The running batch lays them out right-aligned (`RowCache`); `LatentCache.first_slot` is where each
row's sequence starts, which gives every row its own positions and hides the columns before it.
"""

import torch

from openk2.llm.prefix_cache import SequenceKV
from openk2.llm.runner import ModelRunner, PrefillItem
from openk2.model import K2ForCausalLM
from openk2.model.checkpoint import from_hf_state_dict, read_checkpoint_tensors
from openk2.model.mla import LatentCache


class K2Runner(ModelRunner):
    def __init__(self, model: K2ForCausalLM) -> None:
        super().__init__()
        self.model = model.eval()

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @property
    def _dtype(self) -> torch.dtype:
        return self.model.lm_head.weight.dtype

    @torch.inference_mode()
    def prefill(
        self, token_ids: list[int], cached: SequenceKV | None, logits_for: int
    ) -> tuple[SequenceKV, torch.Tensor]:
        config = self.model.config
        before = 0 if cached is None else cached[0].shape[0]
        total = before + len(token_ids)
        caches = []
        for layer in range(config.num_hidden_layers):
            cache = LatentCache.allocate(config, 1, total, self._dtype, self.device)
            if cached is not None:
                cache.append(cached[2 * layer][None], cached[2 * layer + 1][None])
            caches.append(cache)
        hidden = self.model.model(torch.tensor([token_ids], device=self.device), caches)
        logits = self.model.lm_head(hidden[0, -logits_for:])
        kv = [part[0, :total] for cache in caches for part in (cache.latent, cache.rope_key)]
        return kv, logits

    @torch.inference_mode()
    def prefill_many(self, items: list[PrefillItem]) -> list[tuple[SequenceKV, torch.Tensor]]:
        """Sequences of similar new lengths prefilled in one forward, right-aligned like the running rows.

        Every row of a group computes its last q tokens (q: the group's longest new part), after the part of
        its cached prefix that lies before them; a row shorter than q is left-padded (masked by
        `first_slot`). New lengths within a group differ at most twofold, so little is recomputed.
        """
        order = sorted(range(len(items)), key=lambda index: len(items[index].token_ids) - items[index].cached)
        results: dict[int, tuple[SequenceKV, torch.Tensor]] = {}
        group: list[int] = []
        for index in [*order, None]:
            fresh = None if index is None else len(items[index].token_ids) - items[index].cached
            first = len(items[group[0]].token_ids) - items[group[0]].cached if group else 0
            if group and (fresh is None or fresh > 2 * first):
                if len(group) == 1:
                    item = items[group[0]]
                    results[group[0]] = self.prefill(
                        item.token_ids[item.cached :], item.cached_kv, item.logits_for
                    )
                else:
                    results.update(zip(group, self._prefill_group([items[i] for i in group]), strict=True))
                group = []
            if index is not None:
                group.append(index)
        return [results[index] for index in range(len(items))]

    def _prefill_group(self, items: list[PrefillItem]) -> list[tuple[SequenceKV, torch.Tensor]]:
        config = self.model.config
        window = max(len(item.token_ids) - item.cached for item in items)
        width = max(len(item.token_ids) for item in items)
        caches = [
            LatentCache.allocate(config, len(items), width, self._dtype, self.device)
            for _ in range(config.num_hidden_layers)
        ]
        input_ids = torch.zeros(len(items), window, dtype=torch.long, device=self.device)
        for row, item in enumerate(items):
            total = len(item.token_ids)
            kept = max(total - window, 0)  # cached tokens before the window; the rest are recomputed
            for layer, cache in enumerate(caches):
                cache.latent[row].zero_()  # masked columns must hold finite values
                cache.rope_key[row].zero_()
                if kept:
                    assert item.cached_kv is not None and item.cached >= kept
                    cache.latent[row, width - total : width - window] = item.cached_kv[2 * layer][:kept]
                    cache.rope_key[row, width - total : width - window] = item.cached_kv[2 * layer + 1][:kept]
            input_ids[row, window - (total - kept) :] = torch.tensor(
                item.token_ids[kept:], device=self.device
            )
        first_slot = torch.tensor([width - len(item.token_ids) for item in items], device=self.device)
        for cache in caches:
            cache.length, cache.first_slot = width - window, first_slot
        hidden = self.model.model(input_ids, caches)
        results = []
        for row, item in enumerate(items):
            start = width - len(item.token_ids)
            kv = [
                part[row, start:width].clone() for cache in caches for part in (cache.latent, cache.rope_key)
            ]
            results.append((kv, self.model.lm_head(hidden[row, window - item.logits_for :])))
        return results

    @torch.inference_mode()
    def decode(self, token_ids: list[int]) -> torch.Tensor:
        batch = self.batch
        batch.reserve(1)
        first_slot = torch.tensor(batch.first_slot, device=self.device)
        caches = [
            LatentCache(batch.tensors[2 * layer], batch.tensors[2 * layer + 1], batch.width, first_slot)
            for layer in range(self.model.config.num_hidden_layers)
        ]
        hidden = self.model.model(torch.tensor(token_ids, device=self.device)[:, None], caches)
        batch.width += 1
        return self.model.lm_head(hidden[:, -1])

    @torch.no_grad()
    def load_weights(self, directory: str) -> None:
        state = from_hf_state_dict(read_checkpoint_tensors(directory), self.model, source=str(directory))
        self.model.load_state_dict(state, strict=True)
