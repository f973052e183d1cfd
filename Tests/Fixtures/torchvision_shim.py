"""Stands in for torchvision when the installed wheel cannot load.

The only torchvision wheel on this package index for torch 2.13.0+cpu is a CUDA build whose extension fails to
load, and Ultralytics' predictor imports torchvision unconditionally (for `torchvision.ops.nms`). If the real one
imports, nothing happens; otherwise a module whose `ops.nms` is Ultralytics' own `TorchNMS.nms` (documented by
Ultralytics as matching torchvision exactly) is installed in its place. Import this before ultralytics.
"""
import sys
import types

try:
    import torchvision  # noqa: F401
except Exception:  # RuntimeError / OSError from the broken extension
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]

    def _nms(boxes, scores, iou_threshold):
        from ultralytics.utils.nms import TorchNMS
        return TorchNMS.nms(boxes, scores, iou_threshold)

    shim = types.ModuleType("torchvision")
    shim.__version__ = "0.28.0"
    shim.ops = types.ModuleType("torchvision.ops")
    shim.ops.nms = _nms
    sys.modules["torchvision"] = shim
    sys.modules["torchvision.ops"] = shim.ops
