"""The jsonl source (a user's own file), bad input, and the demonstrations_path override."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from afd.config.run import DatasetConfig, DatasetSource
from afd.data import BUILDERS, DataError, load_splits, require_examples

COLUMNS = ["prompt_id", "prompt", "demonstration", "chosen", "rejected", "group"]


def write_jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def jsonl_cfg(path, **kw) -> DatasetConfig:
    return DatasetConfig(name="mine", source=DatasetSource.jsonl, path=str(path), **kw)


def many_rows(n: int) -> list[dict]:
    return [{"prompt": f"question {i}?", "demonstration": f"answer {i}."} for i in range(n)]


def test_every_source_has_one_builder():
    assert set(BUILDERS) == set(DatasetSource)


def test_prompt_forms_and_columns(tmp_path):
    messages = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": "how are you?"},
    ]
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"prompt": "  What is 2+2?  ", "demonstration": "4", "id": "extra keys are ignored"},
            {
                "prompt": messages,
                "demonstration": "Great, thanks!",
                "chosen": "Great!",
                "rejected": "Go away.",
            },
            {
                "prompt": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:",
                "demonstration": "Bye!",
            },
            "",
        ],
    )
    splits = load_splits(jsonl_cfg(path, split_seed=3))
    rows = {r["demonstration"]: r for name in splits for r in splits[name]}
    assert sum(len(splits[n]) for n in splits) == 3
    for name in splits:
        assert splits[name].column_names == COLUMNS
    assert rows["4"]["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert rows["4"]["chosen"] is None and rows["4"]["rejected"] is None
    assert rows["Great, thanks!"]["prompt"] == messages
    assert (rows["Great, thanks!"]["chosen"], rows["Great, thanks!"]["rejected"]) == ("Great!", "Go away.")
    assert [m["role"] for m in rows["Bye!"]["prompt"]] == ["user", "assistant", "user"]
    assert rows["Bye!"]["prompt"][-1]["content"] == "bye"


def test_prompt_id_is_sha1_of_canonical_messages(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "héllo", "demonstration": "hi"}])
    row = next(r for n, s in load_splits(jsonl_cfg(path)).items() for r in s)
    canonical = json.dumps([{"content": "héllo", "role": "user"}], ensure_ascii=False, separators=(",", ":"))
    assert row["prompt_id"] == hashlib.sha1(canonical.encode()).hexdigest()[:16]
    assert row["group"] == row["prompt_id"]
    # The same prompt written as messages or as HH text has the same id.
    other = write_jsonl(
        tmp_path / "b.jsonl",
        [{"prompt": [{"role": "user", "content": "héllo"}], "demonstration": "x"}],
    )
    hh = write_jsonl(
        tmp_path / "c.jsonl", [{"prompt": "\n\nHuman: héllo\n\nAssistant:", "demonstration": "x"}]
    )
    for path in (other, hh):
        assert (
            next(r for s in load_splits(jsonl_cfg(path)).values() for r in s)["prompt_id"] == row["prompt_id"]
        )


def test_split_invariants(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", many_rows(100))
    cfg = jsonl_cfg(path, train_size=50, align_size=20, test_size=10)
    splits = load_splits(cfg)
    assert [len(splits[n]) for n in ("train", "align", "test")] == [50, 20, 10]
    ids = {n: set(splits[n]["prompt_id"]) for n in splits}
    groups = {n: set(splits[n]["group"]) for n in splits}
    for a, b in (("train", "align"), ("train", "test"), ("align", "test")):
        assert not ids[a] & ids[b]
        assert not groups[a] & groups[b]
    again = load_splits(cfg)
    for n in splits:
        assert again[n].to_list() == splits[n].to_list()
    other = load_splits(jsonl_cfg(path, train_size=50, align_size=20, test_size=10, split_seed=1))
    assert set(other["test"]["prompt_id"]) != ids["test"]
    # The caps are maxima: more than the file holds gives everything once.
    everything = load_splits(jsonl_cfg(path, train_size=1000, align_size=5, test_size=5))
    assert [len(everything[n]) for n in ("train", "align", "test")] == [90, 5, 5]


def test_smaller_sizes_give_prefixes(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", many_rows(60))
    big = load_splits(jsonl_cfg(path, train_size=30, align_size=10, test_size=10))
    small = load_splits(jsonl_cfg(path, train_size=5, align_size=10, test_size=10))
    assert small["test"].to_list() == big["test"].to_list()
    assert small["align"].to_list() == big["align"].to_list()
    assert small["train"].to_list() == big["train"].to_list()[:5]


def test_repeated_prompts_keep_the_first(tmp_path, caplog):
    path = write_jsonl(
        tmp_path / "dup.jsonl",
        [
            {"prompt": "same", "demonstration": "first"},
            {"prompt": [{"role": "user", "content": "same"}], "demonstration": "second"},
            {"prompt": "other", "demonstration": "third"},
        ],
    )
    with caplog.at_level(logging.INFO, logger="afd.data"):
        splits = load_splits(jsonl_cfg(path))
    demos = sorted(r["demonstration"] for s in splits.values() for r in s)
    assert demos == ["first", "third"]
    assert "1 rows repeat an earlier prompt" in caplog.text


def test_empty_splits_keep_columns_and_types(tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", [{"prompt": "q", "demonstration": "a"}])
    splits = load_splits(jsonl_cfg(path))
    assert len(splits["test"]) == 1 and len(splits["align"]) == 0 and len(splits["train"]) == 0
    for name in ("align", "train"):
        assert splits[name].features == splits["test"].features
    assert str(splits["train"].features["chosen"]) == "Value('string')"
    assert splits["train"].features["prompt"].feature["role"].dtype == "string"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            ['{"prompt": "q", "demonstration": "a"}', '{"prompt": "q2", "demonstration": '],
            r"line 2: invalid JSON",
        ),
        (['{"prompt": "q", "demonstration": "a"}', '["a", "list"]'], r"line 2: expected a JSON object"),
        ([{"demonstration": "a"}], r'line 1: field "prompt" is missing'),
        ([{"prompt": "   ", "demonstration": "a"}], r'line 1: field "prompt" is empty'),
        ([{"prompt": 3, "demonstration": "a"}], r'line 1: field "prompt" must be a string or a list'),
        ([{"prompt": "q"}], r'line 1: field "demonstration" is missing'),
        (
            [{"prompt": "q", "demonstration": "a"}, {"prompt": "q", "demonstration": " "}],
            r'line 2: field "demonstration" is empty',
        ),
        ([{"prompt": "q", "demonstration": 5}], r'line 1: field "demonstration" must be a string'),
        ([{"prompt": [], "demonstration": "a"}], r'field "prompt" has no messages'),
        (
            [
                {
                    "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                    "demonstration": "a",
                }
            ],
            r'field "prompt" must end with a user message',
        ),
        ([{"prompt": [{"role": "bot", "content": "q"}], "demonstration": "a"}], r"role 'bot'"),
        (
            [{"prompt": [{"role": "user"}], "demonstration": "a"}],
            r'message 1 must be \{"role": str, "content": str\}',
        ),
        (
            [{"prompt": [{"role": "user", "content": ""}], "demonstration": "a"}],
            r"message 1 \(user\) is empty",
        ),
        (
            [{"prompt": "\n\nAssistant: x\n\nHuman: q", "demonstration": "a"}],
            r"looks like HH text but does not parse",
        ),
        (
            [{"prompt": "q", "demonstration": "a", "chosen": "c"}],
            r'field "chosen" is given without "rejected"',
        ),
        ([{"prompt": "q", "demonstration": "a", "chosen": "", "rejected": "r"}], r'field "chosen" is empty'),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message) as info:
        load_splits(jsonl_cfg(path))
    assert str(info.value).startswith(f"{path}, line ")


def test_missing_file_path_none_and_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"dataset\.path=.*nothere\.jsonl: file not found"):
        load_splits(jsonl_cfg(tmp_path / "nothere.jsonl"))
    with pytest.raises(DataError, match=r"^dataset\.path is not set"):
        load_splits(DatasetConfig(name="mine", source=DatasetSource.jsonl))
    with pytest.raises(DataError, match="holds no rows"):
        load_splits(jsonl_cfg(write_jsonl(tmp_path / "empty.jsonl", ["", "  "])))
    (tmp_path / "binary.jsonl").write_bytes(b'{"prompt": "q", "demonstration": "a"}\n\xff\xfe\n')
    with pytest.raises(DataError, match=r"binary\.jsonl, line 2: not UTF-8 text"):
        load_splits(jsonl_cfg(tmp_path / "binary.jsonl"))
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"broken\.jsonl\.gz: not a readable gzip file"):
        load_splits(jsonl_cfg(tmp_path / "broken.jsonl.gz"))


def test_negative_size_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", many_rows(3))
    with pytest.raises(DataError, match=r"dataset\.align_size=-1"):
        load_splits(jsonl_cfg(path, align_size=-1))


def test_demonstrations_override(tmp_path, caplog):
    data = write_jsonl(tmp_path / "data.jsonl", many_rows(20))
    demos = write_jsonl(
        tmp_path / "demos.jsonl",
        [{"prompt": f"question {i}?", "demonstration": f"better answer {i}."} for i in range(0, 20, 2)]
        + [{"prompt": "a prompt not in the data", "demonstration": "unused"}],
    )
    cfg = jsonl_cfg(data, demonstrations_path=demos, train_size=100, align_size=2, test_size=2)
    with caplog.at_level(logging.INFO, logger="afd.data"):
        splits = load_splits(cfg)
    rows = [r for s in splits.values() for r in s]
    assert len(rows) == 10
    for r in rows:
        i = int(r["prompt"][0]["content"].split()[1].rstrip("?"))
        assert i % 2 == 0 and r["demonstration"] == f"better answer {i}."
    assert (len(splits["test"]), len(splits["align"]), len(splits["train"])) == (2, 2, 6)
    assert "10 examples have no demonstration in the file and were dropped (10 matched)" in caplog.text


def test_demonstrations_override_errors(tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", many_rows(5))
    nothing = write_jsonl(tmp_path / "nothing.jsonl", [{"prompt": "unrelated", "demonstration": "x"}])
    with pytest.raises(DataError, match=r"none of its 1 prompts matches"):
        load_splits(jsonl_cfg(data, demonstrations_path=nothing))
    with pytest.raises(DataError, match=r"demonstrations_path=.*missing\.jsonl: file not found"):
        load_splits(jsonl_cfg(data, demonstrations_path=str(tmp_path / "missing.jsonl")))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "question 1?", "demonstration": "x"}, "{oops"])
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: invalid JSON"):
        load_splits(jsonl_cfg(data, demonstrations_path=bad))
    empty_demo = write_jsonl(tmp_path / "empty_demo.jsonl", [{"prompt": "question 1?", "demonstration": ""}])
    with pytest.raises(DataError, match=r'empty_demo\.jsonl, line 1: field "demonstration" is empty'):
        load_splits(jsonl_cfg(data, demonstrations_path=empty_demo))
    conflict = write_jsonl(
        tmp_path / "conflict.jsonl",
        [{"prompt": "question 1?", "demonstration": "x"}, {"prompt": "question 1?", "demonstration": "y"}],
    )
    with pytest.raises(DataError, match=r"conflict\.jsonl, line 2: .*different demonstration .*line 1"):
        load_splits(jsonl_cfg(data, demonstrations_path=conflict))


def test_too_few_rows_for_a_test_split_is_one_clear_error(tmp_path):
    f = tmp_path / "two.jsonl"
    f.write_text('{"prompt": "a", "demonstration": "x"}\n{"prompt": "b", "demonstration": "y"}\n')
    cfg = DatasetConfig(
        name="two", source=DatasetSource.jsonl, path=str(f), test_size=2, align_size=0, train_size=4
    )
    splits = load_splits(cfg)
    with pytest.raises(DataError, match="the train split is empty"):
        require_examples(splits, cfg, "train", "test")
