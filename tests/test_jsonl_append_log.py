"""The append log (emocaliber_rl.jsonl.append_log) that both resumable outputs use: a torn last
line is cut before the next append, a bad line elsewhere is an error naming file and line (or,
opted in, a reported skip), the first row of a key wins, and writers in separate processes lose
and interleave nothing."""

from __future__ import annotations

import asyncio
import fcntl
import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import pytest

from emocaliber_rl.data.cot_store import ResultLog
from emocaliber_rl.jsonl import AppendLog, InputFileError, OutputLockedError

GOOD = b'{"id": "a", "v": 1}\n{"id": "b", "v": 2}\n'


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_torn_line_is_cut_then_appended_after(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    half = b'{"id": "c", "v": 3, "text": "half a li'  # what a kill in the middle of write() leaves
    out.write_bytes(GOOD + half)

    seen = AppendLog.read(out)  # a reader (cot judge on a running synthesis) leaves it alone
    assert seen.keys == {"a", "b"} and seen.torn_bytes == len(half)
    assert out.read_bytes() == GOOD + half

    with AppendLog(out) as log:
        assert log.keys == {"a", "b"} and log.torn_bytes == len(half)
        assert log.torn_note.startswith(f"{out}:3: torn last line ({len(half)} bytes, no newline")
        assert log.torn_note.endswith("ignored and truncated")
        assert [r["id"] for r in log.append([{"id": "c", "v": 3}])] == ["c"]
    assert out.read_bytes() == GOOD + b'{"id": "c", "v": 3}\n'
    with AppendLog(out) as log:  # reopened: nothing torn any more, nothing lost
        assert log.keys == {"a", "b", "c"} and log.torn_bytes == 0 and log.torn_note is None


def test_complete_line_without_newline_is_not_committed(tmp_path: Path) -> None:
    # cut just before its newline: the row parses, but a row counts once its newline is on disk
    out = tmp_path / "o.jsonl"
    out.write_bytes(GOOD + b'{"id": "c"}')
    with AppendLog(out) as log:
        assert log.keys == {"a", "b"} and log.torn_bytes == len(b'{"id": "c"}')
    assert out.read_bytes() == GOOD


@pytest.mark.parametrize(("bad", "message"), [
    (b"not json\n", "invalid JSON: Expecting value (column 1), and lines follow it"),
    (b'{"id": "x" "v": 1}\n', "invalid JSON: Expecting ',' delimiter (column 12), and lines follow it"),
    (b'[1, 2]\n', "expected a JSON object with 'id', got list"),
    (b'{"other": 1}\n', "expected a JSON object with 'id', got an object without 'id'"),
])
def test_bad_line_in_the_middle_names_file_and_line(tmp_path: Path, bad: bytes, message: str) -> None:
    out = tmp_path / "o.jsonl"
    data = b'{"id": "a"}\n' + bad + b'{"id": "b"}\n'
    out.write_bytes(data)
    for open_log in (lambda: AppendLog(out).open(), lambda: AppendLog.read(out),
                     lambda: ResultLog(out).load(), lambda: ResultLog(out).load(repair=False)):
        with pytest.raises(InputFileError) as e:
            open_log()
        assert str(e.value).startswith(f"{out}:2: {message}")
    assert out.read_bytes() == data  # refused, not repaired
    with open(out, "rb") as fh:  # and the refusal released the writer's lock
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_skip_is_an_explicit_opt_in_and_reported(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    data = b'{"id": "a"}\nnot json\n{"id": "b"}\n'
    out.write_bytes(data)
    with AppendLog(out, on_bad="skip") as log:
        assert log.keys == {"a", "b"}
        assert log.notes == [(f"{out}:2: invalid JSON: Expecting value (column 1), and lines follow "
                              "it (an interrupted write can only damage the last line); skipped")]
        log.append([{"id": "c"}])
    assert out.read_bytes() == data + b'{"id": "c"}\n'  # the bad line stays; nothing rewritten


def test_first_row_of_a_key_wins(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_bytes(GOOD + b'{"id": "a", "v": 9}\n')  # a repeat written by other means
    with AppendLog(out, keep_rows=True) as log:
        assert log.rows == {"a": {"id": "a", "v": 1}, "b": {"id": "b", "v": 2}}
        assert log.duplicates == 1
        assert log.notes == [f"{out}:3: field 'id': 'a' repeats an earlier row; the first is kept"]
        written = log.append([{"id": "b", "v": 5}, {"id": "c", "v": 3}, {"id": "c", "v": 4}])
        assert written == [{"id": "c", "v": 3}]
        assert log.rows["c"] == {"id": "c", "v": 3}
    assert out.read_bytes() == GOOD + b'{"id": "a", "v": 9}\n{"id": "c", "v": 3}\n'


def test_result_log_group_commit_keeps_the_first(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_bytes(GOOD)

    async def go() -> ResultLog:
        store = ResultLog(out)
        assert set(store.load()) == {"a", "b"}
        async with store:
            await asyncio.gather(*(store.append({"id": f"r{i}", "v": i}) for i in range(20)),
                                 store.append({"id": "a", "v": 7}))
        return store

    store = asyncio.run(go())
    rows = _rows(out)
    assert rows[:2] == [{"id": "a", "v": 1}, {"id": "b", "v": 2}]
    assert sorted(r["id"] for r in rows[2:]) == sorted(f"r{i}" for i in range(20))
    assert store.rows["a"] == {"id": "a", "v": 1}


def _hold_and_try(path: str, q: mp.Queue) -> None:
    try:
        AppendLog(path).open()
        q.put("opened")
    except OutputLockedError as e:
        q.put(str(e))


def test_second_writer_process_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    with AppendLog(out):
        p = ctx.Process(target=_hold_and_try, args=(str(out), q))
        p.start()
        p.join(30)
        assert q.get(timeout=5) == f"{out} is being written by another process"
    p = ctx.Process(target=_hold_and_try, args=(str(out), q))  # released on close
    p.start()
    p.join(30)
    assert q.get(timeout=5) == "opened"


N_ROWS = 150
PAD = "x" * 3000  # rows larger than a pipe buffer / page, so unlocked writes could interleave


def _writer(path: str, name: str, start: mp.Barrier, q: mp.Queue) -> None:
    log = AppendLog(path, shared=True).open()
    start.wait()
    written = 0
    for i in range(N_ROWS):
        # every writer also offers the same `common-i` row: exactly one of them may write it
        rows = [{"id": f"{name}-{i}", "pad": PAD}, {"id": f"common-{i}", "by": name, "pad": PAD}]
        written += len(log.append(rows))
    log.close()
    q.put(written)


def test_writer_processes_append_concurrently(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    names = ["w0", "w1", "w2"]
    ctx = mp.get_context("fork")
    start, q = ctx.Barrier(len(names)), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(out), n, start, q)) for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    written = [q.get(timeout=5) for _ in names]

    lines = out.read_bytes().split(b"\n")
    assert lines.pop() == b""  # ends on a newline
    rows = [json.loads(line) for line in lines]  # every line whole: none interleaved or torn
    ids = [r["id"] for r in rows]
    expected = {f"{n}-{i}" for n in names for i in range(N_ROWS)} | {f"common-{i}" for i in range(N_ROWS)}
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    assert sum(written) == len(rows) == (len(names) + 1) * N_ROWS
    assert all(r["pad"] == PAD for r in rows)


def _die_mid_write(path: str) -> None:
    # a writer that holds the lock and is killed in the middle of its write()
    with open(path, "ab") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write(b'{"id": "dead", "pad": "cut sh')
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def test_shared_writer_cuts_the_tail_of_a_killed_one(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_bytes(GOOD)
    with AppendLog(out, shared=True) as log:
        p = mp.get_context("fork").Process(target=_die_mid_write, args=(str(out),))
        p.start()
        p.join(30)
        assert p.exitcode == -signal.SIGKILL
        assert log.append([{"id": "c"}]) == [{"id": "c"}]
        assert log.torn_note.startswith(f"{out}:3: torn last line")
    assert out.read_bytes() == GOOD + b'{"id": "c"}\n'
