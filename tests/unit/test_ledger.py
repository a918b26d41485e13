"""The ledger's store (SQLite), fingerprint and read-back rule, without servers."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from powerview.formats import RowBatch
from powerview.ledger import Fingerprint, Ledger, LedgerRow, meta_line, status_of
from powerview.stats import DistinctPoints


def _row(**changes: object) -> LedgerRow:
    row = LedgerRow(
        company="acme",
        campaign="c1",
        device="02001171",
        device_folder="02001084",
        file_name="T302_251012_031720.tsv",
        upload_name="T302_251012_031720.tsv",
        sha256="ab" * 32,
        size=1234,
        upload_time="2026-12-03T10:00:00Z",
        ingest_time="2026-12-03T10:00:05Z",
        first_time="2025-10-12T03:17:20Z",
        last_time="2025-10-12T05:37:20Z",
        rows=143,
        values_read=4290,
        rejected_values=0,
        rejected_rows=0,
        points_written=4290,
        points_expected=4290,
        points_verified=None,
        verified_at=None,
        status="unverified",
    )
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


def test_entries_are_kept_per_company_and_campaign_in_a_private_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Ledger.in_state_dir(state) as ledger:
        ledger.record(_row())
        ledger.record(_row(campaign="c2", upload_name="b.tsv", file_name="b.tsv"))
        ledger.record(_row(company="globex"))
    mode = stat.S_IMODE(os.stat(state / "ledger.sqlite3").st_mode)
    assert mode == 0o600
    with Ledger.in_state_dir(state) as ledger:  # reopened: durable
        assert [r.campaign for r in ledger.rows("acme")] == ["c1", "c2"]
        assert [r.file_name for r in ledger.rows("acme", "c2")] == ["b.tsv"]
        assert [r.company for r in ledger.rows("globex")] == ["globex"]
        assert ledger.rows("initech") == []


def test_the_same_bytes_ingested_again_update_their_entry(tmp_path: Path) -> None:
    with Ledger.in_state_dir(tmp_path) as ledger:
        first = ledger.record(_row())
        again = ledger.record(_row(ingest_time="2026-12-04T00:00:00Z"))
        other = ledger.record(_row(sha256="cd" * 32))  # new content, same name: a new entry
        assert first == again != other
        rows = ledger.rows("acme")
        assert len(rows) == 2
        assert {r.ingest_time for r in rows} == {"2026-12-04T00:00:00Z", "2026-12-03T10:00:05Z"}


def test_a_read_back_sets_the_status_and_a_later_one_clears_it(tmp_path: Path) -> None:
    with Ledger.in_state_dir(tmp_path) as ledger:
        row = _row()
        ledger.record(row)
        short = ledger.verified(row, 4000, at=0)
        assert (short.status, short.missing) == ("mismatch", 290)
        assert [r.subject for r in ledger.with_status(["mismatch"])] == [row.subject]
        ledger.verified(row, 4290, at=60)
        assert ledger.with_status(["mismatch"]) == []
        (stored,) = ledger.rows("acme")
        assert (stored.status, stored.points_verified, stored.verified_at) == (
            "verified",
            4290,
            "1970-01-01T00:01:00Z",
        )
        moved = ledger.stored_as(stored, "T302_251012_031720.1.tsv")
        assert ledger.rows("acme") == [moved]


def test_the_rule_counts_at_least_the_file_s_points() -> None:
    assert status_of(10, None) == "unverified"
    assert status_of(10, 9) == "mismatch"
    assert status_of(10, 10) == "verified"
    assert status_of(10, 12) == "verified"  # an overlapping file's other timestamps


def test_the_fingerprint_is_of_the_bytes_read_through_it() -> None:
    content = b"START_HEADER\r\n{}\nEND_HEADER\n" + b"x\ty\n" * 1000 + b"END_DATA\ntrailer"
    reader = Fingerprint(io.BytesIO(content))  # type: ignore[arg-type]
    reader.readline(5)
    reader.seek(0)  # the parser's rewind starts over
    assert reader.readline(100) == b"START_HEADER\r\n"
    reader.read(10)
    digest, size = reader.finish(limit=len(content), chunk=7)
    assert (digest, size) == (hashlib.sha256(content).hexdigest(), len(content))
    with pytest.raises(ValueError, match="rewinds"):
        reader.seek(3)


def test_the_meta_point_carries_the_entry() -> None:
    line = meta_line(_row(file_name="a b,c.tsv", points_verified=4290, status="verified"), 1.5)
    assert line.startswith(
        "powerview_ledger,campaign=c1,company=acme,device=02001171,file=a\\ b\\,c.tsv "
    )
    assert 'sha256="' + "ab" * 32 + '"' in line
    assert "points_verified=4290i" in line
    assert 'status="verified"' in line
    assert line.endswith(" 1500000000\n")


def _batch(epochs: list[int], rows: list[list[str | None]]) -> RowBatch:
    values = [v for row in rows for v in row]
    return RowBatch(epochs, values, 2, None not in values)


def test_distinct_points_count_a_repeated_timestamp_once_wherever_it_is() -> None:
    points = DistinctPoints(2)
    points.add(_batch([1000, 1001, 1002], [["1", "2"], ["1", "2"], ["1", "2"]]))
    points.add(_batch([900, 1001, 5000], [["1", "2"], ["3", "4"], ["1", "2"]]))  # back in time
    points.add(_batch([1003, 1003, 1000, 7], [["1", None], [None, "2"], [None, "1"], [None, "1"]]))
    # full rows at 900, 1000, 1001, 1002, 5000; 1003 from two half rows; 7 one value
    assert points.count == 5 * 2 + 2 + 1


def test_distinct_points_past_the_partial_limit_are_still_counted() -> None:
    points = DistinctPoints(2, max_partial=1)
    points.add(_batch([10, 11, 12], [["1", None], ["1", None], ["1", None]]))
    assert points.count == 3
