"""The model card of a registered version: what data, audit, training and evaluation made it,
and why the gate promoted it or not. Markdown, shown as the version's description on the
registry page and logged as `model_card.md` beside the run.
"""

from typing import Any

from simpo_core.promotion import PromotionDecision

CARD_METRICS = (
    ("reward accuracy", "reward_accuracy", "reward_accuracy_ci"),
    ("length-controlled accuracy", "length_controlled_accuracy", None),
    ("reward margin", "reward_margin", None),
    ("length-reward correlation", "length_reward_correlation", None),
)
MAX_CARD_CHARS = 5000  # what an MLflow description holds comfortably


def render_model_card(
    name: str,
    version: str,
    lineage: dict[str, Any],
    heldout: dict[str, Any],
    decision: PromotionDecision,
    champion: dict[str, Any] | None = None,
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
    lines += ["", "## Links", ""] + [f"- {label}: `{value}`" for label, value in (lineage.get("links") or {}).items()]
    card = "\n".join(lines) + "\n"
    return card if len(card) <= MAX_CARD_CHARS else card[: MAX_CARD_CHARS - 20] + "\n\n(truncated)\n"


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
