"""Numba kernels of the lanes engine: K models in lockstep, the model index in SIMD lanes.

All models see the same pattern at the same step (NC89 §4: a fixed order), so their
arithmetic has the same shape. A block of LANES models lives in one flat array `buf` of
rows of LANES values, row r at buf[r * LANES : (r + 1) * LANES], lane l = model l of the
block: every parameter, optimizer state and activation is a row (offsets below, counted in
rows). Every operation is then a plain vector operation over a row: no gathers, no
horizontal sums. The input image is shared: its pixels are scalars (`xs`), broadcast over
the lanes. `lanes.py` runs the blocks on threads (the kernels release the GIL).

Each function mirrors a line of the reference as _kernels.py does (same order of the steps:
forward, then backward with each parameter's SGD or SDLM step as soon as its gradient is
known and the layers below no longer need it; AdamW from GRAD; SDLM's begin_pass as the
same backward with squared weights and inputs; every option a runtime flag in `Options`).

Bit for bit per lane: no fastmath. Each lane's numbers are the same IEEE operations in the
same order whatever the other lanes hold and whether LLVM vectorises a loop or not, so a
model's numbers do not depend on the block it shares. Multiply-adds are explicit fused
ones (`fma`, LLVM's llvm.fma: one rounding, by definition, in vector and scalar code alike),
not fastmath's contraction, which LLVM may apply to some copies of a loop and not others.

How the lane loops vectorise (measured, `inspect_asm`): every lane loop is
`for l in range(LANES)` with unsigned indices (a signed index gets numba's negative-index
wraparound, which LLVM can only vectorise as gathers), fully unrolled and joined into
vectors by LLVM's SLP vectoriser; its loop vectoriser is off while compiling (it vectorises
the loop around the unrolled one instead, with gathers): `lanes.py` sets both. A row
written from other rows of `buf` goes through a `local_array` (the stack), as LLVM cannot
prove that a store to one row does not overlap a load of another at a variable distance.
`wide()` asks LLVM for 512-bit vectors (it prefers 256 bits on these CPUs): a float32 row
is one AVX-512 register.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic, overload

from lecun1989.engines._kernels import _tanh_impl, local_array

JIT = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)
PART = dict(JIT, no_cpython_wrapper=True, no_cfunc_wrapper=True)  # callees

LANES = 16  # models per block: a multiple of the SIMD width (16 float32, 8 float64)
L = np.uint64(LANES)
U = np.uint64  # unsigned indices: no negative-index wraparound (see above)
MAPS, TAPS, N1, N2, S2, HID, OUT = 12, 25, 64, 16, 4, 30, 10  # NC89 §3
XS, HS = 20, 12  # the 16x16 input and the 8x8 H1 maps, each padded by 2 on every side
UB = 8  # units summed at once: 8 rows = 8 (float32) or 16 (float64) AVX-512 registers

# parameters, in rows (lanes.py converts from and to PARAM_NAMES); unused rows stay 0
W1 = 0                        # (12, 25)      h1_w
B1 = W1 + MAPS * TAPS         # (12, 64)      h1_b, y * 8 + x; bias "map": rows 0..11
W2 = B1 + MAPS * N1           # (12, 12, 25)  h2_w[n, ci, t] (ci < the table's width)
B2 = W2 + MAPS * MAPS * TAPS  # (12, 16)      h2_b; bias "map": rows 0..11
W3 = B2 + MAPS * N2           # (30, 192)     h3_w
B3 = W3 + HID * MAPS * N2     # (30,)         h3_b
W4 = B3 + HID                 # (10, 30)      out_w
B4 = W4 + OUT * HID           # (10,)         out_b
NPARAM = B4 + OUT
STEP = NPARAM                 # SDLM: each parameter's step factor -lr / (mu + h)
INV = 2 * NPARAM              # SDLM: 1 / (mu + h)
HESS = 3 * NPARAM             # SDLM: h, the averaged d2E/dw2
GRAD = 4 * NPARAM             # the pattern's gradient (AdamW) or d2E/dw2 (SDLM's estimate)
EXP_AVG = 5 * NPARAM          # AdamW's moments
EXP_AVG_SQ = 6 * NPARAM
WSAVE = 7 * NPARAM            # SDLM's estimate: the weights (their squares in place)
# the current pattern, and per-lane scalars
T1 = 8 * NPARAM               # (12, 64)      H1: tanh(S a)
H1PAD = T1 + MAPS * N1        # (12, 12, 12)  H1's output A tanh(S a), padded
T2 = H1PAD + MAPS * HS * HS   # (12, 16)      H2: tanh(S a)
H2 = T2 + MAPS * N2           # (192,)        H2's output
T3 = H2 + MAPS * N2           # (30,)
H3 = T3 + HID                 # (30,)
T4 = H3 + HID                 # (10,)         the outputs: tanh(S a) (or a)
Y = T4 + OUT                  # (10,)
D4 = Y + OUT                  # (10,)         dE/da at the outputs
D3 = D4 + OUT                 # (30,)         dE/dh3, then dE/da at H3
D2 = D3 + HID                 # (192,)        dE/dh2, then dE/da at H2
D2PAD = D2 + MAPS * N2        # (12, 6, 6)    dE/da at H2 with a border of zeros
DH1 = D2PAD + MAPS * 36       # (12, 64)      dE/dh1, then dE/da at H1
KEEP = DH1 + MAPS * N1        # (192,)        dropout masks: 0 or 1 / (1 - p)
LRV = KEEP + MAPS * N2        # -lr (SGD) or -eps (SDLM), this chunk's
TGT = LRV + 1                 # the MSE target
LOSS = TGT + 1                # the pattern's loss
ADAM_STEP = LOSS + 1          # AdamW's step count, then its per-step factors
ADAM_DECAY = ADAM_STEP + 1
ADAM_SIZE = ADAM_DECAY + 1
ADAM_BC2 = ADAM_SIZE + 1
ROWS = ADAM_BC2 + 1
# the shared input (scalars, in `xs`)
XPAD = 0                      # (20, 20)      the padded image
XCOL = XS * XS                # (25, 64)      XCOL[t, 8y+x] = XPAD[2y+u, 2x+v], t = 5u+v
XSIZE = max(XCOL + TAPS * N1, XS * XS * LANES)  # (prediction: a row per pixel, `predict_rows`)

# A configuration's options (lanes.py builds them; A, S, pad of the engine's dtype).
# per_param: SGD steps with each parameter's STEP (SDLM) instead of LRV (plain SGD).
Options = namedtuple("Options", "unit_bias squash_out relu ce sum_out dropout sgd per_param "
                                "adamw curvature A S pad")


# --- the two LLVM-level helpers -----------------------------------------------------------

@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma): the same in vector and scalar code."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fma", [t], ir.FunctionType(t, [t, t, t]))
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def wide(typingctx):
    """Let LLVM use 512-bit vectors in the calling function (the host CPU's tuning prefers
    256; llvmlite knows no such attribute, hence set.add)."""

    def codegen(context, builder, sig, args):
        for attr in ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"',
                     "noinline"):
            set.add(builder.function.attributes, attr)
        return context.get_dummy_value()

    return types.none(), codegen


def ltanh(x):
    """tanh(x), vectorisable: float64 as _kernels.vtanh computes it (without FMA
    contraction); float32 by a rational function (below)."""
    return np.tanh(x)


def _rational_tanh32():
    """float32 tanh as Eigen computes it (generic_fast_tanh_float): x p(x^2) / q(x^2), degrees
    13 and 6, on x clamped to +-7.9053 (where it reaches 1). 12 multiply-adds and a division
    against _tanh_impl's ~50 operations (BENCHMARKS.md: the lanes engine); within 7 ulp of
    np.tanh (tests), |error| < 4e-7."""
    f = np.float32
    hi, lo = f(7.90531110763549805), f(-7.90531110763549805)
    a = tuple(f(c) for c in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
                             5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
                             -2.76076847742355e-16))
    b = tuple(f(c) for c in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
                             1.19825839466702e-06))

    def impl(x):
        x = max(min(x, hi), lo)  # NaN stays NaN
        x2 = x * x
        p = fma(x2, fma(x2, fma(x2, fma(x2, fma(x2, fma(x2, a[6], a[5]), a[4]), a[3]), a[2]),
                        a[1]), a[0])
        q = fma(x2, fma(x2, fma(x2, b[3], b[2]), b[1]), b[0])
        return (x * p) / q

    return impl


_TANH = {types.float64: _tanh_impl(np.float64, 20.0, 6, 7), types.float32: _rational_tanh32()}


@overload(ltanh, jit_options=dict(error_model="numpy"))
def _ltanh(x):
    return _TANH.get(x)


@njit(**JIT)
def tanh_array(x, out):
    """out[i] = ltanh(x[i]) (tests)."""
    wide()
    for i in range(x.size):
        out[i] = ltanh(x[i])


@njit(inline="always", **JIT)
def at(row):
    """The index of row `row`'s first lane."""
    return U(row) * L


