"""The HH-RLHF builder on the hand-written fixture tests/fixtures/hh (the hub's harmless-base/ layout)."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import time
from pathlib import Path

import pytest

from afd.config.run import DatasetConfig, DatasetSource
from afd.data import DataError, load_splits
from afd.data.hh import split_dialogue
from afd.data.schema import hh_messages, prompt_id

FIXTURE = Path(__file__).parent / "fixtures" / "hh"
# Train rows usable as examples: 12 rows less one with differing prompts, one with an empty chosen
# response, one repeated prompt and one prompt that is also in test.jsonl.
N_TRAIN_PROMPTS = 8
N_TEST_PROMPTS = 6


def hh_cfg(path=FIXTURE, **kw) -> DatasetConfig:
    kw = {"train_size": 100, "align_size": 3, "test_size": 100, **kw}
    path = None if path is None else str(path)
    return DatasetConfig(name="hh", source=DatasetSource.hh_harmless, path=path, **kw)


def by_first_user_turn(splits) -> dict[str, dict]:
    return {row["prompt"][0]["content"]: row for name in splits for row in splits[name]}


def test_split_dialogue_follows_the_paper():
    prompt, response = split_dialogue(
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: A pun. \n\nHuman: more"
    )
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant:"
    assert response == "A pun."
    with pytest.raises(ValueError):
        split_dialogue("\n\nHuman: no assistant turn")


def test_hh_messages_roles_and_trailing_cue():
    assert hh_messages("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:") == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    # A stripped copy parses the same, and two Human turns in a row merge into one message.
    assert hh_messages("Human: a\n\nHuman: b\n\nAssistant:") == [{"role": "user", "content": "a\n\nb"}]
    with pytest.raises(ValueError):
        hh_messages("\n\nAssistant: starts with the assistant")


def test_fixture_splits_sizes_and_columns():
    splits = load_splits(hh_cfg())
    assert list(splits) == ["train", "align", "test"]
    assert len(splits["align"]) == 3
    assert len(splits["train"]) == N_TRAIN_PROMPTS - 3
    assert len(splits["test"]) == N_TEST_PROMPTS
    for name in splits:
        assert splits[name].column_names == [
            "prompt_id",
            "prompt",
            "demonstration",
            "chosen",
            "rejected",
            "group",
        ]
        for row in splits[name]:
            assert row["prompt"][-1]["role"] == "user"
            assert row["demonstration"] == row["chosen"]
            assert row["rejected"]
            assert row["group"] == row["prompt_id"] == prompt_id(row["prompt"])


def test_fixture_parsing():
    rows = by_first_user_turn(load_splits(hh_cfg()))
    joke = rows["Can you tell me a joke?"]
    assert joke["chosen"] == "Why did the scarecrow win an award? Because he was outstanding in his field!"
    assert joke["rejected"] == "No."

    lonely = rows["I feel lonely since I moved to a new city."]
    assert [m["role"] for m in lonely["prompt"]] == ["user", "assistant", "user", "assistant", "user"]
    assert lonely["prompt"][-1]["content"] == "Maybe. What kind of club?"
    assert lonely["chosen"].startswith("A running club")

    spanish = rows["What's a good way to learn Spanish?"]
    assert len(spanish["prompt"]) == 3
    assert spanish["prompt"][1]["content"].startswith("Practising a little every day")

    assert rows["Recommend a book about space."]["chosen"] == "Cosmos by Carl Sagan is a classic."
    # The first of two rows with one prompt is kept.
    assert rows["How do I make my houseplants grow faster?"]["chosen"].startswith("Give them bright")
    # Skipped rows: prompts that differ, an empty chosen response.
    assert "What's the capital of Australia?" not in rows
    assert "Say nothing at all." not in rows


def test_test_prompts_never_reach_train_or_align():
    splits = load_splits(hh_cfg())
    egg = [
        r
        for name in ("train", "align")
        for r in splits[name]
        if r["prompt"][0]["content"] == "How do I boil an egg?"
    ]
    assert egg == []
    assert "How do I boil an egg?" in {r["prompt"][0]["content"] for r in splits["test"]}
    # Even when the egg prompt is not drawn into a 1-prompt test split.
    for seed in range(6):
        small = load_splits(hh_cfg(test_size=1, split_seed=seed))
        assert "How do I boil an egg?" not in {
            r["prompt"][0]["content"] for name in ("train", "align") for r in small[name]
        }


def test_skipped_rows_are_counted(caplog):
    with caplog.at_level(logging.INFO, logger="afd.data"):
        load_splits(hh_cfg())
    assert "skipped 1 rows: chosen and rejected prompts differ" in caplog.text
    assert "skipped 1 rows: chosen response is empty" in caplog.text
    assert "train.jsonl, line 6" in caplog.text


def test_invariants_determinism_and_seed():
    splits = load_splits(hh_cfg())
    ids = {name: set(splits[name]["prompt_id"]) for name in splits}
    assert (
        not ids["train"] & ids["align"] and not ids["train"] & ids["test"] and not ids["align"] & ids["test"]
    )
    assert load_splits(hh_cfg())["align"].to_list() == splits["align"].to_list()
    align_sets = {frozenset(load_splits(hh_cfg(split_seed=s))["align"]["prompt_id"]) for s in range(5)}
    assert len(align_sets) > 1


def test_size_caps():
    splits = load_splits(hh_cfg(train_size=2, align_size=1, test_size=4))
    assert [len(splits[n]) for n in ("train", "align", "test")] == [2, 1, 4]
    empty = load_splits(hh_cfg(train_size=0, align_size=0, test_size=0))
    assert all(len(empty[n]) == 0 for n in empty)
    assert empty["test"].features == splits["test"].features


def test_gzip_files_and_subset_folder(tmp_path):
    sub = tmp_path / "harmless-base"
    sub.mkdir()
    for name in ("train.jsonl", "test.jsonl"):
        with open(FIXTURE / name, "rb") as src, gzip.open(sub / f"{name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    # The root of a copy of the hub repo: the subset folder is found through dataset.subset.
    got = load_splits(hh_cfg(path=tmp_path, subset="harmless-base"))
    want = load_splits(hh_cfg())
    for name in want:
        assert got[name].to_list() == want[name].to_list()


def test_malformed_row_names_file_and_line(tmp_path):
    lines = (FIXTURE / "train.jsonl").read_text().splitlines()
    lines[3] = json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "just some text"})
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(FIXTURE / "test.jsonl", tmp_path / "test.jsonl")
    with pytest.raises(DataError, match=r'train\.jsonl, line 4: field "rejected" is not HH text'):
        load_splits(hh_cfg(path=tmp_path))

    lines[3] = json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello"})
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r'train\.jsonl, line 4: field "rejected" is missing'):
        load_splits(hh_cfg(path=tmp_path))

    lines[3] = '{"chosen": "\\n\\nHuman: hi'
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl, line 4: invalid JSON"):
        load_splits(hh_cfg(path=tmp_path))


def test_missing_local_paths(tmp_path):
    with pytest.raises(DataError, match="nope/hh/dir: directory not found"):
        load_splits(hh_cfg(path=tmp_path / "nope" / "hh" / "dir"))
    shutil.copy(FIXTURE / "train.jsonl", tmp_path / "train.jsonl")
    with pytest.raises(DataError, match=r"no test\.jsonl or test\.jsonl\.gz in"):
        load_splits(hh_cfg(path=tmp_path))
    with pytest.raises(DataError, match="is a file"):
        load_splits(hh_cfg(path=tmp_path / "train.jsonl"))


@pytest.mark.parametrize("path", [None, "Anthropic/hh-rlhf", "someone/hh-copy"])
def test_hub_offline_fails_fast_with_a_hint(path):
    # conftest sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE: only the (empty) datasets cache is consulted.
    cfg = DatasetConfig(name="hh", source=DatasetSource.hh_helpful, path=path)
    start = time.monotonic()
    with pytest.raises(DataError, match=r"cannot be reached offline.*dataset\.path=<dir") as info:
        load_splits(cfg)
    assert time.monotonic() - start < 10
    assert "helpful-base" in str(info.value)
    assert (path or "Anthropic/hh-rlhf") in str(info.value)


def test_demonstrations_override_with_hh_prompts(tmp_path):
    demos = tmp_path / "gpt4.jsonl"
    rows = [
        {"prompt": "\n\nHuman: How do I boil an egg?\n\nAssistant:", "demonstration": "GPT egg."},
        {"prompt": "\n\nHuman: Can you tell me a joke?\n\nAssistant:", "demonstration": "GPT joke."},
        # Messages and HH text of one prompt match the same examples.
        {
            "prompt": [{"role": "user", "content": "Write a haiku about rain."}],
            "demonstration": "GPT haiku.",
        },
    ]
    demos.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_splits(hh_cfg(demonstrations_path=str(demos), align_size=1))
    got = {r["prompt"][0]["content"]: r for name in splits for r in splits[name]}
    assert set(got) == {"How do I boil an egg?", "Can you tell me a joke?", "Write a haiku about rain."}
    assert got["Can you tell me a joke?"]["demonstration"] == "GPT joke."
    # The preference pair stays the human one.
    assert got["Can you tell me a joke?"]["chosen"].startswith("Why did the scarecrow")
    assert [r["demonstration"] for r in splits["test"]] == ["GPT egg."]
    assert len(splits["align"]) == 1 and len(splits["train"]) == 1


def fixture_as_hub_dataset(train_rows=None):
    import datasets

    def rows(name):
        return [json.loads(line) for line in (FIXTURE / name).read_text().splitlines()]

    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(train_rows or rows("train.jsonl")),
            "test": datasets.Dataset.from_list(rows("test.jsonl")),
        }
    )


def test_hub_rows_give_the_same_splits_as_local_files(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, data_dir=None):
        # conftest's offline switches: the real client would only read its cache here.
        calls.append((path, data_dir))
        return fixture_as_hub_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    got = load_splits(hh_cfg(path=None))
    assert calls == [("Anthropic/hh-rlhf", "harmless-base")]
    want = load_splits(hh_cfg())
    for name in want:
        assert got[name].to_list() == want[name].to_list()

    bad = [{"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi\n\nAssistant: yo"}] * 2
    bad.append({"chosen": "no dialogue here", "rejected": "\n\nHuman: hi\n\nAssistant: yo"})
    monkeypatch.setattr(datasets, "load_dataset", lambda path, data_dir=None: fixture_as_hub_dataset(bad))
    with pytest.raises(
        DataError, match=r'Anthropic/hh-rlhf \(harmless-base\) train split, row 3: field "chosen"'
    ):
        load_splits(hh_cfg(path=None))
