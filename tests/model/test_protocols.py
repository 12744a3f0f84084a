"""The model's declared extension points (model/protocols.py) are the ones its classes have, by name."""

from __future__ import annotations

import pytest
import torch

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.mla import MultiHeadLatentAttention
from openk2.model.moe import MoE, RoutedExperts, SwiGLUActivation
from openk2.model.norm import RMSNorm
from openk2.model.protocols import (
    SIDE_CHANNELS,
    WRAPPED_STAGES,
    extension_points,
    wrap_stage,
    wrapped_stages,
)
from openk2.optim.qk_clip import MaxLogitAttention

MODEL_CLASSES = {
    cls.__name__: cls for cls in (RMSNorm, SwiGLUActivation, MultiHeadLatentAttention, RoutedExperts)
}


@pytest.mark.parametrize("name", sorted(WRAPPED_STAGES))
def test_every_declared_stage_is_an_extension_point_of_its_class_and_no_other_is(name: str) -> None:
    assert extension_points(MODEL_CLASSES[name]) == sorted(WRAPPED_STAGES[name])


def test_the_side_channels_are_set_by_a_training_forward() -> None:
    torch.manual_seed(0)
    model = K2ForCausalLM(K2Config(**{**K2Config.preset("tiny").model_dump(), "aux_loss_alpha": 0.01}))
    for attention in model.attention_modules():
        attention.record_max_logit = True
    input_ids = torch.randint(0, model.config.vocab_size, (2, 16))
    model.train()(input_ids, labels=input_ids)
    modules = {"MultiHeadLatentAttention": model.attention_modules(), "MoE": model.moe_modules()}
    assert set(modules) == set(SIDE_CHANNELS)
    for class_name, channels in SIDE_CHANNELS.items():
        for module in modules[class_name]:
            for channel in channels:
                assert isinstance(getattr(module, channel), torch.Tensor), (class_name, channel)
    # what QK-Clip reads is the optimizer's protocol; MoE's counts are per routed expert
    assert all(isinstance(attention, MaxLogitAttention) for attention in model.attention_modules())
    moe: MoE = model.moe_modules()[0]
    assert moe.tokens_per_expert is not None
    assert moe.tokens_per_expert.shape == (model.config.n_routed_experts,)


def test_a_wrapper_runs_in_the_stages_place_and_later_wrappers_run_outside() -> None:
    activation = SwiGLUActivation()
    gate, up = torch.randn(3, 4), torch.randn(3, 4)
    calls: list[str] = []

    def named(label: str):
        def wrapper(owner, stage, *inputs):
            assert owner is activation
            calls.append(label)
            return stage(*inputs) * 2

        return wrapper

    wrap_stage(activation, "forward", named("inner"))
    wrap_stage(activation, "forward", named("outer"))
    assert wrapped_stages(activation) == ["forward"]
    torch.testing.assert_close(activation(gate, up), 4 * SwiGLUActivation()(gate, up))
    assert calls == ["outer", "inner"]
    assert wrapped_stages(SwiGLUActivation()) == []  # registered on the instance, not the class


def test_wrapping_an_undeclared_stage_fails_loudly() -> None:
    experts = RoutedExperts(K2Config.preset("tiny"))
    with pytest.raises(
        ValueError, match=r"RoutedExperts\.up_projection: not an extension point; it declares "
    ):
        wrap_stage(experts, "up_projection", lambda owner, stage, *inputs: stage(*inputs))
