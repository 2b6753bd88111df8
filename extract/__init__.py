"""Feature extractors, one module per family, each registered under its CLI name.

Importing this package registers every built-in family; ``extract.registry`` has the
recipe for adding one.
"""
from extract import (artifacts, basic, cascade, color, deep, eyes, frequency,  # noqa: F401
                     geometry, keypoints, noise, temporal, texture)  # registration side effects
from extract.registry import (Extractor, FaceBatch, OutputSpec, create_extractor,
                              list_extractors, register_extractor)

__all__ = ["Extractor", "FaceBatch", "OutputSpec", "create_extractor", "list_extractors",
           "register_extractor"]
