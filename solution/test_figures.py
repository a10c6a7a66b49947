"""The pictures of run_vae.py (figures.py): each is written, is a PNG of its grid, and shows what it says."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data
import figures
from vae import VAE

HERE = Path(__file__).resolve().parent
SIDE = figures.SIDE
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# (width, height) in pixels and PIL mode of each picture; the grids have one pixel per MNIST pixel.
EXPECTED = {
    "samples.png": ((20 * SIDE, 10 * SIDE), "L"),
    "reconstructions.png": ((20 * SIDE, 2 * SIDE), "L"),
    "interpolations.png": ((figures.INTERPOLATION_STEPS * SIDE, 10 * SIDE), "L"),
    "curves.png": ((1200, 360), "RGBA"),
    "latent.png": ((640, 560), "RGBA"),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every picture of one untrained model, with a made-up training curve."""
    out = tmp_path_factory.mktemp("pictures")
    torch.manual_seed(0)
    model = VAE(z_dim=10)
    test_x = torch.from_numpy(data.load_test_subset()[0])
    curve = figures.TrainingCurve()
    for step in range(100, 3001, 100):
        curve(step, (100 + 3000 / step, 19 - 100 / step, 81 + 3100 / step))
    torch.manual_seed(1)
    names, skipped = figures.save_pictures(model, test_x, out, curve=curve, final=(101.5, 19.3, 82.2))
    assert skipped == [] and sorted(names) == sorted(EXPECTED)
    return out, model, test_x


def grey(path):
    """A greyscale PNG as float intensities in [0, 1]."""
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64) / 255


def tile(picture, row, col):
    return picture[row * SIDE:(row + 1) * SIDE, col * SIDE:(col + 1) * SIDE].reshape(-1)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_picture_is_a_png_of_its_size(written, name):
    path = written[0] / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert (image.size, image.mode) == EXPECTED[name]
        image.verify()                                      # checksums and structure


def test_samples_are_the_models_pixel_probabilities(written):
    out, model, _ = written
    torch.manual_seed(1)                                    # the draws save_pictures made first
    with torch.no_grad():
        expected = model.sample_sigmoid(200).numpy()
    picture = grey(out / "samples.png")
    got = np.stack([tile(picture, r, c) for r in range(10) for c in range(20)])
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6


def test_reconstructions_show_test_digits_above_their_reconstructions(written):
    out, model, test_x = written
    picture = grey(out / "reconstructions.png")
    shown = test_x[::5][:20]
    with torch.no_grad():
        recon = model.compute_sigmoid_given(model.enc(shown)[0]).numpy()
    for col in range(20):
        assert np.array_equal(tile(picture, 0, col), shown[col].numpy())     # binary: exact
        assert np.abs(tile(picture, 1, col) - recon[col]).max() <= 0.5 / 255 + 1e-6


def test_interpolations_run_between_the_codes_of_the_chosen_pairs(written):
    out, model, test_x = written
    picture = grey(out / "interpolations.png")
    labels = figures.subset_labels()
    pairs = figures.interpolation_pairs(labels)
    assert len(pairs) == 10 and all(labels[a] != labels[b] for a, b in pairs)
    steps = figures.INTERPOLATION_STEPS
    with torch.no_grad():
        codes = model.enc(test_x)[0]
        for row, (a, b) in enumerate(pairs):
            ends = model.compute_sigmoid_given(torch.stack((codes[a], codes[b]))).numpy()
            assert np.abs(tile(picture, row, 0) - ends[0]).max() <= 0.5 / 255 + 1e-6     # decodes a's code
            assert np.abs(tile(picture, row, steps - 1) - ends[1]).max() <= 0.5 / 255 + 1e-6   # and b's
            middle = model.compute_sigmoid_given(((5 * codes[a] + 4 * codes[b]) / 9)[None]).numpy()[0]
            assert np.abs(tile(picture, row, 4) - middle).max() <= 0.5 / 255 + 1e-5   # t = 4/9


