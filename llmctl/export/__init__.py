"""What leaves a run: merged safetensors, ONNX (and the ONNX runtime model), the Hub push.
"""
