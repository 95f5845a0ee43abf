"""Length-balance audit: does "the longer response wins" predict the preference?

- `metrics`: length statistics, length-only accuracy and the rebalancing choice.
- `balance`: the audit step (`audit` / `audit_length_balance`) and its policies.
- `report`: the JSON, Markdown and PNG reports.
"""
