"""Make wokkel 18 importable on current Twisted.

wokkel 18 (2018) imports ``twisted.python.compat._PY3`` and ``twisted.python.constants``;
Twisted has since removed both (the constants live on as the ``constantly`` package). This
module puts the two names back, once, and is imported by ``bridge/__init__.py`` so it runs
before any wokkel module is loaded.
"""

import sys

import constantly
import twisted.python.compat

if not hasattr(twisted.python.compat, "_PY3"):
    twisted.python.compat._PY3 = True  # type: ignore[attr-defined]

try:
    import twisted.python.constants
except ImportError:
    sys.modules["twisted.python.constants"] = constantly
