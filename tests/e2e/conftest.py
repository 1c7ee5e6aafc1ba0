"""End-to-end tests start `torale serve` as a process."""

from tests.fixtures.processes import start_server  # noqa: F401 - a fixture for this package
