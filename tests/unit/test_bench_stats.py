"""The benchmark's pure helpers (bench/stats.py): the figures `make bench` prints rest on them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.dynamodb_counter import Call, write_units
from bench.floor import fresh
from bench.stats import (
    cpu_ms_per_request,
    parse_importtime,
    parse_proc_stat,
    percentile,
    process_tree_cpu_seconds,
    summary,
    value_range,
)


def stat_line(pid: int, name: str, ppid: int, utime: int, stime: int) -> str:
    # The fields of proc(5) after the name: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
    # cminflt, majflt, cmajflt, utime, stime, cutime, cstime, ...
    return f"{pid} ({name}) S {ppid} 1 1 0 -1 4194304 100 0 0 0 {utime} {stime} 7 9 20 0 3 0 12345 0 0"


def test_percentile_interpolates_between_ranks():
    # Given 1..100 (and one sample)
    samples = list(range(100, 0, -1))
    # Then the quantiles fall between the closest ranks, whatever the input order
    assert percentile(samples, 0.5) == pytest.approx(50.5)
    assert percentile(samples, 0.99) == pytest.approx(99.01)
    assert percentile(samples, 0.0) == 1 and percentile(samples, 1.0) == 100
    assert percentile([7.0], 0.99) == 7.0
    assert summary([1.0, 2.0, 3.0]) == {"p50": 2.0, "p90": pytest.approx(2.8), "p99": pytest.approx(2.98)}


def test_percentile_refuses_nothing_and_bad_quantiles():
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_proc_stat_name_with_spaces_and_parentheses():
    # Given a command name that holds ") (" itself
    stat = parse_proc_stat(stat_line(4242, "uvicorn) (x y", 17, utime=250, stime=50))
    # Then the fields are counted from the last ')'; children's times (cutime, cstime) are not included
    assert (stat.pid, stat.ppid, stat.cpu_ticks) == (4242, 17, 300)


def test_process_tree_cpu_counts_descendants_only(tmp_path: Path):
    # Given a fake /proc: 10 -> 11 -> 12, and 20 unrelated; a non-process entry and a process gone mid-read
    for pid, ppid, utime, stime in ((10, 1, 100, 20), (11, 10, 30, 10), (12, 11, 5, 5), (20, 1, 999, 999)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat_line(pid, "python", ppid, utime, stime))
    (tmp_path / "self").mkdir()
    (tmp_path / "30").mkdir()
    # When the tree of 10 is read at 100 ticks a second
    seconds = process_tree_cpu_seconds(10, proc=tmp_path, ticks_per_second=100)
    # Then 10, 11 and 12 count, 20 does not
    assert seconds == pytest.approx((120 + 40 + 10) / 100)
    assert process_tree_cpu_seconds(11, proc=tmp_path, ticks_per_second=100) == pytest.approx(0.5)
    with pytest.raises(ProcessLookupError):
        process_tree_cpu_seconds(99, proc=tmp_path, ticks_per_second=100)


def test_process_tree_cpu_of_this_process_grows_with_work():
    # Given this very process, read from the real /proc
    before = process_tree_cpu_seconds(os.getpid())
    # When it does about 0.1 s of pure CPU work (time waiting for a core does not count)
    sum(i * i for i in range(2_000_000))
    # Then its CPU time moved forward, by more than the 10 ms clock tick
    assert process_tree_cpu_seconds(os.getpid()) - before >= 0.02


def test_cpu_ms_per_request():
    assert cpu_ms_per_request(1.5, 3.6, 300) == pytest.approx(7.0)
    with pytest.raises(ValueError):
        cpu_ms_per_request(2.0, 1.0, 10)  # another process, or a restarted one
    with pytest.raises(ValueError):
        cpu_ms_per_request(1.0, 2.0, 0)


def test_value_range():
    assert value_range([13.21, 17.0, 15.5], 1, "ms") == "13.2–17.0 ms"
    assert value_range([2.001, 2.004], 2) == "2.00"
    assert value_range([]) == "n/a"


def test_parse_importtime_reads_self_cumulative_and_depth():
    # Given `python -X importtime` output with its header and a line the program printed
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       136 |        136 |   _io\n"
        "import time:       250 |       1200 |   handler\n"
        "import time:       950 |        950 |     llm_platform.api.views\n"
        "some warning the program printed\n"
    )
    # When it is parsed
    entries = parse_importtime(stderr)
    # Then every import line is read, nesting from its indent, and nothing else
    assert [(e.module, e.self_us, e.cumulative_us, e.depth) for e in entries] == [
        ("_io", 136, 136, 0),
        ("handler", 250, 1200, 0),
        ("llm_platform.api.views", 950, 950, 1),
    ]


def test_floor_replay_is_a_new_request_with_its_own_token():
    # Given a captured settle transaction naming its request id, with a token derived from it elsewhere
    request_id = "4f1c2d3e-0000-4000-8000-0123456789ab"
    captured = json.dumps(
        {
            "TransactItems": [
                {"Delete": {"TableName": "Reservations", "Key": {"requestId": {"S": request_id}}}},
                {"Put": {"TableName": "RequestLog", "Item": {"sortKey": {"S": f"2026-11-30T15:00:00Z#{request_id}"}}}},
            ],
            "ClientRequestToken": "5a0e8a3c-uuid5-of-the-request",
        }
    )
    # When it is replayed as the request `new`
    new = "9a8b7c6d-1111-4111-8111-fedcba987654"
    first, second = fresh(captured, request_id, new), fresh(captured, request_id, new)
    # Then every mention of the old id is the new one, and each replay has a token of its own
    assert request_id not in json.dumps(first) and json.dumps(first).count(new) == 2
    assert first["ClientRequestToken"] != second["ClientRequestToken"]
    assert first["ClientRequestToken"] != "5a0e8a3c-uuid5-of-the-request"


def test_write_units_per_transaction_item_and_index_copy():
    # Given an admission (a key update and a reservation put) and a settle (a log put, a 1.5 KB item)
    admission = Call(
        "TransactWriteItems",
        3.0,
        {"TransactItems": [{"Update": {"TableName": "ApiKeys"}}, {"Put": {"TableName": "Reservations"}}]},
        200,
    )
    settle = Call(
        "TransactWriteItems",
        3.0,
        {
            "TransactItems": [
                {"Put": {"TableName": "RequestLog", "Item": {"pad": {"S": "x" * 1500}}}},
                {"Delete": {"TableName": "Reservations"}},
            ]
        },
        200,
    )
    # Then: 2 units per item per KB; the log's 2 index copies per KB; the reservation index 1 per KB
    assert write_units([admission, settle], "RequestLog", "Reservations") == (4, 2 + 2 + 1 + (4 + 4) + 2 + 1)
