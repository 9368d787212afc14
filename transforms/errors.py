"""Errors shared by the stages that load models."""


class ModelUnavailable(RuntimeError):
    """A model's weights cannot be found; the message names the model and how to provide them."""
