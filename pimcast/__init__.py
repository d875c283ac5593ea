"""pimcast — hardware–software co-design of recommendation-model training on near-memory hardware.

Subpackages: :mod:`pimcast.hdl` (Amaranth RTL), :mod:`pimcast.sim` (cocotb verification),
:mod:`pimcast.host` (runtime), :mod:`pimcast.models` (golden model, recommenders).
"""
__version__ = "0.1.0"
