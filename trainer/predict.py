"""The torch network's probabilities on a list of records: per-epoch validation, the final figures,
``mura-evaluate`` and ``mura-compare`` all score through here (DDP-aware)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from models.datasources import Record
from models.preprocess import PreprocessConfig
from trainer.data import DecodeCache, RecordDataset, collate_skip
from trainer.distributed import DistInfo, gather_rows


@torch.no_grad()
def predict(net: nn.Module, records: list[Record], pre: PreprocessConfig, body_parts: list[str],
            batch_size: int = 32, workers: int = 0, cache: DecodeCache | None = None,
            dist_info: DistInfo | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fracture probability and body-part probabilities per record (nan for undecodable files).

    Under DDP each rank scores its shard and the results are gathered, so all ranks agree.
    """
    dist_info = dist_info or DistInfo()
    net.eval()
    ds = RecordDataset(records, pre, body_parts, cache=cache)
    mine = np.arange(len(records))[dist_info.rank :: dist_info.world]  # this rank's shard
    dl = DataLoader(torch.utils.data.Subset(ds, mine.tolist()), batch_size=batch_size, shuffle=False,
                    num_workers=workers, collate_fn=collate_skip)
    probs = np.full(len(records), np.nan, dtype=np.float64)
    bps = np.full((len(records), len(body_parts)), np.nan, dtype=np.float64)
    device = next(net.parameters()).device
    for batch in dl:
        if batch is None:
            continue
        x, _, _, idx = batch
        logit, bp = net(x.to(device).to(memory_format=torch.channels_last))
        slope, intercept = getattr(net, "calibration", (1.0, 0.0))  # as the exported network does
        probs[idx.numpy()] = torch.sigmoid(logit.float() * slope + intercept).cpu().numpy()
        bps[idx.numpy()] = torch.softmax(bp, 1).float().cpu().numpy()
    probs, bps = gather_rows(dist_info, len(records), mine, probs[mine], bps[mine])
    return probs, bps
