"""Building the emotion loops exactly from an NRC VAD lexicon (``emocaliber loops build``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from emocaliber_rl.loops.model import LOOP_GROUPS, LOOP_LABELS, EmotionLoop, _load_cached, default_loops_dir
from emocaliber_rl.loops.solver import _orient, arc_positions, euclidean_matrix, optimal_cycle, optimal_grouped_cycle
from emocaliber_rl.taxonomy import LOOP_OF_SUBTASK


def build_loop(name: str, vectors: Mapping[str, Sequence[float]]) -> EmotionLoop:
    """Solve loop ``name`` exactly from ``vectors`` (label -> VAD point); no provenance."""
    labels = LOOP_LABELS[name]
    dist = euclidean_matrix([vectors[label] for label in labels])
    group_of = LOOP_GROUPS.get(name)
    if group_of is None:
        order, total = optimal_cycle(dist)
        method = "Held-Karp exact shortest Hamiltonian cycle, Euclidean VAD distance"
    else:
        by_group: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            by_group.setdefault(group_of[label], []).append(i)
        order, total = optimal_grouped_cycle(dist, list(by_group.values()))
        method = (
            "exact shortest Hamiltonian cycle with same-parent leaves contiguous: Held-Karp "
            "paths per parent group for every entry/exit pair + subset DP over group order, "
            "Euclidean VAD distance"
        )
    order = _orient(order)
    positions = arc_positions(dist, order)
    return EmotionLoop(
        name=name,
        order=tuple(labels[i] for i in order),
        # 6 decimals: d feeds a confidence rounded to 2 decimals (Eq. 2), and short numbers
        # keep the JSON diffable.
        positions={labels[i]: round(p, 6) for i, p in zip(order, positions, strict=True)},
        total_length=round(total, 6),
        groups={label: group_of[label] for label in labels} if group_of else None,
        provenance={"method": method, "perimeter": "arc-length"},
    )


def build_all(lexicon_path: str | Path | None, out_dir: str | Path | None = None) -> list[Path]:
    """Rebuild every loop from an NRC VAD lexicon and write ``<out_dir>/<loop>.json``.

    Raises:
        LexiconError / MissingWordsError: from the loader, naming file, line or missing words.
    """
    from emocaliber_rl.vad_lexicon import load_lexicon, resolve_lexicon_path

    lexicon = load_lexicon(resolve_lexicon_path(lexicon_path))
    # Look every loop's words up first so one error lists every missing word at once.
    all_labels = tuple(dict.fromkeys(label for labels in LOOP_LABELS.values() for label in labels))
    found = lexicon.vectors(all_labels)
    out = Path(out_dir) if out_dir is not None else default_loops_dir()
    out.mkdir(parents=True, exist_ok=True)
    built = datetime.now(UTC).date().isoformat()
    written = []
    for name, labels in LOOP_LABELS.items():
        loop = build_loop(name, {label: found[label][1] for label in labels})
        provenance = {
            **loop.provenance,
            "distance": "d(a, b) = min(|pa - pb|, 1 - |pa - pb|), in [0, 0.5]",
            "subtasks": [s for s, loop_name in LOOP_OF_SUBTASK.items() if loop_name == name],
            "lexicon": {
                "name": "NRC VAD lexicon",
                "version": lexicon.version,
                "file": lexicon.path.name,
                "scale": "0..1" if lexicon.version == "v1" else "-1..1 rescaled to 0..1 by (x+1)/2",
                # Only which spelling was looked up, never its values (no redistribution).
                "words": {label: found[label][0] for label in labels},
            },
            "built": built,
            "built_with": "emocaliber loops build",
        }
        path = out / f"{name}.json"
        payload = {**loop.to_json(), **provenance}
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    _load_cached.cache_clear()
    return written
