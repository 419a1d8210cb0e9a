"""Smack's jivesoftware properties (``http://www.jivesoftware.com/xmlns/xmpp/properties``).

Values go out with the types Smack's ``JivePropertiesExtensionProvider`` reads (``integer``
or ``long`` by range, ``double``, ``boolean``, ``string``) and come back as MongooseIM gave
them, every value as its text, with the types beside. A property Smack itself would not
read (an unknown type, ``java-object``, a number Java refuses) is skipped, never passed on.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from twisted.words.xish import domish

from bridge.protocol.namespaces import NS_PROPERTIES
from bridge.protocol.xml import child

# A property value as the API takes it (JSON string, integer, float or boolean).
PropertyValue = str | int | float | bool

# The Java ranges of Smack's ``integer`` and ``long``.
INTEGER_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
# What ``Integer.valueOf`` / ``Long.valueOf`` read (ASCII digits only: Java also takes other
# Unicode digits, which no Smack writes), and what ``Double.valueOf`` / ``Float.valueOf``
# read once Java's ``trim`` has removed the characters up to U+0020: NaN and Infinity,
# decimals and hexadecimal floats, the last two with an optional type suffix.
_JAVA_INTEGER = re.compile(r"[+-]?[0-9]+\Z")
_JAVA_FLOATING = re.compile(
    r"[+-]?(?:NaN|Infinity"
    r"|(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|0[xX](?:[0-9a-fA-F]+\.?|[0-9a-fA-F]*\.[0-9a-fA-F]+)[pP][+-]?[0-9]+)[fFdD]?)\Z"
)
_JAVA_WHITESPACE = "".join(chr(code) for code in range(0x21))


def smack_reads(kind: str, text: str) -> bool:
    """Whether Smack's ``JivePropertiesExtensionProvider`` reads ``text`` as a ``kind`` value.

    Where it would fail (``Integer.valueOf`` of "1.5", an unknown type, a serialised
    ``java-object``, which the bridge never passes on) the property is skipped.
    """
    if kind in ("string", "boolean"):  # Boolean.valueOf reads any text ("true" or not)
        return True
    if kind in ("integer", "long"):
        low, high = INTEGER_RANGE if kind == "integer" else LONG_RANGE
        return _JAVA_INTEGER.match(text) is not None and low <= int(text) <= high
    if kind in ("double", "float"):
        return _JAVA_FLOATING.match(text.strip(_JAVA_WHITESPACE)) is not None
    return False


def java_double(value: float) -> str:
    """``value`` as Java's ``Double.toString`` writes it ("100.0", "1.0E7", "1.5E-4")."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    assert isinstance(exponent, int)  # a finite value
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    scientific = len(digits) + exponent - 1  # the power of ten of the first digit
    prefix = "-" if sign else ""
    if 1e-3 <= abs(value) < 1e7:
        if scientific < 0:
            return f"{prefix}0.{'0' * (-scientific - 1)}{digits}"
        whole = digits[: scientific + 1].ljust(scientific + 1, "0")
        return f"{prefix}{whole}.{digits[scientific + 1 :] or '0'}"
    return f"{prefix}{digits[0]}.{digits[1:] or '0'}E{scientific}"


def smack_property(value: object) -> tuple[str, str]:
    """(Smack type, value text) of an API property value; ValueError if Smack has no type for it.

    Integers are ``integer`` when they fit Java's int, else ``long``; floats are ``double``
    (finite only: JSON has no NaN, however lenient parsers read it).
    """
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, int):
        if INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1]:
            return "integer", str(value)
        if LONG_RANGE[0] <= value <= LONG_RANGE[1]:
            return "long", str(value)
        raise ValueError("out of the range of a Java long")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return "double", java_double(value)
    if isinstance(value, str):
        return "string", value
    raise ValueError("not a string, number or boolean")


def properties_of(message: domish.Element) -> dict[str, str] | None:
    """Smack's ``<properties/>`` as name -> value text; None when the stanza has none."""
    properties = child(message, "properties", NS_PROPERTIES)
    if properties is None:
        return None
    return _property_map(properties)[0]


def _property_map(properties: domish.Element) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> value text, name -> Smack type) of the properties Smack would read.

    A value without a ``type`` is a string (MongooseIM and older clients wrote them so).
    """
    values: dict[str, str] = {}
    types: dict[str, str] = {}
    for prop in properties.elements(NS_PROPERTIES, "property"):
        name = child(prop, "name", NS_PROPERTIES)
        value = child(prop, "value", NS_PROPERTIES)
        if name is None or value is None or not str(name).strip():
            continue
        kind = value.getAttribute("type") or "string"
        if not smack_reads(kind, str(value)):
            continue
        values[str(name)] = str(value)
        types[str(name)] = kind
    return values, types


def add_properties(result: dict[str, Any], properties: domish.Element) -> None:
    """``properties``, and ``property_types`` when any is not a string, into ``result``."""
    values, types = _property_map(properties)
    result["properties"] = values
    if any(kind != "string" for kind in types.values()):
        result["property_types"] = types
