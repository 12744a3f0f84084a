"""KV-cached generation: the latent cache reproduces full re-forward decoding, at MLA's memory floor."""

import pytest
import torch

from openk2.model import K2Config, K2ForCausalLM, LatentCache
from openk2.model.generate import sample_next_token
from tests.numerics import FP32_EPS, assert_close_in_norm


@pytest.fixture(scope="module")
def model() -> K2ForCausalLM:
    torch.manual_seed(0)
    model = K2ForCausalLM(K2Config.preset("tiny")).eval()
    with torch.no_grad():  # larger weights give peaked, input-dependent distributions: a stricter test
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.mul_(4)
    return model


@torch.no_grad()
def _greedy_by_full_reforward(model: K2ForCausalLM, input_ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    for _ in range(new_tokens):
        next_token = model(input_ids).logits[:, -1].argmax(-1, keepdim=True)
        input_ids = torch.cat((input_ids, next_token), dim=1)
    return input_ids


def test_cached_greedy_decoding_equals_full_reforward(model):
    prompt = torch.randint(0, model.config.vocab_size, (3, 7), generator=torch.Generator().manual_seed(1))
    cached = model.generate(prompt, max_new_tokens=20)
    assert cached.shape == (3, 27)
    assert torch.equal(cached, _greedy_by_full_reforward(model, prompt, 20))


def test_absorbed_decode_logits_equal_expanded_attention_logits(model):
    tokens = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        full = model(tokens).logits
        caches = [LatentCache.allocate(model.config, 2, 12, torch.float32, tokens.device) for _ in range(4)]
        prefill = model.lm_head(model.model(tokens[:, :5], caches))
        steps = [model.lm_head(model.model(tokens[:, i : i + 1], caches)) for i in range(5, 12)]
    torch.testing.assert_close(torch.cat([prefill, *steps], dim=1), full, atol=1e-4, rtol=1e-4)


def test_cache_holds_exactly_the_latent_and_shared_rope_key_per_token():
    config = K2Config.preset("kimi-k2")
    cache = LatentCache.allocate(
        config, batch=1, max_len=10, dtype=torch.bfloat16, device=torch.device("meta")
    )
    cache_bytes = cache.latent.numel() * 2 + cache.rope_key.numel() * 2
    assert cache_bytes == 10 * (512 + 64) * 2  # MLA floor: (kv_lora_rank + qk_rope_head_dim) per token


def test_generation_stops_rows_at_eos_and_pads_them_with_eos(model):
    prompt = torch.randint(0, model.config.vocab_size, (2, 4), generator=torch.Generator().manual_seed(5))
    greedy = model.generate(prompt, max_new_tokens=6)
    eos = int(greedy[0, 5])  # the second generated token of row 0
    stopped = model.generate(prompt, max_new_tokens=6, eos_token_id=eos)
    assert torch.equal(stopped[0, :6], greedy[0, :6])
    assert (stopped[0, 5:] == eos).all()


def test_top_p_never_samples_outside_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    draws = {int(sample_next_token(logits, 1.0, 0.8, generator)) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.8: tokens 2 and 3 are outside


def test_sampling_is_reproducible_with_a_seeded_generator(model):
    prompt = torch.randint(0, model.config.vocab_size, (2, 4))
    first = model.generate(prompt, 8, temperature=1.0, generator=torch.Generator().manual_seed(3))
    second = model.generate(prompt, 8, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="top_p"):
        sample_next_token(torch.zeros(1, 4), 1.0, 0.0)


def test_left_padded_batch_generates_what_each_prompt_generates_alone(model):
    generator = torch.Generator().manual_seed(7)
    prompts = [
        torch.randint(0, model.config.vocab_size, (length,), generator=generator) for length in (9, 4, 1)
    ]
    longest = max(len(p) for p in prompts)
    padded = torch.stack([torch.cat((torch.zeros(longest - len(p), dtype=torch.long), p)) for p in prompts])
    mask = torch.stack([torch.arange(longest) >= longest - len(p) for p in prompts]).long()
    batched = model.generate(padded, max_new_tokens=12, attention_mask=mask)
    for row, prompt in enumerate(prompts):
        alone = model.generate(prompt[None], max_new_tokens=12)
        assert torch.equal(batched[row, longest:], alone[0, len(prompt) :]), row


def test_padded_prefill_logits_equal_unpadded_logits(model):
    prompt = torch.randint(0, model.config.vocab_size, (1, 6))
    padded = torch.cat((torch.full((1, 3), 5), prompt), dim=1)
    first_slot = torch.tensor([3])
    with torch.no_grad():
        caches = [
            LatentCache.allocate(model.config, 1, 9, torch.float32, prompt.device, first_slot)
            for _ in range(4)
        ]
        padded_logits = model.lm_head(model.model(padded, caches))[:, 3:]
        assert_close_in_norm(padded_logits, model(prompt).logits, 30 * FP32_EPS, "padded prefill")


def test_on_token_streams_every_step_and_can_stop_early(model):
    prompt = torch.randint(0, model.config.vocab_size, (2, 5))
    streamed = []
    full = model.generate(prompt, max_new_tokens=6)
    stopped = model.generate(
        prompt, max_new_tokens=6, on_token=lambda t: streamed.append(t.clone()) or len(streamed) == 3
    )
    assert torch.equal(torch.stack(streamed, dim=1), full[:, 5:8])
    assert torch.equal(stopped, full[:, :8])


def test_attention_mask_that_is_not_left_padding_is_refused(model):
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 2, attention_mask=torch.tensor([[1, 0, 1]]))
