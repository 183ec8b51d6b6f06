"""A small torch MLP regressor with scikit-learn's estimator contract."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class TorchMLPRegressor(RegressorMixin, BaseEstimator):
    """MLP (ReLU hidden layers) trained with AdamW on standardised inputs and target.

    The fitted network is ``network_`` (a ``torch.nn.Sequential`` that takes the
    standardised input); :meth:`torch_forward` maps raw features to predictions
    inside autograd, which the differentiable latency uses.
    """

    def __init__(self, hidden: tuple[int, ...] = (256, 256), epochs: int = 300, lr: float = 3e-3,
                 weight_decay: float = 1e-4, batch_size: int = 128, random_state: int | None = 0):
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.random_state = random_state

    def _net(self, n_in: int):
        import torch
        from torch import nn

        layers, prev = [], n_in
        for h in self.hidden:
            layers += [nn.Linear(prev, int(h)), nn.ReLU()]
            prev = int(h)
        layers.append(nn.Linear(prev, 1))
        return nn.Sequential(*layers).to(torch.float32)

    def fit(self, X, y):
        """Standardise, then train the MLP with AdamW on squared error; returns self."""
        import torch

        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        self.x_mean_ = X.mean(axis=0)
        self.x_scale_ = X.std(axis=0)
        # (near-)constant columns: no scaling (a 1e-16 scale would blow float32 up)
        self.x_scale_[self.x_scale_ <= 1e-8 * np.maximum(1.0, np.abs(self.x_mean_))] = 1.0
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(y.std()) or 1.0
        seed = 0 if self.random_state is None else int(self.random_state)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small batches: one thread is fastest and does not spin
        try:
            self._train(X, y, seed)
        finally:
            torch.set_num_threads(threads)
        return self

    def _train(self, X, y, seed: int) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._net(X.shape[1])
            xt = torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=torch.float32)
            yt = torch.as_tensor((y - self.y_mean_) / self.y_scale_, dtype=torch.float32)[:, None]
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            steps = max(1, int(np.ceil(len(xt) / self.batch_size))) * self.epochs
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
            gen = torch.Generator().manual_seed(seed)
            net.train()
            for _ in range(self.epochs):
                perm = torch.randperm(len(xt), generator=gen)
                for i in range(0, len(xt), self.batch_size):
                    b = perm[i: i + self.batch_size]
                    loss = torch.nn.functional.mse_loss(net(xt[b]), yt[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
            net.eval()
        self.network_ = net

    def predict(self, X):
        """Predictions for ``X`` in the original target units."""
        import torch

        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.inference_mode():
            out = self.network_(torch.as_tensor((X - self.x_mean_) / self.x_scale_,
                                                dtype=torch.float32))
        return out.numpy()[:, 0].astype(np.float64) * self.y_scale_ + self.y_mean_

    def torch_forward(self, x):
        """Differentiable prediction for a float tensor of raw features ``(n, n_features)``."""
        import torch

        check_is_fitted(self, "network_")
        mean = torch.as_tensor(self.x_mean_, dtype=x.dtype)
        scale = torch.as_tensor(self.x_scale_, dtype=x.dtype)
        return self.network_((x - mean) / scale)[:, 0] * self.y_scale_ + self.y_mean_

    # persistence: state dict + JSON-able scalars
    def state(self) -> tuple[dict, dict]:
        """(JSON-ready metadata, torch state dict) for saving."""
        check_is_fitted(self, "network_")
        meta = {"x_mean": self.x_mean_.tolist(), "x_scale": self.x_scale_.tolist(),
                "y_mean": self.y_mean_, "y_scale": self.y_scale_,
                "n_features_in": int(self.n_features_in_)}
        return meta, self.network_.state_dict()

    def load_state(self, meta: dict, state_dict: dict) -> "TorchMLPRegressor":
        """Restore from :meth:`state`'s output; returns self."""
        self.x_mean_ = np.asarray(meta["x_mean"], dtype=np.float64)
        self.x_scale_ = np.asarray(meta["x_scale"], dtype=np.float64)
        self.y_mean_, self.y_scale_ = float(meta["y_mean"]), float(meta["y_scale"])
        self.n_features_in_ = int(meta["n_features_in"])
        net = self._net(self.n_features_in_)
        net.load_state_dict(state_dict)
        net.eval()
        self.network_ = net
        return self
