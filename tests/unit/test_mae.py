import torch

from rayssl.config import MAEConfig, ViTConfig
from rayssl.methods.mae import mae_loss
from rayssl.models.mae import MaskedAutoencoder
from rayssl.models.vit import ViTEncoder, patchify, random_masking, sincos_pos_embed, unpatchify

TINY = ViTConfig(patch_size=4, width=32, depth=2, heads=4)


def test_patchify_round_trip_and_layout():
    images = torch.randn(2, 3, 16, 16)
    patches = patchify(images, 4)
    assert patches.shape == (2, 16, 48)
    assert torch.equal(unpatchify(patches, 4, 3), images)
    # patch 1 (row 0, column 1) holds pixels [0:4, 4:8], channel-last within the patch
    assert torch.equal(patches[0, 1].reshape(4, 4, 3), images[0, :, 0:4, 4:8].permute(1, 2, 0))


def test_masking_keeps_exact_count_and_is_seeded():
    ids_a, mask_a = random_masking(64, 16, 5, torch.Generator().manual_seed(0), torch.device("cpu"))
    ids_b, mask_b = random_masking(64, 16, 5, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(ids_a, ids_b) and torch.equal(mask_a, mask_b)
    assert (mask_a.sum(dim=1) == 48).all()  # exactly 75% masked in every sample
    assert (mask_a.gather(1, ids_a) == 0).all()  # kept ids are the unmasked ones
    assert not torch.equal(ids_a[0], ids_a[1])  # per-sample, not one mask for the batch
    ids_c, _ = random_masking(64, 16, 5, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert not torch.equal(ids_a, ids_c)


def test_loss_ignores_visible_patches():
    images = torch.zeros(1, 1, 8, 8)
    pred = torch.zeros(1, 4, 16)
    pred[0, 0] = 100.0  # a terrible prediction, but for a visible patch
    pred[0, 3] = 2.0  # masked patch: error 2^2 = 4 per pixel
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    # masked patches 1, 2 (error 0) and 3 (error 4) -> mean 4/3
    assert torch.isclose(mae_loss(images, pred, mask, 4, norm_pix=False), torch.tensor(4 / 3))


def test_norm_pix_targets_are_per_patch_normalised():
    images = torch.arange(16.0).reshape(1, 1, 4, 4) * 3 + 7
    target = patchify(images, 4)
    normalised = (target - target.mean()) / (target.var() + 1e-6).sqrt()
    loss = mae_loss(images, normalised, torch.ones(1, 1), 4, norm_pix=True)
    assert loss < 1e-10


def test_encoder_sees_only_visible_tokens():
    encoder = ViTEncoder(TINY, channels=1, image_size=16)  # 16 patches
    seen = []
    encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    images = torch.randn(2, 1, 16, 16)
    ids_keep, _ = random_masking(16, 4, 2, torch.Generator().manual_seed(0), images.device)
    assert encoder(images, ids_keep).shape == (2, 4, 32)
    encoder(images)
    assert seen == [4, 16]  # the transformer runs on 25% of the tokens when masking 75%


def test_mae_forward_shapes_and_gradients():
    model = MaskedAutoencoder(TINY, MAEConfig(decoder_width=16, decoder_depth=1, decoder_heads=2), channels=3, image_size=16)
    images = torch.randn(2, 3, 16, 16)
    pred, mask = model(images)
    assert pred.shape == (2, 16, 48) and mask.shape == (2, 16) and (mask.sum(1) == 12).all()
    mae_loss(images, pred, mask, 4, norm_pix=True).backward()
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0


def test_sincos_embeddings_are_distinct_and_bounded():
    pos = sincos_pos_embed(32, 4)
    assert pos.shape == (16, 32) and pos.abs().max() <= 1.0
    assert torch.unique(pos, dim=0).shape[0] == 16


def test_mae_needs_a_vit_and_exposes_its_encoder_as_backbone():
    import pytest

    from rayssl.config import ConfigError, PretrainConfig, load_config
    from rayssl.methods import build_method

    with pytest.raises(ConfigError, match="method 'mae' needs model.name: vit"):
        build_method(load_config(PretrainConfig, None, ["method=mae"]), 0)
    cfg = load_config(PretrainConfig, None, ["method=mae", "model.name=vit", "data.image_size=16", "model.vit.width=32"])
    backbone = build_method(cfg, 0).backbone()
    assert backbone(torch.randn(3, 1, 16, 16)).shape == (3, 32)
