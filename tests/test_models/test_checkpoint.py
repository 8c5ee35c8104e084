"""The checkpoint reader: crafted, foreign, partial and inconsistent files,
and the ``Pretrained`` path of the backbone that uses it."""
import copy

import pytest
import torch
import torchvision

from atomnas_mm.models import AtomNASNet, load_spec
from atomnas_mm.models.checkpoint import (CheckpointError,
                                          check_weights_match_spec,
                                          load_checkpoint_file,
                                          spec_from_checkpoint, state_dict_of)
from tests.conftest import image_classifier


def _search_like(tmp_path, tiny_spec, name='deploy.pth', prefix='backbone.'):
    """A checkpoint shaped like a search's deploy.pth: a shrunk net's
    weights under ``prefix`` and its spec in meta."""
    net = AtomNASNet(tiny_spec)
    net.keep_atoms({1: {3: range(4), 7: range(9)}, 3: {5: [1, 2]}})
    path = str(tmp_path / name)
    torch.save(dict(state_dict={prefix + k: v for k, v in
                                net.state_dict().items()},
                    meta=dict(atomnas_spec=net.arch_spec.to_dict())), path)
    return path, net


def test_foreign_resnet_state_dict(tmp_path):
    path = str(tmp_path / 'resnet18.pth')
    torch.save(torchvision.models.resnet18().state_dict(), path)
    ckpt = load_checkpoint_file(path)
    assert 'conv1.weight' in state_dict_of(ckpt, path)
    with pytest.raises(CheckpointError, match='resnet18.pth: holds no '
                       'AtomNAS spec'):
        spec_from_checkpoint(path)


def test_state_dict_of_refuses_non_weights(tmp_path):
    with pytest.raises(CheckpointError, match='no state_dict'):
        state_dict_of({'meta': {}, 'state_dict': {'x': 'y'}}, 'f.pth')


def test_meta_spec_contradicting_weights_is_refused(tmp_path, tiny_spec):
    path, net = _search_like(tmp_path, tiny_spec)
    assert spec_from_checkpoint(path) == net.arch_spec
    ckpt = torch.load(path, weights_only=True)
    ckpt['meta']['atomnas_spec'] = load_spec(tiny_spec).to_dict()  # a lie
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r'deploy.pth: its spec .* says '
                       r'blocks\[1\] has kernels \{3: 16, 5: 16, 7: 16\} but '
                       r'its weights \(backbone.blocks.1\) have '
                       r'\{3: 4, 7: 9\}'):
        spec_from_checkpoint(path)
    with pytest.raises(CheckpointError, match='deploy.pth'):
        AtomNASNet(arch=None, init_cfg=dict(type='Pretrained',
                                            checkpoint=path))


def test_weights_with_extra_block_are_refused(tiny_spec):
    spec = load_spec(tiny_spec)
    state = AtomNASNet(tiny_spec).state_dict()
    state['blocks.9.branches.k3.dw_conv.weight'] = torch.zeros(2, 1, 3, 3)
    with pytest.raises(CheckpointError, match='block 9'):
        check_weights_match_spec(state, spec, 'x')


# ------------------------------------------------------------ Pretrained
@pytest.mark.parametrize('arch', ['tiny', None])
def test_pretrained_from_searched_checkpoint(tmp_path, tiny_spec, arch):
    """The supernet's arch (or None) + Pretrained from a shrunk net: the
    backbone takes the checkpoint's spec and weights, inside a classifier
    whose init goes through mmengine's bookkeeping."""
    path, src = _search_like(tmp_path, tiny_spec)
    model = image_classifier(
        copy.deepcopy(tiny_spec) if arch else None, 3,
        head_channels=tiny_spec['head_channels'],
        init_cfg=dict(type='Pretrained', checkpoint=path,
                      prefix='backbone.'))
    assert model.backbone.arch_spec == src.arch_spec
    model.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k


def test_pretrained_without_prefix_names_the_fix(tmp_path, tiny_spec):
    path, _ = _search_like(tmp_path, tiny_spec)
    net = AtomNASNet(None, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match="prefix='backbone.'"):
        net.init_weights()


def test_pretrained_of_another_net_is_refused(tmp_path, tiny_spec):
    path, _ = _search_like(tmp_path, tiny_spec)
    other = copy.deepcopy(tiny_spec)
    other['blocks'][1]['kernels'] = {'3': 2}
    with pytest.raises(Exception, match='set arch=None'):
        AtomNASNet(other, init_cfg=dict(type='Pretrained', checkpoint=path,
                                        prefix='backbone.'))


def test_pretrained_with_missing_keys_is_refused(tmp_path, tiny_spec):
    path, src = _search_like(tmp_path, tiny_spec, prefix='')
    ckpt = torch.load(path, weights_only=True)
    del ckpt['state_dict']['head.0.weight']
    torch.save(ckpt, path)
    net = AtomNASNet(None, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match='1 missing key.*head.0.weight'):
        net.init_weights()
