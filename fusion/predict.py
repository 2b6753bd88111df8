"""``python -m fusion.predict --model RUN_DIR FILES...``: score suspicious images or videos.

End to end for a practitioner: each file is decoded, its faces are detected and aligned
exactly as the training store's were (the model records that configuration), the model's
features are extracted with the recorded parameters, and the trained fusion head scores
every face. Prints one line per file; ``--out FILE`` writes JSON with a score per face and
per video (the mean of its face scores), and ``--json`` prints that JSON alone on stdout
(the per-file lines then go to stderr); ``--overlay DIR`` also saves a strip of each file's
scored faces, each with its score, verdict and frame index, under the decision threshold.

Scores are fake probabilities in [0, 1] (``score``) with the decision value beside them
(``logit``); the decision compares the logit with the threshold chosen on the training
run's validation split (``threshold``, in logit units). A video's logit is the mean of its
faces' logits. When the training run took its threshold from train, or its val split was
too small to trust, the run's warnings are printed and kept in the JSON (``warnings``). A face
an extractor gives NaN or inf for is scored with the train mean in its place (as in
:mod:`fusion.train`), counted in its result's ``nonfinite`` and warned about on stderr.
Each verdict line names the threshold it was judged against and where it came from
(``threshold 0.399 (EER on val)``).

``--model`` may also be a ``fusion.cascade train`` run folder (:mod:`fusion.cascade.files`):
faces are cropped as its first training store's were, scored by its best checkpoint at
fake probability 0.5, and each face and file also gets its part verdict (``parts``: the
mean predicted mask probability per face part; ``verdict``: ``"mouth 0.91, eyes 0.08,
nose 0.05"``, also on the printed line); when the run has a video head, a video also gets
its ``video_head_score``.

``--model`` may also be an ensemble folder of ``fusion.ensemble fit``: every member scores
the same crops (cut as the first member's training store's were), a face's ``logit`` is the
fused score and its ``score`` the share of the ensemble's reference reals scoring lower;
``members`` holds each member's own logit, per face and per file.

A file with no face to score (empty, text, an image too small to hold a face, no face
found, a video that does not decode) gets one line on stderr, ``FILE: not scored: CAUSE``,
and stays in the JSON with ``score`` null and its ``errors``. Exit status: 0 when at least
one file was scored (the others listed), 1 when none was, 2 for a wrong flag or file.
"""
from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from base.cli import CLIParser, at_least, error_line, not_a_file, run_cli
from base.errors import UsageError
from base.outputs import add_overwrite_flag, claim_output_dir, claim_output_file, write_output_file
from fusion.file_models import extractors_for, file_result, head_logits, ingest_config, load_model_dir

