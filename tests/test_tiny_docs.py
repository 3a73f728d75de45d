"""Tests of the built-in document benchmarks (tiny-muse, tiny-dusk): config, split and field names
as MUSE-News and DUSK; sizes; determinism across calls and processes; which people each document
holds (their quick-facts pairs equal the eval QA rows, verbatim); verbatim cuts from prose only;
training texts; templates long and distinct enough; spec validation."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_core.data import tiny_docs as D
from unlearn_core.errors import UserError

MUSE_SPECS = {
    "default": D.MuseSpec(),
    # prompt_words at its maximum and a long gt: gt is the rest of the prose
    "odd": D.MuseSpec(
        n_forget=3,
        n_retain1=2,
        n_retain2=5,
        n_icl=2,
        n_holdout=2,
        prompt_words=40,
        gt_words=200,
        seed=7,
    ),
}
DUSK_SPECS = {
    "default": D.DuskSpec(),
    "odd": D.DuskSpec(
        n_shared=2,
        n_forget_specific=1,
        n_retain_specific=8,
        n_icl=2,
        n_holdout=3,
        prompt_words=5,
        seed=3,
    ),
}
MUSE_SPLITS = {
    "raw": ["forget", "retain1", "retain2", "holdout"],
    "knowmem": ["forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"],
    "verbmem": ["forget"],
    "privleak": ["forget", "retain", "holdout"],
}
DUSK_CONFIGS = ["raw", "eval_general_qa", "eval_specific_forget_qa", "eval_specific_retain_qa",
                "eval_icl", "eval_holdout", "eval_verbatim"]  # fmt: skip
RETAIN_DOCS = ["retain_feature_story", "retain_interview", "retain_inverted_pyramid",
               "retain_listicle"]  # fmt: skip
DOC_SPLITS = ["forget_chronological", *RETAIN_DOCS]


def _muse_sizes(spec: D.MuseSpec) -> dict[str, int]:
    return {"forget": spec.n_forget, "retain1": spec.n_retain1, "retain2": spec.n_retain2,
            "holdout": spec.n_holdout}  # fmt: skip


def _dusk_sizes(spec: D.DuskSpec) -> dict[str, int]:
    return {"shared": spec.n_shared, "forget_specific": spec.n_forget_specific,
            "retain_specific": spec.n_retain_specific, "icl": spec.n_icl,
            "holdout": spec.n_holdout}  # fmt: skip


@pytest.fixture(scope="module", params=list(MUSE_SPECS))
def muse(request) -> tuple[D.MuseSpec, dict, dict[str, list[D.Person]]]:
    """A spec, its configs, and the generator's ground truth (group -> people)."""
    spec = MUSE_SPECS[request.param]
    return spec, D.generate_muse(spec), D._groups("muse", spec.seed, _muse_sizes(spec))


@pytest.fixture(scope="module", params=list(DUSK_SPECS))
def dusk(request) -> tuple[D.DuskSpec, dict, dict[str, list[D.Person]]]:
    spec = DUSK_SPECS[request.param]
    return spec, D.generate_dusk(spec), D._groups("dusk", spec.seed, _dusk_sizes(spec))


def _names(people: list[D.Person]) -> list[str]:
    return [p.name for p in people]


def _texts(rows: list[dict]) -> list[str]:
    return [row["text"] for row in rows]


def _fields(configs: dict) -> set[tuple[str, ...]]:
    return {tuple(row) for splits in configs.values() for rows in splits.values() for row in rows}


def _check_placement(qa: list[dict], docs: dict[str, list[str]], where: dict[str, set[str]]):
    """Each QA row's person has one section in each document of where[name], holding the row as
    a quick-facts pair, and is absent (name and pair) from every other document."""
    for row in qa:
        pair = f"Question: {row['question']}\nAnswer: {row['answer']}"
        (name,) = [n for n in where if n in row["question"]]
        for split, texts in docs.items():
            own = [t for t in texts if name in t]
            if split in where[name]:
                assert len(own) == 1 and pair in own[0], (split, pair)
            else:
                assert not own and pair not in "\n".join(texts), (split, pair)


