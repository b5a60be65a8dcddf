"""Zhangdian support-resource map service."""

__version__ = "0.1.0"
