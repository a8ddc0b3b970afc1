"""The one error type users see: a `ValueError` whose message is a single line."""

__all__ = ["ConvscopeError"]


class ConvscopeError(ValueError):
    """Bad input (file, model, layer, target, tensor). The CLI prints the message and exits 2."""
