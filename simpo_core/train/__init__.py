"""SimPO training.

- `config`, `presets`: `SimPOConfig` and the named presets (the paper's and `tiny`).
- `loss`: the SimPO objective and `PairLogps`, what the forward hands to the loss.
- `tokenization`, `packing`, `chunked_logps`, `logps`: pairs to tensors, the packed forward
  and the chunked output head that gives per-sequence log-probs without full logits.
- `setup`, `trainer`, `checkpoint`, `distributed`: `SimPOTrainer`, its optimizer and
  schedule, resumable checkpoints and data parallelism under torchrun.
- `threads`: the CPU threads a process runs, from its cores and its model's size.
- `worker`: `python -m simpo_core.train.worker --config FILE`, the training entry point
  that `simpo train` and the torchrun processes run.
"""
