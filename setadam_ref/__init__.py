"""setadam_ref: the float64 reference of Adam (every torch.optim/optax convention) and SET-Adam.

Pure functions on NumPy arrays; every intermediate of a step can be recorded (``trace=True``).
The mathematics is documented in docs/ with the same symbols.
"""

from __future__ import annotations

from . import stages, stepsize
from .config import AdamConfig, Config, SETAdamConfig
from .errors import NonFiniteError
from .layers import Layers, default_layers, validate_layers
from .state import STATE_SCHEMA_VERSION, State, StateFileError, init, load_state, save_state
from .step import step
from .trace import ADAM_STAGES, STAGES, AdamTrace, LayerStats, SETAdamTrace, Trace
from .trajectory import Trajectory, run

__version__ = "0.1.0"

__all__ = [
    "ADAM_STAGES",
    "STAGES",
    "STATE_SCHEMA_VERSION",
    "AdamConfig",
    "AdamTrace",
    "Config",
    "LayerStats",
    "Layers",
    "NonFiniteError",
    "SETAdamConfig",
    "SETAdamTrace",
    "State",
    "StateFileError",
    "Trace",
    "Trajectory",
    "__version__",
    "default_layers",
    "init",
    "load_state",
    "run",
    "save_state",
    "stages",
    "step",
    "stepsize",
    "validate_layers",
]