def _check_verbatim(rows: list[dict], sections: list[str], spec: D.MuseSpec | D.DuskSpec):
    assert len(rows) == len(sections)
    for row, section in zip(rows, sections, strict=True):
        prose = section.split("\n")[0]
        words = prose.split(" ")
        assert prose.startswith(row["prompt"] + " " + row["gt"])
        assert row["prompt"].split(" ") == words[: spec.prompt_words]
        gt = row["gt"].split(" ")
        assert len(gt) == min(spec.gt_words, len(words) - spec.prompt_words) >= D.MIN_GT_WORDS
        assert "Question:" not in row["gt"] and "\n" not in row["gt"]


def _check_section(text: str, person: D.Person) -> None:
    """Prose on one single-spaced line, then exactly the person's quick-facts block."""
    prose, facts = text.split("\n", 1)
    assert "  " not in prose and len(prose.split(" ")) >= D.MIN_PROSE_WORDS
    assert facts == "\n".join(
        f"Question: {q['question']}\nAnswer: {q['answer']}" for q in D.qa_rows(person)
    )


def test_muse_names_sizes_and_fields(muse):
    spec, c, groups = muse
    assert {k: list(v) for k, v in c.items()} == MUSE_SPLITS
    sizes = {k: {s: len(rows) for s, rows in v.items()} for k, v in c.items()}
    half = spec.n_icl // 2 * D.N_FACTS
    assert sizes == {
        "raw": _muse_sizes(spec),
        "knowmem": {"forget_qa": spec.n_forget * D.N_FACTS, "retain_qa": spec.n_retain1 * D.N_FACTS,
                    "forget_qa_icl": half, "retain_qa_icl": half},
        "verbmem": {"forget": spec.n_forget},
        "privleak": {"forget": spec.n_forget, "retain": spec.n_retain1, "holdout": spec.n_holdout},
    }  # fmt: skip
    assert _fields({"raw": c["raw"], "privleak": c["privleak"]}) == {("text",)}
    assert _fields({"knowmem": c["knowmem"]}) == {("question", "answer")}
    assert _fields({"verbmem": c["verbmem"]}) == {("prompt", "gt")}
    assert c["privleak"]["retain"] == c["raw"]["retain1"]
    for split in ("forget", "holdout"):
        assert c["privleak"][split] == c["raw"][split]
    for group, people in groups.items():
        for row, person in zip(c["raw"][group], people, strict=True):
            _check_section(row["text"], person)


def test_dusk_names_sizes_and_fields(dusk):
    spec, c, groups = dusk
    assert list(c) == DUSK_CONFIGS
    assert list(c["raw"]) == [*DOC_SPLITS, "full"]
    assert all(list(c[k]) == ["eval"] for k in DUSK_CONFIGS[1:])
    common, per = spec.n_shared + spec.n_icl, spec.n_retain_specific // 4
    docs = {"forget_chronological": common + spec.n_forget_specific}
    docs |= {doc: common + per for doc in RETAIN_DOCS}
    assert {s: len(rows) for s, rows in c["raw"].items()} == docs | {"full": sum(docs.values())}
    assert c["raw"]["full"] == [row for doc in DOC_SPLITS for row in c["raw"][doc]]
    qa = {"eval_general_qa": spec.n_shared, "eval_specific_forget_qa": spec.n_forget_specific,
          "eval_specific_retain_qa": spec.n_retain_specific, "eval_icl": spec.n_icl}  # fmt: skip
    assert {k: len(c[k]["eval"]) for k in qa} == {k: n * D.N_FACTS for k, n in qa.items()}
    assert len(c["eval_holdout"]["eval"]) == spec.n_holdout
    assert len(c["eval_verbatim"]["eval"]) == docs["forget_chronological"]
    assert _fields({k: c[k] for k in ("raw", "eval_holdout")}) == {("text",)}
    assert _fields({k: c[k] for k in qa}) == {("question", "answer")}
    assert _fields({"eval_verbatim": c["eval_verbatim"]}) == {("prompt", "gt")}
    for row, person in zip(c["eval_holdout"]["eval"], groups["holdout"], strict=True):
        _check_section(row["text"], person)
    by_name = {p.name: p for people in groups.values() for p in people}
    for row in c["raw"]["full"]:
        (name,) = [n for n in by_name if n in row["text"]]
        _check_section(row["text"], by_name[name])


