"""OpenK2's model vs transformers' DeepseekV3ForCausalLM on the same config, in one process.

Prints: forward+backward tokens/s, greedy decode tokens/s, KV-cache bytes per token measured from both caches
against the MLA floor, and each model's forward+backward FLOP/s as a share of the fp32 GEMM peak measured in
the same alternating rounds. Then peak memory of the loss path and of QK-Clip's max-logit recording, each
against the code it replaced (reproduced here as the baseline), measured as the growth of the peak resident
set of a fresh process.
Usage: python bench/model.py [--preset small] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
import torch.nn.functional as F
from common import summary, time_alternating
from rich.console import Console
from rich.table import Table
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from openk2.model import K2Config, K2ForCausalLM
from openk2.model.loss import linear_cross_entropy, next_token_targets
from openk2.model.mla import LatentCache, causal_max_logit_per_head

GEMM_SIZE = 1024


def training_flops_per_token(config: K2Config, seq_len: int) -> float:
    """6 × matmul weights one token touches + causal attention, forward and backward (3 × forward)."""
    q = (
        config.hidden_size * config.num_attention_heads * config.qk_head_dim
        if config.q_lora_rank is None
        else config.q_lora_rank * (config.hidden_size + config.num_attention_heads * config.qk_head_dim)
    )
    kv = config.hidden_size * (config.kv_lora_rank + config.qk_rope_head_dim) + config.kv_lora_rank * (
        config.num_attention_heads * (config.qk_nope_head_dim + config.v_head_dim)
    )
    out = config.num_attention_heads * config.v_head_dim * config.hidden_size
    expert = 3 * config.hidden_size * config.moe_intermediate_size
    moe = (
        config.num_experts_per_tok + config.n_shared_experts
    ) * expert + config.n_routed_experts * config.hidden_size
    dense = 3 * config.hidden_size * config.intermediate_size
    n_moe = config.num_hidden_layers - config.first_k_dense_replace
    weights = config.num_hidden_layers * (q + kv + out) + n_moe * moe + config.first_k_dense_replace * dense
    weights += config.hidden_size * config.vocab_size  # lm_head
    # causal attention per token: on average seq/2 keys, QK (d_qk) and PV (d_v) multiply-adds per head
    attention = (
        config.num_hidden_layers
        * config.num_attention_heads
        * (seq_len / 2)
        * (config.qk_head_dim + config.v_head_dim)
    )
    return 6 * (weights + attention)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--decode-prompt-lens", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-memory", action="store_true", help="only the speed rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = K2Config.preset(args.preset)
    torch.manual_seed(0)
    ours = K2ForCausalLM(config)
    hf_config = DeepseekV3Config(**config.to_hf_dict())
    reference = DeepseekV3ForCausalLM(hf_config)
    reference.load_state_dict(_hf_state(ours), strict=True)
    tokens = torch.randint(0, config.vocab_size, (args.batch, args.seq_len))

    def train_step(model: torch.nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        model(tokens, labels=tokens).loss.backward()

    gemm_a, gemm_b = torch.randn(GEMM_SIZE, GEMM_SIZE), torch.randn(GEMM_SIZE, GEMM_SIZE)
    train = time_alternating(
        {
            "openk2": lambda: train_step(ours),
            "transformers": lambda: train_step(reference),
            "gemm": lambda: [gemm_a @ gemm_b for _ in range(4)],  # the peak, in the same rounds
        },
        args.repeats,
    )
    decode = {}
    same_tokens = {}
    for prompt_len in args.decode_prompt_lens:
        prompt = torch.randint(0, config.vocab_size, (args.batch, prompt_len))
        runs = {
            "openk2": lambda prompt=prompt: ours.eval().generate(prompt, max_new_tokens=args.decode_tokens),
            "transformers": lambda prompt=prompt: reference.eval().generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=args.decode_tokens,
                min_new_tokens=args.decode_tokens,
                do_sample=False,
                pad_token_id=0,
            ),
        }
        with torch.no_grad():
            same_tokens[prompt_len] = torch.equal(runs["openk2"](), runs["transformers"]())
            decode[prompt_len] = time_alternating(runs, max(3, args.repeats // 2), warmup=1)
    round_peaks = [4 * 2 * GEMM_SIZE**3 / seconds for seconds in train["gemm"]]

    floor = (config.kv_lora_rank + config.qk_rope_head_dim) * config.num_hidden_layers * 4
    with torch.no_grad():
        cache = reference(tokens[:1], use_cache=True).past_key_values
        caches = [
            LatentCache.allocate(config, 1, tokens.shape[1], torch.float32, tokens.device)
            for _ in range(config.num_hidden_layers)
        ]
        ours.eval().model(tokens[:1], caches=caches)
    reference_cache_bytes = (
        sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
        / tokens.shape[1]
    )
    ours_cache_bytes = (
        sum(
            (c.latent[:, : c.length].numel() + c.rope_key[:, : c.length].numel()) * c.latent.element_size()
            for c in caches
        )
        / tokens.shape[1]
    )

    train_tokens = args.batch * args.seq_len
    decode_tokens = args.batch * args.decode_tokens
    flops = training_flops_per_token(config, args.seq_len)
    table = Table(
        title=f"model bench: preset {args.preset}, batch {args.batch} x {args.seq_len}, fp32, "
        f"{torch.get_num_threads()} threads"
    )
    for column in ("metric", "openk2", "transformers", "ratio"):
        table.add_column(column, justify="right")
    (ours_min, ours_med), (ref_min, ref_med) = summary(train["openk2"]), summary(train["transformers"])
    table.add_row(
        "fwd+bwd tokens/s (best)",
        f"{train_tokens / ours_min:,.0f}",
        f"{train_tokens / ref_min:,.0f}",
        f"{ref_min / ours_min:.2f}x",
    )
    table.add_row(
        "fwd+bwd tokens/s (median)",
        f"{train_tokens / ours_med:,.0f}",
        f"{train_tokens / ref_med:,.0f}",
        f"{ref_med / ours_med:.2f}x",
    )
    shares = {
        name: statistics.median(
            flops * train_tokens / seconds / peak
            for seconds, peak in zip(train[name], round_peaks, strict=True)
        )
        for name in ("openk2", "transformers")
    }
    table.add_row(
        "fwd+bwd share of the fp32 GEMM peak of the same round (median)",
        f"{shares['openk2']:.0%}",
        f"{shares['transformers']:.0%}",
        "",
    )
    for prompt_len, seconds in decode.items():
        (ours_min, ours_med), (ref_min, ref_med) = (
            summary(seconds["openk2"]),
            summary(seconds["transformers"]),
        )
        label = f"greedy decode tokens/s, {prompt_len}-token prompt"
        table.add_row(
            f"{label} (best)",
            f"{decode_tokens / ours_min:,.1f}",
            f"{decode_tokens / ref_min:,.1f}",
            f"{ref_min / ours_min:.2f}x",
        )
        table.add_row(
            f"{label} (median)",
            f"{decode_tokens / ours_med:,.1f}",
            f"{decode_tokens / ref_med:,.1f}",
            f"{ref_med / ours_med:.2f}x",
        )
    table.add_row(
        "KV cache bytes/token (fp32)",
        f"{ours_cache_bytes:,.0f}",
        f"{reference_cache_bytes:,.0f}",
        f"floor {floor:,}",
    )
    console = Console()
    console.print(table)
    console.print(
        f"fp32 GEMM peak (median of the rounds): {statistics.median(round_peaks) / 1e9:.1f} GFLOP/s; "
        f"model FLOPs/token (fwd+bwd): {flops / 1e6:.1f}M; "
        f"greedy outputs identical (per prompt length): {same_tokens}"
    )
    if not args.skip_memory:
        console.print(memory_table(config, args.batch * args.seq_len))


def memory_table(config: K2Config, tokens: int) -> Table:
    """Peak memory of the loss path (forward+backward) and of max-logit recording, before and now."""
    table = Table(title="peak memory: a fresh process's peak RSS above its RSS before the call (MiB)")
    for column in ("path", "shape", "before", "now", "ratio"):
        table.add_column(column, justify="right")
    cases = [
        (
            "loss: lm_head + CE",
            f"{tokens} tokens, {config.hidden_size} -> vocab {config.vocab_size}",
            (tokens, config.hidden_size, config.vocab_size),
        ),
        ("loss: lm_head + CE", "2048 tokens, 512 -> K2's vocab 163840", (2048, 512, 163840)),
    ]
    for path, shape, sizes in cases:
        before, now = (peak_mib(loss_path, kind, *sizes) for kind in ("plain", "fused"))
        table.add_row(path, shape, f"{before:,.0f}", f"{now:,.0f}", f"{before / max(now, 1):.1f}x")
    for heads, seq in ((16, 4096), (64, 2048)):
        before, now = (peak_mib(max_logit_path, kind, heads, seq) for kind in ("per-sequence", "chunked"))
        table.add_row(
            "QK-Clip max-logit recording",
            f"{heads} heads x {seq} tokens, d 192",
            f"{before:,.0f}",
            f"{now:,.0f}",
            f"{before / max(now, 1):.1f}x",
        )
    return table


def peak_mib(run: Callable[..., None], *args: object) -> float:
    """The growth of the peak resident set while `run(*args)` works, in a fresh process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run, args) / 2**20


