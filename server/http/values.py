"""The values a REST body may write into a draft's doc: a string, a boolean, a finite number,
or (for a list field) a list of them, each stored exactly as Yjs holds it, or refused (422).

Yjs holds a number as a float64, and an integer beyond one as an int64 (a BigInt in
JavaScript). pycrdt writes an int as the float64 equal to it when there is one, else as an
int64: every int of -2**63 .. 2**63 - 2 is stored exactly. 2**63 - 1 is not (its float64 is
2**63, which pycrdt writes since it saturates back to 2**63 - 1), and an int beyond 64 bits
makes pycrdt panic (a PanicException, which `except Exception` does not catch). Such an int
was taken as the nearest float, changed without a word: it is refused, naming its field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictBool, StrictFloat, StrictInt, StrictStr

__all__ = ["MAX_EXACT_INT", "MIN_EXACT_INT", "FieldValue", "Scalar"]

MIN_EXACT_INT = -(2**63)
MAX_EXACT_INT = 2**63 - 2

# Bounds in the description only: a bounded int in the union would let an int out of bounds
# through as a StrictFloat (strict mode takes an int for a float), the very silent change.
_Int = Annotated[
    StrictInt, Field(json_schema_extra={"minimum": MIN_EXACT_INT, "maximum": MAX_EXACT_INT})
]
_Plain = StrictStr | StrictBool | _Int | StrictFloat


def _held_exactly(value: Any) -> Any:
    for item in value if isinstance(value, list) else (value,):
        if type(item) is int and not MIN_EXACT_INT <= item <= MAX_EXACT_INT:
            shown = str(item) if len(str(item)) <= 24 else f"an integer of {len(str(item))} digits"
            raise ValueError(
                f"{shown} cannot be stored exactly: Yjs holds integers as float64 or int64, "
                f"exactly from -2**63 to 2**63 - 2"
            )
    return value


Scalar = Annotated[_Plain, AfterValidator(_held_exactly)]
"""One value (a conflict's resolution)."""

FieldValue = Annotated[_Plain | list[_Plain], AfterValidator(_held_exactly)]
"""A `fields` entry of a new draft: one value, or a list field's items."""
