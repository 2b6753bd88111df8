"""Loss terms of the cascade model on hand-made tensors."""
import pytest
import torch

from fusion.cascade.losses import (CascadeLoss, LossWeights, consistency_loss, dice_loss,
                                   mask_bce_loss, region_ce_loss, smoothness_loss, sparsity_loss)

torch.set_num_threads(1)


def _square(n=1, size=16, y0=2, x0=2, side=6):
    m = torch.zeros(n, 1, size, size)
    m[:, :, y0:y0 + side, x0:x0 + side] = 1
    return m


def test_dice_identical_masks_is_zero():
    m = _square(2)
    assert float(dice_loss(m, m, torch.tensor([True, True]))) == pytest.approx(0.0, abs=1e-7)


def test_dice_disjoint_masks_is_about_one():
    a, b = _square(y0=0, x0=0), _square(y0=8, x0=8)
    assert float(dice_loss(a, b, torch.tensor([True]))) == pytest.approx(1.0, abs=0.02)


def test_dice_two_empty_masks_is_zero():
    z = torch.zeros(1, 1, 8, 8)
    assert float(dice_loss(z, z, torch.tensor([True]))) == pytest.approx(0.0)


def test_invalid_mask_samples_contribute_nothing():
    good = _square()
    wildly_wrong = 1 - _square()  # prediction of the invalid sample is the exact opposite
    probs = torch.cat([good, wildly_wrong])
    target = torch.cat([good, torch.zeros_like(good)])  # invalid row holds zeros, as stores do
    valid = torch.tensor([True, False])
    assert float(dice_loss(probs, target, valid)) == pytest.approx(0.0, abs=1e-7)
    assert float(dice_loss(probs, target, valid)) == float(dice_loss(good, good, torch.tensor([True])))
    logits = torch.logit(probs.clamp(1e-4, 1 - 1e-4))
    only_first = mask_bce_loss(logits[:1], target[:1], torch.tensor([True]))
    assert float(mask_bce_loss(logits, target, valid)) == pytest.approx(float(only_first))


def test_no_valid_mask_gives_zero_with_graph():
    probs = torch.rand(2, 1, 8, 8, requires_grad=True)
    loss = dice_loss(probs, torch.ones(2, 1, 8, 8), torch.tensor([False, False]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.all(probs.grad == 0)


def test_smoothness_of_constant_mask_is_zero_and_positive_for_edges():
    assert float(smoothness_loss(torch.full((2, 1, 8, 8), 0.7))) == 0.0
    assert float(smoothness_loss(_square())) > 0


def test_sparsity_of_zeros_is_zero_and_mean_abs_otherwise():
    assert float(sparsity_loss(torch.zeros(1, 1, 8, 8))) == 0.0
    assert float(sparsity_loss(torch.full((1, 1, 8, 8), 0.25))) == pytest.approx(0.25)


def test_region_ce_labels_inside_by_sample_label_and_outside_real():
    big = 20.0
    labels = torch.tensor([1, 0])
    logits_in = torch.tensor([[0.0, big], [big, 0.0]])  # fake inside a fake, real inside a real
    logits_out = torch.tensor([[big, 0.0], [big, 0.0]])  # complement always real
    assert float(region_ce_loss(logits_in, logits_out, labels)) == pytest.approx(0.0, abs=1e-6)
    assert float(region_ce_loss(logits_out, logits_in, labels)) > 5
    with pytest.raises(ValueError, match="region weights"):
        region_ce_loss(logits_in, logits_out, labels, (0, 0))


def test_consistency_zero_when_global_equals_area_weighted_regions():
    f_in, f_out = torch.ones(2, 4), torch.zeros(2, 4)
    area = torch.tensor([0.25, 0.5])
    f_global = area[:, None] * f_in
    assert float(consistency_loss(f_global, f_in, f_out, area)) == 0.0
    assert float(consistency_loss(f_global + 1, f_in, f_out, area)) == pytest.approx(1.0)


def _outputs(n=2, size=8):
    torch.manual_seed(0)
    return {"logits": torch.randn(n, 2), "mask_logits": torch.randn(n, 1, size, size),
            "logits_in": torch.randn(n, 2), "logits_out": torch.randn(n, 2),
            "embed_global": torch.randn(n, 4), "embed_in": torch.randn(n, 4),
            "embed_out": torch.randn(n, 4), "area": torch.rand(n)}


def test_cascade_loss_weights_switch_terms_off_and_sum():
    out = _outputs()
    batch = {"label": torch.tensor([0, 1]), "mask": _square(2, 8, 1, 1, 3),
             "mask_valid": torch.tensor([True, True])}
    full_total, terms = CascadeLoss(LossWeights())(out, batch)
    assert set(terms) == {"global", "mask", "local", "consistency", "smooth", "sparse"}
    w = LossWeights()
    expected = sum(w.of(k) * v for k, v in terms.items())
    assert float(full_total) == pytest.approx(expected, rel=1e-5)
    only_global, terms = CascadeLoss(LossWeights(beta=0, gamma=0, delta=0, epsilon=0, zeta=0))(out, batch)
    assert set(terms) == {"global"}
    with pytest.raises(ValueError, match="every loss weight is 0"):
        CascadeLoss(LossWeights(alpha=0, beta=0, gamma=0, delta=0, epsilon=0, zeta=0))
    with pytest.raises(ValueError, match="--alpha"):
        LossWeights(alpha=-1)
