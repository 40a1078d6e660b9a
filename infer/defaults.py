"""The inference commands' defaults, defined once: the library's functions and the CLI's help read them here.
Imports nothing, so the CLI shows them without loading onnxruntime."""

TRAVERSE_SPAN = 3.0  # traverse: the swept component covers the prior's mean +- this many standard deviations
TRAVERSE_STEPS = 9  # traverse: images per row
GRID_STEPS = 15  # latent.grid_latents: points per side of a 2-D grid of latents
FPS = 8.0  # frames per second of a GIF
