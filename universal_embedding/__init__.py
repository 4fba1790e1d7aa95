"""universal_embedding: universal image embeddings on UnED, in JAX.

`from universal_embedding import Embedder` (the Python API, universal_embedding/api.py) is
imported on first use, so importing the package alone stays light. Importing it quiets the
libraries' warnings and banners unless UE_VERBOSE=1 or --verbose (errors/quiet.py).
"""

from __future__ import annotations

from universal_embedding.errors import quiet as _quiet

_quiet.tensorflow_defaults()
_quiet.install()

__version__ = "0.1.0"
__all__ = ["Embedder", "__version__"]


def __getattr__(name: str):
    if name == "Embedder":
        from universal_embedding.api import Embedder

        return Embedder
    raise AttributeError(f"module 'universal_embedding' has no attribute '{name}'")
