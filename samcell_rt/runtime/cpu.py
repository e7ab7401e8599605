"""What this processor computes natively, read from its CPU flags: decides reduced precision on the CPU.

bf16 pays off only where the processor multiplies bf16 in hardware (Intel AMX, or AVX512-BF16 on
Intel Cooper Lake+ and AMD Zen 4/5); elsewhere it is emulated and slower than fp32. The flags come
from /proc/cpuinfo (Linux); other systems report none, so they stay in fp32.
"""

from __future__ import annotations

import functools

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # either means native bf16 matrix products
# flags benchmark records list: matrix units, bf16 and int8 dot-product instructions
REPORTED_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products that widen before they add


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The processor's feature flags (empty where the system does not list them)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    """The processor's model name ('' where unknown)."""
    import platform

    return _cpuinfo().get("model name") or platform.processor()


def native_bf16() -> bool:
    """Whether the processor multiplies bf16 in hardware (AMX or AVX512-BF16)."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def int8_saturates() -> bool:
    """Whether onnxruntime's u8 x s8 int8 products can overflow here: an x86 processor without VNNI.

    Without VNNI the products of two neighbouring u8 x s8 pairs are summed in 16 bits (vpmaddubsw) and
    saturate when both are large; onnxruntime's quantisation guide recommends 7-bit weights
    (`reduce_range`) there. On the tiny test model the full-range file differed from fp32 by 0.32 on a
    Zen 3 (AVX2 only) and the 7-bit one by 0.031. Other architectures have their own kernels.
    """
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    return x86 and not any(flag in cpu_flags() for flag in VNNI_FLAGS)


def reported_flags() -> list[str]:
    """The precision-related flags this processor has, for benchmark records."""
    flags = cpu_flags()
    return [flag for flag in REPORTED_FLAGS if flag in flags]
