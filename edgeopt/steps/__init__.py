"""Optimization steps: training-time techniques a recipe lists, in order, under `optimize:`.

One module per technique (prune.py, cluster.py, qat.py, distill.py; channels.py with its channel_*.py
helpers, fitted to the step interface by channel_step.py), each a plain function with its
options declared once as a pydantic spec; registry.py collects them in `STEPS`, which recipe validation,
`edgeopt steps` and the tests read. training.py is the fine-tuning recipe every step shares, objective.py
what it optimizes (labels, a teacher's outputs, or both), runner.py the walk the pipeline calls.

Importing this package does not import TensorFlow (step functions import it when they run).
"""

from .registry import STEPS, Step, find_step  # noqa: F401
from .training import FineTuneSpec  # noqa: F401
