"""Scorers and filters: pure Python functions first, then their Spark Column or UDF forms."""
