"""Models: ``Model`` (functional chains), ``Sequential``, and saving/loading."""
from pynn.models.model import Model
from pynn.models.sequential import Sequential


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a model written by ``model.save`` (see pynn.models.saving.load_model)."""
    from pynn.models.saving import load_model as _load_model  # zipfile etc. on first use

    return _load_model(filepath, custom_objects=custom_objects, compile=compile,
                       safe_mode=safe_mode)


def save_model(model, filepath, overwrite=True, **kwargs):
    """Save ``model`` to one file (see pynn.models.saving.save_model)."""
    from pynn.models.saving import save_model as _save_model

    return _save_model(model, filepath, overwrite=overwrite, **kwargs)

__all__ = ["Model", "Sequential", "load_model", "save_model"]
