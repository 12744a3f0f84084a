"""OpenK2's model under continuous batching: per-sequence MLA latent caches, one decoding step for all.

Per token and layer the cache holds what MLA decodes from (K2 report §2.3): the normalised latent c^KV
(kv_lora_rank values) and the rotated shared key k^R (qk_rope_head_dim values), nothing per head.
The running batch lays them out right-aligned (`RowCache`); `LatentCache.first_slot` is where each
row's sequence starts, which gives every row its own positions and hides the columns before it.
"""

import torch

from openk2.llm.prefix_cache import SequenceKV
from openk2.llm.runner import ModelRunner
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
