"""The benchmark side: runs produced models through LiteRT and onnxruntime. Never imports TensorFlow."""
