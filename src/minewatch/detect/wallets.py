"""Wallet addresses inside mining logins ("WALLET.worker", "WALLET/worker/email", ...):
shorten them for display (they identify a person's funds) and guess the coin they belong to.

Not a detector module: it registers nothing.
"""

from __future__ import annotations

import re

_B58 = "1-9A-HJ-NP-Za-km-z"
_EDGE_L = r"(?<![0-9A-Za-z])"
_EDGE_R = r"(?![0-9A-Za-z])"

# (coin, pattern) - first match wins; lengths from each coin's address format.
_ADDRESS_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("Ethereum-family", re.compile(_EDGE_L + r"0x[0-9a-fA-F]{40}" + _EDGE_R)),
    ("Bitcoin", re.compile(_EDGE_L + r"(?:bc1|tb1|bcrt1)[ac-hj-np-z02-9]{8,87}" + _EDGE_R, re.I)),
    ("Litecoin", re.compile(_EDGE_L + r"(?:ltc1|tltc1)[ac-hj-np-z02-9]{8,87}" + _EDGE_R, re.I)),
    # CryptoNote: Monero standard/subaddress 95, integrated 106; Wownero etc. 97-110.
    ("Monero", re.compile(_EDGE_L + rf"[48][{_B58}]{{94}}(?:[{_B58}]{{11}})?" + _EDGE_R)),
    ("CryptoNote-family", re.compile(_EDGE_L + rf"[{_B58}]{{95,110}}" + _EDGE_R)),
    ("Zcash", re.compile(_EDGE_L + rf"t[13][{_B58}]{{33}}" + _EDGE_R)),
    ("Bitcoin", re.compile(_EDGE_L + rf"[13][{_B58}]{{25,33}}" + _EDGE_R)),
    ("Litecoin", re.compile(_EDGE_L + rf"[LM][{_B58}]{{33}}" + _EDGE_R)),
    ("Dogecoin", re.compile(_EDGE_L + rf"D[{_B58}]{{33}}" + _EDGE_R)),
    ("Ravencoin", re.compile(_EDGE_L + rf"R[{_B58}]{{33}}" + _EDGE_R)),
]
# Payment ids (CryptoNote "WALLET.PAYMENTID.worker": 16 or 64 hex) identify funds too.
_PAYMENT_ID = re.compile(_EDGE_L + r"(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{16})" + _EDGE_R)
_ANY_ADDRESS = re.compile("|".join(f"(?:{p.pattern})" for _, p in _ADDRESS_KINDS) + f"|(?:{_PAYMENT_ID.pattern})")


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def shorten(login: str, show: bool) -> str:
    """Replace each wallet address inside `login` by its first 6 and last 4 characters,
    keeping worker names and other parts readable. With `show` the login is unchanged."""
    if show or not isinstance(login, str):
        return login
    return _ANY_ADDRESS.sub(lambda m: _short(m.group(0)), login)


def find_wallet(login: str) -> tuple[str, str] | None:
    """(coin, address) of the first wallet address in a login, or None."""
    if not isinstance(login, str):
        return None
    best: tuple[int, str, str] | None = None
    for coin, pattern in _ADDRESS_KINDS:
        m = pattern.search(login)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), coin, m.group(0))
    return (best[1], best[2]) if best else None


def guess_coin(login: str) -> str | None:
    """Coin suggested by the wallet address in a login (a hint, not proof)."""
    found = find_wallet(login)
    return found[0] if found else None
