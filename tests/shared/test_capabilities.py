"""Capability tokens: the MAC is checked over the exact bytes before anything is parsed, forged,
tampered, expired, widened, foreign and wrong-key tokens are refused with typed errors, and
attenuation only ever narrows."""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios_shared import capabilities as cap
from aios_shared.errors import InvalidArgument, PermissionDenied, Unauthenticated
from tests.helpers import REPO

NOW = 1_800_000_000
AUD = "deploy-a"


@pytest.fixture
def keyring() -> cap.Keyring:
    return cap.new_keyring("k1")


def mint(keyring: cap.Keyring, **kwargs: Any) -> str:
    kwargs.setdefault("sub", "agent-7")
    kwargs.setdefault("tool", "text_transform")
    token, _ = cap.issue(keyring, audience=AUD, now=NOW, **kwargs)
    return token


def check(token: str, keyring: cap.Keyring, now: int = NOW, **kwargs: Any) -> cap.VerifiedToken:
    return cap.verify(token, keyring, audience=AUD, now=now, leeway_s=0, **kwargs)


def reason(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value.details["reason"])


def test_a_round_trip_token_has_the_wire_shape_the_tag_and_the_defaults(
    keyring: cap.Keyring,
) -> None:
    """Acceptance 1: wire format, HMAC over the transmitted prefix, default claims."""
    token = mint(keyring)
    assert re.fullmatch(r"^aios1\.[A-Za-z0-9_-]{1,32}(\.[A-Za-z0-9_-]+){2,}$", token)
    prefix, _, tag = token.rpartition(".")
    expected = hmac.digest(keyring.keys["k1"].secret, prefix.encode(), "sha256")
    assert cap.b64encode(expected) == tag
    verified = check(token, keyring)
    assert verified.sub == "agent-7" and verified.tool == "text_transform"
    assert verified.perms == {"invoke"}
    assert verified.claims["rl"] == {"n": 60, "w": 60}
    assert verified.exp - verified.iat == 3600
    cap.authorize(verified, caller="agent-7", tool="text_transform", permission="invoke")


def test_a_forged_mac_and_an_unknown_kid_give_identical_token_invalid_messages(
    keyring: cap.Keyring,
) -> None:
    """Acceptance 2: the cause goes only to audit_reason; what the caller sees is identical."""
    token = mint(keyring)
    prefix = token.rpartition(".")[0]
    forged = f"{prefix}.{cap.b64encode(hmac.digest(os.urandom(32), prefix.encode(), 'sha256'))}"
    unknown = token.replace("aios1.k1.", "aios1.k9.", 1)
    with pytest.raises(cap.TokenInvalid) as bad_mac:
        check(forged, keyring)
    with pytest.raises(cap.TokenInvalid) as bad_kid:
        check(unknown, keyring)
    assert bad_mac.value.audit_reason == "bad_mac"
    assert bad_kid.value.audit_reason == "unknown_kid"
    assert bad_mac.value.to_payload() == bad_kid.value.to_payload()
    assert "bad_mac" not in json.dumps(bad_mac.value.to_payload().model_dump())