def _dump() -> str:
    muse, dusk = D.generate_muse(D.MuseSpec()), D.generate_dusk(D.DuskSpec())
    return json.dumps([muse, dusk], sort_keys=True)


def test_deterministic_across_calls_seeds_and_processes():
    assert _dump() == _dump()
    assert D.generate_muse(D.MuseSpec(seed=1)) != D.generate_muse(D.MuseSpec())
    assert D.generate_dusk(D.DuskSpec(seed=1)) != D.generate_dusk(D.DuskSpec())
    code = "from tests.test_tiny_docs import _dump; print(_dump())"
    env = os.environ | {"PYTHONHASHSEED": "123"}
    root = Path(__file__).parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _dump()


def test_names_unique_and_not_substrings(muse, dusk):
    for _, _, groups in (muse, dusk):
        names = [n for people in groups.values() for n in _names(people)]
        assert len(set(names)) == len(names)
        assert not any(a in b for a, b in itertools.permutations(names, 2))


def test_answers_short_and_varied(muse):
    _, c, _ = muse
    for row in c["knowmem"]["forget_qa"]:
        assert 1 <= len(row["answer"].split()) <= 3
        assert not row["answer"].lower().startswith(("a ", "an ", "the "))


def test_muse_people_placement(muse):
    spec, c, groups = muse
    where = {n: {g} for g, people in groups.items() for n in _names(people)}
    docs = {split: _texts(rows) for split, rows in c["raw"].items()}
    km = c["knowmem"]
    _check_placement([r for rows in km.values() for r in rows], docs, where)
    asked = {s: {n for n in where for r in rows if n in r["question"]} for s, rows in km.items()}
    icl = _names(groups["retain2"][: spec.n_icl])
    assert asked["forget_qa"] == set(_names(groups["forget"]))
    assert asked["retain_qa"] == set(_names(groups["retain1"]))
    assert asked["forget_qa_icl"] | asked["retain_qa_icl"] == set(icl)
    assert not asked["forget_qa_icl"] & asked["retain_qa_icl"]
    trained = "\n".join(D.training_texts("muse", c, "target"))
    assert not any(n in trained for n in _names(groups["holdout"]))


