"""pimcast.host — the host runtime: Device API and backends, PIM configurations, timing, and the
PyTorch drop-in modules (PIMEmbeddingBag, PIMEmbedding) and in-memory optimizers."""
from pimcast.host.device import Device, OutOfDeviceMemory, PIMError, UnknownTableError, open_device
from pimcast.host.pim_config import PIMConfig, load_pim_config

__all__ = ["Device", "open_device", "PIMError", "UnknownTableError", "OutOfDeviceMemory", "PIMConfig",
           "load_pim_config", "PIMEmbeddingBag", "PIMEmbedding", "PIMSGD", "PIMAdagrad", "PIMRowWiseAdagrad"]


def __getattr__(name):  # lazy: importing pimcast.host must not import the nn modules' dependencies eagerly
    if name in ("PIMEmbeddingBag", "PIMEmbedding"):
        from pimcast.host import embedding
        return getattr(embedding, name)
    if name in ("PIMSGD", "PIMAdagrad", "PIMRowWiseAdagrad"):
        from pimcast.host import optim
        return getattr(optim, name)
    raise AttributeError(f"module 'pimcast.host' has no attribute {name!r}")
