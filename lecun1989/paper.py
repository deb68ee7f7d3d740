"""The paper's own numbers, in one place (NC89 = LeCun et al. 1989, Neural Computation 1(4))."""

# NC89 §3, Table of the architecture: units (input included), connections, free parameters.
UNITS = 1256
CONNECTIONS = 64_660
PARAMETERS = 9760

PASSES = 23  # NC89 §4
TRAIN_SIZE, TEST_SIZE = 7291, 2007  # NC89 §2

# NC89 §5: the results to hold a reproduction against. MSE is the mean over outputs and
# patterns (presumably; whether a factor 1/2 is included is unknown).
RESULTS = {
    "train": {"mse": 2.5e-3, "error": 0.0014, "misses": 10},
    "test": {"mse": 1.8e-2, "error": 0.050, "misses": 102, "reject_for_1pct": 0.121},
}

