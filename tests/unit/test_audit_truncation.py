"""Truncation count of the audit: the trainer's token counting, the report, the policy, the flow's limits."""

import json
import logging

import numpy as np
import pandas as pd
import pytest

from simpo_core.audit.balance import audit, audit_length_balance
from simpo_core.audit.settings import AuditSettings
from simpo_core.audit.truncation import TruncationLimits, answer_token_counts, prompt_token_counts, truncation_flags
from simpo_core.errors import ConfigError, DataError
from simpo_core.tiny_model import build_tiny_tokenizer
from simpo_core.train.tokenization import render_prompt_ids, response_ids


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()  # byte-level, no BOS, EOS `</s>`: an ASCII character is one token


class WordTokenizer:
    """Whitespace words; `<s>` is BOS 1, `</s>` EOS 2; its template writes its own BOS."""

    chat_template = "words"
    bos_token, eos_token, bos_token_id, eos_token_id = "<s>", "</s>", 1, 2

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "<s> " + " ".join(f"{m['role']} {m['content']}" for m in messages) + " reply"

    def __call__(self, text, **kwargs):
        ids = [[{"<s>": 1, "</s>": 2}.get(word, 3) for word in one.split()] for one in [text] if isinstance(text, str)]
        batch = ids or [[{"<s>": 1, "</s>": 2}.get(word, 3) for word in one.split()] for one in text]
        return {"input_ids": ids[0] if isinstance(text, str) else batch}


def long_pairs(tokenizer_limits=(64, 32)):
    """Ten pairs; with max_length 64 / max_prompt_length 32 (tiny tokenizer):
    rows 0-5 fit, rows 6-7 have a long chosen, row 8 a long rejected, row 9 a long prompt."""
    rows = [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": f"yes {i}", "rejected": f"no {i}"}
        for i in range(10)
    ]
    rows[6]["chosen"] = rows[7]["chosen"] = "c" * 80
    rows[8]["rejected"] = "r" * 80
    rows[9]["prompt"] = [{"role": "system", "content": "s" * 60}, {"role": "user", "content": "q9"}]
    return pd.DataFrame(rows)


def test_counts_match_the_trainers_own_ids():
    tokenizer = WordTokenizer()
    prompts = [
        [{"role": "user", "content": "a b c"}],
        "just text",
        [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
    ]
    answers = pd.Series(["one two", "three </s>", "four </s> </s>"], dtype=object)
    expected_prompts = [
        len(render_prompt_ids(tokenizer, [{"role": "user", "content": p}] if isinstance(p, str) else p))
        for p in prompts
    ]
    assert list(prompt_token_counts(prompts, tokenizer)) == expected_prompts == [6, 5, 6]  # BOS once
    assert (
        list(answer_token_counts(answers, tokenizer)) == [len(response_ids(tokenizer, a)) for a in answers] == [3, 2, 2]
    )


def test_flags_follow_the_trainers_rule():
    limits = TruncationLimits(max_length=10, max_prompt_length=4)
    prompt, chosen, rejected = np.array([3, 6, 6, 3]), np.array([5, 3, 9, 8]), np.array([2, 2, 2, 2])
    flags = truncation_flags(prompt, chosen, rejected, limits)
    # row 0 fits; row 1: 6 + 3 fits, so its long prompt stays; row 2: prompt cut to 4, 4 + 9 > 10;
    # row 3: a prompt within its limit, chosen 3 + 8 > 10
    assert flags.tolist() == [[False] * 3, [False] * 3, [True, True, False], [False, True, False]]


def test_the_report_counts_each_limit(tokenizer):
    settings = AuditSettings(max_length=64, max_prompt_length=32, max_truncated_fraction=0.5)
    report = audit_length_balance(long_pairs(), tokenizer, settings).report
    assert report["truncated"] == {
        "prompt": 1,
        "chosen": 2,
        "rejected": 1,
        "pairs": 4,
        "fraction": 0.4,
        "max_length": 64,
        "max_prompt_length": 32,
        "max_truncated_fraction": 0.5,
        "flagged": False,
    }
    assert (report["truncated_pairs"], report["truncated_fraction"]) == (4, 0.4)  # flat, for the run's metrics


def test_unset_limits_are_simpo_configs_defaults(tokenizer):
    report = audit_length_balance(long_pairs(), tokenizer).report
    assert report["truncated"]["max_length"] == 512 and report["truncated"]["max_prompt_length"] == 256
    assert report["truncated_pairs"] == 0


def test_too_many_truncated_pairs_warn(tokenizer, caplog):
    settings = AuditSettings(max_length=64, max_prompt_length=32)
    with caplog.at_level(logging.WARNING, logger="simpo_core.audit.balance"):
        report = audit_length_balance(long_pairs(), tokenizer, settings).report
    assert report["truncated"]["flagged"] is True
    assert "training would cut 4 pairs (40.0%, above 5.0%)" in caplog.text


def test_policy_fail_names_the_counts_the_limits_and_the_fix(tokenizer):
    settings = AuditSettings(max_length=64, max_prompt_length=32, policy="fail", threshold=0.99)
    with pytest.raises(DataError) as error:
        audit_length_balance(long_pairs(), tokenizer, settings)
    message = str(error.value)
    assert "1 prompts longer than max_prompt_length 32, 2 chosen and 1 rejected answers past max_length 64" in message
    assert "train.max_length" in message and "data.max_prompt_tokens / data.max_response_tokens" in message


def test_the_streamed_audit_counts_the_same_and_writes_it(tokenizer, tmp_path):
    from simpo_core.data.validation_stream import validate_source

    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in long_pairs().to_dict("records")))
    validated = validate_source(str(source), tmp_path / "data")
    settings = AuditSettings(max_length=64, max_prompt_length=32)
    result = audit(validated, tokenizer, settings, tmp_path / "audit")
    assert result.report["truncated"] == audit_length_balance(long_pairs(), tokenizer, settings).report["truncated"]
    assert json.loads(result.paths["json"].read_text())["truncated"]["pairs"] == 4
    markdown = result.paths["markdown"].read_text()
    assert "| pairs training cuts (max_length 64, max_prompt_length 32) | 4 (40.0%; allowed 5.0%) |" in markdown
    assert "| of which prompt / chosen / rejected cut | 1 / 2 / 1 |" in markdown


