"""The pure decisions of scheduled retraining: what a training is, and whether it may serve.

- `identity`: the training identity (data, settings, starting model, training code) and the
  content digests of model folders.
- `rerun`: what a rerun of a registered training does: skip, regate or train.
- `paired_test`: exact paired tests of two models on the same held-out pairs.
- `promotion`: the champion gate (`GateSettings`, `decide_promotion`).
- `model_card`: the Markdown card written on each registered version.

Pure logic: the registry code in `tasks/` reads MLflow and applies these decisions.
"""
