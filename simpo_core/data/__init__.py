"""Preference data: reading every supported source and layout into canonical rows.

- `readers`, `layouts`, `loading`: files (plain or gzipped), folders, hub ids and generated
  data, in the flat, conversational, ShareGPT, HH-RLHF and OpenAI layouts, normalised to one
  row per pair (`load_preferences` -> `LoadResult`).
- `frame_builder`: each file's layout (and each row's, in a file that mixes them), rows into
  chunk frames.
- `schema`, `frames`, `tokens`: the canonical row, its DataFrame form and token counting.
- `validation_schema`, `validation`, `validation_stream`: the pandera schema and the
  quarantine; `validate_source` is the validation step (streamed, bounded memory).
- `split`: the deterministic held-out split by prompt hash.
- `mix`: several validated sources mixed by prompt hash, with weights or fractions.
- `mix_stream`: the mix's two passes over the sources' valid rows, a record batch at a time.
- `record`: the record of the rows a training used (by digest), which `data.replay` reads back.
- `synthetic`: the embedded demo data with a learnable preference and a set length bias.
- `dataset`: `PreferenceDataset`, the notebook-friendly view of a source.
- `sft_data`: the prompt/answer rows of the SFT stage.
- `settings`: `ValidateSettings` and `SplitSettings`, every data-step default.
"""
