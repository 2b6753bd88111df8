"""Loss terms of the cascaded localization model, each a small pure function, and their sum.

``total = alpha L_global + beta L_mask + gamma L_local + delta L_consistency
+ epsilon L_smooth + zeta L_sparse``; a weight of 0 switches its term off (it is then not
computed at all). :class:`CascadeLoss` returns the total and every active term as a float
so training can log each one per epoch.

Example
-------
>>> import torch
>>> m = torch.ones(1, 1, 4, 4)
>>> float(dice_loss(m, m, torch.tensor([True])))
0.0
>>> float(smoothness_loss(m)), float(sparsity_loss(torch.zeros(1, 1, 4, 4)))
(0.0, 0.0)
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

LOSS_TERMS = ("global", "mask", "local", "consistency", "smooth", "sparse")
WEIGHT_NAMES = {"global": "alpha", "mask": "beta", "local": "gamma", "consistency": "delta",
                "smooth": "epsilon", "sparse": "zeta"}


def _check_mask_shape(name: str, x: torch.Tensor):
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{name}: expected an N x 1 x H x W mask, got shape {tuple(x.shape)}")


def dice_loss(probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
              smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss ``1 - (2|P.T| + s) / (|P| + |T| + s)`` over the valid samples.

    The sums run over all pixels of all valid samples together (a "batch" Dice): the
    all-zero masks of reals then penalise false-positive pixels in proportion, whereas a
    per-sample Dice scores any non-empty prediction on an empty mask as ~1.

    Parameters
    ----------
    probs : N x 1 x H x W float in [0, 1]
        Predicted mask probabilities.
    target : N x 1 x H x W in {0, 1}
    valid : N bool
        Samples that have a ground-truth mask. Invalid samples are *masked out* (they add
        nothing to any sum), never treated as an all-zero mask.
    smooth : float
        Additive smoothing; makes two empty masks a perfect match (loss 0).

    Returns
    -------
    Scalar tensor; 0 (still attached to the graph) when no sample is valid.
    """
    _check_mask_shape("dice_loss probs", probs)
    _check_mask_shape("dice_loss target", target)
    valid = valid.to(device=probs.device, dtype=torch.bool).reshape(-1)
    if valid.numel() != probs.shape[0]:
        raise ValueError(f"dice_loss: valid has {valid.numel()} entries for {probs.shape[0]} samples")
    if not bool(valid.any()):
        return probs.sum() * 0.0
    p = probs[valid].float()
    t = target[valid].float()
    dice = (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)
    return 1.0 - dice


def mask_bce_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Pixel binary cross-entropy on mask logits (N x 1 x H x W) over valid samples only."""
    _check_mask_shape("mask_bce_loss logits", logits)
    valid = valid.to(device=logits.device, dtype=torch.bool).reshape(-1)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[valid].float(), target[valid].float())


def region_ce_loss(logits_in: torch.Tensor, logits_out: torch.Tensor, labels: torch.Tensor,
                   weights=(1.0, 1.0)) -> torch.Tensor:
    """Region-wise cross-entropy: the region inside the predicted mask carries the sample's
    label (fake for fakes, real for reals); its complement is always labelled real.

    ``(w_in CE(in, y) + w_out CE(out, 0)) / (w_in + w_out)``; logits are N x 2.
    """
    w_in, w_out = float(weights[0]), float(weights[1])
    if w_in < 0 or w_out < 0 or w_in + w_out <= 0:
        raise ValueError(f"region weights must be >= 0 and not both 0, got {weights}")
    labels = labels.long()
    ce_in = F.cross_entropy(logits_in.float(), labels)
    ce_out = F.cross_entropy(logits_out.float(), torch.zeros_like(labels))
    return (w_in * ce_in + w_out * ce_out) / (w_in + w_out)


def consistency_loss(f_global: torch.Tensor, f_in: torch.Tensor, f_out: torch.Tensor,
                     area: torch.Tensor) -> torch.Tensor:
    """``||f_global - aggregate(f_local)||^2`` (mean over samples and dimensions), where the
    aggregate is the area-weighted mean ``a f_in + (1 - a) f_out`` of the two region
    embeddings and ``a`` (N) is the predicted mask's area fraction."""
    a = area.float().reshape(-1, 1)
    aggregate = a * f_in.float() + (1 - a) * f_out.float()
    return ((f_global.float() - aggregate) ** 2).mean()


def smoothness_loss(probs: torch.Tensor) -> torch.Tensor:
    """Mean squared finite-difference gradient of the mask (0 for a constant mask)."""
    _check_mask_shape("smoothness_loss", probs)
    p = probs.float()
    dy = (p[:, :, 1:, :] - p[:, :, :-1, :]) ** 2
    dx = (p[:, :, :, 1:] - p[:, :, :, :-1]) ** 2
    return dy.mean() + dx.mean()


def sparsity_loss(probs: torch.Tensor) -> torch.Tensor:
    """Mean L1 norm of the mask per pixel, ``mean |M|`` (0 for an empty mask)."""
    _check_mask_shape("sparsity_loss", probs)
    return probs.float().abs().mean()


@dataclass
class LossWeights:
    """Weights of the six terms (0 switches a term off), the region weights w_r, and
    ``mask_bce``: weight of a pixel BCE added to the Dice inside L_mask (Dice alone learns
    slowly from an uninformed start; 0 gives pure Dice)."""

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.5
    delta: float = 0.1
    epsilon: float = 0.1
    zeta: float = 0.01
    w_in: float = 1.0
    w_out: float = 1.0
    mask_bce: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            value = float(getattr(self, f.name))
            if value < 0:
                raise ValueError(f"loss weight --{f.name.replace('_', '-')} must be >= 0, got {value}")
            setattr(self, f.name, value)

    def of(self, term: str) -> float:
        return getattr(self, WEIGHT_NAMES[term])


class CascadeLoss:
    """Weighted sum of the active loss terms on the outputs of ``CascadeModel``.

    Call with the model's output dict and a batch dict holding ``label`` (N), ``mask``
    (N x 1 x H x W) and ``mask_valid`` (N bool). Returns ``(total, terms)`` with ``terms``
    a dict ``{term: float}`` of the unweighted values of the active terms.
    """

    def __init__(self, weights: LossWeights | None = None):
        self.weights = weights or LossWeights()
        self.active = [t for t in LOSS_TERMS if self.weights.of(t) > 0]
        if not self.active:
            raise ValueError("every loss weight is 0: nothing to train")

    def __call__(self, out: dict, batch: dict):
        probs = torch.sigmoid(out["mask_logits"].float())
        labels = batch["label"]
        values = {}
        for term in self.active:
            if term == "global":
                values[term] = F.cross_entropy(out["logits"].float(), labels.long())
            elif term == "mask":
                values[term] = dice_loss(probs, batch["mask"], batch["mask_valid"])
                if self.weights.mask_bce > 0:
                    values[term] = values[term] + self.weights.mask_bce * mask_bce_loss(
                        out["mask_logits"], batch["mask"], batch["mask_valid"])
            elif term == "local":
                values[term] = region_ce_loss(out["logits_in"], out["logits_out"], labels,
                                              (self.weights.w_in, self.weights.w_out))
            elif term == "consistency":
                values[term] = consistency_loss(out["embed_global"], out["embed_in"],
                                                out["embed_out"], out["area"])
            elif term == "smooth":
                values[term] = smoothness_loss(probs)
            elif term == "sparse":
                values[term] = sparsity_loss(probs)
        total = sum(self.weights.of(t) * v for t, v in values.items())
        return total, {t: float(v.detach()) for t, v in values.items()}
