"""CLI verbs of the latency predictors: ``fit``, ``predict``, ``suggest-timings``, ``eval``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from space.cli import (UsageError, add_variant_args, output_dir, output_file, positive_int,
                       print_json, seed_int)

from .cli_common import archs_from_file as _archs_from_file
from .cli_common import add_profile_arg, add_space_arg, arch_ms_rows, read_text_file
from .cli_phone import add_phone_args

_TIMINGS = "arch,ms rows"


def _read_timings(path: str, space: str):
    """(index array, ms) from a CSV with columns ``arch,ms``; errors name the file, line or column."""
    import csv
    import io

    import numpy as np

    from space.reference import resolve_arch
    from space.spaces import get_space

    p = Path(path)
    text = read_text_file(p, "--timings", _TIMINGS)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise UsageError(f"--timings file {p} is not a CSV file of arch,ms rows ({exc})") from None
    cols = [c.strip() for c in (rows[0] if rows else [])]
    if not any(cols):
        raise UsageError(f"--timings file {p} is empty; expected a CSV with a header arch,ms "
                         f"and one row per timed network")
    for need in ("arch", "ms"):
        if need not in cols:
            raise UsageError(f"--timings file {p}: no column {need!r} (expected a CSV with columns "
                             f"arch,ms; found {', '.join(cols) or 'nothing'})")
    sp = get_space(space)
    idx, ys, seen = [], [], {}
    for lineno, arch, ms in arch_ms_rows(rows, cols, p):
        try:
            i = sp.from_arch(resolve_arch(arch))  # a reference name, variant or string
        except ValueError as exc:
            raise UsageError(f"{p}:{lineno}: column arch: {exc}") from None
        if i in seen:
            raise UsageError(f"{p}:{lineno}: {arch!r} is the same network as line {seen[i]}; give "
                             f"each network once (the median of its runs)")
        seen[i] = lineno
        idx.append(i)
        try:
            v = float(ms)
        except ValueError:
            v = float("nan")
        if not (np.isfinite(v) and v > 0):
            raise UsageError(f"{p}:{lineno}: column ms: expected a positive latency in ms, got {ms!r}")
        ys.append(v)
    if len(ys) < 3:
        raise UsageError(f"--timings file {p}: {len(ys)} timings; a transfer needs at least 3 "
                         f"(arch,ms rows)")
    return np.array(idx, dtype=np.int64), np.array(ys)


def _sources(spec: str, space: str) -> tuple[dict, dict]:
    """(name -> predictor, name -> saved reference) for ``--transfer-from A,B,...``:
    predict-only devices, profiles with a shipped predictor, or predictor folders."""
    from .predict.persist import load_predictor
    from .predict.workflow import shipped_predictor

    srcs, refs = {}, {}
    for tok in [t.strip() for t in spec.split(",") if t.strip()]:
        if Path(tok).is_dir():
            name = Path(tok).resolve().name
            srcs[name] = load_predictor(tok, space=space)
            refs[name] = {"path": str(Path(tok).resolve()), "space": space}
            continue
        try:
            srcs[tok] = shipped_predictor(tok, space)
        except ValueError as exc:
            raise UsageError(f"--transfer-from {tok!r}: {exc}; or give a predictor folder") from None
        refs[tok] = {"profile": tok, "space": space}
    if not srcs:
        raise UsageError("--transfer-from: expected one or more source devices, e.g. pixel3,raspi4")
    return srcs, refs


def _cmd_fit_transfer(args) -> int:
    from .predict.multisource import MultiSourceTransfer
    from .predict.persist import save_predictor

    if not args.timings:
        raise UsageError("--transfer-from needs --timings FILE (a CSV with columns arch,ms)")
    srcs, refs = _sources(args.transfer_from, args.space)
    X, y = _read_timings(args.timings, args.space)
    est = MultiSourceTransfer(args.space, sources=srcs).fit(X, y)
    info = {"model": "multi-source", "timings": str(Path(args.timings).resolve()),
            "train_rows": len(y), **est.summary()}
    out = save_predictor(est, args.output, profile=args.device, extra={"train": info},
                         sources=refs)
    info["path"] = str(out)
    if args.json:
        print_json(info)
    else:
        used = ", ".join(f"{k} {v:+.3g}" for k, v in info["weights"].items() if v != 0) or "none"
        res = f"residual alpha {info['alpha']:.3g}" if info["residual"] else "no residual"
        print(f"fitted a {info['mode']}-space transfer from {len(y)} timings ({res}; sources: "
              f"{used}; leave-one-out error {100 * info['loo_mean_abs_log_error']:.1f}%); saved to {out}")
    return 0


def _cmd_fit(args) -> int:
    from .predict.persist import save_predictor
    from .predict.workflow import fit_on_tables

    if args.device_timings:
        if args.transfer_from or args.timings or args.space:
            raise UsageError("--device-timings fits a phone predictor on its own; drop --space, "
                             "--timings and --transfer-from")
        from .cli_phone import cmd_fit_device

        return cmd_fit_device(args)
    if not args.space:
        raise UsageError("mnas fit needs --space S (or --device-timings FILE for a phone)")
    if args.transfer_from:
        return _cmd_fit_transfer(args)
    if args.timings:
        raise UsageError("--timings goes with --transfer-from A,B,... (the source devices)")
    if not args.profile:
        raise UsageError("mnas fit needs --profile P (fit on its tables) or --transfer-from A,B "
                         "--timings FILE (a new device from its timings)")

    est, info = fit_on_tables(args.profile, args.space, args.model, root=args.tables,
                              include_test=args.all_rows)
    out = save_predictor(est, args.output, profile=args.profile, extra={"train": info})
    info["path"] = str(out)
    if args.json:
        print_json(info)
    else:
        print(f"fitted {args.model} on {info['train_rows']} timings of {args.profile}/{args.space}"
              f" ({info['test_rows']} held out); saved to {out}")
    return 0


def _load_for(args):
    from .predict.persist import load_predictor
    from .paths import shipped_predictor_dir
    from .predict.zoo import PUBLISHED

    if args.predictor:
        return load_predictor(args.predictor, space=args.space,
                              profile=args.profile if args.profile else None)
    if not args.profile:
        raise UsageError("give --profile P (a device profile or predict-only device) or "
                         "--predictor DIR")
    dev = PUBLISHED.get(args.profile)
    if dev is not None and dev.space != args.space:
        raise UsageError(f"{args.profile} is a predict-only device of space {dev.space!r}, not "
                         f"{args.space!r}; use --space {dev.space}")
    path = shipped_predictor_dir(args.profile, args.space)
    return load_predictor(path, space=args.space, profile=args.profile)


def _prices(est, archs, breakdown: bool) -> list:
    """Pricing of each network; predictors without operator features price members only."""
    import math

    from space.spaces import get_space

    from .predict.pricing import Pricing, price_many

    if hasattr(est, "features_"):
        return price_many(est, archs, breakdown=breakdown)
    sp = get_space(est.space)
    idx = []
    for a in archs:
        try:
            idx.append(sp.from_arch(a))
        except ValueError as exc:
            raise ValueError(f"{type(est).__name__} prices only members of space {sp.name!r}; "
                             f"{a.name or a}: {exc}") from None
    ms = est.predict(__import__("numpy").array(idx, dtype="int64"))
    return [Pricing(str(sp.to_arch(i)), float(m), "model", 0,
                    len([lc for lc in sp.to_arch(i).ops() if not lc.is_identity]), math.nan,
                    f"member of space {sp.name!r}: {type(est).__name__}") for i, m in zip(idx, ms)]


def _phone_predictor(path: str | None):
    """The saved phone predictor at ``path``, or None when it is another kind (or no folder)."""
    import json

    if not path:
        return None
    try:
        meta = json.loads((Path(path) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("class") != "CrossDeviceLatency":
        return None
    from .predict.crossdevice import CrossDeviceLatency

    return CrossDeviceLatency.load(path)


def _cmd_predict(args) -> int:
    from space.cli import resolve_variant

    phone = _phone_predictor(args.predictor)
    if phone is not None:
        from .cli_phone import cmd_predict_device

        return cmd_predict_device(args, phone)
    if not args.space:
        raise UsageError("mnas predict needs --space S (or --predictor DIR of a phone predictor)")

    archs = [resolve_variant(t, args.width, args.resolution, what="arch") for t in args.arch]
    if args.archs:
        from space.spaces import get_space

        archs += [a for a, _ in _archs_from_file(args.archs, get_space(args.space))]
    if not archs:
        raise UsageError("no architectures: give ARCH... or --archs FILE")
    est = _load_for(args)
    prices = _prices(est, archs, args.breakdown)
    rows = []
    for a, p in zip(archs, prices):
        d = p.as_dict()
        rows.append({"name": a.name, "arch": d.pop("arch"), "latency_ms": d.pop("ms"), **d})
        if not args.breakdown:
            rows[-1].pop("ops")
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['latency_ms']:9.3f} ms  {r['method']:<5}  {r['measured_ops']:>3} ops measured, "
              f"{r['modelled_ops']:>3} modelled  {r['name'] or r['arch']}")
        for c in r.get("ops", []):
            print(f"            {c['ms']:8.4f} ms  {c['source']:<8}  {c['key']}")
    notes = sorted({r["note"] for r in rows if r["method"] != "model"})
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    return 0


def _cmd_suggest(args) -> int:
    from space.spaces import get_space

    if not args.space:
        from .cli_phone import cmd_suggest_phone

        return cmd_suggest_phone(args)

    from .predict.suggest import suggest_timings, suggestion_pool

    sp = get_space(args.space)
    srcs = _sources(args.transfer_from, args.space)[0] if args.transfer_from else None
    if args.pool:
        pool = [sp.from_arch(a) for a, _ in _archs_from_file(args.pool, sp, option="--pool")]
        import numpy as np

        pool = np.array(pool, dtype=np.int64)
    else:
        pool = suggestion_pool(args.space, args.pool_size, args.seed)
    if args.k > len(pool):
        raise UsageError(f"-k {args.k} is more than the {len(pool)} candidate networks")
    picks = suggest_timings(args.space, args.k, pool=pool, sources=srcs, method=args.method)
    archs = [str(sp.to_arch(pool[i])) for i in picks]
    if args.json:
        print_json({"space": args.space, "method": args.method, "k": args.k,
                    "sources": list(srcs or {}), "archs": archs})
    else:
        print("\n".join(archs))
    return 0


def _cmd_eval(args) -> int:
    from .predict.workflow import evaluate_on_tables

    est = _load_for(args) if args.predictor else None
    res = evaluate_on_tables(args.profile, args.space, est, root=args.tables, plot=args.plot)
    if args.json:
        print_json(res)
        return 0
    print(f"{args.profile} / {args.space}: {res['n']} held-out timings, {res['train_rows']} for fitting")
    rows = [("model: " + res["predictor"], res)] + list(res["baselines"].items())
    print(f"{'predictor':<34} {'±5%':>6} {'±10%':>6} {'MAPE':>6} {'RMSE ms':>8} {'tau':>6} {'rho':>6}")
    for name, m in rows:
        print(f"{name:<34} {100 * m['within_5pct']:5.1f}% {100 * m['within_10pct']:5.1f}% "
              f"{100 * m['mape']:5.1f}% {m['rmse_ms']:8.3f} {m['kendall_tau']:6.3f} {m['spearman']:6.3f}")
    if res.get("plot"):
        print(f"plot: {res['plot']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit``, ``predict``, ``suggest-timings`` and ``eval``."""
    from .predict.workflow import MODEL_CHOICES

    p = sub.add_parser("fit", help="fit a latency predictor on the shipped tables of a profile/space, "
                                   "or for a new device from its timings (a phone: --device-timings)")
    add_profile_arg(p, help="device profile whose tables to fit on (default: none; needed without "
                            "--transfer-from)")
    add_space_arg(p, help="search space (needed except with --device-timings)")
    p.add_argument("--transfer-from", default=None, metavar="A,B,...",
                   help="a new device: source devices (predict-only devices such as pixel3, "
                        "profiles with a shipped predictor, or predictor folders), combined and "
                        "corrected on --timings (default: none)")
    p.add_argument("--timings", default=None, metavar="FILE",
                   help="with --transfer-from: CSV with columns arch,ms (the space's architecture "
                        "strings, latency in ms) timed on the new device (default: none)")
    p.add_argument("--device", default=None,
                   help="with --transfer-from: a name for the new device, recorded as the "
                        "predictor's profile (default: none)")
    p.add_argument("--model", default="residual-xgb", choices=MODEL_CHOICES, help="predictor kind")
    p.add_argument("-o", "--output", type=output_dir, required=True,
                   help="folder to save the predictor in")
    p.add_argument("--tables", default=None, help="tables root (default data/latency_tables)")
    p.add_argument("--all-rows", action="store_true", help="also fit on the held-out rows")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_phone_args(p, "fit")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", help="predict latency of any network: members of the space by "
                                       "the full model, others by operator table + operator model")
    add_profile_arg(p, predict_only=True, help="device profile or predict-only device (mnas devices); "
                                               "default: none, then --predictor is needed")
    add_space_arg(p, help="the space whose predictor is used (not needed for a phone predictor)")
    p.add_argument("--predictor", default=None, help="a saved predictor folder (default: shipped)")
    p.add_argument("arch", nargs="*", help="reference names (mnas arch list), variants of them "
                   "(mnasnet-a1@w0.75,r192) or architecture strings")
    p.add_argument("--archs", default=None, metavar="FILE",
                   help="also the architectures of FILE, one string or name a line (default: none)")
    add_variant_args(p)
    p.add_argument("--breakdown", action="store_true", help="also print every operator's latency "
                   "and whether it was measured or modelled")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_phone_args(p, "predict")
    p.set_defaults(func=_cmd_predict)

    from .predict.suggest import METHODS as SUGGEST_METHODS

    p = sub.add_parser("suggest-timings", help="the K networks worth timing on a new device "
                                               "(without --space: reference networks for a phone, "
                                               "for mnas fit --device-timings)")
    add_space_arg(p, help="members of this space (default: reference networks, for a phone)")
    p.add_argument("-k", type=positive_int, default=20, help="how many networks (default 20)")
    p.add_argument("--transfer-from", default=None, metavar="A,B,...",
                   help="source devices whose disagreement the picks also spread over (default: none)")
    p.add_argument("--method", default="doptimal", choices=SUGGEST_METHODS,
                   help="doptimal (greedy D-optimal design on features and sources) or kcenter "
                        "(farthest point) (default doptimal)")
    p.add_argument("--pool", default=None, metavar="FILE",
                   help="candidate networks, one a line (default: --pool-size random members)")
    p.add_argument("--pool-size", type=positive_int, default=5000,
                   help="random candidates without --pool (default 5000)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed of the random candidates, 0 to 2**32-1 (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_phone_args(p, "suggest-timings")
    p.set_defaults(func=_cmd_suggest)

    p = sub.add_parser("eval", help="accuracy on held-out end-to-end timings, with baselines")
    add_profile_arg(p, required=True)
    add_space_arg(p, required=True)
    p.add_argument("--predictor", default=None, help="a saved predictor folder (default: shipped)")
    p.add_argument("--tables", default=None, help="tables root (default data/latency_tables)")
    p.add_argument("--plot", type=output_file, default=None, metavar="PNG",
                   help="write predicted-vs-measured PNG here")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_eval)
