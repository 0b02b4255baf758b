"""City OS: an open-source urban data platform (都市OS) serving the ETSI NGSI-LD API."""

__all__ = ["__version__"]

__version__ = "0.1.0"
