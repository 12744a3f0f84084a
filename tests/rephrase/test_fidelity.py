from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from openk2.rephrase.fidelity import (
    CHECK_NAMES,
    CheckResult,
    FidelitySettings,
    capitalised_names,
    check_fidelity,
    source_dates,
    source_numbers,
)

SOURCE = (
    "The Eiffel Tower was designed by the company of Gustave Eiffel and opened on 31 March 1889. "
    "It stands 330 metres tall and weighs about 10,100 tonnes. "
    "Nearly 7 million people visit Paris each year to climb it."
)
FAITHFUL = (
    "Gustave Eiffel's company designed the Eiffel Tower, which opened on March 31, 1889. "
    "The tower is 330 metres high and has a mass of roughly 10100 tonnes. "
    "Each year seven million visitors come to Paris to climb it."
)
INSTRUCTION = "Rewrite the passage below in the neutral, precise register of an encyclopedia article."


def check(
    source: str,
    rewrite: str,
    settings: FidelitySettings = FidelitySettings(),  # noqa: B008 — frozen, so one shared default is safe
    instructions: Sequence[str] = (),
) -> dict[str, CheckResult]:
    results = check_fidelity(
        source, rewrite, settings, instructions, count_tokens=lambda text: len(text.split())
    )
    assert [result.name for result in results] == list(CHECK_NAMES)
    return {result.name: result for result in results}


def test_faithful_rewrite_passes_every_check() -> None:
    results = check_fidelity(
        SOURCE, FAITHFUL, FidelitySettings(), [INSTRUCTION], count_tokens=lambda text: len(text.split())
    )
    assert results == [CheckResult(name, True, "") for name in CHECK_NAMES]


def test_changed_number_fails_naming_it() -> None:
    assert check(SOURCE, FAITHFUL.replace("330", "300"))["numbers"] == CheckResult(
        "numbers", False, "missing: 330"
    )


def test_missing_numbers_are_listed_in_source_order() -> None:
    rewrite = FAITHFUL.replace("330", "300").replace("10100", "10000")
    assert check(SOURCE, rewrite)["numbers"].detail == "missing: 330, 10100"


def test_dropped_name_fails_naming_it() -> None:
    result = check(SOURCE, FAITHFUL.replace("to Paris", "to the city"))["names"]
    assert result == CheckResult("names", False, "missing: Paris")


def test_surname_alone_does_not_keep_a_full_name_but_a_possessive_does() -> None:
    source = "The tower was designed by Gustave Eiffel."
    assert check(source, "Eiffel designed the tower.")["names"].detail == "missing: Gustave Eiffel"
    assert check(source, "The design was Gustave Eiffel's own.")["names"].passed
    assert check("Plans by Eiffel were bold.", "Eiffel's plans were bold.")["names"].passed


def test_reformatted_date_passes_and_changed_day_fails() -> None:
    source = "The Bastille fell on 14 July 1789 in the morning."
    assert check(source, "On July 14, 1789 the Bastille fell.")["dates"].passed
    assert check(source, "The Bastille fell on 1789-07-14.")["dates"].passed
    changed = check(source, "On July 15, 1789 the Bastille fell.")["dates"]
    assert changed == CheckResult("dates", False, "missing: 14 July 1789")


def test_more_precise_date_keeps_a_month_and_year() -> None:
    assert check("It opened in March 1889.", "It opened on 31 March 1889.")["dates"].passed
    assert not check("It opened in March 1889.", "It opened in 1889.")["dates"].passed


