"""Tiny checkpoints of two training stages, built in seconds for the stage-by-stage evaluation test.

    pre-trained   random init + next-token training on plain arithmetic text (no chat format)
    SFT           the pre-trained weights + training on chat examples of the gym's arithmetic *train*
                  split, loss on the assistant's tokens only, replies in the format the task asks for

A few hundred AdamW steps on a 2-layer model: enough to learn the reply format (and some sums), which
is what the evaluation must show changing between the stages. Saved as `openk2 pretrain` saves.
"""

from pathlib import Path

import torch

from openk2.chat import Message, render_tokens
from openk2.gym import make
from openk2.model import K2Config, K2ForCausalLM
from tests.llm.checkpoints import scripted_tokenizer

BATCH = 16


def _config() -> K2Config:
    return K2Config(
        **{
            **K2Config.preset("tiny").model_dump(),
            "vocab_size": 512,
            "num_hidden_layers": 2,
            "max_position_embeddings": 256,
            "bos_token_id": None,
            "eos_token_id": None,
        }
    )


def _train(model: K2ForCausalLM, rows: list[tuple[list[int], list[bool]]], steps: int, lr: float) -> None:
    """AdamW on the masked next-token loss; rows are (ids, trained positions), right-padded per batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        chosen = torch.randint(len(rows), (BATCH,), generator=generator).tolist()
        width = max(len(rows[index][0]) for index in chosen)
        ids = torch.zeros(BATCH, width, dtype=torch.long)
        labels = torch.full((BATCH, width), -100)
        for row, index in enumerate(chosen):
            tokens, trained = rows[index]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            labels[row, : len(tokens)] = torch.tensor(
                [t if keep else -100 for t, keep in zip(tokens, trained, strict=True)]
            )
        loss = model(ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def _arithmetic_train_tasks():
    env = make("math", sources=["arithmetic"], difficulty=1, verifier_workers=0)
    return env.tasks("train", n=60, seed=0)


def pretrained_checkpoint(directory: Path, steps: int = 60) -> Path:
    tokenizer = scripted_tokenizer()
    torch.manual_seed(0)
    model = K2ForCausalLM(_config())
    texts = [
        f"{task.messages[0].text.split(chr(10))[0]} The sum is {task.verification['answer']}."
        for task in _arithmetic_train_tasks()
    ]
    rows = [(ids, [True] * len(ids)) for ids in (tokenizer.encode(text).ids for text in texts)]
    _train(model, rows, steps, lr=3e-3)
    model.save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def sft_checkpoint(pretrained: Path, directory: Path, steps: int = 200) -> Path:
    tokenizer = scripted_tokenizer()
    model = K2ForCausalLM.from_pretrained(pretrained)
    rows = []
    for task in _arithmetic_train_tasks():
        reply = Message(role="assistant", content=f"\\boxed{{{task.verification['answer']}}}")
        rows.append(render_tokens(tokenizer, [*task.messages, reply]))
    _train(model, rows, steps, lr=3e-3)
    model.save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory
