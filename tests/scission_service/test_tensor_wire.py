"""The .npy tensor wire format: round trips, and refusal of pickles, bad headers, sizes and dtypes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from scission_service.tensor_wire import TensorWireError, decode_array, encode_array, encoded_size

DTYPES = ["float32", "float16", "float64", "int32", "int64", "uint8", "int8", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_keeps_values_shape_and_dtype(dtype: str) -> None:
    array = (np.arange(60).reshape(3, 4, 5) % 7).astype(dtype)
    data = encode_array(array)
    back = decode_array(data)
    assert back.dtype == np.dtype(dtype)
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)
    assert len(data) == encoded_size(array)


def test_big_endian_and_fortran_arrays_come_back_native_and_c_contiguous() -> None:
    array = np.asfortranarray(np.arange(12, dtype=">f4").reshape(3, 4))
    buffer = io.BytesIO()
    np.save(buffer, array)
    back = decode_array(buffer.getvalue())
    assert back.dtype.isnative and back.flags["C_CONTIGUOUS"] and back.flags["WRITEABLE"]
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    "array",
    [
        np.array(1.5, dtype=np.float32),  # 0-d: stays 0-d
        np.zeros((0, 3), dtype=np.int16),  # empty
        np.arange(12, dtype=">f8").reshape(3, 4),  # big-endian
        np.asfortranarray(np.arange(30, dtype=np.float16).reshape(5, 6)),  # sent in C order
        np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2],  # a strided view
    ],
    ids=["0-d", "empty", "big-endian", "fortran", "strided"],
)
def test_encoding_is_a_standard_npy_document_any_reader_loads(array: np.ndarray) -> None:
    data = encode_array(array)
    expected = io.BytesIO()
    np.save(expected, array if array.flags.c_contiguous else np.ascontiguousarray(array), allow_pickle=False)
    assert data == expected.getvalue() and len(data) == encoded_size(array)
    for back in (decode_array(data), np.load(io.BytesIO(data), allow_pickle=False)):
        assert back.shape == array.shape
        np.testing.assert_array_equal(back, array)
    assert (
        decode_array(bytearray(data)).flags["WRITEABLE"]
        and decode_array(memoryview(data)).shape == array.shape
    )


def test_pickled_object_array_is_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(TensorWireError, match="not allowed"):
        decode_array(buffer.getvalue())


def test_structured_and_complex_dtypes_are_refused() -> None:
    for array in (np.zeros(3, dtype=[("a", "f4"), ("b", "i4")]), np.zeros(3, dtype=np.complex64)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        with pytest.raises(TensorWireError, match="not allowed"):
            decode_array(buffer.getvalue())
        with pytest.raises(TensorWireError, match="not allowed"):
            encode_array(array)


def test_truncated_and_trailing_payloads_are_refused() -> None:
    data = encode_array(np.ones((4, 4), dtype=np.float32))
    with pytest.raises(TensorWireError, match="declares"):
        decode_array(data[:-1])
    with pytest.raises(TensorWireError, match="declares"):
        decode_array(data + b"\0")


def test_garbage_is_refused_with_a_clear_error() -> None:
    for data in (b"", b"hello", b"\x93NUMPY\x01\x00\xff\xff{not a dict}"):
        with pytest.raises(TensorWireError):
            decode_array(data)
    with pytest.raises(TensorWireError, match="expected bytes"):
        decode_array("text")  # type: ignore[arg-type]


def test_size_limit_is_checked_from_the_header_before_reading_data() -> None:
    data = encode_array(np.zeros((100, 100), dtype=np.float32))
    with pytest.raises(TensorWireError, match="limit"):
        decode_array(data, max_bytes=1000)
    # A forged header declaring a huge tensor with a tiny body is refused on the declared size.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 20, 1 << 20)}
    )
    with pytest.raises(TensorWireError, match="limit"):
        decode_array(header.getvalue() + b"\0" * 16)
    with pytest.raises(TensorWireError, match="limit"):
        encode_array(np.zeros(1000, dtype=np.float32), max_bytes=100)


def test_dtype_allow_list_is_configurable() -> None:
    data = encode_array(np.zeros(3, dtype=np.float64))
    with pytest.raises(TensorWireError, match="float64"):
        decode_array(data, allowed_dtypes={"float32"})


def test_encode_refuses_non_arrays() -> None:
    with pytest.raises(TensorWireError, match="numpy array"):
        encode_array([1, 2, 3])  # type: ignore[arg-type]
