"""A daily research-papers newsletter: load a batch of papers, render a
responsive email, and deliver it to subscribers."""

__version__ = "0.1.0"
