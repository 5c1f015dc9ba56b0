"""CIFAR-10 transfer learning: a frozen, ImageNet-pretrained EfficientNet-Lite0 with an analog head.

    python examples/cifar_head.py --data-dir ../shared/data            # analog head, nature2018 cells
    python examples/cifar_head.py --data-dir ../shared/data --digital  # the same head in software

The backbone is frozen, so its features are computed once (and cached by
``analogtrain.features``, as ``analogtrain reproduce cifar10`` does) and scaled to the input
DAC's range [0, 1]; the only trained layer is ``AnalogLinear(1280, classes)``, updated by
``ChipSGD`` one image at a time, with the learning rate and epochs of ``reproduce cifar10``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

import analogtrain.nn as ann
from analogtrain.experiments.prepare import prepare_data
from analogtrain.experiments.settings import CIFAR_EPOCHS, CIFAR_LEARNING_RATE
from analogtrain.optim import ChipSGD


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="dataset root holding cifar10/ (or cifar100/)")
    p.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"))
    p.add_argument("--digital", action="store_true", help="train the same head in software instead")
    p.add_argument("--preset", default="nature2018", help="chip preset of the analog head")
    p.add_argument("--epochs", type=int, default=CIFAR_EPOCHS)
    p.add_argument("--lr", type=float, default=CIFAR_LEARNING_RATE)
    p.add_argument("--limit-train", type=int, default=None, help="a class-balanced selection of N training images")
    p.add_argument("--limit-test", type=int, default=None, help="a class-balanced selection of N test images")
    p.add_argument("--input-size", type=int, default=None, help="backbone input size in pixels (default 224)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CLI's default, too)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = prepare_data(args.dataset, args.data_dir, limit_train=args.limit_train, limit_test=args.limit_test,
                        seed=args.seed, progress=False, input_size=args.input_size)
    if data.meta.get("stand_in"):
        raise SystemExit(f"no {args.dataset} data found under {args.data_dir}")
    n_features, classes = data.x_train.shape[1], data.n_classes
    torch.manual_seed(args.seed)
    head: nn.Module = nn.Linear(n_features, classes)
    if args.digital:
        opt: torch.optim.Optimizer = torch.optim.SGD(head.parameters(), lr=args.lr)
    else:
        head = ann.convert(nn.Sequential(head), chip=args.preset, seed=args.seed)
        opt = ChipSGD(head.parameters(), lr=args.lr)

    history = []
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        for i in order.tolist():  # one image at a time, as the paper trains
            loss = nn.functional.cross_entropy(head(data.x_train[i:i + 1]), data.y_train[i:i + 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            acc = float((head(data.x_test).argmax(1) == data.y_test).double().mean())
        head.train()
        history.append(acc)
        print(f"epoch {epoch + 1}: test accuracy {100 * acc:.2f} %  ({time.perf_counter() - t0:.0f} s)", flush=True)
    result = {"network": f"{args.dataset}-head", "mode": "digital" if args.digital else args.preset,
              "features": n_features, "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
              "train_images": len(data.x_train), "test_images": len(data.x_test), "test_accuracy": history,
              "wall_s": time.perf_counter() - t0}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
