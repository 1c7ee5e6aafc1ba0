"""SDK tests: one `torale serve` process with the local fakes, shared by the package."""

from tests.fixtures.api_server import (  # noqa: F401 - fixtures, registered for this package
    _no_client_config,
    api,
    config_file,
    fake_model,
    fake_search,
    fake_web,
    fakes,
    make_user,
    newer_server,
    receiver,
    terminal_example,
    user_key,
)
