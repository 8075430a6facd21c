"""The tutorial's code, run, and every number docs/tutorial.md states checked against an
independent computation and against the text itself."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from jaxconv import tutorial

TEXT = (Path(__file__).resolve().parents[1] / "docs" / "tutorial.md").read_text()


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    out = tmp_path_factory.mktemp("tutorial")
    result = tutorial.run(out)
    assert json.loads((out / "numbers.json").read_text()) == json.loads(json.dumps(result))
    for name in (
        "tutorial_1d_strip.png",
        "tutorial_2d_kernels.png",
        "tutorial_2d_sizes.png",
        "tutorial_learned_filters.png",
        "tutorial_learned_filters_1d.png",
        "tutorial_pool_activate.png",
    ):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"images/tutorial/{name}" in TEXT  # the text shows every figure
    return result


def _listed(values) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def test_one_dimension(numbers):
    step = numbers["1_signal"]
    a, box, ramp = [1, 2, 3, 4, 5], [1, 1, 1], [1, 2, 3]
    assert step["full"] == np.convolve(a, box).tolist() == [1, 3, 6, 9, 12, 9, 5]
    assert step["same"] == np.convolve(a, box, "same").tolist()
    assert step["valid"] == np.convolve(a, box, "valid").tolist()
    assert step["convolve_ramp"] == np.convolve(a, ramp).tolist()
    assert step["correlate_ramp"] == np.correlate(a, ramp, "full").tolist()
    for key in ("full", "same", "valid", "convolve_ramp", "correlate_ramp"):
        assert _listed(step[key]) in TEXT, key


def test_two_dimensions(numbers):
    step = numbers["2_photo"]
    image = tutorial.photo()
    i, j = step["pixel"]
    k = tutorial.KERNELS["Sobel x"]
    by_loop = sum(float(image[i + m, j + n]) * k[m, n] for m in range(3) for n in range(3))
    assert step["by_hand"] == step["by_correlate"] == round(by_loop, 4)
    assert f"{step['by_hand']} and {step['by_correlate']}" in TEXT
    h, w = step["photo_shape"]
    assert (h, w) == (213, 320) and f"{h}x{w}" in TEXT
    expected = {
        "VALID": (h - 2, w - 2),
        "SAME": (h, w),
        "stride 2": (-(-h // 2), -(-w // 2)),
        "dilation 4": (h - 8, w - 8),
    }
    for name, size in expected.items():
        assert tuple(step["sizes"][name]) == size, name
        assert f"| {size[0]}x{size[1]} |" in TEXT, name


def test_bank_and_pooling(numbers):
    assert numbers["3_bank"]["maps_shape"] == [1, 213, 320, 5]
    step = numbers["5_pool_activate"]
    x = np.array(step["example_input"])
    blocks = x.reshape(2, 2, 2, 2).swapaxes(1, 2)
    assert step["example_max"] == blocks.max(axis=(2, 3)).tolist()
    assert step["example_avg"] == blocks.mean(axis=(2, 3)).tolist()
    for key in ("example_max", "example_avg"):
        rows = ", ".join(_listed(r) for r in step[key])
        assert f"[{rows}]" in TEXT, key
    shapes = step["pooled_shapes"]
    assert shapes["max 2x2"] == [105, 159] and shapes["max 4x4 stride 4"] == [52, 79]
    assert "105x159" in TEXT and "52x79" in TEXT


def test_learned_filters_and_backends(numbers):
    accuracy = numbers["4_learned"]["test_accuracy"]
    stated = int(re.search(r"about (\d+)% test accuracy", TEXT).group(1))
    assert abs(accuracy * 100 - stated) <= 2, accuracy
    accuracy_1d = numbers["4_learned"]["mnist1d_test_accuracy"]
    stated_1d = int(re.search(r"reaches about (\d+)% test\naccuracy", TEXT).group(1))
    assert abs(accuracy_1d * 100 - stated_1d) <= 3, accuracy_1d
    backends = numbers["6_backends"]["backends"]
    assert set(backends) == {"lax", "window", "fft", "winograd", "auto"}
    assert all(b["max_abs_diff_vs_lax"] <= 1e-4 for b in backends.values())
    assert "within 1e-4" in TEXT


def test_cli_refuses_a_file_as_out_dir(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert tutorial.main([str(target)]) == 2
    assert "OUT_DIR" in capsys.readouterr().err
    assert target.read_text() == "keep me"
