"""The record of a training's rows: its own rows only, identified by digest."""

import pandas as pd
import pytest

from simpo_core.data.record import check_row_record, write_row_record
from simpo_core.errors import DataError


def test_the_record_leaves_out_replayed_rows_and_is_checked_by_digest(tmp_path):
    valid = tmp_path / "valid.parquet"
    frame = pd.DataFrame(
        {
            "prompt": ["a", "b", "c"],
            "chosen": ["x", "y", "z"],
            "rejected": ["p", "q", "r"],
            "source_name": ["today", "replay-v3", "today"],
        }
    )
    frame.to_parquet(valid, index=False)
    digest = write_row_record(valid, tmp_path / "record" / "rows.parquet", ["replay-v3"])
    kept = pd.read_parquet(check_row_record(tmp_path / "record" / "rows.parquet", digest, "replay"))
    assert kept["prompt"].tolist() == ["a", "c"]

    (tmp_path / "record" / "rows.parquet").write_bytes(b"not the record")
    with pytest.raises(DataError, match="replay: the record of training rows .* does not match its digest"):
        check_row_record(tmp_path / "record" / "rows.parquet", digest, "replay")
    with pytest.raises(DataError, match="is missing"):
        check_row_record(tmp_path / "nowhere.parquet", digest, "replay")
