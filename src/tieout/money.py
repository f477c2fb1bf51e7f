"""Money: integer minor units plus an ISO-4217 currency, and the only place that knows exponents.

Decimal is used only while parsing; rounding is named (ROUND_HALF_UP unless a caller chooses).
No float ever holds an amount.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

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


def parse_decimal(text: str, decimal_separator: str = ".") -> Decimal:
    """Parse an amount as finance exports write it: '1,250.00', '$(250.00)', '-250', '1.250,00'."""
    raw = text
    s = text.strip().replace("\u00a0", "").replace(" ", "")
    for symbol in "$€£¥":
        s = s.replace(symbol, "")
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1]
    if s.startswith("-"):
        negative, s = not negative, s[1:]
    elif s.startswith("+"):
        s = s[1:]
    if decimal_separator == ",":
        s = s.replace(".", "").replace(",", ".")
    else:
        s = s.replace(",", "")
    if not s or not all(c.isdigit() or c == "." for c in s) or s.count(".") > 1:
        raise MoneyError(f"'{raw}' is not a number")
    try:
        value = Decimal(s)
    except InvalidOperation:
        raise MoneyError(f"'{raw}' is not a number") from None
    return -value if negative else value


def to_minor_units(amount: Decimal, currency: str, rounding: str | None = None) -> int:
    """Convert a major-unit Decimal to integer minor units.

    Without `rounding`, extra precision is an error (an export never has more digits than its
    currency); with a rounding mode (e.g. ROUND_HALF_UP) it is rounded at the currency's exponent.
    """
    exp = currency_exponent(currency)
    scaled = amount.scaleb(exp)
    integral = scaled.to_integral_value(rounding=rounding or ROUND_HALF_UP)
    if rounding is None and integral != scaled:
        raise MoneyError(f"{amount} has more than {exp} decimal places allowed for {currency.upper()}")
    return int(integral)


def format_minor(minor: int, currency: str) -> str:
    """'USD 1,234.50' for 123450 USD; 'JPY 71,000' for 71000 JPY."""
    exp = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    value = Decimal(abs(minor)).scaleb(-exp)
    return f"{currency.upper()} {sign}{value:,.{exp}f}"


def major_to_minor_threshold(major: Decimal, currency: str) -> int:
    """A threshold written in major units ('1000.00') as minor units of `currency`, half-up."""
    return to_minor_units(major, currency, rounding=ROUND_HALF_UP)
