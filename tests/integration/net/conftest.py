"""Fixtures of the network policy tests. The private internet itself (and
the helpers the tests import from here) is tests/integration/testnet.py; its
session fixture `internet` is in tests/integration/conftest.py, shared with
the server's egress tests, so that one pytest session builds it once."""
import os
import subprocess
import textwrap

import pytest

from ..testnet import *  # noqa: F401,F403 (the tests import helpers from here)
from ..testnet import DNS_ADDR, check_routes


@pytest.fixture
def net_run(internet, kennel):
    """Runs python code in a sandbox with the given kennel flags. The code
    first refuses to run in the host's network namespace."""
    host_net = os.readlink("/proc/self/ns/net")

    def run(code, *flags, timeout=30, upstream=True):
        check_routes()
        guard = (f"import os, sys\n"
                 f"if os.readlink('/proc/self/ns/net') == {host_net!r}:\n"
                 f"    sys.exit('kennel-test: refusing to run in the host network namespace')\n")
        argv = [kennel, "run", "-q"]
        if upstream:
            argv += ["--dns-upstream", DNS_ADDR]
        argv += [*flags, "-c", guard + textwrap.dedent(code)]
        env = {k: v for k, v in os.environ.items() if k != "KENNEL_DNS_UPSTREAM"}
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        return r

    return run
