"""The pay page's script reads a typed amount by the server's rule: for every input,
either the same minor units as `parse_amount_input`, or no preview (null) — never another
amount. Runs the function from portal/static/js/portal.js in Node when it is installed."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from babel.numbers import list_currencies

from portal.inputs import AmountInputError, AmountProblem, amount_reading, parse_amount_input
from portal.money import Money

SCRIPT = Path(__file__).parents[2] / "portal" / "static" / "js" / "portal.js"
NODE = shutil.which("node") or shutil.which("nodejs")

HAND_PICKED = [
    "1,000.50", "1.000,50", "1 000,50", "1\u00a0000,50", "1\u202f000,50", "1000.50", "1000,50",
    "1,000", "1.000", "1.234,567", "1,234.567", "12,34", "12.34", ".50", "12.", "0,500",
    "1,00,0", "1,000,00", "1.00.000", "10 00", "1,000,000", "1.000.000", "1.000 000",
    "1 000.50", "1 000.000,50", "$1,062.75", "US$1,062.75", "1.062,75 €", "1.062,75 US$",
    "1\u202f062,75\u00a0$US", "€12", "12 EUR", "abc", "NaN", "Infinity", "1e3", "1_000",
    "１２", "+5", "-5", "\u22125", "-$5", "$-5", "0", "-0", "0,00", "1.005", "33.330",
    "12,5", " 12 ", "", "   ", ".", ",", "$", "9" * 20, "1" + "0" * 15, "999999,99",
    "1.0005", "0.001.000", "12\t50", "¥1,000", "KWD 1.234,567", "1 000", "100.000",
]  # fmt: skip


def _generated() -> list[str]:
    pieces = ["1", "12", "123", "1234", "0", ".", ",", " ", "\u202f", "000", "50", "5"]
    return ["".join(p) for n in (2, 3) for p in itertools.product(pieces, repeat=n)]


def _server(text: str, currency: str, locale: str) -> int | None:
    try:
        return parse_amount_input(text, currency, locale, allow_zero=True).minor
    except AmountInputError:
        return None


def _cases() -> list[list[object]]:
    cases = []
    for currency, exponent in (("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3)):
        for locale in ("en", "es", "fr", "de"):
            decimal, signs = amount_reading(currency, locale)
            cases.append([currency, locale, decimal, exponent, json.loads(signs)])
    return cases


def _script(cases: list[list[object]], texts: list[str]) -> list[tuple[int | None, dict]]:
    """readAmount's answer and `why` for every text in every case, case after case (an
    empty text's undefined as -1), run in Node."""
    source = SCRIPT.read_text()
    start = source.index("  function count(text, char)")
    end = source.index("  function setUpPreview(form)")
    program = (
        source[start:end]
        + "\nvar input = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        + "var out = [];\n"
        + "input.cases.forEach(function (c) { input.texts.forEach(function (t) {\n"
        + "  var why = {}; var v = readAmount(t, c[2], c[3], c[4], why);\n"
        + "  out.push([v === undefined ? -1 : v, why]);\n"
        + "}); });\n"
        + "process.stdout.write(JSON.stringify(out));\n"
    )
    done = subprocess.run(
        [NODE, "-e", program],
        input=json.dumps({"cases": cases, "texts": texts}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [(value, why) for value, why in json.loads(done.stdout)]


@pytest.mark.skipif(NODE is None, reason="Node is not installed")
def test_the_script_reads_amounts_as_the_server_does_or_not_at_all() -> None:
    inputs = HAND_PICKED + _generated()
    cases = _cases()
    results = iter(_script(cases, inputs))
    disagreements, previews = [], 0
    for currency, locale, *_rest in cases:
        for text in inputs:
            script, _why = next(results)
            if script == -1:
                assert not text.strip(), text  # empty: "pay the total"
                continue
            if script is None:
                continue  # no preview: always safe
            previews += 1
            server = _server(text, currency, locale)
            if script != server:
                disagreements.append((currency, locale, text, script, server))
    assert disagreements == []
    assert previews > 500  # the script previews what the server reads, not nothing
    assert re.search(r'useGrouping: "always"', SCRIPT.read_text())


# What the page says live of an amount it cannot preview, against the server's reason
# (its problem, and for NOT_A_NUMBER which of its two sentences).
AS_A_NUMBER = "Please enter the amount as a number, for example 120.50."
SAME_REASON = {
    "ambiguous": AmountProblem.AMBIGUOUS,
    "negative": AmountProblem.NEGATIVE,
    "decimals": AmountProblem.TOO_MANY_DECIMALS,
    "currency": AmountProblem.OTHER_CURRENCY,
    "large": AmountProblem.TOO_LARGE,  # the pay page: "You can pay at most …"
    "number": AmountProblem.NOT_A_NUMBER,  # AS_A_NUMBER
    "invalid": AmountProblem.NOT_A_NUMBER,  # "Please enter a valid amount."
}
REASON_INPUTS = [
    "12 EUR", "EUR 12", "12eur", "12EUR", "12 GBP", "CHF 12", "12 DEM", "12 ABC", "12 DM",
    "1e3", "1,00,000", "１２", "١٢", "1.234.567", "-1.005", "-abc", "-€5", "€-5", "$-5",
    "-" + "9" * 20, "-1" + "0" * 15, "1" + "0" * 15, "1" + "0" * 15 + ".5", "-$1,000.505",
    "x" * 65, "9" * 17, "-", "$", "US$", "12 usd", "USD12", "<img src=x>1.000",
]  # fmt: skip


@pytest.mark.skipif(NODE is None, reason="Node is not installed")
def test_what_the_script_cannot_preview_it_explains_with_the_servers_reason() -> None:
    inputs = HAND_PICKED + REASON_INPUTS + _generated()
    cases = _cases()
    results = iter(_script(cases, inputs))
    wrong, ambiguous, reasons = [], 0, set()
    for currency, locale, *_rest in cases:
        for text in inputs:
            script, why = next(results)
            if script is not None:
                continue
            try:
                parse_amount_input(text, str(currency), str(locale), allow_zero=True)
            except AmountInputError as refused:
                problem, message = refused.problem, refused.message
            else:  # read by the server, but beyond any amount owed: "at most …" on /pay
                problem, message = AmountProblem.TOO_LARGE, ""
            reasons.add(why["problem"])
            if problem is not SAME_REASON[why["problem"]]:
                wrong.append((currency, locale, text, why, problem))
            elif problem is AmountProblem.NOT_A_NUMBER and (message == AS_A_NUMBER) != (
                why["problem"] == "number"
            ):
                wrong.append((currency, locale, text, why, message))
            elif why["problem"] == "ambiguous":
                # the same two readings as the server's sentence, and what was typed
                ambiguous += 1
                small = Money(why["small"], str(currency)).format(str(locale))
                large = Money(why["large"], str(currency)).format(str(locale))
                if f"“{why['text']}” could mean {small} or {large}." not in message:
                    wrong.append((currency, locale, text, why, message))
    assert wrong == []
    assert ambiguous > 100
    assert reasons == set(SAME_REASON)


@pytest.mark.skipif(NODE is None, reason="Node is not installed")
def test_the_script_knows_the_currency_codes_the_server_knows() -> None:
    source = SCRIPT.read_text()
    listed = re.search(r"var CURRENCY_CODES = \(\n(.*?)\n  \)\.split", source, re.S)
    assert listed is not None
    codes = "".join(re.findall(r'"([^"]*)"', listed.group(1))).split(" ")
    assert codes == sorted(list_currencies()), "write CURRENCY_CODES from list_currencies()"
