"""Model components. Importing this package registers the built-in ones in ddetr_plugin.registry."""
from . import backbone, position_encoding  # noqa: F401  (registration)

# LEAD: once they exist, import the remaining component modules here so they register:
#   from . import transformer, matcher, criterion, postprocessor, meta_arch  # noqa: F401
#   from .meta_arch import build_model
