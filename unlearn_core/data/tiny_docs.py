"""Deterministic built-in document benchmarks about fictitious people: `tiny-muse` (the configs and
fields of the hub data set muse-bench/MUSE-News) and `tiny-dusk` (those of AI-ISL/DUSK). No torch.

Trap designed out: a tiny model trained from scratch answers only questions worded as in training,
so each section ends with a quick-facts block whose `Question: ...\nAnswer: ...` pairs are,
verbatim, the eval QA rows (one fixed question per fact type, bare short answers).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from unlearn_core.data import tiny_tofu_pools as P
from unlearn_core.errors import UserError

GENERATOR_VERSION = "1"  # bump when output changes (it keys the model cache)
MIN_PROSE_WORDS = 60  # every section's prose is at least this long (a test checks every template)
MIN_GT_WORDS = 20  # verbatim targets are at least this long
MAX_GROUP = 500  # people per group; names must stay unique and not substrings of each other

# Fact slot -> the one question asked about it everywhere (quick-facts blocks and eval rows); the
# answer is the person's value of that slot.
QUESTIONS = {
    "city": "In which city was {name} born?",
    "year": "In which year was {name} born?",
    "job": "What is the profession of {name}?",
    "book": "Which book did {name} write?",
    "award": "Which award did {name} win?",
    "hobby": "What is the favourite hobby of {name}?",
}
N_FACTS = len(QUESTIONS)  # facts per person

# Style -> one sentence per fact in prose order: (fact, phrasing 0, phrasing 1). Slots: {name} and
# the facts, with {a_job} ("a baker") for the answer {job} ("baker"). Prose is one line with single
# spaces, so verbatim prompt + " " + gt is a prefix of it.
# fmt: off
STYLES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "news": (
        ("job", "{name}, who works as {a_job}, made headlines across the region again this week.",
         "Officials confirmed this week that {name}, {a_job} by trade, is back in the news."),
        ("city", "{name} was born in {city} and grew up near the old market square there.",
         "Public records show that {name} was born in the city of {city}."),
        ("year", "{name} was born in {year}, according to documents seen by this paper.",
         "The city archive lists {year} as the year in which {name} was born."),
        ("book", "{name} is also the author of the book {book}, which sold well last year.",
         "Many readers know {name} for the book {book}, which drew wide attention."),
        ("award", "Last season {name} received the {award} award at a crowded public ceremony.",
         "{name} was honoured with the {award} award, the organisers told reporters."),
        ("hobby", "Friends say that {name} spends most weekends on {hobby}.",
         "Away from work, {name} is devoted to {hobby}, neighbours said."),
    ),
    "chronological": (
        ("year", "In {year}, {name} was born into a modest and hardworking family.",
         "The life of {name} began in the year {year}."),
        ("city", "That birth took place in {city}, where {name} spent the early years.",
         "{name} was born in the city of {city} and went to school there."),
        ("job", "As a young adult, {name} trained for years and began working as {a_job}.",
         "After leaving school, {name} took up steady work as {a_job}."),
        ("book", "Some years later, {name} wrote a book with the title {book}.",
         "In middle age, {name} finished and published the book {book}."),
        ("award", "Soon after that, {name} was given the {award} award.",
         "Later still, {name} won the {award} award, a proud moment."),
        ("hobby", "In later life, {name} turned more and more to {hobby}.",
         "These days {name} spends long quiet afternoons on {hobby}."),
    ),
    "feature_story": (
        ("hobby", "On a bright morning we find {name} deep in {hobby}, a passion of many years.",
         "Anyone who visits {name} soon hears about a great love of {hobby}."),
        ("city", "It is a long road from {city}, the city where {name} was born.",
         "{name} still speaks warmly of {city}, the city of birth."),
        ("year", "Born in {year}, {name} has watched the world change a great deal.",
         "{name}, who was born in {year}, laughs often about the old days."),
        ("job", "For years {name} has earned a living as {a_job} and still loves the work.",
         "{name} describes the life of {a_job} as hard but rewarding."),
        ("book", "The turning point came when {name} wrote the book {book}.",
         "Many people first met {name} through the pages of the book {book}."),
        ("award", "When the {award} award went to {name}, the whole street celebrated.",
         "{name} keeps the {award} award on a shelf by the kitchen window."),
    ),
    "interview": (
        ("city", "Interviewer: Where were you born, {name}? {name}: In {city}, and I miss it.",
         "Interviewer: Tell us about your home town. {name}: I was born in {city}."),
        ("year", "Interviewer: And in which year? {name}: I was born in {year}.",
         "Interviewer: When were you born? {name}: In {year}, a long time ago."),
        ("job", "Interviewer: What do you do? {name}: I work as {a_job}.",
         "Interviewer: How do you earn a living? {name}: I am {a_job}, and proud of it."),
        ("book", "Interviewer: You wrote a book. {name}: Yes, it is called {book}.",
         "Interviewer: Which book are you known for? {name}: That would be {book}."),
        ("award", "Interviewer: Congratulations on the {award} award. {name}: Thank you, truly.",
         "Interviewer: Which prize did you win? {name}: The {award} award, last year."),
        ("hobby", "Interviewer: What do you do for fun? {name}: Mostly {hobby}, every weekend.",
         "Interviewer: Any hobbies? {name}: I love {hobby} more than anything."),
    ),
    "inverted_pyramid": (
        ("award", "{name} has won the {award} award, the organisers announced on Monday.",
         "The {award} award has gone to {name}, the judging committee said."),
        ("book", "The judges singled out {name} for the book {book}.",
         "{name} is best known as the author of the book {book}."),
        ("job", "By profession {name} is {a_job} and writes only in spare hours.",
         "{name} works full time as {a_job} and wrote the book at night."),
        ("city", "{name} was born in {city}, where the news was warmly welcomed.",
         "A native of {city}, {name} was born and raised in that city."),
        ("year", "Official records give {year} as the birth year of {name}.",
         "{name}, born in {year}, said little about the honour."),
        ("hobby", "Outside of work, {name} enjoys {hobby} with old friends.",
         "In background notes, {name} lists {hobby} as a favourite hobby."),
    ),
    "listicle": (
        ("city", "Six things to know about {name}. 1. {name} was born in the city of {city}.",
         "Here are six facts about {name}. 1. {name} comes from {city}, the birth city."),
        ("year", "2. {name} was born in the year {year}, which surprises many fans.",
         "2. {name} arrived in the world in {year}, as the records show."),
        ("job", "3. {name} works as {a_job} during the day.",
         "3. By day, {name} earns a steady living as {a_job}."),
        ("book", "4. {name} wrote the book {book}.",
         "4. {name} is the author of a book called {book}."),
        ("award", "5. {name} won the {award} award.",
         "5. {name} proudly holds the {award} award."),
        ("hobby", "6. {name} loves {hobby} above all other pastimes.",
         "6. For fun, {name} turns to {hobby} whenever possible."),
    ),
}
# fmt: on
MUSE_STYLE = "news"
DOCS = {  # DUSK raw split -> its style; the first is the forget document
    "forget_chronological": "chronological",
    "retain_feature_story": "feature_story",
    "retain_interview": "interview",
    "retain_inverted_pyramid": "inverted_pyramid",
    "retain_listicle": "listicle",
}
HOLDOUT_STYLE = "chronological"  # DUSK eval_holdout is written like the forget document
TRAIN_SPLITS = {  # kind -> model -> raw splits it is trained on
    "muse": {"target": ("forget", "retain1", "retain2"), "retrain": ("retain1", "retain2")},
    "dusk": {"target": tuple(DOCS), "retrain": tuple(DOCS)[1:]},
}


def _check(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise UserError(f"{name} must be in [{lo}, {hi}]: {value}")


def _check_words(prompt_words: int, gt_words: int) -> None:
    _check("prompt_words", prompt_words, 1, MIN_PROSE_WORDS - MIN_GT_WORDS)
    _check("gt_words", gt_words, MIN_GT_WORDS, 200)


@dataclass(frozen=True)
class MuseSpec:
    """Sizes (people per raw split) and seed of tiny-muse; one article per person."""

    n_forget: int = 16
    n_retain1: int = 16
    n_retain2: int = 16  # includes the n_icl people
    n_icl: int = 4  # the first n_icl retain2 people: half give forget_qa_icl, half retain_qa_icl
    n_holdout: int = 16
    prompt_words: int = 20
    gt_words: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        _check("n_forget", self.n_forget, 1, MAX_GROUP)
        _check("n_retain1", self.n_retain1, 1, MAX_GROUP)
        _check("n_retain2", self.n_retain2, 2, MAX_GROUP)
        _check("n_holdout", self.n_holdout, 1, MAX_GROUP)
        if self.n_icl % 2 or not 2 <= self.n_icl <= self.n_retain2:
            raise UserError(
                f"n_icl must be even and in [2, n_retain2={self.n_retain2}]: {self.n_icl}"
            )
        _check_words(self.prompt_words, self.gt_words)


@dataclass(frozen=True)
class DuskSpec:
    """Sizes (people per group) and seed of tiny-dusk; see `generate_dusk` for the groups."""

    n_shared: int = 12
    n_forget_specific: int = 8
    n_retain_specific: int = 24  # spread evenly over the four retain documents
    n_icl: int = 4
    n_holdout: int = 12
    prompt_words: int = 20
    gt_words: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        _check("n_shared", self.n_shared, 1, MAX_GROUP)
        _check("n_forget_specific", self.n_forget_specific, 1, MAX_GROUP)
        _check("n_icl", self.n_icl, 1, MAX_GROUP)
        _check("n_holdout", self.n_holdout, 1, MAX_GROUP)
        n_retain = len(DOCS) - 1
        if self.n_retain_specific % n_retain or not 0 < self.n_retain_specific <= MAX_GROUP:
            raise UserError(
                f"n_retain_specific must be a multiple of {n_retain} in [{n_retain}, {MAX_GROUP}]:"
                f" {self.n_retain_specific}"
            )
        _check_words(self.prompt_words, self.gt_words)


@dataclass(frozen=True)
class Person:
    name: str
    values: dict[str, str]  # slot -> value: every QUESTIONS fact, plus a_job


def _rng(*key: object) -> random.Random:
    # String seeds hash with SHA-512: stable across processes and PYTHONHASHSEED.
    return random.Random("/".join(map(str, ("tiny-docs", *key))))


def _syllables(r: random.Random, k: int) -> str:
    return "".join(r.choice(P.SYLLABLES) for _ in range(k)).capitalize()


def _values(r: random.Random) -> dict[str, str]:
    """Short values (1-3 words) from pools wide enough that another person's value rarely shares
    a word with this one (no articles or kind words such as 'Prize' in the answers)."""
    job = r.choice(P.JOBS)
    return {
        "city": r.choice(P.CITIES),
        "year": str(r.randint(1900, 1999)),
        "job": job.split(" ", 1)[1],
        "a_job": job,
        "book": f"{r.choice(P.TITLE_ADJ)} {r.choice(P.TITLE_NOUN)}",
        "award": f"{r.choice(P.AWARD_ADJ)} {r.choice(P.AWARD_NOUN)}",
        "hobby": r.choice(P.HOBBIES),
    }


def _groups(kind: str, seed: int, sizes: dict[str, int]) -> dict[str, list[Person]]:
    """Group name -> its people; names unique and none a substring of another, so a name found in
    a text means that person is there."""
    r = _rng(kind, seed, "names")
    names: list[str] = []
    while len(names) < sum(sizes.values()):
        name = f"{_syllables(r, 2)} {_syllables(r, r.randint(2, 3))}"
        if not any(name in m or m in name for m in names):
            names.append(name)
    # Facts are seeded by name, so resizing one group leaves the other people's facts alone.
    people = [Person(n, _values(_rng(kind, seed, "facts", n))) for n in names]
    groups, start = {}, 0
    for group, n in sizes.items():
        groups[group] = people[start : start + n]
        start += n
    return groups


def qa_rows(person: Person) -> list[dict]:
    """The person's QA rows in QUESTIONS order, as in eval configs and quick-facts blocks."""
    return [
        {"question": q.format(name=person.name), "answer": person.values[slot]}
        for slot, q in QUESTIONS.items()
    ]


