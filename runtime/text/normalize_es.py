"""Spanish number normalization for IndexTTS-2.5 (torch-free, no grammar compiler).

Upstream normalizes Spanish with NVIDIA NeMo text processing (``indextts/utils/nemo_tn.py``,
``Normalizer(input_case="cased", lang="es")``). Measured here (docs/indextts-2.5.md §6): NeMo
1.2.0 + pynini is 1.1 GB installed (56 s), compiles its Spanish grammar for 97 s on first use and
takes 0.4–1.8 s per sentence — too heavy for a torch-free runtime. This module reproduces NeMo's
output conventions for the number forms that occur in ordinary prose:

- cardinals with NeMo's masculine apocope (``1`` → ``un``, ``21`` → ``veintiún``, ``21000`` →
  ``veintiún mil``), ``.``-grouped thousands (``1.000.000``), negatives (``-5`` → ``menos cinco``);
- decimals with ``,`` (``3,5`` → ``tres coma cinco``; a fraction with a leading zero is read digit
  by digit, as NeMo does: ``1,05`` → ``uno coma cero cinco``);
- ``%`` → ``por ciento``; ``€``/``$`` amounts with céntimos/centavos; ``º``/``ª`` ordinals;
- NeMo's space before punctuation that directly follows a verbalized number (``... cinco .``).
Everything else (dates, times, measures, phone numbers, Roman numerals) passes through unchanged,
where NeMo would verbalize it. The measured agreement with NeMo is in docs/indextts-2.5.md.
"""

from __future__ import annotations

import re

_UNITS = ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "once", "doce",
          "trece", "catorce", "quince", "dieciséis", "diecisiete", "dieciocho", "diecinueve", "veinte", "veintiuno",
          "veintidós", "veintitrés", "veinticuatro", "veinticinco", "veintiséis", "veintisiete", "veintiocho",
          "veintinueve"]
_TENS = {3: "treinta", 4: "cuarenta", 5: "cincuenta", 6: "sesenta", 7: "setenta", 8: "ochenta", 9: "noventa"}
_HUNDREDS = {1: "ciento", 2: "doscientos", 3: "trescientos", 4: "cuatrocientos", 5: "quinientos", 6: "seiscientos",
             7: "setecientos", 8: "ochocientos", 9: "novecientos"}
_ORD = {1: "primero", 2: "segundo", 3: "tercero", 4: "cuarto", 5: "quinto", 6: "sexto", 7: "séptimo", 8: "octavo",
        9: "noveno", 10: "décimo", 11: "undécimo", 12: "duodécimo"}
_ORD_TENS = {1: "decimo", 2: "vigesimo", 3: "trigesimo", 4: "cuadragesimo", 5: "quincuagesimo", 6: "sexagesimo",
             7: "septuagesimo", 8: "octogesimo", 9: "nonagesimo"}
_ORD_TENS_ALONE = {2: "vigésimo", 3: "trigésimo", 4: "cuadragésimo", 5: "quincuagésimo", 6: "sexagésimo",
                   7: "septuagésimo", 8: "octogésimo", 9: "nonagésimo"}
_CURRENCY = {"€": ("euro", "euros", "céntimo", "céntimos"), "$": ("dólar", "dólares", "centavo", "centavos")}


def _below_100(n: int) -> str:
    if n < 30:
        return _UNITS[n]
    t, u = divmod(n, 10)
    return _TENS[t] + (f" y {_UNITS[u]}" if u else "")


def _below_1000(n: int) -> str:
    h, r = divmod(n, 100)
    if h == 0:
        return _below_100(r)
    if n == 100:
        return "cien"
    return _HUNDREDS[h] + (f" {_below_100(r)}" if r else "")


def _apocope(words: str) -> str:
    """uno → un, veintiuno → veintiún at the end of a number (NeMo's masculine short form)."""
    if words.endswith("veintiuno"):
        return words[: -len("veintiuno")] + "veintiún"
    if words == "uno" or words.endswith(" uno"):
        return words[:-3] + "un"
    return words


