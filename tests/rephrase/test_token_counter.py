"""Token counts and context tails with the teacher's BPE (the default rephrasing tokenizer)."""

import pytest

from openk2.rephrase.token_counter import TokenCounter


@pytest.fixture(scope="module")
def count_tokens() -> TokenCounter:
    return TokenCounter.load("teacher")


def test_the_tail_fits_the_budget_and_starts_at_a_word(count_tokens):
    text = "The Amazon River flows for about 6,400 kilometres from the Andes to the Atlantic Ocean."
    tail = count_tokens.tail(text, 8)
    assert text.endswith(tail) and 0 < count_tokens(tail) <= 8
    assert text[len(text) - len(tail) - 1] == " "  # the cut is at a space, not inside a word
    assert count_tokens.tail(text, 1000) == text and count_tokens.tail(text, 0) == ""


def test_text_without_spaces_keeps_a_tail(count_tokens):
    chinese = "长城是古代中国修建的防御工程。" * 20
    tail = count_tokens.tail(chinese, 16)
    assert chinese.endswith(tail) and 0 < count_tokens(tail) <= 16


def test_an_unloadable_tokenizer_names_the_field(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\[rephrase\]\.tokenizer: cannot load .*tokenizer\.json"):
        TokenCounter.load(str(tmp_path / "tokenizer.json"))


def test_a_checkpoint_directory_names_the_tokenizer_it_holds(tmp_path, count_tokens):
    (tmp_path / "tokenizer.json").write_text(count_tokens.tokenizer.to_str())
    from_directory = TokenCounter.load(str(tmp_path))
    assert from_directory.digest() == count_tokens.digest()
    assert from_directory("The Amazon River") == count_tokens("The Amazon River")


class CountingTokenizer:
    """The teacher's tokenizer, noting the length of every text it encodes."""

    def __init__(self, tokenizer):
        self.tokenizer, self.encoded_lengths = tokenizer, []

    def encode(self, text, add_special_tokens=True):
        self.encoded_lengths.append(len(text))
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)


def whole_text_tail(count_tokens: TokenCounter, text: str, budget: int) -> str:
    """The reference: encode all of `text`, cut `budget` tokens from its end, move the cut to a word start."""
    encoding = count_tokens.tokenizer.encode(text, add_special_tokens=False)
    if len(encoding.ids) <= budget:
        return text
    start = encoding.offsets[len(encoding.ids) - budget][0]
    if start > 0 and not text[start - 1].isspace():
        start = next((i for i in range(start, min(len(text), start + 32)) if text[i].isspace()), start)
    return text[start:].lstrip()


@pytest.mark.parametrize("budget", [1, 64, 512])
def test_the_tail_of_a_long_text_tokenizes_only_its_end_and_equals_the_whole_text_cut(count_tokens, budget):
    paragraph = "The Amazon River flows for about 6,400 kilometres from the Andes to the Atlantic Ocean. "
    text = "".join(f"{paragraph}({index})\n" for index in range(4_000))  # 0.4 MB, 400 chunks deep
    counting = TokenCounter(CountingTokenizer(count_tokens.tokenizer))
    assert counting.tail(text, budget) == whole_text_tail(count_tokens, text, budget)
    assert max(counting.tokenizer.encoded_lengths) < 40 * (budget + 16)  # a window near the end, not 0.4 MB
    assert counting.tail("a short text", budget) == whole_text_tail(count_tokens, "a short text", budget)
