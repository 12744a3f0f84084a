"""Instruction following: every constraint kind's checker, the hack-check, the judge, composed prompts."""

import asyncio

import pytest

from openk2.chat import Message
from openk2.gym import Task, make
from openk2.gym.envs.instruction.constraints import IFEVAL_KINDS, KINDS, check_constraint
from openk2.gym.envs.instruction.hack_check import hack_check
from tests.gym.scripted import fixed

# kind id -> (kwargs, a complying reply, a breaking reply)
EXAMPLES = {
    "keywords:existence": (
        {"keywords": ["river", "ember"]},
        "The river kept an ember glowing.",
        "The river ran.",
    ),
    "keywords:frequency": (
        {"keyword": "harbor", "relation": "at least", "n": 2},
        "harbor, harbor",
        "one harbor",
    ),
    "keywords:forbidden_words": ({"forbidden_words": ["very"]}, "It is quite good.", "It is very good."),
    "keywords:letter_frequency": ({"letter": "z", "relation": "less than", "n": 2}, "zoo", "zizz"),
    "language:response_language": (
        {"language": "fr"},
        "Le chat est sur la table et il dort dans la maison.",
        "The cat is on the table and it sleeps in the house.",
    ),
    "length_constraints:number_sentences": (
        {"relation": "less than", "n": 3},
        "One. Two.",
        "One. Two. Three.",
    ),
    "length_constraints:number_paragraphs": ({"n": 2}, "First.\n***\nSecond.", "Only one."),
    "length_constraints:number_words": (
        {"relation": "at least", "n": 5},
        "one two three four five",
        "one two",
    ),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Still"},
        "Hello there.\n\nStill here.",
        "Hello there.\n\nYet here.",
    ),
    "detectable_content:number_placeholders": (
        {"n": 2},
        "Send it to [name] at [address].",
        "Send it to [name].",
    ),
    "detectable_content:postscript": ({"marker": "P.S."}, "Hi.\n\nP.S. Bye.", "Hi. Bye."),
    "detectable_format:number_bullet_lists": ({"n": 2}, "* a\n* b", "* a\n* b\n* c"),
    "detectable_format:constrained_response": ({}, "My answer is yes.", "Yes, sure."),
    "detectable_format:number_highlighted_sections": ({"n": 2}, "*one* and *two*", "*one* only"),
    "detectable_format:multiple_sections": (
        {"n": 2, "splitter": "SECTION"},
        "SECTION 1\nA\nSECTION 2\nB",
        "SECTION 1\nA",
    ),
    "detectable_format:json_format": ({}, '```json\n{"a": 1}\n```', "{'a': 1"),
    "detectable_format:title": ({}, "<<A Title>>\nText.", "A Title\nText."),
    "combination:two_responses": ({}, "First answer.\n******\nSecond answer.", "First answer."),
    "combination:repeat_prompt": (
        {"prompt_to_repeat": "Describe tea."},
        "Describe tea. Tea is hot.",
        "Tea is hot.",
    ),
    "startend:end_checker": (
        {"end_phrase": "Any other questions?"},
        "Done. Any other questions?",
        "Any other questions? Done.",
    ),
    "change_case:capital_word_frequency": (
        {"relation": "at least", "n": 2},
        "VERY LOUD words",
        "Very loud words",
    ),
    "change_case:english_capital": ({}, "ALL CAPS HERE.", "Not all caps."),
    "change_case:english_lowercase": ({}, "all lowercase here.", "Not lowercase."),
    "punctuation:no_comma": ({}, "No commas here.", "Commas, here."),
    "startend:quotation": ({}, '"Wrapped."', "Not wrapped."),
    "count:word_count_range": ({"min_words": 2, "max_words": 3}, "two words", "one"),
    "count:unique_word_count": ({"N": 3}, "a b c", "a a a"),
    "count:keywords_multiple": (
        {"keyword1": "a1", "keyword2": "b2", "keyword3": "c3", "keyword4": "d4", "keyword5": "e5"},
        "a1 " + "b2 " * 2 + "c3 " * 3 + "d4 " * 5 + "e5 " * 7,
        "a1 b2",
    ),
    "format:no_whitespace": ({}, "no_whitespace_here", "some whitespace"),
}


