"""Temporal self-blends: a real clip blended frame by frame with drifting, jittering parameters.

Frame-by-frame face swaps and lip-sync flicker: the blend boundary wobbles and the colour
of the pasted face shifts a little from one frame to the next, because each frame is
synthesised (and blended) on its own. :func:`temporal_sbi` imitates that on a real clip:
every frame gets a self-blend (:func:`pipelines.synthesis.sbi`'s building blocks: the
pseudo-source :func:`~pipelines.synthesis.sbi_source`, the elastic hull
:func:`~pipelines.synthesis.deformed_hull`, the blur and ratio of
:func:`~pipelines.synthesis.blend_region`), whose continuous parameters follow a bounded
random walk over the clip (``drift``) with independent per-frame noise on top (``jitter``):

* colour: hue, saturation, value, contrast, brightness of the source;
* frequency: the strength of its blur / sharpen / down-up step (the step itself is one per clip);
* source shift (as a fraction of the face width) and scale;
* mask deformation: the elastic amplitude, the three sinusoids' weights and phases and the
  dilate/erode radius (the operation itself is one per clip);
* mask blur (sigma as a fraction of the face width) and blend ratio.

Each value stays inside :func:`drift_bounds`, the range :func:`pipelines.synthesis.sbi`
draws from at the clip's difficulty (phases wrap modulo 2 pi). Frame 0 uses the first draws
unchanged, so a one-frame clip (or the first frame of any clip) is exactly
``sbi(frame, landmarks, rng, difficulty)`` for the same generator. The hull follows each
frame's own landmarks, as a swap tracks the face. ``region="lower"`` blends the lower face
only (jaw, nose base and mouth), the area lip-sync rewrites.

Every frame's mask is exactly its changed pixels (never empty), and the same inputs and seed
give the same clip (NumPy ``default_rng`` and OpenCV only).

Example
-------
>>> from skimage import data
>>> from pipelines.faces import FaceAligner
>>> face = FaceAligner(size=128).process(data.astronaut())
>>> frames, lms = np.stack([face.crop] * 4), np.stack([face.landmarks] * 4)
>>> clip, masks, params = temporal_sbi(frames, lms, np.random.default_rng(0))
>>> clip.shape, masks.shape, len(params)
((4, 128, 128, 3), (4, 128, 128), 4)
>>> bool(all((m == np.any(c != f, axis=-1)).all() for c, m, f in zip(clip, masks, frames)))
True
"""
from __future__ import annotations

import numpy as np

from pipelines.synthesis import (JAW, MOUTH, blend_region, check_face, deformed_hull,
                                 difficulty_value, draw_blend_params, draw_hull_params,
                                 draw_source_params, face_width, sbi_source)

__all__ = ["temporal_sbi", "drift_bounds", "REGIONS", "DRIFTING"]

#: Blend regions: the whole landmark hull, or the lower face (lip-sync's area).
REGIONS = ("face", "lower")
#: The landmarks whose hull is the ``lower`` region: jaw below the ears, nose base, mouth.
LOWER_POINTS = np.r_[np.arange(JAW.start + 2, JAW.stop - 2), np.arange(29, 36),
                     np.arange(MOUTH.start, MOUTH.stop)]
#: Parameters that drift from frame to frame (``shift_x``/``shift_y`` in face widths).
DRIFTING = ("hue", "saturation", "value", "contrast", "brightness", "frequency_value",
            "shift_x", "shift_y", "scale", "amp", "weight_0", "weight_1", "weight_2",
            "morph_px", "sigma_fw", "ratio")
_PHASES = ("phase_0", "phase_1", "phase_2")


