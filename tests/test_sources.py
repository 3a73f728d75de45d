"""Data sources (unlearn_core.data.sources, documents, tofu): every local layout returns the same
rows; MUSE and DUSK local copies with every (config, split) of their schema load, and a missing
field, split or config, an unknown (config, split) or a file source fails with one clear line; TOFU
from a `save_to_disk` folder and a parquet file; a hub id offline fails without opening a socket;
chunking, continuation encoding, few-shot prompts and stop strings on a tiny in-process
tokenizer."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest

from unlearn_core.data import documents, tofu
from unlearn_core.data.sources import load_rows
from unlearn_core.errors import UserError

ROWS = [
    {"question": "Where was Ana Lor born?", "answer": "Lima"},
    {"question": "What does Bo Kemi write?", "answer": "science fiction"},
    {"question": "Who wrote 'The Red Tide'?", "answer": "Cara Venn"},
]
OTHER = [{"question": "What is the capital of Zorland?", "answer": "Pellon"}]
QA = ("question", "answer")


def _write(file: Path, rows: list[dict]) -> None:
    """rows as .json (a list), .jsonl (one per line) or .parquet, by the file's suffix."""
    file.parent.mkdir(parents=True, exist_ok=True)
    if file.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(file)
    elif file.suffix == ".jsonl":
        file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        file.write_text(json.dumps(rows))


def _save_dict(folder: Path, splits: dict[str, list[dict]]) -> None:
    from datasets import Dataset, DatasetDict

    DatasetDict({s: Dataset.from_list(r) for s, r in splits.items()}).save_to_disk(str(folder))


def _save_one(folder: Path, rows: list[dict]) -> None:
    from datasets import Dataset

    Dataset.from_list(rows).save_to_disk(str(folder))


# ---------- layouts ----------


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_per_split_file_layouts_return_the_rows(tmp_path, suffix):
    _write(tmp_path / "cfg" / f"train{suffix}", ROWS)
    _write(tmp_path / "cfg" / f"test{suffix}", OTHER)
    assert load_rows(str(tmp_path), "cfg", "train", QA) == ROWS
    assert load_rows(str(tmp_path), "cfg", "test", QA) == OTHER


def test_saved_dataset_dict_returns_each_split(tmp_path):
    _save_dict(tmp_path / "cfg", {"train": ROWS, "test": OTHER})
    assert load_rows(str(tmp_path), "cfg", "train", QA) == ROWS
    assert load_rows(str(tmp_path), "cfg", "test", QA) == OTHER
    with pytest.raises(UserError, match=r"no split 'dev'; it holds: train, test"):
        load_rows(str(tmp_path), "cfg", "dev", QA)


def test_saved_dataset_counts_only_for_a_single_split_config(tmp_path):
    _save_one(tmp_path / "cfg", ROWS)
    assert load_rows(str(tmp_path), "cfg", "train", QA, single=True) == ROWS
    # a Dataset folder holds no split name: for a multi-split config it cannot be told apart
    with pytest.raises(UserError, match="has no config 'cfg' split 'train'"):
        load_rows(str(tmp_path), "cfg", "train", QA)


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_config_file_counts_only_for_a_single_split_config(tmp_path, suffix):
    _write(tmp_path / f"cfg{suffix}", ROWS)
    assert load_rows(str(tmp_path), "cfg", "train", QA, single=True) == ROWS
    with pytest.raises(UserError, match="has no config 'cfg' split 'train'"):
        load_rows(str(tmp_path), "cfg", "train", QA)


def test_every_layout_returns_equal_rows(tmp_path):
    """The same three rows written six ways read back as one list."""
    layouts = {}
    for suffix in (".json", ".jsonl", ".parquet"):
        _write(tmp_path / suffix[1:] / "cfg" / f"train{suffix}", ROWS)
        layouts[suffix] = (tmp_path / suffix[1:], False)
    _save_dict(tmp_path / "dict" / "cfg", {"train": ROWS, "test": OTHER})
    layouts["dataset_dict"] = (tmp_path / "dict", False)
    _save_one(tmp_path / "dataset" / "cfg", ROWS)
    layouts["dataset"] = (tmp_path / "dataset", True)
    _write(tmp_path / "single" / "cfg.json", ROWS)
    layouts["config.json"] = (tmp_path / "single", True)
    for name, (folder, single) in layouts.items():
        assert load_rows(str(folder), "cfg", "train", QA, single=single) == ROWS, name


