"""The SFT stage's data and settings: format rows without the preference, layouts, limits."""

import json
from collections import Counter

import pytest

from simpo_core.data.sft_data import generate_format_rows, read_sft_file, sft_rows_from
from simpo_core.data.synthetic import CATEGORIES, WORD_TO_CATEGORY, prompt_category, score_response
from simpo_core.errors import ConfigError, DataError
from simpo_core.train.sft_settings import SFTJob, SFTSettings


def answer_category(response):
    words = response.rstrip(".").lower().split(", ")
    categories = {WORD_TO_CATEGORY[word] for word in words}
    assert len(categories) == 1, response  # one category per answer
    return categories.pop()


def test_format_rows_are_synthetic_prompts_with_distinct_word_lists():
    rows = generate_format_rows(300, seed=1)
    assert all(prompt_category(row["prompt"][0]["content"]) in CATEGORIES for row in rows)
    for row in rows:
        words = row["response"].rstrip(".").split(", ")
        assert row["response"].endswith(".") and row["response"][0].isupper()
        assert len(words) == len(set(word.lower() for word in words)) and 2 <= len(words) <= 10


def test_format_rows_ask_for_n_and_answer_n_words():
    rows = [row for row in generate_format_rows(400, seed=2) if row["prompt"][0]["content"].startswith("Give me")]
    assert rows
    for row in rows:
        asked = int(row["prompt"][0]["content"].split()[2])
        assert len(row["response"].split(", ")) == asked


def test_format_rows_carry_no_preference_signal():
    """The answered category is independent of the asked one: it matches in about 1 row of 8
    (2000 rows: 250 expected, standard deviation 14.8), and every category is answered."""
    rows = generate_format_rows(2000, seed=0)
    matches = sum(prompt_category(row["prompt"][0]["content"]) == answer_category(row["response"]) for row in rows)
    assert 250 - 60 < matches < 250 + 60
    assert set(Counter(answer_category(row["response"]) for row in rows)) == set(CATEGORIES)
    mean_score = sum(score_response(row["prompt"][0]["content"], row["response"]) for row in rows) / len(rows)
    assert mean_score < -0.6  # a random category: 1/8 right (+1), 7/8 wrong (-1) -> -0.75


def test_format_rows_are_deterministic():
    assert generate_format_rows(50, seed=3) == generate_format_rows(50, seed=3)
    assert generate_format_rows(50, seed=3) != generate_format_rows(50, seed=4)
    with pytest.raises(ValueError, match="n must be >= 0"):
        generate_format_rows(-1)


def test_rows_from_every_layout():
    user = [{"role": "user", "content": "Hi"}]
    records = [
        {"prompt": "Hi", "response": "Hello."},
        {"prompt": "Hi", "completion": [{"role": "assistant", "content": "Hello."}]},
        {"prompt": user, "chosen": "Hello.", "rejected": "Go away."},
        {"messages": [*user, {"role": "assistant", "content": "Hello."}]},
    ]
    assert sft_rows_from(records) == [{"prompt": user, "response": "Hello."}] * 4


@pytest.mark.parametrize(
    "record, message",
    [
        ({"question": "Hi", "answer": "Hello."}, r"record 0 has keys \['answer', 'question'\]"),
        ({"prompt": "Hi", "response": "  "}, "record 0: the prompt or the answer is empty"),
        ({"messages": [{"role": "user", "content": "Hi"}]}, "'messages' must be a messages list ending"),
        ({"prompt": "Hi", "chosen": 3}, "'chosen' must be a string or a messages list"),
    ],
)
def test_bad_records_name_the_record_and_the_fix(record, message):
    with pytest.raises(DataError, match=message):
        sft_rows_from([record])


def test_read_sft_file_reads_a_preference_file_and_hashes_it(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "No."}) + "\n")
    rows, digest = read_sft_file(path)
    assert rows == [{"prompt": [{"role": "user", "content": "Hi"}], "response": "Hello."}] and len(digest) == 64
    path.write_text("{not json\n")
    with pytest.raises(DataError, match="record 1"):
        read_sft_file(path)
    with pytest.raises(DataError, match="does not exist"):
        read_sft_file(tmp_path / "missing.jsonl")


def test_settings_refuse_a_prompt_budget_that_leaves_no_answer_and_unknown_keys():
    with pytest.raises(ValueError, match=r"max_prompt_length \(64\) must be smaller than max_length \(64\)"):
        SFTSettings(max_length=64, max_prompt_length=64)
    with pytest.raises(ConfigError, match="lr"):
        SFTSettings.from_values({"lr": 0})
    with pytest.raises(ConfigError, match="epochs"):
        SFTJob.from_values({"data": "d.jsonl", "output_dir": "out", "sft": {"epochs": 2}})
    job = SFTJob.from_values({"data": "d.jsonl", "output_dir": "out", "sft": {"max_steps": 5}})
    assert (job.model, job.sft.max_steps, job.sft.lr) == ("tiny-scratch", 5, SFTSettings().lr)


@pytest.mark.parametrize(
    "source, sft_weight, lr",
    [("tiny", 0.0, 3e-4), ("tiny-scratch", 1.0, 1e-3), ("some-org/some-7b", 0.0, 1e-6)],
)
def test_each_starting_model_gets_its_preset_and_user_fields_win(source, sft_weight, lr):
    """`tiny` (SFT'd) trains with the SimPO loss alone; `tiny-scratch` keeps its SFT term."""
    from flows.params import load_params

    params = load_params(None, [f"model.source={source}"])
    assert (params.train.sft_weight, params.train.lr) == (sft_weight, lr)
    assert (params.train.label_smoothing, params.train.loss_type) == (0.0, "sigmoid")
    assert load_params(None, [f"model.source={source}", "train.sft_weight=0.5"]).train.sft_weight == 0.5
