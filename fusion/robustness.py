"""Robustness of a trained fusion model to image perturbations (JPEG, blur, noise, ...).

The extract CLI, run with ``--perturb jpeg:50,blur:1.5``, stores beside each clean feature
``lbp`` the same feature computed on perturbed crops, named ``lbp@jpeg:50`` and
``lbp@blur:1.5`` (same rows, same attributes except ``params["perturbation"]``). A model
trained on the clean features is scored on a perturbation by swapping every feature block
for its ``@spec`` variant: nothing is re-extracted here, the perturbed columns are read
from the store.

Example
-------
>>> perturbed_name("lbp", "jpeg:50")
'lbp@jpeg:50'
>>> normalize_specs("JPEG:50.0, blur:1.50")
['jpeg:50', 'blur:1.5']
"""
from __future__ import annotations

import numpy as np

from base.errors import UsageError
from fusion import heads, scoring
from pipelines.perturb import SEPARATOR, parse_perturbations, perturbed_name

__all__ = ["SEPARATOR", "spec_string", "perturbed_name", "normalize_specs", "available_perturbations",
           "resolve_perturbations", "perturbed_split", "evaluate_under_perturbations"]

#: Attributes a perturbed variant must share with its clean feature (params minus "perturbation").
SHARED_ATTRS = ("extractor", "version", "params", "shape")


def spec_string(name: str, value: float) -> str:
    """``("jpeg", 50.0)`` -> ``"jpeg:50"``: the spelling ``pipelines.extract`` stores."""
    from pipelines.perturb import format_perturbation
    return format_perturbation(name, value)


def normalize_specs(text: str) -> list[str]:
    """Parse a ``--perturb`` value into canonical specs (``ValueError`` on a bad one)."""
    return [spec_string(n, v) for n, v in parse_perturbations(text)]


def _spec_key(spec: str):
    """Sort key: perturbation name, then value."""
    (name, value), = parse_perturbations(spec)
    return name, value


def _names(store, inputs: str) -> list[str]:
    return store.maps if inputs == "map" else store.features


def available_perturbations(store, features, inputs: str = "vector") -> list[str]:
    """Specs for which every one of ``features`` has an ``@spec`` variant in ``store``.

    Sorted by perturbation name then strength value; a suffix that is not a valid spec
    (not produced by :func:`pipelines.perturb.parse_perturbations`) is ignored.
    """
    names = set(_names(store, inputs))
    specs = set()
    for name in names:
        base, sep, spec = name.partition(SEPARATOR)
        if sep and base in features:
            specs.add(spec)
    out = []
    for spec in specs:
        try:
            canonical = normalize_specs(spec)
        except ValueError:
            continue
        if canonical == [spec] and all(perturbed_name(f, spec) in names for f in features):
            out.append(spec)
    return sorted(out, key=_spec_key)


def _attr_problem(store, feature: str, spec: str, inputs: str) -> str | None:
    """Why ``feature@spec`` is not ``feature`` computed the same way, or None."""
    kind = "map" if inputs == "map" else "vector"
    clean, pert = store.attrs(feature, kind), store.attrs(perturbed_name(feature, spec), kind)
    pert = {**pert, "params": {k: v for k, v in pert["params"].items() if k != "perturbation"}}
    for key in SHARED_ATTRS:
        if clean.get(key) != pert.get(key):
            return (f"{perturbed_name(feature, spec)} was not computed like {feature}: {key} "
                    f"{clean.get(key)!r} vs {pert.get(key)!r}")
    return None


def resolve_perturbations(store, features, request, inputs: str = "vector", flag: str = "--perturb") -> list[str]:
    """The specs a ``--perturb`` value asks for, checked against ``store``; UsageError otherwise.

    ``request`` is None or "" (no perturbations), ``"all"`` (every available one, at least
    one required) or a comma-separated list of specs. A spec some feature lacks stops the
    run with one line naming the missing ``feature@spec`` and the extract command to add it.
    """
    if not request:
        return []
    path = scoring.store_path_of(store)
    hint = "python -m pipelines.extract ... --features {} --perturb {}"
    if request.strip().lower() == "all":
        specs = available_perturbations(store, features, inputs)
        if not specs:
            raise UsageError(f"{flag} all: {path} has no perturbed variants of {', '.join(features)}; "
                             f"extract some with `{hint.format(','.join(features), 'jpeg:50,blur:1.5')}`")
    else:
        try:
            specs = list(dict.fromkeys(normalize_specs(request)))
        except ValueError as e:
            raise UsageError(f"{flag}: {e}") from None
        if not specs:
            raise UsageError(f"{flag}: give SPEC[,SPEC...] (e.g. jpeg:50,blur:1.5) or all")
    names = set(_names(store, inputs))
    missing = [(f, s) for s in specs for f in features if perturbed_name(f, s) not in names]
    if missing:
        feats = list(dict.fromkeys(f for f, _ in missing))
        miss_specs = list(dict.fromkeys(s for _, s in missing))
        raise UsageError(f"{flag}: {', '.join(perturbed_name(f, s) for f, s in missing)} not in {path}; "
                         f"extract with `{hint.format(','.join(feats), ','.join(miss_specs))}`")
    for s in specs:
        for f in features:
            problem = _attr_problem(store, f, s, inputs)
            if problem:
                raise UsageError(f"{flag}: {problem} in {path}")
    return specs


def perturbed_split(store, features, spec: str, split=None, inputs: str = "vector") -> heads.FusionData:
    """One split with every block read from its ``@spec`` variant, keyed by the clean name."""
    data = scoring.load_split(store, [perturbed_name(f, spec) for f in features], split, inputs)
    data.blocks = {f: data.blocks[perturbed_name(f, spec)] for f in features}
    return data


def evaluate_under_perturbations(model, store, features, specs, split="test", threshold=0.5,
                                 n_boot: int = 0, seed: int = 0) -> dict:
    """Score ``model`` on each perturbed variant of ``split``: ``{spec: metrics}``.

    Metrics are :func:`fusion.metrics.compute_metrics` at the clean run's ``threshold``
    (with ``n_boot`` bootstrap resamples for CIs), as for the clean test split.
    """
    inputs = getattr(model, "inputs", "vector")
    out = {}
    for spec in specs:
        data = perturbed_split(store, features, spec, split, inputs)
        frame = scoring.model_scores(model, data)
        out[spec] = scoring.evaluate_scores(frame, threshold, n_boot, seed)
    return out
