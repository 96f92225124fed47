"""Lightning systems around the models and the training entry points the workflow calls."""