def cardinal(n: int, short: bool = True) -> str:
    """Spanish cardinal; ``short``: apocopated ending (un, veintiún), NeMo's default."""
    if n < 0:
        return "menos " + cardinal(-n, short)
    if n < 1000:
        w = _below_1000(n)
        return _apocope(w) if short else w
    parts = []
    millions, rest = divmod(n, 1_000_000)
    if millions:
        parts.append("un millón" if millions == 1 else f"{cardinal(millions)} millones")
    thousands, units = divmod(rest, 1000)
    if thousands:
        parts.append("mil" if thousands == 1 else f"{_apocope(_below_1000(thousands))} mil")
    if units:
        parts.append(cardinal(units, short))
    return " ".join(parts)


def _fraction(digits: str) -> str:
    if len(digits) > 1 and digits[0] == "0":
        return " ".join(_UNITS[int(d)] for d in digits)
    return cardinal(int(digits), short=False)


def ordinal(n: int, feminine: bool = False) -> str:
    if n in _ORD:
        w = _ORD[n]
    elif n < 100 and n % 10 == 0:
        w = _ORD_TENS_ALONE[n // 10]
    elif n < 100:
        w = _ORD_TENS[n // 10] + _ORD[n % 10]
    else:
        return cardinal(n)
    return w[:-1] + "a" if feminine else w


def _amount(integer: int, cents: str | None, sym: str) -> str:
    one, many, cent1, cents_many = _CURRENCY[sym]
    words = []
    if integer or not cents:
        words.append(f"{cardinal(integer)} {one if integer == 1 else many}")
    if cents and int(cents):
        c = int(cents.ljust(2, "0")[:2])
        words.append(f"{cardinal(c)} {cent1 if c == 1 else cents_many}")
    return " ".join(words)


_INT = r"\d{1,3}(?:\.\d{3})+|\d+"  # 1.000.000 or plain digits
_NUM = re.compile(
    r"(?<![\w/.,:-])"  # not inside another token: dates 5/3/2024, times, scores 3-1, versions 1.5
    rf"(?:(?P<cur_pre>[$€])\s?(?P<ci>{_INT})(?:,(?P<cf>\d{{1,2}}))?"  # $20, €5,50
    rf"|(?P<sign>-)?(?P<i>{_INT})(?:,(?P<f>\d+))?(?:\s?(?P<cur_post>[€$])|\s?(?P<pct>%)|(?P<ord>[ºª]))?)"
    r"(?![\w/:]|[.,-]\d)"
)


def _verbalize(m: re.Match) -> str:
    if m.group("cur_pre"):
        return _amount(int(m.group("ci").replace(".", "")), m.group("cf"), m.group("cur_pre"))
    integer = int(m.group("i").replace(".", ""))
    frac = m.group("f")
    if m.group("ord") and not frac and not m.group("sign"):
        return ordinal(integer, feminine=m.group("ord") == "ª")
    if m.group("cur_post"):
        return ("menos " if m.group("sign") else "") + _amount(integer, frac, m.group("cur_post"))
    words = f"{cardinal(integer, short=False)} coma {_fraction(frac)}" if frac else cardinal(integer)
    if m.group("sign"):
        words = "menos " + words
    return words + (" por ciento" if m.group("pct") else "")


def normalize_es(text: str) -> str:
    """Verbalize the numbers of a Spanish text (see the module docstring for what is covered)."""
    out, pos = [], 0
    for m in _NUM.finditer(text):
        out.append(text[pos:m.start()])
        words = _verbalize(m)
        # NeMo separates punctuation that directly follows a verbalized token with a space
        if m.end() < len(text) and text[m.end()] in ".,;!?…":
            words += " "
        out.append(words)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


__all__ = ["normalize_es", "cardinal", "ordinal"]