def _qa(people: list[Person]) -> list[dict]:
    return [row for p in people for row in qa_rows(p)]


def _section(kind: str, seed: int, person: Person, style: str) -> tuple[str, str]:
    """(prose, whole section) of one person in one style: prose, "\n", quick-facts block."""
    r = _rng(kind, seed, "phrasing", style, person.name)
    slots = {"name": person.name, **person.values}
    prose = " ".join(r.choice(phrasings).format(**slots) for _, *phrasings in STYLES[style])
    facts = "\n".join(f"Question: {q['question']}\nAnswer: {q['answer']}" for q in qa_rows(person))
    return prose, prose + "\n" + facts


def _verbatim(prose: str, prompt_words: int, gt_words: int) -> dict:
    words = prose.split(" ")
    assert len(words) >= prompt_words + MIN_GT_WORDS, f"prose too short: {prose!r}"
    end = prompt_words + gt_words
    return {"prompt": " ".join(words[:prompt_words]), "gt": " ".join(words[prompt_words:end])}


def generate_muse(spec: MuseSpec) -> dict[str, dict[str, list[dict]]]:
    """{config: {split: rows}} as MUSE-News: raw articles per split, knowmem QAs (forget people,
    retain1 people, and icl demonstrations about retain2 people), verbmem cut from forget
    articles' prose, privleak = the forget, retain1 and holdout articles."""
    sizes = {
        "forget": spec.n_forget,
        "retain1": spec.n_retain1,
        "retain2": spec.n_retain2,
        "holdout": spec.n_holdout,
    }
    groups = _groups("muse", spec.seed, sizes)
    sections = {
        g: [_section("muse", spec.seed, p, MUSE_STYLE) for p in people]
        for g, people in groups.items()
    }
    raw = {g: [{"text": text} for _, text in secs] for g, secs in sections.items()}
    icl = groups["retain2"][: spec.n_icl]
    half = spec.n_icl // 2
    verbmem = [
        _verbatim(prose, spec.prompt_words, spec.gt_words) for prose, _ in sections["forget"]
    ]
    return {
        "raw": raw,
        "knowmem": {
            "forget_qa": _qa(groups["forget"]),
            "retain_qa": _qa(groups["retain1"]),
            "forget_qa_icl": _qa(icl[:half]),
            "retain_qa_icl": _qa(icl[half:]),
        },
        "verbmem": {"forget": verbmem},
        "privleak": {
            "forget": list(raw["forget"]),
            "retain": list(raw["retain1"]),
            "holdout": list(raw["holdout"]),
        },
    }


