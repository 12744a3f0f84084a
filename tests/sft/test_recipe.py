"""The SFT recipe: validated up front, errors naming the file and `[section].field`; the cosine schedule and the
AdamW option it brings to the shared loop."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from openk2.model import K2Config, K2ForCausalLM
from openk2.sft.recipe import load_sft_recipe
from openk2.train.loop import build_optimizer
from tests.sft.sft_data import reversal_tasks, tool_trajectories, write_jsonl
from tests.sft.sft_recipe import sft_sections, write_sft_recipe
from tests.train.small_run import SMALL_MODEL

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def chat_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "Hi"}]}])


def _write(tmp_path: Path, checkpoint: Path, chat_file: Path, source: dict | None = None, **sections) -> Path:
    return write_sft_recipe(
        tmp_path / "recipe.toml",
        sft_sections(tmp_path, checkpoint, **sections),
        [{"kind": "chat", "path": chat_file, **(source or {})}],
    )


def test_the_shipped_tiny_recipe_is_valid_given_its_checkpoint_and_data(
    pretrained_checkpoint: Path, tmp_path: Path
) -> None:
    text = (REPO / "recipes" / "sft-tiny.toml").read_text()
    checkpoint = re.search(r'^checkpoint = "([^"]+)"', text, re.MULTILINE).group(1)
    text = text.replace(f'"{checkpoint}"', f'"{pretrained_checkpoint}"')
    train, test = reversal_tasks(4, 1, seed=0)
    write_jsonl(tmp_path / "tasks.jsonl", train + test)
    write_jsonl(tmp_path / "trajectories.jsonl", tool_trajectories(2, seed=0, prefix="t"))
    text = text.replace('"runs/sft-data/', f'"{tmp_path}/').replace('"samples/', f'"{REPO}/samples/')
    (tmp_path / "sft-tiny.toml").write_text(text)
    recipe = load_sft_recipe(tmp_path / "sft-tiny.toml")
    assert [source.kind for source in recipe.sft.sources] == ["tasks", "trajectories", "chat", "preference"]
    assert recipe.optim.optimizer == "muonclip" and recipe.schedule.kind == "cosine"


@pytest.mark.parametrize(
    ("sections", "source", "problem"),
    [
        (
            dict(init=dict(checkpoint="nowhere")),
            None,
            "[init].checkpoint: nowhere lacks ['config.json', 'tokenizer.json']",
        ),
        (
            dict(sft=dict(seq_len=1024)),
            None,
            "[sft].seq_len 1024 exceeds the checkpoint's max_position_embeddings 512",
        ),
        (dict(sft=dict(template="k2-0101")), None, "[sft].template: Input should be 'k2-0905' or 'k2-0711'"),
        (dict(sft=dict(val_fraction=1.0)), None, "[sft].val_fraction: Input should be less than 1"),
        (dict(model=dict(preset="tiny")), None, "[model]: Extra inputs are not permitted"),
        (
            dict(optim=dict(optimizer="adamw", qk_clip_tau=50.0)),
            None,
            "[optim]: qk_clip_tau: only MuonClip uses it",
        ),
        (dict(optim=dict(optimizer="sgd")), None, "[optim].optimizer: Input should be 'muonclip' or 'adamw'"),
        (dict(schedule=dict(kind="cosine")), None, "[schedule]: decay: a WSD setting"),
        (
            dict(run=dict(steps=4), schedule=dict(warmup_steps=5)),
            None,
            "[schedule].warmup_steps 5 exceeds [run].steps 4",
        ),
        (
            {},
            dict(kind="dialogue"),
            "[sft].sources[0].kind: Input should be 'chat', 'trajectories', 'preference'",
        ),
        (
            {},
            dict(min_reward=0.5),
            "[sft].sources[0]: min_reward: only trajectories carry a reward, not chat",
        ),
        ({}, dict(weight=-1), "[sft].sources[0].weight: Input should be greater than 0"),
    ],
)
def test_bad_recipes_name_the_file_and_the_field(
    pretrained_checkpoint: Path,
    tmp_path: Path,
    chat_file: Path,
    sections: dict,
    source: dict | None,
    problem: str,
) -> None:
    path = _write(tmp_path, pretrained_checkpoint, chat_file, source, **sections)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*{re.escape(problem)}"):
        load_sft_recipe(path)


def test_a_missing_source_file_is_named(pretrained_checkpoint: Path, tmp_path: Path) -> None:
    path = write_sft_recipe(
        tmp_path / "r.toml",
        sft_sections(tmp_path, pretrained_checkpoint),
        [{"kind": "chat", "path": "absent.jsonl"}],
    )
    with pytest.raises(ValueError, match=re.escape("[sft].sources[0].path: absent.jsonl is not a file")):
        load_sft_recipe(path)


def test_cosine_decays_from_the_end_of_warm_up_to_the_floor(
    pretrained_checkpoint: Path, tmp_path: Path, chat_file: Path
) -> None:
    sections = sft_sections(tmp_path, pretrained_checkpoint, run=dict(steps=10))
    sections["schedule"] = dict(kind="cosine", warmup_steps=2, final_lr=1e-4)
    recipe = load_sft_recipe(
        write_sft_recipe(tmp_path / "r.toml", sections, [{"kind": "chat", "path": chat_file}])
    )
    lr = recipe.lr_schedule()
    peak = recipe.optim.lr
    expected = [peak / 2, peak] + [
        1e-4 + (peak - 1e-4) * 0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(8)
    ]
    assert [lr.lr_at(step) for step in range(10)] == pytest.approx(expected, rel=1e-12)


def test_the_adamw_option_is_torch_adamw_on_every_parameter(
    pretrained_checkpoint: Path, tmp_path: Path, chat_file: Path
) -> None:
    optim = dict(optimizer="adamw", lr=1e-2, weight_decay=0.1, adamw_betas=[0.8, 0.9], adamw_eps=1e-6)
    recipe = load_sft_recipe(_write(tmp_path, pretrained_checkpoint, chat_file, optim=optim))
    torch.manual_seed(0)
    ours = K2ForCausalLM(K2Config(**SMALL_MODEL))
    reference = K2ForCausalLM(K2Config(**SMALL_MODEL))
    reference.load_state_dict(ours.state_dict())
    optimizer = build_optimizer(ours, recipe)
    torch_adamw = torch.optim.AdamW(
        reference.parameters(), lr=1e-2, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1
    )
    batch = torch.randint(0, 768, (2, 16), generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        for model, step in ((ours, optimizer), (reference, torch_adamw)):
            model(batch, labels=batch).loss.backward()
            step.step()
            step.zero_grad()
    for (name, a), (_, b) in zip(ours.named_parameters(), reference.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert optimizer.last_qk_clip_stats.heads_clipped == 0 and optimizer.last_qk_clip_stats.max_logit > 0
