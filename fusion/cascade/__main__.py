"""``python -m fusion.cascade train|eval|predict``: the cascaded localization model's CLI.

Examples
--------
Train (pretrained EfficientNet-Lite0 RGB stream, maps resized to 128 px on the fly)::

    python -m fusion.cascade train --store ffpp.h5 --out runs/cascade --epochs 20

Evaluate the best checkpoint on the test split; predict scores and mask overlays::

    python -m fusion.cascade eval --run runs/cascade --store ffpp.h5 --split test --out runs/cascade/test
    python -m fusion.cascade predict --run runs/cascade --store other.h5 --out preds/
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fusion.cascade.data import AUGMENTATIONS
from fusion.cascade.losses import LossWeights
from fusion.cascade.model import BackboneWeightsError
from pipelines.errors import UsageError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fusion.cascade", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on split train, select the epoch on val")
    t.add_argument("--store", required=True, help="feature store with rgb, lbp, dct (and mask) maps")
    t.add_argument("--out", required=True, help="run folder (config, checkpoints, history)")
    t.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    t.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    t.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    t.add_argument("--size", type=int, default=128,
                   help="maps are resized on the fly to size x size (multiple of 16; default 128)")
    t.add_argument("--backbone", default="efficientnet-lite0",
                   help="RGB stream: tiny (small CNN from scratch), efficientnet-lite0 (default; "
                        "offline ImageNet weights) or a timm model name (xception, "
                        "mobilenetv3_small_100, coatnet_0_rw_224, ...; needs --backbone-weights)")
    t.add_argument("--backbone-weights", default=None,
                   help="local checkpoint (.safetensors/.pth) for the backbone")
    t.add_argument("--random-init", action="store_true",
                   help="allow an untrained backbone (never implied when weights are missing)")
    t.add_argument("--dim", type=int, default=128, help="token / fused feature width (default 128)")
    t.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA when available (default)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--augment", default="",
                   help=f"comma list of {', '.join(AUGMENTATIONS)} (jpeg/blur/noise touch the RGB "
                        "crop only; flip all maps); default none")
    t.add_argument("--sbi", type=float, default=0.0,
                   help="probability of turning a real training crop into a self-blended fake "
                        "(default 0: off)")
    t.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    t.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch (smoke tests)")
    t.add_argument("--cache-mb", type=int, default=1024,
                   help="keep a split's maps in memory up to this size (default 1024)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    t.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0: torch's choice; 1 is often fastest on "
                        "shared machines)")
    defaults = LossWeights()
    for name, doc in (("alpha", "L_global (CE)"), ("beta", "L_mask (Dice)"),
                      ("gamma", "L_local (region CE)"), ("delta", "L_consistency"),
                      ("epsilon", "L_smooth"), ("zeta", "L_sparse"),
                      ("w-in", "region weight inside the mask"),
                      ("w-out", "region weight outside the mask"),
                      ("mask-bce", "pixel BCE added to the Dice in L_mask")):
        default = getattr(defaults, name.replace("-", "_"))
        t.add_argument(f"--{name}", type=float, default=default,
                       help=f"weight of {doc}; 0 switches it off (default {default:g})")
    for name, helptext in (("eval", "metrics.json (classification + localization) on a split"),
                           ("predict", "scores (predictions.csv) and mask overlay PNGs")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--run", required=True, help="run folder written by train")
        e.add_argument("--store", required=True, help="feature store to score")
        e.add_argument("--out", required=name == "predict", default=None,
                       help="output folder" + (" (default RUN/eval_SPLIT)" if name == "eval" else ""))
        e.add_argument("--split", default="test" if name == "eval" else None,
                       help="split to use (eval default test; predict default all samples)")
        e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        e.add_argument("--batch-size", type=int, default=64)
        e.add_argument("--overlays", type=int, default=8 if name == "eval" else 16,
                       help="number of overlay PNGs to write")
        e.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's choice)")
        if name == "eval":
            e.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs (0: none)")
    return p


def _train(args):
    from fusion.cascade.train import TrainConfig, train
    try:
        weights = LossWeights(alpha=args.alpha, beta=args.beta, gamma=args.gamma, delta=args.delta,
                              epsilon=args.epsilon, zeta=args.zeta, w_in=args.w_in,
                              w_out=args.w_out, mask_bce=args.mask_bce)
        config = TrainConfig(store=args.store, out=args.out, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                             size=args.size, backbone=args.backbone,
                             backbone_weights=args.backbone_weights, random_init=args.random_init,
                             dim=args.dim, heads=args.heads, device=args.device, seed=args.seed,
                             augment=args.augment, sbi=args.sbi, amp=not args.no_amp,
                             max_steps=args.max_steps, cache_mb=args.cache_mb, loss=weights).validate()
        from fusion.cascade.losses import CascadeLoss
        CascadeLoss(weights)
        if not Path(args.store).is_file():
            raise ValueError(f"--store {args.store}: no such file")
        from fusion.cascade.train import resolve_device
        resolve_device(args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    t0 = time.perf_counter()
    result = train(config, resume=args.resume)
    best = result["best"]
    print(f"done in {time.perf_counter() - t0:.0f} s; best epoch {best['epoch']} "
          f"(selection score {best['selection_score']:.4f}); run folder {config.out}")


def _summary(metrics: dict) -> str:
    c, loc = metrics["classification"], metrics["localization"]["all"]
    fmt = lambda v: "n/a" if v is None or v != v else f"{v:.4f}"  # noqa: E731
    lines = [f"{metrics['split']}: {metrics['n']} samples (checkpoint epoch {metrics['checkpoint_epoch']})",
             f"  AUC {fmt(c.get('auc'))}  AP {fmt(c.get('ap'))}  EER {fmt(c.get('eer'))}  "
             f"ACC@0.5 {fmt(c.get('acc'))}",
             f"  localization over {loc['n']} fakes with masks: pixel AUC {fmt(loc['pixel_auc'])}  "
             f"IoU@0.5 {fmt(loc['iou'])}  F1@0.5 {fmt(loc['f1'])}"]
    for method, m in metrics["localization"]["by_method"].items():
        lines.append(f"    {method}: n {m['n']}  pixel AUC {fmt(m['pixel_auc'])}  IoU {fmt(m['iou'])}  F1 {fmt(m['f1'])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.threads < 0:
            raise UsageError(f"--threads must be >= 0, got {args.threads}")
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        if args.command == "train":
            _train(args)
        else:
            from fusion.cascade.train import evaluate, predict, resolve_device
            try:
                resolve_device(args.device)
                if not Path(args.store).is_file():
                    raise ValueError(f"--store {args.store}: no such file")
                if not (Path(args.run) / "config.json").is_file():
                    raise ValueError(f"--run {args.run}: not a run folder (no config.json)")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if args.command == "eval":
                metrics = evaluate(args.run, args.store, args.split, args.out, args.device,
                                   args.batch_size, args.overlays, args.n_boot)
                print(_summary(metrics))
                print(f"wrote {Path(args.out or Path(args.run) / f'eval_{args.split}') / 'metrics.json'}")
            else:
                frame = predict(args.run, args.store, args.out, args.split, args.device,
                                args.batch_size, args.overlays)
                print(f"scored {len(frame)} samples; wrote {Path(args.out) / 'predictions.csv'}")
    except (UsageError, BackboneWeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
