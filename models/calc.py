"""Exact numbers in replies: the model writes a calculation, the engine writes its result.

A small model recalls numbers badly ("15% of 80 is 1.5"), so a reply that states
a computed number carries the calculation instead, in one fixed form::

    <<15% * 80>>            ->  12
    <<$87.40 / 4>>          ->  $21.85
    <<5 mi to km>>          ->  8.05 km
    <<350 F to C>>          ->  176.7 °C
    <<2 cups to ml>>        ->  473.2 ml

``<<`` and ``>>`` are one token each in the SmolLM2 tokenizer, and people do not
type them around arithmetic by accident. Inside: numbers, ``+ - * / ^ **``,
brackets, ``N%`` (N hundredths), ``of`` (times), ``sqrt(...)``, one currency sign ($ € £),
units by name (pint's registry: km, mi, lb, kg, cup, ml, degF, ...) and an
optional final ``to UNIT`` / ``in UNIT`` conversion. A GSM8K-style ``=answer``
tail is ignored: the result is always recomputed.

A percentage added to or taken from an amount is a share of that amount, as on
a phone calculator and as people say it: ``<<$60 - 25%>>`` (the price after 25%
off) is $45 and ``<<£150 + 20%>>`` (plus VAT) is £180, not £150.20. Anywhere
else ``N%`` is N hundredths (``<<15% * 80>>`` is 12).

``finish_reply(text)`` replaces each calculation with its result. The
expression is parsed with ``ast`` and only an allow-list of nodes is walked:
no names except units, no attributes, calls or subscripts, bounded powers and
lengths, no division by zero. A sentence whose calculation fails is dropped, so
raw calculation text never reaches a person; a reply left with no words
becomes '' (the bot's "could not answer" path).
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from decimal import ROUND_HALF_UP, Decimal

OPEN, CLOSE = "<<", ">>"
MAX_EXPRESSION_CHARS = 120
MAX_NODES = 60
MAX_EXPONENT = 64
MAX_POWER_BASE = 1e6
MAX_MAGNITUDE = 1e15  # a result this large is not a chat answer; refused
CURRENCY_SIGNS = "$€£"

# A calculation hugs its markers (``<<15% * 80>>``); ``1 << 3`` or ``echo hi >> log`` is code, left alone.
CALC = re.compile(r"<<(?=[^\s<>])([^<>\n`]*?)(?<=[^\s<>])>>")
RAW = re.compile(r"<<(?=[^\s<>])|(?<=[^\s<>])>>")  # what is left of a calculation that was not evaluated
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PLACEHOLDER = "\x00{}\x00"
_PLACEHOLDER_RE = re.compile("\x00(\\d+)\x00")

# Words and signs people and models use that pint spells differently.
_UNIT_ALIASES = [
    (r"°\s*F\b|\bdeg\s*F\b|\bfahrenheit\b", "degF"),
    (r"°\s*C\b|\bdeg\s*C\b|\bcelsius\b|\bcentigrade\b", "degC"),
    (r"\bfl\.?\s*oz\b", "floz"),
    (r"\bkph\b|\bkm/h\b", "kph_"),
    (r"\bnautical\s+miles?\b", "nmi"),
    (r"\b(?:sq|square)\s*(?:ft|feet|foot)\b", "ft**2"),
    (r"\b(?:sq|square)\s*(?:km|kilomet(?:er|re)s?)\b", "km**2"),
    (r"\b(?:sq|square)\s*(?:mi|miles?)\b", "mi**2"),
    (r"\b(?:sq|square)\s*(?:m|met(?:er|re)s?)\b|\bm2\b", "m**2"),
    (r"(?<=\d)\s*in\b", " inch"),  # "5 in to cm": inches, not the keyword
]
_UNIT_DISPLAY = {"l": "L", "cp": "cups", "fl_oz": "fl oz", "floz": "fl oz", "gal": "gallons",
                 "mi/h": "mph", "kph_": "km/h", "kph": "km/h", "acre": "acres"}
_SINGULAR = {"cups": "cup", "gallons": "gallon", "acres": "acre"}  # "1 cup", "2.47 acres"
_TEMPERATURE_WORDS = {"f": "degF", "degf": "degF", "c": "degC", "degc": "degC", "k": "kelvin", "kelvin": "kelvin"}
_TEMPERATURE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]+)\s+(?:to|in)\s+([A-Za-z]+)\s*$")
_CONVERSION = re.compile(r"^(.*\S)\s+(?:to|in|into)\s+([A-Za-z_°][\w°/*\s^]*)$")

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class CalcError(ValueError):
    """A calculation that cannot or may not be evaluated."""


@functools.cache
def _units():
    import pint

    registry = pint.UnitRegistry(autoconvert_offset_to_baseunit=False)
    registry.define("kph_ = kilometer / hour = kph")
    return registry


# -- evaluation -------------------------------------------------------------------


def evaluate(expression: str):
    """The value of one calculation (a number or a pint Quantity); raises CalcError."""
    text = expression.split("=", 1)[0].strip()  # "80*0.15=12": the model's own answer is not trusted
    if not text:
        raise CalcError("empty calculation")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalcError("calculation too long")
    temperature = _temperature(text)
    if temperature is not None:
        return temperature
    target = None
    conversion = _CONVERSION.match(text)
    if conversion:
        text, target = conversion.group(1), _unit(_normalise(conversion.group(2)))
    value = _walk(_parse(_normalise(text)))
    if target is not None:
        value = _convert(value, target)
    _check_magnitude(value)
    return value


def _temperature(text: str):
    """``350 F to C``: temperatures are offsets, so they convert directly, never through arithmetic."""
    match = _TEMPERATURE.match(text.replace("°", "deg"))
    if not match:
        return None
    source = _TEMPERATURE_WORDS.get(match.group(2).lower())
    target = _TEMPERATURE_WORDS.get(match.group(3).lower())
    if source is None or target is None:
        return None
    return _units().Quantity(float(match.group(1)), source).to(target)


def _normalise(text: str) -> str:
    for pattern, replacement in _UNIT_ALIASES:
        text = re.sub(pattern, replacement, text, flags=re.IGNORECASE)
    text = text.replace("×", "*").replace("÷", "/").replace("^", "**").replace("−", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,200 -> 1200
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1@100)", text)  # 15% -> (15@100): a percentage node
    text = re.sub(r"\bof\b", "*", text)
    text = re.sub(r"([A-Za-z])\s+(?=\d)", r"\1 + ", text)  # 6 ft 2 inch -> 6 ft + 2 inch
    text = re.sub(r"(\d)\s*([A-Za-z_])", r"\1*\2", text)  # 5 km -> 5*km
    text = re.sub(r"\)\s*(?=[\d(A-Za-z_])", ")*", text)  # (1/100) 80 -> (1/100)*80
    return text


def _parse(text: str) -> ast.expr:
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as error:
        raise CalcError(f"not a calculation: {text!r}") from error
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalcError("calculation too long")
    return tree.body


def _is_percentage(node: ast.expr) -> bool:
    """``N%``, which ``_normalise`` writes as ``(N@100)``: the one use of ``@`` in a calculation."""
    return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult)
            and all(isinstance(side, ast.Constant) for side in (node.left, node.right)))


def _walk(node: ast.expr):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name):
        return _unit(node.id)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand))
    if _is_percentage(node):
        return node.left.value / node.right.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt"
            and len(node.args) == 1 and not node.keywords):
        return _walk(ast.BinOp(node.args[0], ast.Pow(), ast.Constant(0.5)))
    if (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub))
            and _is_percentage(node.right) and not _is_percentage(node.left)):
        # "$60 - 25%": the price after 25% off; "£150 + 20%": plus 20% of itself.
        share = _walk(node.right)
        return _walk(ast.BinOp(node.left, ast.Mult(), ast.Constant(1 + share if isinstance(node.op, ast.Add)
                                                                     else 1 - share)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        if isinstance(node.op, ast.Div) and _magnitude(right) == 0:
            raise CalcError("division by zero")
        try:
            value = _BINARY[type(node.op)](left, right)
        except (ArithmeticError, TypeError, ValueError) as error:
            raise CalcError(str(error)) from error
        except Exception as error:  # pint's own errors (incompatible or offset units)
            raise CalcError(f"{type(error).__name__}: {error}") from error
        _check_magnitude(value)
        return value
    raise CalcError(f"not allowed in a calculation: {type(node).__name__}")


def _unit(name: str):
    """A unit of the registry as a quantity of 1; any other name is refused."""
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z_°][\w°]*(?:\s*(?:/|\*\*?)\s*[A-Za-z_\d°][\w°]*)*", name) or name.startswith("_"):
        raise CalcError(f"not a unit: {name!r}")
    try:
        return _units().Quantity(1, _units().parse_units(name))
    except Exception as error:  # pint raises several unrelated types for unknown names
        raise CalcError(f"not a unit: {name!r}") from error


# People (and the model) write "oz" for a liquid too: a volume converted to a mass
# ounce means fluid ounces ("750 ml to oz" is 25.4 fl oz, not an error).
_VOLUME_NAMES = {"ounce": "fluid_ounce"}


def _convert(value, target):
    if not hasattr(value, "to"):
        raise CalcError("nothing to convert: the calculation has no unit")
    try:
        return value.to(target.units)
    except Exception as error:  # pint.DimensionalityError and friends
        volume_name = _VOLUME_NAMES.get(str(target.units))
        if volume_name and value.check("[volume]"):
            return value.to(volume_name)
        raise CalcError(f"cannot convert: {error}") from error


def _magnitude(value) -> float:
    return float(getattr(value, "magnitude", value))


def _check_power(base, exponent) -> None:
    if hasattr(exponent, "units") and not exponent.dimensionless:
        raise CalcError("a power must be a plain number")
    if abs(_magnitude(exponent)) > MAX_EXPONENT or abs(_magnitude(base)) > MAX_POWER_BASE:
        raise CalcError("power too large")
    if _magnitude(base) == 0 and _magnitude(exponent) < 0:
        raise CalcError("division by zero")


def _check_magnitude(value) -> None:
    if isinstance(getattr(value, "magnitude", value), complex):  # (-1) ** 0.5
        raise CalcError("no real result")
    magnitude = _magnitude(value)
    if not math.isfinite(magnitude) or abs(magnitude) >= MAX_MAGNITUDE:
        raise CalcError("result out of range")


# -- formatting -------------------------------------------------------------------


def format_number(value: float, *, money: bool = False, significant: bool = False) -> str:
    """A number the way people write it: thousands separators, sensible rounding, no float noise.

    Money has two decimals unless whole; plain numbers up to two decimals (small
    ones three significant digits); measured quantities (``significant``) keep
    three significant digits (at most two decimals).
    """
    if money:
        # Half up on the shortest decimal form: 24.99 / 2 is 12.495, which people round to 12.50.
        rounded = float(Decimal(repr(value)).quantize(Decimal("0.01"), ROUND_HALF_UP))
        return f"{rounded:,.0f}" if rounded == int(rounded) else f"{rounded:,.2f}"
    if value == 0:
        return "0"
    size = math.floor(math.log10(abs(value)))
    if significant:
        decimals = min(2, max(0, 2 - size))
    else:
        decimals = 2 if size >= 0 else min(6, 2 - size)
    rounded = round(value, decimals)
    if rounded == int(rounded):
        return f"{int(rounded):,}"
    return f"{rounded:,.{decimals}f}".rstrip("0").rstrip(".")


def format_result(value, currency: str = "") -> str:
    if hasattr(value, "units"):
        if value.dimensionless:
            value = value.to("dimensionless").magnitude
        else:
            number = format_number(float(value.magnitude), significant=True)
            unit = _UNIT_DISPLAY.get(f"{value.units:~P}", f"{value.units:~P}")
            if number == "1":
                unit = _SINGULAR.get(unit, unit)
            return f"{currency}{number} {unit}".strip()
    if currency:
        sign = "-" if value < 0 else ""
        return f"{sign}{currency}{format_number(abs(float(value)), money=True)}"
    return format_number(float(value))


def calculate(expression: str) -> str:
    """One calculation's result as text; raises CalcError."""
    signs = {c for c in expression if c in CURRENCY_SIGNS}
    if len(signs) > 1:
        raise CalcError("mixed currencies")
    currency = signs.pop() if signs else ""
    for sign in CURRENCY_SIGNS:
        expression = expression.replace(sign, "")
    value = evaluate(expression)
    if not currency and not hasattr(value, "units") and re.search(r"\d\.\d\d(?!\d)", expression):
        return format_number(float(value), money=True)  # "13.50 * 4": amounts in cents stay in cents
    return format_result(value, currency)


# -- replies ----------------------------------------------------------------------


def finish_reply(text: str) -> str:
    """The reply with every ``<<calculation>>`` replaced by its result.

    A sentence holding a calculation that fails (or an unclosed ``<<``) is
    dropped; stray markers are removed; a reply with no words left is ''.
    """
    if not RAW.search(text):
        return text
    results: list[str | None] = []

    def hold(match: re.Match) -> str:
        try:
            results.append(calculate(match.group(1)))
        except CalcError:
            results.append(None)
        return _PLACEHOLDER.format(len(results) - 1)

    held = CALC.sub(hold, text)
    kept = []
    for sentence in SENTENCE_END.split(held):
        held_results = [results[int(i)] for i in _PLACEHOLDER_RE.findall(sentence)]
        failed = RAW.search(sentence) is not None or None in held_results
        if not failed:
            kept.append(_PLACEHOLDER_RE.sub(lambda m: results[int(m.group(1))], sentence))
    reply = " ".join(kept)
    while RAW.search(reply):  # removing one marker can join two halves into another
        reply = RAW.sub("", reply)
    reply = re.sub(r"\s{2,}", " ", reply).strip()
    return reply if re.search(r"\w", reply) else ""
