"""Feature-level fusion: the per-feature vectors are combined before one classifier.

``concat`` (standardise, concatenate, one sklearn ``--head``) and the torch heads ``weighted``,
``mlp``, ``attention``, ``gating``, ``pooling`` and ``hierarchical``; most of the torch heads
work on one learned token per feature (:func:`_token_net`).
"""
from __future__ import annotations

from fusion.heads.base import (FusionHead, TorchFusion, _make_module, _nn, _prefixed, _torch,
                               _vector_dims, register_fusion)
from fusion.heads.classifiers import decision_sklearn_head, fit_sklearn_head


@register_fusion("concat")
class ConcatFusion(FusionHead):
    """Standardise each feature, concatenate, one sklearn classifier (``--head``)."""
    uses_head = True

    def _fit(self, train, val):
        self.model = fit_sklearn_head(self.head, self._concat(train), train.y,
                                      None if val is None else self._concat(val),
                                      None if val is None else val.y, seed=self.seed)

    def _decision(self, data):
        return decision_sklearn_head(self.model, self._concat(data))

    def _state(self):
        return {f"model.{k}": v for k, v in self.model.items()}

    def _load_state(self, state):
        self.model = _prefixed(state, "model.")


def _token_projector(dims, d):
    nn = _nn()
    return nn.ModuleList([nn.Sequential(nn.Linear(k, d), nn.LayerNorm(d)) for k in dims])


def _token_net(head, forward, **modules):
    """A network over per-feature tokens: ``proj`` (one d-dim token per feature), a learned
    ``feature_embedding`` added to the tokens, an ``out`` MLP from d to one logit, plus
    ``modules``."""
    torch, nn = _torch(), _nn()
    d, dims = int(head.p("d")), _vector_dims(head)
    return _make_module(forward, proj=_token_projector(dims, d),
                        feature_embedding=nn.Parameter(torch.zeros(len(dims), d)),
                        out=nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1)), **modules)


def _tokens(net, xs):
    torch = _torch()
    return torch.stack([proj(x) for proj, x in zip(net.proj, xs)], dim=1) + net.feature_embedding


@register_fusion("weighted")
class WeightedFusion(TorchFusion):
    """One linear scorer per feature, combined with learned softmax weights."""

    def _build(self):
        torch, nn = _torch(), _nn()
        dims = _vector_dims(self)

        def forward(net, *xs):
            s = torch.cat([lin(x) for lin, x in zip(net.scorers, xs)], dim=1)
            return (s * torch.softmax(net.alpha, 0)).sum(1) + net.bias

        return _make_module(forward, scorers=nn.ModuleList([nn.Linear(k, 1) for k in dims]),
                            alpha=nn.Parameter(torch.zeros(len(dims))), bias=nn.Parameter(torch.zeros(1)))

    def feature_weights(self) -> dict:
        """The learned softmax weight of each feature."""
        w = _torch().softmax(self.net.alpha.detach().cpu(), 0).numpy()
        return dict(zip(self.features, w.tolist()))


