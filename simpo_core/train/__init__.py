"""SimPO training.

- `config`, `presets`: `SimPOConfig` and the named presets (the paper's and `tiny`).
- `loss`: the SimPO objective and `PairLogps`, what the forward hands to the loss.
- `tokenization`, `packing`, `packed_flex`, `chunked_logps`, `logps`: pairs to tensors, the packed forward
  and the chunked output head that gives per-sequence log-probs without full logits.
- `trainer`, `setup`, `schedule`, `data_order`, `run_record`, `events`: `SimPOTrainer`, its
  optimizer and learning-rate schedule, which pairs each step sees, what the run reports
  (history, monitor, early stop) and the listeners' events (`TrainerEvents`).
- `checkpointer`, `checkpoint`, `distributed`: where a training's checkpoints go and how it
  resumes, the checkpoint files, and data parallelism under torchrun.
- `precision`: the dtype policies (`fp32`, `bf16-mixed`, `bf16-pure`) and autocast.
- `quantized`: QLoRA, LoRA adapters trained on a 4-bit or 8-bit base (bitsandbytes).
- `prompt_format`: how prompts are rendered and shortened, shared with serving.
- `monitor`: the margin monitor and early stopping.
- `parallel`, `sharded_checkpoint`, `sharded_start`: DDP and FSDP2 wrapping, sharded
  checkpoints, and FSDP2's start from an empty model that each process fills with its shards.
- `launch`, `watchdog`: starting torchrun for a job, and no process outliving its launcher.
- `sft`, `sft_settings`, `tiny_sft`: the SFT stage SimPO starts from, its settings and job (no
  torch, for the command line's flags), and the embedded `tiny` model's SFT build.
- `worker`: `python -m simpo_core.train.worker --config FILE`, the training entry point
  that `simpo train` and the torchrun processes run; `job_file`: its YAML job's groups;
  `training_folder`: a training's folder (its lock, its finished result, its history).
"""