@pytest.mark.parametrize(
    ("text", "dates"),
    [
        ("stormed on 14 July 1789", {(1789, 7, 14)}),
        ("stormed on July 14, 1789", {(1789, 7, 14)}),
        ("stormed on Jul. 14, 1789", {(1789, 7, 14)}),
        ("stormed on the 14th of July 1789", {(1789, 7, 14)}),
        ("stormed on 1789-07-14", {(1789, 7, 14)}),
        ("stormed in July 1789", {(1789, 7, None)}),
        ("stormed in Sept. 2001", {(2001, 9, None)}),
        ("stormed on 14 July", {(None, 7, 14)}),
        ("stormed in 1789", set()),  # a bare year is a number
        ("they may 5 times", set()),  # month names are capitalised
        ("page 1789-13-40", set()),  # no thirteenth month
    ],
)
def test_source_dates_reads_common_english_formats(text: str, dates: set[tuple]) -> None:
    assert source_dates(text) == dates


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("1,000 men and 1000 horses", {"1000"}),
        ("a total of 1,234,567.5", {"1234567.5"}),
        ("pi is about 3.14", {"3.14"}),
        ("it fell to -5 degrees", {"-5"}),
        ("pages 10-20", {"10", "20"}),
        ("45% of voters", {"45"}),
        ("agent 007", {"7"}),
        ("built in 1889", {"1889"}),
        ("on 14 July 1789, 12 died", {"12"}),  # the date's digits belong to the dates check
    ],
)
def test_source_numbers_are_normalised(text: str, numbers: set[str]) -> None:
    assert source_numbers(text) == numbers


def test_thousands_separator_does_not_matter_either_way() -> None:
    assert check("It weighs 10,100 tonnes.", "It weighs 10100 tonnes.")["numbers"].passed
    assert check("It weighs 10100 tonnes.", "It weighs 10,100 tonnes.")["numbers"].passed


def test_number_words_up_to_twenty_keep_a_number() -> None:
    assert check("Paris has 3 airports.", "Paris has three airports.")["numbers"].passed
    assert check("Paris has 20 districts.", "Paris has twenty districts.")["numbers"].passed
    assert check("It was the 3 tower.", "It was the third tower.")["numbers"].detail == "missing: 3"
    assert check("Paris has 25 bridges.", "Paris has twenty-five bridges.")["numbers"].detail == "missing: 25"


def test_sentence_opening_function_words_are_not_names() -> None:
    text = (
        "However, the tower grew. This was new. In 1889 it opened in Paris. It rained on a Monday in March."
    )
    assert capitalised_names(text) == {"Paris"}


def test_sentence_opening_word_counts_only_if_capitalised_mid_sentence_too() -> None:
    assert capitalised_names("Paris is old. The city is large.") == set()
    assert capitalised_names("Paris is old. Many visit Paris.") == {"Paris"}
    assert capitalised_names("Visiting New York is fun.") == {"New York"}


def test_multi_word_names_are_one_name() -> None:
    text = "He moved to New York with Gustave Eiffel and visited The Hague."
    assert capitalised_names(text) == {"New York", "Gustave Eiffel", "Hague"}


@pytest.mark.parametrize(
    ("rewrite_words", "detail"),
    [(4, "ratio 0.40 outside [0.5, 2.0]"), (5, ""), (20, ""), (21, "ratio 2.10 outside [0.5, 2.0]")],
)
def test_length_ratio_must_lie_in_the_band(rewrite_words: int, detail: str) -> None:
    result = check("word " * 10, "word " * rewrite_words)["length"]
    assert result == CheckResult("length", detail == "", detail)


def test_instruction_six_gram_in_the_rewrite_is_a_leak() -> None:
    result = check(
        "The tower is tall.",
        "Rewrite the passage below in the end: the tower is tall.",
        instructions=[INSTRUCTION],
    )
    assert result["leak"] == CheckResult("leak", False, "leaked: 'rewrite the passage below in the'")


def test_six_gram_shared_with_the_source_is_not_a_leak() -> None:
    source = "Clerks write in the neutral, precise register of their office."
    rewrite = "Office clerks write in the neutral, precise register of their trade."
    assert check(source, rewrite, instructions=[INSTRUCTION])["leak"].passed


def test_leak_marker_is_caught_case_insensitively_unless_the_source_has_it() -> None:
    settings = FidelitySettings(leak_markers=("here is the rewritten",))
    leaked = check("The tower is tall.", "HERE IS THE REWRITTEN text: the tower is tall.", settings)["leak"]
    assert leaked == CheckResult("leak", False, "leaked: 'here is the rewritten'")
    quoted = "Here is the rewritten law of 1901."
    assert check(quoted, quoted, settings)["leak"].passed


