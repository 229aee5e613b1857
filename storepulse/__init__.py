"""storepulse: marketing analytics and prediction for cross-border DTC merchants."""

__version__ = "0.1.0"