def drift_bounds(difficulty, frequency: str, face_width_px: float) -> dict:
    """``{name: (low, high)}`` of every parameter in :data:`DRIFTING` at ``difficulty``.

    The ranges :func:`pipelines.synthesis.sbi` draws from (``strength = 1 - 0.6 d``): hue
    +-6 strength (OpenCV units), saturation 1 +-0.25 strength, value 1 +-0.2 strength,
    contrast 1 +-0.15 strength, brightness +-15 strength (grey levels), shift +-0.03
    strength (face widths), scale 1 +-0.05 strength, elastic amplitude 0.3-1 x
    (0.10 - 0.05 d), sinusoid weights +-1, dilate/erode radius 0 to 4 % of
    ``face_width_px`` (px; the clip's first frame), mask blur 0.01 to 0.03 + 0.05 d face
    widths, blend ratio 0.25 (1 - 0.3 d) + 0.15 d to 1; ``frequency_value`` as drawn for ``frequency`` (blur
    sigma 0.5-1.5 px, sharpen 0.3-1 x strength, down-up scale 0.35-0.75, none 0).
    """
    d = difficulty_value(difficulty)
    s = 1.0 - 0.6 * d
    freq = {"blur": (0.5, 1.5), "sharpen": (0.3 * s, 1.0 * s), "downup": (0.35, 0.75),
            "none": (0.0, 0.0)}
    if frequency not in freq:
        raise ValueError(f"unknown frequency step {frequency!r}; expected one of {', '.join(freq)}")
    amp_top = 0.10 - 0.05 * d
    return {"hue": (-6 * s, 6 * s), "saturation": (1 - 0.25 * s, 1 + 0.25 * s),
            "value": (1 - 0.2 * s, 1 + 0.2 * s), "contrast": (1 - 0.15 * s, 1 + 0.15 * s),
            "brightness": (-15 * s, 15 * s), "frequency_value": freq[frequency],
            "shift_x": (-0.03 * s, 0.03 * s), "shift_y": (-0.03 * s, 0.03 * s),
            "scale": (1 - 0.05 * s, 1 + 0.05 * s), "amp": (0.3 * amp_top, amp_top),
            "weight_0": (-1.0, 1.0), "weight_1": (-1.0, 1.0), "weight_2": (-1.0, 1.0),
            "morph_px": (0.0, float(max(1, int(0.04 * face_width_px)))),
            "sigma_fw": (0.01, 0.03 + 0.05 * d), "ratio": (0.25 * (1 - 0.3 * d) + 0.15 * d, 1.0)}


