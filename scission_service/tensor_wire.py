"""The binary tensor format between resources: one numpy ``.npy`` document, never a pickle (DESIGN §5.6).

Decoding reads and checks the ``.npy`` header *before* touching the payload: format version, dtype in the
allow-list (no object or structured dtypes, so ``allow_pickle=False`` is never even tested), rank, declared
size against the byte limit, and the exact payload length (truncated or trailing bytes are refused). Arrays
come back C-contiguous in native byte order. Errors are :class:`TensorWireError` with a readable message.
"""

from __future__ import annotations

import io
from collections.abc import Collection

import numpy as np

MEDIA_TYPE = "application/x-npy"
DEFAULT_MAX_BYTES = 256 * 1024**2
MAX_RANK = 8
ALLOWED_DTYPES: frozenset[str] = frozenset(
    {"float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"}
)
_MAX_HEADER_BYTES = 64 * 1024


class TensorWireError(ValueError):
    """Bytes are not an acceptable tensor (.npy) document, or an array cannot be sent; see the message."""


def _check_array(array: np.ndarray, *, max_bytes: int, allowed_dtypes: Collection[str], what: str) -> None:
    if array.dtype.name not in allowed_dtypes or array.dtype.fields is not None:
        raise TensorWireError(
            f"{what} dtype {array.dtype.name} is not allowed; allowed: {', '.join(sorted(allowed_dtypes))}"
        )
    if array.ndim > MAX_RANK:
        raise TensorWireError(f"{what} has rank {array.ndim}; at most {MAX_RANK} dimensions are allowed")
    if array.nbytes > max_bytes:
        raise TensorWireError(f"{what} holds {array.nbytes} bytes; the limit is {max_bytes} bytes")


def encode_array(
    array: np.ndarray,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allowed_dtypes: Collection[str] = ALLOWED_DTYPES,
) -> bytes:
    """Serialise ``array`` as ``.npy`` bytes (no pickle); refuse disallowed dtypes and oversized arrays."""
    if not isinstance(array, np.ndarray):
        raise TensorWireError(f"expected a numpy array, got {type(array).__name__}")
    _check_array(array, max_bytes=max_bytes, allowed_dtypes=allowed_dtypes, what="array")
    # (not np.ascontiguousarray: it turns a 0-d array into shape (1,))
    contiguous = array if array.flags.c_contiguous else np.ascontiguousarray(array)
    # the bytes np.save writes (format 1.0 header, then the C-order data), with one copy of the data
    data = contiguous.reshape(-1).data.cast("B") if contiguous.size else b""
    return _header(contiguous) + data


def decode_array(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allowed_dtypes: Collection[str] = ALLOWED_DTYPES,
) -> np.ndarray:
    """Parse ``.npy`` bytes into an array after validating header, dtype, rank, size and exact length."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TensorWireError(f"expected bytes, got {type(data).__name__}")
    raw = data if isinstance(data, bytes) else bytes(data)
    if len(raw) > max_bytes + _MAX_HEADER_BYTES:
        raise TensorWireError(f"tensor document is {len(raw)} bytes; the limit is {max_bytes} bytes of data")
    stream = io.BytesIO(raw)
    try:
        major, minor = np.lib.format.read_magic(stream)
        if (major, minor) == (1, 0):
            header = np.lib.format.read_array_header_1_0(stream, max_header_size=_MAX_HEADER_BYTES)
        elif (major, minor) in ((2, 0), (3, 0)):
            header = np.lib.format.read_array_header_2_0(stream, max_header_size=_MAX_HEADER_BYTES)
        else:
            raise TensorWireError(f"unsupported .npy format version {major}.{minor}")
    except TensorWireError:
        raise
    except Exception as exc:  # numpy raises ValueError/SyntaxError/... for malformed headers
        raise TensorWireError(f"not a valid .npy tensor document: {exc}") from None
    shape, fortran_order, dtype = header
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise TensorWireError(f"dtype {dtype.descr!r} is not allowed (object/structured dtypes are refused)")
    if dtype.name not in allowed_dtypes:
        raise TensorWireError(
            f"dtype {dtype.name} ({dtype.str}) is not allowed; allowed: {', '.join(sorted(allowed_dtypes))}"
        )
    if len(shape) > MAX_RANK:
        raise TensorWireError(f"tensor has rank {len(shape)}; at most {MAX_RANK} dimensions are allowed")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise TensorWireError(f"invalid shape {shape!r}")
    count = 1
    for d in shape:
        count *= d
    expected = count * dtype.itemsize
    if expected > max_bytes:
        raise TensorWireError(f"tensor declares {expected} bytes of data; the limit is {max_bytes} bytes")
    payload = memoryview(raw)[stream.tell() :]  # no copy: the one copy is the array returned below
    if len(payload) != expected:
        raise TensorWireError(
            f"tensor payload is {len(payload)} bytes but its header declares {expected} bytes "
            f"(shape {shape}, dtype {dtype.str})"
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    return np.array(array, dtype=dtype.newbyteorder("="), order="C", copy=True)


def encoded_size(array: np.ndarray) -> int:
    """Bytes :func:`encode_array` produces for ``array`` (header included), without copying the data."""
    return len(_header(array)) + int(array.nbytes)


def _header(array: np.ndarray) -> bytes:
    """The ``.npy`` magic and format 1.0 header of ``array`` sent in C order, as ``np.save`` writes them."""
    header = io.BytesIO()
    fields = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False}
    np.lib.format.write_array_header_1_0(header, {**fields, "shape": array.shape})
    return header.getvalue()
