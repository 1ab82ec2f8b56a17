"""FedScission Federation Hosting Service (IEEE 2302-style)."""

__version__ = "0.1.0"
