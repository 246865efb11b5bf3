"""inforates: how much temporal information does a video model need?"""

__version__ = "0.1.0"