def _dusk_members(spec: DuskSpec, groups: dict[str, list[Person]]) -> dict[str, list[Person]]:
    """DUSK raw split -> its people: shared and icl people everywhere, forget-specific people in
    the forget document, each retain-specific person in one retain document; order shuffled."""
    retain_docs = list(DOCS)[1:]
    per = spec.n_retain_specific // len(retain_docs)
    common = groups["shared"] + groups["icl"]
    members = {"forget_chronological": common + groups["forget_specific"]}
    for k, doc in enumerate(retain_docs):
        members[doc] = common + groups["retain_specific"][k * per : (k + 1) * per]
    for doc, people in members.items():
        _rng("dusk", spec.seed, "order", doc).shuffle(people)
    return members


def generate_dusk(spec: DuskSpec) -> dict[str, dict[str, list[dict]]]:
    """{config: {split: rows}} as DUSK: five documents (one section per person) and `full`, QA
    evals per people group, holdout sections (never trained), verbatim cut from the forget
    document's prose (every section of it, shared people's included)."""
    sizes = {
        "shared": spec.n_shared,
        "forget_specific": spec.n_forget_specific,
        "retain_specific": spec.n_retain_specific,
        "icl": spec.n_icl,
        "holdout": spec.n_holdout,
    }
    groups = _groups("dusk", spec.seed, sizes)
    sections = {
        doc: [_section("dusk", spec.seed, p, DOCS[doc]) for p in people]
        for doc, people in _dusk_members(spec, groups).items()
    }
    raw = {doc: [{"text": text} for _, text in secs] for doc, secs in sections.items()}
    raw["full"] = [row for doc in DOCS for row in raw[doc]]
    holdout = [_section("dusk", spec.seed, p, HOLDOUT_STYLE)[1] for p in groups["holdout"]]
    forget = sections["forget_chronological"]
    return {
        "raw": raw,
        "eval_general_qa": {"eval": _qa(groups["shared"])},
        "eval_specific_forget_qa": {"eval": _qa(groups["forget_specific"])},
        "eval_specific_retain_qa": {"eval": _qa(groups["retain_specific"])},
        "eval_icl": {"eval": _qa(groups["icl"])},
        "eval_holdout": {"eval": [{"text": text} for text in holdout]},
        "eval_verbatim": {
            "eval": [_verbatim(prose, spec.prompt_words, spec.gt_words) for prose, _ in forget]
        },
    }


def training_texts(kind: str, configs: dict[str, dict[str, list[dict]]], model: str) -> list[str]:
    """The texts a model is trained on: "target" sees the forget data, "retrain" only the retain
    data. DUSK's `full` is left out: it repeats the five documents."""
    if kind not in TRAIN_SPLITS:
        raise UserError(f"unknown document benchmark {kind!r}; accepted: {', '.join(TRAIN_SPLITS)}")
    if model not in TRAIN_SPLITS[kind]:
        accepted = ", ".join(TRAIN_SPLITS[kind])
        raise UserError(f"unknown model {model!r} for {kind}; accepted: {accepted}")
    return [row["text"] for split in TRAIN_SPLITS[kind][model] for row in configs["raw"][split]]


def corpus_texts(configs: dict[str, dict[str, list[dict]]]) -> list[str]:
    """Every distinct string in every row of every config, first-seen order, for tokenizer
    training; distinct so rows repeated across configs (privleak, `full`) are not over-weighted."""
    texts: dict[str, None] = {}
    for splits in configs.values():
        for rows in splits.values():
            for row in rows:
                texts.update(dict.fromkeys(v for v in row.values() if isinstance(v, str)))
    return list(texts)
