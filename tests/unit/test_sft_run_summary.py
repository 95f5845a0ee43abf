"""What the run summary says about the answers, not only the rankings: each model's judge
mean score (the judge block) and greedy repetition rate (quoted in the model's block)."""

import pandas as pd

from simpo_core.data.synthetic import CATEGORIES, generate_pairs, prompt_category
from simpo_core.eval.generation import Generation
from simpo_core.eval.heldout import evaluate_heldout
from simpo_core.eval.settings import EvalSettings


def scorer(model, tokenizer, rows, **options):
    return {
        "chosen_logps": [-1.0] * len(rows),
        "rejected_logps": [-2.0] * len(rows),
        "chosen_lengths": [4] * len(rows),
        "rejected_lengths": [4] * len(rows),
    }


def generator(model, tokenizer, prompts, *, do_sample, seed, **options):
    """ "looping" repeats one non-word; "listing" names two distinct words of the asked category
    when greedy and one right and one wrong word when sampled."""
    if model == "looping":
        return [Generation("Hi Hi Hi Hi Hi Hi Hi Hi", 24) for _ in prompts]
    answers = []
    for prompt in prompts:
        asked = prompt_category(prompt[-1]["content"])
        other = next(name for name in CATEGORIES if name != asked)
        second = CATEGORIES[other][0] if do_sample else CATEGORIES[asked][1]
        answers.append(Generation(f"{CATEGORIES[asked][0]}, {second}.", 12))
    return answers


def test_blocks_quote_the_judge_mean_score_and_the_greedy_repetition_rate():
    """Judge scores by hand: "listing" scores 1 greedy ((2 - 0) / 2 words) and 0 sampled
    ((1 - 1) / 2), mean 0.5; "looping" names no category word: 0. Greedy repetition of
    "hi hi hi hi hi hi hi hi": 6 word trigrams, 1 distinct -> 1 - 1/6 = 0.833; of two distinct
    words: no trigram repeats, and no character 8-gram either -> 0."""
    pairs = pd.DataFrame(generate_pairs(60, seed=3))
    result = evaluate_heldout(
        "looping", "listing", None, pairs, EvalSettings(generation_samples=4), scorer=scorer, generator=generator
    )
    base, trained, judge = result.heldout["base"], result.heldout["trained"], result.heldout["judge"]
    assert (judge["mean_score_base"], judge["mean_score_trained"]) == (0.0, 0.5)
    assert round(base["greedy_repetition_rate"], 3) == 0.833 and trained["greedy_repetition_rate"] == 0.0
    assert trained["greedy_repetition_rate"] == trained["generation"]["greedy"]["repetition_rate"]


def test_without_answers_there_is_no_greedy_repetition_rate():
    pairs = pd.DataFrame(generate_pairs(20, seed=4))
    settings = EvalSettings(generation_samples=0, judge="none")
    heldout = evaluate_heldout("a", "b", None, pairs, settings, scorer=scorer, generator=generator).heldout
    assert heldout["judge"] is None and heldout["trained"]["greedy_repetition_rate"] is None
