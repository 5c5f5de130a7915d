"""The networks of the experiments.  Each model lists its prunable layers
(pivoted when pruned); first and last layers stay dense because they are
too narrow (1 input channel, 10 outputs) to split into blocks."""
import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, sizes=(784, 1024, 1024, 10)):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x

    def prunable(self):
        return [l for l in self.layers[:-1]]


class SmallCNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc1 = nn.Linear(128 * 3 * 3, 256)
        self.fc2 = nn.Linear(256, classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)   # 14x14
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)   # 7x7
        x = torch.max_pool2d(torch.relu(self.conv3(x)), 2)   # 3x3
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)

    def prunable(self):
        return [self.conv2, self.conv3, self.fc1]


class GRUClassifier(nn.Module):
    """Reads an image row by row (28 steps of 28 pixels)."""

    def __init__(self, hidden=128, classes=10):
        super().__init__()
        self.gru = nn.GRU(28, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.gru(x.flatten(1, 2))        # [B, 28, 28]
        return self.fc(out[:, -1])

    def prunable(self):
        return []   # the GRU's matrices are masked by gru_masks()


def build(name):
    if name == "mlp":
        return MLP()
    if name == "cnn":
        return SmallCNN()
    if name == "reg":
        return MLP((784, 512, 512, 1))
    if name == "gru":
        return GRUClassifier()
    raise ValueError("unknown model %r (mlp, cnn, reg, gru)" % name)


def layer_geometry(layer):
    """(M, C, kk) of a layer's weight as core/pv-pivot.h sees it."""
    w = layer.weight
    if w.dim() == 4:
        return w.shape[0], w.shape[1], w.shape[2] * w.shape[3]
    return w.shape[0], w.shape[1], 1
