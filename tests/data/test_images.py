"""Stimulus image helpers: file decoding, centre crop + resize, streaming rows out of an image archive."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mindvis.data.images import (
    center_crop_resize,
    npz_array_shape,
    read_image_file,
    read_image_files,
    read_npz_image_rows,
    resize_images,
    to_uint8_rgb,
)
from mindvis.errors import InputDataError


def test_to_uint8_rgb_handles_gray_rgba_and_float_scales():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_uint8_rgb(gray).shape == (3, 4, 3) and (to_uint8_rgb(gray)[..., 2] == gray).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert to_uint8_rgb(rgba).shape == (2, 2, 3)
    unit = np.full((2, 2, 3), 0.5)
    assert (to_uint8_rgb(unit) == 128).all()
    assert (to_uint8_rgb(np.full((2, 2, 3), 200.0)) == 200).all()
    with pytest.raises(ValueError):
        to_uint8_rgb(np.zeros((2, 2, 5)))


def test_center_crop_keeps_the_middle_square():
    image = np.zeros((10, 16, 3), np.uint8)
    image[:, 3:13] = 200  # the centre 10x10 square
    out = center_crop_resize(image, 10)
    assert out.shape == (10, 10, 3) and (out == 200).all()
    tall = np.zeros((16, 10, 3), np.uint8)
    tall[3:13] = 90
    assert (center_crop_resize(tall, 5) == 90).all()


def test_resize_is_antialiased():
    # a one-pixel checkerboard must shrink to its mean grey, not to an aliased pattern
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = center_crop_resize(to_uint8_rgb(board), 16)
    assert np.abs(out.astype(int) - 128).max() <= 3


def test_resize_images_returns_uint8_stack():
    stack = np.random.default_rng(0).random((3, 12, 12, 3))
    out = resize_images(stack, 6)
    assert out.shape == (3, 6, 6, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK", "RGBA", "P"])
def test_image_files_of_any_mode_become_rgb(tmp_path, mode):
    picture = Image.fromarray(np.full((12, 18, 3), 120, np.uint8))
    # an adaptive palette holds the exact colour (the default web palette would dither it)
    picture = picture.convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else picture.convert(mode)
    path = tmp_path / f"x.{'jpg' if mode == 'CMYK' else 'png'}"
    picture.save(path)
    out = read_image_file(path, 6)
    assert out.shape == (6, 6, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - 120).max() <= 3


def test_missing_and_corrupt_image_files_raise_input_errors(tmp_path):
    with pytest.raises(InputDataError, match="missing stimulus image"):
        read_image_file(tmp_path / "none.jpg", 8)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputDataError, match="cannot decode") as caught:
        read_image_files([bad], 8)
    assert caught.value.path == str(bad) and caught.value.hint


@pytest.fixture(params=[False, True], ids=["stored", "deflated"])
def archive(tmp_path, request):
    images = np.zeros((70, 6, 6, 3), np.uint8)  # more rows than one streaming chunk
    images[:] = np.arange(70, dtype=np.uint8)[:, None, None, None] * 3
    path = tmp_path / "images.npz"
    (np.savez_compressed if request.param else np.savez)(path, train_images=images, other=np.arange(3))
    return path, images


def test_npz_rows_are_read_in_the_requested_order(archive):
    path, images = archive
    rows = [65, 3, 3, 40, 0]
    out = read_npz_image_rows(path, "train_images", rows, 6)
    np.testing.assert_array_equal(out, images[rows])
    assert npz_array_shape(path, "train_images", "archive") == (70, 6, 6, 3)
    assert read_npz_image_rows(path, "train_images", [69], 3).shape == (1, 3, 3, 3)


def test_npz_row_errors_name_the_archive(archive, tmp_path):
    path, _ = archive
    with pytest.raises(InputDataError, match="out of range") as caught:
        read_npz_image_rows(path, "train_images", [70], 6)
    assert caught.value.value == 70
    with pytest.raises(InputDataError, match="lacks the array"):
        read_npz_image_rows(path, "test_images", [0], 6)
    with pytest.raises(InputDataError, match="lacks the array"):
        npz_array_shape(path, "test_images", "archive")
    with pytest.raises(InputDataError, match="not an image stack"):
        read_npz_image_rows(path, "other", [0], 6)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(InputDataError, match="corrupt") as caught:
        read_npz_image_rows(truncated, "train_images", [0], 6)
    assert caught.value.path == str(truncated)
