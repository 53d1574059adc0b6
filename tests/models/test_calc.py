"""The calculation form: results people can read, refusals, and no raw calculation text in a reply."""

import random

import pytest

from models.calc import CLOSE, OPEN, RAW, CalcError, calculate, finish_reply
from models.turns import Turn


@pytest.mark.parametrize(("expression", "result"), [
    ("15% * 80", "12"),  # the README's example the shipped model got wrong ("1.5")
    ("15% of 80", "12"),
    ("80*0.15=1.5", "12"),  # a GSM8K-style claimed answer is recomputed, not trusted
    ("100 / 3", "33.33"),
    ("1/7", "0.143"),
    ("1234567 * 3", "3,703,701"),
    ("2^10", "1,024"),
    ("(12 + 8) * 3 - 4", "56"),
    ("$87.40 / 4", "$21.85"),
    ("$120 * 18%", "$21.60"),
    ("€45 * 20%", "€9"),
    ("£1,200 / 3", "£400"),
    ("$24.99 / 2", "$12.50"),  # half up, as people round money (the float is 12.4949...)
    # A percentage added to or taken from an amount is a share of it, as on a phone calculator.
    ("$60 - 25%", "$45"),  # the price after 25% off (the shipped model wrote <<$60 * 25%>>: the discount)
    ("£150 + 20%", "£180"),  # plus VAT
    ("($120 + 15%) / 4", "$34.50"),  # tip, then split
    ("$60 * (1 - 25%)", "$45"),  # the long way gives the same
    ("$60 - 25% of $60", "$45"),
    ("100% - 20%", "0.8"),  # two percentages: plain hundredths
    ("sqrt(144)", "12"),
    ("sqrt(2) * 3", "4.24"),
])
def test_arithmetic(expression, result):
    assert calculate(expression) == result


@pytest.mark.parametrize(("expression", "result"), [
    ("5 mi to km", "8.05 km"),
    ("10 km to mi", "6.21 mi"),
    ("350 F to C", "177 °C"),
    ("350°F to °C", "177 °C"),
    ("-40 C to F", "-40 °F"),
    ("100 C to F", "212 °F"),
    ("2 cups to ml", "473 ml"),
    ("1 gallon to liters", "3.79 L"),
    ("72 kg to lb", "159 lb"),
    ("100 lbs in kg", "45.4 kg"),
    ("5 in to cm", "12.7 cm"),
    ("6 ft 2 in to cm", "188 cm"),
    ("60 mph to kph", "96.6 km/h"),
    ("1 l to fl oz", "33.8 fl oz"),
    ("750 ml to oz", "25.4 fl oz"),  # "oz" of a liquid: fluid ounces
    ("8 oz to g", "227 g"),  # of a solid: the mass ounce still
    ("3 km + 500 m", "3.5 km"),
    ("2 hours 30 min to min", "150 min"),
    ("500 ml to cup", "2.11 cups"),
    ("4 * 13.50 + 2 * 8.90", "71.80"),  # amounts in cents stay in cents
    ("1 nautical mile to km", "1.85 km"),
    ("2 acres to square meters", "8,094 m²"),
    ("100 sq ft to m^2", "9.29 m²"),
    ("1 hectare to acre", "2.47 acres"),
    ("1 cup to ml", "237 ml"),
    ("236.6 ml to cup", "1 cup"),
    ("5 km + 10%", "5.5 km"),
])
def test_unit_conversions(expression, result):
    assert calculate(expression) == result


@pytest.mark.parametrize("expression", [
    "__import__('os').system('ls')",  # names that are not units
    "x + 1",
    "open",
    "(1).real",  # attributes
    "().__class__",
    "[1, 2][0]",  # subscripts, lists
    "abs(-3)",  # calls (sqrt is the one function)
    "sqrt(9, 1)",
    "sqrt(x)",
    "sqrt(-1)",  # no real result
    "(-8) ^ 0.5",
    "lambda: 1",
    "9**9**9",  # huge powers
    "2 ** 1000",
    "1e300 * 1e300",
    "1 / 0",  # division by zero
    "5 / (3 - 3)",
    "0 ** -1",
    "1 + " * 60 + "1",  # long inputs
    "9" * 200,
    "5 kg to km",  # incompatible units
    "2 m to oz",  # a length is neither a mass nor a volume
    "12 to km",  # nothing to convert
    "",
    "$5 + €5",
])
def test_refusals(expression):
    with pytest.raises(CalcError):
        calculate(expression)


def test_a_reply_shows_only_results():
    assert finish_reply("15% of 80 is <<15% * 80>>.") == "15% of 80 is 12."
    assert finish_reply("Each of you pays <<$87.40 / 4>>.") == "Each of you pays $21.85."
    assert finish_reply("No calculation here.") == "No calculation here."


def test_a_failed_calculation_drops_its_sentence():
    assert finish_reply("That's <<1/0>> each. Split it evenly.") == "Split it evenly."
    assert finish_reply("<<os.system('rm')>>") == ""  # nothing left: the bot's "could not answer" path
    assert finish_reply("It is <<80*0.15") == ""  # cut off mid-calculation


def test_no_raw_calculation_text_ever_reaches_a_person():
    """Random fragments around the markers, well formed or not: the markers never survive."""
    rng = random.Random(7)
    pieces = [OPEN, CLOSE, "1/0", "15% * 80", "5 mi to km", "x", ". ", "It is ", "so ", "__class__", "<", ">"]
    for _ in range(500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 10)))
        out = finish_reply(text)
        assert RAW.search(out) is None, (text, out)


def test_code_with_shift_and_redirect_operators_is_left_alone():
    """Previously any << or >> was treated as a calculation marker and removed."""
    assert finish_reply("Use `echo hi >> log.txt` to append.") == "Use `echo hi >> log.txt` to append."
    assert finish_reply("In C, 1 << 3 is 8.") == "In C, 1 << 3 is 8."


def test_the_engine_finishes_its_replies(engine, monkeypatch):
    """The engine's reply path evaluates the calculation the model wrote."""
    monkeypatch.setattr(engine.tokenizer, "decode", lambda ids, **kwargs: "It's <<15% * 80>>. Or <<1/0>>.")
    window = [Turn.user("Ana", "@assistant what's 15% of 80?")]
    assert engine.reply(window, key="calc") == "It's 12."