def test_the_limits_are_checked_together():
    with pytest.raises(ConfigError, match=r"max_prompt_length \(64\) must be smaller than its max_length \(64\)"):
        AuditSettings.from_values({"max_length": 64, "max_prompt_length": 64})


def test_the_flow_audits_with_the_training_limits():
    from flows.params import load_params

    params = load_params(None, ["train.max_length=300", "train.max_prompt_length=100"])
    assert (params.audit.max_length, params.audit.max_prompt_length) == (300, 100)
    chosen = load_params(None, ["audit.max_length=1000"])
    assert (chosen.audit.max_length, chosen.audit.max_prompt_length) == (1000, chosen.train.max_prompt_length)


def test_simpo_audit_json_has_the_truncated_block(tmp_path, capsys):
    from flows.cli import main

    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in long_pairs().to_dict("records")))
    code = main(
        [
            "audit",
            str(source),
            "--out",
            str(tmp_path / "audit"),
            "--max-length",
            "64",
            "--max-prompt-length",
            "32",
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["truncated"]["pairs"] == 4 and summary["truncated_fraction"] == 0.4


def test_counts_equal_the_cuts_the_trainer_makes(tokenizer):
    """Prompts that lose whole turns keep fewer than max_prompt_length tokens (here 46 of 120),
    which leaves their answers more room: counted as trained, not at the prompt limit."""
    from simpo_core.train.tokenization import encode_pair

    history = [{"role": "system", "content": "rules"}]
    for turn in range(4):
        history += [{"role": "user", "content": f"u{turn} " + "x" * 30}, {"role": "assistant", "content": "y" * 30}]
    rows = [
        {"prompt": [*history, {"role": "user", "content": "last?"}], "chosen": "c" * n, "rejected": "r" * 20}
        for n in (10, 45, 100, 130)
    ]
    actual = np.zeros(3, dtype=int)
    for row in rows:
        whole = [render_prompt_ids(tokenizer, row["prompt"])] + [
            response_ids(tokenizer, row[k]) for k in ("chosen", "rejected")
        ]
        cut = encode_pair(tokenizer, row, 160, 120)
        actual += [len(a) < len(b) for a, b in zip((cut.prompt_ids, cut.chosen_ids, cut.rejected_ids), whole)]
    settings = AuditSettings(max_length=160, max_prompt_length=120)
    truncated = audit_length_balance(pd.DataFrame(rows), tokenizer, settings).report["truncated"]
    assert [truncated["prompt"], truncated["chosen"], truncated["rejected"]] == actual.tolist() == [4, 1, 0]
