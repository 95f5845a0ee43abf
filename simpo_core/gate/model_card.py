"""The model card of a registered version: what data, audit, training and evaluation made it,
and why the gate promoted it or not. Markdown, shown as the version's description on the
registry page and logged as `model_card.md` beside the run.
"""

from typing import Any

from simpo_core.gate.promotion import PromotionDecision

CARD_METRICS = (
    ("reward accuracy", "reward_accuracy", "reward_accuracy_ci"),
    ("length-controlled accuracy", "length_controlled_accuracy", None),
    ("reward margin", "reward_margin", None),
    ("length-reward correlation", "length_reward_correlation", None),
)
MAX_CARD_CHARS = 5000  # what an MLflow description holds comfortably
SAMPLE_CHARS = 240  # each quoted prompt or answer: three pairs must leave room for the rest of the card


def render_model_card(
    name: str,
    version: str,
    lineage: dict[str, Any],
    heldout: dict[str, Any],
    decision: PromotionDecision,
    champion: dict[str, Any] | None = None,
    head_to_head: dict[str, Any] | None = None,
) -> str:
    """The card as Markdown.

    Args:
        name, version: the registered model and version.
        lineage: `base_model`, `data` (source, format, fingerprint, total, valid,
            quarantined, reasons), `audit` (the audit report), `training` (resolved settings),
            `links` (flow run, MLflow run).
        heldout: the evaluation's `heldout` block (base and trained).
        decision: the gate's decision.
        champion: the champion's block re-evaluated on the same pairs, if there was one.
        head_to_head: the judged head-to-head of both models' answers
            (`simpo_core.eval.head_to_head`), if one ran: its table and sampled answer pairs.
    """
    data, audit = lineage.get("data") or {}, lineage.get("audit") or {}
    reasons = ", ".join(f"{code} {count}" for code, count in (data.get("reasons") or {}).items()) or "none"
    lines = [
        f"# {name} v{version}",
        "",
        f"**Gate: {'promoted' if decision.promoted else 'not promoted'}.** {decision.reason}",
        "",
        f"- Starting model: `{lineage.get('base_model', '?')}`",
        f"- Data: `{data.get('source', '?')}` ({data.get('format', '?')} layout, fingerprint "
        f"`{str(data.get('fingerprint', ''))[:16]}`): {data.get('valid', '?')} valid of {data.get('total', '?')}, "
        f"{data.get('quarantined', '?')} quarantined ({reasons})",
        f"- Length audit: length-only accuracy {_number(audit.get('length_only_accuracy'))}, "
        f"{_bias(audit)}, policy {audit.get('policy')}, removed {audit.get('removed', 0)}",
        f"- Training: {_settings(lineage.get('training') or {})}",
        "",
        f"## Held-out evaluation ({heldout.get('pairs', '?')} pairs)",
        "",
        "| metric | starting model | this version | " + ("champion |" if champion else ""),
        "| --- | --- | --- | " + ("--- |" if champion else ""),
    ]
    for label, key, interval in CARD_METRICS:
        cells = [_cell(block, key, interval) for block in (heldout.get("base"), heldout.get("trained"), champion)]
        lines.append(f"| {label} | " + " | ".join(cells[: 3 if champion else 2]) + " |")
    lines += _head_to_head_section(head_to_head)
    lines += ["", "## Links", ""] + [f"- {label}: `{value}`" for label, value in (lineage.get("links") or {}).items()]
    card = "\n".join(lines) + "\n"
    return card if len(card) <= MAX_CARD_CHARS else card[: MAX_CARD_CHARS - 20] + "\n\n(truncated)\n"


def _head_to_head_section(block: dict[str, Any] | None) -> list[str]:
    """The head-to-head table and its sampled answer pairs, as Markdown lines."""
    if not block:
        return []
    lines = [
        "",
        f"## Answers judged against {block.get('reference', 'the reference')}",
        "",
        f"Judge `{block.get('judge')}`, {block.get('decoding', 'greedy')} answers to {block.get('prompts', '?')} "
        f"held-out prompts; ties count half; LC: length-controlled; p: exact one-sided sign test (better).",
        "",
        "| judged | wins | losses | ties | win rate | LC win rate | p |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {block.get('judged', 0)} | {block.get('wins', 0)} | {block.get('losses', 0)} | {block.get('ties', 0)} | "
        f"{_number(block.get('win_rate'))} | {_number(block.get('lc_win_rate'))} | {_p(block.get('p_value'))} |",
    ]
    if block.get("note"):
        lines += ["", block["note"]]
    for index, sample in enumerate(block.get("samples") or [], start=1):
        lines += [
            "",
            f"**{index}.** {_quote(sample['prompt'])}",
            f"- this version ({_number(sample.get('challenger_score'))}): {_quote(sample['challenger'])}",
            f"- reference ({_number(sample.get('reference_score'))}): {_quote(sample['reference'])}",
        ]
    return lines


def _quote(text: str) -> str:
    """One line of plain text, cut to SAMPLE_CHARS: answers may hold Markdown or run long."""
    flat = " ".join(str(text).split()).replace("`", "'")
    flat = flat if len(flat) <= SAMPLE_CHARS else flat[: SAMPLE_CHARS - 1] + "…"
    return f"`{flat}`" if flat else "(empty)"


def _p(value: Any) -> str:
    return "–" if value is None else f"{value:.3g}"


def _cell(block: dict[str, Any] | None, key: str, interval: str | None) -> str:
    if not block:
        return "–"
    value = _number(block.get(key))
    bounds = block.get(interval) if interval else None
    return f"{value} [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds and value != "–" else value


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _bias(audit: dict[str, Any]) -> str:
    strength = _number(audit.get("length_bias_strength"))
    if audit.get("flagged"):
        return f"**flagged**: {audit.get('bias_direction')} wins (strength {strength})"
    return f"not flagged (strength {strength})"


def _settings(training: dict[str, Any]) -> str:
    keys = ("beta", "gamma", "loss_type", "lr", "max_steps", "num_epochs", "batch_size", "gradient_accumulation_steps")
    shown = [f"{key}={training[key]}" for key in keys if training.get(key) is not None]
    if training.get("lora"):
        shown.append(f"lora r={training['lora'].get('r')}")
    return ", ".join(shown) or "defaults"
