"""The model's extension points: the stages that training techniques wrap from outside, and the side
channels they read after a forward. The model knows nothing of the techniques (torchtitan's separation);
this module is the one place that names what they rely on, so that renaming one fails loudly.

Stages, marked `@extension_point` where they are defined; `wrap_stage` registers a wrapper that runs in a
stage's place (train/recompute.py, train/memory.py, train/expert_parallel.py):

    RMSNorm.forward                       recompute (K2 report §2.4: cheap to rerun, large outputs)
    SwiGLUActivation.forward              recompute; FP8 storage of its gate and up inputs
    MultiHeadLatentAttention.up_projections   recompute (per-head q, k, v expanded from the latents)
    RoutedExperts.up_projections          FP8 storage of the dispatched tokens; run on local shards by EP
    RoutedExperts.down_projection         recompute (recompute_moe_down_proj); run on local shards by EP

Side channels, set by every forward and read after it:

    MultiHeadLatentAttention.max_logit_per_head   S_max^h for QK-Clip when record_max_logit is on (§2.1)
    MoE.tokens_per_expert                          routed slots per expert, for bias balancing (§2.3)
    MoE.aux_loss                                   the sequence-wise balance loss when aux_loss_alpha > 0
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from torch import nn

UP_PROJECTIONS = "up_projections"
DOWN_PROJECTION = "down_projection"
FORWARD = "forward"

# what the table in the docstring says, as data: a test holds the model classes to it
WRAPPED_STAGES: dict[str, tuple[str, ...]] = {
    "RMSNorm": (FORWARD,),
    "SwiGLUActivation": (FORWARD,),
    "MultiHeadLatentAttention": (UP_PROJECTIONS,),
    "RoutedExperts": (UP_PROJECTIONS, DOWN_PROJECTION),
}
SIDE_CHANNELS: dict[str, tuple[str, ...]] = {
    "MultiHeadLatentAttention": ("max_logit_per_head",),
    "MoE": ("tokens_per_expert", "aux_loss"),
}

Inputs = ParamSpec("Inputs")
Output = TypeVar("Output")
Owner = TypeVar("Owner", bound=nn.Module)

# wrapper(owner, stage, *inputs): runs in the stage's place and calls `stage(*inputs)` (or reruns it later)
StageWrapper = Callable[..., Any]

_WRAPPERS = "_stage_wrappers"  # on the instance: stage name -> wrappers, innermost first
_MARK = "__extension_point__"


def extension_point(
    stage: Callable[Concatenate[Owner, Inputs], Output],
) -> Callable[Concatenate[Owner, Inputs], Output]:
    """Marks a method as a stage that training techniques may wrap; unwrapped, it runs as written."""
    name = stage.__name__

    @functools.wraps(stage)
    def run(owner: Owner, *inputs: Inputs.args, **options: Inputs.kwargs) -> Output:
        wrappers = owner.__dict__.get(_WRAPPERS, {}).get(name)
        if not wrappers:
            return stage(owner, *inputs, **options)
        call: Callable[..., Any] = functools.partial(stage, owner)
        for wrapper in wrappers:
            call = functools.partial(wrapper, owner, call)
        return call(*inputs, **options)

    setattr(run, _MARK, True)
    return run


def extension_points(module: nn.Module | type[nn.Module]) -> list[str]:
    """The names of the stages a module (or module class) declares, sorted."""
    owner = module if isinstance(module, type) else type(module)
    return [name for name in dir(owner) if getattr(getattr(owner, name, None), _MARK, False)]


def wrap_stage(module: nn.Module, name: str, wrapper: StageWrapper) -> None:
    """From now on `wrapper(module, stage, *inputs)` runs in place of `module.<name>(*inputs)`; a later
    wrapper runs outside an earlier one."""
    if name not in extension_points(module):
        raise ValueError(
            f"{type(module).__name__}.{name}: not an extension point; it declares {extension_points(module)}"
        )
    module.__dict__.setdefault(_WRAPPERS, {}).setdefault(name, []).append(wrapper)


def wrapped_stages(module: nn.Module) -> list[str]:
    """The stages of `module` that have wrappers."""
    return [name for name, wrappers in module.__dict__.get(_WRAPPERS, {}).items() if wrappers]
