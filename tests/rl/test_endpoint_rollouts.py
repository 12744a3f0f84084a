"""RL through an OpenAI-compatible server (a real `openk2 serve` app on a loopback port): the server samples,
the trainer re-tokenises its messages (runs marked not token-exact), and after every iteration the trainer
writes its weights and the server loads them through SGLang's `POST /update_weights_from_disk`; at the end
the served weights are exactly the trainer's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openk2.llm.k2_engine import K2Engine
from openk2.model import K2ForCausalLM
from openk2.rl.metrics import IterationRecord
from openk2.rl.trainer import rl
from openk2.serve.app import create_app
from openk2.serve.background import BackgroundServer
from openk2.train.metrics import read_metrics
from tests.rl.rl_setup import rl_sections, write_rl_recipe


@pytest.mark.long  # two RL iterations against a served copy of the warm policy
def test_the_served_policy_loads_the_trained_weights_after_each_iteration(
    warm_policy: Path, tmp_path: Path
) -> None:
    engine = K2Engine.from_checkpoint(warm_policy, max_batch_size=64, max_pending=4096)
    try:
        with BackgroundServer(create_app(engine)) as server:  # type: ignore[arg-type]
            sections = rl_sections(
                tmp_path, warm_policy, name="endpoint", run=dict(steps=2),
                rl=dict(rollout="endpoint", endpoint={"base_url": server.base_url}, eval={"every": 0}),
            )  # fmt: skip
            summary = rl(write_rl_recipe(tmp_path / "rl.toml", sections), progress=False)
            served = {name: tensor.clone() for name, tensor in engine.model.state_dict().items()}
    finally:
        engine.close()
    records = read_metrics(tmp_path / "endpoint" / "metrics.jsonl", IterationRecord)
    assert [r.token_exact for r in records] == [False, False]
    assert all(r.weight_sync_seconds > 0 for r in records) and any(r.updates for r in records)
    trained = K2ForCausalLM.from_pretrained(summary.checkpoint).state_dict()
    initial = K2ForCausalLM.from_pretrained(warm_policy).state_dict()
    changed = [name for name in trained if not torch.equal(trained[name], initial[name])]
    assert changed, "RL changed no weight"
    for name in changed:
        torch.testing.assert_close(served[name], trained[name], rtol=0, atol=0)
