"""Error hierarchy: the user's mistakes (EdgeoptError subclasses) vs our bugs (anything else).

Every message says what was wrong, why, and how to fix it.
"""


class EdgeoptError(Exception):
    """Base class for problems the user can fix."""


class RecipeError(EdgeoptError):
    """The recipe (or CLI flags) asks for something invalid. Lists every problem at once."""

    def __init__(self, problems):
        self.problems = list(problems) if not isinstance(problems, str) else [problems]
        super().__init__("invalid recipe:\n" + "\n".join(f"  - {p}" for p in self.problems))


class ModelLoadError(EdgeoptError):
    """The model file is missing, unreadable, corrupt, or of a kind this loader cannot open."""


class DataError(EdgeoptError):
    """Calibration / evaluation / training data is missing or does not match the model."""


class ConversionError(EdgeoptError):
    """One export or optimization step failed; other steps are unaffected."""


class OutputError(EdgeoptError):
    """The output folder cannot be written."""


class BenchmarkError(EdgeoptError):
    """A benchmark request is invalid (bad file, bad thread count, bad data)."""


class TargetError(EdgeoptError):
    """A benchmark target (SSH board, emulator) cannot be reached or cannot run the harness."""