def test_disabled_checks_report_off() -> None:
    settings = FidelitySettings(numbers=False, dates=False, names=False)
    results = check(
        SOURCE, "A tower stands in a city and many people climb it to see the view " * 2, settings
    )
    for name in ("numbers", "dates", "names"):
        assert results[name] == CheckResult(name, True, "off")
    assert results["length"].passed


@pytest.mark.parametrize("rewrite", ["", "  \n\t "])
def test_empty_rewrite_fails_every_check_that_can_fail(rewrite: str) -> None:
    results = check(SOURCE, rewrite)
    assert [results[name].passed for name in CHECK_NAMES] == [False, False, False, False, True, True]
    assert results["length"].detail == "ratio 0.00 outside [0.5, 2.0]"
    assert results["dates"].detail == "missing: 31 March 1889"


def test_length_band_out_of_order_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="min_length_ratio"):
        FidelitySettings(min_length_ratio=2.0, max_length_ratio=1.0)


def test_non_positive_minimum_ratio_and_unknown_fields_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="min_length_ratio"):
        FidelitySettings(min_length_ratio=0.0)
    with pytest.raises(ValidationError, match="number"):
        FidelitySettings(number=False)


PIECES = [
    "the", "tower", "was", "built", "in", "Paris", "by", "Gustave Eiffel", "and", "New York", "1,000",
    "3.14", "45%", "-7", "seven", "14 July 1789", "Jul. 4", "1889-03-31", "However,", "Eiffel's", "metres",
]  # fmt: skip


@given(st.lists(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12), min_size=1, max_size=5))
def test_a_passage_is_faithful_to_itself(sentences: list[list[str]]) -> None:
    text = " ".join(sentence[0].upper() + sentence[1:] + "." for sentence in map(" ".join, sentences))
    settings = FidelitySettings(leak_markers=("here is the rewritten", "passage:"))
    results = check(text, text, settings, instructions=[INSTRUCTION])
    assert all(result == CheckResult(result.name, True, "") for result in results.values())


def test_translation_compares_digits_across_separator_conventions() -> None:
    german, english = (
        "Es wiegt 3,5 Tonnen und kostet 1.000 Euro.",
        "It weighs 3.5 tonnes and costs 1,000 euros.",
    )
    loose = FidelitySettings(names=False, number_separators="any")
    assert check(german, english, loose)["numbers"] == CheckResult("numbers", True, "")
    assert (
        check(german, "It weighs 3.6 tonnes and costs 1,000 euros.", loose)["numbers"].detail == "missing: 35"
    )
    assert not check(german, english, FidelitySettings(names=False))["numbers"].passed  # English only


def test_a_rewrite_that_repeats_its_source_verbatim_fails_the_copy_check() -> None:
    source = "The tower was completed in 1889 for the fair and was repainted every seven years since then."
    restyled = "Finished in 1889 for the fair, the tower has since been given fresh paint every seven years."
    strict = FidelitySettings(names=False, max_copied_fraction=0.8)
    assert check(source, source, strict)["copy"] == CheckResult(
        "copy", False, "100% of 8-word runs copied from the source (at most 80%)"
    )
    assert check(source, restyled, strict)["copy"] == CheckResult("copy", True, "")
    # 17 words, 10 runs of 8; the first 4 runs are the source's opening: 40%
    half_copied = "The tower was completed in 1889 for the fair and was then painted again every seven years."
    assert check(source, half_copied, FidelitySettings(max_copied_fraction=0.3))["copy"].detail == (
        "40% of 8-word runs copied from the source (at most 30%)"
    )
    assert check(source, half_copied, FidelitySettings(max_copied_fraction=0.4))["copy"].passed
    assert check(source, "Done in 1889.", strict)["copy"].passed  # too short to hold an 8-word run
