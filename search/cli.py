"""The ``mnas`` console script: assembles the verbs of space/, surrogate/ and search/."""
from __future__ import annotations

import sys

from space.cli import OneLineParser, UsageError, nonneg_int, output_dir, positive_int


def _published(profile: str, space: str, latency: str):
    """The predict-only device ``profile`` (None: a measuring profile); refuses a mismatch."""
    from surrogate.predict.zoo import PUBLISHED

    dev = PUBLISHED.get(profile)
    if dev is None:
        return None
    if dev.space != space:
        raise UsageError(f"--profile {profile} is a predict-only device of space {dev.space!r}, "
                         f"not {space!r}; use --space {dev.space}")
    if latency == "measured":
        raise UsageError(f"--profile {profile} is a predict-only device (published timings, not "
                         f"this host): use --latency predicted")
    return dev

_USER_ERRORS = (UsageError, ValueError, FileNotFoundError)


def build_parser() -> OneLineParser:
    """The root parser with every package's verbs."""
    import space
    from space import cli as space_cli

    parser = OneLineParser(prog="mnas", description="mnas-surrogate: measured-latency NAS")
    parser.add_argument("--version", action="version", version=f"mnas-surrogate {space.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    space_cli.register(sub)
    try:
        from surrogate import cli as surrogate_cli
    except ImportError:  # pragma: no cover - surrogate verbs not present
        surrogate_cli = None
    if surrogate_cli is not None and hasattr(surrogate_cli, "register"):
        surrogate_cli.register(sub)
    _register_search(sub)
    try:
        from search.train.cli import register as register_train
    except ImportError:  # pragma: no cover - training extras absent
        register_train = None
    if register_train is not None:
        register_train(sub)
    return parser


def _add_sweep_args(p, controller: bool) -> None:
    from surrogate.cli_common import add_profile_arg, add_space_arg
    from surrogate.measure.profiles import DEFAULT_PROFILE

    from .studyconfig import SAMPLERS

    add_space_arg(p, default="anb")
    add_profile_arg(p, default=DEFAULT_PROFILE, predict_only=True,
                    help="device profile whose latency is predicted or looked up, or a predict-only "
                         "device (mnas devices)")
    p.add_argument("--accuracy", default="anb", help="accuracy objective: anb, macro, proxy-train, ofa")
    if controller:
        from .controllers import controller_names

        p.add_argument("--controller", default="ppo", choices=controller_names(), help="search controller")
        g = p.add_argument_group("gradient controller (search.controllers.gradient)")
        g.add_argument("--steps", type=positive_int, default=None,
                       help="gradient steps between proposals (default 5)")
        g.add_argument("--lr", type=float, default=None, help="Adam learning rate on the logits (default 0.1)")
        g.add_argument("--temperature", type=float, default=None,
                       help="initial Gumbel-softmax temperature (default 5.0)")
        g.add_argument("--temperature-end", type=float, default=None,
                       help="final temperature, reached after --trials proposals (default min(0.5, --temperature))")
        g.add_argument("--chains", type=positive_int, default=None,
                       help="independent distributions with spread reward exponents (default 8)")
    else:
        p.add_argument("--sampler", default="nsga2", choices=SAMPLERS, help="Optuna sampler")
    p.add_argument("--trials", type=positive_int, default=300, help="networks to evaluate")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--batch", type=positive_int, default=8, help="trials asked per round")
    p.add_argument("--storage", default=None,
                   help="study storage shared by workers: postgresql+psycopg://user@host:5432/db (many "
                        "machines), journal:./sweep.log (one machine), sqlite:///sweep.db, or another "
                        "SQLAlchemy URL (default: in memory)")
    p.add_argument("--study-name", default=None,
                   help="Optuna study name (default: <space>-<profile>-<accuracy>-<method>-seed<seed>); a study "
                        "remembers its space, profile, predictor, accuracy, reward and target, and refuses "
                        "workers with others")
    p.add_argument("--latency-target", type=float, default=None, metavar="T_MS",
                   help="latency target T in ms, 0 < T <= 1e6 (default: the study's, else the median "
                        "latency of random members)")
    p.add_argument("--reward", default="soft", choices=("soft", "hard"),
                   help="MnasNet reward: soft (w = -0.07 either side of T) or hard (no bonus below T, w = -1 above)")
    p.add_argument("--no-seed-reference", action="store_true",
                   help="do not enqueue the reference networks of the space")
    p.add_argument("--remeasure", type=nonneg_int, default=3, metavar="K",
                   help="time the K front networks nearest the target on the device (0: off)")
    p.add_argument("--data", default=None, help="benchmark data folder (for --accuracy macro)")
    p.add_argument("--accuracy-file", default=None, metavar="FILE",
                   help="accuracy model file: for --accuracy ofa, Once-for-All's acc_predictor.pth "
                        "(not shipped; read weights-only)")
    p.add_argument("--predictor", default=None, help="a saved latency predictor folder")
    p.add_argument("--latency-source", default="auto", choices=("auto", "shipped", "host"),
                   help="without --predictor: auto (default) uses the shipped predictor when its tables "
                        "came from this host kind and the reference operator runs within 10%% of theirs, "
                        "else this host's own (mnas measure host), measured first when missing (about a "
                        "minute for anb); shipped / host force one")
    p.add_argument("--latency", default="predicted", choices=("predicted", "measured"),
                   help="predicted: the (shipped or --predictor) predictor; measured: look each "
                        "network up in the profile's end-to-end table (every one must be timed, "
                        "e.g. nasbench-macro with cpu-onnxruntime)")
    p.add_argument("-o", "--out", type=output_dir, default=None, help="output folder (default mnas_runs/<study>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _cmd_sweep(args) -> int:
    from .storage import open_storage
    from .studyconfig import check_study, settings_of, storage_label
    from .sweep import remeasure_finalists, run_sweep, write_summary

    cfg = _sweep_config(args)
    options = _controller_options(args)  # checked before any objective is built
    storage = open_storage(args.storage)  # a bad URL fails here, before anything is built
    # a study created with other settings is refused before any objective is built or measured
    check_study(storage, cfg.name, {**settings_of(cfg), "latency": args.latency}, storage_label(args.storage))
    acc = cfg.accuracy_objective(args.accuracy_file)  # checked against the space before any latency
    published = _published(args.profile, args.space, args.latency)  # else cfg.device: measuring
    log = (lambda *a: None) if args.json else (lambda m: print(m, file=sys.stderr))
    lat, host_note = cfg.latency_objective(args.latency, predictor=args.predictor, source=args.latency_source,
                                           published=published, progress=not args.no_progress, log=log)
    ctrl = None
    if cfg.controller:
        from space.spaces import get_space

        from .controllers import make_controller

        ctrl = make_controller(cfg.controller, get_space(args.space), seed=args.seed, **options)
    res = run_sweep(cfg, acc, lat, progress=not args.no_progress, controller=ctrl, storage=storage)
    if host_note is not None:
        res.latency["host"] = host_note
    if args.remeasure and published is None:
        remeasure_finalists(res, args.remeasure, progress=not args.no_progress, device=cfg.device)
    write_summary(res, res.files["summary"])
    if args.json:
        from space.cli import print_json

        d = res.as_dict()
        print_json({"pareto": d["pareto"], "hypervolume": d["hypervolume"], "trials": d["trials"],
                    **{k: v for k, v in d.items() if k not in ("pareto", "hypervolume", "trials")}})
        return 0
    _print_sweep(args, cfg, res, host_note)
    return 0


def _sweep_config(args):
    """The :class:`SweepConfig` of ``mnas sweep`` / ``mnas search``."""
    from .studyconfig import SweepConfig

    controller = getattr(args, "controller", None)
    return SweepConfig(space=args.space, profile=args.profile, accuracy=args.accuracy,
                       sampler=getattr(args, "sampler", "random") if not controller else "random",
                       controller=controller, trials=args.trials, seed=args.seed,
                       batch=args.batch, storage=args.storage, study_name=args.study_name,
                       latency_target_ms=args.latency_target, reward=args.reward,
                       seed_reference=not args.no_seed_reference, out_dir=args.out, data=args.data)


def _controller_options(args) -> dict:
    """The controller's own settings given (checked); {} for ``mnas sweep``."""
    name = getattr(args, "controller", None)
    if not name:
        return {}
    from .controllers import check_settings, controller_options

    options = {k: getattr(args, k) for k in controller_options() if getattr(args, k, None) is not None}
    check_settings(name, options, reward=args.reward, target_ms=args.latency_target, latency=args.latency)
    return options


def _print_sweep(args, cfg, res, host_note: dict | None) -> None:
    """The human-readable report of a sweep."""
    print(f"{res.trials} trials of {cfg.name} ({res.evaluated_here} evaluated here, "
          f"{res.trials_per_s:.0f}/s); latency target T = {res.latency_target_ms:.2f} ms")
    if host_note is not None:
        where = {"host": "this host's own", "published": "the published device's"}.get(
            host_note.get("chosen"), "the shipped")
        extra = (f" ({host_note['reason']})" if host_note.get("reason") else "")
        print(f"latency: {where} {args.profile} predictor for {args.space}{extra}")
    dist = res.accuracy.get("relaxed_search", {}).get("accuracy_model") or {}
    if "kendall_tau" in dist:
        print(f"distilled accuracy MLP: Kendall tau {dist['kendall_tau']:.3f} vs {dist.get('teacher')} "
              f"on {dist['heldout']} held-out random members")
    print(f"hypervolume {res.hypervolume:.4f} (reference point: latency "
          f"{res.hypervolume_reference['latency_ms']:.2f} ms, accuracy {res.hypervolume_reference['accuracy']})")
    print(f"Pareto front ({len(res.pareto)} networks):")
    print(f"  {'latency ms':>10} {'accuracy':>8}  architecture")
    for p in res.pareto:
        print(f"  {p['latency_ms']:10.3f} {100 * p['accuracy']:7.2f}%  {p['arch']}")
    if res.finalists:
        _print_finalists(res)
    print("files: " + ", ".join(f"{k}={v}" for k, v in res.files.items()))


def _print_finalists(res) -> None:
    """The finalists re-measured on the device, the reference operator and host notes."""
    print("finalists re-measured on the device:")
    for f in res.finalists:
        m = f"{f['measured_ms']:.3f}" if f["measured_ms"] else "n/a"
        err = f"{100 * f['error']:+.1f}%" if f["error"] is not None else ""
        print(f"  predicted {f['latency_ms']:8.3f} ms, measured {m} ms {err}"
              f"{'  <-- disagrees by more than 10%' if f['flag'] else ''}")
    ratios = [f["reference_ratio"] for f in res.finalists if f.get("reference_ratio")]
    if ratios and abs(ratios[0] - 1) > 0.05:
        ran = (f"  note: the reference operator ran {100 * (ratios[0] - 1):+.0f}% against the "
               f"predictor's tables (a busy or different machine); ")
        if res.finalists[0].get("reference_paired"):
            print(ran + "the finalists were timed paired with it, as the tables were, "
                        "so their figures discount it already")
        else:
            norm = ", ".join(f"{f['measured_normalised_ms']:.3f}" for f in res.finalists
                             if f.get("measured_normalised_ms"))
            print(ran + f"measured x reference ratio^-1: {norm} ms")
    for line in (res.host_match or {}).get("message", []):
        print(f"  {line}")


def _register_search(sub) -> None:
    p = sub.add_parser("sweep", help="multi-objective sweep (accuracy x predicted latency) with Optuna")
    _add_sweep_args(p, controller=False)
    p.set_defaults(func=_cmd_sweep)
    p = sub.add_parser("search", help="controller-driven search (PPO, evolution, random, gradient) on the MnasNet reward")
    _add_sweep_args(p, controller=True)
    p.set_defaults(func=_cmd_sweep)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except _USER_ERRORS as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"mnas: error: {msg}" if not msg.startswith("mnas") else msg, file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("mnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
