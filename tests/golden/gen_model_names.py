#!/usr/bin/python3
"""Golden state_dict listings (and two golden forward passes) for the model-zoo plugins.

The models below are PyTorch definitions of the seeds' networks, written as their sources write
them, so that the module attribute names, their registration order and therefore the state_dict
names and order are PyTorch's own:

  alexnet            seed 000, mattiav90/AlexNet main.py class AlexNet (conv1..5, fc1..3 and
                     bn1..5 registered in that order - the state_dict lists bn* last)
  alexnet_tv         seed 001, torchvision.models.AlexNet with classifier[4] = Linear(4096, 1024)
                     and classifier[6] = Linear(1024, 10)
  alexnet_small      seed 004, jarvis08/PerClusterQuantization models/alexnet.py AlexNetSmall
  resnet20           seed 004, models/resnet.py ResNet20 (torchvision BasicBlock; option-B
                     shortcut named downsample.0 / downsample.1, as torchvision names it)
  resnet20_a         the same with option-A shortcuts (He et al.; no shortcut parameters)
  resnet18_cifar     seed 002, torchvision resnet18 with conv1 = 3x3/s1/p1 (no bias), fc 512->10
  mobilenetv2_cifar  seed 003, torchvision mobilenet_v2(dropout 0.2) with stride 1 at
                     features[0][0], features[2].conv[1][0], features[4].conv[1][0]; classifier[1]
                     = Linear(1280, 10)
  lenet5, lenet5_classic  the anchors' LeNet-5 (conv1, conv2, fc1..3; classic only swaps the
                     activation and pooling, which hold no parameters)
  lenet5_gpfq        YixuanSeanZhou/Quantized_Neural_Nets quantization_scripts/my_models.py LeNet5
                     (feature_extractor.0/.3/.6, classifier.0/.2) on 1x32x32

Debian ships python3-torch without torchvision, so torchvision's AlexNet, ResNet (BasicBlock,
_make_layer) and MobileNetV2 (Conv2dNormActivation, InvertedResidual) are mirrored by hand,
module for module.

Outputs:
  tests/data/models/names/<model>.txt  one line "name dtype shape" per state_dict entry, in
                                        state_dict order, then "params N" (parameters, no buffers)
  tests/data/models/resnet20_random.safetensors
      a resnet20 (shortcut B) state_dict with deterministic weights (zoo_value below) stored as F16
      (F32 would pass 1 MB), num_batches_tracked as I64; qh_model_load must take it unchanged.
  tests/data/models/zoo_forward.safetensors
      input "input" (F32 2x3x32x32) and the eval-mode logits (F32 2x10) "resnet20.logits" of the
      model above (computed with exactly the F16 values), "resnet20_a.logits" (option-A shortcuts)
      and "mobilenetv2_cifar.logits". F16 weights of mobilenetv2_cifar would take 4.5 MB, so the
      weights of these two are not stored: they are the closed-form zoo_value(name, shape), which
      tests/graph/test_zoo.c computes the same way.

Run: /usr/bin/python3 tests/golden/gen_model_names.py
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "models")


# ----------------------------------------------------------------------------- seed 000
class AlexNetSeed000(nn.Module):
    """mattiav90/AlexNet main.py AlexNet: ReLU -> (MaxPool) -> BatchNorm after each conv."""

    def __init__(self, in_ch=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 64, kernel_size=11, stride=4, padding=2)
        self.conv2 = nn.Conv2d(64, 192, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(192, 384, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.Maxpool = nn.MaxPool2d(kernel_size=3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.ReLU = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(256 * 6 * 6, 4096)
        self.fc2 = nn.Linear(4096, 4096)
        self.fc3 = nn.Linear(4096, num_classes)
        self.bn1 = nn.BatchNorm2d(64)
        self.bn2 = nn.BatchNorm2d(192)
        self.bn3 = nn.BatchNorm2d(384)
        self.bn4 = nn.BatchNorm2d(256)
        self.bn5 = nn.BatchNorm2d(256)
        self.dropout = nn.Dropout()


# ----------------------------------------------------------------------------- torchvision AlexNet
class AlexNetTV(nn.Module):
    """torchvision.models.AlexNet (features / avgpool / classifier) with the seed-001 head."""

    def __init__(self, in_ch=3, num_classes=10, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 1000),
        )
        # the seed's replacement head
        self.classifier[4] = nn.Linear(4096, 1024)
        self.classifier[6] = nn.Linear(1024, num_classes)


# ----------------------------------------------------------------------------- seed 004 AlexNetSmall
class AlexNetSmall(nn.Module):
    def __init__(self, in_ch=3, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 96, kernel_size=5, stride=1, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=0),
            nn.Conv2d(96, 256, kernel_size=5, stride=1, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=0),
            nn.Conv2d(256, 384, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=0),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256, 4096), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )


# ----------------------------------------------------------------------------- ResNets
def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision BasicBlock; shortcut_a replaces `downsample` by the parameter-free option A
    (x[:, :, ::s, ::s] with the new channels zero-padded half before, half after)."""

    def __init__(self, cin, planes, stride=1, downsample=None, shortcut_a=False):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride
        self.pad = planes - cin if shortcut_a else 0
        self.shortcut_a = shortcut_a and (stride != 1 or cin != planes)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x
        if self.downsample is not None:
            identity = self.downsample(x)
        elif self.shortcut_a:
            identity = F.pad(x[:, :, ::self.stride, ::self.stride],
                             (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return self.relu(out + identity)


class ResNetCifar(nn.Module):
    """torchvision ResNet._make_layer structure. stem3 = seed 004's ResNet20 (no max-pool, 16 ch),
    otherwise torchvision resnet18 with seed 002's 3x3/s1/p1 conv1 and the max-pool kept."""

    def __init__(self, widths, blocks, in_ch=3, num_classes=10, maxpool=False, shortcut_a=False):
        super().__init__()
        self.inplanes = widths[0]
        self.shortcut_a = shortcut_a
        self.conv1 = nn.Conv2d(in_ch, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if maxpool else None
        for i, (w, n) in enumerate(zip(widths, blocks)):
            setattr(self, "layer%d" % (i + 1), self._make_layer(w, n, 1 if i == 0 else 2))
        self.nlayers = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if (stride != 1 or self.inplanes != planes) and not self.shortcut_a:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, self.shortcut_a)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(planes, planes, shortcut_a=self.shortcut_a))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(self.nlayers):
            x = getattr(self, "layer%d" % (i + 1))(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet20(shortcut_a=False):
    return ResNetCifar([16, 32, 64], [3, 3, 3], shortcut_a=shortcut_a)


def resnet18_cifar():
    return ResNetCifar([64, 128, 256, 512], [2, 2, 2, 2], maxpool=True)


# ----------------------------------------------------------------------------- MobileNetV2
class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.misc.Conv2dNormActivation with BatchNorm2d and ReLU6: indices 0, 1, 2."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, kernel_size=1))
        layers.extend([
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ])
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision MobileNetV2(width_mult=1.0) - all widths are already multiples of 8."""

    SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
               [6, 160, 3, 2], [6, 320, 1, 1]]

    def __init__(self, in_ch=3, num_classes=1000, dropout=0.2):
        super().__init__()
        features = [Conv2dNormActivation(in_ch, 32, stride=2)]
        inp = 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(Conv2dNormActivation(inp, 1280, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenetv2_cifar():
    m = MobileNetV2(dropout=0.2)
    # seed 003: keep 32x32 longer (use_res_connect was decided with the original strides, as there)
    m.features[0][0].stride = (1, 1)
    m.features[2].conv[1][0].stride = (1, 1)
    m.features[4].conv[1][0].stride = (1, 1)
    m.classifier[1] = nn.Linear(1280, 10)
    return m


# ----------------------------------------------------------------------------- LeNets
class LeNet5(nn.Module):
    """The anchors' LeNet-5 (variant modern; classic has the same parameters)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)


class LeNet5GPFQ(nn.Module):
    """Quantized_Neural_Nets quantization_scripts/my_models.py LeNet5 (1x32x32)."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(1, 6, 5, 1), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5, 1), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(16, 120, 5, 1), nn.Tanh())
        self.classifier = nn.Sequential(nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, n_classes))


MODELS = {
    "alexnet": AlexNetSeed000,
    "alexnet_tv": AlexNetTV,
    "alexnet_small": AlexNetSmall,
    "resnet20": resnet20,
    "resnet20_a": lambda: resnet20(shortcut_a=True),
    "resnet18_cifar": resnet18_cifar,
    "mobilenetv2_cifar": mobilenetv2_cifar,
    "lenet5": LeNet5,
    "lenet5_classic": LeNet5,
    "lenet5_gpfq": LeNet5GPFQ,
}

DTYPE = {torch.float32: "F32", torch.int64: "I64"}


def listing(model):
    lines = []
    for name, t in model.state_dict().items():
        shape = "x".join(str(d) for d in t.shape) if t.dim() else "scalar"
        lines.append("%s %s %s" % (name, DTYPE[t.dtype], shape))
    lines.append("params %d" % sum(p.numel() for p in model.parameters()))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- golden forwards
MASK = (1 << 64) - 1


def fnv1a(name):
    h = 0xcbf29ce484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001b3) & MASK
    return h


def zoo_uniform(name, n):
    """u[i] in [-1, 1): splitmix64(fnv1a(name) + i) >> 11, scaled by 2^-52, minus 1 (exact in F64)."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a(name)) + np.arange(n, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -52 - 1.0


def zoo_value(name, shape):
    """Deterministic weights that keep activations O(1): conv/linear weights U(-1,1)/sqrt(fan_in)
    (x sqrt(3): unit variance per output), biases and BN shifts 0.1 u, BN scale 1 + 0.25 u,
    running_var 1 + 0.5 u (> 0). Rounded once from F64 to F32, as the C side does."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = zoo_uniform(name, n)
    leaf = name.rsplit(".", 1)[1]
    if leaf == "weight" and len(shape) >= 2:
        v = u * np.sqrt(3.0 / np.prod(shape[1:]))
    elif leaf == "weight":
        v = 1.0 + 0.25 * u
    elif leaf == "running_var":
        v = 1.0 + 0.5 * u
    else:  # bias, running_mean
        v = 0.1 * u
    return v.astype(np.float32).reshape(shape)


def fill(model, f16):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            v = torch.from_numpy(zoo_value(name, tuple(t.shape)))
            t.copy_(v.half().float() if f16 else v)


def save_safetensors(path, tensors, metadata):
    codes = {torch.float32: ("F32", "<f4"), torch.float16: ("F16", "<f2"), torch.int64: ("I64", "<i8")}
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        code, np_dt = codes[t.dtype]
        data = t.detach().contiguous().numpy().astype(np_dt).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def forwards():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    meta = {"framework": "pytorch " + torch.__version__, "script": "tests/golden/gen_model_names.py"}
    r20 = resnet20()
    fill(r20, f16=True)
    weights = {n: (t.half() if t.dtype == torch.float32 else t) for n, t in r20.state_dict().items()}
    save_safetensors(os.path.join(DATA, "resnet20_random.safetensors"), weights, meta)
    r20a = resnet20(shortcut_a=True)
    fill(r20a, f16=False)
    mnv2 = mobilenetv2_cifar()
    fill(mnv2, f16=False)
    with torch.no_grad():
        out = {"input": x, "resnet20.logits": r20.eval()(x), "resnet20_a.logits": r20a.eval()(x),
               "mobilenetv2_cifar.logits": mnv2.eval()(x)}
    save_safetensors(os.path.join(DATA, "zoo_forward.safetensors"), out, meta)
    for k in ("resnet20.logits", "resnet20_a.logits", "mobilenetv2_cifar.logits"):
        print(k, [round(v, 4) for v in out[k][0].tolist()])


def main():
    os.makedirs(os.path.join(DATA, "names"), exist_ok=True)
    for name, ctor in MODELS.items():
        text = listing(ctor())
        with open(os.path.join(DATA, "names", name + ".txt"), "w") as f:
            f.write(text)
        print("%-18s %s" % (name, text.strip().rsplit("\n", 1)[1]))
    forwards()


if __name__ == "__main__":
    sys.exit(main())
