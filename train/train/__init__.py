"""Training, benchmarking and ONNX export for synthscan's real-vs-generated image classifiers."""