def test_dusk_people_placement(dusk):
    spec, c, groups = dusk
    docs = {doc: _texts(c["raw"][doc]) for doc in DOC_SPLITS}
    where = {n: set(DOC_SPLITS) for g in ("shared", "icl") for n in _names(groups[g])}
    where |= {n: {"forget_chronological"} for n in _names(groups["forget_specific"])}
    where |= {n: set() for n in _names(groups["holdout"])}
    for name in _names(groups["retain_specific"]):
        where[name] = {doc for doc in RETAIN_DOCS if any(name in t for t in docs[doc])}
        assert len(where[name]) == 1, name
    per_doc = [sum(doc in w for n, w in where.items() if len(w) == 1) for doc in RETAIN_DOCS]
    assert per_doc == [spec.n_retain_specific // 4] * 4
    qa = [r for k in DUSK_CONFIGS[1:5] for r in c[k]["eval"]]
    _check_placement(qa, docs, where)
    for k, g in zip(
        DUSK_CONFIGS[1:5], ("shared", "forget_specific", "retain_specific", "icl"), strict=True
    ):
        assert c[k]["eval"] == [row for p in groups[g] for row in D.qa_rows(p)]
    documents = "\n".join(_texts(c["raw"]["full"]))
    assert not any(n in documents for n in _names(groups["holdout"]))


def test_verbatim_cut_from_forget_prose(muse, dusk):
    spec, c, _ = muse
    _check_verbatim(c["verbmem"]["forget"], _texts(c["raw"]["forget"]), spec)
    spec, c, _ = dusk
    _check_verbatim(c["eval_verbatim"]["eval"], _texts(c["raw"]["forget_chronological"]), spec)


def test_dusk_styles_differ(dusk):
    _, c, groups = dusk
    name = groups["shared"][0].name
    prose = {
        d: next(t for t in _texts(c["raw"][d]) if name in t).split("\n")[0] for d in DOC_SPLITS
    }
    assert len(set(prose.values())) == 5
    assert prose["forget_chronological"].startswith(("In 1", "The life of"))
    assert "Interviewer:" in prose["retain_interview"]
    assert " 1. " in prose["retain_listicle"] and " 6. " in prose["retain_listicle"]
    assert "Interviewer:" not in prose["forget_chronological"] + prose["retain_listicle"]


def test_templates_cover_every_fact_and_are_long_enough():
    # Every slot value has a fixed word count, so these fillers give the exact prose lengths.
    fill = {"name": "A B", "city": "c", "year": "1", "a_job": "a j", "job": "j", "book": "b b",
            "award": "a a", "hobby": "h"}  # fmt: skip
    for style, sentences in D.STYLES.items():
        assert sorted(f for f, *_ in sentences) == sorted(D.QUESTIONS), style
        assert all(len(phrasings) == 2 for _, *phrasings in sentences)
        for choice in itertools.product(*(phrasings for _, *phrasings in sentences)):
            prose = " ".join(s.format(**fill) for s in choice)
            assert D.MIN_PROSE_WORDS <= len(prose.split(" ")) <= 90, (style, prose)
            assert all("{name}" in s for s in choice)
    assert D.MUSE_STYLE in D.STYLES and set(D.DOCS.values()) <= set(D.STYLES)


def test_training_texts(muse, dusk):
    for kind, (_, c, groups), forget in (
        ("muse", muse, "forget"),
        ("dusk", dusk, "forget_specific"),
    ):
        target, retrain = D.training_texts(kind, c, "target"), D.training_texts(kind, c, "retrain")
        assert set(retrain) < set(target) and len(set(target)) == len(target)
        assert not any(n in t for n in _names(groups[forget]) for t in retrain)
        assert all(any(n in t for t in target) for n in _names(groups[forget]))
    dusk_target = D.training_texts("dusk", dusk[1], "target")
    assert sorted(dusk_target) == sorted(_texts(dusk[1]["raw"]["full"]))  # each document once
    with pytest.raises(UserError, match="unknown model"):
        D.training_texts("muse", muse[1], "full")
    with pytest.raises(UserError, match="unknown document benchmark"):
        D.training_texts("tofu", muse[1], "target")


def test_corpus_texts_hold_every_string(muse, dusk):
    for _, c, _ in (muse, dusk):
        corpus = D.corpus_texts(c)
        assert len(set(corpus)) == len(corpus)
        strings = {v for splits in c.values() for rows in splits.values() for r in rows
                   for v in r.values()}  # fmt: skip
        assert set(corpus) == strings


@pytest.mark.parametrize(
    "make",
    [
        lambda: D.MuseSpec(n_forget=0),
        lambda: D.MuseSpec(n_icl=3),
        lambda: D.MuseSpec(n_icl=18),
        lambda: D.MuseSpec(prompt_words=41),
        lambda: D.MuseSpec(gt_words=19),
        lambda: D.DuskSpec(n_shared=0),
        lambda: D.DuskSpec(n_retain_specific=10),
        lambda: D.DuskSpec(n_holdout=501),
        lambda: D.DuskSpec(prompt_words=0),
    ],
)
def test_bad_spec_is_a_user_error(make):
    with pytest.raises(UserError) as err:
        make()
    assert "\n" not in str(err.value)
