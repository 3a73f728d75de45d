"""Deterministic built-in TOFU-shaped benchmark: seeded fictitious authors with exactly the config
and field names of the hub data set `locuslab/TOFU`, so one loader serves both. No torch.

Trap designed out (research/env_probe.md section 4): a tiny model never generalises to wording it
has not seen, so every fact type has >= 3 answer and question phrasings, each used in training by
some authors; a row's paraphrase uses a phrasing its own training row does not, and its perturbed
answers reuse the paraphrase's phrasing with wrong values. Truth ratios then measure the facts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from unlearn_core.data import tiny_tofu_pools as P
from unlearn_core.errors import UserError

GENERATOR_VERSION = "1"  # bump when output changes (it keys the model cache)
TRAIN_SPLITS = ("full", "retain90", "retain95", "retain99")
N_PERTURBED = 5  # perturbed answers per forget/retain row, as TOFU
N_OPTIONS = 3  # wrong options per real_authors/world_facts row, as TOFU
QA_FIELDS = ("question", "answer", "author_id", "fact", "answer_spans")  # author configs
OPTION_QA_FIELDS = ("question", "answer", "answer_spans")  # real_authors, world_facts
Values = tuple[str, ...]  # one fact's value(s): ("Veloria", "Aldoria") for a birthplace
Sampler = Callable[[random.Random], Values]  # a random value of one kind
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class TinyTofuSpec:
    """Sizes and seed of the generated benchmark; the defaults are TOFU's sizes."""

    n_authors: int = 200  # TOFU has 200
    qa_per_author: int = 20  # TOFU has 20; fewer keeps the first fact types of `FACTS`
    n_real_authors: int = 100  # real_authors(_perturbed) rows
    n_world_facts: int = 117  # world_facts(_perturbed) rows
    seed: int = 0

    def __post_init__(self) -> None:
        # Multiples of 20 make forget05 (5%) and forget10 (10%) whole authors; forget01 is
        # max(1, n // 100) authors, so 40 authors give forget01/05/10 = 1/2/4 authors.
        if not 40 <= self.n_authors <= 1000 or self.n_authors % 20:
            raise UserError(f"n_authors must be a multiple of 20 in [40, 1000]: {self.n_authors}")
        if not 10 <= self.qa_per_author <= len(P.FACTS):
            raise UserError(f"qa_per_author must be in [10, {len(P.FACTS)}]: {self.qa_per_author}")
        if not 10 <= self.n_real_authors <= 200:
            raise UserError(f"n_real_authors must be in [10, 200]: {self.n_real_authors}")
        n_world = len(P.COUNTRIES) * len(P.WORLD_QUESTIONS)
        if not 10 <= self.n_world_facts <= n_world:
            raise UserError(f"n_world_facts must be in [10, {n_world}]: {self.n_world_facts}")

    def forget_authors(self, pct: int) -> int:
        """Authors in forget{pct:02d} (and holdout{pct:02d}); pct in (1, 5, 10)."""
        return max(1, self.n_authors // 100) if pct == 1 else self.n_authors * pct // 100


SMALL = TinyTofuSpec(n_authors=40, n_real_authors=40, n_world_facts=40)  # tests; builds in seconds


@dataclass(frozen=True)
class Author:
    id: int
    name: str
    gender: str
    facts: dict[str, Values]  # fact name -> values; every fact type, whatever qa_per_author


def _rng(spec: TinyTofuSpec, *key: object) -> random.Random:
    # String seeds hash with SHA-512: stable across processes and PYTHONHASHSEED.
    return random.Random("/".join(map(str, ("tiny-tofu", spec.seed, *key))))


def _render(template: str, values: Values, gender: str) -> tuple[str, list[list[int]]]:
    """Fill {0}, {1} with values and {He}, {his}, ... with pronouns; also return the values'
    [start, end) character spans."""
    text, spans, pos = "", [], 0
    for m in _SLOT.finditer(template):
        text += template[pos : m.start()]
        key = m.group(1)
        if key.isdigit():
            spans.append([len(text), len(text) + len(values[int(key)])])
            text += values[int(key)]
        else:
            text += P.PRONOUNS[gender][key]
        pos = m.end()
    return text + template[pos:], spans


def _place(r: random.Random) -> Values:
    i = r.randrange(len(P.CITIES))
    return P.CITIES[i], P.COUNTRIES[i // 2]


def _one_of(pool: list[str] | tuple[str, ...]) -> Sampler:
    return lambda r: (r.choice(pool),)


def _samplers(names: list[str], real_names: list[str]) -> dict[str, Sampler]:
    """Value kind -> random draw; truths and perturbations come from the same pools."""
    titles = [f"The {a} {n}" for a in P.TITLE_ADJ for n in P.TITLE_NOUN]
    awards = [f"the {a} {n} {k}" for a in P.AWARD_ADJ for n in P.AWARD_NOUN for k in P.AWARD_KIND]
    presses = [f"{w} {k}" for w in P.PRESS_WORD for k in P.PRESS_KIND]
    return {
        "name": _one_of(names),
        "place": _place,
        "date": lambda r: (f"{r.choice(P.MONTHS)} {r.randint(1, 28)}, {r.randint(1935, 1985)}",),
        "year": lambda r: (str(r.randint(1955, 2020)),),
        "themes": lambda r: tuple(r.sample(P.THEMES, 2)),
        "title": _one_of(titles),
        "award": _one_of(awards),
        "publisher": _one_of(presses),
        "real_author": _one_of(real_names),
        "city": _one_of(P.CITIES),
        "genre": _one_of(P.GENRES),
        "job": _one_of(P.JOBS),
        "style": _one_of(P.STYLES),
        "language": _one_of(P.LANGUAGES),
        "subject": _one_of(P.SUBJECTS),
        "hobby": _one_of(P.HOBBIES),
    }


def _draw_distinct(r: random.Random, draw: Sampler, k: int, exclude: set[str]) -> list[Values]:
    """k values, distinct from each other (as sets: themes are unordered) and sharing no string
    with `exclude`, so a wrong value is wholly wrong (no right country with a wrong city)."""
    out, seen = [], set()
    while len(out) < k:
        v = draw(r)
        if frozenset(v) not in seen and not exclude.intersection(v):
            seen.add(frozenset(v))
            out.append(v)
    return out


def _syllables(r: random.Random, k: int) -> str:
    return "".join(r.choice(P.SYLLABLES) for _ in range(k)).capitalize()


def _authors(spec: TinyTofuSpec, real_names: list[str]) -> list[Author]:
    """Trained authors (ids 0..n-1) then holdout authors; names and birth dates unique."""
    r = _rng(spec, "authors")
    n = spec.n_authors + spec.forget_authors(10)
    names: list[str] = []
    while len(names) < n:
        name = f"{_syllables(r, 2)} {_syllables(r, r.randint(2, 3))}"
        if name not in names:
            names.append(name)
    draw = _samplers(names, real_names)
    dates = [d[0] for d in _draw_distinct(r, draw["date"], n, set())]
    authors = []
    for i, name in enumerate(names):
        used: dict[
            str, set[str]
        ] = {}  # an author's values of one kind are distinct (3 titles, 3 jobs)
        fixed = {
            "name": (name,),
            "birth_date": (dates[i],),
            "debut_year": (str(int(dates[i][-4:]) + r.randint(20, 35)),),
        }
        facts = {}
        for f in P.FACTS:
            seen = used.setdefault(f.kind, set())
            v = fixed.get(f.name) or _draw_distinct(r, draw[f.kind], 1, seen)[0]
            seen.update(v)
            facts[f.name] = v
        authors.append(Author(i, name, r.choice(("male", "female")), facts))
    return authors


def _balanced(r: random.Random, n: int, k: int) -> list[int]:
    """A template index per author, each of the k used n // k or n // k + 1 times."""
    order = [i % k for i in range(n)]
    r.shuffle(order)
    return order


def _author_rows(
    spec: TinyTofuSpec, group: list[Author], tag: str, draw: dict[str, Sampler]
) -> list[dict]:
    """Every field for each (author, fact) of a group; configs project the fields they carry."""
    r = _rng(spec, "templates", tag)
    facts = P.FACTS[: spec.qa_per_author]
    q_tpl = {f.name: _balanced(r, len(group), len(f.questions)) for f in facts}
    a_tpl = {f.name: _balanced(r, len(group), len(f.answers)) for f in facts}
    rows = []
    for j, a in enumerate(group):
        ctx = {"name": a.name, "city": a.facts["birthplace"][0], "date": a.facts["birth_date"][0]}
        for f in facts:
            qt, at = q_tpl[f.name][j], a_tpl[f.name][j]
            # The paraphrase uses another phrasing, seen in training with other authors.
            pqt = r.choice([t for t in range(len(f.questions)) if t != qt])
            pat = r.choice([t for t in range(len(f.answers)) if t != at])
            own = {s for g in P.FACTS if g.kind == f.kind for s in a.facts[g.name]}
            wrong = _draw_distinct(r, draw[f.kind], N_PERTURBED, own)
            answer, spans = _render(f.answers[at], a.facts[f.name], a.gender)
            para, para_spans = _render(f.answers[pat], a.facts[f.name], a.gender)
            rows.append(
                {
                    "question": f.questions[qt].format(**ctx),
                    "answer": answer,
                    "paraphrased_question": f.questions[pqt].format(**ctx),
                    "paraphrased_answer": para,
                    "perturbed_answer": [_render(f.answers[pat], v, a.gender)[0] for v in wrong],
                    "author_id": a.id,
                    "fact": f.name,
                    "answer_spans": spans,
                    "paraphrased_answer_spans": para_spans,
                }
            )
    return rows


def _options_row(question: str, answer: str, pool: list[str], r: random.Random) -> dict:
    wrong = _draw_distinct(r, lambda r: (r.choice(pool),), N_OPTIONS, {answer})
    return {
        "question": question,
        "answer": answer,
        "perturbed_answer": [w[0] for w in wrong],
        "answer_spans": [[0, len(answer)]],
    }


def _real_author_rows(spec: TinyTofuSpec) -> tuple[list[str], list[dict]]:
    """Famous synthetic 'real' authors (ordinary-looking names, unlike the syllable-built ones)."""
    r = _rng(spec, "real")
    n = spec.n_real_authors
    names = r.sample([f"{a} {b}" for a in P.REAL_FIRST for b in P.REAL_LAST], n)
    books = r.sample(
        [f"{a} and {b}" for a in P.REAL_TITLE_NOUN for b in P.REAL_TITLE_NOUN if a != b], n
    )
    countries = [r.choice(P.COUNTRIES) for _ in range(n)]
    pools = {"name": names, "book": books, "country": list(P.COUNTRIES)}
    rows = []
    for i in range(n):
        kind = list(P.REAL_QUESTIONS)[i % len(P.REAL_QUESTIONS)]
        truth = {"name": names[i], "book": books[i], "country": countries[i]}
        q = P.REAL_QUESTIONS[kind].format(name=names[i], book=books[i])
        rows.append(_options_row(q, truth[kind], pools[kind], r))
    return names, rows


def _world_rows(spec: TinyTofuSpec) -> list[dict]:
    """Facts about the made-up countries; the capital of country i is city 2i."""
    r = _rng(spec, "world")
    pools = {
        "capital": P.CITIES[::2],
        "currency": P.CURRENCIES,
        "language": P.LANGUAGES,
        "river": P.RIVERS,
        "animal": P.ANIMALS,
    }
    truth = {
        (c, a): P.CITIES[2 * c] if a == "capital" else r.choice(pools[a])
        for c in range(len(P.COUNTRIES))
        for a in P.WORLD_QUESTIONS
    }
    keys = list(truth)
    r.shuffle(keys)
    return [
        _options_row(P.WORLD_QUESTIONS[a].format(country=P.COUNTRIES[c]), truth[c, a], pools[a], r)
        for c, a in keys[: spec.n_world_facts]
    ]


def _select(rows: list[dict], fields: tuple[str, ...]) -> list[dict]:
    return [{k: row[k] for k in fields} for row in rows]


def generate(spec: TinyTofuSpec) -> dict[str, list[dict]]:
    """Every TOFU config name -> rows, deterministic for a spec.

    forgetXX = the last 1/5/10% of authors (nested, as TOFU); retainYY = full minus them, in
    full's order; retain_perturbed = the first 10% of authors (never in a forget split, 20 of 200
    as TOFU); holdoutXX = new, never-trained authors, as many as forgetXX (nested likewise).
    """
    real_names, real = _real_author_rows(spec)
    authors = _authors(spec, real_names)
    draw = _samplers([a.name for a in authors], real_names)
    full = _author_rows(spec, authors[: spec.n_authors], "trained", draw)
    holdout = _author_rows(spec, authors[spec.n_authors :], "holdout", draw)
    qpa, n10 = spec.qa_per_author, spec.forget_authors(10)
    cut = {pct: len(full) - spec.forget_authors(pct) * qpa for pct in (1, 5, 10)}
    hcut = {pct: len(holdout) - spec.forget_authors(pct) * qpa for pct in (1, 5, 10)}
    world = _world_rows(spec)
    return {
        "full": _select(full, QA_FIELDS),
        **{f"forget{p:02d}": _select(full[c:], QA_FIELDS) for p, c in cut.items()},
        **{f"retain{100 - p}": _select(full[:c], QA_FIELDS) for p, c in cut.items()},
        **{f"forget{p:02d}_perturbed": full[c:] for p, c in cut.items()},
        "retain_perturbed": full[: n10 * qpa],
        **{f"holdout{p:02d}": _select(holdout[c:], QA_FIELDS) for p, c in hcut.items()},
        "real_authors": _select(real, OPTION_QA_FIELDS),
        "real_authors_perturbed": real,
        "world_facts": _select(world, OPTION_QA_FIELDS),
        "world_facts_perturbed": world,
    }


def training_rows(configs: dict[str, list[dict]], split: str) -> list[dict]:
    """What a model is trained on: `full` (target) or a retain config, plus the general knowledge
    (real_authors, world_facts) that target and retain models both learn."""
    if split not in TRAIN_SPLITS:
        raise UserError(f"unknown training split {split!r}; accepted: {', '.join(TRAIN_SPLITS)}")
    return configs[split] + configs["real_authors"] + configs["world_facts"]


def corpus_texts(configs: dict[str, list[dict]]) -> list[str]:
    """Every distinct string in every config (perturbed options included), first-seen order, for
    tokenizer training; distinct so rows shared by several configs are not over-weighted."""
    texts: dict[str, None] = {}
    for rows in configs.values():
        for row in rows:
            for value in row.values():
                for s in value if isinstance(value, list) else [value]:
                    if isinstance(s, str):
                        texts[s] = None
    return list(texts)