@register_fusion("mlp")
class MLPFusion(TorchFusion):
    """Concatenated features into a two-hidden-layer MLP with dropout."""

    def _build(self):
        torch, nn = _torch(), _nn()
        h = int(self.p("hidden"))
        mlp = nn.Sequential(nn.Linear(sum(_vector_dims(self)), h), nn.ReLU(), nn.Dropout(0.2),
                            nn.Linear(h, h // 2), nn.ReLU(), nn.Linear(h // 2, 1))
        return _make_module(lambda net, *xs: net.mlp(torch.cat(xs, 1)).squeeze(1), mlp=mlp)


@register_fusion("attention")
class AttentionFusion(TorchFusion):
    """Per-feature tokens, self-attention between them, then cross-attention from a learned query.

    ``mode``: "self+cross" (default), "self" (self-attention, mean over tokens) or "cross"
    (the learned query attends to the raw tokens).
    """
    accepted_params = {**TorchFusion.accepted_params, "mode": ("self+cross", "self", "cross")}

    def _build(self):
        torch, nn = _torch(), _nn()
        d = int(self.p("d"))
        mode = self.params.get("mode", "self+cross")
        self.check_params(self.features, {"mode": mode})

        def forward(net, *xs):
            t = _tokens(net, xs)
            if "self" in mode:
                a, _ = net.self_attn(t, t, t)
                t = net.norm(t + a)
            if "cross" in mode:
                q = net.query.expand(t.shape[0], -1, -1)
                pooled, _ = net.cross_attn(q, t, t)
                pooled = pooled.squeeze(1)
            else:
                pooled = t.mean(1)
            return net.out(pooled).squeeze(1)

        return _token_net(self, forward, self_attn=nn.MultiheadAttention(d, 4, batch_first=True),
                          norm=nn.LayerNorm(d), cross_attn=nn.MultiheadAttention(d, 4, batch_first=True),
                          query=nn.Parameter(torch.randn(1, 1, d) * 0.02))


@register_fusion("gating")
class GatingFusion(TorchFusion):
    """FiLM-conditioned tokens and softmax gates.

    The mean token is the context; it scales and shifts every token (FiLM:
    ``t * (1 + gamma) + beta``), then a gate per token weights the sum fed to the classifier.
    """

    def _build(self):
        torch, nn = _torch(), _nn()
        d = int(self.p("d"))

        def forward(net, *xs):
            t = _tokens(net, xs)
            gamma, beta = net.film(t.mean(1, keepdim=True)).chunk(2, dim=-1)
            t = t * (1 + gamma) + beta
            g = torch.softmax(net.gate(t), dim=1)
            return net.out((g * t).sum(1)).squeeze(1)

        return _token_net(self, forward, film=nn.Linear(d, 2 * d), gate=nn.Linear(d, 1))


@register_fusion("pooling")
class PoolingFusion(TorchFusion):
    """Per-feature tokens pooled by ``pool`` = "mean" (default) or "max", then an MLP."""
    accepted_params = {**TorchFusion.accepted_params, "pool": ("mean", "max")}

    def _build(self):
        pool = self.params.get("pool", "mean")
        self.check_params(self.features, {"pool": pool})

        def forward(net, *xs):
            t = _tokens(net, xs)
            return net.out(t.mean(1) if pool == "mean" else t.max(1).values).squeeze(1)

        return _token_net(self, forward)


def parse_groups(spec, features) -> list[list[str]]:
    """Feature groups for hierarchical fusion: "a,b;c" -> [["a", "b"], ["c"]].

    Default (None): consecutive pairs in the given feature order. Every feature must appear
    exactly once.
    """
    if spec is None:
        return [features[i:i + 2] for i in range(0, len(features), 2)]
    groups = spec if isinstance(spec, list) else [g.split(",") for g in str(spec).split(";")]
    groups = [[f.strip() for f in g if f.strip()] for g in groups]
    flat = [f for g in groups for f in g]
    if sorted(flat) != sorted(features):
        raise ValueError(f"hierarchical groups {spec!r} must use each of {features} exactly once")
    return groups


@register_fusion("hierarchical")
class HierarchicalFusion(TorchFusion):
    """Two-stage fusion: each feature group -> embedding, then the group embeddings -> score.

    ``groups`` param: "a,b;c" (see :func:`parse_groups`); default consecutive pairs.
    """
    accepted_params = {**TorchFusion.accepted_params, "groups": None}

    @classmethod
    def check_params(cls, features, params):
        super().check_params(features, params)
        parse_groups(params.get("groups"), list(features))

    def _build(self):
        torch, nn = _torch(), _nn()
        d = int(self.p("d"))
        groups = parse_groups(self.params.get("groups"), self.features)
        index = {f: i for i, f in enumerate(self.features)}
        dims = _vector_dims(self)
        members = [[index[f] for f in g] for g in groups]
        stage1 = nn.ModuleList([nn.Sequential(nn.Linear(sum(dims[i] for i in m), d), nn.ReLU())
                                for m in members])

        def forward(net, *xs):
            emb = [s(torch.cat([xs[i] for i in m], 1)) for s, m in zip(net.stage1, members)]
            return net.stage2(torch.cat(emb, 1)).squeeze(1)

        return _make_module(forward, stage1=stage1,
                            stage2=nn.Sequential(nn.Linear(d * len(groups), d), nn.ReLU(), nn.Linear(d, 1)))
