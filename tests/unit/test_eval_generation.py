import pytest

from simpo_core.data.synthetic import generate_pairs
from simpo_core.eval.generation import (
    Generation,
    _to_generation,
    generation_block,
    generation_metrics,
    left_pad,
    ngram_repetition,
    repetition_rate,
    sample_prompts,
)
from simpo_core.train.prompt_format import keep_last_tokens


def test_ngram_repetition_by_hand():
    """Bigrams of a b a b a: ab ba ab ba -> 2 distinct of 4 -> 0.5."""
    assert ngram_repetition(list("ababa"), 2) == 0.5
    assert ngram_repetition(list("abc"), 4) == 0.0  # no n-gram at all


@pytest.mark.parametrize("text", ["Hi Hi Hi Hi Hi Hi Hi Hi", "Cat, cat, cat, cat, cat, cat, cat.", "a" * 30])
def test_loops_score_high(text):
    assert repetition_rate(text) > 0.7


def test_well_formed_answers_score_low():
    rows = generate_pairs(300, seed=2)
    rates = [repetition_rate(row["chosen"]) for row in rows]
    assert sum(rates) / len(rates) < 0.2


def repetitive_generator(prompts):
    return [Generation("Hi Hi Hi Hi Hi Hi Hi Hi Hi Hi", 30) for _ in prompts]


def test_repetitive_generator_is_flagged_collapsed():
    metrics = generation_metrics(repetitive_generator(range(8)))
    assert metrics["collapsed"] is True
    assert metrics["repetition_rate"] > 0.5
    assert metrics["distinct_rate"] == 1 / 8
    assert "repetition rate" in metrics["collapse_reasons"][0]


def test_healthy_generator_is_not_collapsed():
    answers = [Generation(row["chosen"], len(row["chosen"])) for row in generate_pairs(16, seed=5)]
    metrics = generation_metrics(answers)
    assert metrics["collapsed"] is False and metrics["collapse_reasons"] == []
    assert metrics["mean_length"] == pytest.approx(sum(len(a.text) for a in answers) / 16)


def test_empty_answers_are_flagged():
    metrics = generation_metrics([Generation("", 0), Generation("  ", 1), Generation("Red, blue.", 4)])
    assert metrics["empty_rate"] == pytest.approx(2 / 3)
    assert metrics["collapsed"] is True and "empty-answer" in metrics["collapse_reasons"][0]


def test_block_is_collapsed_when_one_mode_is():
    healthy = [Generation("Red, blue, green.", 5), Generation("Cat, dog.", 3)]
    block = generation_block(healthy, repetitive_generator(range(2)))
    assert block["greedy"]["collapsed"] is False and block["sampled"]["collapsed"] is True
    assert block["collapsed"] is True
    assert block["samples"] == 4


def test_no_answers_is_a_clear_error():
    with pytest.raises(ValueError, match="generation_samples"):
        generation_metrics([])


def test_sample_prompts_is_deterministic_and_distinct():
    prompts = [[{"role": "user", "content": f"q{i % 5}"}] for i in range(20)]
    first = sample_prompts(prompts, 3, seed=1)
    assert first == sample_prompts(prompts, 3, seed=1)
    assert len({p[0]["content"] for p in first}) == 3
    assert len(sample_prompts(prompts, 50, seed=1)) == 5  # only 5 distinct prompts exist


def test_left_pad_puts_every_prompt_at_the_end():
    batch = left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_long_prompt_keeps_its_end_and_bos():
    assert keep_last_tokens([1, 2, 3, 4, 5], 3, bos_token_id=None) == [3, 4, 5]
    assert keep_last_tokens([9, 2, 3, 4, 5], 3, bos_token_id=9) == [9, 4, 5]
    assert keep_last_tokens([9, 2], 3, bos_token_id=9) == [9, 2]


def test_answer_is_cut_at_the_first_eos():
    from simpo_core.tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()  # bytes are ids 3..258, eos 1, pad 0
    ids = tokenizer("ok", add_special_tokens=False)["input_ids"] + [1, 0, 0]
    assert _to_generation(tokenizer, ids, {1}) == Generation("ok", 2)


def test_sampling_repeats_with_its_seed_beside_other_draws_and_leaves_the_global_stream_alone(tiny_model_dir):
    """Answers depend on the seed alone, not on what another training draws meanwhile in its own
    sections (a concurrent sweep trial), and the caller's torch generator is where it was."""
    import threading

    import torch

    from simpo_core.eval.generation import generate_responses
    from simpo_core.models import load_model_and_tokenizer
    from simpo_core.rng import TrainingRng

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    prompts = [[{"role": "user", "content": f"Name a colour, {n}."}] for n in range(3)]
    options = {"do_sample": True, "max_new_tokens": 6, "batch_size": 2, "max_prompt_length": 64}

    def texts(seed):
        return [g.text for g in generate_responses(model, tokenizer, prompts, seed=seed, **options)]

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = texts(7)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream did not move
    stop = threading.Event()
    beside = TrainingRng(5)

    def draw_beside():
        while not stop.is_set():
            with beside.drawing("cpu"):
                torch.rand(100)

    noise = threading.Thread(target=draw_beside)
    noise.start()
    try:
        assert texts(7) == first
    finally:
        stop.set()
        noise.join()
    assert texts(8) != first