def test_per_split_file_wins_over_the_config_file(tmp_path):
    _write(tmp_path / "cfg" / "train.jsonl", ROWS)
    _write(tmp_path / "cfg.json", OTHER)
    assert load_rows(str(tmp_path), "cfg", "train", QA, single=True) == ROWS


def test_empty_split_and_bad_files_are_user_errors(tmp_path):
    _write(tmp_path / "cfg" / "train.json", [])
    with pytest.raises(UserError, match="split 'train' in .* is empty"):
        load_rows(str(tmp_path), "cfg", "train", QA)
    (tmp_path / "cfg" / "test.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_rows(str(tmp_path), "cfg", "test", QA)
    (tmp_path / "cfg" / "dev.json").write_text(json.dumps({"rows": ROWS}))
    with pytest.raises(UserError, match="must hold a list of records"):
        load_rows(str(tmp_path), "cfg", "dev", QA)
    (tmp_path / "cfg" / "val.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="not a readable parquet file"):
        load_rows(str(tmp_path), "cfg", "val", QA)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_null_field_counts_as_missing(tmp_path, suffix):
    _write(tmp_path / "cfg" / f"train{suffix}", [*ROWS, {"question": "q?", "answer": None}])
    with pytest.raises(UserError, match=r"row 3 lacks field 'answer'"):
        load_rows(str(tmp_path), "cfg", "train", QA)


def test_a_null_field_in_parquet_counts_as_missing(tmp_path):
    _write(tmp_path / "cfg" / "train.parquet", [*ROWS, {"question": "q?", "answer": None}])
    with pytest.raises(UserError, match=r"row 3 lacks field 'answer'"):
        load_rows(str(tmp_path), "cfg", "train", QA)


def test_list_fields_read_back_as_lists_from_parquet(tmp_path):
    rows = [{"question": "q", "answer": "a", "perturbed_answer": ["w0", "w1"]}]
    _write(tmp_path / "cfg" / "train.parquet", rows)
    got = load_rows(str(tmp_path), "cfg", "train", QA)
    assert type(got[0]["perturbed_answer"]) is list


@pytest.mark.parametrize("content", ["[1, 2]", '"a text"\n'])
def test_a_row_that_is_not_a_record_is_one_line(tmp_path, content):
    suffix = ".json" if content.startswith("[") else ".jsonl"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / f"train{suffix}").write_text(content)
    with pytest.raises(UserError, match=r"row 0 is not a record"):
        load_rows(str(tmp_path), "cfg", "train", QA)


# ---------- MUSE and DUSK schemas ----------


def _row(fields: tuple[str, ...], i: int) -> dict:
    return {f: f"{f} {i}" for f in fields} | {"extra": i}  # extra columns are kept, not required


def _family_fixture(folder: Path, schema: dict) -> dict[tuple[str, str], list[dict]]:
    """Every (config, split) of a schema: multi-split configs as <config>/<split>.jsonl, single-
    split ones as <config>.json (the layout `documents.load` must recognise as single)."""
    rows = {}
    for (config, split), fields in schema.items():
        rows[(config, split)] = [_row(fields, i) for i in range(2)]
        single = sum(c == config for c, _ in schema) == 1
        _write(
            folder / (f"{config}.json" if single else f"{config}/{split}.jsonl"),
            rows[(config, split)],
        )
    return rows


@pytest.mark.parametrize("family", ["muse", "dusk"])
def test_family_fixture_loads_every_config_and_split(tmp_path, family):
    schema = documents.SCHEMAS[family]
    written = _family_fixture(tmp_path, schema)
    for (config, split), rows in written.items():
        assert documents.load(family, str(tmp_path), config, split) == rows, (config, split)


def test_schemas_hold_the_benchmarks_names():
    muse, dusk = documents.MUSE_SCHEMA, documents.DUSK_SCHEMA
    assert muse[("knowmem", "forget_qa")] == ("question", "answer")
    assert muse[("verbmem", "forget")] == ("prompt", "gt")
    assert muse[("privleak", "holdout")] == muse[("raw", "retain2")] == ("text",)
    assert len(muse) == 12 and len(dusk) == 12
    assert dusk[("eval_verbatim", "eval")] == ("prompt", "gt")
    assert dusk[("eval_holdout", "eval")] == dusk[("raw", "full")] == ("text",)


@pytest.mark.parametrize(
    ("family", "config", "split", "field"),
    [
        ("muse", "knowmem", "retain_qa", "answer"),
        ("muse", "verbmem", "forget", "gt"),
        ("dusk", "eval_specific_forget_qa", "eval", "question"),
        ("dusk", "raw", "retain_listicle", "text"),
    ],
)
def test_missing_field_names_field_config_split_and_row(tmp_path, family, config, split, field):
    schema = documents.SCHEMAS[family]
    written = _family_fixture(tmp_path, schema)
    rows = written[(config, split)]
    del rows[1][field]
    single = sum(c == config for c, _ in schema) == 1
    _write(tmp_path / (f"{config}.json" if single else f"{config}/{split}.jsonl"), rows)
    with pytest.raises(UserError) as err:
        documents.load(family, str(tmp_path), config, split)
    msg = str(err.value)
    assert "\n" not in msg
    for part in (f"'{field}'", f"config '{config}'", f"split '{split}'", "row 1"):
        assert part in msg, (part, msg)


@pytest.mark.parametrize(
    ("family", "config", "split", "looked"),
    [
        ("muse", "knowmem", "retain_qa", "knowmem/retain_qa.json|.jsonl|.parquet"),
        ("muse", "verbmem", "forget", "verbmem.json|.jsonl|.parquet"),
        ("dusk", "raw", "full", "raw/full.json|.jsonl|.parquet"),
        ("dusk", "eval_icl", "eval", "eval_icl.json|.jsonl|.parquet"),
    ],
)
def test_missing_split_or_config_says_what_was_looked_for(tmp_path, family, config, split, looked):
    schema = documents.SCHEMAS[family]
    _family_fixture(tmp_path, schema)
    single = sum(c == config for c, _ in schema) == 1
    (tmp_path / (f"{config}.json" if single else f"{config}/{split}.jsonl")).unlink()
    with pytest.raises(UserError) as err:
        documents.load(family, str(tmp_path), config, split)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"no config '{config}' split '{split}'" in msg and looked in msg, msg


@pytest.mark.parametrize("family", ["muse", "dusk"])
def test_unknown_config_split_lists_the_known_ones(tmp_path, family):
    _family_fixture(tmp_path, documents.SCHEMAS[family])
    with pytest.raises(UserError) as err:
        documents.load(family, str(tmp_path), "raw", "nonsense")
    msg = str(err.value)
    assert f"{family} has no config/split raw/nonsense" in msg
    for config, split in documents.SCHEMAS[family]:
        assert f"{config}/{split}" in msg


def test_a_file_source_is_a_user_error(tmp_path):
    file = tmp_path / "muse.json"
    file.write_text("[]")
    with pytest.raises(UserError, match="is a file; give a folder or a hub id"):
        documents.load("muse", str(file), "knowmem", "forget_qa")


# ---------- TOFU ----------


def test_tofu_config_from_saved_dataset_and_parquet_file(tmp_path):
    forget = [{"question": "q0", "answer": "a0"}, {"question": "q1", "answer": "a1"}]
    perturbed = [
        {"question": "q0", "answer": "a0", "paraphrased_answer": "p0", "perturbed_answer": "w0"}
    ]
    _save_one(tmp_path / "forget10", forget)
    _write(tmp_path / "forget10_perturbed.parquet", perturbed)
    assert tofu.load_config(str(tmp_path), "forget10") == forget
    assert tofu.load_config(str(tmp_path), "forget10_perturbed") == perturbed
    _write(
        tmp_path / "retain_perturbed.parquet",
        [{"question": "q", "answer": "a", "perturbed_answer": "w"}],
    )
    with pytest.raises(
        UserError,
        match=r"'retain_perturbed' split 'train' row 0 lacks field "
        r"'paraphrased_answer'",
    ):
        tofu.load_config(str(tmp_path), "retain_perturbed")


# ---------- hub, offline ----------


def test_offline_hub_id_is_a_one_line_user_error_without_a_socket(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    # both libraries read the environment at import time, which may have happened already
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    # an empty cache: a copy cached on this machine must not turn the error into a load
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    opened = []

    def refuse(*args, **kwargs):
        opened.append(args)
        raise OSError("network used in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.chdir(tmp_path)  # no local folder named like the repo
    with pytest.raises(UserError) as err:
        load_rows("muse-bench/MUSE-News", "knowmem", "forget_qa", QA)
    msg = str(err.value)
    assert "\n" not in msg
    assert "muse-bench/MUSE-News" in msg and "'knowmem'" in msg and "'forget_qa'" in msg
    assert opened == []


# ---------- chunking and prompts ----------


WORDS = [
    "Ana Lor was born in Lima, Peru.",
    "Bo Kemi writes science fiction novels.",
    "The capital of Zorland is Pellon.",
    "Question: Answer:",
]


@pytest.fixture(scope="module")
def tok():
    """A byte-level BPE over a few sentences, as a fast tokenizer with BOS/EOS/PAD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(WORDS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


@pytest.mark.parametrize("chunk_tokens", [2, 3, 7, 16, 1000])
def test_chunks_are_bos_plus_consecutive_pieces_of_the_joined_texts(tok, chunk_tokens):
    texts = WORDS[:3]
    ids = tok("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    chunks = documents.chunk(tok, texts, chunk_tokens)
    assert len(chunks) == -(-len(ids) // (chunk_tokens - 1))  # ceil
    for c in chunks:
        assert c["input_ids"][0] == tok.bos_token_id
        assert 2 <= len(c["input_ids"]) <= chunk_tokens
        assert c["labels"] == c["input_ids"]
    assert [i for c in chunks for i in c["input_ids"][1:]] == ids
    assert all(len(c["input_ids"]) == chunk_tokens for c in chunks[:-1])


@pytest.mark.parametrize("chunk_tokens", [1, 0, -3])
def test_chunk_length_below_two_is_a_user_error(tok, chunk_tokens):
    with pytest.raises(UserError, match="at least 2 tokens"):
        documents.chunk(tok, WORDS, chunk_tokens)


def test_encode_continuation_labels_only_the_spaced_ground_truth(tok):
    prompt, gt = "Ana Lor was born in", "Lima, Peru."
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    g = tok(" " + gt, add_special_tokens=False)["input_ids"]
    enc = documents.encode_continuation(tok, prompt, gt, max_tokens=100)
    assert enc["input_ids"] == [tok.bos_token_id, *p, *g]
    assert enc["labels"] == [-100] * (1 + len(p)) + g
    cut = documents.encode_continuation(tok, prompt, gt, max_tokens=len(p) + 2)
    assert cut["input_ids"] == [tok.bos_token_id, *p, g[0]]
    assert cut["labels"] == [-100] * (1 + len(p)) + [g[0]]


def test_encode_text_is_bos_plus_truncated_tokens(tok):
    ids = tok(WORDS[0], add_special_tokens=False)["input_ids"]
    assert documents.encode_text(tok, WORDS[0], 100)["input_ids"] == [tok.bos_token_id, *ids]
    enc = documents.encode_text(tok, WORDS[0], 3)
    assert enc["input_ids"] == enc["labels"] == [tok.bos_token_id, *ids[:2]]


def test_few_shot_prompt_exact_strings():
    shots = [
        {"question": "Where was Ana born?", "answer": "Lima"},
        {"question": "What does Bo write?", "answer": "science fiction"},
    ]
    assert documents.few_shot_prompt(shots, "Who is Cara?") == (
        "Question: Where was Ana born?\nAnswer: Lima\n\n"
        "Question: What does Bo write?\nAnswer: science fiction\n\n"
        "Question: Who is Cara?\nAnswer:"
    )
    assert documents.few_shot_prompt([], "Who is Cara?") == "Question: Who is Cara?\nAnswer:"


@pytest.mark.parametrize(
    ("generated", "answer"),
    [
        ("Paris\n\nQuestion: x", "Paris"),
        ("Paris\nQuestion", "Paris"),
        ("  Paris  ", "Paris"),
        ("Question: y", ""),
        (" Lima, Peru.\nAnswer: no", "Lima, Peru.\nAnswer: no"),
    ],
)
def test_cut_at_stop(generated, answer):
    assert documents.cut_at_stop(generated) == answer
