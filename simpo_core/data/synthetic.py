"""The embedded default data `synthetic`: preference pairs with a learnable rule.

Each prompt asks for words of one category ("Name a few animal words for my quiz.").
The chosen response lists words of that category; the rejected one lists words of
another. Nothing but the prompt tells which category is right, so a model has to learn
the prompt-conditional rule (a real preference signal, not a surface cue), and because
the rule is known, a generated answer can be scored exactly (`score_response`).

Length bias is controlled separately: with bias X the chosen response is the longer one
with probability (1 + X) / 2, so X = 0 gives no length signal and X = 1 a perfect one.
"""

import json
import random
import re
from pathlib import Path

CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum", "melon"),
    "color": ("red", "blue", "green", "yellow", "purple", "pink", "brown", "black", "white", "gray"),
    "animal": ("cat", "dog", "horse", "sheep", "tiger", "lion", "zebra", "mouse", "eagle", "shark"),
    "number": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    "tool": ("hammer", "saw", "drill", "wrench", "chisel", "shovel", "rake", "axe", "pliers", "ruler"),
    "city": ("paris", "london", "tokyo", "rome", "cairo", "lima", "oslo", "delhi", "sydney", "berlin"),
    "body": ("arm", "leg", "hand", "foot", "knee", "elbow", "neck", "nose", "ear", "chin"),
    "weather": ("rain", "snow", "wind", "storm", "fog", "hail", "sun", "cloud", "frost", "thunder"),
}
WORD_TO_CATEGORY = {word: name for name, words in CATEGORIES.items() for word in words}

PROMPT_TEMPLATES = (
    "List some {category} words.",
    "Name a few {category} words for my {purpose}.",
    "Give me {count} {category} words, please.",
    "I need {category} words for a {purpose}. Any ideas?",
    "Which {category} words would you use in a {purpose}?",
)
PURPOSES = ("quiz", "poem", "game", "lesson", "story", "puzzle", "song", "card")
MIN_WORDS, MAX_WORDS = 2, 10
_CATEGORY_IN_PROMPT = re.compile(r"\b(" + "|".join(CATEGORIES) + r") words\b")


def generate_pairs(n: int, length_bias: float = 0.0, seed: int = 0) -> list[dict[str, str]]:
    """Generate `n` flat-layout pairs `{"prompt", "chosen", "rejected"}`.

    Args:
        n: number of pairs (>= 0).
        length_bias: in [-1, 1]; the chosen response is longer (in characters) with
            probability (1 + length_bias) / 2 and strictly shorter otherwise.
        seed: the same seed gives the same pairs.

    Raises:
        ValueError: `n` negative or `length_bias` outside [-1, 1].
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not -1.0 <= length_bias <= 1.0:
        raise ValueError(f"length_bias must be in [-1, 1], got {length_bias}")
    rng = random.Random(seed)
    return [_generate_pair(rng, length_bias) for _ in range(n)]


def _generate_pair(rng: random.Random, length_bias: float) -> dict[str, str]:
    category, wrong_category = rng.sample(sorted(CATEGORIES), 2)
    prompt = rng.choice(PROMPT_TEMPLATES).format(
        category=category, purpose=rng.choice(PURPOSES), count=rng.randint(MIN_WORDS, MAX_WORDS)
    )
    short_count, long_count = sorted(rng.sample(range(MIN_WORDS, MAX_WORDS + 1), 2))
    chosen_is_longer = rng.random() < (1.0 + length_bias) / 2.0
    chosen_words = _sample_words(rng, category, long_count if chosen_is_longer else short_count)
    rejected_words = _sample_words(rng, wrong_category, short_count if chosen_is_longer else long_count)
    longer, shorter = (chosen_words, rejected_words) if chosen_is_longer else (rejected_words, chosen_words)
    longer_category = category if chosen_is_longer else wrong_category
    # Word counts differ, but characters decide "longer": pad the longer list until the
    # character order matches the word-count order, so the bias is exact.
    while len(_render(longer)) <= len(_render(shorter)):
        longer.append(rng.choice(CATEGORIES[longer_category]))
    return {"prompt": prompt, "chosen": _render(chosen_words), "rejected": _render(rejected_words)}


def _sample_words(rng: random.Random, category: str, count: int) -> list[str]:
    return [rng.choice(CATEGORIES[category]) for _ in range(count)]


def _render(words: list[str]) -> str:
    return ", ".join(words).capitalize() + "."


def prompt_category(prompt: str) -> str | None:
    """The category a synthetic prompt asks for, or None for any other prompt."""
    match = _CATEGORY_IN_PROMPT.search(prompt.lower())
    return match.group(1) if match else None


def score_response(prompt: str, response: str) -> float:
    """Score a response to a synthetic prompt by the rule that generated the data.

    Returns:
        In [-1, 1]: (words of the asked category - words of other categories) divided by
        the number of words in the response; 0.0 for an empty response or a prompt that
        is not synthetic.
    """
    category = prompt_category(prompt)
    words = re.findall(r"[a-z]+", response.lower())
    if category is None or not words:
        return 0.0
    right = sum(WORD_TO_CATEGORY.get(word) == category for word in words)
    wrong = sum(WORD_TO_CATEGORY.get(word) not in (None, category) for word in words)
    return (right - wrong) / len(words)


def write_jsonl(rows: list[dict[str, str]], path: Path) -> Path:
    """Write rows as JSON Lines (UTF-8), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
