"""Length-balance audit: does "the longer response wins" predict the preference?

- `metrics`: length statistics, length-only accuracy and the rebalancing choice.
- `balance`: the audit step (`audit` / `audit_length_balance`) and its policies.
- `truncation`: how many pairs the training limits would cut, counted as the trainer counts tokens.
- `report`: the JSON, Markdown and PNG reports.
- `settings`: `AuditSettings`, every audit default.
"""
