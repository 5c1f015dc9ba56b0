"""LeNet-5 with every layer on the chip, trained on MNIST with an ordinary PyTorch loop.

    python examples/lenet5_mnist.py --data-dir ../shared/data/mnist            # analog, nature2018 cells
    python examples/lenet5_mnist.py --data-dir ../shared/data/mnist --digital  # the same network in software

Both runs build the same network from the same seed (the analog one is programmed to the
digital one's initial weights), see the images in the same order, with the same minibatch and
learning rate; only the layers and the optimizer differ (``analogtrain.nn.convert`` +
``ChipSGD`` against ``torch.optim.SGD``).  Activations are ReLUs clipped at 1, so every
layer's inputs lie in the range of the chip's input DAC, [0, 1].
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

import analogtrain as at
import analogtrain.nn as ann
from analogtrain.optim import ChipSGD


def relu1(x: torch.Tensor) -> torch.Tensor:
    """ReLU clipped at 1: activations stay within the chip's input DAC range [0, 1]."""
    return nn.functional.hardtanh(x, 0.0, 1.0)


class LeNet5(nn.Module):
    """LeNet-5 on 28x28 images: two 5x5 convolutions with 2x2 max pooling, three dense layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 4 * 4, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(relu1(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(relu1(self.conv2(x)), 2)
        x = relu1(self.fc1(x.flatten(1)))
        return self.fc3(relu1(self.fc2(x)))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    with torch.no_grad():
        right = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    model.train()
    return right / len(x)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="folder with the four MNIST files")
    p.add_argument("--digital", action="store_true", help="train the same network in software instead")
    p.add_argument("--preset", default="nature2018", help="chip preset of the analog layers")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=8, help="minibatch size (the chip sums each example's pulses)")
    p.add_argument("--lr", type=float, default=0.2, help="learning rate of the mean cross-entropy loss")
    p.add_argument("--lr-decay", type=float, default=0.5, help="the learning rate is multiplied by this after every "
                                                              "epoch (torch.optim.lr_scheduler.StepLR)")
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images only")
    p.add_argument("--limit-test", type=int, default=None, help="test on the first N images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CLI's default, too)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = at.load_dataset("mnist-full", args.data_dir, download=False)
    x_train, y_train = data.x_train.view(-1, 1, 28, 28), data.y_train
    x_test, y_test = data.x_test.view(-1, 1, 28, 28), data.y_test
    if args.limit_train:
        x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
    if args.limit_test:
        x_test, y_test = x_test[:args.limit_test], y_test[:args.limit_test]

    torch.manual_seed(args.seed)
    model = LeNet5()
    if args.digital:
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    else:
        ann.convert(model, chip=args.preset, seed=args.seed)  # every Conv2d and Linear onto the chip
        opt = ChipSGD(model.parameters(), lr=args.lr)

    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=args.lr_decay)
    history = []
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        schedule.step()
        acc = accuracy(model, x_test, y_test)
        history.append(acc)
        print(f"epoch {epoch + 1}: test accuracy {100 * acc:.2f} %  ({time.perf_counter() - t0:.0f} s)", flush=True)
    result = {"network": "lenet5", "mode": "digital" if args.digital else args.preset, "epochs": args.epochs,
              "batch": args.batch, "lr": args.lr, "lr_decay": args.lr_decay, "seed": args.seed, "train_images": len(x_train),
              "test_images": len(x_test), "test_accuracy": history, "wall_s": time.perf_counter() - t0}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
