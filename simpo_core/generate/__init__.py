"""On-policy preference pairs: answers sampled from the model being improved, scored by a judge.

- `settings`: `GenerateSettings`, every default of the generation step (samples, sampling,
  judge, the score gap a pair needs).
- `prompts`: prompt sources (prompt-only files, the prompts of a preference file, a
  `datasets` id, `synthetic`) read and validated like pairs: bad prompts go to a quarantine
  file with their reason.
- `backend`: how answers are sampled; `TransformersBackend` (batched `model.generate` with a
  KV cache on the model's device) implements the small `AnswerBackend` interface a faster
  engine can implement too.
- `pairs`: `generate_pairs_on_policy`: sample, score, keep best as chosen and worst
  as rejected, count every dropped prompt by reason, write an ordinary preference file.
- `step`: `generate_step`, what `simpo generate` and the flow's `generate-pairs` task call:
  load the generator and the judge, then the above.
"""
