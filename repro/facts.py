"""A synthetic knowledge corpus with a question probe, for K2 report §2.2, Table 1 (rephrasing vs repetition).

Invented people, each with a birthplace and an occupation drawn from fixed lists, so no model knows them
beforehand. The raw corpus is one short biography per person. The probe asks each fact as a question in a
phrasing that appears in no training text and ranks every candidate answer by the model's log-probability.

`template_paraphrases` is a CONTROL, not K2's method: it rewrites a biography with fixed sentence templates
(different structures, orders and perspectives). K2 rephrases with a large language model under fidelity
checks; the template control only tells apart what diversity of form does from what repetition does, with
perfect fidelity by construction.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

FIRST_NAMES = (
    "Alden",
    "Brisa",
    "Corvin",
    "Delphine",
    "Eamon",
    "Fenna",
    "Garrick",
    "Hesper",
    "Isolde",
    "Jorah",
    "Kestrel",
    "Liora",
    "Marek",
    "Nerys",
    "Orrin",
    "Perrin",
    "Quenna",
    "Rowan",
    "Sabine",
    "Tamsin",
)
SURNAMES = (
    "Ashdown",
    "Blackmere",
    "Coldwell",
    "Dunmore",
    "Everly",
    "Fairholt",
    "Greythorn",
    "Hallowell",
    "Ironside",
    "Kettering",
    "Lockhart",
    "Merriweather",
    "Northcott",
    "Oakridge",
    "Pembrook",
    "Quarrington",
    "Ravensworth",
    "Stonebridge",
    "Thistlewood",
    "Underhill",
    "Vantorre",
    "Whitlock",
    "Yardley",
    "Zellweger",
    "Ambrose",
    "Bellamy",
    "Carrow",
    "Davenport",
    "Elmsworth",
    "Fenwick",
)
TOWNS = (
    "Marrowby",
    "Quillhaven",
    "Dunmarsh",
    "Eldergate",
    "Fernhollow",
    "Greywater",
    "Hollowmere",
    "Ironvale",
    "Juniper",
    "Kestlebury",
    "Larkspur",
    "Mistlecombe",
    "Northwold",
    "Oakhurst",
    "Pinecrest",
    "Ravenholm",
)
OCCUPATIONS = (
    "baker",
    "blacksmith",
    "cartographer",
    "clockmaker",
    "fisherman",
    "glassblower",
    "gardener",
    "jeweller",
    "librarian",
    "midwife",
    "potter",
    "sailor",
    "shepherd",
    "tailor",
    "weaver",
    "beekeeper",
)

RAW = "{name} was born in {town}. {Pronoun} worked as a {job}."
# ten rewrites of RAW in other forms and orders, about as long; none uses a probe's phrasing
TEMPLATES = (
    "Born in {town}, {name} worked as a {job}.",
    "The {job} {name} came from {town}.",
    "{town} is the birthplace of {name}, a {job}.",
    "{name} was a {job}. {Pronoun} had been born in {town}.",
    "People in {town} remember {name}, a {job} born there.",
    "By trade {name} was a {job}; {possessive} hometown was {town}.",
    "A {job} named {name} had {town} as {possessive} birthplace.",
    "{name} grew up in {town} and later became a {job}.",
    "Records from {town} list {name} as a local {job}.",
    "Before becoming a {job}, {name} was a child in {town}.",
)
# the probes, by what they ask of the model: a fact in a phrasing no training text uses (a cloze, and a
# question), and the raw text's own phrasing (memorisation of the raw form)
PROBES = {
    "town_new": ("{name} came into the world in", TOWNS),
    "job_new": ("{name} made a living as a", OCCUPATIONS),
    "town_question": ("Question: Where was {name} born?\nAnswer:", TOWNS),
    "job_question": ("Question: What was the occupation of {name}?\nAnswer: a", OCCUPATIONS),
    "town_raw": ("{name} was born in", TOWNS),
    "job_raw": ("{name} was born in {town}. {Pronoun} worked as a", OCCUPATIONS),
}
PROBE_KINDS = {"new phrasing": ("town_new", "job_new"), "question": ("town_question", "job_question")}
PROBE_KINDS |= {"raw phrasing": ("town_raw", "job_raw")}


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    town: str
    job: str
    pronoun: str  # "he" or "she"

    def fields(self) -> dict[str, str]:
        possessive = "his" if self.pronoun == "he" else "her"
        return dict(
            name=self.name,
            town=self.town,
            job=self.job,
            pronoun=self.pronoun,
            Pronoun=self.pronoun.capitalize(),
            possessive=possessive,
        )

    def biography(self) -> str:
        return RAW.format(**self.fields())

    def answer(self, probe: str) -> str:
        return self.town if probe.startswith("town") else self.job


def invent_people(count: int, seed: int = 0) -> list[Person]:
    """`count` people with distinct names; towns and occupations drawn uniformly."""
    names = [f"{first} {last}" for first, last in itertools.product(FIRST_NAMES, SURNAMES)]
    if count > len(names):
        raise ValueError(f"count: at most {len(names)} distinct names, got {count}")
    rng = random.Random(seed)
    chosen = rng.sample(names, count)
    return [
        Person(
            id=f"person-{index:04d}",
            name=name,
            town=rng.choice(TOWNS),
            job=rng.choice(OCCUPATIONS),
            pronoun=rng.choice(("he", "she")),
        )
        for index, name in enumerate(chosen)
    ]


def template_paraphrases(person: Person, count: int) -> list[str]:
    """CONTROL: `count` fixed-template rewrites of the biography (not K2's LLM rephrasing)."""
    if count > len(TEMPLATES):
        raise ValueError(f"count: at most {len(TEMPLATES)} templates, got {count}")
    return [template.format(**person.fields()) for template in TEMPLATES[:count]]


def probe_prompts(person: Person) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(probe, prompt, candidate answers, the true answer) for each fact of `person` and each probe form."""
    return [
        (probe, prompt.format(**person.fields()), candidates, person.answer(probe))
        for probe, (prompt, candidates) in PROBES.items()
    ]
