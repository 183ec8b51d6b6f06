"""CLI for the user's own phone: ``fit --device-timings``, a phone predictor's ``predict``,
``suggest-timings`` without a space, and ``validate published``."""
from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path

from space.cli import UsageError, positive_int, print_json

from .cli_common import arch_ms_rows, read_text_file
from .paths import DEFAULT_PROFILE

MIN_K = 3
_HOLDS = "arch,ms rows (a network name or architecture string, and its latency in ms)"


def read_device_timings(path: str, option: str = "--device-timings", min_k: int = MIN_K):
    """(names, archs, ms) from a CSV ``arch,ms``; any error is one line naming file and row.

    ``arch`` is a reference name (``mnas arch list``), a variant (``mnasnet-a1@w0.75,r192``)
    or an architecture string. Refused: an unknown network, a non-positive or non-numeric
    ms, the same network twice (also under two spellings), fewer than ``min_k`` rows.
    """
    import numpy as np

    from space.reference import resolve_arch

    p = Path(path)
    text = read_text_file(p, option, _HOLDS)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    cols = [c.strip() for c in (rows[0] if rows else [])]
    if "arch" not in cols or "ms" not in cols:
        raise UsageError(f"{option} file {p}: expected a header with columns arch,ms; found "
                         f"{', '.join(c for c in cols if c) or 'nothing'}")
    names, archs, ys, seen = [], [], [], {}
    for lineno, name, ms in arch_ms_rows(rows, cols, p):
        try:
            a = resolve_arch(name)
        except ValueError as exc:
            raise UsageError(f"{p}:{lineno}: unknown network {name!r} ({exc})") from None
        try:
            v = float(ms)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and v > 0):
            raise UsageError(f"{p}:{lineno}: column ms: expected a positive latency in ms, got {ms!r}")
        key = str(a)
        if key in seen:
            raise UsageError(f"{p}:{lineno}: {name!r} is the same network as line {seen[key]}; "
                             f"give each network once (the median of its runs)")
        seen[key] = lineno
        names.append(name)
        archs.append(a)
        ys.append(v)
    if len(ys) < min_k:
        raise UsageError(f"{option} file {p}: {len(ys)} timing(s); a phone predictor needs at least "
                         f"{min_k} ({_HOLDS})")
    return names, archs, np.array(ys)


def _prior(args):
    from .predict.crossdevice import CrossDevicePrior, shipped_prior

    if args.prior:
        try:
            return CrossDevicePrior.load(args.prior), {"file": str(Path(args.prior).resolve())}
        except (OSError, ValueError) as exc:
            raise UsageError(f"--prior {args.prior}: {exc}") from None
    return shipped_prior(args.profile or DEFAULT_PROFILE, args.dtype), {
        "shipped": f"{args.profile or 'cpu-litert'}_phones-{args.dtype}"}


def _host_id(table) -> str | None:
    from .measure.host import table_host

    try:
        ids = table_host(table.source)[1]
    except (OSError, ValueError, TypeError):
        return None
    return ids[-1].get("host_id") if ids else None


def cmd_fit_device(args) -> int:
    """``mnas fit --device-timings FILE -o DIR``: a phone predictor from K of its timings."""
    from .measure.ondemand import ensure_ops, host_op_table
    from .predict.crossdevice import CrossDeviceLatency

    names, archs, y = read_device_timings(args.device_timings)
    profile = args.profile or DEFAULT_PROFILE
    prior, prior_ref = _prior(args)
    table = host_op_table(profile, args.tables)
    host_id = _host_id(table)
    table, rep = ensure_ops(archs, table, profile, measure=not args.no_measure, progress=False)
    est = CrossDeviceLatency(table=table, prior=prior).fit(archs, y)
    info = {"model": "crossdevice", "device": args.device, "dtype": args.dtype, "profile": profile,
            "timings": str(Path(args.device_timings).resolve()), "train_rows": int(len(y)),
            "mode": est.mode_, "lam": est.lam_, "slope": est.a_,
            "loo_error": None if math.isnan(est.loo_error_) else est.loo_error_,
            "prior": prior_ref, "host_id": host_id,
            "ops": {"found": rep.found, "measured_now": rep.measured_now, "modelled": rep.modelled,
                    "note": rep.note}}
    out = est.save(args.output, extra={"train": info})
    info["path"] = str(out)
    if args.json:
        print_json(info)
        return 0
    loo = f"; leave-one-out error {100 * info['loo_error']:.1f}%" if info["loo_error"] is not None else ""
    print(f"fitted a phone predictor ({est.mode_}) from {len(y)} timings{loo}; saved to {out}")
    if rep.note:
        print(f"note: {rep.note}", file=sys.stderr)
    return 0


def cmd_predict_device(args, est) -> int:
    """``mnas predict --predictor DIR`` for a phone predictor: any network, no space."""
    from space.cli import resolve_variant

    from .cli_common import archs_from_file
    from .measure.ondemand import cover_predictor

    archs = [resolve_variant(t, args.width, args.resolution, what="arch") for t in args.arch]
    if args.archs:
        archs += [a for a, _ in archs_from_file(args.archs)]
    if not archs:
        raise UsageError("no architectures: give ARCH... or --archs FILE")
    train = (est.meta_.get("train") or {}) if hasattr(est, "meta_") else {}
    rep = cover_predictor(est, archs, measure=not args.no_measure)
    ms = est.predict(archs)
    rows = [{"name": a.name, "arch": str(a), "latency_ms": float(v), "method": "crossdevice",
             "device": train.get("device")} for a, v in zip(archs, ms)]
    if args.json:
        print_json({"rows": rows, "ops": {"found": rep.found, "measured_now": rep.measured_now,
                                          "modelled": rep.modelled, "note": rep.note}})
        return 0
    for r in rows:
        print(f"{r['latency_ms']:9.3f} ms  {r['name'] or r['arch']}")
    if rep.note:
        print(f"note: {rep.note}", file=sys.stderr)
    return 0


