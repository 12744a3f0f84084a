"""The tokenizer.json of a model a recipe names, for stages that count tokens without calling the model."""

from pathlib import Path

TEACHER = "teacher"


def tokenizer_file(name: str) -> Path:
    """`"teacher"`: the embedded teacher's (converted on first use); a checkpoint directory: the one it holds;
    anything else: a tokenizer.json path. An endpoint's tokenizer is not reachable, so a recipe names one."""
    if name == TEACHER:
        from openk2.llm.teacher import teacher_checkpoint

        return teacher_checkpoint() / "tokenizer.json"
    path = Path(name)
    return path / "tokenizer.json" if path.is_dir() else path
