"""A transformers causal LM under continuous batching: per-sequence key/value caches in shared rows.

transformers' own `DynamicCache` grows by concatenation (a copy of the whole cache per step); here
each layer writes into the running batch's preallocated columns instead (`_ColumnLayer`), and the
right-aligned rows are described to the model as a left-padded batch: an attention mask that hides
each row's columns before its first token, and positions counted from that token.
"""

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer

from openk2.llm.prefix_cache import SequenceKV
from openk2.llm.runner import ModelRunner


class _ColumnLayer(DynamicLayer):
    """One layer's cache over storage [rows, capacity, heads, head_dim]; the model sees [rows, heads, len, dim]."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self._key_storage, self._value_storage, self._length = keys, values, length
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        self.keys = self._key_storage[:, : self._length].transpose(1, 2)
        self.values = self._value_storage[:, : self._length].transpose(1, 2)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self._length + key_states.shape[-2]
        self._key_storage[:, self._length : end] = key_states.transpose(1, 2)
        self._value_storage[:, self._length : end] = value_states.transpose(1, 2)
        self._length = end
        self._expose()
        return self._key_storage[:, :end].transpose(1, 2), self._value_storage[:, :end].transpose(1, 2)

    def get_seq_length(self) -> int:
        return self._length


class HFRunner(ModelRunner):
    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model.eval()
        config = model.config
        self._layers = config.num_hidden_layers
        self._kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        self._head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _storage(self, rows: int, capacity: int) -> torch.Tensor:
        shape = (rows, capacity, self._kv_heads, self._head_dim)
        return torch.zeros(shape, dtype=self.model.dtype, device=self.device)

    @torch.inference_mode()
    def prefill(
        self, token_ids: list[int], cached: SequenceKV | None, logits_for: int
    ) -> tuple[SequenceKV, torch.Tensor]:
        before = 0 if cached is None else cached[0].shape[0]
        total = before + len(token_ids)
        storage = [self._storage(1, total) for _ in range(2 * self._layers)]
        if cached is not None:
            for tensor, part in zip(storage, cached, strict=True):
                tensor[0, :before] = part
        layers = [_ColumnLayer(storage[2 * i], storage[2 * i + 1], before) for i in range(self._layers)]
        output = self.model(
            input_ids=torch.tensor([token_ids], device=self.device),
            position_ids=torch.arange(before, total, device=self.device)[None],
            cache=Cache(layers=list(layers)),
            use_cache=True,
            logits_to_keep=logits_for,
        )
        return [tensor[0] for tensor in storage], output.logits[0]

    @torch.inference_mode()
    def decode(self, token_ids: list[int]) -> torch.Tensor:
        batch = self.batch
        batch.reserve(1)
        tensors = batch.tensors
        layers = [_ColumnLayer(tensors[2 * i], tensors[2 * i + 1], batch.width) for i in range(self._layers)]
        first_slot = torch.tensor(batch.first_slot, device=self.device)
        columns = torch.arange(batch.width + 1, device=self.device)
        output = self.model(
            input_ids=torch.tensor(token_ids, device=self.device)[:, None],
            attention_mask=(columns[None, :] >= first_slot[:, None]).long(),
            position_ids=(batch.width - first_slot)[:, None],
            cache=Cache(layers=list(layers)),
            use_cache=True,
            logits_to_keep=1,
        )
        batch.width += 1
        return output.logits[:, -1]

    @torch.no_grad()
    def load_weights(self, directory: str) -> None:
        files = sorted(Path(directory).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{directory}: no *.safetensors files")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(file))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        # tied output embeddings are saved once; anything else missing is a different model
        missing = [name for name in missing if name != "lm_head.weight"]
        if missing or unexpected:
            raise ValueError(f"{directory}: missing weights {missing[:5]}, unexpected {unexpected[:5]}")
