from minewatch.detect.wallets import find_wallet, shorten

MONERO = "4BCeEPhodgPMbPWFN1dPwhWXdRX8q4mhhdZdA1dtSMLTLCEYvAj9QXjXAfF7CugEbmfBhgkqHbdgK9b2wKA6nqRZQCgvCDm"
PAYMENT_ID = "cb2b73415c4faf214035a73b9d947c202342f3bf3bdf632132bd6d7af98cb257"


def test_payment_id_and_wallet_are_shortened_worker_kept():
    login = f"{MONERO}.{PAYMENT_ID}.ryzen"
    short = shorten(login, show=False)
    assert short == "4BCeEP…vCDm.cb2b73…b257.ryzen"
    assert shorten(login, show=True) == login


def test_worker_names_are_left_alone():
    assert shorten("lab-07", show=False) == "lab-07"
    assert shorten("t1fAhZx.rig4", show=False) == "t1fAhZx.rig4"
    assert find_wallet(f"{MONERO}+5000.w")[0] == "Monero"
