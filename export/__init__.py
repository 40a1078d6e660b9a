"""ONNX export (needs the [train] extra: torch and onnx). Imported only by `vaectl export`."""

from .pipeline import ExportResult, export_model

__all__ = ["ExportResult", "export_model"]
