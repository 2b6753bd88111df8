"""The bottom layer: what every package uses and none of them owns.

``base`` (rather than ``common`` or ``utils``) because it is the base of the house: it imports
none of ``stores``, ``extract``, ``pipelines`` or ``fusion``, and all of them may import it.
It holds only conventions shared by every layer:

* :mod:`base.errors`: the error types (``SampleError``, ``UsageError``, ``DamagedFileError``);
* :mod:`base.cli`: the command-line style (``CLIParser``, ``run_cli``, ``--config``,
  ``next_line``, ``error_line``);
* :mod:`base.outputs`: output folders claimed and locked per run (``claim_output_dir``).

Anything that needs HDF5, numpy or a model belongs in a layer above.
"""
