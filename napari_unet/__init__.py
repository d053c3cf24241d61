"""napari-unet: train and apply U-Nets to EM stacks, in napari or from the command line.

Nothing heavy is imported here: TensorFlow is loaded only when a model is
built, trained or loaded.
"""

__version__ = "0.1.0"