@njit(inline="always", **JIT)
def h1_map(table, n, ci):
    """The H1 map that H2 map n reads as its ci-th input, clamped to 0..11."""
    return min(max(table[n, ci], 0), MAPS - 1)


@njit(inline="always", **JIT)
def copy_rows(buf, dst, src, n, scale):
    """rows dst..dst+n = scale * rows src..src+n (through the stack: see above)."""
    tmp = local_array(buf, 16)
    for i in range(n):
        for l in range(L):
            tmp[l] = scale * buf[at(src + i) + l]
        for l in range(L):
            buf[at(dst + i) + l] = tmp[l]


@njit(inline="always", **JIT)
def move_rows(buf, dst, src, n):
    """rows dst..dst+n = rows src..src+n, exactly (through the stack)."""
    tmp = local_array(buf, 16)
    for i in range(n):
        for l in range(L):
            tmp[l] = buf[at(src + i) + l]
        for l in range(L):
            buf[at(dst + i) + l] = tmp[l]


@njit(inline="always", **JIT)
def mul_rows(buf, dst, src, n):
    """rows dst..dst+n *= rows src..src+n."""
    tmp = local_array(buf, 16)
    for i in range(n):
        for l in range(L):
            tmp[l] = buf[at(dst + i) + l] * buf[at(src + i) + l]
        for l in range(L):
            buf[at(dst + i) + l] = tmp[l]