def _reflect(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``x`` folded back into ``[low, high]`` at the bounds (a walk that bounces off them)."""
    span = high - low
    safe = np.where(span > 0, span, 1.0)
    y = np.mod(x - low, 2 * safe)
    y = np.where(y > safe, 2 * safe - y, y)
    return np.where(span > 0, low + y, low)


def _walk(start: np.ndarray, low: np.ndarray, high: np.ndarray, n: int, drift: float,
          jitter: float, rng) -> np.ndarray:
    """n x K values: a random walk from ``start`` with steps of ``drift`` x range (std),
    reflected at the bounds, plus independent ``jitter`` x range noise per frame (clipped);
    row 0 is ``start``."""
    span = high - low
    steps = rng.normal(0.0, 1.0, (n, len(start))) * drift * span
    noise = rng.normal(0.0, 1.0, (n, len(start))) * jitter * span
    out = np.empty((n, len(start)))
    walk = np.asarray(start, np.float64)
    out[0] = walk
    for t in range(1, n):
        walk = _reflect(walk + steps[t], low, high)
        out[t] = np.clip(walk + noise[t], low, high)
    return out


def temporal_sbi(frames, landmarks, rng, difficulty="mid", drift: float = 0.05,
                 jitter: float = 0.02, region: str = "face"):
    """Self-blend a clip of consecutive frames with parameters that drift and jitter.

    Parameters
    ----------
    frames : T x H x W x 3 uint8
        Aligned RGB crops of consecutive frames of one real video (T >= 1).
    landmarks : T x 68 x 2
        Each frame's iBUG landmarks in crop pixels (finite).
    rng : numpy Generator or seed
    difficulty : ``"easy"``/``"mid"``/``"hard"`` or float in [0, 1]
        As in :func:`pipelines.synthesis.sbi`; sets the parameter ranges
        (:func:`drift_bounds`).
    drift : float >= 0
        Std of the random walk's step per frame, as a fraction of each parameter's range
        (phases: of 2 pi). 0 keeps the first frame's parameters (apart from ``jitter``).
    jitter : float >= 0
        Std of the independent per-frame noise added to the walk, as a fraction of the range.
    region : ``"face"`` or ``"lower"``
        The whole landmark hull, or the lower face only (:data:`LOWER_POINTS`).

    Returns
    -------
    blended : T x H x W x 3 uint8
    masks : T x H x W uint8
        Per frame exactly the pixels that differ from ``frames`` (never empty).
    params : list of T dicts
        Each frame's parameters: every :data:`DRIFTING` name, ``phase_0..2`` (radians),
        ``frequency`` and ``morph`` (one per clip), ``region``, ``difficulty`` and
        ``face_width_px``; ``bounds`` holds :func:`drift_bounds` of the clip.
    """
    frames = np.asarray(frames)
    lms = np.asarray(landmarks, np.float64)
    if frames.ndim != 4 or len(frames) < 1:
        raise ValueError(f"frames must be T x H x W x 3 with T >= 1, got shape {frames.shape}")
    if lms.shape != (len(frames), 68, 2):
        raise ValueError(f"landmarks must be T x 68 x 2 for {len(frames)} frames, got shape "
                         f"{lms.shape}")
    for name, value in (("drift", drift), ("jitter", jitter)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")
    checked = [check_face(f, lm, f"frame {t}") for t, (f, lm) in enumerate(zip(frames, lms))]
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    widths = np.array([face_width(lm) for _, lm in checked])
    # The first frame's draws, in sbi's order: frame 0 is sbi's blend for this generator.
    source = draw_source_params(rng, d, widths[0])
    hull = draw_hull_params(rng, d, widths[0])
    blend = draw_blend_params(rng, d)
    bounds = drift_bounds(d, source["frequency"], float(widths[0]))
    start = {"hue": source["hue"], "saturation": source["saturation"], "value": source["value"],
             "contrast": source["contrast"], "brightness": source["brightness"],
             "frequency_value": source["frequency_value"],
             "shift_x": source["shift_px"][0] / widths[0],
             "shift_y": source["shift_px"][1] / widths[0], "scale": source["scale"],
             "amp": hull["amp"], "morph_px": float(hull["morph_px"]),
             "sigma_fw": blend["sigma_fw"], "ratio": blend["ratio"],
             **{f"weight_{k}": hull["weights"][k] for k in range(3)}}
    low = np.array([bounds[n][0] for n in DRIFTING])
    high = np.array([bounds[n][1] for n in DRIFTING])
    values = _walk(np.array([start[n] for n in DRIFTING]), low, high, len(frames), drift,
                   jitter, rng)
    # phases are angles: an unbounded walk, wrapped to [0, 2 pi)
    steps = rng.normal(0.0, 1.0, (len(frames), 3)) * drift * 2 * np.pi
    noise = rng.normal(0.0, 1.0, (len(frames), 3)) * jitter * 2 * np.pi
    steps[0], noise[0] = 0.0, 0.0
    phases = np.mod(hull["phases"] + np.cumsum(steps, axis=0) + noise, 2 * np.pi)
    points = None
    blended, masks, params = [], [], []
    for t, ((frame, lm), fw) in enumerate(zip(checked, widths)):
        v = dict(zip(DRIFTING, values[t].tolist()))
        p_source = {**source, **{k: v[k] for k in ("hue", "saturation", "value", "contrast",
                                                   "brightness", "frequency_value", "scale")},
                    "shift_px": np.array([v["shift_x"], v["shift_y"]]) * fw}
        if t == 0:
            p_source["shift_px"] = source["shift_px"]
        p_hull = {"amp": v["amp"], "phases": phases[t],
                  "weights": np.array([v["weight_0"], v["weight_1"], v["weight_2"]]),
                  "morph": hull["morph"], "morph_px": int(round(v["morph_px"]))}
        if region == "lower":
            points = lm[LOWER_POINTS]
        src = sbi_source(frame, lm, p_source)
        mask_region = deformed_hull(lm, frame.shape, p_hull, points=points)
        out, mask = blend_region(frame, src, mask_region, fw,
                                 {"sigma_fw": v["sigma_fw"], "ratio": v["ratio"]})
        blended.append(out)
        masks.append(mask.astype(np.uint8))
        params.append({**v, "morph_px": p_hull["morph_px"],
                       **{name: float(x) for name, x in zip(_PHASES, phases[t])},
                       "frequency": source["frequency"], "morph": hull["morph"],
                       "region": region, "difficulty": d, "face_width_px": float(fw),
                       "bounds": bounds})
    return np.stack(blended), np.stack(masks), params
