"""DKIM signing throughput: ours (cryptography) vs dkimpy, same messages, same run.

Messages: multipart/alternative (text + HTML, ~6 KB) built with the email
package, each with its own To and Message-ID. Rows: single thread; a
ThreadPoolExecutor of 2 (what `carriers.email.signer.Signer` uses); and a
ProcessPoolExecutor of 2 (the key loaded once per worker, messages pickled).

    python -m benchmarks.dkim_sign [--n 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from email.message import EmailMessage

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from carriers.email.dkim import DkimKey, sign

DOMAIN, SELECTOR = "example.com", "bench"


def messages(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        m = EmailMessage()
        m["From"] = "Outdial Notices <notices@example.com>"
        m["To"] = f"Contact {i} <contact{i}@example.org>"
        m["Subject"] = f"Your appointment reminder #{i}"
        m["Date"] = "Thu, 03 Dec 2026 14:00:00 +0000"
        m["Message-ID"] = f"<{i}.bench@example.com>"
        m["List-Unsubscribe"] = f"<https://example.com/u/{i}>"
        m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        m.set_content("Hello,\n\nyour appointment is tomorrow at 10:00.\n" * 40)
        m.add_alternative(f"<p>Hello {i},</p>" + "<p>your appointment is tomorrow.</p>\n" * 60,
                          subtype="html")  # fmt: skip
        out.append(m.as_bytes().replace(b"\n", b"\r\n"))
    return out


def pem_of(private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


_worker: dict[str, object] = {}


def _init_worker(kind: str, pem: bytes) -> None:
    _worker["kind"], _worker["pem"] = kind, pem
    _worker["key"] = DkimKey.from_pem(DOMAIN, SELECTOR, pem)


def _ours(message: bytes, key: DkimKey | None = None) -> bytes:
    return sign(message, key or _worker["key"], timestamp=1796300000)  # type: ignore[arg-type]


def _dkimpy(message: bytes, kind: str | None = None, pem: bytes | None = None) -> bytes:
    kind = kind or str(_worker["kind"])
    pem = pem or _worker["pem"]  # type: ignore[assignment]
    assert pem is not None
    if kind == "ed25519":  # dkimpy wants the 32-byte seed, base64
        key = serialization.load_pem_private_key(pem, None)
        raw = key.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        import base64

        pem = base64.b64encode(raw)
    algo = b"ed25519-sha256" if kind == "ed25519" else b"rsa-sha256"
    return dkimpy.sign(message, SELECTOR.encode(), DOMAIN.encode(), pem,
                       canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algo)  # fmt: skip


def run(fn: Callable[[bytes], bytes], msgs: list[bytes], pool: Executor | None) -> float:
    start = time.perf_counter()
    if pool is None:
        for m in msgs:
            fn(m)
    else:
        list(pool.map(fn, msgs, chunksize=1 if isinstance(pool, ThreadPoolExecutor) else 16))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="messages per row (dkimpy: n/10)")
    args = parser.parse_args()
    msgs = messages(args.n)
    keys = {"rsa-2048": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ed25519": ed25519.Ed25519PrivateKey.generate()}  # fmt: skip
    print(f"{len(msgs)} messages of ~{sum(map(len, msgs)) // len(msgs)} bytes each")
    print(f"{'signer':9} {'key':9} {'executor':12} {'msgs/s':>9} {'us/msg':>8} {'vs dkimpy':>9}")
    for name, private in keys.items():
        kind = "ed25519" if name == "ed25519" else "rsa"
        pem = pem_of(private)
        key = DkimKey.from_pem(DOMAIN, SELECTOR, pem)
        few = msgs[: max(args.n // 10, 50)]

        def ours_local(m: bytes, key: DkimKey = key) -> bytes:
            return _ours(m, key)

        def theirs_local(m: bytes, kind: str = kind, pem: bytes = pem) -> bytes:
            return _dkimpy(m, kind, pem)

        setups: list[tuple[str, Executor | None]] = [
            ("1 thread", None),
            ("2 threads", ThreadPoolExecutor(2)),
            ("2 processes", ProcessPoolExecutor(2, initializer=_init_worker, initargs=(kind, pem))),
        ]
        for label, pool in setups:
            is_proc = isinstance(pool, ProcessPoolExecutor)
            if pool is not None:  # warm the workers
                list(pool.map(_ours if is_proc else ours_local, msgs[:8]))
            ours_rate = len(msgs) / run(_ours if is_proc else ours_local, msgs, pool)
            theirs_rate = len(few) / run(_dkimpy if is_proc else theirs_local, few, pool)
            for who, rate in (("ours", ours_rate), ("dkimpy", theirs_rate)):
                ratio = f"{ours_rate / theirs_rate:8.1f}x" if who == "ours" else ""
                print(f"{who:9} {name:9} {label:12} {rate:9.0f} {1e6 / rate:8.0f} {ratio:>9}")
            if pool is not None:
                pool.shutdown()


if __name__ == "__main__":
    main()
