"""CLI verbs owned by :mod:`surrogate`: ``devices``, ``host``, ``measure``, ``table``; the predictor
verbs (``fit``, ``predict``, ``suggest-timings``, ``eval``) are :mod:`surrogate.cli_predict`'s."""
from __future__ import annotations

import argparse
import sys

from space.cli import OneLineParser, UsageError, nonneg_int, output_dir, positive_int, print_json

from . import cli_phone, cli_predict
from .cli_common import archs_from_file as _archs_from_file
from .cli_common import add_profile_arg, add_space_arg


def _cmd_devices(args) -> int:
    from .measure.profiles import PROFILES
    from .predict.zoo import published_names, published_summary

    rows = []
    for name, p in PROFILES.items():
        ok, why = p.available()
        rows.append({"profile": name, "kind": "measure", "available": bool(ok), "reason": why or "",
                     "runtime": p.runtime, "description": p.description})
    for name in published_names():
        z = published_summary(name)
        rows.append({"profile": name, "kind": "predict-only", "available": bool(z["shipped"]),
                     "reason": "" if z["shipped"] else "no shipped predictor (bench/zoo_predictors.py --ship)",
                     "runtime": None, "space": z["space"], "license": z["license"],
                     "model": z.get("model"), "validation_spearman": z.get("spearman"),
                     "description": z["description"]})
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        if r["kind"] == "predict-only":
            continue
        mark = "yes" if r["available"] else "no "
        print(f"{r['profile']:<16} {mark}  {r['description']}")
        if not r["available"] and r["reason"]:
            print(f"{'':<16}      ({r['reason']})")
    print("predict-only (published timings; mnas predict/sweep --profile NAME --space SPACE):")
    for r in rows:
        if r["kind"] != "predict-only":
            continue
        fig = (f"held-out Spearman {r['validation_spearman']:.3f}"
               if r["validation_spearman"] is not None else "not shipped")
        print(f"{r['profile']:<16} {r['space']:<6} {r['license']:<10} {r['description']}; {fig}")
    return 0


def _cmd_host(args) -> int:
    from .measure.host import describe_host, host_identity, host_match
    from .measure.profiles import as_profile
    from .tables import tables_dir

    root = tables_dir(args.tables)
    if args.tables is not None and not root.is_dir():
        raise FileNotFoundError(f"--tables {args.tables}: " + ("not a folder" if root.exists()
                                                               else "no such folder"))
    if args.profile is not None:
        as_profile(args.profile)  # ValueError naming the profiles on a bad name
        profiles = [args.profile]
    else:
        profiles = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    here = host_identity()
    rows = []
    for prof in profiles:
        for t in sorted((root / prof).glob("*.csv")):
            m = host_match(t, this_host=here)
            rows.append({"profile": prof, "table": t.name, "same": m.same,
                         "differences": m.differences, "notes": m.notes,
                         "reference_ms_table": m.reference_ms_table, "table_host": m.table_host})
    if args.json:
        print_json({"host": here, "tables_dir": str(root), "tables": rows})
        return 0
    caches = ", ".join(f"{k} {v // 1024}M" if v >= 1024 and v % 1024 == 0 else f"{k} {v}K"
                       for k, v in here["caches_kib"].items()) or "unknown"
    print(f"this host: {describe_host(here, short=True)}  [host_id {here['host_id']}]")
    print(f"  vendor {here.get('vendor')}, {here['machine']}, microcode {here.get('microcode') or 'n/a'}")
    print(f"  isa: {' '.join(here['isa']) or 'none of ' + ' '.join(here['isa_checked'][:4]) + ' ...'}")
    print(f"  caches: {caches}")
    mem = f"{here['memory_total_mib'] / 1024:.1f} GiB" if here.get("memory_total_mib") else "unknown"
    hyp = {True: "yes", False: "no", None: "unknown"}[here.get("hypervisor")]
    if here.get("hypervisor_vendor"):
        hyp += f" ({here['hypervisor_vendor']})"
    print(f"  cpus: {here['cpu_count']} logical, {here['cpus_allowed']} allowed "
          f"({here.get('cpus_allowed_list') or '?'}); memory {mem}; kernel {here['kernel']}; "
          f"hypervisor {hyp}")
    if not rows:
        print(f"no tables under {root}" + (f"/{args.profile}" if args.profile else ""))
        return 0
    print(f"tables under {root}:")
    word = {True: "this host kind", False: "ANOTHER HOST", None: "cannot tell"}
    width = max(len(f"{r['profile']}/{r['table']}") for r in rows)
    shared = set.intersection(*(set(r["differences"]) for r in rows)) if len(rows) > 1 else set()
    for r in rows:
        ref = f"ref op {r['reference_ms_table']:.3f} ms" if r["reference_ms_table"] else "ref op n/a"
        print(f"  {r['profile'] + '/' + r['table']:<{width}}  {word[r['same']]:<14}  {ref}")
        for d in [d for d in r["differences"] if d not in shared] + r["notes"]:
            print(f"  {'':<{width}}    {d}")
    for d in sorted(shared):
        print(f"every table: {d}")
    return 0


