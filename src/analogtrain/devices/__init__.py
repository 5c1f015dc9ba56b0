"""Device models: the physics of one phase-change memory device and one 3T1C cell.

A device model holds only its config and turns state tensors (conductances, capacitor
voltages) into new state tensors.  It knows nothing of arrays, layers or networks.
"""

from .capacitor import Capacitor3T1C, CapacitorMismatch
from .pcm import PCMDevice, TuningResult

__all__ = ["Capacitor3T1C", "CapacitorMismatch", "PCMDevice", "TuningResult"]
