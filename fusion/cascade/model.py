"""The cascade network, under the name it had before it moved to
:mod:`extract.cascade_net.model` (so that the ``cascade`` feature extractor can run it).

An alias, not a copy: ``fusion.cascade.model`` *is* ``extract.cascade_net.model``, so every
import, ``isinstance`` check and monkeypatch of either name sees the same objects.
"""
import sys

import extract.cascade_net.model as _model

sys.modules[__name__] = _model
