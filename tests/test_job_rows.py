"""``measure_models`` hands back the rows of the networks asked for (``JobSummary.rows``)."""
from __future__ import annotations

import numpy as np

from space.blockstring import format_arch
from space.spaces import get_space
from surrogate.measure.jobs import measure_models
from surrogate.measure.timing import MeasureSettings
from surrogate.tables import Table


def test_summary_rows_are_the_requested_networks_measured_now_or_before(tmp_path):
    sp = get_space("nasbench-macro")
    rng = np.random.default_rng(3)
    a, b, c = (sp.sample(rng) for _ in range(3))
    kw = dict(out_dir=tmp_path, settings=MeasureSettings(warmup=1, runs=2, rounds=1),
              progress=False, cache_dir=tmp_path / "c")
    first = measure_models("cpu-torch", "nasbench-macro", [(a, "t"), (b, "t")], **kw)
    assert first.measured == 2 and [r["arch"] for r in first.rows] == [format_arch(a), format_arch(b)]
    assert "rows" not in first.as_dict()
    again = measure_models("cpu-torch", "nasbench-macro", [(c, "t"), (a, "t"), (c, "t")], **kw)
    assert (again.measured, again.skipped) == (1, 1)
    assert [r["arch"] for r in again.rows] == [format_arch(c), format_arch(a)]
    on_disk = {r["arch"]: r for r in Table.models(again.table).read()}
    assert [r["median_ms"] for r in again.rows] == [on_disk[format_arch(x)]["median_ms"] for x in (c, a)]
    done = measure_models("cpu-torch", "nasbench-macro", [(b, "t")], **kw)  # complete: nothing timed
    assert done.measured == 0
    assert [r["median_ms"] for r in done.rows] == [on_disk[format_arch(b)]["median_ms"]]
