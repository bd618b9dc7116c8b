"""optimize(): the candidate space, the Optuna study, the local or Ray runner, the front and the recommendation."""
