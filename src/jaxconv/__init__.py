"""jaxconv: convolutional networks in JAX, built from the convolution up.

The functional API lives at the top level::

    import jaxconv
    y = jaxconv.conv(x, kernel, stride=2, padding="SAME", backend="window")
"""

from jaxconv.ops import adaptive_avg_pool as adaptive_avg_pool
from jaxconv.ops import adaptive_max_pool as adaptive_max_pool
from jaxconv.ops import avg_pool as avg_pool
from jaxconv.ops import backend_names as backends
from jaxconv.ops import conv as conv
from jaxconv.ops import conv_general_dilated as conv_general_dilated
from jaxconv.ops import conv_transpose as conv_transpose
from jaxconv.ops import convolve as convolve
from jaxconv.ops import correlate as correlate
from jaxconv.ops import global_avg_pool as global_avg_pool
from jaxconv.ops import global_max_pool as global_max_pool
from jaxconv.ops import lp_pool as lp_pool
from jaxconv.ops import max_pool as max_pool
from jaxconv.ops import min_pool as min_pool
from jaxconv.ops import pad as pad
from jaxconv.ops import register_backend as register_backend

__version__ = "0.1.0"


def __getattr__(name: str):
    """``jaxconv.load_run``, imported on first use: it rebuilds a run from its config
    (Hydra, the models, the training code), which ``import jaxconv`` does not load."""
    if name == "load_run":
        import importlib

        return importlib.import_module("jaxconv.app.load").load_run
    raise AttributeError(f"module 'jaxconv' has no attribute {name!r}")
