"""What the observer flavours share about their options: the marker of an option not given."""

from __future__ import annotations

from typing import Any

#: The default of an option whose real default is decided when the observer is made (the
#: console is the ``sys.stdout`` of that moment).
UNSET: Any = object()
