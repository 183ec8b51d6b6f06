"""``mnas train``: train an architecture on an image folder with the MnasNet recipe.

Light to import (torch is loaded when the verb runs). The root parser's
subparsers use :class:`space.cli.OneLineParser`, so usage errors, ``ValueError``
and ``FileNotFoundError`` become one line and exit code 2. Data-parallel training::

    torchrun --nproc-per-node 8 -m search.cli train mnasnet-a1 --data /data/imagenet
"""
from __future__ import annotations

import argparse
import os
import sys

from space.cli import nonneg_int, output_dir, positive_int, print_json


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def _default_out(arch_text: str) -> str:
    import hashlib

    name = arch_text if "_" not in arch_text else "arch-" + hashlib.sha1(arch_text.encode()).hexdigest()[:10]
    return os.path.join("mnas_runs", "train", name)


def _cmd_train(args) -> int:
    from space.reference import resolve_arch

    arch = resolve_arch(args.arch)  # user errors (ValueError) before torch loads
    if not os.path.isdir(args.data):
        raise FileNotFoundError(f"data folder {args.data} does not exist")

    from .loop import train
    from .recipe import TrainConfig

    changes = {}
    for field, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                         ("lr_per_256", args.lr_per_256), ("seed", args.seed),
                         ("num_workers", args.workers), ("ckpt_every_steps", args.ckpt_every)):
        if value is not None:
            changes[field] = value
    cfg = TrainConfig(**changes)
    out = args.out or _default_out(args.arch.strip())
    report = train(arch, args.data, cfg, out, resume=not args.no_resume,
                   progress=not args.no_progress, max_steps=args.max_steps, device=args.device)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0 if report["status"] == "completed" else 130
    if args.json:
        print_json(report)
    else:
        _print_report(report)
    if report["status"] == "interrupted":
        print(f"mnas train: interrupted at step {report['steps']}; checkpoint in {out}; "
              f"run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _print_report(r: dict) -> None:
    title = r["arch_name"] or r["arch"]
    print(f"{title}: {r['status']} after {r['epochs']}/{r['epochs_planned']} epochs "
          f"({r['steps']} steps, global batch {r['global_batch']}, {r['world_size']} process(es), "
          f"{r['device']}{', AMP' if r['amp'] else ''})")
    print(f"  top-1 {_pct(r['top1'])}  top-5 {_pct(r['top5'])}  "
          f"(EMA: top-1 {_pct(r['top1_ema'])}  top-5 {_pct(r['top5_ema'])})  "
          f"on {r['n_val']} validation images")
    ips = r["images_per_s"]
    print(f"  {'-' if ips is None else f'{ips:,.0f}'} images/s, training {r['train_time_s']:.1f} s, "
          f"wall {r['wall_time_s']:.1f} s")
    print(f"  output: {r['out_dir']} (metrics.csv, metrics.json, report.json, checkpoint.pt)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the root parser's subcommands."""
    p = sub.add_parser(
        "train", help="train an architecture on an image folder (MnasNet recipe)",
        description="Train with the paper's recipe (RMSProp, warm-up + 0.97/2.4 epochs, EMA, "
                    "label smoothing). DATA holds train/<class>/* and val/<class>/*. Runs "
                    "resume from OUT/checkpoint.pt; Ctrl-C saves a checkpoint. Multi-GPU: "
                    "torchrun --nproc-per-node N -m search.cli train ...")
    p.add_argument("arch", help="a reference name (mnas arch list) or an architecture string")
    p.add_argument("--data", required=True, help="folder with train/ and val/ class folders")
    p.add_argument("--epochs", type=positive_int, default=None, help="default 350")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="per process; default 128")
    p.add_argument("--lr-per-256", type=_positive_float, default=None,
                   help="learning rate per 256 images of global batch; default 0.016")
    p.add_argument("--out", type=output_dir, default=None, help="output folder; default mnas_runs/train/<arch>")
    p.add_argument("--seed", type=nonneg_int, default=None, help="default 0")
    p.add_argument("--workers", type=nonneg_int, default=None, help="data-loading processes; default 4")
    p.add_argument("--ckpt-every", type=nonneg_int, default=None,
                   help="checkpoint every N steps as well as every epoch (0: epochs only); default 1000")
    p.add_argument("--max-steps", type=nonneg_int, default=None,
                   help="stop (with a checkpoint) after this many steps in all")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...; default cuda if available")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT has a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_train)
