"""On-policy pairs: best answer chosen, worst rejected, every prompt that gives no pair counted."""

import json

import pytest

from simpo_core.errors import DataError
from simpo_core.generate.pairs import choose_pair, generate_pairs_on_policy
from simpo_core.generate.prompts import PromptSet, load_prompts
from simpo_core.generate.settings import GenerateSettings
from simpo_core.tiny_model import build_tiny_tokenizer


def test_choose_pair_takes_the_best_and_the_worst_answer():
    assert choose_pair(["a", "b", "c"], [0.2, 0.9, -0.4], 0.0) == (1, 2)
    assert choose_pair(["a", "b", "c"], [0.5, None, 0.1], 0.0) == (0, 2)  # unscored answers are ignored
    assert choose_pair(["a", "a", "b"], [0.9, 0.9, 0.1], 0.0) == (0, 2)  # the first of equal best answers


def test_choose_pair_refuses_prompts_without_a_real_preference():
    assert choose_pair(["a", "b"], [None, 0.3], 0.0) == "unscored"
    assert choose_pair(["same", "same", "same"], [0.1, 0.5, 0.9], 0.0) == "identical_answers"
    assert choose_pair(["a", "b"], [0.5, 0.5], 0.0) == "score_gap_too_small"
    assert choose_pair(["a", "b"], [0.5, 0.3], 0.25) == "score_gap_too_small"  # gap 0.2 <= 0.25


class FixedBackend:
    """Answers prompt i with the texts given for it (as a real backend would sample them)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def answer(self, prompts, samples, seed):
        self.calls.append((len(prompts), samples, seed))
        return [self.answers[index][:samples] for index in range(len(prompts))]


def by_length(prompts, answers):  # a judge that prefers longer answers, unless they say "skip"
    return [None if answer == "skip" else float(len(answer)) for answer in answers]


def test_generation_writes_flat_pairs_with_scores_and_provenance(tmp_path):
    prompts = PromptSet("mem", [[{"role": "user", "content": f"q{i}"}] for i in range(3)], total=4)
    prompts.reasons = {"duplicate_prompt": 1}
    backend = FixedBackend([["a", "abc", "ab"], ["x", "x", "x"], ["skip", "skip", "long one"]])
    provenance = {"generator": {"source": "tiny", "identity": "g"}, "judge": {"name": "len", "identity": "len"}}
    settings = GenerateSettings(samples=3, seed=7)
    result = generate_pairs_on_policy(prompts, backend, by_length, settings, tmp_path / "p.jsonl", provenance)

    assert backend.calls == [(3, 3, 7)]
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(row["chosen"], row["rejected"], row["chosen_score"], row["rejected_score"]) for row in rows] == [
        ("abc", "a", 3.0, 1.0)
    ]
    assert rows[0]["generator"] == {"source": "tiny", "identity": "g"} and rows[0]["sampling"]["samples"] == 3
    assert result.dropped == {"duplicate_prompt": 1, "identical_answers": 1, "unscored": 1}
    summary = result.summary()
    assert (summary["prompts"], summary["pairs"]) == (4, 1) and summary["score_gaps"]["mean"] == 2.0

    backend = FixedBackend([["x", "x"]] * 3)
    with pytest.raises(DataError, match="gave a pair"):
        generate_pairs_on_policy(prompts, backend, by_length, GenerateSettings(samples=2), tmp_path / "q", provenance)


def test_prompts_are_validated_like_pairs_and_nothing_is_lost(tmp_path):
    source = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": "List some fruit words."},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Colours?"}]},
        {"messages": [{"role": "user", "content": "Colours?"}, {"role": "assistant", "content": "Red."}]},
        {"prompt": "List some fruit words."},
        {"prompt": "   "},
        {"text": "no prompt here"},
        {"prompt": "word " * 300},
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    found = load_prompts(str(source), build_tiny_tokenizer(), 128, tmp_path / "out")
    assert found.total == 8 and len(found.prompts) == 3
    assert found.prompts[1][0] == {"role": "system", "content": "Be brief."}  # system turns kept
    assert found.prompts[2] == [{"role": "user", "content": "Colours?"}]  # the trailing answer left out
    assert found.reasons == {"invalid_prompt": 2, "duplicate_prompt": 1, "empty_prompt": 1, "prompt_too_long": 1}
    quarantined = [json.loads(line) for line in found.quarantine_path.read_text().splitlines()]
    assert sorted(line["source_row"] for line in quarantined) == [4, 5, 6, 7, 8]


def test_the_prompts_of_a_preference_file_and_of_synthetic_data_are_read(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "Name a city.", "chosen": "Oslo.", "rejected": "Plum."}) + "\n")
    found = load_prompts(str(pairs), build_tiny_tokenizer(), 128, tmp_path / "a")
    assert found.prompts == [[{"role": "user", "content": "Name a city."}]]
    synthetic = load_prompts("synthetic:n=20,seed=3", build_tiny_tokenizer(), 128, tmp_path / "b")
    assert synthetic.total == 20 and len(synthetic.prompts) + synthetic.quarantined == 20
