"""The evaluation set of bench/picks_eval.py: judgments that can be
judged (positions of the example day, a reader's own and muted papers
never wanted), splits half and half within each kind, and its metrics."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter

from conftest import ROOT


def bench():
    spec = importlib.util.spec_from_file_location("picks_eval", ROOT / "bench" / "picks_eval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("picks_eval", module)
    spec.loader.exec_module(module)
    return module


def test_the_judgments_hold_together():
    m = bench()
    day = m.load_day()
    assert len(m.EVAL) >= 40 and len(m.READERS) == 20
    for reader in m.EVAL:
        everything = reader.wanted | reader.rated | reader.muted
        assert all(0 <= i < len(day.papers) for i in everything), reader
        assert reader.wanted and not reader.wanted & (reader.rated | reader.muted), reader
        assert bool(reader.mute) == bool(reader.muted), reader
        if reader.kind is m.Kind.VOTES:
            assert 3 <= len(reader.liked) <= 5 and 1 <= len(reader.disliked) <= 2, reader
    splits = Counter((r.kind, r.split) for r in m.EVAL)
    for kind in m.Kind:
        assert abs(splits[kind, m.Split.TUNE] - splits[kind, m.Split.TEST]) <= 1, kind
        # alternating within the kind: never two of the same split in a row
        mine = [r.split for r in m.EVAL if r.kind is kind]
        assert all(a is not b for a, b in zip(mine, mine[1:])), kind


def test_the_metrics():
    m = bench()
    wanted = frozenset({1, 2})
    assert m.precision_at_k([1, 2, 3, 4, 5], wanted) == 0.4
    assert m.ndcg_at_k([1, 2, 3], wanted) == 1.0
    assert 0 < m.ndcg_at_k([3, 1, 2], wanted) < 1
    assert m.precision_at_k([1], wanted) == 0.2  # a short list: its missing places are misses
    reader = m.R(m.TUNE, {2, 3}, "x", like=[1], mute="y", muted={4})
    score = m.judge(reader, [1, 4, 2, 3, 5, 6])  # 1 is the reader's own: dropped
    assert (score.precision, score.leaks) == (0.4, 1)


def test_the_cheap_rows_run():
    m = bench()
    day = m.load_day()
    readers = m.EVAL[:3]
    for row in (m.ROWS[0], m.ROWS[2]):  # the ceiling and the upvotes: no model
        scores = m.evaluate(row, day, readers)
        assert len(scores) == len(readers)
    assert [s.ndcg for s in m.evaluate(m.ROWS[0], day, readers)] == [1.0] * 3
