"""Tests of the built-in TOFU-shaped generator: config names, sizes and fields as TOFU; splits
(nested forgets, retain = full - forget, holdout never trained); determinism; exact answer spans;
and the paraphrase design a tiny model needs (paraphrases and perturbations use phrasings that
training shows with other authors, and perturbations change only the fact values)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from unlearn_core.data import tiny_tofu as T
from unlearn_core.data import tiny_tofu_pools as P
from unlearn_core.data.tofu import required_fields
from unlearn_core.errors import UserError

SPECS = {"default": T.TinyTofuSpec(), "small": T.SMALL}
CONFIGS = (
    "full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90",
    "forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed",
    "holdout01", "holdout05", "holdout10", "real_authors", "real_authors_perturbed",
    "world_facts", "world_facts_perturbed",
)  # fmt: skip
AUTHOR_PERTURBED = ("forget01_perturbed", "forget05_perturbed", "forget10_perturbed",
                    "retain_perturbed")  # fmt: skip
PRONOUN = re.compile(r"\b(He|She|His|Her|he|she|his|her)\b")


@pytest.fixture(scope="module", params=list(SPECS))
def case(request) -> tuple[T.TinyTofuSpec, dict[str, list[dict]], dict[int, T.Author]]:
    """A spec, its configs, and the generator's ground truth (author id -> facts)."""
    spec = SPECS[request.param]
    real_names, _ = T._real_author_rows(spec)
    return spec, T.generate(spec), {a.id: a for a in T._authors(spec, real_names)}


def _ids(rows: list[dict]) -> list[int]:
    return list(dict.fromkeys(r["author_id"] for r in rows))


def _skeleton(text: str, spans: list[list[int]]) -> str:
    """The phrasing: values replaced by '#', pronouns normalised (gender is not the phrasing)."""
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + "#" + text[end:]
    return PRONOUN.sub("P", text)


def _question_skeleton(q: str, author: T.Author) -> str:
    for key in ("name", "birthplace", "birth_date"):
        q = q.replace(author.facts[key][0], f"<{key}>")
    return q


