"""Deployment: a run exported as one ONNX graph, and predictions from it with onnxruntime
alone (``onnx_model`` imports neither PyTorch nor Lightning)."""