@njit(inline="always", **JIT)
def fma_row(acc, i, buf, w, x):
    """Accumulator row i (a constant) += row w times row x, lane by lane (fused): with
    every index into acc a constant, LLVM keeps the rows in registers across the loop around
    the calls (an accumulator row chosen by a loop variable lives on the stack, stored after
    every multiply-add)."""
    for l in range(L):
        acc[U(i) * L + l] = fma(buf[at(w) + l], buf[at(x) + l], acc[U(i) * L + l])


@njit(inline="always", **JIT)
def fma_taps(acc, i, buf, d, x):
    """Accumulator rows i..i+4 += row d times rows x..x+4 (`fma_row`)."""
    fma_row(acc, i, buf, d, x)
    fma_row(acc, i + 1, buf, d, x + 1)
    fma_row(acc, i + 2, buf, d, x + 2)
    fma_row(acc, i + 3, buf, d, x + 3)
    fma_row(acc, i + 4, buf, d, x + 4)


@njit(inline="always", **JIT)
def fma_pixels(acc, i, buf, d, xs, x):
    """Accumulator rows i..i+4 += row d times the shared pixels xs[x + k N1], k = 0..4
    (taps i..i+4 of one pattern position: `fma_row` with a scalar for the second row)."""
    for k in range(5):
        for l in range(L):
            acc[U(i + k) * L + l] = fma(buf[at(d) + l], xs[x + k * N1], acc[U(i + k) * L + l])


@njit(inline="always", **JIT)
def activate(buf, dst, acc, n, o):
    """rows dst..dst+n = t: tanh(S a) (NC89's A tanh(S a) without A) or max(a, 0), a = acc."""
    zero = type(o.S)(0)
    for i in range(n):
        if o.relu:
            for l in range(L):
                a = acc[U(i) * L + l]
                buf[at(dst + i) + l] = zero if a < zero else a  # NaN stays NaN
        else:
            for l in range(L):
                buf[at(dst + i) + l] = ltanh(o.S * acc[U(i) * L + l])


@njit(inline="always", **JIT)
def put(buf, row, acc, i, o):
    """Parameter row `row`'s gradient acc[i * LANES:]: o.sgd: its step now, p += f g with f
    = LRV = -lr (optim.SGD.step) or f = STEP = -eps / (mu + h) (sdlm.SDLM.step); o.curvature
    (SDLM's estimate): added to GRAD, the running sum of the patterns' d2E/dw2; else kept in
    GRAD (AdamW)."""
    tmp = local_array(buf, 16)
    if o.sgd:
        if o.per_param:
            for l in range(L):
                tmp[l] = fma(buf[at(STEP + row) + l], acc[U(i) * L + l], buf[at(row) + l])
        else:
            for l in range(L):
                tmp[l] = fma(buf[at(LRV) + l], acc[U(i) * L + l], buf[at(row) + l])
        for l in range(L):
            buf[at(row) + l] = tmp[l]
    elif o.curvature:
        for l in range(L):
            buf[at(GRAD + row) + l] += acc[U(i) * L + l]
    else:
        for l in range(L):
            buf[at(GRAD + row) + l] = acc[U(i) * L + l]


# --- forward ------------------------------------------------------------------------------

@njit(**PART)
def load_input(xs, image):
    """F.pad(x, 2, value=pad) (the border: `set_padding`), then im2col, shared by the lanes."""
    for r in range(16):
        for c in range(16):
            xs[XPAD + (r + 2) * XS + c + 2] = image[r, c]
    for u in range(5):
        for v in range(5):
            for y in range(8):
                for x in range(8):
                    xs[XCOL + (5 * u + v) * N1 + 8 * y + x] = xs[XPAD + (2 * y + u) * XS
                                                                 + 2 * x + v]


@njit(**PART)
def h1_forward(buf, xs, o, wb):
    """Mirrors Net1989.layers: h1 = act(F.conv2d(F.pad(x, 2, value=pad), h1_w, stride=2) + h1_b),
    UB units at a time, each tap's weight row times the shared pixel; the parameters at row
    wb + their offset (0, or WSAVE during SDLM's estimate)."""
    wide()
    for m in range(MAPS):
        for p0 in range(0, N1, UB):
            acc = local_array(buf, 128)  # UB rows
            for i in range(UB):
                b = wb + (B1 + m * N1 + p0 + i if o.unit_bias else B1 + m)
                for l in range(L):
                    acc[U(i) * L + l] = buf[at(b) + l]
            for t in range(TAPS):
                w = at(wb + W1 + m * TAPS + t)
                for i in range(UB):
                    x = xs[XCOL + t * N1 + p0 + i]
                    for l in range(L):
                        acc[U(i) * L + l] = fma(buf[w + l], x, acc[U(i) * L + l])
            activate(buf, T1 + m * N1 + p0, acc, UB, o)
        for y in range(8):
            copy_rows(buf, H1PAD + m * HS * HS + (y + 2) * HS + 2, T1 + m * N1 + 8 * y, 8, o.A)