def test_config_names_sizes_and_fields(case):
    spec, c, _ = case
    qa, n = spec.qa_per_author, spec.n_authors
    assert tuple(c) == CONFIGS
    sizes = {"full": n * qa, "retain_perturbed": n // 10 * qa}
    for pct in (1, 5, 10):
        k = max(1, n // 100) if pct == 1 else n * pct // 100
        sizes |= {f"forget{pct:02d}": k * qa, f"forget{pct:02d}_perturbed": k * qa}
        sizes |= {f"holdout{pct:02d}": k * qa, f"retain{100 - pct}": (n - k) * qa}
    for name in ("real_authors", "real_authors_perturbed"):
        sizes[name] = spec.n_real_authors
    for name in ("world_facts", "world_facts_perturbed"):
        sizes[name] = spec.n_world_facts
    assert {k: len(v) for k, v in c.items()} == sizes
    for name, rows in c.items():
        for row in rows:
            assert all(isinstance(row[f], str | list) and row[f] for f in required_fields(name))
            if name in AUTHOR_PERTURBED:
                assert len(row["perturbed_answer"]) == 5
                assert {"paraphrased_question", "paraphrased_answer_spans"} <= row.keys()
            elif name.endswith("_perturbed"):
                assert len(row["perturbed_answer"]) == 3
            else:
                assert "perturbed_answer" not in row


def test_tofu_sizes_for_the_default_spec():
    c = T.generate(T.TinyTofuSpec())
    sizes = {k: len(v) for k, v in c.items()}
    assert sizes["full"] == 4000 and sizes["retain90"] == 3600 and sizes["retain_perturbed"] == 400
    assert [sizes[f"forget{p}"] for p in ("01", "05", "10")] == [40, 200, 400]
    assert [sizes[f"holdout{p}"] for p in ("01", "05", "10")] == [40, 200, 400]
    assert (sizes["real_authors"], sizes["world_facts"]) == (100, 117)


def test_deterministic_and_seeded():
    a, b = T.generate(T.SMALL), T.generate(T.TinyTofuSpec(40, 20, 40, 40, seed=0))
    assert a == b
    other = T.generate(T.TinyTofuSpec(40, 20, 40, 40, seed=1))
    for name in ("full", "forget10_perturbed", "holdout10", "real_authors", "world_facts"):
        assert a[name] != other[name]


def test_splits_forget_retain_holdout(case):
    spec, c, _ = case
    full, ids = c["full"], _ids(c["full"])
    assert ids == list(range(spec.n_authors))
    for pct in (1, 5, 10):
        forget, retain = c[f"forget{pct:02d}"], c[f"retain{100 - pct}"]
        assert retain + forget == full  # retain keeps full's order; forget is the last authors
        assert not set(_ids(forget)) & set(_ids(retain))
        assert [{k: r[k] for k in forget[0]} for r in c[f"forget{pct:02d}_perturbed"]] == forget
    assert set(_ids(c["forget01"])) < set(_ids(c["forget05"])) < set(_ids(c["forget10"]))
    kept = set(_ids(c["retain90"]))
    assert set(_ids(c["retain_perturbed"])) <= kept
    assert len(_ids(c["retain_perturbed"])) == spec.n_authors // 10
    holdout = [set(_ids(c[f"holdout{p}"])) for p in ("01", "05", "10")]
    assert holdout[0] < holdout[1] < holdout[2] and not holdout[2] & set(ids)
    assert not {r["question"] for r in full} & {r["question"] for r in c["holdout10"]}


def test_spans_slice_the_authors_fact_values(case):
    _, c, truth = case
    for rows in c.values():
        for row in rows:
            got = [row["answer"][s:e] for s, e in row["answer_spans"]]
            if "author_id" in row:
                assert got == list(truth[row["author_id"]].facts[row["fact"]]), row
            else:
                assert got == [row["answer"]]
            if "paraphrased_answer_spans" in row:
                spans = row["paraphrased_answer_spans"]
                assert [row["paraphrased_answer"][s:e] for s, e in spans] == got


def test_every_phrasing_is_trained_and_paraphrases_use_another(case):
    spec, c, truth = case
    trained: dict[str, dict[tuple[str, str], set[int]]] = {}
    for split in ("full", "retain90"):
        trained[split] = defaultdict(set)
        for r in c[split]:
            trained[split][r["fact"], _skeleton(r["answer"], r["answer_spans"])].add(r["author_id"])
            q = _question_skeleton(r["question"], truth[r["author_id"]])
            trained[split][r["fact"], q].add(r["author_id"])
    for f in P.FACTS[: spec.qa_per_author]:
        n_phrasings = {s for (fact, s) in trained["full"] if fact == f.name}
        assert len(n_phrasings) == len(f.answers) + len(f.questions) >= 6
    for name in AUTHOR_PERTURBED:
        for r in c[name]:
            a = truth[r["author_id"]]
            para = _skeleton(r["paraphrased_answer"], r["paraphrased_answer_spans"])
            para_q = _question_skeleton(r["paraphrased_question"], a)
            assert para != _skeleton(r["answer"], r["answer_spans"])
            assert para_q != _question_skeleton(r["question"], a)
            for split in ("full", "retain90"):  # seen by the target and by the retain model
                assert trained[split][r["fact"], para] - {a.id}, (split, r)
                assert trained[split][r["fact"], para_q] - {a.id}, (split, r)


def test_perturbed_answers_change_only_the_fact_values(case):
    _, c, _ = case
    for name in AUTHOR_PERTURBED:
        for r in c[name]:
            para, spans = r["paraphrased_answer"], r["paraphrased_answer_spans"]
            pattern, pos = "", 0
            for s, e in spans:
                pattern += re.escape(para[pos:s]) + "(.+)"
                pos = e
            pattern += re.escape(para[pos:])
            true = frozenset(para[s:e] for s, e in spans)
            wrong = r["perturbed_answer"]
            assert len(set(wrong)) == 5 and para not in wrong and r["answer"] not in wrong
            for w in wrong:
                m = re.fullmatch(pattern, w)
                assert m, (w, para)
                assert not true & set(m.groups())  # wholly wrong: no right city


def test_options_are_distinct_wrong_values():
    c = T.generate(T.TinyTofuSpec())
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        for r in c[name]:
            assert len(set(r["perturbed_answer"])) == 3 and r["answer"] not in r["perturbed_answer"]
    real_names = {r["answer"] for r in c["real_authors"] if r["question"].startswith("Who wrote")}
    fictitious = {r["answer"][s:e] for r in c["full"] if r["fact"] == "name" for s, e in
                  r["answer_spans"]}  # fmt: skip
    assert real_names and not real_names & fictitious
    assert len({r["question"] for r in c["world_facts"]}) == 117


def test_facts_are_diverse_so_unseen_authors_cannot_be_guessed(case):
    _, c, truth = case
    forget = [truth[i] for i in _ids(c["forget10"])]
    for f in P.FACTS:
        if f.kind not in ("name", "date"):  # unique per author by construction
            assert len({a.facts[f.name] for a in forget}) > 1, f.name
    everyone = truth.values()
    for fact, at_least in (("birthplace", 16), ("genre", 12), ("father_job", 12)):
        assert len({a.facts[fact] for a in everyone}) >= at_least
    assert len({a.name for a in everyone}) == len(truth)
    assert len({a.facts["birth_date"] for a in everyone}) == len(truth)


def test_fewer_questions_keep_the_first_fact_types():
    c = T.generate(T.TinyTofuSpec(n_authors=40, qa_per_author=10, n_real_authors=10))
    assert len(c["full"]) == 400 and len(c["forget10_perturbed"]) == 40
    assert list(dict.fromkeys(r["fact"] for r in c["full"])) == [f.name for f in P.FACTS[:10]]


def test_training_rows_and_corpus():
    c = T.generate(T.SMALL)
    general = c["real_authors"] + c["world_facts"]
    assert T.training_rows(c, "full") == c["full"] + general
    assert T.training_rows(c, "retain90") == c["retain90"] + general
    with pytest.raises(UserError, match="retain80"):
        T.training_rows(c, "retain80")
    texts = T.corpus_texts(c)
    assert len(texts) == len(set(texts))
    every = {r["question"] for rows in c.values() for r in rows}
    every |= {p for r in c["forget10_perturbed"] for p in r["perturbed_answer"]}
    every |= {r["paraphrased_question"] for r in c["retain_perturbed"]}
    assert every <= set(texts)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_authors": 30}, {"n_authors": 20}, {"qa_per_author": 9}, {"qa_per_author": 21},
     {"n_world_facts": 500}, {"n_real_authors": 5}],
)  # fmt: skip
def test_invalid_specs_fail_at_construction(kwargs):
    with pytest.raises(UserError, match=next(iter(kwargs))):
        T.TinyTofuSpec(**kwargs)
