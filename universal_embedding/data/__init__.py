"""Data: registry, info files, TFRecords, preprocessing and tf.data pipelines.

Importing this package does not import TensorFlow; its TF modules do.
"""
