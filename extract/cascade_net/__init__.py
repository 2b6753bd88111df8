"""The cascaded localization network, as plain torch modules that any layer may use.

* :mod:`~extract.cascade_net.model`: the architecture (three streams, cross-attention, mask
  decoder, region heads) and its backbones;
* :mod:`~extract.cascade_net.streams`: the LBP and DCT inputs computed in torch from the RGB
  input;
* :mod:`~extract.cascade_net.run`: a trained run folder's model, its weights' SHA-256 and
  what it was trained and selected on, read without the training code.

It lives in ``extract`` so that the ``cascade`` feature (:mod:`extract.cascade`) can run a
trained model; training, losses, evaluation and the CLI stay in :mod:`fusion.cascade`, and
``fusion.cascade.model`` / ``fusion.cascade.streams`` are these modules under their old names.
"""