@njit(**PART)
def h2_forward(buf, table, o, wb):
    """Mirrors Net1989.layers: h2 = act(F.conv2d(F.pad(h1, 2, value=pad)[:, table], h2_w,
    stride=2, groups=12) + h2_b): H2 map n sees the k H1 maps table[n]; all 16 units of a
    map at once (16 independent sums, each over ci, u, v in order as before); per input row
    the 5 weights of (ci, u) and each of the row's 11 values loaded once for the (up to 3)
    units that read it; the parameters at row wb + their offset."""
    wide()
    for n in range(MAPS):
        acc = local_array(buf, 256)  # N2 rows
        for i in range(N2):
            b = wb + (B2 + n * N2 + i if o.unit_bias else B2 + n)
            for l in range(L):
                acc[U(i) * L + l] = buf[at(b) + l]
        for ci in range(table.shape[1]):
            c = H1PAD + h1_map(table, n, ci) * HS * HS
            for u in range(5):
                wl = local_array(buf, 80)  # the taps (u, 0..4)
                w = wb + W2 + (n * MAPS + ci) * TAPS + 5 * u
                for v in range(5):
                    for l in range(L):
                        wl[U(v) * L + l] = buf[at(w + v) + l]
                for qy in range(4):
                    row = c + (2 * qy + u) * HS
                    for col in range(11):
                        xv = local_array(buf, 16)
                        for l in range(L):
                            xv[l] = buf[at(row + col) + l]
                        for qx in range(4):
                            v = col - 2 * qx
                            if v >= 0 and v < 5:
                                q = 4 * qy + qx
                                for l in range(L):
                                    acc[U(q) * L + l] = fma(wl[U(v) * L + l], xv[l],
                                                            acc[U(q) * L + l])
        activate(buf, T2 + n * N2, acc, N2, o)
    copy_rows(buf, H2, T2, MAPS * N2, o.A)


@njit(**PART)
def dense_forward(buf, w, b, x, n_out, n_in, t, h, o, squash):
    """Mirrors Net1989.layers: h = act(x @ w.T + b), 10 rows at a time (n_out: 10 or 30).
    Not inlined: inside `forward` LLVM's SLP vectoriser left its tanh scalar."""
    wide()
    for j0 in range(0, n_out, 10):
        acc = local_array(buf, 160)
        for j in range(10):
            for l in range(L):
                acc[U(j) * L + l] = buf[at(b + j0 + j) + l]
        for i in range(n_in):
            xi = at(x + i)
            for j in range(10):
                wj = at(w + (j0 + j) * n_in + i)
                for l in range(L):
                    acc[U(j) * L + l] = fma(buf[wj + l], buf[xi + l], acc[U(j) * L + l])
        if squash:
            activate(buf, t + j0, acc, 10, o)
            copy_rows(buf, h + j0, t + j0, 10, o.A)
        else:
            for j in range(10):
                for l in range(L):
                    buf[at(h + j0 + j) + l] = acc[U(j) * L + l]


@njit(**PART)
def forward(buf, xs, image, table, o, wb):
    """Mirrors Net1989.forward for one pattern (o.dropout: training mode, with KEEP): the
    outputs land at Y. The parameters are read at row wb + their offset: 0, or WSAVE (SDLM's
    estimate, whose backward pass finds the squared weights in the weights' place)."""
    wide()
    load_input(xs, image)
    h1_forward(buf, xs, o, wb)
    above_h1(buf, table, o, wb)


@njit(**PART)
def above_h1(buf, table, o, wb):
    """`forward` from H1's output (H1PAD) to the outputs (Y)."""
    wide()
    h2_forward(buf, table, o, wb)
    if o.dropout:  # Net1989.layers: dropout on H2's output, before H3
        mul_rows(buf, H2, KEEP, MAPS * N2)
    dense_forward(buf, wb + W3, wb + B3, H2, HID, MAPS * N2, T3, H3, o, True)
    dense_forward(buf, wb + W4, wb + B4, H3, OUT, HID, T4, Y, o, o.squash_out)


# --- prediction: one model, LANES patterns at once ----------------------------------------
# Patterns are independent when nothing is learnt, so prediction may turn the layout around:
# the lanes hold LANES patterns of one model, whose parameter rows hold each weight LANES
# times (lanes.py), and the input is a row per pixel. No lane is idle when K is not a
# multiple of LANES (lanes.py chooses the layout that computes fewer lanes). Every lane's
# numbers are the same operations in the same order as `forward`'s (fma's two factors commute
# exactly): only H1 reads the input, so only it has its own version here.

@njit(**PART)
def load_input_rows(xs, images, s0, n):
    """Rows XPAD.. = patterns s0..s0+n, pattern s0 + l in lane l (n <= LANES), inside the
    border that `predict_rows` sets; lanes from n on keep what they held."""
    for l in range(n):
        for r in range(16):
            for c in range(16):
                xs[at(XPAD + (r + 2) * XS + c + 2) + U(l)] = images[s0 + l, 0, r, c]


