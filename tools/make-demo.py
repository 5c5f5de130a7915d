#!/usr/bin/python3
"""Build the bundled demo model repository (demo/models): a Fashion-MNIST
MLP 784-512-512-10 whose middle layer is trained with a balanced block mask
(1/4 density after pivoting), exported to ONNX with the pruned weights as
zeros (version 1). `pivot convert` turns it into .pvm (version 2).

    /usr/bin/python3 tools/make-demo.py demo/models/fashion
"""
import json, os, sys
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pivot_train.data import read_idx  # noqa: E402

D = os.environ.get("PIVOT_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
          "Shirt", "Sneaker", "Bag", "Ankle boot"]


def main(out):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x = torch.tensor(read_idx(D + "/train-images-idx3-ubyte"), dtype=torch.float32).reshape(-1, 784) / 255
    y = torch.tensor(read_idx(D + "/train-labels-idx1-ubyte"), dtype=torch.long)
    xt = torch.tensor(read_idx(D + "/t10k-images-idx3-ubyte"), dtype=torch.float32).reshape(-1, 784) / 255
    yt = torch.tensor(read_idx(D + "/t10k-labels-idx1-ubyte"), dtype=torch.long)
    m = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                            torch.nn.Linear(512, 512), torch.nn.ReLU(),
                            torch.nn.Linear(512, 10))
    # Balanced block mask: 4 groups of rows and columns under random
    # permutations, so the stored matrix looks unstructured until pivoted.
    g = torch.Generator().manual_seed(1)
    pr, pc = torch.randperm(512, generator=g), torch.randperm(512, generator=g)
    mask = torch.zeros(512, 512)
    for b in range(4):
        rows, cols = pr[b * 128:(b + 1) * 128], pc[b * 128:(b + 1) * 128]
        mask[rows.unsqueeze(1), cols.unsqueeze(0)] = 1
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    for epoch in range(3):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            with torch.no_grad():
                m[2].weight.mul_(mask)
            loss = torch.nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        m[2].weight.mul_(mask)
        # No kept weight may be exactly zero, or detection would split a block.
        w = m[2].weight
        w[(w == 0) & (mask == 1)] = 1e-30
        acc = (m(xt).argmax(1) == yt).float().mean().item()
    print("demo MLP test accuracy %.4f" % acc)
    os.makedirs(out + "/1", exist_ok=True)
    m.eval()
    torch.onnx.export(m, torch.zeros(1, 784), out + "/1/model.onnx", opset_version=13,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    with open(out + "/config.json", "w") as f:
        json.dump({"max_batch": 32, "max_queue_delay_us": 200, "version_policy": {"all": {}}}, f)
    # A sample request: the first test image (a real photo of an ankle boot).
    img = (xt[0].numpy() * 1).round(4).tolist()
    with open(os.path.dirname(out.rstrip("/")) + "/../sample.json", "w") as f:
        json.dump({"inputs": [{"name": "image", "shape": [1, 784], "datatype": "FP32",
                               "data": img}]}, f)
    print("label of the sample: %s" % LABELS[yt[0].item()])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo/models/fashion")
