"""Direct LiteRT writer vs litert-torch: same operators, same outputs, same latency, far faster.

For a stratified sample of operators (every op family of every space and of the
reference networks: conv, depthwise-separable, MBConv e1-e9 with/without SE under every
skip kind, FBNet irf with grouped 1x1 convs and channel shuffle, skip/projection, stem,
head; and the issue-L forms: per-block relu/relu6/silu/h-swish, SE on the expanded
width with a hard-sigmoid gate, fused-MBConv, k7 depthwise, the MobileNetV3 mix head,
the classifier without bias) and of whole networks (reference networks, MobileNetV3 /
OFA / EfficientNet-EdgeTPU / ProxylessNAS among them, and random networks of mnasnet,
anb, fbnet and ofa-mbv3):

1. converts each with both converters (litert-torch on every core, cached in
   ``$MNAS_CACHE_DIR``; the direct writer in-process), recording seconds per item;
2. checks that the builtin-operator sequences are equal, that the graphs are equal
   operator by operator (versions, options, constants: ``graph_differences``), and
   that both outputs equal the torch module's (max |diff| / max(1, max |ref|));
3. times both files interleaved in the same rounds, pinned to one core, on the
   thread-CPU clock, and reports the ratio direct / litert-torch per item.

    python bench/writer_equivalence.py --ops 110 --nets 34        # about 15 min from an empty cache
    python bench/writer_equivalence.py --convert-only               # just fill the litert-torch cache
    python bench/writer_equivalence.py --ops 40 --nets 6 --rounds 1 --runs 3 --reps 1 --out /tmp/weq  # quick check
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from space.build import build_model, build_op, input_shape, op_input_shape  # noqa: E402
from space.reference import get_reference, reference_names  # noqa: E402
from space.spaces import get_space  # noqa: E402
from surrogate.measure.export import ExportCache  # noqa: E402
from surrogate.measure.tflite_writer import graph_differences, tflite_op_names  # noqa: E402
from surrogate.atomic import write_json_atomic  # noqa: E402

RESULTS = ROOT / "bench" / "results"


SPACES = ("mnasnet", "anb", "fbnet", "nasbench-macro", "ofa-mbv3")
# networks every sample holds: each issue-L form in a whole network
MUST_NETS = ("mobilenetv3-large-1.0", "mobilenetv3-small-1.0", "mobilenetv3_small_w1",
             "note10_lat-8ms_top1-71.4_finetune-25", "efficientnet-edgetpu-s", "proxylessnas-mobile")


def _family(lc) -> tuple:
    """Stratum of an operator: what changes the emitted graph."""
    if lc.op == "head":
        return (lc.op, lc.act, lc.out_ch > 0, lc.mix_ch > 0, lc.mix_norm, lc.fc_bias)
    if lc.op in ("stem", "skip"):
        return (lc.op, lc.stride, lc.act)
    se = (lc.se_gate, lc.se_inner_act) if lc.se > 0 else None
    return (lc.op, lc.expand if lc.expand in (1, 3, 6) else "e-other", se, lc.residual,
            lc.groups, lc.act, lc.stride, lc.kernel == 7)


def _reference_ops() -> list:
    """Every distinct operator of the reference networks."""
    seen: dict[str, object] = {}
    for name in reference_names():
        for lc in get_reference(name).ops():
            seen.setdefault(lc.key(), lc)
    return [seen[k] for k in sorted(seen)]


def sample_ops(n: int, seed: int = 0) -> list:
    """About ``n`` operators, round-robin over the families of every space's and reference operators."""
    rng = np.random.default_rng(seed)
    strata: dict[tuple, list] = {}
    for lc in [lc for space in SPACES for lc in get_space(space).operator_configs()] + _reference_ops():
        if not lc.is_identity:
            strata.setdefault(_family(lc), []).append(lc)
    keys = sorted(strata, key=str)
    for k in keys:
        rng.shuffle(strata[k])
    out, seen, i = [], set(), 0
    while len(out) < n and any(strata[k] for k in keys):
        k = keys[i % len(keys)]
        i += 1
        if strata[k]:
            lc = strata[k].pop()
            if lc.key() not in seen:
                seen.add(lc.key())
                out.append(lc)
    return out


