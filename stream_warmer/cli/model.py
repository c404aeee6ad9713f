"""``stream-warmer model list|show VERSION|rollback VERSION`` for operators.

With ``model.signing_key`` set, ``rollback`` refuses a version that is unsigned or
signed with another key (replicas with the key would reject it), and ``show`` prints
the signature with whether it is valid under the configured key.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from stream_warmer.settings import Settings

if TYPE_CHECKING:
    from stream_warmer.trainer.publish import ModelPublisher

HELP = "list published model versions, show one, or roll every replica back to one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``list``, ``show VERSION`` or ``rollback VERSION``."""
    parser.add_argument("action", choices=["list", "show", "rollback"])
    parser.add_argument(
        "version",
        nargs="?",
        default=None,
        help="the version (show, rollback; show defaults to the live one)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the broker"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the action; print a table (list) or JSON (show, rollback)."""
    from stream_warmer.trainer.publish import ModelPublisher
    from stream_warmer.trainer.store import open_store

    publisher = ModelPublisher(
        open_store(settings.model, settings.redis),
        settings.kafka,
        settings.topics.model_updates,
        settings.model.name,
    )
    live = publisher.live(args.timeout)
    if args.action == "list":
        return _list(publisher, live.version if live else None)
    if args.action == "rollback":
        if args.version is None:
            print("stream-warmer model rollback: a VERSION is required")
            return 2
        update = publisher.rollback(args.version)
        print(f"rolled back {publisher.name}: {live.version if live else '-'} -> {update.version}")
        return 0
    return _show(publisher, args.version or (live.version if live else None), settings)


def _list(publisher: ModelPublisher, live: str | None) -> int:
    versions = publisher.store.versions(publisher.name)
    print(f"{'':2}{'VERSION':<26}{'SHA256':<14}{'VOCAB':<18}{'HIT':>7}{'REF':>7}  ARTIFACT")
    for u in versions:
        mark = "*" if u.version == live else ""
        hit, ref = u.metrics.get("candidate_hit_ratio"), u.metrics.get("gate_reference")
        print(
            f"{mark:<2}{u.version:<26}{u.sha256[:12]:<14}{u.vocab_version[:16]:<18}"
            f"{_num(hit):>7}{_num(ref):>7}  {u.artifact}"
        )
    if not versions:
        print("(no versions registered)")
    return 0


def _num(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def _show(publisher: ModelPublisher, version: str | None, settings: Settings) -> int:
    from stream_warmer.trainer.signing import ManifestSigner
    from stream_warmer.trainer.store import open_store
    from stream_warmer.trainer.updates import encode_update

    if version is None:
        print("no model published yet")
        return 1
    update = publisher.find(version)
    # hashes checked, the signature reported rather than enforced: show what is wrong
    artifact = open_store(settings.model, settings.redis, signed=False).fetch(update)
    signer = ManifestSigner.from_secret(settings.model.signing_key)
    status = signer.status(artifact) if signer is not None else "not checked (no signing key)"
    out = {
        "update": json.loads(encode_update(update)),
        "manifest": artifact.manifest,
        "signature": {"value": artifact.signature, "status": status},
    }
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0