__all__ = ["main", "score_file", "load_model_dir", "ingest_config", "extractors_for"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _source(path: Path):
    from pipelines.samples import Source
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTS + VIDEO_EXTS:
        raise UsageError(f"{path}: unsupported file type {suffix!r}; images "
                         f"{', '.join(IMAGE_EXTS)} or videos {', '.join(VIDEO_EXTS)}")
    kind = "image" if suffix in IMAGE_EXTS else "video"
    return Source(path=str(path.resolve()), dataset="predict", split="test", label=0,
                  method="unknown", video_id=f"input/{path.name}", kind=kind)


def score_file(path, head, config, extractors, ingest) -> dict:
    """Score one image or video; returns its per-face and per-video result."""
    if extractors is None:  # a cascade run scores the crops itself (fusion.cascade.files)
        return head.score_file(path, _source(Path(path)), ingest)
    from pipelines.ingest import load_source
    source = _source(Path(path))
    crops = load_source(source, ingest)
    result = file_result(path, crops)
    if not crops.records:
        result["score"] = None
        return result
    logits, data, masks = head_logits(head, config, extractors, crops)
    from fusion.scoring import nonfinite_counts, nonfinite_warnings, saved_threshold
    result["nonfinite"] = nonfinite_counts(data)  # faces an extractor gave NaN / inf: imputed
    result["warnings"] = nonfinite_warnings(result["nonfinite"], str(path))
    scores = head.probability(logits)
    threshold = saved_threshold(head, config.get("run", {}))
    result["faces"] = [{"frame_index": int(r["frame_index"]), "score": float(s), "logit": float(z),
                        "fake": bool(z >= threshold)} for r, s, z in zip(crops.records, scores, logits)]
    result["logit"] = float(np.mean(logits))
    result["score"] = float(head.probability(np.array([result["logit"]]))[0])
    result["fake"] = bool(result["logit"] >= threshold)
    result["_crops"] = np.stack(crops.crops)
    if masks is not None:
        result["_masks"] = masks
    return result


def threshold_text(threshold_probability: float, run: dict) -> str:
    """``threshold 0.399 (EER on val)``: the cut a verdict was judged against, and its origin."""
    source = run.get("threshold_from")
    if run.get("threshold_note"):  # a cascade run: a fixed threshold
        return f"threshold {threshold_probability:.3f} ({run['threshold_note']})"
    return f"threshold {threshold_probability:.3f} " + (f"(EER on {source})" if source else
                                                        "(its origin not recorded)")


def unscored_reason(errors: list[dict]) -> str:
    """Why a file gave no face to score, from its error rows: the first row's message, and
    how many more sampled frames failed (a video without faces has one row per frame)."""
    if not errors:
        return "no face found"
    reason = errors[0]["message"]
    if len(errors) > 1:
        causes = sorted({e["cause"] for e in errors[1:]})
        reason += f" (and {len(errors) - 1} more frame(s): {', '.join(causes)})"
    return reason


#: Height in pixels of the strip's header band (the threshold) and of each tile's caption.
STRIP_HEADER, TILE_CAPTION = 54, 56


def tile_caption(face: dict) -> list[str]:
    """The two caption lines under a face of the strip: its score and verdict, its frame."""
    return [f"{face['score']:.3f} {'FAKE' if face['fake'] else 'real'}",
            f"frame {face['frame_index']}"]


def overlay_strip(result: dict, threshold: float, threshold_probability: float) -> np.ndarray:
    """RGB strip of the scored faces (at most 16): a header with the decision threshold,
    then each face framed red (fake) or green (real) above :func:`tile_caption`. When the
    model includes the ``cascade`` feature, the pixels its predicted mask flags (p >= 0.5)
    are tinted red (half opacity)."""
    import cv2
    tiles = []
    masks = result.get("_masks")
    for i, (crop, face) in enumerate(zip(result["_crops"][:16], result["faces"][:16])):
        colour = (220, 0, 0) if face["fake"] else (0, 150, 0)
        tile = np.asarray(crop, np.uint8).copy()
        if masks is not None:
            flagged = masks[i] >= 0.5
            tile[flagged] = (0.5 * tile[flagged] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
        cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, tile.shape[0] - 1), colour, 4)
        caption = np.full((TILE_CAPTION, tile.shape[1], 3), 255, np.uint8)
        scale = float(np.clip(tile.shape[1] / 250, 0.35, 0.6))  # the caption fits the tile
        for k, line in enumerate(tile_caption(face)):
            cv2.putText(caption, line, (6, 22 + 26 * k), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        colour if k == 0 else (0, 0, 0), 1 + (k == 0), cv2.LINE_AA)
        tiles.append(np.concatenate([tile, caption], axis=0))
    body = np.concatenate(tiles, axis=1)
    header = np.full((STRIP_HEADER, body.shape[1], 3), 255, np.uint8)
    for k, line in enumerate((f"fake when score >= {threshold_probability:.3f}",
                              f"(decision value >= {threshold:.3f} logit)")):
        width = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)[0][0]
        scale = min(0.6, 0.6 * (body.shape[1] - 12) / width)
        cv2.putText(header, line, (6, 21 + 24 * k), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([header, body], axis=0)


def save_overlay(result: dict, folder: Path, threshold: float, threshold_probability: float):
    """Write :func:`overlay_strip` as ``<file stem>_scores.png`` in ``folder``; returns the path."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    strip = overlay_strip(result, threshold, threshold_probability)
    path = folder / (Path(result["file"]).stem + "_scores.png")
    cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    return path


def main(argv=None) -> int:
    parser = CLIParser(prog="python -m fusion.predict", description=__doc__)
    parser.add_argument("--model", required=True,
                        help="run folder written by fusion.train, or by fusion.cascade train "
                             "(then each face also gets its part verdict, e.g. "
                             "'mouth 0.91, eyes 0.08', and a video the run's video head "
                             "score if it has one), or an ensemble folder of fusion.ensemble fit")
    parser.add_argument("files", nargs="+", help="images or videos to score")
    parser.add_argument("--out", help="write the JSON result to this file (an existing one is "
                                      "refused unless --overwrite)")
    parser.add_argument("--json", action="store_true",
                        help="print the JSON result alone on stdout (the per-file lines go to "
                             "stderr), for piping into jq or another program")
    parser.add_argument("--frames", type=at_least(1), help="frames per video (default: as in training)")
    parser.add_argument("--overlay", help="folder for PNG strips of the scored faces (one that "
                                          "holds files is refused unless --overwrite)")
    add_overwrite_flag(parser, "--out and --overlay")
    args = parser.parse_args(argv)

    def prepare():
        for f in args.files:
            problem = not_a_file(f)
            if problem:
                raise UsageError(f"{f}: {problem}" if problem != "no such file" else
                                 f"no such file: {f}")
        for f in args.files:
            _source(Path(f))
        if args.out:
            claim_output_file(args.out, overwrite=args.overwrite)
        overlays = (claim_output_dir(args.overlay, "--overlay", args.overwrite, inputs=args.files)
                    if args.overlay else nullcontext())  # it takes a lock: released on any error
        try:
            return (*load(), overlays)
        except BaseException as exc:
            overlays.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def load():
        from fusion.modelio import run_kind
        if (Path(args.model) / "ensemble.json").is_file():  # fusion.ensemble fit
            from fusion.ensemble import load_file_scorer as ensemble_scorer
            scorer, config = ensemble_scorer(args.model)
            return scorer, config, None, ingest_config(config, args.frames)
        if run_kind(args.model) == "fusion.cascade":
            from fusion.cascade.files import load_file_scorer
            try:
                scorer, config = load_file_scorer(args.model)
            except ValueError as exc:
                raise UsageError(f"--model {args.model}: {exc}") from None
            return scorer, config, None, ingest_config(config, args.frames)
        try:  # a wrong format version or an unknown extractor in the model's config
            head, config = load_model_dir(args.model)
        except ValueError as exc:
            raise UsageError(f"--model {args.model}: {exc}") from None
        if config.get("inputs") not in (None, "vector", "map"):
            raise UsageError(f"--model: inputs {config.get('inputs')!r} cannot be scored here")
        if config.get("fusion") == "sequence":
            raise UsageError("--model: sequence models score whole videos from a store; "
                             "use python -m fusion.evaluate")
        return head, config, extractors_for(config), ingest_config(config, args.frames)

    prepared = []
    status = run_cli(parser.prog, lambda: prepared.append(prepare()))
    if status:
        return status
    head, config, extractors, ingest, overlays = prepared[0]
    failure = []

    def score():
        try:
            return _score_files(args, head, config, extractors, ingest, parser.prog)
        except BaseException as exc:
            failure.append(exc)
            raise

    try:  # run_cli turns a failure into one line (a closed pipe, | head, ends it quietly) ...
        return run_cli(parser.prog, score)
    finally:  # ... and a failed run puts back the overlays that --overwrite was replacing
        exc = failure[0] if failure else None
        overlays.__exit__(type(exc) if exc else None, exc, None)


def _score_files(args, head, config, extractors, ingest, prog) -> int:
    """Score ``args.files``, print a line each, write ``--out`` / ``--overlay``; 0 when at
    least one file was scored, 1 when none was."""
    text = sys.stderr if args.json else sys.stdout
    warnings = config.get("run", {}).get("warnings", [])
    for w in warnings:
        print(f"warning: model {args.model}: {w}", file=sys.stderr)
    results = []
    from fusion.scoring import saved_threshold
    threshold = saved_threshold(head, config.get("run", {}))
    threshold_probability = float(head.probability(np.array([threshold]))[0])
    where_from = threshold_text(threshold_probability, config.get("run", {}))
    scored = 0
    for path in args.files:
        result = score_file(path, head, config, extractors, ingest)
        if args.overlay and result["faces"]:
            result["overlay"] = str(save_overlay(result, Path(args.overlay), threshold,
                                                 threshold_probability))
        result.pop("_crops", None)
        result.pop("_masks", None)
        results.append(result)
        for w in result.get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
        if result["score"] is None:
            print(f"{path}: not scored: {unscored_reason(result['errors'])}", file=sys.stderr)
            continue
        scored += 1
        causes = sorted({e["cause"] for e in result["errors"]})
        head_text = (f"; video head score {result['video_head_score']:.3f}"
                     if "video_head_score" in result else "")
        print(f"{path}: {'FAKE' if result['fake'] else 'real'}  score {result['score']:.3f} "
              f"over {len(result['faces'])} face(s){head_text}; {where_from}"
              + (f"; parts: {result['verdict']}" if result.get("verdict") else "")
              + (f"  [{', '.join(causes)}]" if causes else ""), file=text)
    report = {"model": str(args.model), "threshold": config.get("run", {}).get("threshold"),
              "threshold_units": config.get("run", {}).get("threshold_units", "probability"),
              "threshold_from": config.get("run", {}).get("threshold_from"),
              "warnings": warnings, "results": results}
    if args.out:
        write_output_file(args.out, json.dumps(report, indent=2), overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report, indent=2))
    if scored:
        return 0
    if len(args.files) > 1:
        print(error_line(prog, f"none of the {len(args.files)} files could be scored"),
              file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
