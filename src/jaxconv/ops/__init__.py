"""Pure functional convolution primitives (jax only: no flax, optax or hydra)."""

from jaxconv.ops.backends import BACKENDS as BACKENDS
from jaxconv.ops.backends import names as backend_names
from jaxconv.ops.backends import register_backend as register_backend
from jaxconv.ops.conv import conv as conv
from jaxconv.ops.conv import conv_transpose as conv_transpose
from jaxconv.ops.conv import explain_backend as explain_backend
from jaxconv.ops.lax_compat import conv_general_dilated as conv_general_dilated
from jaxconv.ops.padding import pad as pad
from jaxconv.ops.policy import ConvProblem as ConvProblem
from jaxconv.ops.policy import Plan as Plan
from jaxconv.ops.policy import plan as plan
from jaxconv.ops.policy import select as select_backend
from jaxconv.ops.pooling import adaptive_avg_pool as adaptive_avg_pool
from jaxconv.ops.pooling import adaptive_max_pool as adaptive_max_pool
from jaxconv.ops.pooling import avg_pool as avg_pool
from jaxconv.ops.pooling import global_avg_pool as global_avg_pool
from jaxconv.ops.pooling import global_max_pool as global_max_pool
from jaxconv.ops.pooling import lp_pool as lp_pool
from jaxconv.ops.pooling import max_pool as max_pool
from jaxconv.ops.pooling import min_pool as min_pool
from jaxconv.ops.signal import convolve as convolve
from jaxconv.ops.signal import correlate as correlate
