"""One model built at a time in a process.

transformers builds a model by swapping process-wide functions for no-ops while it runs
(`PreTrainedModel.tie_weights` and `init_weights`, `torch.nn.init.*`) and putting back what it
found. Two threads building at once (concurrent sweep trials, a thread task runner) put back
each other's no-ops: a tied model loading beside them ends untied, and every model built later
in the process is neither tied nor initialised. So a process builds one model at a time.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_BUILDING = threading.RLock()


@contextmanager
def one_build_at_a_time() -> Iterator[None]:
    """Hold the process's model-building lock (see the module docs) while a model is constructed:
    `from_pretrained`, `from_config`, a model class called on a config, a peft load or merge."""
    with _BUILDING:
        yield