def loss_path(kind: str, tokens: int, hidden_size: int, vocab: int) -> float:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, tokens // 2, hidden_size, generator=generator).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, generator=generator) * 0.02).requires_grad_()
    labels = torch.randint(0, vocab, (2, tokens // 2), generator=generator)
    start = _current_rss_bytes()  # the peak so far may include freed temporaries of the set-up
    if kind == "plain":  # what K2ForCausalLM did before: whole logits, a shifted slice, fp32 CE
        logits = hidden @ weight.T
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())
    else:
        loss = linear_cross_entropy(hidden.flatten(0, 1), weight, next_token_targets(labels))
    loss.backward()
    return _peak_rss_bytes() - start


def max_logit_path(kind: str, heads: int, seq: int) -> float:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, heads, seq, 192, generator=generator)
    key = torch.randn(1, heads, seq, 192, generator=generator)
    start = _current_rss_bytes()  # the peak so far may include freed temporaries of the set-up
    if kind == "per-sequence":  # the recording before: one sequence's whole [heads, q, k] fp32 logits
        logits = (query[0].float() @ key[0].float().transpose(-1, -2)) * 0.1
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        logits.masked_fill_(~causal, float("-inf")).amax(dim=(1, 2))
    else:
        causal_max_logit_per_head(query, key, 0.1)
    return _peak_rss_bytes() - start


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _current_rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def _hf_state(ours: K2ForCausalLM) -> dict[str, torch.Tensor]:
    """Our weights in transformers' in-memory layout (fused gate_up experts)."""
    from openk2.model.checkpoint import STACKED_EXPERTS

    state = {}
    stacked = {}
    for name, tensor in ours.state_dict().items():
        match = STACKED_EXPERTS.match(name)
        if match:
            stacked.setdefault(match["prefix"], {})[match["proj"]] = tensor
        else:
            state[name] = tensor
    for prefix, projections in stacked.items():
        state[f"{prefix}.gate_up_proj"] = torch.cat((projections["gate_proj"], projections["up_proj"]), dim=1)
        state[f"{prefix}.down_proj"] = projections["down_proj"]
    return state


if __name__ == "__main__":
    main()
