"""The README and .env.example stay true: every setting is documented in both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from torale.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [f"TORALE_{name.upper()}" for name in Settings.model_fields]


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    missing = [name for name in SETTINGS if name not in text]
    assert not missing, f"{document} does not mention {missing}"


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_no_unknown_settings_are_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    # Variables read by the tests, and by the SDK/CLI on the client side (not server settings).
    others = {
        "TORALE_TEST_POSTGRES_URL",
        "TORALE_TEST_REDIS_URL",
        "TORALE_TEST_CHROMIUM",
        "TORALE_API_KEY",
        "TORALE_API_URL",
        "TORALE_CONFIG_FILE",
    }
    documented = set(re.findall(r"TORALE_[A-Z_]+", text)) - others
    assert documented <= set(SETTINGS), documented - set(SETTINGS)


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make serve" in readme
    assert "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_bad_settings_stop_the_cli_with_their_name(tmp_path: Path) -> None:
    import subprocess
    import sys

    # The checkout's own sources (not whichever torale the interpreter has installed), and a
    # data directory of the test's (a setting that wrongly passes must not touch $HOME's).
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "HOME": str(tmp_path)}
    for env, expected in (
        ({"TORALE_RATE_LIMITS": "banana"}, "TORALE_RATE_LIMITS"),
        ({"TORALE_PORT": "abc"}, "TORALE_PORT"),
        ({"TORALE_JWT_ISSUER": "https://idp.example"}, "TORALE_JWT_JWKS_URL"),
        ({"TORALE_OIDC_ISSUER": "https://idp.example"}, "TORALE_OIDC_CLIENT_ID"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "torale", "users", "list"],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr
        assert "Traceback" not in done.stderr


def test_every_test_named_in_the_reliability_guarantees_exists() -> None:
    """docs/reliability.md names the tests that prove each guarantee: they must exist.
    A row names `tests/file.py` or `tests/file.py::test`, and `::test` for the same file."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    missing = []
    for row in re.findall(r"^\|.*$", text, flags=re.MULTILINE):
        file = ""
        for ref in re.findall(r"`([^`]+)`", row):
            named, _, test = ref.partition("::")
            if named.startswith("tests/"):
                file = named
            elif named or not file:
                continue  # a setting or a path outside tests/
            path = ROOT / file
            if not path.exists():
                missing.append(file)
            elif test and f"def {test}(" not in path.read_text():
                missing.append(f"{file}::{test}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
