"""Muon with Adam-RMS matching and decoupled weight decay, plus AdamW for the non-matrix parameters.

K2 report §2.1, Algorithm 1 lines 3–7, with Moonlight's details (§2, `toy_train.py`):
    M_t = μ·M_{t−1} + G_t;  Nesterov input G_t + μ·M_t
    O_t = NewtonSchulz(·) · 0.2 · √max(n, m)          (update RMS ≈ 0.2, like AdamW's)
    W_t = W_{t−1} − η·(O_t + λ·W_{t−1})
Every matrix is updated on its own: a stacked [E, n, m] expert tensor is E matrices with scale √max(n, m).
Parameters may be FSDP2 DTensors: element-wise math runs on local shards, Newton–Schulz on whole matrices.
"""

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args, overload

import torch
from torch import Tensor

from openk2.optim.distributed import gather_whole_matrices, keep_local_shard, local_tensor
from openk2.optim.newton_schulz import newton_schulz

UpdateScale = Literal["match_adamw_rms", "keller_jordan"]
# 1 MiB of fp32 per thread per Newton–Schulz batch: the fastest on the CPU, 1 and 2 threads (bench/optim.py)
CPU_BATCH_ELEMENTS_PER_THREAD = 2**18


def update_rms_scale(n: int, m: int, rule: UpdateScale) -> float:
    """Multiplier of an orthogonalised [n, m] update (whose RMS is ≈ 1/√max(n, m))."""
    if rule == "match_adamw_rms":
        return 0.2 * math.sqrt(max(n, m))  # Moonlight Lemma 1: RMS 0.2, so AdamW's lr and wd carry over
    if rule == "keller_jordan":
        return math.sqrt(max(1.0, n / m))
    raise ValueError(f"update_scale: expected one of {get_args(UpdateScale)}, got {rule!r}")


def orthogonalise_by_shape(matrices: list[Tensor], steps: int, dtype: torch.dtype | None) -> list[Tensor]:
    """Newton–Schulz on every [..., n, m] tensor, batching all matrices of one shape into one call."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for index, matrix in enumerate(matrices):
        n, m = matrix.shape[-2:]
        by_shape.setdefault((n, m), []).append(index)
    results: list[Tensor] = [torch.empty(0)] * len(matrices)
    for (n, m), indices in by_shape.items():
        stacked = torch.cat([matrices[i].reshape(-1, n, m) for i in indices])  # [total matrices, n, m]
        # on the CPU a batch beyond the threads' caches runs slower than several cache-sized ones
        cpu_elements = CPU_BATCH_ELEMENTS_PER_THREAD * torch.get_num_threads()
        per_batch = max(1, cpu_elements // (n * m)) if stacked.device.type == "cpu" else len(stacked)
        orthogonal = torch.cat(
            [newton_schulz(batch, steps=steps, dtype=dtype) for batch in stacked.split(per_batch)]
        )
        counts = [matrices[i].numel() // (n * m) for i in indices]
        for i, part in zip(indices, orthogonal.split(counts), strict=True):
            results[i] = part.reshape(matrices[i].shape)
    return results


class Muon(torch.optim.Optimizer):
    """Muon for groups with `use_muon=True`, AdamW for groups with `use_muon=False` (see `muon_param_groups`).

    Both share `lr` and `weight_decay` unless a group overrides them: with RMS matching Muon reuses
    AdamW's hyper-parameters (Moonlight). `ns_dtype` None means fp32 on the CPU, bf16 on GPUs.
    """

    def __init__(
        self,
        param_groups: Iterable[dict[str, Any]],
        lr: float = 2e-4,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_dtype: torch.dtype | None = None,
        update_scale: UpdateScale = "match_adamw_rms",
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-8,
    ) -> None:
        if lr < 0 or weight_decay < 0 or not 0 <= momentum < 1:
            raise ValueError(
                f"Muon: need lr ≥ 0, weight_decay ≥ 0, 0 ≤ momentum < 1; got {lr}, {weight_decay}, {momentum}"
            )
        if update_scale not in get_args(UpdateScale):
            raise ValueError(f"update_scale: expected one of {get_args(UpdateScale)}, got {update_scale!r}")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_steps": ns_steps,
            "ns_dtype": ns_dtype,
            "update_scale": update_scale,
            "adamw_betas": adamw_betas,
            "adamw_eps": adamw_eps,
        }
        super().__init__(list(param_groups), defaults)
        for index, group in enumerate(self.param_groups):
            if "use_muon" not in group:
                raise ValueError(
                    f"Muon: param group {index} has no 'use_muon' flag; build groups with muon_param_groups"
                )
            if group["use_muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError(
                    f"Muon: param group {index} uses Muon but holds a parameter with fewer than 2 dims"
                )

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._update_parameters()
        return loss

    def _update_parameters(self) -> None:
        """One update of every parameter with a gradient (subclasses extend this, not the hooked `step`)."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["use_muon"]:
                self._muon_update(group, params)
            else:
                self._adamw_update(group, params)

    def _muon_update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        momentum = group["momentum"]
        local_inputs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buffer = local_tensor(state["momentum_buffer"])
            assert p.grad is not None  # _update_parameters passes only parameters with a gradient
            grad = local_tensor(p.grad)
            buffer.mul_(momentum).add_(grad)  # M_t = μ·M_{t−1} + G_t
            # Nesterov (Moonlight §2): orthogonalise G_t + μ·M_t instead of M_t
            local_inputs.append(grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer)
        full_inputs = [gather_whole_matrices(p, u) for p, u in zip(params, local_inputs, strict=True)]
        full_updates = orthogonalise_by_shape(full_inputs, group["ns_steps"], group["ns_dtype"])
        lr = group["lr"]
        for p, full_update in zip(params, full_updates, strict=True):
            update = keep_local_shard(p, full_update)
            scale = update_rms_scale(p.shape[-2], p.shape[-1], group["update_scale"])
            weight = local_tensor(p)
            weight.mul_(1 - lr * group["weight_decay"])  # decoupled decay uses the unscaled lr
            weight.add_(update, alpha=-lr * scale)

    def _adamw_update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        beta1, beta2 = group["adamw_betas"]
        lr = group["lr"]
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            assert p.grad is not None
            grad = local_tensor(p.grad)
            exp_avg, exp_avg_sq = local_tensor(state["exp_avg"]), local_tensor(state["exp_avg_sq"])
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1 ** state["step"]
            bias_correction2 = 1 - beta2 ** state["step"]
            denominator = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group["adamw_eps"])
            weight = local_tensor(p)
            weight.mul_(1 - lr * group["weight_decay"])
            weight.addcdiv_(exp_avg, denominator, value=-lr / bias_correction1)
