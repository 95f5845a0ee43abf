"""Two runs of the same training: the second waits for the first's lock, then reuses its model."""

import subprocess
import sys
import textwrap

from simpo_core.train.training_folder import finished_training, training_lock

HOLDER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from simpo_core.train.training_folder import training_lock
    folder = Path(sys.argv[1])
    with training_lock(folder):
        print("locked", flush=True)
        time.sleep(1.5)
        (folder / "history.json").write_text(json.dumps([{"step": 7, "loss": 0.5}]))
        (folder / "final.json").write_text(json.dumps({"steps": 7, "resumed_from_step": None}))
""")


def test_a_second_run_waits_for_the_first_and_finds_its_training(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert finished_training(tmp_path) is None  # the first run is still training
    with training_lock(tmp_path):
        done = finished_training(tmp_path)  # found only if the lock waited for the first run to finish
    holder.wait(timeout=30)
    assert done is not None and done.steps == 7 and done.final_metrics == {"step": 7, "loss": 0.5}
