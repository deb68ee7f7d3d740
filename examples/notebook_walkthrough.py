# %% [markdown]
# # The original notebook, walked through with `lecun1989`
#
# The notebook this project grew from loaded digits, looked at one, built a convolution from
# `nn.Unfold`/`nn.Fold`, trained LeCun's 1989 network with SGD, and plotted the loss, the
# parameters over training, a prediction and the first layer's feature maps. Here are the same
# steps with the package. Run it as a script (`python examples/notebook_walkthrough.py`) or
# cell by cell (`# %%` cells: VS Code, Jupytext, Spyder). Pictures go to `OUT`.
#
# Set LECUN1989_EXAMPLE_SHORT=1 for a run of a few seconds (the tests do).

# %%
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lecun1989 import data as datasets
from lecun1989 import paper
from lecun1989.analysis import HistoryRecorder, plots, predict_files, read_loss
from lecun1989.analysis.history import read_param_history
from lecun1989.config import apply_overrides, preset
from lecun1989.model import Net1989, count, unfold_conv2d
from lecun1989.train.loop import fit, load_run_data

SHORT = os.environ.get("LECUN1989_EXAMPLE_SHORT") == "1"
OUT = Path(os.environ.get("LECUN1989_EXAMPLE_OUT", "runs/notebook-walkthrough"))
OUT.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)  # one pattern per update: more threads only add overhead

# %% [markdown]
# ## 1. The data
# The notebook fetched MNIST at 28x28. NC89 used 16x16 digits with grey levels in [-1, 1] and
# background -1. scikit-learn's small `digits` set, upsampled to 16x16, needs no download.

# %%
digits = datasets.load("digits")
print(f"{digits.name}: train {digits.train_images.shape}, test {digits.test_images.shape}, "
      f"values in [{digits.train_images.min():.0f}, {digits.train_images.max():.0f}]")
print("digits per class (train):", np.bincount(digits.train_labels).tolist())

# %% [markdown]
# ## 2. Look at a digit

# %%
first = digits.train_images[0, 0]
for row in first:
    print("".join("#" if v > 0.3 else "+" if v > -0.5 else "." for v in row))
print("label:", digits.train_labels[0])
fig = plots.digits_grid(digits.train_images, digits.train_labels, rows=2)
plots.save(fig, OUT / "digits.png")
fig  # noqa: B018 (a notebook shows the figure)

# %% [markdown]
# ## 3. The notebook's convolution: unfold, multiply, fold
# `unfold_conv2d` cuts the input into patches (`F.unfold`), multiplies them by the kernels and
# folds the result back into maps. It must equal `F.conv2d`, also with H2's stride 2 and its
# 12 groups (each H2 map sees its own 8 H1 maps).

# %%
gen = torch.Generator().manual_seed(0)
x = torch.randn(2, 96, 12, 12, generator=gen, dtype=torch.float64)  # 12 groups of 8 maps
w = torch.randn(12, 8, 5, 5, generator=gen, dtype=torch.float64)
max_diff = (unfold_conv2d(x, w, stride=2, groups=12)
            - F.conv2d(x, w, stride=2, groups=12)).abs().max().item()
print(f"unfold/fold convolution vs F.conv2d: largest difference {max_diff:.1e}")

# %% [markdown]
# ## 4. The network, counted like the paper

# %%
counts = count(Net1989())
print(f"units {counts['units']} (paper {paper.UNITS}), connections {counts['connections']} "
      f"(paper {paper.CONNECTIONS}), free parameters {counts['parameters']} "
      f"(paper {paper.PARAMETERS})")

# %% [markdown]
# ## 5. Train
# The paper's network (every guess named in `lecun1989.config.GUESSES`) on `digits`, trained
# as the notebook did, with plain SGD at lr 0.1 (preset `paper-sgd`; `paper` itself uses the
# paper's diagonal Newton rule), one pattern per update in a fixed order. The history
# recorder writes the loss and a histogram of every parameter tensor into the run folder
# while it trains (the notebook kept full snapshots).

# %%
settings = ["data.name=digits", "engine=reference", "train.lr=0.1",
            "train.loss_every=20", "train.history_every=100"]
settings += ["data.limit_train=300", "passes=2"] if SHORT else ["passes=8"]
cfg = apply_overrides(preset("paper-sgd"), settings)
run_dir = OUT / "run"
run = fit(cfg, load_run_data(cfg), run_dir, overwrite=True, progress=not SHORT,
          callbacks=[HistoryRecorder(run_dir, cfg)])
final = run.summary["final"]
print(f"test error {final['test']['error']:.2%} (paper, on its own data: "
      f"{paper.RESULTS['test']['error']:.1%})")

# %% [markdown]
# ## 6. The loss, and every layer's parameters over training

# %%
loss = read_loss(run_dir)
fig = plots.loss_curve(loss, steps_per_pass=run.summary["data"]["train"])
plots.save(fig, OUT / "loss.png")
fig  # noqa: B018 (a notebook shows the figure)

# %%
fig = plots.param_heatmaps(read_param_history(run_dir))
plots.save(fig, OUT / "params.png")
fig  # noqa: B018 (a notebook shows the figure)

# %% [markdown]
# ## 7. A prediction, from a picture file
# Any PNG or JPEG of one digit: it is cropped, scaled to 16x16 keeping its aspect ratio,
# centred and mapped to [-1, 1] as NC89 §2 prepared its digits.

# %%
digit = digits.test_images[0, 0]
picture = np.kron((1 - digit) / 2, np.ones((12, 12)))  # dark ink on white paper, 192x192
picture_path = OUT / "a_test_digit.png"
Image.fromarray(np.round(picture * 255).astype(np.uint8)).save(picture_path)
prediction = predict_files(run_dir, [picture_path])[0]
print(f"true {digits.test_labels[0]}, predicted {prediction.digit}, margin "
      f"{prediction.margin:.2f}, {'rejected' if prediction.rejected else 'accepted'} "
      f"(threshold {prediction.threshold:.2f} for 1% test error)")

# %% [markdown]
# ## 8. What the network sees: the feature maps of that digit

# %%
view = plots.load_run(run_dir)
layers = plots.network_layers(view, 0)
fig = plots.feature_maps(layers, view.data.test_images[0], int(view.data.test_labels[0]),
                         int(layers["out"][0].argmax()), cfg.model.tanh_scale)
plots.save(fig, OUT / "feature_maps.png")
fig  # noqa: B018 (a notebook shows the figure)

# %% [markdown]
# All the pictures of a run, and one report to hold against the paper:
# `lecun1989 plot RUN_DIR` and `lecun1989 report RUN_DIR`.
