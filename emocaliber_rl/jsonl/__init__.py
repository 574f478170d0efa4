"""JSON lines, one home: reading with ``file:line`` errors, atomic whole-file writes, the append log.

- :mod:`~emocaliber_rl.jsonl.read`: :func:`iter_jsonl` / :func:`read_jsonl`, which every command
  that takes a jsonl reads it with, and :class:`InputFileError` (``path:line: field 'x': ...``;
  reaching ``emocaliber``'s ``main`` it exits 2);
- :mod:`~emocaliber_rl.jsonl.write`: :func:`write_jsonl` (temporary file, fsync, rename), for
  manifests, exports and reports;
- :mod:`~emocaliber_rl.jsonl.append_log`: :class:`AppendLog`, the resumable outputs (lock,
  torn-line recovery, one row per key, one corruption policy).
"""

from emocaliber_rl.jsonl.append_log import AppendLog, OnBad, OutputLockedError, append_rows
from emocaliber_rl.jsonl.read import InputFileError, input_error, iter_jsonl, parse_line, read_jsonl
from emocaliber_rl.jsonl.write import dumps_line, write_jsonl, write_jsonl_files

__all__ = ["AppendLog", "InputFileError", "OnBad", "OutputLockedError", "append_rows", "dumps_line",
           "input_error", "iter_jsonl", "parse_line", "read_jsonl", "write_jsonl", "write_jsonl_files"]
