"""Model stage: the U-Net, losses, model folders and versions, devices and strategies."""
