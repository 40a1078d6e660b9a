"""vaectl: train variational autoencoders with PyTorch, ship them as ONNX, sample without torch.

The package root is torch-free on purpose: `import vaectl` must work on the base install.
"""

__version__ = "0.1.0"
