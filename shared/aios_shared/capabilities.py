"""Capability tokens (spec tools.md section 2.4): macaroon-style HMAC-SHA256 chains.

Wire format::

    token = "aios1." kid "." B64(claims) *( "." B64(caveat) ) "." B64(tag)
    t0    = HMAC-SHA256(K[kid], "aios1." kid "." B64(claims))
    t_i   = HMAC-SHA256(t_{i-1}, B64(caveat_i)) ; tag = t_n

The MAC chain is recomputed over the exact transmitted bytes and compared in constant time
*before* anything is decoded; nothing is ever re-serialized. There is no default key: a keyring
file (mode 0600, every secret at least 32 CSPRNG bytes) must exist. Create one with
``python -m aios_shared.capabilities create-keyring PATH`` (what ``make demo`` runs).

Rate-limit counters, use counters and revocations are server state; this module reports the
buckets a token draws on (``VerifiedToken.buckets``) and takes the revocation check as a callable.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aios_shared.errors import InvalidArgument, PermissionDenied, Unauthenticated

PREFIX = "aios1."
TOKEN_BYTES_MAX = 4096
CAVEATS_MAX = 8
SECRET_BYTES_MIN = 32
TTL_S_MAX = 86400
PERMISSIONS: tuple[str, ...] = ("invoke", "inspect", "compose", "delegate")
ARG_OPS: frozenset[str] = frozenset({"eq", "in", "prefix", "min", "max", "len_max"})
KeyState = Literal["active", "verify", "retired"]

_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")
_SUB = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}(/[A-Za-z0-9_.:@-]{1,128}){0,15}$")
_ROOT_FIELDS = frozenset(
    {"v", "kid", "jti", "aud", "sub", "tool", "epoch", "perms", "rl", "iat", "nbf", "exp"}
    | {"uses_max", "cav"}
)
_CAVEAT_FIELDS = frozenset({"id", "perms", "nbf", "exp", "rl", "uses_max", "sub", "args"})
TOKEN_INVALID_MESSAGE = "The capability token is invalid."
TOKEN_INVALID_HINT = "Ask the issuer for a new token."


class TokenInvalid(Unauthenticated):
    """``token_invalid``. The exact cause is in ``audit_reason`` for the audit row only; the
    message and details are the same for every cause so nothing leaks to the caller."""

    def __init__(self, audit_reason: str) -> None:
        super().__init__(
            TOKEN_INVALID_MESSAGE, hint=TOKEN_INVALID_HINT, details={"reason": "token_invalid"}
        )
        self.audit_reason = audit_reason


# ---------------------------------------------------------------- base64 and strict JSON


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INDEX = {ch: i for i, ch in enumerate(_ALPHABET)}
_B64_TO_STD = str.maketrans("-_", "+/")


def _canonical_tail(text: str) -> bool:
    """Unpadded base64 is canonical iff the unused low bits of its last character are zero."""
    rest = len(text) % 4
    if rest == 1:
        return False
    if rest == 0:
        return True
    return _INDEX[text[-1]] & (0x0F if rest == 2 else 0x03) == 0


def _b64decode_canonical(text: str) -> bytes:
    """Decode unpadded base64url, refusing any spelling that would not re-encode identically."""
    if not _B64.fullmatch(text):
        raise TokenInvalid("bad_base64")
    if not _canonical_tail(text):
        raise TokenInvalid("non_canonical_base64")
    try:
        return binascii.a2b_base64(
            (text.translate(_B64_TO_STD) + "=" * (-len(text) % 4)).encode(), strict_mode=True
        )
    except (binascii.Error, ValueError):
        raise TokenInvalid("bad_base64") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise TokenInvalid("duplicate_key")
        out[key] = value
    return out


def _reject_constant(_: str) -> Any:
    raise TokenInvalid("non_finite_number")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def decode_segment(text: str) -> dict[str, Any]:
    """Strictly decode one base64url JSON object segment (only ever called after the MAC)."""
    raw = _b64decode_canonical(text)
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TokenInvalid("bad_json") from None
    if not isinstance(value, dict):
        raise TokenInvalid("not_an_object")
    return value


def _encode_segment(value: dict[str, Any]) -> str:
    return b64encode(json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def _mac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode("ascii"), "sha256")


# ---------------------------------------------------------------- keyring


@dataclass(frozen=True)
class Key:
    kid: str
    secret: bytes
    state: KeyState


@dataclass(frozen=True)
class Keyring:
    active: str
    keys: dict[str, Key]

    def signing_key(self) -> Key:
        return self.keys[self.active]

    def verifying_key(self, kid: str) -> Key | None:
        key = self.keys.get(kid)
        if key is None or key.state == "retired":
            return None
        return key

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "keys": {
                k.kid: {"secret_b64": b64encode(k.secret), "state": k.state}
                for k in self.keys.values()
            },
        }


def parse_keyring(document: Any) -> Keyring:
    """Validate a keyring document; raises ``InvalidArgument{reason: keyring_invalid}``."""

    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(
            f"The keyring is invalid: {why}.",
            hint="Create one with `python -m aios_shared.capabilities create-keyring PATH`.",
            details={"reason": "keyring_invalid"},
        )

    if not isinstance(document, dict) or set(document) != {"active", "keys"}:
        raise bad("it must be an object with exactly 'active' and 'keys'")
    entries = document["keys"]
    if not isinstance(entries, dict) or not entries:
        raise bad("'keys' must be a non-empty object")
    keys: dict[str, Key] = {}
    for kid, entry in entries.items():
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise bad(f"key id {kid!r} does not match [A-Za-z0-9_-]{{1,32}}")
        if not isinstance(entry, dict) or set(entry) != {"secret_b64", "state"}:
            raise bad(f"key {kid!r} must have exactly 'secret_b64' and 'state'")
        if entry["state"] not in ("active", "verify", "retired"):
            raise bad(f"key {kid!r} has unknown state {entry['state']!r}")
        try:
            secret = _b64decode_canonical(str(entry["secret_b64"]))
        except TokenInvalid:
            raise bad(f"key {kid!r} is not canonical unpadded base64url") from None
        if len(secret) < SECRET_BYTES_MIN:
            raise bad(f"key {kid!r} has {len(secret)} bytes, fewer than {SECRET_BYTES_MIN}")
        keys[kid] = Key(kid, secret, entry["state"])
    active = document["active"]
    if active not in keys or keys[active].state != "active":
        raise bad(f"the active key {active!r} is missing or not in state 'active'")
    return Keyring(active, keys)


def load_keyring(path: Path, *, require_owner: bool = True) -> Keyring:
    """Load a keyring file, refusing a missing file, group/other permission bits, a file owned by
    another uid, or any invalid key. There is no fallback key."""
    try:
        info = path.stat()
    except OSError as exc:
        raise InvalidArgument(
            f"No keyring at {path}: {exc.strerror}.",
            hint="Create one with `python -m aios_shared.capabilities create-keyring PATH`.",
            details={"reason": "keyring_missing", "path": str(path)},
        ) from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise InvalidArgument(
            f"The keyring {path} has mode {stat.S_IMODE(info.st_mode):04o}; it must be 0600.",
            hint=f"Run `chmod 600 {path}`.",
            details={"reason": "keyring_mode", "path": str(path)},
        )
    if require_owner and info.st_uid != os.geteuid():
        raise InvalidArgument(
            f"The keyring {path} is owned by uid {info.st_uid}, not by this server.",
            details={"reason": "keyring_owner", "path": str(path)},
        )
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(
            f"The keyring {path} is not readable JSON: {exc}.",
            details={"reason": "keyring_invalid", "path": str(path)},
        ) from None
    return parse_keyring(document)


def write_keyring(path: Path, keyring: Keyring) -> None:
    """Atomically write a keyring at mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(keyring.to_json(), fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def new_keyring(kid: str = "k1") -> Keyring:
    if not _KID.fullmatch(kid):
        raise InvalidArgument(f"Key id {kid!r} does not match [A-Za-z0-9_-]{{1,32}}.")
    return Keyring(kid, {kid: Key(kid, secrets.token_bytes(SECRET_BYTES_MIN), "active")})


def create_keyring(path: Path, kid: str = "k1", *, overwrite: bool = False) -> Keyring:
    """Create a fresh keyring file (one active 32-byte CSPRNG key). Refuses to overwrite."""
    if path.exists() and not overwrite:
        raise InvalidArgument(
            f"A keyring already exists at {path}.",
            hint="Rotate it instead of replacing it, or pass overwrite.",
            details={"reason": "keyring_exists"},
        )
    keyring = new_keyring(kid)
    write_keyring(path, keyring)
    return keyring


def add_key(keyring: Keyring, kid: str) -> Keyring:
    """Rotation step 1: add a new key in state ``verify``."""
    if kid in keyring.keys or not _KID.fullmatch(kid):
        raise InvalidArgument(f"Key id {kid!r} is taken or malformed.")
    keys = dict(keyring.keys)
    keys[kid] = Key(kid, secrets.token_bytes(SECRET_BYTES_MIN), "verify")
    return Keyring(keyring.active, keys)


def promote_key(keyring: Keyring, kid: str) -> Keyring:
    """Rotation step 2: make ``kid`` active and demote the previous active key to ``verify``."""
    if kid not in keyring.keys or keyring.keys[kid].state == "retired":
        raise InvalidArgument(f"Key {kid!r} is missing or retired.")
    keys = dict(keyring.keys)
    old = keys[keyring.active]
    keys[old.kid] = Key(old.kid, old.secret, "verify")
    keys[kid] = Key(kid, keys[kid].secret, "active")
    return Keyring(kid, keys)


def retire_key(keyring: Keyring, kid: str) -> Keyring:
    """Rotation step 3 (after ``ttl_s_max``): tokens under ``kid`` stop verifying."""
    if kid == keyring.active or kid not in keyring.keys:
        raise InvalidArgument(f"Key {kid!r} is the active key or missing; it cannot be retired.")
    keys = dict(keyring.keys)
    keys[kid] = Key(kid, keys[kid].secret, "retired")
    return Keyring(keyring.active, keys)


# ---------------------------------------------------------------- claims and validation


@dataclass(frozen=True)
class Bucket:
    """A rate/use bucket a call is charged against: the root's (``jti``) or a caveat's."""

    id: str
    n: int | None
    w: int | None
    uses_max: int | None


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose MAC chain checked and whose segments parsed strictly, with its caveats
    folded into the effective authority."""

    kid: str
    claims: dict[str, Any]
    caveats: tuple[dict[str, Any], ...]
    tag: bytes
    jti: str
    aud: str
    tool: str
    epoch: int | None
    sub: str
    perms: frozenset[str]
    nbf: int
    exp: int
    iat: int
    buckets: tuple[Bucket, ...]
    arg_constraints: tuple[dict[str, Any], ...] = field(default=())

    @property
    def chain(self) -> tuple[str, ...]:
        """The caveat ids, in order (``token_chain`` in the audit row)."""
        return tuple(str(c["id"]) for c in self.caveats)

    @property
    def revocation_ids(self) -> tuple[str, ...]:
        return (self.jti, *self.chain)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_rl(value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"n", "w"}:
        raise TokenInvalid("bad_rl")
    n, w = value["n"], value["w"]
    if not (_is_int(n) and _is_int(w) and 1 <= n <= 10000 and 1 <= w <= 86400):
        raise TokenInvalid("bad_rl")


def _check_perms(value: Any) -> None:
    if (
        not isinstance(value, list)
        or not all(isinstance(p, str) and p in PERMISSIONS for p in value)
        or len(set(value)) != len(value)
    ):
        raise TokenInvalid("bad_perms")


def _check_args(value: Any) -> None:
    if not isinstance(value, list) or len(value) > 32:
        raise TokenInvalid("bad_args")
    for item in value:
        if not isinstance(item, dict) or set(item) != {"ptr", "op", "val"}:
            raise TokenInvalid("bad_args")
        if not isinstance(item["ptr"], str) or (item["ptr"] and not item["ptr"].startswith("/")):
            raise TokenInvalid("bad_args")
        if item["op"] not in ARG_OPS:
            raise TokenInvalid("bad_args")
        op, val = item["op"], item["val"]
        if op == "in" and not isinstance(val, list):
            raise TokenInvalid("bad_args")
        if op == "prefix" and not isinstance(val, str):
            raise TokenInvalid("bad_args")
        if op in ("min", "max") and not (_is_int(val) or isinstance(val, float)):
            raise TokenInvalid("bad_args")
        if op == "len_max" and not (_is_int(val) and val >= 0):
            raise TokenInvalid("bad_args")


def _check_id(value: Any) -> None:
    if (
        not isinstance(value, str)
        or len(value) != 22
        or not _B64.fullmatch(value)
        or not _canonical_tail(value)
    ):
        raise TokenInvalid("bad_id")


def _validate_root(claims: dict[str, Any], kid: str) -> None:
    if claims.get("v") != 1 or not _is_int(claims.get("v")):
        raise TokenInvalid("bad_version")
    if set(claims) != _ROOT_FIELDS:
        raise TokenInvalid("bad_fields")
    if claims["kid"] != kid:
        raise TokenInvalid("kid_mismatch")
    _check_id(claims["jti"])
    if not isinstance(claims["aud"], str) or not claims["aud"]:
        raise TokenInvalid("bad_aud")
    if not isinstance(claims["sub"], str) or not _SUB.fullmatch(claims["sub"]):
        raise TokenInvalid("bad_sub")
    if not isinstance(claims["tool"], str) or not (0 < len(claims["tool"]) <= 200):
        raise TokenInvalid("bad_tool")
    if claims["epoch"] is not None and not (_is_int(claims["epoch"]) and claims["epoch"] >= 1):
        raise TokenInvalid("bad_epoch")
    _check_perms(claims["perms"])
    _check_rl(claims["rl"])
    for name in ("iat", "nbf", "exp"):
        if not _is_int(claims[name]):
            raise TokenInvalid("bad_time")
    if claims["uses_max"] is not None and not (
        _is_int(claims["uses_max"]) and claims["uses_max"] >= 1
    ):
        raise TokenInvalid("bad_uses_max")
    _check_args(claims["cav"])


def _validate_caveat(caveat: dict[str, Any]) -> None:
    if "id" not in caveat or not set(caveat) <= _CAVEAT_FIELDS:
        raise TokenInvalid("bad_caveat_fields")
    _check_id(caveat["id"])
    if "perms" in caveat:
        _check_perms(caveat["perms"])
    for name in ("nbf", "exp"):
        if name in caveat and not _is_int(caveat[name]):
            raise TokenInvalid("bad_time")
    if "rl" in caveat:
        _check_rl(caveat["rl"])
    if "uses_max" in caveat and not (_is_int(caveat["uses_max"]) and caveat["uses_max"] >= 1):
        raise TokenInvalid("bad_uses_max")
    if "sub" in caveat and (
        not isinstance(caveat["sub"], str) or not _SUB.fullmatch(caveat["sub"])
    ):
        raise TokenInvalid("bad_sub")
    if "args" in caveat:
        _check_args(caveat["args"])


def _split(token: str) -> tuple[str, list[str], str]:
    """Step 1 shape checks; returns (kid, [claims, caveat...], tag)."""
    if not isinstance(token, str) or len(token.encode("utf-8", "replace")) > TOKEN_BYTES_MAX:
        raise TokenInvalid("too_large")
    if not token.startswith(PREFIX) or not token.isascii():
        raise TokenInvalid("bad_shape")
    parts = token[len(PREFIX) :].split(".")
    if len(parts) < 3:
        raise TokenInvalid("bad_shape")
    kid, segments, tag = parts[0], parts[1:-1], parts[-1]
    if len(segments) - 1 > CAVEATS_MAX:
        raise TokenInvalid("too_many_caveats")
    if not _KID.fullmatch(kid) or not all(_B64.fullmatch(s) for s in (*segments, tag)):
        raise TokenInvalid("bad_shape")
    return kid, segments, tag


def verify_mac(token: str, keyring: Keyring) -> tuple[str, list[str], bytes]:
    """Steps 1-3: size, shape, kid, and the MAC chain over the exact transmitted bytes, compared
    with ``hmac.compare_digest``. Nothing is decoded before this returns."""
    kid, segments, tag_text = _split(token)
    key = keyring.verifying_key(kid)
    if key is None:
        raise TokenInvalid("unknown_kid")
    mac = _mac(key.secret, f"{PREFIX}{kid}.{segments[0]}")
    for segment in segments[1:]:
        mac = _mac(mac, segment)
    if not hmac.compare_digest(b64encode(mac), tag_text):
        raise TokenInvalid("bad_mac")
    return kid, segments, mac


def verify(
    token: str,
    keyring: Keyring,
    *,
    audience: str,
    now: int | None = None,
    leeway_s: int = 5,
    is_revoked: Callable[[Sequence[str]], bool] | None = None,
) -> VerifiedToken:
    """Verification steps 1-5 of spec 2.4: MAC, strict parse, audience, revocation, time.

    Raises ``TokenInvalid`` (``token_invalid``), or ``Unauthenticated`` with reason
    ``audience_mismatch``, ``token_revoked``, ``token_not_yet_valid`` or ``token_expired``.
    """
    kid, segments, tag = verify_mac(token, keyring)
    claims = decode_segment(segments[0])
    _validate_root(claims, kid)
    caveats = tuple(decode_segment(s) for s in segments[1:])
    for caveat in caveats:
        _validate_caveat(caveat)
    verified = _fold(kid, claims, caveats, tag)
    if not hmac.compare_digest(verified.aud.encode(), audience.encode()):
        raise Unauthenticated(
            "The capability token was issued for another deployment.",
            details={"reason": "audience_mismatch"},
        )
    if is_revoked is not None and is_revoked(verified.revocation_ids):
        raise Unauthenticated(
            "The capability token has been revoked.",
            hint="Ask the issuer for a new token.",
            details={"reason": "token_revoked", "jti": verified.jti},
        )
    check_time(verified, now=int(time.time()) if now is None else now, leeway_s=leeway_s)
    return verified


def _fold(
    kid: str, claims: dict[str, Any], caveats: tuple[dict[str, Any], ...], tag: bytes
) -> VerifiedToken:
    perms = frozenset(claims["perms"])
    nbf, exp, sub = int(claims["nbf"]), int(claims["exp"]), str(claims["sub"])
    buckets = [Bucket(claims["jti"], claims["rl"]["n"], claims["rl"]["w"], claims["uses_max"])]
    args: list[dict[str, Any]] = list(claims["cav"])
    for caveat in caveats:
        if "perms" in caveat:
            perms &= frozenset(caveat["perms"])
        nbf = max(nbf, caveat.get("nbf", nbf))
        exp = min(exp, caveat.get("exp", exp))
        if "sub" in caveat:
            new_sub = caveat["sub"]
            if new_sub != sub:
                if "delegate" not in perms or not (
                    new_sub.startswith(sub + "/") and "/" not in new_sub[len(sub) + 1 :]
                ):
                    raise TokenInvalid("sub_widened")
                sub = new_sub
        if "rl" in caveat or "uses_max" in caveat:
            rl = caveat.get("rl")
            buckets.append(
                Bucket(
                    caveat["id"],
                    rl["n"] if rl else None,
                    rl["w"] if rl else None,
                    caveat.get("uses_max"),
                )
            )
        args.extend(caveat.get("args", []))
    return VerifiedToken(
        kid=kid,
        claims=claims,
        caveats=caveats,
        tag=tag,
        jti=claims["jti"],
        aud=claims["aud"],
        tool=claims["tool"],
        epoch=claims["epoch"],
        sub=sub,
        perms=perms,
        nbf=nbf,
        exp=exp,
        iat=int(claims["iat"]),
        buckets=tuple(buckets),
        arg_constraints=tuple(args),
    )


def check_time(verified: VerifiedToken, *, now: int, leeway_s: int) -> None:
    if now < verified.nbf - leeway_s:
        raise Unauthenticated(
            "The capability token is not valid yet.",
            details={"reason": "token_not_yet_valid", "nbf": verified.nbf},
        )
    if now >= verified.exp + leeway_s:
        raise Unauthenticated(
            "The capability token has expired.",
            hint="Ask the issuer for a new token.",
            details={"reason": "token_expired", "exp": verified.exp},
        )


def authorize(verified: VerifiedToken, *, caller: str, tool: str, permission: str) -> None:
    """Steps 6-8: caller binding, tool match, permission."""
    if verified.sub != caller:
        raise PermissionDenied(
            f"The capability token belongs to {verified.sub!r}, not to caller {caller!r}.",
            details={"reason": "caller_mismatch"},
        )
    if verified.tool != tool:
        raise PermissionDenied(
            f"The capability token is for {verified.tool!r}, not {tool!r}.",
            details={"reason": "tool_mismatch"},
        )
    if permission not in verified.perms:
        raise PermissionDenied(
            f"The capability token does not grant {permission!r}.",
            details={"reason": "permission_denied", "granted": sorted(verified.perms)},
        )


_MISSING = object()


def resolve_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901; returns a sentinel when the pointer does not resolve."""
    if pointer == "":
        return document
    current = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            if part != str(int(part)):
                return _MISSING
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _holds(op: str, actual: Any, val: Any) -> bool:
    if op == "eq":
        return bool(actual == val and type(actual) is type(val))
    if op == "in":
        return any(actual == v and type(actual) is type(v) for v in val)
    if op == "prefix":
        return isinstance(actual, str) and actual.startswith(val)
    number = (_is_int(actual) or isinstance(actual, float)) and actual == actual
    if op == "min":
        return bool(number and actual >= val)
    if op == "max":
        return bool(number and actual <= val)
    if op == "len_max":
        return isinstance(actual, (str, list, dict)) and len(actual) <= val
    return False


def check_arguments(verified: VerifiedToken, arguments: dict[str, Any]) -> None:
    """Step 11: every argument caveat must hold; an unresolved pointer is a violation."""
    for item in verified.arg_constraints:
        actual = resolve_pointer(arguments, item["ptr"])
        if actual is _MISSING or not _holds(item["op"], actual, item["val"]):
            raise PermissionDenied(
                f"The arguments violate the token's caveat {item['op']} on {item['ptr']!r}.",
                details={"reason": "caveat_violation", "ptr": item["ptr"], "op": item["op"]},
            )


# ---------------------------------------------------------------- issuing and attenuation


def new_id() -> str:
    """A 128-bit random id, base64url (22 characters)."""
    return b64encode(secrets.token_bytes(16))


def issue(
    keyring: Keyring,
    *,
    audience: str,
    sub: str,
    tool: str,
    perms: Iterable[str] = ("invoke",),
    rate_limit: tuple[int, int] = (60, 60),
    ttl_s: int = 3600,
    nbf: int | None = None,
    epoch: int | None = None,
    uses_max: int | None = None,
    arg_caveats: Sequence[dict[str, Any]] = (),
    now: int | None = None,
    ttl_s_max: int = TTL_S_MAX,
) -> tuple[str, dict[str, Any]]:
    """Mint a root token under the active key; returns (token, claims)."""
    iat = int(time.time()) if now is None else now
    perm_list = list(dict.fromkeys(perms))
    if not perm_list or any(p not in PERMISSIONS for p in perm_list):
        raise InvalidArgument(
            f"Permissions must be a non-empty subset of {list(PERMISSIONS)}.",
            details={"reason": "invalid_argument", "perms": perm_list},
        )
    if not _is_int(ttl_s) or not 1 <= ttl_s <= ttl_s_max:
        raise InvalidArgument(
            f"ttl_s {ttl_s} is outside 1..{ttl_s_max}.", details={"reason": "invalid_argument"}
        )
    n, w = rate_limit
    if not (_is_int(n) and _is_int(w) and 1 <= n <= 10000 and 1 <= w <= 86400):
        raise InvalidArgument(
            f"rate_limit {{n: {n}, w: {w}}} is outside n 1..10000, w 1..86400.",
            details={"reason": "invalid_argument"},
        )
    if not isinstance(sub, str) or not _SUB.fullmatch(sub):
        raise InvalidArgument(f"sub {sub!r} is not a valid principal id.")
    if uses_max is not None and not (_is_int(uses_max) and uses_max >= 1):
        raise InvalidArgument("uses_max must be a positive integer or null.")
    if epoch is not None and not (_is_int(epoch) and epoch >= 1):
        raise InvalidArgument("epoch must be a positive integer or null.")
    start = iat if nbf is None else nbf
    key = keyring.signing_key()
    claims: dict[str, Any] = {
        "v": 1,
        "kid": key.kid,
        "jti": new_id(),
        "aud": audience,
        "sub": sub,
        "tool": tool,
        "epoch": epoch,
        "perms": perm_list,
        "rl": {"n": n, "w": w},
        "iat": iat,
        "nbf": start,
        "exp": iat + ttl_s,
        "uses_max": uses_max,
        "cav": list(arg_caveats),
    }
    try:
        _validate_root(claims, key.kid)
    except TokenInvalid as exc:
        raise InvalidArgument(
            f"The requested token is malformed ({exc.audit_reason}).",
            details={"reason": "invalid_argument"},
        ) from None
    body = f"{PREFIX}{key.kid}.{_encode_segment(claims)}"
    return f"{body}.{b64encode(_mac(key.secret, body))}", claims


def append_caveat(token: str, caveat: dict[str, Any]) -> str:
    """Append a caveat offline, using only the token's tag (no key needed)."""
    head, _, tag_text = token.rpartition(".")
    tag = _b64decode_canonical(tag_text)
    segment = _encode_segment(caveat)
    return f"{head}.{segment}.{b64encode(_mac(tag, segment))}"


def _widens(message: str) -> PermissionDenied:
    return PermissionDenied(message, details={"reason": "attenuation_widens"})


def attenuate(
    verified: VerifiedToken,
    token: str,
    *,
    caller: str,
    now: int,
    perms: Iterable[str] | None = None,
    exp: int | None = None,
    ttl_s: int | None = None,
    rate_limit: tuple[int, int] | None = None,
    uses_max: int | None = None,
    sub: str | None = None,
    arg_caveats: Sequence[dict[str, Any]] = (),
    tool: str | None = None,
) -> tuple[str, str]:
    """Append a narrowing caveat to an already verified token; any widening request gives
    ``attenuation_widens``. Returns (new token, caveat id)."""
    if len(verified.caveats) >= CAVEATS_MAX:
        raise InvalidArgument(
            f"The token already carries {CAVEATS_MAX} caveats.",
            details={"reason": "too_many_caveats"},
        )
    if tool is not None and tool != verified.tool:
        raise _widens(f"A token for {verified.tool!r} cannot be narrowed to {tool!r}.")
    caveat: dict[str, Any] = {"id": new_id()}
    if perms is not None:
        wanted = list(dict.fromkeys(perms))
        if any(p not in PERMISSIONS for p in wanted):
            raise InvalidArgument(f"Unknown permission in {wanted}.")
        if not set(wanted) <= verified.perms:
            raise _widens(
                f"Permissions {sorted(set(wanted) - verified.perms)} are not held by the token."
            )
        caveat["perms"] = wanted
    if ttl_s is not None:
        exp = now + ttl_s if exp is None else min(exp, now + ttl_s)
    if exp is not None:
        if not _is_int(exp) or exp > verified.exp:
            raise _widens(f"exp {exp} is later than the token's exp {verified.exp}.")
        caveat["exp"] = exp
    if rate_limit is not None:
        n, w = rate_limit
        root = verified.buckets[0]
        assert root.n is not None and root.w is not None
        if not (_is_int(n) and _is_int(w) and 1 <= n <= 10000 and 1 <= w <= 86400):
            raise InvalidArgument(f"rate_limit {{n: {n}, w: {w}}} is out of range.")
        tightest = min(b.n / b.w for b in verified.buckets if b.n is not None and b.w is not None)
        if n / w > tightest or n > min(b.n for b in verified.buckets if b.n is not None):
            raise _widens(f"rate_limit {{n: {n}, w: {w}}} is looser than the token's.")
        caveat["rl"] = {"n": n, "w": w}
    if uses_max is not None:
        if not _is_int(uses_max) or uses_max < 1:
            raise InvalidArgument("uses_max must be a positive integer.")
        current = [b.uses_max for b in verified.buckets if b.uses_max is not None]
        if current and uses_max > min(current):
            raise _widens(f"uses_max {uses_max} exceeds the token's {min(current)}.")
        caveat["uses_max"] = uses_max
    if sub is not None and sub != verified.sub:
        if caller != verified.sub or "delegate" not in verified.perms:
            raise _widens("Changing sub needs the delegate permission, used by the token's sub.")
        if not (sub.startswith(verified.sub + "/") and _SUB.fullmatch(sub)):
            raise _widens(f"sub {sub!r} is not a direct child of {verified.sub!r}.")
        if "/" in sub[len(verified.sub) + 1 :]:
            raise _widens(f"sub {sub!r} is not a direct child of {verified.sub!r}.")
        caveat["sub"] = sub
    if arg_caveats:
        try:
            _check_args(list(arg_caveats))
        except TokenInvalid:
            raise InvalidArgument(
                "arg_caveats must be [{ptr, op, val}] with op in eq|in|prefix|min|max|len_max.",
                details={"reason": "invalid_argument"},
            ) from None
        caveat["args"] = list(arg_caveats)
    return append_caveat(token, caveat), caveat["id"]


def _main(argv: Sequence[str]) -> int:
    """``python -m aios_shared.capabilities create-keyring PATH [KID]``."""
    if len(argv) in (2, 3) and argv[0] == "create-keyring":
        path = Path(argv[1])
        try:
            keyring = create_keyring(path, argv[2] if len(argv) == 3 else "k1")
        except InvalidArgument as exc:
            sys.stderr.write(exc.for_caller() + "\n")
            return 1
        sys.stdout.write(f"created keyring {path} (active key {keyring.active}, mode 0600)\n")
        return 0
    sys.stderr.write("usage: python -m aios_shared.capabilities create-keyring PATH [KID]\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
