"""Models: ``Model`` (functional chains), ``Sequential``, and saving/loading."""
from pynn.models.model import Model
from pynn.models.sequential import Sequential
from pynn.models.saving import load_model, save_model

__all__ = ["Model", "Sequential", "load_model", "save_model"]