def _settings(args, p):
    """The measurement settings of the options, defaulting to profile ``p``'s."""
    from .measure.timing import MeasureSettings

    extra = {} if args.estimator is None else {"estimator": args.estimator}
    return MeasureSettings(warmup=p.warmup if args.warmup is None else args.warmup,
                           runs=p.runs if args.runs is None else args.runs,
                           rounds=p.rounds if args.rounds is None else args.rounds,
                           clock=args.clock, **extra)


def _profile(args):
    """The profile named by --profile, with --converter applied."""
    from .measure.profiles import get_profile

    conv = getattr(args, "converter", None)
    return get_profile(args.profile, **({"converter": conv} if conv else {}))


def _print_summary(summary, as_json: bool) -> None:
    d = summary.as_dict()
    if as_json:
        print_json(d)
        return
    if d.get("convert_only"):
        state = "interrupted; rerun to continue" if d["interrupted"] else "done"
        print(f"converted {d['table']} ({state}); {d['convert_s']:.0f} s of conversion "
              f"in {d['wall_s']:.0f} s; {d['skipped']} rows already timed")
        return
    state = "interrupted; rerun the same command to resume" if d["interrupted"] else "done"
    if d.get("not_converted"):
        state += f"; {d['not_converted']} not converted yet: convert them with --convert-only, then rerun"
    print(f"{d['table']}: {d['measured']} measured, {d['skipped']} already there, "
          f"{d['total']} in all ({state}); {d['wall_s']:.0f} s, {d['per_minute']:.1f}/min")


def _cmd_measure_ops(args) -> int:
    from .measure.jobs import measure_ops

    configs, space = None, args.space
    if args.reference:
        from .measure.ondemand import TABLE, reference_configs, reference_networks

        if args.archs is not None or args.space:
            raise UsageError("--reference measures the reference networks' operators into "
                             "reference_ops.csv; drop --space and --archs")
        configs, space = reference_configs(reference_networks()), TABLE
    elif not args.space:
        raise UsageError("mnas measure ops needs --space S (or --reference)")
    elif args.archs is not None:  # just what these networks need (e.g. the ops a table lacks)
        from space.spaces import get_space

        seen = {}
        for a, _ in _archs_from_file(args.archs, get_space(args.space)):
            for lc in a.ops():
                if not lc.is_identity:
                    seen.setdefault(lc.key(), lc)
        configs = [seen[k] for k in sorted(seen)]
    prof = _profile(args)
    s = measure_ops(prof, space, out_dir=args.out, settings=_settings(args, prof),
                    chunk=args.chunk, limit=args.limit, cache_dir=args.cache,
                    progress=not args.no_progress, convert_only=args.convert_only,
                    cached_only=args.cached_only, configs=configs, device=args.device,
                    claims=args.claims)
    _print_summary(s, args.json)
    return 130 if s.interrupted else 0


def _archs_for(args):
    """(arch, source) pairs from --random / --archs / --reference."""
    import numpy as np

    from space.reference import REFERENCE
    from space.spaces import get_space

    sp = get_space(args.space) if args.space else None
    if args.all:
        if sp is None:
            raise UsageError("--all needs --space")
        return [(sp.to_arch(i), "all") for i in sp.enumerate()]
    if args.random is not None:
        if sp is None:
            raise UsageError("--random needs --space")
        rng = np.random.default_rng(args.seed)
        return [(sp.to_arch(i), f"random:seed={args.seed}") for i in sp.sample_indices(rng, args.random)]
    if args.archs is not None:
        return _archs_from_file(args.archs, sp)
    out = []
    for name, a in sorted(REFERENCE.items()):
        if sp is not None:
            try:
                a = sp.to_arch(sp.from_arch(a))
            except ValueError:
                continue
        out.append((a, f"reference:{name}"))
    if not out:
        raise ValueError(f"no reference architecture is a member of space {args.space!r}")
    return out