def test_interpolation_pairs_cover_every_digit_with_different_images():
    pairs = figures.interpolation_pairs(figures.subset_labels())
    assert [(a // 10, b // 10) for a, b in pairs] == [(d, (d + 1) % 10) for d in range(10)]
    assert all(a % 10 == 0 and b % 10 == 1 for a, b in pairs)


def test_interpolation_codes_are_the_straight_line_with_both_ends():
    start, end = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    line = figures.interpolation_codes(start, end, 10)
    assert line.shape == (3, 10, 4)
    assert torch.equal(line[:, 0], start) and torch.allclose(line[:, -1], end, atol=1e-15)
    assert torch.allclose(line[:, 3], start + (end - start) * 3 / 9)


def _coloured(path):
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    return {tuple(c) for c in pixels.reshape(-1, 3)[::7]}


def test_curves_plot_three_panels_with_lines(written):
    colours = _coloured(written[0] / "curves.png")
    for default in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):      # matplotlib's C0, C1, C2
        assert any(max(abs(a - b) for a, b in zip(c, default)) < 8 for c in colours), default


def test_latent_plot_colours_every_digit(written):
    colours = _coloured(written[0] / "latent.png")
    tab10 = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
             (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
    for colour in tab10:
        assert any(max(abs(a - b) for a, b in zip(c, colour)) < 8 for c in colours), colour


def test_no_curve_means_no_curves_png(tmp_path):
    torch.manual_seed(0)
    test_x = torch.bernoulli(torch.full((100, 784), 0.3))
    names, skipped = figures.save_pictures(VAE(), test_x, tmp_path)
    assert "curves.png" not in names + skipped and (tmp_path / "latent.png").exists()


def test_principal_components_of_codes_with_known_structure():
    """Codes = a point + coordinates along an orthonormal basis (u, w, ...), the coordinates centred,
    uncorrelated, with spreads 3 along u, 1 along w and 0.01 along the 8 other directions: the first
    two components are u and w, the projection gives back the coordinates, the shares are 9 : 1."""
    g = torch.Generator().manual_seed(0)
    n, d = 500, 10
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))        # columns: u, w, ...
    raw = torch.randn(n, d, generator=g, dtype=torch.float64)
    coordinates, _ = torch.linalg.qr(raw - raw.mean(0))                    # centred, orthonormal columns
    spreads = torch.tensor([3.0, 1.0] + [0.01] * (d - 2), dtype=torch.float64)
    coordinates = coordinates * spreads * math.sqrt(n - 1)                # column sd = spread
    codes = 5.0 + coordinates @ basis.T
    projection, components, share = figures.principal_components(codes)
    assert projection.shape == (n, 2) and components.shape == (2, d)
    signs = torch.sign(components @ basis[:, :2]).diagonal()
    assert torch.allclose(components, (basis[:, :2] * signs).T, atol=1e-9)
    assert torch.allclose(projection, coordinates[:, :2] * signs, atol=1e-9)
    assert torch.allclose(share, spreads[:2] ** 2 / (spreads ** 2).sum(), atol=1e-12)
    assert all(c[c.abs().argmax()] > 0 for c in components)               # sign fixed: largest loading positive
    mirrored, again, _ = figures.principal_components(10.0 - codes)       # the cloud mirrored: same axes
    assert torch.allclose(again, components, atol=1e-9) and torch.allclose(mirrored, -projection, atol=1e-9)


def test_two_dimensional_codes_are_drawn_as_they_are():
    codes = torch.randn(50, 2)
    points, names = figures.latent_2d(codes)
    assert torch.equal(points, codes.double()) and names == ("z[0]", "z[1]")
    points, names = figures.latent_2d(torch.randn(50, 1))
    assert points.shape == (50, 2) and not points[:, 1].any()
    points, names = figures.latent_2d(torch.randn(50, 10))
    assert points.shape == (50, 2) and names[0].startswith("principal component 1")


def test_subset_labels_are_the_labels_of_the_test_subset():
    assert np.array_equal(figures.subset_labels().numpy(), data.load_test_subset()[1])


def test_training_curve_records_every_report_and_passes_it_on():
    seen = []
    curve = figures.TrainingCurve(then=lambda step, running: seen.append((step, running)))
    curve(100, (120.0, 10.0, 110.0))
    curve(150, 101.0)                                       # a loop that reports the NELBO alone
    assert curve.iterations == [100, 150]
    assert curve.values[0] == (120.0, 10.0, 110.0) and curve.values[1][0] == 101.0 and math.isnan(curve.values[1][1])
    assert seen == [(100, (120.0, 10.0, 110.0)), (150, 101.0)]


def test_grey_png_round_trips_through_a_png_reader(tmp_path):
    import matplotlib.image
    image = torch.rand(37, 53, generator=torch.Generator().manual_seed(0))
    image[0, 0], image[0, 1] = -0.5, 1.5                           # clamped to black and white
    figures.write_grey_png(tmp_path / "x.png", image)
    read = matplotlib.image.imread(tmp_path / "x.png")
    assert read.shape == (37, 53)
    expected = (image.clamp(0, 1) * 255).round().numpy() / 255
    assert np.abs(read - expected).max() < 1e-6
    assert read[0, 0] == 0 and read[0, 1] == 1


def test_start_up_imports_no_plotting_library():
    code = "import sys, run_vae; print(sorted(m for m in ('matplotlib', 'PIL') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


HIDE = "import sys\nfor name in {hidden!r}:\n    sys.modules[name] = None\n" \
       "import runpy\nsys.argv = ['run_vae.py'] + sys.argv[1:]\nrunpy.run_path('run_vae.py', run_name='__main__')\n"


@pytest.mark.parametrize("hidden, skipped, missing", [
    (("matplotlib",), ["curves.png", "latent.png"], "matplotlib is"),
    (("matplotlib", "PIL"), ["samples.png", "reconstructions.png", "interpolations.png", "curves.png", "latent.png"],
     "matplotlib and Pillow are"),
])
def test_without_matplotlib_training_still_runs_and_says_what_was_skipped(tmp_path, hidden, skipped, missing):
    result = subprocess.run([sys.executable, "-c", HIDE.format(hidden=hidden), "--iters", "5", "--quiet",
                             "--out", str(tmp_path)], cwd=HERE, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("NELBO: ")
    told = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert told == [f"pictures skipped: {', '.join(skipped)} ({missing} not installed: "
                    "`pip install matplotlib` to get them, Pillow comes with it)"], result.stderr
    assert (tmp_path / "model.pt").exists()
    for name in EXPECTED:
        assert (tmp_path / name).exists() == (name not in skipped), name
