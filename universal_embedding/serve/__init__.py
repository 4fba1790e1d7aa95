"""Serving without the training stack: embed_onnx.py (numpy, Pillow, onnxruntime, simplejpeg;
copied beside each exported model.onnx) and onnx_model.py (the jax2onnx conversion, run by
`universal_embedding.export --format=onnx`). Importing this package imports nothing.
"""
