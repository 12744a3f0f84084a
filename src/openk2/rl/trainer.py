"""`openk2 rl --recipe R [--resume]`: K2's RL stage (K2 report §3.2–3.3) on the shared training machinery.

Each iteration is synchronous and colocated, as in K2: the controller (1) has the inference engine sample,
(2) has the trainer train on it, (3) puts the new weights where the engine samples.

    temperature T(i) ─> rollouts of G new prompts × K samples (+ paused episodes)  ─> rewards, critic
        ─> U optimizer steps (K1.5 or GRPO, + PTX, + critic SFT), MuonClip ─> weight sync ─> metrics,
        checkpoint (weights, optimizer, schedule, task sampler, paused episodes)

An RL iteration is not a training step of `train/loop.py` (it samples, then takes several steps, then syncs),
so this loop is its own, built from the shared parts: the optimizer (`build_optimizer`, `optimizer_step`),
FSDP2 (`wrap_from_outside`), checkpoints and their exact resume (`save_checkpoint`, `restore_if_resuming`),
metrics (`MetricsWriter` with `IterationRecord`), progress lines and the report page.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from openk2.gym import RubricItem, iter_records
from openk2.llm import LLM
from openk2.model import MoE
from openk2.rl.critic_audit import CriticAudit, audit_critic
from openk2.rl.episodes import EpisodeLLM, EpisodeState
from openk2.rl.evaluate import held_out_reward
from openk2.rl.iteration import IterationData, collect, new_episodes, sampling_seed
from openk2.rl.logs import RunLogs, preference_id
from openk2.rl.losses import GRPOObjective, K15Objective, Objective
from openk2.rl.metrics import IterationRecord, describe_iteration
from openk2.rl.policy import Policy, load_policy
from openk2.rl.ptx import critic_batch, ptx_loader
from openk2.rl.recipe import RLRecipe, load_rl_recipe
from openk2.rl.report import write_rl_report
from openk2.rl.rewards import reply_text
from openk2.rl.sync import GatheredReplica, ServerReload, SharedModule, WeightSync
from openk2.rl.tasks import TaskPool, TaskSampler, held_out_tasks, load_pools
from openk2.rl.update import PolicyForward, UpdateStats, informative_groups, train_iteration
from openk2.sft.loader import ConversationLoader
from openk2.sft.preference import PreferenceRecord
from openk2.train.balance import ExpertLoad
from openk2.train.checkpoint import Trainable, TrainerState, find_checkpoints, save_checkpoint
from openk2.train.device import autocast_for, compute_dtype, resolve_device
from openk2.train.environment import current_environment, record_session
from openk2.train.loop import build_optimizer
from openk2.train.metrics import MetricsWriter
from openk2.train.progress import TrainingProgress
from openk2.train.resume import refuse_to_overwrite, restore_if_resuming
from openk2.train.world import all_gather_objects, join_world

CRITIC_RECORDS_PER_STEP = 16  # preference records of the previous iteration in a critic SFT batch


@dataclass
class RLRunSummary:
    run_dir: Path
    iterations: int
    checkpoint: Path
    report: Path | None
    last: IterationRecord | None  # None when this session ran no iteration
    initial_eval: dict[str, float] | None
    critic_audit: CriticAudit | None


class RLState:
    """The checkpoint's `loader.json` entry of a rank: the task sampler, paused episodes, the PTX loader."""

    def __init__(self, sampler: TaskSampler, ptx: ConversationLoader | None) -> None:
        self.sampler = sampler
        self.ptx = ptx
        self.paused: list[EpisodeState] = []

    def state_dict(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler.state_dict(),
            "paused": [episode.model_dump(mode="json") for episode in self.paused],
            "ptx": None if self.ptx is None else self.ptx.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.paused = [EpisodeState.model_validate(episode) for episode in state["paused"]]
        if self.ptx is not None:
            self.ptx.load_state_dict(state["ptx"])


def rl(recipe_path: Path, resume: bool = False, progress: bool = True) -> RLRunSummary:
    """What `openk2 rl --recipe PATH [--resume]` runs."""
    recipe = load_rl_recipe(recipe_path)
    refuse_to_overwrite(recipe.run.run_dir, resume)
    return RLTrainer(recipe, resume, progress).run()


class RLTrainer:
    def __init__(self, recipe: RLRecipe, resume: bool, progress: bool) -> None:
        self.recipe, self.rl, run = recipe, recipe.rl, recipe.run
        device = resolve_device(recipe.train.device)  # a missing GPU is refused here, before any work
        self.world = world = join_world(device)
        self.console = Console(stderr=True, quiet=not (progress and world.is_main))
        self.policy = load_policy(recipe, world, device)
        self.optimizer = build_optimizer(self.policy.model, recipe)
        self.scheduler = recipe.lr_schedule().scheduler(self.optimizer)
        self.pools = load_pools(self.rl)
        self.tokenizer = _k2_tokenizer(self.policy)
        ptx = (
            ptx_loader(self.rl.ptx, self.tokenizer, world)
            if self.rl.ptx.weight > 0 and self.tokenizer
            else None
        )
        self.state_holder = RLState(TaskSampler(self.pools, self.rl.seed), ptx)
        self.trainable = Trainable(
            self.policy.model, self.policy.files, self.optimizer, self.scheduler, self.state_holder
        )
        self.expert_load = ExpertLoad([m for m in self.policy.model.modules() if isinstance(m, MoE)])
        self.display = TrainingProgress(
            "RL",
            run.steps,
            enabled=progress and world.is_main,
            describe=describe_iteration,
            unit="iterations",
        )
        fresh = TrainerState(
            step=0, tokens_seen=0, elapsed_seconds=0.0, recipe=recipe.model_dump(mode="json")
        )
        self.state = restore_if_resuming(
            run.run_dir, self.trainable, fresh, resume, world, self.display, recipe
        )
        self.logs = RunLogs(run.run_dir, world, self.state.step)
        self.metrics = MetricsWriter(run.run_dir, self.state.step, IterationRecord) if world.is_main else None
        self.sampler_llm, self.sync = self._sampling_side()
        self.objective: Objective = (
            K15Objective(self.rl.tau) if self.rl.objective == "k15" else GRPOObjective(self.rl.clip_eps)
        )
        self.forward = PolicyForward(
            self.policy, autocast_for(device, compute_dtype(recipe.train.dtype, device))
        )
        rubric_file = self.rl.critic.rubric_file
        self.extra_rubric = list(iter_records(rubric_file, RubricItem)) if rubric_file else []  # type: ignore[type-var]
        self.held_out = [
            (self.pools[source].environment(task), task)
            for source, task in held_out_tasks(self.pools, self.rl, self.rl.eval.tasks)
        ] if self.rl.eval.every else []  # fmt: skip

    # -- set-up ------------------------------------------------------------------------------------------
    def _sampling_side(self) -> tuple[LLM, WeightSync]:
        """Who samples (and judges): the in-process engine or the endpoint; how it gets new weights."""
        policy, rl = self.policy, self.rl
        if rl.rollout == "endpoint":
            from openk2.llm.openai_endpoint import OpenAIEndpoint

            assert rl.endpoint is not None
            model = rl.endpoint.model or _served_model(rl.endpoint.base_url, rl.endpoint.timeout_s)
            endpoint = OpenAIEndpoint(rl.endpoint.base_url, model, timeout_s=rl.endpoint.timeout_s)
            reload = ServerReload(
                policy.model, policy.files, self.recipe.run.run_dir, rl.endpoint.base_url, self.world,
                rl.endpoint.timeout_s,
            )  # fmt: skip
            return endpoint, reload
        if policy.colocated:
            return policy.engine, SharedModule(policy.engine)
        return policy.engine, GatheredReplica(policy.model, policy.engine)

    def _llm_for(self, version: int) -> Callable[[EpisodeState], LLM]:
        if self.rl.rollout == "endpoint":
            return lambda episode: self.sampler_llm
        allowance = self.rl.partial.tokens_per_iteration or None
        return lambda episode: EpisodeLLM(self.policy.engine, episode, allowance, version)

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> RLRunSummary:
        recipe, run, world = self.recipe, self.recipe.run, self.world
        audit = self._audit_critic()
        if not isinstance(self.sync, SharedModule):
            self.sync()  # the server or the replicas start from the trainer's (possibly resumed) weights
        if world.is_main and self.state.step < run.steps:  # the report states where each session ran
            record_session(run.run_dir, current_environment(self.state.step, world.world_size))
        initial_eval = self._evaluate() if self.held_out and self.state.step == 0 else None
        if initial_eval:
            self.display.note(f"held-out greedy reward before RL: {initial_eval}")
        record: IterationRecord | None = None
        checkpoint = None
        with self.display:
            self.display.start_from(self.state.step)
            for iteration in range(self.state.step + 1, run.steps + 1):
                record = self.iteration(iteration)
                if self.metrics is not None:
                    self.metrics.write(record)
                self.display.show(record)
                if iteration % run.checkpoint_every == 0 or iteration == run.steps:
                    checkpoint = save_checkpoint(
                        run.run_dir, self.trainable, self.state, world, run.keep_checkpoints
                    )
        self._close()
        checkpoint = checkpoint or find_checkpoints(run.run_dir).valid[-1]
        report = None
        if world.is_main:
            rows = self._report_rows(initial_eval, audit)
            report = write_rl_report(recipe, checkpoint, rows, self._sample_text())
            self.display.note(f"checkpoint {checkpoint}\nreport {report}")
        return RLRunSummary(run.run_dir, self.state.step, checkpoint, report, record, initial_eval, audit)

    def iteration(self, iteration: int) -> IterationRecord:
        rl, world = self.rl, self.world
        started = time.perf_counter()
        temperature = rl.temperature.at(iteration)
        version = iteration - 1
        holder = self.state_holder
        token_level = rl.rollout == "colocated"
        episodes = holder.paused + new_episodes(
            holder.sampler, rl, iteration, temperature, world, token_level
        )
        self.policy.engine_model.eval()
        data = collect(
            episodes,
            self.logs.reusable(iteration),
            self._llm_for(version),
            self.sampler_llm,
            self.pools,
            rl,
            iteration=iteration,
            world=world,
            on_group=self.logs.append_group,
            extra_rubric=self.extra_rubric,
            tokenizer=None if token_level else self.tokenizer,
        )
        holder.paused = data.phase.paused
        self._write_preferences(iteration, data)
        rollout_seconds = time.perf_counter() - started
        trained_at = time.perf_counter()
        informative = informative_groups(data.samples)
        all_groups = sorted(group for ids in all_gather_objects(informative, world) for group in ids)
        stats = train_iteration(
            self.forward,
            self.optimizer,
            self.recipe,
            world,
            self.expert_load,
            [sample for sample in data.samples if sample.group_id in informative],
            all_groups,
            self.objective,
            holder.ptx,
            self._critic_batch(iteration),
            current_version=version,
        )
        lr = self.optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():  # the schedule counts iterations, also those with no update
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            self.scheduler.step()
        train_seconds = time.perf_counter() - trained_at
        sync_seconds = self.sync()
        evaluated = (
            self._evaluate()
            if rl.eval.every and (iteration % rl.eval.every == 0 or iteration == self.recipe.run.steps)
            else None
        )
        seconds = time.perf_counter() - started
        self.state = self.state.model_copy(
            update=dict(
                step=iteration,
                tokens_seen=self.state.tokens_seen + stats.forwarded_tokens,
                elapsed_seconds=self.state.elapsed_seconds + seconds,
            )
        )
        self._last_data = data
        return self._record(iteration, temperature, data, stats, lr, all_groups, rollout_seconds,
                            train_seconds, sync_seconds, evaluated)  # fmt: skip

    # -- pieces of an iteration ----------------------------------------------------------------------------
    def _write_preferences(self, iteration: int, data: IterationData) -> None:
        records = [
            PreferenceRecord(
                id=preference_id(iteration, pair.group_id, pair.better, pair.worse),
                prompt=pair.prompt,
                chosen=pair.better_reply,
                rejected=pair.worse_reply,
                rubric=[RubricItem(name=c.name, description=c.description) for c in pair.rubric],
            )
            for pair in data.pairs
            if pair.better_reply.strip() and pair.worse_reply.strip()
        ]
        gathered = all_gather_objects(records, self.world)
        if self.world.is_main:
            self.logs.append_preferences([record for rank in gathered for record in rank])

    def _critic_batch(self, iteration: int):  # type: ignore[no-untyped-def]
        weight = self.rl.critic.train_weight
        if weight == 0 or self.tokenizer is None:
            return None
        records = self.logs.preferences_before(iteration, CRITIC_RECORDS_PER_STEP)
        return critic_batch(records, self.tokenizer, self.rl.ptx.seq_len, self.world)

    def _evaluate(self) -> dict[str, float] | None:
        if not self.world.is_main:
            return None
        self.policy.engine_model.eval()
        result = asyncio.run(held_out_reward(self.sampler_llm, self.held_out, self.rl.max_concurrency))
        return result.mean()

    def _audit_critic(self) -> CriticAudit | None:
        open_ended = any(task.kind == "open_ended" for pool in self.pools for task in pool.tasks)
        if not (open_ended and self.world.is_main):
            return None
        self.policy.engine_model.eval()
        sampling = _critic_sampling(self.rl)
        audit = asyncio.run(audit_critic(self.sampler_llm, sampling))
        verdict = "passes" if audit.passed else "FAILS (its rewards may pay for padding)"
        self.display.note(
            f"critic audit: prescriptive rubrics {audit.prescriptive_agreement:.2f} ({verdict}), "
            f"first-position wins {audit.position_bias:.2f}"
        )
        return audit

    def _record(
        self,
        iteration: int,
        temperature: float,
        data: IterationData,
        stats: UpdateStats,
        lr: float,
        all_groups: list[str],
        rollout_seconds: float,
        train_seconds: float,
        sync_seconds: float,
        evaluated: dict[str, float] | None,
    ) -> IterationRecord:
        version = iteration - 1
        local = [
            (s.env, s.reward, s.sampled_tokens, sum(v < version and m for v, m in zip(s.versions, s.mask, strict=True)))
            for s in data.samples
        ]  # fmt: skip
        truncated = [s.budget_exceeded for s in data.scored if s.reward is not None]
        excluded = sum(1 for s in data.scored if s.reward is None)
        judged = [pair.judgement.score for pair in data.pairs if pair.judgement.score is not None]
        gathered = all_gather_objects(
            (local, truncated, excluded, judged, data.phase.generated_tokens, len(data.phase.paused),
             data.phase.reused, data.phase.seconds, len(data.groups)),
            self.world,
        )  # fmt: skip
        samples = [item for rank in gathered for item in rank[0]]
        truncations = [flag for rank in gathered for flag in rank[1]]
        scores = [score for rank in gathered for score in rank[3]]
        generated = sum(rank[4] for rank in gathered)
        rollout_phase = max(rank[7] for rank in gathered)
        rewards_by_env: dict[str, list[float]] = {}
        for env, reward, _, _ in samples:
            rewards_by_env.setdefault(env, []).append(reward)
        sampled = sum(tokens for _, _, tokens, _ in samples)
        update_fields = (
            stats.last.fields()
            if stats.last is not None
            else dict(max_logit=0.0, max_logit_per_layer=[], heads_clipped=0, heads_total=0,
                      expert_load_min=[], expert_load_max=[], expert_load_mean=[],
                      expert_bias_min=[], expert_bias_max=[])
        )  # fmt: skip
        return IterationRecord(
            step=iteration,
            loss=stats.policy_loss + (stats.ptx_loss or 0.0) + (stats.critic_loss or 0.0),
            lr=lr,
            grad_norm=stats.grad_norm,
            tokens_seen=self.state.tokens_seen,
            trained_tokens=sampled,
            tokens_per_second=stats.forwarded_tokens / train_seconds if train_seconds else 0.0,
            elapsed_seconds=self.state.elapsed_seconds,
            temperature=temperature,
            policy_version=version,
            updates=stats.updates,
            groups_trained=len(all_groups),
            groups_without_signal=sum(rank[8] for rank in gathered) - len(all_groups),
            samples_trained=len(samples),
            samples_excluded=sum(rank[2] for rank in gathered),
            reward_mean=sum(r for _, r, _, _ in samples) / len(samples) if samples else None,
            reward_per_env={env: sum(v) / len(v) for env, v in sorted(rewards_by_env.items())},
            reply_tokens_mean=sampled / len(samples) if samples else None,
            truncation_rate=sum(truncations) / len(truncations) if truncations else None,
            paused_episodes=sum(rank[5] for rank in gathered),
            stale_token_fraction=sum(stale for *_, stale in samples) / sampled if sampled else 0.0,
            policy_loss=stats.policy_loss,
            ptx_loss=stats.ptx_loss,
            critic_loss=stats.critic_loss,
            kl_to_old=stats.kl_to_old,
            logprob_mismatch=stats.logprob_mismatch,
            critic_agreement=sum(scores) / len(scores) if scores else None,
            critic_pairs=len(scores),
            weight_sync_seconds=sync_seconds,
            rollout_seconds=rollout_seconds,
            train_seconds=train_seconds,
            generated_tokens=generated,
            rollout_tokens_per_second=generated / rollout_phase if rollout_phase else 0.0,
            reused_groups=sum(rank[6] for rank in gathered),
            token_exact=self.rl.rollout == "colocated",
            eval_reward=evaluated,
            trained_groups=all_groups,
            **update_fields,
        )

    # -- the end -------------------------------------------------------------------------------------------
    def _report_rows(
        self, initial_eval: dict[str, float] | None, audit: CriticAudit | None
    ) -> list[tuple[str, str]]:
        rl = self.rl
        objective = f"K1.5, τ = {rl.tau:g}" if rl.objective == "k15" else f"GRPO, clip ε = {rl.clip_eps:g}"
        rows = [
            ("policy", self.policy.description),
            ("objective", f"{objective}; {rl.updates_per_iteration} update(s) per iteration; MuonClip"),
            ("groups", f"{rl.groups_per_iteration} prompts × {rl.samples_per_group} samples per iteration"),
            ("rollouts", f"{self.sync.mode}; partial rollouts "
             + (f"{rl.partial.tokens_per_iteration} tokens per episode per iteration" if rl.partial.enabled else "off")),
            ("temperature", f"{rl.temperature.start:g} → {rl.temperature.end:g} over {rl.temperature.decay_iterations} iterations ({rl.temperature.shape})"),
            ("budgets", ", ".join(f"{kind} {tokens}" for kind, tokens in rl.budget.items()) or f"{rl.max_tokens} tokens"),
        ]  # fmt: skip
        if initial_eval:
            rows.append(
                (
                    "held-out greedy reward before RL",
                    ", ".join(f"{k} {v:.3f}" for k, v in initial_eval.items()),
                )
            )
        if audit is not None:
            rows.append(("critic audit", f"prescriptive {audit.prescriptive_agreement:.2f}, "
                         f"first-position wins {audit.position_bias:.2f}"))  # fmt: skip
        return rows

    def _sample_text(self) -> str | None:
        data: IterationData | None = getattr(self, "_last_data", None)
        if data is None or not data.scored:
            return None
        first = data.scored[0].group_id
        lines = [f"prompt: {data.groups[0].task.messages[-1].text}"]
        for sample in (s for s in data.scored if s.group_id == first):
            reward = "error: " + (sample.error or "") if sample.reward is None else f"{sample.reward:.2f}"
            lines.append(f"[{reward}] {reply_text(sample.trajectory)!r}")
        return "\n".join(lines)

    def _close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        self.policy.engine.close()

        async def close_environments() -> None:
            for pool in self.pools:
                for environment in pool.environments.values():
                    await environment.aclose()

        asyncio.run(close_environments())


def _critic_sampling(rl: Any) -> Any:
    from openk2.llm import SamplingParams

    return SamplingParams(
        temperature=rl.critic.temperature,
        max_tokens=rl.critic.max_tokens,
        seed=sampling_seed(rl.seed, "critic"),
    )


def _k2_tokenizer(policy: Policy) -> Any:
    if policy.tokenizer_file is None:
        return None
    from openk2.tokenizer import load_tokenizer

    return load_tokenizer(policy.tokenizer_file)


def _served_model(base_url: str, timeout_s: float) -> str:
    import openai

    served = [
        entry.id
        for entry in openai.OpenAI(base_url=base_url, api_key="EMPTY", timeout=timeout_s).models.list()
    ]
    if not served:
        raise ValueError(f"[rl.endpoint].base_url: {base_url} serves no models")
    return served[0]


__all__ = ["RLRunSummary", "RLTrainer", "TaskPool", "rl"]
