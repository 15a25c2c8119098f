"""The PyTorch peer of `make bench-peer`: a replica, written here, of the official Landslide4Sense
2022 baseline (iarai/Landslide4Sense-2022, model/unet.py and Train.py): the 5-level bilinear U-Net
(double 3x3 conv + BatchNorm + ReLU, 64-128-256-512-512, bilinear up-sampling with
align_corners=True, skip concatenation, 1x1 head to 2 classes), Adam lr 1e-3 with weight decay
5e-4, cross-entropy, inputs normalised per band with the official mean and std.

Runs in its own environment (`.venv-peer`, benchmarks/peer/requirements.txt), never the
project's: it imports torch, numpy and h5py only.

    train:  python l4s_torch.py train --data DIR --train a.h5,b.h5 --val c.h5 --precision bf16 ...
            then, on stdin, one line per request: `epoch` (train one epoch, validate, print one JSON
            line), `save PATH` (state dict), `quit`. The driver (benchmarks/peer.py) interleaves
            the epochs of several systems this way so that they see the same machine load.
    infer:  python l4s_torch.py infer --weights W --images DIR --out DIR --precision bf16
            the whole process (import, load, read, predict, write masks) is what is timed.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# The official per-band statistics (the same numbers as landslide/data.py OFFICIAL_MEAN/STD).
MEAN = [-0.4914, -0.3074, -0.1277, -0.0625, 0.0439, 0.0803, 0.0644, 0.0802, 0.3000, 0.4082,
        0.0823, 0.0516, 0.3338, 0.7819]
STD = [0.9325, 0.8775, 0.8860, 0.8869, 0.8857, 0.8418, 0.8354, 0.8491, 0.9061, 1.6072,
       0.8848, 0.9232, 0.9018, 1.2913]


def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DoubleConv(nn.Sequential):
    def __init__(self, cin, cout, mid=None):
        super().__init__(*conv_bn_relu(cin, mid or cout), *conv_bn_relu(mid or cout, cout))


class Up(nn.Module):
    """Bilinear x2 (align_corners=True), concatenate the skip first, double conv with the middle
    width halving the concatenation (the official bilinear variant)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = DoubleConv(cin, cout, cin // 2)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    def __init__(self, bands=14, classes=2, width=1.0):
        super().__init__()
        f = [max(1, round(c * width)) for c in (64, 128, 256, 512, 512)]
        self.inc = DoubleConv(bands, f[0])
        self.down = nn.ModuleList([DoubleConv(f[i], f[i + 1]) for i in range(4)])
        self.up = nn.ModuleList([Up(f[3] + f[4], f[2]), Up(f[2] * 2, f[1]), Up(f[1] * 2, f[0]), Up(f[0] * 2, f[0])])
        self.outc = nn.Conv2d(f[0], classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.outc(x)


def read_patches(paths, masks=True):
    """(N, 14, H, W) normalised float32 (NaN -> 0 before normalising) and (N, H, W) int64 labels."""
    images, labels = [], []
    mean = np.asarray(MEAN, np.float32)[:, None, None]
    std = np.asarray(STD, np.float32)[:, None, None]
    for path in paths:
        with h5py.File(path, "r") as handle:
            image = np.nan_to_num(np.asarray(handle["img"], np.float32).transpose(2, 0, 1))
        images.append((image - mean) / std)
        if masks:
            mask_path = Path(path).parent.parent / "mask" / Path(path).name.replace("image", "mask")
            with h5py.File(mask_path, "r") as handle:
                labels.append(np.asarray(handle["mask"], np.int64))
    x = torch.from_numpy(np.stack(images))
    return x, (torch.from_numpy(np.stack(labels)) if masks else None)


def autocast(precision):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def f1_of(pred, labels):
    tp = int(((pred == 1) & (labels == 1)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    return 2 * tp / max(1, 2 * tp + fp + fn)


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folder = Path(args.data) / "TrainData" / "img"
    x_train, y_train = read_patches([folder / name for name in args.train.split(",")])
    x_val, y_val = read_patches([folder / name for name in args.val.split(",")])
    model = UNet(width=args.width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    print(json.dumps({"ready": True, "params": sum(p.numel() for p in model.parameters())}), flush=True)
    generator = torch.Generator().manual_seed(args.seed)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "save":
            torch.save(model.state_dict(), command[1])
            print(json.dumps({"saved": command[1]}), flush=True)
            continue
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        losses = []
        for i in range(0, len(order), args.batch):
            index = order[i : i + args.batch]
            optimizer.zero_grad()
            with autocast(args.precision):
                loss = loss_fn(model(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        middle = time.perf_counter()
        model.eval()
        preds = []
        with torch.no_grad(), autocast(args.precision):
            for i in range(0, len(x_val), args.batch):
                preds.append(model(x_val[i : i + args.batch]).argmax(1))
        end = time.perf_counter()
        print(json.dumps({"train_s": middle - start, "val_s": end - middle, "loss": float(np.mean(losses)),
                          "val_f1": f1_of(torch.cat(preds), y_val), "examples": len(x_train)}), flush=True)


def infer(args):
    torch.set_num_threads(args.threads)
    model = UNet(width=args.width)
    model.load_state_dict(torch.load(args.weights))
    model.eval()
    paths = sorted(Path(args.images).glob("image_*.h5"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), autocast(args.precision):
        for i in range(0, len(paths), args.batch):
            x, _ = read_patches(paths[i : i + args.batch], masks=False)
            pred = model(x).argmax(1).to(torch.uint8).numpy()
            for path, mask in zip(paths[i : i + args.batch], pred):
                with h5py.File(out / path.name.replace("image", "mask"), "w") as handle:
                    handle["mask"] = mask
    print(json.dumps({"patches": len(paths)}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "infer"])
    parser.add_argument("--precision", choices=["float32", "bf16"], default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="train: the sample data folder (TrainData/img, TrainData/mask)")
    parser.add_argument("--train", help="train: comma-separated image file names")
    parser.add_argument("--val", help="train: comma-separated image file names")
    parser.add_argument("--weights", help="infer: a state dict saved by `save`")
    parser.add_argument("--images", help="infer: a folder of image_N.h5")
    parser.add_argument("--out", help="infer: the folder for mask_N.h5")
    args = parser.parse_args()
    train(args) if args.command == "train" else infer(args)


if __name__ == "__main__":
    main()
