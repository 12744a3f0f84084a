"""The prompt library: rewrite and judge prompts kept as TOML data files, one file per mode.

The built-in library is `prompts/` beside this file (knowledge, math-notes, translate, judge); a recipe
may point `rephrase.prompt_library` at a directory of the same files to use its own. Every template is
checked when it is loaded: an unknown placeholder names the file and the field.
"""

import hashlib
import string
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from openk2.recipes import validate_recipe
from openk2.rephrase.fidelity import FidelitySettings

Mode = Literal["knowledge", "math-notes", "translate"]
MODES: tuple[Mode, ...] = get_args(Mode)
BUILTIN_LIBRARY = Path(__file__).parent / "prompts"
JUDGE_FILE = "judge.toml"
REWRITE_PLACEHOLDERS = {"style", "chunk", "source_context", "rewrite_so_far", "language"}
JUDGE_PLACEHOLDERS = {"source", "rewrite"}
PromptFile = TypeVar("PromptFile", bound=BaseModel)


class Style(BaseModel):
    """One style or perspective; variant k of a document is rewritten in one style, never twice the same."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    instruction: str = Field(min_length=1)


class ModePrompts(BaseModel):
    """How to rewrite one chunk in one mode: the first chunk alone, later chunks with their context."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str  # the task and the style
    context: str  # appended to the system prompt for every chunk after the first
    user: str  # the chunk to rewrite
    judge_note: str = ""  # what the judge must know about this mode, added to its rubric
    checks: FidelitySettings = FidelitySettings()
    styles: tuple[Style, ...] = Field(min_length=1)

    @field_validator("styles")
    @classmethod
    def _unique_style_ids(cls, styles: tuple[Style, ...]) -> tuple[Style, ...]:
        ids = [style.id for style in styles]
        if len(set(ids)) != len(ids):
            raise ValueError(f"style ids repeat: {ids}")
        return styles

    def messages(
        self, style: Style, language: str, chunk: str, source_context: str, rewrite_so_far: str, first: bool
    ) -> list[dict[str, str]]:
        """The chat messages that ask for a chunk's rewrite (K2 Fig. 4: the chunk + its preceding context)."""
        values = {
            "style": style.instruction,
            "language": language,
            "chunk": chunk,
            "source_context": source_context,
            "rewrite_so_far": rewrite_so_far,
        }
        system = self.system.format(**values)
        if not first:
            system += "\n\n" + self.context.format(**values)
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": self.user.format(**values)},
        ]

    def instructions(self, style: Style, language: str) -> list[str]:
        """The instruction text a rewrite must not repeat: the templates without the passages in them."""
        values = {"style": style.instruction, "language": language}
        return [
            _literal_text(template).format(**values) for template in (self.system, self.context, self.user)
        ]


class JudgeExample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    rewrite: str
    verdict: str


class JudgePrompts(BaseModel):
    """The judge's rubric, its few-shot examples (shown as earlier turns) and the question."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    user: str
    examples: tuple[JudgeExample, ...] = ()

    def messages(self, source: str, rewrite: str, note: str = "") -> list[dict[str, str]]:
        system = self.system.format() + (f"\n\n{note}" if note else "")
        conversation = [{"role": "system", "content": system}]
        for example in self.examples:
            conversation.append(
                {"role": "user", "content": self.user.format(source=example.source, rewrite=example.rewrite)}
            )
            conversation.append({"role": "assistant", "content": example.verdict})
        conversation.append({"role": "user", "content": self.user.format(source=source, rewrite=rewrite)})
        return conversation


def load_mode_prompts(library: Path, mode: Mode) -> ModePrompts:
    path = library / f"{mode}.toml"
    prompts = _load(path, ModePrompts)
    for field in ("system", "context", "user"):
        _check_placeholders(path, field, getattr(prompts, field), REWRITE_PLACEHOLDERS)
    _check_placeholders(path, "judge_note", prompts.judge_note, {"language"})
    return prompts


def load_judge_prompts(library: Path) -> JudgePrompts:
    path = library / JUDGE_FILE
    prompts = _load(path, JudgePrompts)
    _check_placeholders(path, "user", prompts.user, JUDGE_PLACEHOLDERS)
    _check_placeholders(path, "system", prompts.system, set())
    return prompts


def library_digest(library: Path, mode: Mode) -> str:
    """A hash of the files a run reads, recorded so that a resumed run cannot mix two libraries."""
    digest = hashlib.sha256()
    for name in (f"{mode}.toml", JUDGE_FILE):
        digest.update((library / name).read_bytes())
    return digest.hexdigest()


def _load(path: Path, model: type[PromptFile]) -> PromptFile:
    try:
        with path.open("rb") as file:
            document: dict[str, Any] = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: cannot read prompt file ({error})") from error
    return validate_recipe(model, document, str(path), within="")


def _check_placeholders(path: Path, field: str, template: str, allowed: set[str]) -> None:
    """A trial fill: an unknown name, also inside a format spec ('{chunk:{foo}}'), or a bad brace fails now."""
    try:
        template.format(**dict.fromkeys(allowed, ""))
    except KeyError as error:
        raise ValueError(
            f"{path}: {field}: unknown placeholder {error}; allowed: {sorted(allowed) or 'none'}"
        ) from error
    except (ValueError, IndexError) as error:
        raise ValueError(f"{path}: {field}: {error}") from error


def _literal_text(template: str) -> str:
    """The template with the passage placeholders removed (style and language stay to be filled in)."""
    kept = []
    for literal, field, _, _ in string.Formatter().parse(template):
        kept.append(literal.replace("{", "{{").replace("}", "}}"))
        if field in ("style", "language"):
            kept.append("{" + field + "}")
        elif field is not None:
            kept.append("\n")
    return "".join(kept)
