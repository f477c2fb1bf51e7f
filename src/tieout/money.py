"""Money: integer minor units plus an ISO-4217 currency, and the only place that knows exponents.

Decimal is used only while parsing; rounding is named (ROUND_HALF_UP unless a caller chooses).
No float ever holds an amount.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Context, Decimal

# ISO 4217 active codes. Exponent 2 unless listed in the exception tables below.
_ISO_CODES = ["AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG"]
_ZERO_DECIMAL = {
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
    "XAF", "XOF", "XPF",
}
_THREE_DECIMAL = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_FOUR_DECIMAL = {"CLF", "UYW"}


def _exponent_of(code: str) -> int:
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    if code in _FOUR_DECIMAL:
        return 4
    return 2


CURRENCY_EXPONENTS: dict[str, int] = {code: _exponent_of(code) for code in _ISO_CODES}


class MoneyError(ValueError):
    """A text is not an amount, or has more precision than its currency allows."""


def is_known_currency(code: str) -> bool:
    return code.upper() in CURRENCY_EXPONENTS


def currency_exponent(code: str) -> int:
    """Number of minor-unit digits of `code` (JPY 0, USD 2, KWD 3)."""
    try:
        return CURRENCY_EXPONENTS[code.upper()]
    except KeyError:
        raise MoneyError(f"unknown currency '{code}' (not an ISO-4217 code)") from None


# An amount once blanks and currency symbols are removed: an optional sign, or parentheses (a
# negative), around plain digits or digits grouped by threes, then an optional fraction. ASCII digits
# only ('١٢' is not an amount in an export). Shared with `normalize`, which applies it on the engine
# (RE2 syntax), so a file and a Python caller accept exactly the same texts.
_NUMBER = r"(?:[0-9]+(?:D[0-9]*)?|D[0-9]+|[0-9]{1,3}(?:G[0-9]{3})+(?:D[0-9]*)?)"


def amount_pattern(decimal_separator: str = ".") -> str:
    """Anchored regular expression (Python and RE2) of an amount text without blanks or symbols."""
    group = "," if decimal_separator == "." else "."
    number = _NUMBER.replace("D", re.escape(decimal_separator)).replace("G", re.escape(group))
    return rf"^(?:\({number}\)|[-+]?{number})$"


_AMOUNT = {sep: re.compile(amount_pattern(sep)) for sep in (".", ",")}


def parse_decimal(text: str, decimal_separator: str = ".") -> Decimal:
    """Parse an amount as finance exports write it: '1,250.00', '$(250.00)', '-250', '1.250,00'.

    Thousands separators must group digits by three: '12,5' is rejected (it is a European decimal
    comma read with the wrong separator), as is '1.250,00' unless `decimal_separator=','`.
    """
    raw = text
    s = text.strip().replace("\u00a0", "").replace(" ", "")
    for symbol in "$€£¥":
        s = s.replace(symbol, "")
    if not _AMOUNT[decimal_separator].fullmatch(s):
        raise MoneyError(f"'{raw}' is not a number")
    negative = s.startswith(("(", "-"))
    s = s.strip("()+-")
    group, point = (",", ".") if decimal_separator == "." else (".", ",")
    value = Decimal(s.replace(group, "").replace(point, "."))
    return value.copy_negate() if negative else value  # exact; unary minus rounds to 28 digits


def _exact_context(amount: Decimal, exp: int) -> Context:
    """A context wide enough that scaling `amount` by 10**exp never rounds (the default keeps 28 digits)."""
    return Context(prec=max(28, len(amount.as_tuple().digits) + exp + 2))


def to_minor_units(amount: Decimal, currency: str, rounding: str | None = None) -> int:
    """Convert a major-unit Decimal to integer minor units.

    Without `rounding`, extra precision is an error (an export never has more digits than its
    currency); with a rounding mode (e.g. ROUND_HALF_UP) it is rounded at the currency's exponent.
    """
    exp = currency_exponent(currency)
    if not amount.is_finite():
        raise MoneyError(f"'{amount}' is not an amount")
    ctx = _exact_context(amount, exp)
    scaled = amount.scaleb(exp, context=ctx)
    integral = scaled.to_integral_value(rounding=rounding or ROUND_HALF_UP, context=ctx)
    if rounding is None and integral != scaled:
        raise MoneyError(f"{amount} has more than {exp} decimal places allowed for {currency.upper()}")
    return int(integral)


def major_text(minor: int, currency: str) -> str:
    """Minor units as the plain decimal an export file writes: 1250.00 USD -> '1250.00', 71000 JPY -> '71000'."""
    exp = currency_exponent(currency)
    if exp == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(minor), 10**exp)
    return f"{sign}{q}.{r:0{exp}d}"


def format_minor(minor: int, currency: str) -> str:
    """'USD 1,234.50' for 123450 USD; 'JPY 71,000' for 71000 JPY."""
    exp = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    units, cents = divmod(abs(minor), 10**exp)  # integer arithmetic: exact for any size
    fraction = f".{cents:0{exp}d}" if exp else ""
    return f"{currency.upper()} {sign}{units:,}{fraction}"


def major_to_minor_threshold(major: Decimal, currency: str) -> int:
    """A threshold written in major units ('1000.00') as minor units of `currency`, half-up."""
    return to_minor_units(major, currency, rounding=ROUND_HALF_UP)
