"""Spatio-temporal fusion: ``sequence``, a BiLSTM over the frames of each video."""
from __future__ import annotations

import numpy as np

from fusion.heads.base import TorchFusion, _make_module, _nn, _torch, _vector_dims, register_fusion


@register_fusion("sequence")
class SequenceFusion(TorchFusion):
    """BiLSTM over the frames of each video; every frame gets its video's score.

    Frames are grouped by ``(method, video_id)`` and ordered by ``frame_index``; the LSTM
    outputs are averaged over the valid time steps. Needs ``meta`` with those columns.
    """
    family = "sequence"

    def _groups(self, data):
        import pandas as pd
        if data.meta is None:
            raise ValueError("sequence fusion needs per-sample meta (method, video_id, frame_index)")
        meta = pd.DataFrame({"method": np.asarray(data.meta["method"]).astype(str),
                             "video_id": np.asarray(data.meta["video_id"]).astype(str),
                             "frame_index": np.asarray(data.meta["frame_index"]), "row": np.arange(len(data))})
        meta = meta.sort_values(["method", "video_id", "frame_index"], kind="mergesort")
        return [g["row"].to_numpy() for _, g in meta.groupby(["method", "video_id"], sort=False)]

    def _items(self, data):
        x = self._concat(data)
        groups = self._groups(data)
        t_max = max(len(g) for g in groups)
        seq = np.zeros((len(groups), t_max, x.shape[1]), np.float32)
        lengths = np.zeros(len(groups), np.int64)
        for i, g in enumerate(groups):
            seq[i, :len(g)], lengths[i] = x[g], len(g)
        y = np.array([data.y[g].max() for g in groups])
        return [seq, lengths], y

    def _to_samples(self, data, item_scores):
        out = np.empty(len(data))
        for s, g in zip(item_scores, self._groups(data)):
            out[g] = s
        return out

    def _build(self):
        torch, nn = _torch(), _nn()
        h = int(self.p("hidden")) // 2

        def forward(net, seq, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = net.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
            mask = (torch.arange(seq.shape[1], device=seq.device)[None, :] < lengths[:, None]).float()
            pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            return net.out(pooled).squeeze(1)

        return _make_module(forward, lstm=nn.LSTM(sum(_vector_dims(self)), h, batch_first=True, bidirectional=True),
                            out=nn.Linear(2 * h, 1))
