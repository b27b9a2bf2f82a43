"""The old import path of `eventlog.stores.jsonl` (the backends moved under `eventlog/stores/`).

The module object *is* `eventlog.stores.jsonl` (put in its place in `sys.modules`), so code
that imports from here, or sets one of its attributes, acts on the real module.
"""

import sys

from eventlog.stores import jsonl as _module
from eventlog.stores.jsonl import *  # noqa: F403 - the same names, for type checkers

sys.modules[__name__] = _module
