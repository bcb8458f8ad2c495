"""The version of metalqr.

A leaf module, so that any module can read it without importing the package ``__init__``
(no import cycle).
"""

#: The version of metalqr (the one place it is stated besides pyproject.toml; a test checks
#: that they agree).
__version__ = "0.1.0"