def sample_nets(n: int, seed: int = 0) -> list:
    """:data:`MUST_NETS`, reference networks (every third), random networks of mnasnet, anb, fbnet, ofa-mbv3."""
    names = list(MUST_NETS) + [m for m in reference_names()[::3] if m not in MUST_NETS]
    nets = [(name, get_reference(name)) for name in names]
    rest = max(0, n - len(nets))
    rng = np.random.default_rng(seed)
    for j in range(rest):
        space = ("mnasnet", "anb", "fbnet", "ofa-mbv3")[j % 4]
        nets.append((f"{space}-random-{j}", get_space(space).sample(rng)))
    return nets[:n] if n < len(nets) else nets


def items(n_ops: int, n_nets: int) -> list[tuple[str, str, object]]:
    """(kind, name, LayerConfig or Arch) for every item of the benchmark."""
    out = [("op", lc.key(), lc) for lc in sample_ops(n_ops)]
    out += [("net", name, a) for name, a in sample_nets(n_nets)]
    return out


def _build(kind: str, cfg) -> tuple:
    if kind == "op":
        return build_op(cfg), op_input_shape(cfg)
    return build_model(cfg), input_shape(cfg)


def _lt_convert(args) -> tuple[bool, float, str]:  # runs in a worker process
    kind, cfg, cache_dir = args
    import torch

    torch.set_num_threads(1)
    module, shape = _build(kind, cfg)
    r = ExportCache(cache_dir).export(module, shape, "tflite", converter="litert-torch")
    return r.cached, r.seconds, str(r.path)


