"""A throwaway NATS operator setup for tests: an operator, an account and a user, their
JWTs signed with NKeys, and the user's credentials file."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass

import nkeys


@dataclass(frozen=True)
class Operator:
    server_config: str  # operator, memory resolver, the account preloaded
    creds: str  # the user's credentials file


def make_operator() -> Operator:
    operator_seed, operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    account_seed, account = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user_seed, user = _keypair(nkeys.PREFIX_BYTE_USER)
    unlimited = {"subs": -1, "data": -1, "payload": -1}
    limits = {**unlimited, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}
    account_jwt = _jwt(operator_seed, account, {"type": "account", "limits": limits})
    user_jwt = _jwt(account_seed, user, {"type": "user", "pub": {}, "sub": {}, **unlimited})
    config = (
        f"operator: {_jwt(operator_seed, operator, {'type': 'operator'})}\n"
        f"resolver: MEMORY\nresolver_preload: {{ {account}: {account_jwt} }}\n"
    )
    creds = (
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user_seed.decode()}\n------END USER NKEY SEED------\n"
    )
    return Operator(config, creds)


def _keypair(prefix: int) -> tuple[bytes, str]:
    seed: bytes = nkeys.encode_seed(os.urandom(32), prefix)
    return seed, nkeys.from_seed(bytearray(seed)).public_key.decode()


def _jwt(signer_seed: bytes, subject: str, claims: dict[str, object]) -> str:
    signer = nkeys.from_seed(bytearray(signer_seed))
    body = {
        "jti": _b64(os.urandom(24)).upper(),
        "iat": int(time.time()),
        "iss": signer.public_key.decode(),
        "name": subject[:8],
        "sub": subject,
        "nats": {**claims, "version": 2},
    }
    signed = f"{_b64(json.dumps({'typ': 'JWT', 'alg': 'ed25519-nkey'}).encode())}."
    signed += _b64(json.dumps(body).encode())
    return f"{signed}.{_b64(signer.sign(signed.encode()))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
