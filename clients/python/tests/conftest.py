"""The server and tenants the adapter tests use: started by scripts/python_clients.sh, which
exports the DSNs and the signing secret."""

import os

import psycopg
import pytest

import agent_boundary

APP_DSN = os.environ["AGENT_BOUNDARY_APP_DSN"]
ADMIN_DSN = os.environ["AGENT_BOUNDARY_ADMIN_DSN"]
SECRET = os.environ["AGENT_BOUNDARY_SECRET"]  # base64, as generate_signing_key returned it
KID = os.environ["AGENT_BOUNDARY_KID"]


def token(tenant: str, user: str = "alice", role: str = "admin", **claims) -> str:
    return agent_boundary.mint_token(
        SECRET, KID, tenant_id=tenant, workspace_id="support", user_id=user, role=role, claims=claims
    )


@pytest.fixture
def dental() -> str:
    return token("northstar-dental")


@pytest.fixture
def design() -> str:
    return token("northstar-design", role="member")


@pytest.fixture
def admin():
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        yield conn