def _cmd_measure_models(args) -> int:
    from .measure.jobs import measure_models

    archs = _archs_for(args)
    space = args.space or "reference"
    prof = _profile(args)
    s = measure_models(prof, space, archs, out_dir=args.out, settings=_settings(args, prof),
                       chunk=args.chunk, cache_dir=args.cache, progress=not args.no_progress,
                       table_name=args.table, convert_only=args.convert_only,
                       cached_only=args.cached_only, device=args.device, claims=args.claims)
    _print_summary(s, args.json)
    return 130 if s.interrupted else 0


def _cmd_measure_host(args) -> int:
    from .measure.hostjob import measure_host

    settings = None  # operators: the profile's protocol; networks: NETWORK_SETTINGS
    if args.estimator or args.clock:
        from .measure.timing import MeasureSettings

        settings = MeasureSettings(**{k: v for k, v in (("estimator", args.estimator), ("clock", args.clock)) if v})
    res = measure_host(_profile(args), args.space, networks=args.networks, seed=args.seed,
                       home=args.home, settings=settings, progress=not args.no_progress,
                       log=(lambda *a: None) if args.json else print)
    if args.json:
        print_json(res.as_dict())
        return 0
    f = res.fit
    print(f"{res.ops} operators ({res.ops_wall_s:.0f} s) and {res.networks} networks "
          f"({res.models_wall_s:.0f} s) measured on host {res.host_id}")
    print(f"predictor {f['model']}: latency = {f['coef']:.3f} x table sum + {f['intercept_ms']:.2f} ms; "
          f"leave-one-out MAPE {100 * f['loo']['mape']:.1f}%, {100 * f['loo']['within_10pct']:.0f}% "
          f"within 10% (uncalibrated sum: MAPE {100 * f['uncalibrated']['mape']:.1f}%)")
    print(f"tables: {res.tables_dir}\npredictor: {res.predictor_dir}")
    print(f"use it: mnas sweep --space {res.space} --profile {res.profile} (found automatically on this "
          f"host), or --predictor {res.predictor_dir}")
    return 0


def _cmd_table_validate(args) -> int:
    from .tables import validate_table

    info = validate_table(args.file)
    if args.json:
        print_json(info)
    else:
        print(f"{info['path']}: {info['kind']} table, {info['rows']} rows, median "
              f"{info['median_ms_min']}..{info['median_ms_max']} ms, sha256 {info['sha256'][:12]}")
        for p in info["problems"]:
            print(f"  warning: {p}")
    return 0


def _cmd_table_drop(args) -> int:
    from .tabledrop import drop_measured_between, parse_time

    since = parse_time(args.since, "--since")
    until = parse_time(args.until, "--until") if args.until else None
    res = drop_measured_between(args.file, since, until, reason=args.reason)
    if args.json:
        print_json(res)
        return 0
    print(f"{res['table']}: dropped {res['dropped']} rows measured {args.since} .. "
          f"{args.until or 'now'}; {res['rows']} left (rerun the same measure command to time them again)")
    return 0


def _cmd_table_merge(args) -> int:
    from .measure.merge import merge_parts

    res = merge_parts(args.file)
    if args.json:
        print_json(res)
        return 0
    print(f"{res['table']}: {res['merged']} rows merged from {len(res['parts'])} devices, "
          f"{res['already']} already there, {res['rows']} in all, {res['duplicates']} duplicates")
    for name, d in res["parts"].items():
        scale = f", base x{d['scaled_by']:.4f}" if d["scaled_by"] != 1.0 else ""
        print(f"  {name}: {d['rows']} rows ({d['merged']} new), {d['sessions']} sessions{scale}")
    for w in res["warnings"]:
        print(f"  warning: {w}")
    return 0


