"""Weight import: Hara and torchvision files written here with the documented names load strictly;
mismatches give clear errors; a file carrying pickled code is refused and its code never runs."""
import os
import shlex
import zipfile

import pytest
import torch

from model.resnet2d import resnet18, resnet34
from model.resnet3d import resnet3d
from model.weights import UnsafeFileError, load_hara, load_torchvision, safe_load
from tests.test_resnet2d import torchvision_entries
from tests.test_resnet3d import hara_entries


def random_state(entries, seed=0):
    """A state dict with the given names and shapes and random values (positive running_var)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in entries.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1234)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        else:
            state[name] = torch.randn(shape, generator=g)
    return state


def hara_file(tmp_path, depth, name="hara.pth", **kw):
    """Hara's release format: {'epoch', 'arch', 'state_dict', 'optimizer'}, `module.` keys, no BN counters."""
    state = random_state(hara_entries(depth, counters=False, **kw))
    path = tmp_path / name
    torch.save({"epoch": 200, "arch": f"resnet-{depth}", "optimizer": {"state": {}, "param_groups": []},
                "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return path, state


def assert_loaded(model, state, skip=("fc.",)):
    own = model.state_dict()
    for k, v in state.items():
        if not k.startswith(skip) and not k.endswith("num_batches_tracked"):
            assert torch.equal(own[k], v), k


# ---- Hara -------------------------------------------------------------------------------------

def test_hara_release_file_loads_strictly(tmp_path):
    path, state = hara_file(tmp_path, 10)
    model = resnet3d(10, num_classes=8)
    fc_before = model.fc.weight.clone()
    report = load_hara(model, path)
    assert_loaded(model, state)
    assert torch.equal(model.fc.weight, fc_before)  # the 400-class fc is not used
    assert report.skipped == ["fc.weight", "fc.bias"] and report.kept == ["fc.weight", "fc.bias"]
    n_tensors = len(hara_entries(10, counters=False))
    assert len(report.loaded) == n_tensors - 2
    assert "num_batches_tracked" in " ".join(report.notes) and "arch='resnet-10'" in str(report)


def test_bare_state_dict_without_prefix_with_fc(tmp_path):
    state = random_state(hara_entries(10, shortcut="A"))  # with BN counters, as newer PyTorch saves
    torch.save(state, tmp_path / "bare.pth")
    model = resnet3d(10, shortcut="A")
    report = load_hara(model, tmp_path / "bare.pth", keep_fc=True)
    assert_loaded(model, state, skip=())
    assert model.bn1.num_batches_tracked.item() == 1234
    assert report.skipped == [] and report.kept == []
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():  # the loaded weights are the ones used
        assert torch.isfinite(model.eval()(x)).all()


@pytest.mark.slow
def test_full_size_resnet101_kinetics_format():
    state = random_state(hara_entries(101, counters=False))
    checkpoint = {"epoch": 200, "arch": "resnet-101", "state_dict": {"module." + k: v for k, v in state.items()}}
    model = resnet3d(101)
    report = load_hara(model, checkpoint)
    assert_loaded(model, state)
    assert len(report.loaded) == len(state) - 2 and report.skipped == ["fc.weight", "fc.bias"]


def test_depth_mismatch_lists_missing_and_unexpected_keys(tmp_path):
    state = random_state(hara_entries(18))
    with pytest.raises(ValueError) as err:  # 18 -> 10: the second block of every layer is unexpected
        load_hara(resnet3d(10), state)
    msg = str(err.value)
    extra = [k for k in hara_entries(18) if k not in hara_entries(10)]  # BN counters included
    assert f"unexpected in the file: {len(extra)} keys, e.g. layer1.1.conv1.weight" in msg
    assert "missing from the file: 0 keys" in msg
    assert "ResNet3D(depth=10, shortcut='B')" in msg and "build resnet3d(18)" in msg

    with pytest.raises(ValueError) as err:  # 10 -> 18 in a Hara file: missing keys
        r10 = random_state(hara_entries(10))
        load_hara(resnet3d(18), {"state_dict": {"module." + k: v for k, v in r10.items()}})
    missing = [k for k in hara_entries(18) if k not in hara_entries(10) and not k.endswith("num_batches_tracked")]
    assert f"missing from the file: {len(missing)} keys, e.g. layer1.1.conv1.weight" in str(err.value)


def test_shortcut_a_file_into_shortcut_b_model_says_so():
    state = random_state(hara_entries(18, shortcut="A"))
    expected = r"(?s)missing from the file: 15 keys.*build resnet3d\(18, shortcut='A'\)"
    with pytest.raises(ValueError, match=expected):
        load_hara(resnet3d(18), state)


def test_arch_mismatch_and_unsupported_arch(tmp_path):
    path, _ = hara_file(tmp_path, 10)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["arch"] = "resnet-50"
    expected = r"arch 'resnet-50' does not match the model \(resnet-10\); build it with resnet3d\(50\)"
    with pytest.raises(ValueError, match=expected):
        load_hara(resnet3d(10), checkpoint)
    checkpoint["arch"] = "resnext-101"
    with pytest.raises(ValueError, match="arch 'resnext-101' is not a plain 3D ResNet"):
        load_hara(resnet3d(10), checkpoint)


def test_keep_fc_with_other_classes_is_a_shape_error():
    state = random_state(hara_entries(10))
    expected = r"(?s)shape mismatches: 2, e.g. fc.weight: file \(400, 512\), model \(8, 512\).*keep_fc=False"
    with pytest.raises(ValueError, match=expected):
        load_hara(resnet3d(10, num_classes=8), state, keep_fc=True)


def test_not_a_state_dict():
    with pytest.raises(ValueError, match="found non-tensor entries epoch"):
        load_hara(resnet3d(10), {"epoch": 3, "conv1.weight": torch.zeros(1)})


# ---- torchvision --------------------------------------------------------------------------------

@pytest.fixture
def imagenet_file(tmp_path):
    state = random_state(torchvision_entries(), seed=1)
    assert len(state) == 122
    torch.save(state, tmp_path / "resnet18-f37072fd.pth")
    return tmp_path / "resnet18-f37072fd.pth", state


@pytest.mark.parametrize("kernel", [7, (7, 1)])
def test_torchvision_loads_with_rgb_summed(imagenet_file, kernel):
    path, state = imagenet_file
    model = resnet18(in_channels=1, first_kernel=kernel)
    report = load_torchvision(model, path)
    assert_loaded(model, {k: v for k, v in state.items() if k != "conv1.weight"})
    assert len(report.loaded) == 120 and report.skipped == ["fc.weight", "fc.bias"]
    w = state["conv1.weight"]  # [64, 3, 7, 7]
    expected = w[:, 0:1] + w[:, 1:2] + w[:, 2:3]
    if kernel != 7:
        expected = sum(expected[..., j:j + 1] for j in range(7))  # the 7 columns of the (7, 1) kernel
    assert model.conv1.weight.shape == expected.shape
    assert torch.allclose(model.conv1.weight, expected, atol=1e-5)


def test_torchvision_sum_is_the_rgb_response_to_grey_input(imagenet_file):
    path, state = imagenet_file
    model = resnet18(in_channels=1)
    load_torchvision(model, path)
    grey = torch.randn(1, 1, 20, 20)
    rgb = torch.nn.functional.conv2d(grey.expand(1, 3, 20, 20), state["conv1.weight"], stride=2, padding=3)
    assert torch.allclose(model.conv1(grey), rgb, atol=1e-4)


def test_torchvision_fresh_first_conv(imagenet_file):
    path, state = imagenet_file
    model = resnet18(in_channels=1, first_kernel=(7, 1))
    report = load_torchvision(model, path, first_conv="fresh")
    assert_loaded(model, {k: v for k, v in state.items() if k != "conv1.weight"})
    assert "conv1.weight" in report.kept and "conv1.weight" in report.skipped
    w = model.conv1.weight
    assert w.abs().max() <= 1 / 7 ** 0.5  # PyTorch's default Conv2d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert not torch.allclose(w, state["conv1.weight"].sum(dim=(1, 3), keepdim=True))


def test_torchvision_old_file_rgb_model_and_errors(tmp_path):
    old = {k: v for k, v in random_state(torchvision_entries(), seed=2).items() if "num_batches" not in k}
    assert len(old) == 102  # saved before PyTorch 0.4.1
    model = resnet18(in_channels=3)
    load_torchvision(model, old, keep_fc=True)
    assert_loaded(model, old, skip=())
    expected = r"(?s)ResNet2D\(depth=34.*missing from the file: \d+ keys, e.g. layer1.2.conv1.weight"
    with pytest.raises(ValueError, match=expected):
        load_torchvision(resnet34(), old)
    with pytest.raises(ValueError, match="first_conv must be 'sum' or 'fresh', got 'mean'"):
        load_torchvision(model, old, first_conv="mean")
    no_conv = {k: v for k, v in old.items() if k != "conv1.weight"}
    with pytest.raises(ValueError, match="missing from the file: 1 keys, e.g. conv1.weight"):
        load_torchvision(resnet18(), no_conv)


# ---- refusing pickled code ----------------------------------------------------------------------

class RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):  # unpickling this object would call os.system(command)
        return os.system, (self.command,)


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    state = {"conv1.weight": torch.randn(64, 3, 7, 7, 7)}
    payload = RunsACommand(f"touch {shlex.quote(str(marker))}")
    torch.save({"arch": "resnet-10", "state_dict": state, "extra": payload}, path)
    with zipfile.ZipFile(path) as z:  # the file really carries the call
        pickled = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"system" in pickled
    with pytest.raises(UnsafeFileError, match=r"refused: the file contains pickled code \((posix|nt)\.system\)"):
        safe_load(path)
    with torch.device("meta"):  # the file is refused before any weight is touched
        r3d, r2d = resnet3d(10), resnet18()
    with pytest.raises(UnsafeFileError):
        load_hara(r3d, path)
    with pytest.raises(ValueError, match="refused"):  # also a ValueError for callers that catch those
        load_torchvision(r2d, path)
    assert not marker.exists()


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="cannot read .*junk.pth as a PyTorch weight file"):
        safe_load(junk)
    with pytest.raises(FileNotFoundError, match="no such weight file"):
        safe_load(tmp_path / "absent.pth")


def test_first_conv_that_cannot_be_summed_is_reported(imagenet_file):
    path, _ = imagenet_file
    with pytest.raises(ValueError, match=r"(?s)shape mismatches: 1, e.g. conv1.weight: file \(64, 3, 7, 7\), "
                                         r"model \(64, 1, 5, 5\).*cannot map kernel \(7, 7\) to \(5, 5\)"):
        load_torchvision(resnet18(first_kernel=5), path)
