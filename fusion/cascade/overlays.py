"""Overlay PNGs of the cascade's predicted masks: crop | predicted mask | stored mask.

:func:`write_overlays` draws the examples that :func:`fusion.cascade.inference.run_inference`
kept, one PNG per sample named by :func:`overlay_name` (``overlays/``; the real samples with
the largest predicted masks in ``overlays/reals/``); :func:`mask_label` says whether the
stored mask is an exact or a difference mask.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _safe_name(text: str) -> str:
    """``text`` with every character but ASCII letters, digits, ``-``, ``_`` and ``.`` as ``_``."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in text)


def overlay_name(row, taken: set | None = None) -> str:
    """A readable, filesystem-safe PNG name for a sample's overlay.

    ``<video id with / as _>_f<frame, 6 digits>`` plus ``_face<k>`` for a face other than
    the largest: ``FaceSwap_634_660_f000000.png`` for ``ff++:FaceSwap/634_660:000000``.
    Names already in ``taken`` (which is updated) get ``_2``, ``_3``, ... so that two
    samples never share a file.
    """
    video = _safe_name(str(row["video_id"]).replace("\\", "/").strip("/").replace("/", "_"))
    stem = f"{video}_f{int(row['frame_index']):06d}"
    face = int(row.get("face_index", 0) or 0)
    if face:
        stem += f"_face{face}"
    name, k = f"{stem}.png", 1
    while taken is not None and name in taken:
        k += 1
        name = f"{stem}_{k}.png"
    if taken is not None:
        taken.add(name)
    return name


def mask_label(row) -> str:
    """What a sample's stored mask is: ``"difference mask"`` or ``"mask"``.

    Extraction takes an FF++ fake's mask from the method's mask video
    (``manipulated_sequences/<method>/masks/videos/<name>``) when there is one, else from the
    difference with the paired real frame (:func:`pipelines.ingest.difference_mask`). The
    store keeps the source path, so the mask video's presence next to it tells which; when
    the source folder is gone, or for any other data set (exact or provided masks), the
    label is ``"mask"``.
    """
    if row.get("dataset") != "ff++" or int(row["label"]) != 1:
        return "mask"
    source = Path(str(row.get("source_path", "")))
    videos = source.parent
    if not videos.is_dir():
        return "mask"
    mask_video = videos.parent.parent / "masks" / "videos" / source.name
    return "mask" if mask_video.is_file() else "difference mask"


def overlay_figure(rgb: np.ndarray, prob: np.ndarray, mask: np.ndarray | None,
                   title: str = "", truth_label: str = "mask"):
    """Figure: crop | predicted mask over the crop, with a colour bar | stored mask.

    ``prob`` is the per-pixel fake probability in [0, 1] (the colour bar's scale; the white
    contour is 0.5); ``truth_label`` names the third panel ("mask" or "difference mask",
    see :func:`mask_label`).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = 3 if mask is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(3 * panels + 0.8, 3.3))
    axes[0].imshow(rgb)
    axes[0].set_title(title, fontsize=8)
    axes[1].imshow(rgb)
    heat = axes[1].imshow(prob, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[1].contour(prob, levels=[0.5], colors="w", linewidths=1)
    axes[1].set_title("predicted mask (white: 0.5)", fontsize=8)
    if mask is not None:
        axes[2].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[2].set_title(truth_label, fontsize=8)
    for ax in axes:
        ax.axis("off")
    bar = fig.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.03)
    bar.solids.set_alpha(1)
    bar.set_label("fake probability per pixel", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return fig


def save_overlay(path: Path, rgb: np.ndarray, prob: np.ndarray, mask: np.ndarray | None,
                 title: str = "", truth_label: str = "mask"):
    """PNG of :func:`overlay_figure`: crop | predicted mask | stored mask (when known)."""
    import matplotlib.pyplot as plt
    fig = overlay_figure(rgb, prob, mask, title, truth_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


#: Folder (under ``overlays/``) of the real samples with the largest predicted masks.
REAL_OVERLAYS = "reals"


def write_overlays(out_dir: Path, data, result: dict, scores: np.ndarray,
                    which: str = "examples") -> list[str]:
    """Overlay PNGs of ``result[which]`` (:func:`fusion.cascade.inference.run_inference` on
    ``data``, a :class:`fusion.cascade.data.StoreMaps`): ``examples`` into ``overlays/``, ``real_examples``
    (the largest false-positive masks, their flagged area in the title) into
    ``overlays/reals/`` named ``<rank>_<sample>.png``."""
    ex, written, taken = result.get(which) or {"positions": []}, [], set()
    folder = out_dir / "overlays" / (REAL_OVERLAYS if which == "real_examples" else "")
    for rank, (rgb, prob, mask, valid, pos) in enumerate(zip(ex["rgb"], ex["prob"], ex["mask"],
                                                             ex["mask_valid"], ex["positions"])) \
            if ex["positions"] else ():
        row = data.meta.iloc[int(pos)]
        name = folder / overlay_name(row, taken)
        title = (f"{row['video_id']} frame {int(row['frame_index'])}\n"
                 f"{row['method']} (label {row['label']}) score {scores[int(pos)]:.3f}")
        if which == "real_examples":
            name = name.with_name(f"{rank + 1:02d}_{name.name}")
            title += f" flagged {result['flagged_area'][int(pos)]:.3f}"
        save_overlay(name, rgb, prob, mask if valid else None, title, mask_label(row))
        written.append(str(name))
    return written