def test_every_kind_has_an_example_and_the_25_ifeval_kinds_are_there():
    assert set(EXAMPLES) == set(KINDS)
    assert len(IFEVAL_KINDS) == 25


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_each_checker_accepts_compliance_and_names_a_violation(kind):
    kwargs, good, bad = EXAMPLES[kind]
    assert check_constraint(good, {"id": kind, "kwargs": kwargs}) is None
    reason = check_constraint(bad, {"id": kind, "kwargs": kwargs})
    assert isinstance(reason, str) and reason


def bullets_task(**verification) -> Task:
    constraints = [{"id": "detectable_format:number_bullet_lists", "kwargs": {"n": 3}}]
    return Task(
        id="instruction/test/bullets",
        env="instruction",
        kind="instruction",
        messages=[{"role": "user", "content": "List three fruits as exactly 3 bullet points."}],
        verification={"constraints": constraints, "soft": []} | verification,
    )


def score(env, task, reply):
    return asyncio.run(env.score(task, [*task.messages, Message(role="assistant", content=reply)]))


def test_compliant_1_violating_0_and_malformed_json_0_with_its_reason():
    env = make("instruction", verifier_workers=0)
    assert score(env, bullets_task(), "* apple\n* pear\n* plum").value == 1.0
    assert score(env, bullets_task(), "* apple\n* pear").value == 0.0
    json_task = bullets_task(constraints=[{"id": "detectable_format:json_format", "kwargs": {}}])
    malformed = score(env, json_task, '{"fruits": ["apple", "pear"')
    assert malformed.value == 0.0
    assert "not valid JSON" in malformed.components[0].details["failed"]["detectable_format:json_format"]


def test_hack_check_catches_a_false_claim_of_three_bullets_with_five():
    five = "* a\n* b\n* c\n* d\n* e\nI used exactly 3 bullet points."
    verdict = hack_check(five, failed_rules=[])
    assert verdict.score == 0.0
    assert (
        verdict.details["false_claims"][0]["claimed"] == 3
        and verdict.details["false_claims"][0]["actual"] == 5
    )
    assert hack_check("* a\n* b\n* c\nI used exactly 3 bullet points.", failed_rules=[]).score == 1.0
    env = make("instruction", verifier_workers=0)
    reward = score(env, bullets_task(constraints=[]), five)  # no rule looks at bullets: only the hack-check
    assert reward.value == 0.0 and [c.name for c in reward.components if c.score == 0.0] == ["hack_check"]


def test_hack_check_catches_blanket_claims_that_the_rules_refute():
    claim = "Here you go, written without any commas, and all constraints are satisfied: a, b."
    verdict = hack_check(claim, failed_rules=["punctuation:no_comma"])
    assert verdict.score == 0.0 and len(verdict.details["false_claims"]) == 2
    assert hack_check("All constraints are satisfied.", failed_rules=[]).score == 1.0


def test_soft_constraints_go_to_the_judge_and_a_missing_judge_is_an_error():
    """The judge is a scripted stand-in: the test is about how its verdicts become a component."""
    task = bullets_task(soft=["Use a warm tone."])
    reply = "* apple\n* pear\n* plum"
    judged = score(make("instruction", verifier_workers=0, judge=fixed("YES, it is warm.")), task, reply)
    assert judged.value == 1.0 and judged.components[-1].name == "judge"
    refused = score(make("instruction", verifier_workers=0, judge=fixed("NO.")), task, reply)
    assert refused.value == 0.0
    unparseable = score(make("instruction", verifier_workers=0, judge=fixed("Hmm.")), task, reply)
    assert unparseable.value is None and "answered none of" in unparseable.error
    no_judge = score(make("instruction", verifier_workers=0), task, reply)
    assert no_judge.value is None and "need a judge" in no_judge.error


def test_composed_prompts_are_seeded_and_consistent():
    env = make("instruction", verifier_workers=0, difficulty=3, sources=["autoif"])
    first, again = env.tasks("train", n=20, seed=4), env.tasks("train", n=20, seed=4)
    assert first == again
    for task in first:
        constraints = task.verification["constraints"]
        assert len(constraints) == 3
        for constraint in constraints:  # every constraint is stated in the prompt
            assert KINDS[constraint["id"]].describe(constraint["kwargs"]) in task.messages[0].text


def test_ifbench_prompts_ship_with_their_constraints():
    env = make("instruction", verifier_workers=0, sources=["ifbench"])
    tasks = env.tasks("train") + env.tasks("test")
    assert len(tasks) == 22  # the single-constraint prompts of the four IFBench kinds checked here
    assert all(task.id.startswith("instruction/ifbench/") for task in tasks)