@njit(**PART)
def h1_forward_rows(buf, xs, o):
    """`h1_forward` with each lane's own pattern (`load_input_rows`): the tap t = 5u + v of
    unit (y, x) reads input row XPAD + (2y + u) XS + 2x + v, as XCOL does."""
    wide()
    for m in range(MAPS):
        for p0 in range(0, N1, UB):
            acc = local_array(buf, 128)  # UB rows
            for i in range(UB):
                b = B1 + m * N1 + p0 + i if o.unit_bias else B1 + m
                for l in range(L):
                    acc[U(i) * L + l] = buf[at(b) + l]
            for t in range(TAPS):
                w = buf[at(W1 + m * TAPS + t)]  # (the same in every lane)
                x = at(XPAD + (2 * (p0 // 8) + t // 5) * XS + 2 * (p0 % 8) + t % 5)
                for i in range(UB):  # (units p0..p0+7: one row y, x = 0..7)
                    for l in range(L):
                        acc[U(i) * L + l] = fma(w, xs[x + U(2 * i) * L + l],
                                                acc[U(i) * L + l])
            activate(buf, T1 + m * N1 + p0, acc, UB, o)
        for y in range(8):
            copy_rows(buf, H1PAD + m * HS * HS + (y + 2) * HS + 2, T1 + m * N1 + 8 * y, 8, o.A)


@njit(**PART)
def predict_rows(buf, xs, table, images, start, stop, o, out):
    """Outputs of patterns start..stop, LANES at a time: out[c * 10 + j, l] = output j of
    pattern start + c LANES + l (`run`'s PREDICT_ROWS)."""
    wide()
    for i in range(XS * XS):  # the input's border (its inside: each chunk's patterns)
        for l in range(L):
            xs[at(XPAD + i) + l] = o.pad
    for s0 in range(start, stop, LANES):
        load_input_rows(xs, images, s0, min(LANES, stop - s0))
        h1_forward_rows(buf, xs, o)
        above_h1(buf, table, o, 0)
        c = (s0 - start) // LANES
        for j in range(OUT):
            for l in range(L):
                out[c * OUT + j, l] = buf[at(Y + j) + l]


# --- backward: gradients, and SDLM's Gauss-Newton second derivatives -----------------------
# As _kernels.py: with o.sgd each parameter's step as soon as its gradient is known (`put`),
# else the gradient into GRAD; with o.curvature the same functions back-propagate EB98's
# second derivatives (train/sdlm.py), set up by `run` with squared weights and inputs.

@njit(**PART)
def output_backward(buf, label, o):
    """Mirrors reference.sample_loss per lane: E = mean_k (y_k - t_k)^2 (or the sum:
    o.sum_out), t = +-TGT (NC89 §4),
    or E = -log softmax(y)_label (ce), into LOSS; D4 = dE/da of the output units
    (o.curvature: d2E/da2, 2/10 f'^2 or p_k (1 - p_k) f'^2)."""
    wide()
    f = type(o.A)
    if o.ce:  # F.cross_entropy: log-sum-exp from the largest output, lane by lane
        for l in range(L):
            top = buf[at(Y) + l]
            for j in range(1, OUT):
                top = max(top, buf[at(Y + j) + l])
            z = f(0)
            for j in range(OUT):
                e = np.exp(buf[at(Y + j) + l] - top)
                buf[at(D4 + j) + l] = e
                z += e
            buf[at(LOSS) + l] = top + np.log(z) - buf[at(Y + label) + l]
            for j in range(OUT):
                p = buf[at(D4 + j) + l] / z
                buf[at(D4 + j) + l] = (p * (f(1) - p) if o.curvature
                                       else p - (f(1) if j == label else f(0)))
    else:
        two_n = f(2) if o.sum_out else f(2 / OUT)
        loss = local_array(buf, 16)
        for l in range(L):
            loss[l] = f(0)
        for j in range(OUT):
            d = local_array(buf, 16)
            for l in range(L):
                t = buf[at(TGT) + l]
                e = buf[at(Y + j) + l] - (t if j == label else -t)
                loss[l] = fma(e, e, loss[l])
                d[l] = two_n if o.curvature else two_n * e
            for l in range(L):
                buf[at(D4 + j) + l] = d[l]
        for l in range(L):
            buf[at(LOSS) + l] = loss[l] if o.sum_out else loss[l] / f(OUT)
    if o.squash_out:
        act_backward(buf, D4, T4, OUT, o)


@njit(**PART)
def act_backward(buf, d, t, n, o):
    """Through h = A tanh(S a) (or ReLU): dE/da = dE/dh f'(a), in place, f'(a) = A S (1 -
    t^2) from t = tanh(S a), or ReLU's 1 where t > 0, else 0; o.curvature: times f'(a)^2."""
    wide()
    one, zero, AS = type(o.A)(1), type(o.A)(0), o.A * o.S
    tmp = local_array(buf, 16)
    for i in range(n):
        if o.relu:  # f'^2 = f'
            for l in range(L):
                tmp[l] = buf[at(d + i) + l] * (one if buf[at(t + i) + l] > zero else zero)
        elif o.curvature:
            for l in range(L):
                tv = buf[at(t + i) + l]
                f1 = AS * (one - tv * tv)
                tmp[l] = buf[at(d + i) + l] * (f1 * f1)
        else:
            for l in range(L):
                tv = buf[at(t + i) + l]
                tmp[l] = buf[at(d + i) + l] * (AS * (one - tv * tv))
        for l in range(L):
            buf[at(d + i) + l] = tmp[l]


@njit(**PART)
def dense_backward(buf, w, x, d, dx, n_out, n_in, o):
    """Autograd of x @ w.T + b: dx = w.T @ d, grad w = outer(d, x), grad b = d (`put`);
    each weight read for dx before its step. The weights in memory order (output j, then
    its n_in inputs): one stream through the layer's rows, which do not fit L1 (H3: 5760
    rows, 368 KB in float32), while dx's n_in sums stay on the stack; each sum over j in
    order from 0, as before (BENCHMARKS.md, the lanes engine)."""
    wide()
    g = local_array(buf, 16)
    dj = local_array(buf, 16)
    acc = local_array(buf, 3072)  # n_in <= 192 rows
    for l in range(U(n_in) * L):
        acc[l] = 0
    gs = local_array(buf, 16)
    for j in range(n_out):
        for l in range(L):
            dj[l] = buf[at(d + j) + l]
        for i in range(n_in):
            wi = w + j * n_in + i
            for l in range(L):
                acc[U(i) * L + l] = fma(buf[at(wi) + l], dj[l], acc[U(i) * L + l])
                gs[l] = dj[l] * buf[at(x + i) + l]
            put(buf, wi, gs, 0, o)
    for i in range(n_in):
        for l in range(L):
            buf[at(dx + i) + l] = acc[U(i) * L + l]
    for j in range(n_out):  # b follows w in the layout
        for l in range(L):
            g[l] = buf[at(d + j) + l]
        put(buf, w + n_out * n_in + j, g, 0, o)


@njit(**PART)
def bias_grad(buf, b, d, n_units, o):
    """grad of a conv layer's biases from dE/da at d: per unit, or summed per map."""
    wide()
    g = local_array(buf, 16)
    for m in range(MAPS):
        if o.unit_bias:
            for p in range(n_units):
                for l in range(L):
                    g[l] = buf[at(d + m * n_units + p) + l]
                put(buf, b + m * n_units + p, g, 0, o)
        else:
            for l in range(L):
                g[l] = buf[at(d + m * n_units) + l]
            for p in range(1, n_units):
                for l in range(L):
                    g[l] += buf[at(d + m * n_units + p) + l]
            put(buf, b + m, g, 0, o)


@njit(**PART)
def h1_input_grad(buf, table, o):
    """Autograd of the H2 convolution w.r.t. its input, then through H1's tanh: DH1 = dE/da.

    H1 unit (y, x) = (2a + ry, 2b + rx) gets h2_w[n, ci, u, v] d2[n, i, j] from every H2 unit
    (i, j) whose patch has it at tap u = 2du + ry, v = 2dv + rx: i = a + 1 - du, j = b + 1 - dv
    (D2PAD: d2 with a border of zeros). Padding gets nothing: only H1's units are targets.
    Each H1 map's units are summed in registers over all the H2 maps that read it, in the
    order of n, then ci (the order in which they were added up in DH1 before: the same bits).
    """
    wide()
    tmp = local_array(buf, 16)
    for n in range(MAPS):
        for q in range(N2):
            for l in range(L):
                tmp[l] = buf[at(D2 + n * N2 + q) + l]
            for l in range(L):
                buf[at(D2PAD + n * 36 + (q // S2 + 1) * 6 + q % S2 + 1) + l] = tmp[l]
    for m in range(MAPS):  # each H1 map's units summed in registers over every H2 map
        dst = DH1 + m * N1
        for ry in range(2):
            for rx in range(2):
                for a0 in range(0, 4, 2):  # units (2a + ry, 2b + rx), a = a0, a0 + 1
                    acc = local_array(buf, 128)
                    for i in range(UB * LANES):
                        acc[i] = 0
                    for n in range(MAPS):  # in the order of n, then ci, as before
                        for ci in range(table.shape[1]):
                            if h1_map(table, n, ci) != m:
                                continue
                            for du in range(3):
                                for dv in range(3):
                                    u, v = 2 * du + ry, 2 * dv + rx
                                    if u < 5 and v < 5:
                                        w = at(W2 + (n * MAPS + ci) * TAPS + 5 * u + v)
                                        for i in range(UB):
                                            a, b = a0 + i // 4, i % 4
                                            s = at(D2PAD + n * 36 + (a + 2 - du) * 6 + b + 2
                                                   - dv)
                                            for l in range(L):
                                                acc[U(i) * L + l] = fma(buf[w + l], buf[s + l],
                                                                        acc[U(i) * L + l])
                    for i in range(UB):
                        y, x = 2 * (a0 + i // 4) + ry, 2 * (i % 4) + rx
                        for l in range(L):
                            buf[at(dst + 8 * y + x) + l] = acc[U(i) * L + l]
    act_backward(buf, DH1, T1, MAPS * N1, o)


@njit(**PART)
def h2_backward(buf, table, o):
    """Autograd of the grouped H2 convolution: grad h2_w[n, ci, u, v] = sum_q d2[n, q]
    x2[table[n, ci], 2i + u, 2j + v] and grad h2_b. All 25 taps at once: 25 sums in
    registers (`fma_row`), each over q in order as before."""
    wide()
    bias_grad(buf, B2, D2, N2, o)
    acc = local_array(buf, 400)  # TAPS rows
    for n in range(MAPS):
        for ci in range(table.shape[1]):
            c = H1PAD + h1_map(table, n, ci) * HS * HS
            for i in range(TAPS * LANES):
                acc[i] = 0
            for q in range(N2):
                d = D2 + n * N2 + q
                x = c + 2 * (q // S2) * HS + 2 * (q % S2)  # tap (0, 0)'s input
                fma_taps(acc, 0, buf, d, x)
                fma_taps(acc, 5, buf, d, x + HS)
                fma_taps(acc, 10, buf, d, x + 2 * HS)
                fma_taps(acc, 15, buf, d, x + 3 * HS)
                fma_taps(acc, 20, buf, d, x + 4 * HS)
            for t in range(TAPS):
                put(buf, W2 + (n * MAPS + ci) * TAPS + t, acc, t, o)


@njit(**PART)
def h1_backward(buf, xs, o):
    """Autograd of the H1 convolution: grad h1_w[m, t] = sum_p DH1[m, p] XCOL[t, p] (all 25
    taps at once: 25 independent sums, each over p in order, the pixels shared); h1_b."""
    wide()
    acc = local_array(buf, 400)  # TAPS rows, in registers (`fma_row`)
    for m in range(MAPS):
        for i in range(TAPS * LANES):
            acc[i] = 0
        for p in range(N1):
            d = DH1 + m * N1 + p
            x = XCOL + p  # tap 0's pixel; tap t's at x + t * N1
            fma_pixels(acc, 0, buf, d, xs, x)
            fma_pixels(acc, 5, buf, d, xs, x + 5 * N1)
            fma_pixels(acc, 10, buf, d, xs, x + 10 * N1)
            fma_pixels(acc, 15, buf, d, xs, x + 15 * N1)
            fma_pixels(acc, 20, buf, d, xs, x + 20 * N1)
        for t in range(TAPS):
            put(buf, W1 + m * TAPS + t, acc, t, o)
    bias_grad(buf, B1, DH1, N1, o)


@njit(**PART)
def backward(buf, xs, label, table, o):
    """Mirrors torch.autograd.grad(loss, params) for one pattern, each gradient through `put`
    (o.sgd: the step right away; else into GRAD); the loss into LOSS. o.curvature: the
    pattern's d2E/dw2 (sdlm.gauss_newton_diagonal) instead, set up by `run`."""
    wide()
    output_backward(buf, label, o)
    dense_backward(buf, W4, H3, D4, D3, OUT, HID, o)
    act_backward(buf, D3, T3, HID, o)
    dense_backward(buf, W3, H2, D3, D2, HID, MAPS * N2, o)
    if o.dropout:
        mul_rows(buf, D2, KEEP, MAPS * N2)  # d(h2 * keep)/dh2 = keep
    act_backward(buf, D2, T2, MAPS * N2, o)
    h1_input_grad(buf, table, o)  # reads h2_w: before its step
    h2_backward(buf, table, o)
    h1_backward(buf, xs, o)


@njit(**PART)
def square_inputs(buf, xs):
    """x -> x^2 for every input a weight multiplies (padding included: EB98 via sdlm.py);
    `run` puts H1PAD's border back after the pattern."""
    wide()
    for i in range(TAPS * N1):
        xs[XCOL + i] *= xs[XCOL + i]
    mul_rows(buf, H1PAD, H1PAD, MAPS * HS * HS)
    mul_rows(buf, H2, H2, MAPS * N2)
    mul_rows(buf, H3, H3, HID)


@njit(**PART)
def adamw_step(buf, lrs, weight_decay):
    """Mirrors torch.optim.AdamW.step (single-tensor, betas 0.9, 0.999, eps 1e-8) from GRAD,
    each lane with its own lr: the scalars in float64 as Python computes them, then in the
    engine's dtype (as _kernels.adamw_step)."""
    wide()
    f = type(buf[0])
    for l in range(L):
        step = buf[at(ADAM_STEP) + l] + f(1)
        buf[at(ADAM_STEP) + l] = step
        s, lr = np.float64(step), lrs[l]
        buf[at(ADAM_DECAY) + l] = f(1 - lr * weight_decay)
        buf[at(ADAM_SIZE) + l] = f(-(lr / (1 - 0.9 ** s)))
        buf[at(ADAM_BC2) + l] = f((1 - 0.999 ** s) ** 0.5)
    w1, b2, w2, eps = f(1 - 0.9), f(0.999), f(1 - 0.999), f(1e-8)
    tp, tm, tv = local_array(buf, 16), local_array(buf, 16), local_array(buf, 16)
    for i in range(NPARAM):
        for l in range(L):
            g, m = buf[at(GRAD + i) + l], buf[at(EXP_AVG + i) + l]
            m = m + w1 * (g - m)  # exp_avg.lerp_(grad, 1 - beta1)
            v = buf[at(EXP_AVG_SQ + i) + l] * b2 + w2 * g * g
            tm[l], tv[l] = m, v
            tp[l] = (buf[at(i) + l] * buf[at(ADAM_DECAY) + l] + buf[at(ADAM_SIZE) + l]
                     * (m / (np.sqrt(v) / buf[at(ADAM_BC2) + l] + eps)))
        for l in range(L):
            buf[at(EXP_AVG + i) + l] = tm[l]
            buf[at(EXP_AVG_SQ + i) + l] = tv[l]
            buf[at(i) + l] = tp[l]


# --- the entry point: training, SDLM's estimate, prediction -----------------------------

TRAIN, ESTIMATE, PREDICT, PREDICT_ROWS = 0, 1, 2, 3  # what `run` does with the patterns


@njit(**PART)
def set_padding(buf, xs, pad):
    """The constant padding around the input and around H1's output (NC89 §3: -1), and
    D2PAD's border of zeros."""
    wide()
    for i in range(XS * XS):
        xs[XPAD + i] = pad
    for i in range(MAPS * HS * HS):
        for l in range(L):
            buf[at(H1PAD + i) + l] = pad
    for i in range(MAPS * 36):
        for l in range(L):
            buf[at(D2PAD + i) + l] = 0


@njit(**PART)
def estimate_begin(buf):
    """SDLM's estimate, once per call: the squared weights in the weights' place (for
    `backward`; `forward` reads the weights themselves from WSAVE, where lanes.py copies
    them), and GRAD = HESS, from which `put` sums the patterns' d2E/dw2 (the same additions
    in the same order as HESS += the pattern's d2E/dw2, pattern by pattern)."""
    wide()
    tmp = local_array(buf, 16)
    for i in range(NPARAM):
        for l in range(L):
            w = buf[at(WSAVE + i) + l]
            tmp[l] = w * w
        for l in range(L):
            buf[at(i) + l] = tmp[l]
    move_rows(buf, GRAD, HESS, NPARAM)


@njit(**PART)
def estimate_end(buf):
    """HESS = the sum (GRAD), and the weights back from WSAVE."""
    wide()
    move_rows(buf, HESS, GRAD, NPARAM)
    move_rows(buf, 0, WSAVE, NPARAM)


@njit(**JIT)
def run(buf, xs, table, images, labels, keep, start, stop, job, lrs, weight_decay, o, out):
    """The one compiled entry point: for each pattern s of images[start:stop], in order,
    `forward` for the block's LANES models, then by job

    TRAIN:    `backward` (with o.sgd: and the step) or `backward` then `adamw_step`;
              out[s - start, l] = lane l's loss; keep[s - start, i, l]: its dropout masks;
              lrs[l]: lane l's lr (SGD) or eps (SDLM) for the whole chunk;
    ESTIMATE: SDLM's begin_pass (o.curvature): HESS += the pattern's d2E/dw2, back-propagated
              with squared weights and inputs; lanes.py zeroes HESS and copies the weights to
              WSAVE before, and averages after (the weights are squared, and the sum kept in
              GRAD, once per call: `estimate_begin`, `estimate_end`);
    PREDICT:  out[(s - start) * 10 + j, l] = lane l's output j (o.dropout False);
    PREDICT_ROWS: `predict_rows`: the lanes hold patterns of one model (o.dropout False).
    """
    wide()
    set_padding(buf, xs, o.pad)
    f = type(o.A)
    if job == TRAIN:
        tmp = local_array(buf, 16)
        for l in range(L):
            buf[at(LRV) + l] = -f(lrs[l])
        if o.per_param:
            for i in range(NPARAM):  # STEP = -eps / (mu + h), from INV = 1 / (mu + h)
                for l in range(L):
                    tmp[l] = buf[at(LRV) + l] * buf[at(INV + i) + l]
                for l in range(L):
                    buf[at(STEP + i) + l] = tmp[l]
    if job == ESTIMATE:
        estimate_begin(buf)
    if job == PREDICT_ROWS:
        predict_rows(buf, xs, table, images, start, stop, o, out)
        return
    wb = WSAVE if job == ESTIMATE else 0  # where `forward` reads the parameters
    for s in range(start, stop):
        if o.dropout:
            for i in range(MAPS * N2):
                for l in range(L):
                    buf[at(KEEP + i) + l] = keep[s - start, i, l]
        forward(buf, xs, images[s, 0], table, o, wb)
        if job == PREDICT:
            for j in range(OUT):
                for l in range(L):
                    out[(s - start) * OUT + j, l] = buf[at(Y + j) + l]
            continue
        if job == ESTIMATE:
            square_inputs(buf, xs)
        backward(buf, xs, labels[s], table, o)  # (ESTIMATE: adds to GRAD, `put`)
        if job == ESTIMATE:
            set_padding(buf, xs, o.pad)  # H1PAD's border was squared
        else:
            for l in range(L):
                out[s - start, l] = buf[at(LOSS) + l]
            if o.adamw:  # (sgd, sdlm: `backward` took the step)
                adamw_step(buf, lrs, weight_decay)
    if job == ESTIMATE:
        estimate_end(buf)
