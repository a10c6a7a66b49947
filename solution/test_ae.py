"""Instructor tests of the linear autoencoder's reference (problem `ae`), in-process (trusted)."""
import hashlib

import numpy as np
import torch

import run_ae
import train_ae
from ae import LinearAutoencoder, NonlinearAutoencoder, cross_entropy_loss, reconstruction_loss
from autograder import ae_evaluation, config


def test_the_split_is_pinned_and_disjoint():
    train, validation = train_ae.split()
    assert len(train) == 54000 and len(validation) == 6000
    assert len(set(train.tolist()) | set(validation.tolist())) == 60000
    digest = hashlib.sha256(np.concatenate([train.numpy(), validation.numpy()]).astype("<i8").tobytes()).hexdigest()
    assert digest == config.AE_SPLIT_SHA256


def test_the_loss_is_the_mean_squared_error_per_pixel():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(13, 784, generator=g), torch.rand(13, 784, generator=g)
    assert reconstruction_loss(x, y).shape == ()
    assert torch.isclose(reconstruction_loss(x, y), torch.nn.functional.mse_loss(y, x))
    assert torch.isclose(reconstruction_loss(x[:1], y[:1]), ((x[0] - y[0]) ** 2).sum() / 784)


def test_the_maps_are_affine_and_the_probes_recover_them():
    torch.manual_seed(0)
    model = LinearAutoencoder(7)
    enc_in, dec_in = ae_evaluation.probe_points(7, 1)
    with torch.no_grad():
        enc = ae_evaluation.affine_fit(enc_in, model.encode(torch.from_numpy(enc_in)).numpy())
        dec = ae_evaluation.affine_fit(dec_in, model.decode(torch.from_numpy(dec_in)).numpy())
    assert enc.worst_ratio <= 1 and dec.worst_ratio <= 1
    assert np.allclose(enc.weight, model.encoder.weight.detach().double().numpy(), atol=1e-6)
    assert np.allclose(dec.bias, model.decoder.bias.detach().double().numpy(), atol=1e-7)


def test_a_relu_between_the_maps_is_not_affine():
    torch.manual_seed(0)
    model = NonlinearAutoencoder(7)
    enc_in, _ = ae_evaluation.probe_points(7, 1)
    with torch.no_grad():
        fit = ae_evaluation.affine_fit(enc_in, model.encode(torch.from_numpy(enc_in)).numpy())
    assert fit.worst_ratio > 1e3


def test_training_moves_towards_pca_and_the_run_script_reports_it(capsys, tmp_path):
    images = torch.from_numpy(np.concatenate(list(ae_evaluation.training_rows(ae_evaluation.data_dir_default())))[:6000])
    torch.manual_seed(0)
    model = LinearAutoencoder(5)
    first = train_ae.train(model, images, 50, loss=reconstruction_loss, log_every=10)
    last = train_ae.train(model, images, 300, loss=reconstruction_loss)
    assert last < first
    assert run_ae.main(["--k", "2", "--iters", "100", "--out", str(tmp_path)]) == 0
    assert "PCA's" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interpolation_k2.png", "reconstructions_k2.png",
                                                          "samples_k2.png"]


def test_the_nonlinear_variant_trains_with_the_same_script(tmp_path):
    assert run_ae.main(["--k", "3", "--iters", "30", "--nonlinear", "--no-figures"]) == 0
    x = torch.rand(4, 784)
    assert cross_entropy_loss(x, NonlinearAutoencoder(3)(x)).shape == ()
