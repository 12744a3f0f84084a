"""HF-format checkpoints: config.json + safetensors (single file or shards with an index), per-expert keys.

Readable by transformers' DeepseekV3ForCausalLM; reads its checkpoints and the released Kimi-K2 layout,
including block-FP8 weights (e4m3 with a `weight_scale_inv` per 128x128 block), dequantised on load.
Also reads the weights of a training checkpoint, config.json beside a `model/` directory of shards in
torch.distributed.checkpoint's format (written by any number of ranks, under our own parameter names).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from openk2.io import atomic_path, atomic_write_text
from openk2.model.config import K2Config
from openk2.model.transformer import K2ForCausalLM

STACKED_EXPERTS = re.compile(r"^(?P<prefix>.+\.mlp\.experts)\.(?P<proj>gate_proj|up_proj|down_proj)$")
PER_EXPERT = re.compile(
    r"^(?P<prefix>.+\.mlp\.experts)\.(?P<index>\d+)\.(?P<proj>gate_proj|up_proj|down_proj)\.weight$"
)
LAYER_INDEX = re.compile(r"^model\.layers\.(\d+)\.")
FP8_BLOCK = 128
FP32_BUFFERS = ("e_score_correction_bias",)  # router arithmetic stays fp32 whatever the weights' dtype
SHARDED_MODEL_DIR = "model"  # a training checkpoint's weights: torch.distributed.checkpoint shards
logger = logging.getLogger("openk2.model")


def to_hf_state_dict(model: K2ForCausalLM) -> dict[str, torch.Tensor]:
    """Our state dict with stacked experts split into `...experts.{j}.{proj}.weight` keys."""
    hf_tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        stacked = STACKED_EXPERTS.match(name)
        if stacked:
            for index, expert_weight in enumerate(tensor):
                hf_tensors[f"{stacked['prefix']}.{index}.{stacked['proj']}.weight"] = (
                    expert_weight.contiguous()
                )
        elif not (name == "lm_head.weight" and model.config.tie_word_embeddings):
            hf_tensors[name] = tensor.contiguous()
    return hf_tensors


def save_pretrained(model: K2ForCausalLM, directory: str | Path, max_shard_bytes: int = 5 * 2**30) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = to_hf_state_dict(model)
    shards: list[dict[str, torch.Tensor]] = [{}]
    shard_bytes = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and shard_bytes + size > max_shard_bytes:
            shards.append({})
            shard_bytes = 0
        shards[-1][name] = tensor
        shard_bytes += size
    filenames = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{number:05d}-of-{len(shards):05d}.safetensors" for number in range(1, len(shards) + 1)]
    )
    for filename, shard in zip(filenames, shards, strict=True):
        with atomic_path(directory / filename) as partial:
            save_file(shard, partial, {"format": "pt"})
    if len(shards) > 1:
        weight_map = {
            name: filename for filename, shard in zip(filenames, shards, strict=True) for name in shard
        }
        total_size = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
        atomic_write_text(directory / "model.safetensors.index.json", json.dumps(index, indent=2))
    write_config(model.config, model.lm_head.weight.dtype, directory)


def write_config(config: K2Config, dtype: torch.dtype, directory: Path) -> None:
    """config.json in the HF layout, naming the weights' dtype."""
    hf_config = config.to_hf_dict()
    hf_config["torch_dtype"] = str(dtype).removeprefix("torch.")
    atomic_write_text(directory / "config.json", json.dumps(hf_config, indent=2))


