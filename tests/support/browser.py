"""A stand-in for the person at the browser, for commands that open one (`openapi-onboarding
login`): `BROWSER="python -m tests.support.browser %s"`, with SIGN_IN_AS naming whom to sign in
as. Their password is read from `.data/dev-passwords.txt` (what `make up` wrote), the sign-in
form is sent, and the redirect back to the CLI's loopback address is followed, as a browser
would."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from tests.support.identity import submit_sign_in_form


def password_of(name: str, passwords: Path = Path(".data/dev-passwords.txt")) -> str:
    for line in passwords.read_text().splitlines():
        if line.split(" ", 1)[0] == name:
            return line.split(" ", 1)[1].strip()
    raise SystemExit(f"{name} has no password in {passwords}")


def main() -> None:
    url, email = sys.argv[1], os.environ["SIGN_IN_AS"]
    back = submit_sign_in_form(url, email, password_of(email))
    with urllib.request.urlopen(back, timeout=10) as page:
        page.read()


if __name__ == "__main__":
    main()
