"""The embedded `tiny` model's SFT build: the from-scratch `tiny-scratch` model after a few
seconds of SFT on format rows (`data.sft_data.generate_format_rows`), so that `tiny`, like the
models SimPO is meant for, is an SFT model.

Building it is training, so it lives here; model resolution (`simpo_core.models`, a layer
below training) only finds the folder, through the builder the package root registers
(`models.register_embedded_build`). The build is cached by its recipe (`tiny_sft_recipe`):
a cached build of another recipe is rebuilt.
"""

import json
import logging
from pathlib import Path
from typing import Any

from simpo_core.train.sft import SFTResult, sft_train
from simpo_core.train.sft_settings import SFTSettings

logger = logging.getLogger(__name__)

TINY_SFT_ROWS = 2000
TINY_SFT_DATA_SEED = 0
TINY_SFT_SETTINGS = SFTSettings()  # the defaults: about 10 s on two CPU cores
TINY_SFT_VERSION = 1  # raise when the build changes in a way the settings do not show
TINY_SFT_MARKER = "tiny_sft.json"  # the recipe of a complete SFT build


def tiny_sft_recipe() -> dict[str, Any]:
    """Everything the SFT'd `tiny` build depends on; a cached build with another recipe is rebuilt."""
    from simpo_core.tiny_model import TINY_SEED

    return {
        "version": TINY_SFT_VERSION,
        "scratch_seed": TINY_SEED,
        "rows": TINY_SFT_ROWS,
        "data_seed": TINY_SFT_DATA_SEED,
        "settings": TINY_SFT_SETTINGS.model_dump(mode="json"),
    }


def build_embedded_tiny(cache_dir: Path) -> Path:
    """The `tiny` source's folder in the embedded models' cache: `tiny-sft`, trained from `tiny`
    (the from-scratch build) beside it. What `models.resolve_model_source("tiny")` calls."""
    return save_tiny_sft(cache_dir / "tiny-sft", scratch=cache_dir / "tiny")


def save_tiny_sft(target: Path, scratch: Path | None = None) -> Path:
    """The SFT'd tiny model in `target`, trained once from the from-scratch build and cached.

    Reuses a complete earlier build of the same recipe. Builders take an exclusive lock
    (`fcntl.flock` on a file beside `target`), so processes starting at once train it once
    and the others wait and reuse it; the build is written into a private temporary folder
    and renamed, so an interrupted build never leaves a half-saved model.

    Args:
        target: the cache folder of the SFT'd build.
        scratch: the from-scratch build it starts from (built when missing); `tiny` beside
            `target` by default.
    """
    import fcntl
    import shutil
    import tempfile

    from simpo_core.tiny_model import save_tiny

    target, recipe = Path(target), tiny_sft_recipe()
    if _has_recipe(target, recipe):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if _has_recipe(target, recipe):  # another process built it while this one waited
            return target
        start = save_tiny(scratch or target.parent / "tiny")
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            build_tiny_sft(start, partial)
            shutil.rmtree(target, ignore_errors=True)  # a build of an older recipe
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def build_tiny_sft(scratch_dir: str | Path, out_dir: str | Path) -> SFTResult:
    """Train the from-scratch tiny model in `scratch_dir` on the format rows and save it to `out_dir`.

    Writes the model and tokenizer (`save_pretrained`, safetensors), the provenance
    (`tiny-scratch`) and `tiny_sft.json`: the recipe, the loss curve and the seconds.
    """
    from simpo_core.data.sft_data import generate_format_rows
    from simpo_core.models import TINY_SCRATCH, load_model_and_tokenizer, write_provenance

    model, tokenizer = load_model_and_tokenizer(str(scratch_dir))
    rows = generate_format_rows(TINY_SFT_ROWS, seed=TINY_SFT_DATA_SEED)
    settings = TINY_SFT_SETTINGS
    result = sft_train(model, tokenizer, rows, settings)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_provenance(out_dir, TINY_SCRATCH)
    record = {"recipe": tiny_sft_recipe(), "history": result.history, "seconds": round(result.seconds, 2)}
    (out_dir / TINY_SFT_MARKER).write_text(json.dumps(record, indent=1))
    logger.info(
        "SFT of the tiny model: %d steps in %.1f s, final loss %.3f",
        settings.max_steps,
        result.seconds,
        result.final_loss or float("nan"),
    )
    return result


def _has_recipe(folder: Path, recipe: dict) -> bool:
    marker = folder / TINY_SFT_MARKER
    try:
        return json.loads(marker.read_text()).get("recipe") == recipe
    except (OSError, ValueError):
        return False