def read_checkpoint_tensors(directory: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory, FP8 blocks dequantised to fp32."""
    directory = Path(directory)
    if (directory / SHARDED_MODEL_DIR).is_dir():
        return read_sharded_tensors(directory / SHARDED_MODEL_DIR)
    index_path = directory / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{index_path}: not a safetensors index ({error!r})") from None
        files = sorted(set(weight_map.values()))
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    tensors: dict[str, torch.Tensor] = {}
    for filename in files:
        path = directory / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {index_path.name} but missing")
        try:
            with safe_open(str(path), framework="pt") as shard:
                for name in shard.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    tensors[name] = shard.get_tensor(name)
        except SafetensorError as error:  # e.g. a copy cut short
            raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
    for name in [n for n in tensors if n.endswith("_scale_inv")]:
        weight_name = name.removesuffix("_scale_inv")
        if weight_name not in tensors:
            raise ValueError(f"{name}: FP8 scale without its weight {weight_name}")
        tensors[weight_name] = dequantize_block_fp8(tensors[weight_name], tensors.pop(name), weight_name)
    return tensors


def read_sharded_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The whole tensors of a torch.distributed.checkpoint directory, in this process alone (no process group),
    whatever number of ranks wrote its shards."""
    import torch.distributed.checkpoint as dcp  # only training checkpoints need it
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    try:
        reader = dcp.FileSystemReader(path)
        metadata = reader.read_metadata()
        tensors = {
            name: torch.empty(entry.size, dtype=entry.properties.dtype)
            for name, entry in metadata.state_dict_metadata.items()
            if isinstance(entry, TensorStorageMetadata)
        }
        with without_process_group_warning():
            dcp.load(tensors, storage_reader=reader, no_dist=True)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: not a complete sharded checkpoint ({error})") from None
    except CheckpointException as error:  # a damaged shard: its reader's error, per rank (here one)
        causes = "; ".join(f"{type(cause).__name__}: {cause}" for cause, _ in error.failures.values())
        raise ValueError(f"{path}: not a readable sharded checkpoint ({causes})") from None
    except Exception as error:  # damaged metadata surfaces as an unpickling error
        raise ValueError(
            f"{path}: not a readable sharded checkpoint ({type(error).__name__}: {error})"
        ) from None
    return tensors


@contextmanager
def without_process_group_warning() -> Iterator[None]:
    """torch.distributed.checkpoint warns on every use in one process that it assumes one process: we mean it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is .*assuming the intent is to")
        yield


def dequantize_block_fp8(weight: torch.Tensor, scale_inv: torch.Tensor, name: str = "weight") -> torch.Tensor:
    """weight (e4m3) [rows, cols] × scale_inv [ceil(rows/128), ceil(cols/128)], one scale per 128x128 block."""
    rows, cols = weight.shape
    expected = (-(-rows // FP8_BLOCK), -(-cols // FP8_BLOCK))
    if tuple(scale_inv.shape) != expected:
        raise ValueError(
            f"{name}_scale_inv: expected {list(expected)} for a {[rows, cols]} weight, got {list(scale_inv.shape)}"
        )
    scale = scale_inv.float().repeat_interleave(FP8_BLOCK, 0)[:rows].repeat_interleave(FP8_BLOCK, 1)[:, :cols]
    return weight.float() * scale


def from_hf_state_dict(
    tensors: dict[str, torch.Tensor], model: K2ForCausalLM, source: str
) -> dict[str, torch.Tensor]:
    """Maps HF keys onto our state dict (stacking experts), checking every key and shape against the config."""
    expected = model.state_dict()
    per_expert: dict[str, dict[int, torch.Tensor]] = {}
    state: dict[str, torch.Tensor] = {}
    skipped_layers: dict[int, int] = {}
    for name, tensor in tensors.items():
        layer = LAYER_INDEX.match(name)
        if layer and int(layer.group(1)) >= model.config.num_hidden_layers:
            # multi-token-prediction modules stored after the decoder (DeepSeek-V3 layout): not built
            skipped_layers[int(layer.group(1))] = skipped_layers.get(int(layer.group(1)), 0) + 1
            continue
        if name.endswith("rotary_emb.inv_freq"):
            continue
        expert = PER_EXPERT.match(name)
        if expert:
            per_expert.setdefault(f"{expert['prefix']}.{expert['proj']}", {})[int(expert["index"])] = tensor
        else:
            state[name] = tensor
    for stacked_name, experts in per_expert.items():
        if stacked_name not in expected:
            raise ValueError(f"{source}: unexpected expert weights {stacked_name}.*")
        count = expected[stacked_name].shape[0]
        missing = sorted(set(range(count)) - set(experts))
        if missing or len(experts) != count:
            raise ValueError(
                f"{source}: {stacked_name}: expected experts 0..{count - 1}, missing {missing[:5]}, "
                f"extra {sorted(set(experts) - set(range(count)))[:5]}"
            )
        first_name = f"{stacked_name.rsplit('.', 1)[0]}.0.{stacked_name.rsplit('.', 1)[1]}.weight"
        for index in range(count):
            _check_shape(
                f"{first_name.replace('.0.', f'.{index}.')}",
                experts[index],
                expected[stacked_name].shape[1:],
                source,
            )
        state[stacked_name] = torch.stack([experts[index] for index in range(count)])
    if model.config.tie_word_embeddings and "model.embed_tokens.weight" in state:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    unexpected_keys = sorted(set(state) - set(expected))
    if unexpected_keys:
        raise ValueError(f"{source}: unexpected keys for this config: {unexpected_keys[:5]}")
    missing_keys = sorted(set(expected) - set(state))
    if missing_keys:
        raise ValueError(f"{source}: missing keys: {missing_keys[:5]}")
    for name, tensor in state.items():
        _check_shape(name, tensor, expected[name].shape, source)
    if skipped_layers:
        logger.warning(
            "%s: skipped %d tensors of multi-token-prediction layers %s (num_nextn_predict_layers=%d): "
            "OpenK2, like transformers' DeepseekV3ForCausalLM, builds the decoder only",
            source,
            sum(skipped_layers.values()),
            sorted(skipped_layers),
            model.config.num_nextn_predict_layers,
        )
    return state


def _check_shape(name: str, tensor: torch.Tensor, shape: torch.Size, source: str) -> None:
    if tensor.shape != shape:
        raise ValueError(f"{source}: {name}: expected {list(shape)}, got {list(tensor.shape)}")


def load_pretrained(
    directory: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> K2ForCausalLM:
    config = K2Config.from_pretrained(directory)
    with torch.device("meta"):
        model = K2ForCausalLM(config)
    state = from_hf_state_dict(read_checkpoint_tensors(directory), model, source=str(directory))
    state = {
        name: tensor.to(device=device, dtype=torch.float32 if name.endswith(FP32_BUFFERS) else dtype)
        for name, tensor in state.items()
    }
    model.load_state_dict(state, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model
