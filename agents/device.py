"""Where tensors live: the ``--device`` and ``--dtype`` choices resolved once, with clear errors.

``auto`` means CUDA when torch sees a GPU, else the CPU; there is no silent fallback: asking for
``cuda`` on a machine without one is an error that says what to do. The default dtype follows
the device: bfloat16 on a GPU, float32 on a CPU (bf16 matmuls are slow on most CPUs).
"""

from __future__ import annotations

import os
import platform
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

DeviceName = Literal["auto", "cpu", "cuda"]
DtypeName = Literal["auto", "float32", "bfloat16"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
INSTALL_HINT = "training needs torch and transformers: pip install -e .[agents]"


def torch_module() -> types.ModuleType:
    """torch, or an ImportError that says what to install."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(INSTALL_HINT) from error
    return torch


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a ``--device`` value.

    Raises:
        ValueError: for ``cuda`` when no CUDA device is visible, or an unknown name.
    """
    torch = torch_module()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False, "
                f"torch {torch.__version__}); use --device cpu, or --device auto to take a GPU "
                "only when there is one"
            )
        return torch.device("cuda")
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; expected one of {DEVICES}")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The weights' dtype for a ``--dtype`` value on ``device`` (``auto``: bf16 on GPU, fp32 on CPU)."""
    torch = torch_module()
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if name not in choices:
        raise ValueError(f"unknown dtype {name!r}; expected auto, float32 or bfloat16")
    return choices[name]


def model_device(model: Any) -> torch.device:
    """The device a model's weights are on."""
    return next(model.parameters()).device


def machine_description(device: Any) -> dict[str, Any]:
    """What a figure was measured on: CPU model and vector extension, load, versions, GPU."""
    import torch

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    machine: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    return machine
