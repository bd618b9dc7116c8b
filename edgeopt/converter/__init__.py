"""The converter: the only part of edgeopt that imports TensorFlow.

tfmot works only with Keras 2 (tf_keras), so TF_USE_LEGACY_KERAS must be set before TensorFlow is
first imported; importing this package does that (and quiets TensorFlow's C++ start-up logging).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
