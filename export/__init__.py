"""ONNX export (needs the [train] extra: torch and onnx). Imported only by `vaectl export`.

`export.mixture` (the prior's EM) is numpy only; the rest needs torch and onnx."""

__all__ = ["ExportResult", "export_model"]


def __getattr__(name):  # lazy: vaectl.export.mixture imports without torch
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'vaectl.export' has no attribute {name!r}")