def cmd_suggest_phone(args) -> int:
    """``mnas suggest-timings`` without ``--space``: K reference networks to time on a new phone."""
    import numpy as np

    from space.reference import REFERENCE

    from .measure.ondemand import host_op_table
    from .predict.crossdevice import SCHEMES, host_features, shipped_prior
    from .predict.suggest import _doptimal, _standardise

    profile = getattr(args, "profile", None) or DEFAULT_PROFILE
    prior = shipped_prior(profile, args.dtype)
    table = host_op_table(profile)
    names, rows = [], []
    for n in sorted(REFERENCE):
        try:
            rows.append(host_features([REFERENCE[n]], table, prior.scheme)[0])
            names.append(n)
        except ValueError:
            continue  # an operator the table lacks: not proposed
    F = np.asarray(rows)
    if args.k > len(names):
        raise UsageError(f"-k {args.k} is more than the {len(names)} reference networks the host "
                         f"table covers")
    nc = len(SCHEMES[prior.scheme])
    share = F[:, :nc] / np.maximum(F[:, :nc].sum(axis=1, keepdims=True), 1e-12)
    z = prior.consensus(F)
    D = _standardise(np.column_stack([np.log(z), share]))
    picks = _doptimal(D, args.k, 1e-3)
    out = [names[i] for i in picks]
    if args.json:
        print_json({"k": args.k, "networks": out})
    else:
        print("\n".join(out))
    return 0


def cmd_validate_published(args) -> int:
    """``mnas validate published``: the truth-set table, every method in one run."""
    from surrogate.datasets import load_published_phones

    from .measure.ondemand import host_op_table
    from .predict.phonetruth import BASELINES, CHOSEN, add_features, evaluate_group, truth_groups
    from .tables import Table, table_path

    try:
        df = load_published_phones(args.shared)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--shared {args.shared or '../shared'}: {exc}") from None
    groups = truth_groups(df, min_rows=args.min_rows)
    if args.device and not any(g.device == args.device for g in groups.values()):
        devs = sorted({g.device for g in groups.values()})
        raise UsageError(f"--device {args.device!r}: no group of that device; expected one of "
                         f"{', '.join(devs)}")
    table = host_op_table(DEFAULT_PROFILE)
    e2e_path = table_path(DEFAULT_PROFILE, "reference-mobile", "models")
    e2e = {r["arch"]: r["median_ms"] for r in Table.models(e2e_path).read()} if e2e_path.is_file() else {}
    add_features(groups, table, ("kernel",), e2e)
    keys = [k for k, g in groups.items() if not args.device or g.device == args.device]
    res = {k: evaluate_group(groups, k, draws=args.draws) for k in keys}
    if args.json:
        print_json({k: {m: {x: v for x, v in r.items() if x != "loo_pred"} for m, r in res[k].items()}
                    for k in keys})
        return 0
    print(f"{'group':<46} {'n':>3} {'LOO':>6} {'K=3':>6} {'K=5':>6} {'max':>6} {'rho':>6}  best baseline (LOO)")
    for k in keys:
        c = res[k][CHOSEN]
        b = min((res[k][m]["loo_mape"], m) for m in BASELINES if m in res[k])
        cells = [100 * c[x] for x in ("loo_mape", "k3_mape", "k5_mape", "loo_max")]
        print(f"{k:<46} {c['n']:>3} " + " ".join(f"{v:5.1f}%" for v in cells)
              + f" {c['spearman']:6.3f}  {b[1]} {100 * b[0]:.1f}%")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``validate published``."""
    p = sub.add_parser("validate", help="check predictors against published timings")
    vsub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    s = vsub.add_parser("published", help="the published phone timings: every group from one source, "
                                          "leave-one-out and K=3/5 timings, with baselines")
    s.add_argument("--device", default=None, help="only this device's groups, e.g. pixel4 (default: all)")
    s.add_argument("--shared", default=None, help="the shared folder (default ../shared)")
    s.add_argument("--min-rows", type=positive_int, default=8,
                   help="smallest group evaluated (default 8)")
    s.add_argument("--draws", type=positive_int, default=20, help="K-timing draws (default 20)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_validate_published)


def add_phone_args(p: argparse.ArgumentParser, verb: str) -> None:
    """The phone options of ``fit`` / ``suggest-timings`` / ``predict``."""
    fit = verb == "fit"
    if fit:
        p.add_argument("--device-timings", default=None, metavar="FILE",
                       help="a phone predictor from your own timings: CSV arch,ms (reference names "
                            "or architecture strings; at least 3 rows) (default: none)")
        p.add_argument("--prior", default=None, metavar="JSON",
                       help="with --device-timings: a prior file instead of the shipped one")
    if verb in ("fit", "suggest-timings"):
        p.add_argument("--dtype", default="fp32", choices=("fp32", "int8"),
                       help="with --device-timings / without --space: the phone's dtype (default fp32)")
    if verb in ("fit", "predict"):
        p.add_argument("--no-measure", action="store_true",
                       help="phone predictors: model operators the host table lacks instead of "
                            "measuring them here")