def _outputs_err(data: bytes, module, shape) -> float:
    import torch
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.inference_mode():
        ref = module(torch.from_numpy(x)).numpy()
    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(np.moveaxis(x, 1, -1)))
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    y = np.moveaxis(y, -1, 1) if y.ndim == 4 else y
    return float(np.max(np.abs(y - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def _time_pair(paths: tuple[Path, Path], shape, rounds: int, runs: int, warmup: int) -> dict:
    """Both files' per-round medians on the thread-CPU and wall clocks, interleaved."""
    from ai_edge_litert.interpreter import Interpreter

    interps = []
    for p in paths:
        it = Interpreter(model_path=str(p), num_threads=1)
        it.allocate_tensors()
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(np.moveaxis(x, 1, -1)))
        interps.append(it)
    cpu = [[], []]
    wall = [[], []]
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for j in order:
            inv = interps[j].invoke
            for _ in range(warmup):
                inv()
            c, w = np.empty(runs), np.empty(runs)
            for k in range(runs):
                t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                inv()
                c[k], w[k] = time.thread_time_ns() - c0, time.perf_counter_ns() - t0
            cpu[j].append(np.median(c) / 1e6)
            wall[j].append(np.median(w) / 1e6)
    return {"direct_cpu_ms": float(np.median(cpu[0])), "litert_cpu_ms": float(np.median(cpu[1])),
            "direct_wall_ms": float(np.median(wall[0])), "litert_wall_ms": float(np.median(wall[1]))}


def _speed(todo: list, n_ops: int, n_nets: int) -> dict:
    """Seconds per item of both converters on the same items, in this process, uncached."""
    import tempfile

    import torch

    from surrogate.measure.tflite_writer import write_tflite

    torch.set_num_threads(1)
    out: dict = {}
    for kind, n in (("op", n_ops), ("net", n_nets)):
        sel = [t for t in todo if t[0] == kind][:: max(1, len([t for t in todo if t[0] == kind]) // n)][:n]
        d_s, l_s = [], []
        with tempfile.TemporaryDirectory() as tmp:
            cache = ExportCache(tmp)
            for _, _, cfg in sel:
                module, shape = _build(kind, cfg)
                t = time.perf_counter()
                write_tflite(module.eval(), shape)
                d_s.append(time.perf_counter() - t)
                l_s.append(cache.export(module, shape, "tflite", converter="litert-torch").seconds)
        out[kind] = {"n": len(sel), "direct_s": d_s, "litert_s": l_s,
                     "direct_items_per_s": len(d_s) / sum(d_s), "litert_items_per_s": len(l_s) / sum(l_s),
                     "speedup": (len(d_s) / sum(d_s)) / (len(l_s) / sum(l_s))}
        print(f"conversion speed, {kind}s: direct {np.median(d_s) * 1e3:.1f} ms, litert-torch "
              f"{np.median(l_s):.2f} s per item: {out[kind]['speedup']:.0f}x", flush=True)
    return out


def run(n_ops: int, n_nets: int, *, convert_only: bool = False, rounds: int = 5, runs: int = 20,
        warmup: int = 3, reps: int = 3, speed_items: tuple[int, int] = (12, 4), core: int = -1,
        out: Path = RESULTS) -> dict:
    cache = ExportCache()
    todo = items(n_ops, n_nets)
    kinds = {k for k, *_ in todo}
    # 1. litert-torch on every core (cached; seconds recorded for misses)
    t0 = time.perf_counter()
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(len(os.sched_getaffinity(0))) as pool:
        ref = []
        for j, res in enumerate(pool.imap(_lt_convert, [(k, c, str(cache.dir)) for k, _, c in todo])):
            ref.append(res)
            if (j + 1) % 10 == 0:
                print(f"litert-torch: {j + 1}/{len(todo)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    lt_wall = time.perf_counter() - t0
    lt_sec = {name: secs for (_, name, _), (cached, secs, _) in zip(todo, ref) if not cached}
    if convert_only:
        print(f"litert-torch: {len(lt_sec)} converted in {lt_wall:.0f} s wall; {len(todo) - len(lt_sec)} cached")
        return {}
    # 2. direct writer, in-process, timed per item (never cached for this figure)
    from surrogate.measure.tflite_writer import write_tflite

    rows = []
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[core] if core == -1 else core})
    for (kind, name, cfg), (_, _, lt_path) in zip(todo, ref):
        module, shape = _build(kind, cfg)
        lt_path = Path(lt_path)
        t = time.perf_counter()
        data = write_tflite(module.eval(), shape)
        direct_s = time.perf_counter() - t
        path = cache.dir / f"writer-eq-{abs(hash(name)) % 10**12}.tflite"
        path.write_bytes(data)
        lt_bytes = lt_path.read_bytes()
        seq_d, seq_l = tflite_op_names(data), tflite_op_names(lt_bytes)
        diffs = graph_differences(data, lt_bytes)
        row = {"kind": kind, "name": name, "direct_s": direct_s, "litert_s": lt_sec.get(name),
               "ops_equal": seq_d == seq_l, "graph_equal": not diffs, "n_ops": len(seq_d),
               "direct_err": _outputs_err(data, module, shape), "litert_err": _outputs_err(lt_bytes, module, shape)}
        if not row["ops_equal"]:
            row["direct_ops"], row["litert_ops"] = seq_d, seq_l
        if diffs:
            row["graph_differences"] = diffs[:20]
        # fresh interpreters per repeat: one instance's memory layout moves a memory-bound
        # item by a few percent, so the ratio is the median over ``reps`` loads of each file
        pairs = [_time_pair((path, lt_path), shape, rounds, runs, warmup) for _ in range(reps)]
        for key in ("direct_cpu_ms", "litert_cpu_ms", "direct_wall_ms", "litert_wall_ms"):
            row[key] = float(np.median([q[key] for q in pairs]))
        row["ratio_cpu"] = float(np.median([q["direct_cpu_ms"] / q["litert_cpu_ms"] for q in pairs]))
        row["ratio_wall"] = float(np.median([q["direct_wall_ms"] / q["litert_wall_ms"] for q in pairs]))
        # the same for litert-torch against itself (A/A): the noise floor of the ratio
        aa = [_time_pair((lt_path, lt_path), shape, rounds, runs, warmup) for _ in range(reps)]
        row["ratio_aa_cpu"] = float(np.median([q["direct_cpu_ms"] / q["litert_cpu_ms"] for q in aa]))
        path.unlink()
        rows.append(row)
        print(f"{kind} {name[:60]:60s} ops_equal={row['ops_equal']} graph_equal={row['graph_equal']} "
              f"err={row['direct_err']:.1e} "
              f"ratio={row['ratio_cpu']:.3f} direct={direct_s * 1e3:.1f} ms", flush=True)
    summary = {}
    for kind in sorted(kinds):
        rs = [r for r in rows if r["kind"] == kind]
        ratio = np.array([r["ratio_cpu"] for r in rs])
        d_s = np.array([r["direct_s"] for r in rs])
        l_s = np.array([r["litert_s"] for r in rs if r["litert_s"] is not None])
        aa = np.array([r["ratio_aa_cpu"] for r in rs])
        summary[kind] = {
            "n": len(rs), "ops_equal": int(sum(r["ops_equal"] for r in rs)),
            "graph_equal": int(sum(r["graph_equal"] for r in rs)),
            "max_output_err_direct": float(max(r["direct_err"] for r in rs)),
            "max_output_err_litert": float(max(r["litert_err"] for r in rs)),
            "ratio_median": float(np.median(ratio)), "ratio_p05": float(np.percentile(ratio, 5)),
            "ratio_p95": float(np.percentile(ratio, 95)),
            "within_5pct": float(np.mean(np.abs(ratio - 1) <= 0.05)),
            "ratio_wall_median": float(np.median([r["ratio_wall"] for r in rs])),
            "aa_ratio_median": float(np.median(aa)), "aa_within_5pct": float(np.mean(np.abs(aa - 1) <= 0.05)),
            "aa_ratio_p05": float(np.percentile(aa, 5)), "aa_ratio_p95": float(np.percentile(aa, 95)),
            "direct_s_median": float(np.median(d_s)),
            "litert_s_median": float(np.median(l_s)) if l_s.size else None,
            "direct_items_per_s": float(len(d_s) / d_s.sum()),
            "litert_items_per_s": float(l_s.size / l_s.sum()) if l_s.size else None,
        }
        if l_s.size:
            summary[kind]["speedup_items_per_s"] = summary[kind]["direct_items_per_s"] / summary[kind]["litert_items_per_s"]
    speed = _speed(todo, *speed_items)
    for kind, sp in speed.items():
        summary[kind].update(speed_n=sp["n"], speed_direct_s_median=float(np.median(sp["direct_s"])),
                             speed_litert_s_median=float(np.median(sp["litert_s"])),
                             speedup_items_per_s=sp["speedup"])
    res = {"speed": speed, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": rounds, "runs": runs,
           "clock": "thread CPU time (ratio), wall beside", "summary": summary, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "writer_equivalence.json", res)
    md = ["# Direct LiteRT writer vs litert-torch (same run, interleaved, pinned)", "",
          "| items | n | same op sequence | same graph (op by op) | max output err (direct / litert-torch) | latency ratio median "
          "[p5, p95] | within ±5% | A/A ratio [p5, p95], within ±5% | convert s/item (direct / litert-torch) "
          "| items/s speed-up |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, s in summary.items():
        md.append(f"| {kind}s | {s['n']} | {s['ops_equal']}/{s['n']} | {s['graph_equal']}/{s['n']} | "
                  f"{s['max_output_err_direct']:.1e} / "
                  f"{s['max_output_err_litert']:.1e} | {s['ratio_median']:.3f} [{s['ratio_p05']:.3f}, "
                  f"{s['ratio_p95']:.3f}] | {100 * s['within_5pct']:.0f}% | {s['aa_ratio_median']:.3f} "
                  f"[{s['aa_ratio_p05']:.3f}, {s['aa_ratio_p95']:.3f}], {100 * s['aa_within_5pct']:.0f}% | "
                  f"{s['speed_direct_s_median'] * 1e3:.1f} ms / {s['speed_litert_s_median']:.2f} s "
                  f"(n={s['speed_n']}) | {s['speedup_items_per_s']:.0f}x |")
    md += ["", f"Ratio = direct / litert-torch thread-CPU median per item, the median over {reps} fresh loads of "
           "each file, both timed interleaved in the same rounds on one pinned core. A/A = litert-torch's file "
           "against itself, the same way: the noise floor of the ratio. Conversion speed: both converters on "
           "the same items in this process, nothing cached.", ""]
    (out / "writer_equivalence.md").write_text("\n".join(md))
    print("\n".join(md))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=110, help="operators to compare (default 110)")
    ap.add_argument("--nets", type=int, default=34, help="networks to compare (default 34)")
    ap.add_argument("--convert-only", action="store_true", help="only fill the litert-torch cache")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    ap.add_argument("--runs", type=int, default=15, help="timed runs per round (default 15)")
    ap.add_argument("--core", type=int, default=-1, help="core to time on (default -1: the last one)")
    ap.add_argument("--reps", type=int, default=3, help="fresh loads of each file per item (default 3)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})")
    a = ap.parse_args(argv)
    run(a.ops, a.nets, convert_only=a.convert_only, rounds=a.rounds, runs=a.runs, reps=a.reps,
        core=a.core, out=a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
