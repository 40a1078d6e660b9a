"""ONNX export (needs the [train] extra: torch and onnx). Imported only by `vaectl export`."""

__all__ = ["ExportResult", "export_model"]


def __getattr__(name):  # lazy: importing vaectl.export loads neither torch nor onnx
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'vaectl.export' has no attribute {name!r}")
