"""The cascade model's LBP and DCT inputs, under the name they had before they moved to
:mod:`extract.cascade_net.streams`.

An alias, not a copy: ``fusion.cascade.streams`` *is* ``extract.cascade_net.streams``.
"""
import sys

import extract.cascade_net.streams as _streams

sys.modules[__name__] = _streams