def _cmd_table_convert(args) -> int:
    import sys

    from .lut import convert_file

    message, warns = convert_file(args.src, args.dst, act=args.act, space=args.space, arch=args.arch)
    for w in warns:
        print(f"mnas: warning: {w}", file=sys.stderr)
    print(message)
    return 0


def _common_measure(p: argparse.ArgumentParser) -> None:
    from space.spaces import space_names

    from .measure.timing import DEFAULT_ESTIMATOR, ESTIMATORS

    add_profile_arg(p, required=True)
    p.add_argument("--out", type=output_dir, default=None,
                   help="tables root (default: $MNAS_TABLES_DIR or data/latency_tables)")
    p.add_argument("--cache", type=output_dir, default=None,
                   help="export cache (default: $MNAS_CACHE_DIR or ~/.cache/mnas-surrogate)")
    p.add_argument("--warmup", type=nonneg_int, default=None,
                   help="untimed runs before timing (default: the profile's)")
    p.add_argument("--runs", type=positive_int, default=None,
                   help="timed runs per round (default: the profile's)")
    p.add_argument("--rounds", type=positive_int, default=None,
                   help="rounds per operator or network; the latency is their median (default: the profile's)")
    p.add_argument("--estimator", choices=ESTIMATORS, default=None,
                   help=f"latency of one round from its runs (default: the profile's, min+ref for "
                        f"the local CPU profiles: each round's min divided by the reference operator's "
                        f"timed right after it, else {DEFAULT_ESTIMATOR}); the latency is the median "
                        f"over rounds. A table keeps one estimator: continue an existing table with "
                        f"the estimator it was timed with")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="which clock is the latency: cpu (the timing thread's CPU time, robust to "
                        "other processes on the core) or wall (default: the profile's, cpu for "
                        "cpu-litert/cpu-onnxruntime/cpu-torch, wall for cuda-torch/android-adb); "
                        "both are recorded either way. Old tables are wall")
    p.add_argument("--converter", choices=("direct", "litert-torch"), default=None,
                   help=".tflite profiles: direct (the project's flatbuffer writer, milliseconds a "
                        "model; default) or litert-torch (the reference converter, seconds a model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    stage = p.add_mutually_exclusive_group()
    stage.add_argument("--convert-only", action="store_true",
                       help="only convert the missing rows' models, on every core (no timing)")
    stage.add_argument("--cached-only", action="store_true",
                       help="time only the rows whose model is already converted (no conversion "
                            "beside the timing; the rest stay for a later run)")
    p.add_argument("--device", default=None,
                   help="measure this device's share of a job several devices run at once: core:N "
                        "(a pinned core standing in for a device), adb:SERIAL (a phone) or a name "
                        "(one per machine on a shared folder); rows go to <stem>.parts/, join them "
                        "with `mnas table merge TABLE`")
    p.add_argument("--claims", type=output_dir, default=None, metavar="DIR",
                   help="with --device: folder of the claim files every device of the job shares "
                        "(default <stem>.claims beside the table)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(_spaces=space_names())


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``devices``, ``host``, ``measure`` and ``table``."""
    p = sub.add_parser("devices", help="device profiles and whether each runs here")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_devices)

    p = sub.add_parser("host", help="this host's identity and whether each shipped table came from it")
    add_profile_arg(p, help="only this profile's tables (default: every profile)")
    p.add_argument("--tables", default=None, help="tables root (default data/latency_tables)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_host)

    _register_measure(sub)
    cli_predict.register(sub)
    cli_phone.register(sub)
    _register_table(sub)


def _register_measure(sub: argparse._SubParsersAction) -> None:
    """Add ``measure ops|models|host``."""
    p = sub.add_parser("measure", help="measure operator tables or whole networks")
    msub = p.add_subparsers(dest="measure_cmd", required=True, parser_class=OneLineParser)
    s = msub.add_parser("ops", help="per-operator latency table of a space (resumable)")
    _common_measure(s)
    add_space_arg(s, help="the space (default: none; needs --reference then)")
    s.add_argument("--reference", action="store_true",
                   help="every operator of the reference networks (and the published phone rows' "
                        "variants), into <profile>/reference_ops.csv: the host table of phone predictors")
    s.add_argument("--limit", type=positive_int, default=None, help="only the first N operators")
    s.add_argument("--archs", metavar="FILE", default=None,
                   help="only the operators these architectures use (one string or name per line)")
    s.add_argument("--chunk", type=positive_int, default=48, help="operators per written chunk")
    s.set_defaults(func=_cmd_measure_ops)
    s = msub.add_parser("models", help="end-to-end timings of networks (resumable)")
    _common_measure(s)
    add_space_arg(s, help="space the networks belong to (default: none; the table is reference_models.csv)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--random", type=positive_int, metavar="N", help="N random members of --space")
    g.add_argument("--archs", metavar="FILE", help="a file of architecture strings or names, one per line")
    g.add_argument("--reference", action="store_true", help="the reference registry (members of --space if given)")
    g.add_argument("--all", action="store_true", help="every distinct network of --space (small spaces)")
    s.add_argument("--seed", type=int, default=0, help="seed of --random")
    s.add_argument("--chunk", type=positive_int, default=16, help="networks per written chunk")
    s.add_argument("--table", default=None, help="table file name (default <space>_models.csv)")
    s.set_defaults(func=_cmd_measure_models)
    s = msub.add_parser("host", help="this machine in minutes: a space's operator table, a few dozen "
                                     "networks and a calibrated predictor, under $MNAS_HOME/hosts/<host_id>")
    from .measure.profiles import DEFAULT_PROFILE
    from .measure.timing import DEFAULT_ESTIMATOR, ESTIMATORS

    add_space_arg(s, required=True)
    add_profile_arg(s, default=DEFAULT_PROFILE, help=f"device profile (default {DEFAULT_PROFILE})")
    s.add_argument("--networks", type=positive_int, default=40,
                   help="random networks to time for the calibration (default 40)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random networks (default 0)")
    s.add_argument("--home", type=output_dir, default=None,
                   help="folder for this host's tables and predictor (default $MNAS_HOME/hosts/<host_id>, "
                        "$MNAS_HOME defaulting to ~/.local/share/mnas-surrogate)")
    s.add_argument("--estimator", choices=ESTIMATORS, default=None,
                   help=f"per-round latency estimator (default: the profile's; min+ref for the "
                        f"local CPU profiles, else {DEFAULT_ESTIMATOR})")
    s.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="latency clock (default: the profile's)")
    s.add_argument("--converter", choices=("direct", "litert-torch"), default=None,
                   help=".tflite converter (default direct)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=_cmd_measure_host)


def _register_table(sub: argparse._SubParsersAction) -> None:
    """Add ``table validate|merge|drop|convert``."""
    p = sub.add_parser("table", help="validate and convert latency tables")
    tsub = p.add_subparsers(dest="table_cmd", required=True, parser_class=OneLineParser)
    s = tsub.add_parser("validate", help="check a table and its provenance")
    s.add_argument("file", help="a <space>_ops.csv or <space>_models.csv table")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_table_validate)
    s = tsub.add_parser("merge", help="join the per-device parts of a table measured with --device")
    s.add_argument("file", help="the <space>_ops.csv or <space>_models.csv the devices measured")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_table_merge)
    s = tsub.add_parser("drop", help="drop the rows measured in a window of known interference "
                                     "(recorded in the provenance; a rerun times them again)")
    s.add_argument("file", help="the table")
    s.add_argument("--since", required=True, help="ISO time (UTC unless an offset is given)")
    s.add_argument("--until", default=None, help="ISO time (default: now)")
    s.add_argument("--reason", required=True, help="why (kept in the provenance)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_table_drop)
    s = tsub.add_parser("convert", help="between <space>_ops.csv and the ProxylessNAS/OFA LUT format")
    s.add_argument("src", help="a <space>_ops.csv table or a LUT file (.yaml)")
    s.add_argument("dst", help="the LUT or <space>_ops.csv to write")
    s.add_argument("--act", default=None, choices=("relu", "relu6", "silu", "hswish"),
                   help="activation of LUT entries whose key records none (default: the LUT's "
                        "own: OFA MobileNetV3 keys' hs: field, else its '# act:' comment, else "
                        "ReLU6 for the ProxylessNAS format)")
    s.add_argument("--space", default=None, help="check a LUT import's coverage against this "
                   "space (default: the space the destination <space>_ops.csv names)")
    s.add_argument("--arch", default=None, help="check a LUT import's coverage against this "
                   "network (name or architecture string) instead of a space")
    s.set_defaults(func=_cmd_table_convert)
