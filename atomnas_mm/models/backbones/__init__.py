from .atomnas import AtomNASNet

__all__ = ['AtomNASNet']
