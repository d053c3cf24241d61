"""Data stage: normalization, flat field, foreground, augmentation, patches, tf.data pipeline."""