def test_every_tampering_is_refused_before_any_segment_is_decoded(
    keyring: cap.Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acceptance 3: byte flips, re-encoded claims, truncation, padding, non-canonical base64 and
    oversize all give token_invalid while a decoder spy counts 0 calls."""
    token = cap.append_caveat(mint(keyring), {"id": cap.new_id(), "perms": ["invoke"]})
    calls: list[str] = []
    real = cap.decode_segment

    def spy(text: str) -> dict[str, Any]:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(cap, "decode_segment", spy)
    variants: list[str] = []
    for i in range(200):
        ch = token[i]
        flipped = "A" if ch != "A" else "B"
        variants.append(token[:i] + flipped + token[i + 1 :])
    kid, segments, tag = token[len("aios1.") :].split(".")[0], token.split(".")[2:-1], ""
    claims = json.loads(base64.urlsafe_b64decode(segments[0] + "=" * (-len(segments[0]) % 4)))
    claims["tool"] = "shell_exec"
    tag = token.rpartition(".")[2]
    variants.append(".".join(["aios1", kid, cap._encode_segment(claims), *segments[1:], tag]))
    variants.append(token[:-1])
    variants.append(token + "=")
    last = tag[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # A 32-byte tag is 43 chars; its last char carries 4 bits, so the low 2 bits must be zero.
    noncanon = alphabet[alphabet.index(last) | 1]
    variants.append(token[:-1] + noncanon)
    variants.append(token + "A" * (4097 - len(token)))
    for variant in variants:
        assert variant != token
        with pytest.raises(cap.TokenInvalid):
            check(variant, keyring)
    assert calls == []
    check(token, keyring)
    assert len(calls) == 2


def test_duplicate_keys_and_unknown_fields_are_refused_even_with_a_valid_mac(
    keyring: cap.Keyring,
) -> None:
    """Acceptance 4: strict parsing after the MAC."""
    key = keyring.keys["k1"].secret

    def signed(raw: bytes) -> str:
        body = f"aios1.k1.{cap.b64encode(raw)}"
        return f"{body}.{cap.b64encode(hmac.digest(key, body.encode(), 'sha256'))}"

    _, claims = cap.issue(keyring, audience=AUD, sub="agent-7", tool="text_transform", now=NOW)
    text = json.dumps(claims, separators=(",", ":"))
    duplicate = text[:-1] + ',"tool":"shell_exec"}'
    with pytest.raises(cap.TokenInvalid) as dup:
        check(signed(duplicate.encode()), keyring)
    assert dup.value.audit_reason == "duplicate_key"
    with pytest.raises(cap.TokenInvalid) as extra:
        check(signed(json.dumps({**claims, "admin": True}).encode()), keyring)
    assert extra.value.audit_reason == "bad_fields"
    with pytest.raises(cap.TokenInvalid):
        check(signed(json.dumps({**claims, "exp": float(claims["exp"])}).encode()), keyring)
    assert check(signed(json.dumps(claims).encode()), keyring).jti == claims["jti"]


def test_the_time_window_is_exact_with_zero_leeway(keyring: cap.Keyring) -> None:
    """Acceptance 5: exp-1 passes, exp expires, nbf-1 is not yet valid, nbf passes."""
    token = mint(keyring, nbf=NOW + 100, ttl_s=1000)
    exp = NOW + 1000
    check(token, keyring, now=exp - 1)
    with pytest.raises(Unauthenticated) as expired:
        check(token, keyring, now=exp)
    assert reason(expired) == "token_expired"
    with pytest.raises(Unauthenticated) as early:
        check(token, keyring, now=NOW + 99)
    assert reason(early) == "token_not_yet_valid"
    check(token, keyring, now=NOW + 100)
    with pytest.raises(InvalidArgument):
        mint(keyring, ttl_s=86401)


def test_attenuation_refuses_every_widening_and_appended_perms_are_intersected(
    keyring: cap.Keyring,
) -> None:
    """Acceptance 6: wider perms, later exp, looser rate, another tool give attenuation_widens;
    an offline caveat cannot add perms; stripping the last caveat breaks the MAC."""
    parent = mint(keyring, rate_limit=(5, 60))
    verified = check(parent, keyring)
    widening: list[dict[str, Any]] = [
        {"perms": ["invoke", "inspect"]},
        {"exp": verified.exp + 1},
        {"rate_limit": (10, 60)},
        {"tool": "shell_exec"},
    ]
    for request in widening:
        with pytest.raises(PermissionDenied) as exc:
            cap.attenuate(verified, parent, caller="agent-7", now=NOW, **request)
        assert reason(exc) == "attenuation_widens"
    offline = cap.append_caveat(parent, {"id": cap.new_id(), "perms": ["invoke", "compose"]})
    child = check(offline, keyring)
    assert child.perms == {"invoke"}
    with pytest.raises(PermissionDenied) as denied:
        cap.authorize(child, caller="agent-7", tool="text_transform", permission="compose")
    assert reason(denied) == "permission_denied"
    narrowed, _ = cap.attenuate(verified, parent, caller="agent-7", now=NOW, rate_limit=(3, 60))
    grandchild = cap.append_caveat(narrowed, {"id": cap.new_id(), "exp": NOW + 10})
    stripped = grandchild.rsplit(".", 2)[0] + "." + grandchild.rsplit(".", 1)[1]
    with pytest.raises(cap.TokenInvalid):
        check(stripped, keyring)
    assert [b.n for b in check(narrowed, keyring).buckets] == [5, 3]


def test_argument_caveats_narrow_and_an_unresolved_pointer_fails_closed(
    keyring: cap.Keyring,
) -> None:
    """Acceptance 7: a prefix caveat on /url admits a.test and refuses b.test."""
    token = mint(keyring, tool="http_fetch")
    narrowed, _ = cap.attenuate(
        check(token, keyring),
        token,
        caller="agent-7",
        now=NOW,
        arg_caveats=[{"ptr": "/url", "op": "prefix", "val": "https://a.test/"}],
    )
    verified = check(narrowed, keyring)
    cap.check_arguments(verified, {"url": "https://a.test/x"})
    for args in ({"url": "https://b.test/"}, {}, {"url": 5}):
        with pytest.raises(PermissionDenied) as exc:
            cap.check_arguments(verified, args)
        assert reason(exc) == "caveat_violation"


def test_a_token_binds_its_caller_and_delegation_needs_the_delegate_permission(
    keyring: cap.Keyring,
) -> None:
    """Acceptance 8: caller_mismatch, sub change without delegate widens, with it binds."""
    plain = mint(keyring)
    with pytest.raises(PermissionDenied) as other:
        cap.authorize(
            check(plain, keyring), caller="agent-8", tool="text_transform", permission="invoke"
        )
    assert reason(other) == "caller_mismatch"
    with pytest.raises(PermissionDenied) as widen:
        cap.attenuate(check(plain, keyring), plain, caller="agent-7", now=NOW, sub="agent-7/c1")
    assert reason(widen) == "attenuation_widens"
    offline = cap.append_caveat(plain, {"id": cap.new_id(), "sub": "agent-7/c1"})
    with pytest.raises(cap.TokenInvalid):
        check(offline, keyring)
    parent = mint(keyring, perms=["invoke", "delegate"])
    child, _ = cap.attenuate(
        check(parent, keyring), parent, caller="agent-7", now=NOW, sub="agent-7/c1"
    )
    verified = check(child, keyring)
    cap.authorize(verified, caller="agent-7/c1", tool="text_transform", permission="invoke")
    with pytest.raises(PermissionDenied):
        cap.authorize(verified, caller="agent-7", tool="text_transform", permission="invoke")


def test_tool_and_permission_mismatches_are_refused(keyring: cap.Keyring) -> None:
    """Acceptance 9 at the library level."""
    verified = check(mint(keyring), keyring)
    with pytest.raises(PermissionDenied) as tool:
        cap.authorize(verified, caller="agent-7", tool="shell_exec", permission="invoke")
    assert reason(tool) == "tool_mismatch"
    inspect_only = check(mint(keyring, perms=["inspect"]), keyring)
    with pytest.raises(PermissionDenied) as perm:
        cap.authorize(inspect_only, caller="agent-7", tool="text_transform", permission="invoke")
    assert reason(perm) == "permission_denied"


def test_revocation_of_a_root_or_a_caveat_id_is_checked_through_the_callback(
    keyring: cap.Keyring,
) -> None:
    """Revoking the root kills descendants; revoking a caveat id kills only that branch."""
    parent = mint(keyring)
    child = cap.append_caveat(parent, {"id": cap.new_id()})
    grandchild = cap.append_caveat(child, {"id": cap.new_id()})
    revoked = {check(parent, keyring).jti}
    for token in (parent, child, grandchild):
        with pytest.raises(Unauthenticated) as exc:
            check(token, keyring, is_revoked=lambda ids: bool(revoked & set(ids)))
        assert reason(exc) == "token_revoked"
    revoked = {check(child, keyring).chain[0]}
    check(parent, keyring, is_revoked=lambda ids: bool(revoked & set(ids)))
    with pytest.raises(Unauthenticated):
        check(grandchild, keyring, is_revoked=lambda ids: bool(revoked & set(ids)))


def test_rotation_keeps_verify_keys_working_and_retired_keys_refused() -> None:
    """Acceptance 15 (library part): k1 verifies in verify state, fails retired; audience."""
    ring = cap.new_keyring("k1")
    old = mint(ring)
    ring = cap.promote_key(cap.add_key(ring, "k2"), "k2")
    assert ring.keys["k1"].state == "verify"
    check(old, ring)
    assert mint(ring).startswith("aios1.k2.")
    with pytest.raises(cap.TokenInvalid) as retired:
        check(old, cap.retire_key(ring, "k1"))
    assert retired.value.audit_reason == "unknown_kid"
    with pytest.raises(Unauthenticated) as aud:
        cap.verify(old, ring, audience="deploy-b", now=NOW, leeway_s=0)
    assert reason(aud) == "audience_mismatch"


def test_keyring_files_are_refused_when_missing_open_to_others_or_short(tmp_path: Path) -> None:
    """No default key: a missing keyring, mode 0644, or a 31-byte key is refused."""
    path = tmp_path / "keyring.json"
    with pytest.raises(InvalidArgument) as missing:
        cap.load_keyring(path)
    assert reason(missing) == "keyring_missing"
    cap.create_keyring(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert cap.load_keyring(path).active == "k1"
    with pytest.raises(InvalidArgument):
        cap.create_keyring(path)
    path.chmod(0o644)
    with pytest.raises(InvalidArgument) as mode:
        cap.load_keyring(path)
    assert reason(mode) == "keyring_mode"
    path.chmod(0o600)
    short = {
        "active": "k1",
        "keys": {"k1": {"secret_b64": cap.b64encode(b"x" * 31), "state": "active"}},
    }
    path.write_text(json.dumps(short))
    with pytest.raises(InvalidArgument) as weak:
        cap.load_keyring(path)
    assert reason(weak) == "keyring_invalid"


def test_the_create_keyring_command_writes_a_loadable_0600_keyring(tmp_path: Path) -> None:
    """`python -m aios_shared.capabilities create-keyring PATH` is what `make demo` runs."""
    path = tmp_path / "demo" / "keyring.json"
    done = subprocess.run(
        [sys.executable, "-m", "aios_shared.capabilities", "create-keyring", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (path.stat().st_mode & 0o777) == 0o600
    assert len(cap.load_keyring(path).signing_key().secret) == 32
    again = subprocess.run(
        [sys.executable, "-m", "aios_shared.capabilities", "create-keyring", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 1


def test_more_than_eight_caveats_is_refused(keyring: cap.Keyring) -> None:
    """Step 1: a ninth caveat is rejected before the MAC."""
    token = mint(keyring)
    for _ in range(8):
        token = cap.append_caveat(token, {"id": cap.new_id()})
    assert len(check(token, keyring).caveats) == 8
    with pytest.raises(cap.TokenInvalid) as exc:
        check(cap.append_caveat(token, {"id": cap.new_id()}), keyring)
    assert exc.value.audit_reason == "too_many_caveats"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=10_000),
    insert=st.text(min_size=0, max_size=8),
    cut=st.integers(min_value=0, max_value=8),
)
def test_fuzzed_token_strings_only_ever_give_token_invalid(
    position: int, insert: str, cut: int
) -> None:
    """Any edit of a valid token (insert arbitrary text, delete characters) is either the same
    token or a typed token_invalid, never another exception."""
    ring = cap.new_keyring("k1")
    token = cap.append_caveat(mint(ring), {"id": cap.new_id(), "perms": ["invoke"]})
    at = position % (len(token) + 1)
    edited = token[:at] + insert + token[at + cut :]
    if edited == token:
        assert check(edited, ring).sub == "agent-7"
        return
    with pytest.raises(cap.TokenInvalid):
        check(edited, ring)


@settings(max_examples=200, deadline=None)
@given(claims=st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=6), max_size=6))
def test_correctly_maced_garbage_claims_only_give_token_invalid(claims: dict[str, Any]) -> None:
    """A validly MACed but malformed claims object is refused by the strict parser."""
    ring = cap.new_keyring("k1")
    body = f"aios1.k1.{cap.b64encode(json.dumps(claims).encode())}"
    token = f"{body}.{cap.b64encode(hmac.digest(ring.keys['k1'].secret, body.encode(), 'sha256'))}"
    with pytest.raises(cap.TokenInvalid):
        check(token, ring)
