"""Training-time and post-training optimization techniques, one module each (see ARCHITECTURE.md)."""
