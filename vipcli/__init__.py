"""vip: visual symptom-guided prompt learning (ViP, MICCAI 2024) for medical images."""

__version__ = "0.2.0"
