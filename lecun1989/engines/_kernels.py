"""Numba kernels of the fast engine: one function per layer and direction, one pattern a call.

Each function mirrors a line of the reference (`Net1989.layers`, autograd, `optim.SGD`,
`optim/sdlm.py`, `torch.optim.AdamW`). Everything one model needs lives in ONE flat array
`buf`: its parameters, their step sizes, SDLM's second derivatives, AdamW's moments and every
intermediate of the current pattern, at the constant offsets below (shapes in comments, C
order). K models are K rows of (K, SIZE); `fast.py` runs them on threads (the kernels release
the GIL). `run` is the one entry point: for each pattern of a chunk `forward`, then for
training `backward` (with SGD or SDLM, each parameter's step as soon as its gradient is
known and the layers below no longer need it; with AdamW, the gradient into GRAD and
`adamw_step` after it); SDLM's `begin_pass` is the same `backward` with squared weights
and inputs, which back-propagates second derivatives. Every option (ReLU, softmax
cross-entropy, dropout, the optimizer, SDLM's estimate) is a runtime flag in `Options`,
tested outside the loops: one `forward` and one `backward` to compile, which keeps the
first compile short (fast.py compiles them in two helper processes at once,
`_compiler.py`). Callees have no CPython wrapper: only `run` (and `tanh_array`, for the
tests) can be called from Python.

Why one flat array: LLVM vectorises the small fixed-size loops here only with its SLP
vectoriser (numba switches it off by default; `fast.py` switches it on while compiling) and
only when it can prove that loads and stores do not overlap, which it can for constant
offsets into one array but not for separate arrays or numba views. For the same reasons
vector-like dimensions are padded to multiples of 8 (taps 25 -> 32, H3 30 -> 32), indices
read from the connection table are clamped to 0..11 (no negative-index wraparound), float
constants come in typed (a Python float literal would turn float32 arithmetic into float64)
and `error_model="numpy"` lets divisions vectorise. `fastmath` allows re-association and FMA
contraction only: dot products vectorise; NaN and inf still propagate.

Sums run in `local_array`s (the stack: LLVM keeps them in registers, as they cannot overlap
`buf`; a sum kept in `buf` next to a read at a table-chosen offset is stored back every
step). The loops around an SLP-vectorised one run over 5 (or 4) taps, u then v: with one
loop of 25, LLVM's loop vectoriser vectorises that loop instead, with strided gathers.
Dot products sum several outputs at once (`dense_forward`, `h1_backward`; four H2 maps in
`h2_forward`, four H1 phases in `h1_input_grad`): independent sums, not one chain of
additions that each wait for the one before (FMA latency; BENCHMARKS.md), each output's
sum still in the order it had alone.

H1's 64 units are kept in phase order, p = 16 (2 (y%2) + x%2) + 4 (y//2) + x//2: then the
gradient reaching H1 from H2 is 4 plain 4x4 correlations per map (`h1_input_grad`), no col2im.
"""

from __future__ import annotations

from collections import namedtuple
from math import factorial

import numpy as np
from numba import carray, njit
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

JIT = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False,
           fastmath={"reassoc", "contract"})
PART = dict(JIT, no_cpython_wrapper=True, no_cfunc_wrapper=True)  # callees: not called from Python

MAPS, TAPS, TP = 12, 25, 32  # NC89 §3: 12 maps a layer, 5x5 = 25 taps (padded to 32)
XS, HS = 20, 12  # the 16x16 input and the 8x8 H1 maps, each padded by 2 on every side
N1, N2, S2 = 64, 16, 4  # H1 units per map; H2 units per map and side
HP, OUT = 32, 10  # H3's 30 units padded to 32; outputs
ALIGN = 16  # elements: every region below starts on a 64-byte boundary (`_after`)


def _after(start: int, size: int) -> int:
    """The offset after a region of `size` at `start`, rounded up to 16 elements: every
    region starts 64-byte aligned in a 64-byte-aligned `buf` (fast.py), so the vector loads
    of the SLP-vectorised loops do not straddle cache lines (regions 16 bytes off were
    slower: BENCHMARKS.md)."""
    return -(-(start + size) // ALIGN) * ALIGN


# parameters (fast.py converts from and to PARAM_NAMES); padding entries stay 0
W1 = 0                                # (12, 25)       h1_w
B1 = _after(W1, MAPS * TAPS)          # (12, 64)       h1_b, phase order; bias "map": 0..11
W2 = _after(B1, MAPS * N1)            # (12, 12, 32)   h2_w[n, ci, t]: n's ci-th input map
B2 = _after(W2, MAPS * MAPS * TP)     # (12, 16)       h2_b; bias "map": entries 0..11
W3 = _after(B2, MAPS * N2)            # (32, 192)      h3_w (rows 30, 31 zero)
B3 = _after(W3, HP * MAPS * N2)       # (32,)          h3_b
W4 = _after(B3, HP)                   # (10, 32)       out_w (columns 30, 31 zero)
B4 = _after(W4, OUT * HP)             # (10,)          out_b
NPARAM = _after(B4, 16)
STEP = NPARAM                         # each parameter's update factor: -lr / (mu + h) (sgd: -lr)
HESS = 2 * NPARAM                     # SDLM: h, the averaged d2E/dw2
INV = 3 * NPARAM                      # 1 / (mu + h) (sgd: 1)
WSAVE = 4 * NPARAM                    # SDLM's estimate: the weights (their squares in place)
# the current pattern
XPAD = 5 * NPARAM                     # (20, 20)       the padded input
XCOL = _after(XPAD, XS * XS)          # (25, 64)       XCOL[5u+v, p(y, x)] = XPAD[2y+u, 2x+v]
T1 = _after(XCOL, TAPS * N1)          # (12, 64)       H1: tanh(S a), phase order
H1PAD = _after(T1, MAPS * N1)         # (12, 12, 12)   H1's output A tanh(S a), padded
HROW = _after(H1PAD, MAPS * HS * HS)  # (12, 16, 32)   H2 patches: HROW[c, 4i+j, 5u+v]
#                                       = H1PAD[c, 2i+u, 2j+v]
HCOL = _after(HROW, MAPS * N2 * TP)   # (12, 25, 16)   the same, tap-major
T2 = _after(HCOL, MAPS * TAPS * N2)   # (12, 16)       H2: tanh(S a)
H2 = _after(T2, MAPS * N2)            # (192,)         H2's output
T3 = _after(H2, MAPS * N2)            # (32,)          H3: tanh(S a)
H3 = _after(T3, HP)                   # (32,)          H3's output
T4 = _after(H3, HP)                   # (16,)          the output units: tanh(S a) (or a)
Y = _after(T4, 16)                    # (16,)          the outputs
D4 = _after(Y, 16)                    # (16,)          dE/da at the outputs
D3 = _after(D4, 16)                   # (32,)          dE/dh3, then dE/da at H3
D2 = _after(D3, HP)                   # (192,)         dE/dh2, then dE/da at H2
D2PAD = _after(D2, MAPS * N2)         # (12, 6, 6)     dE/da at H2 with a border of zeros
D2WIN = _after(D2PAD, MAPS * 36)      # (12, 9, 16)    its shifted 4x4 windows
DH1 = _after(D2WIN, MAPS * 9 * N2)    # (12, 64)       dE/dh1, then dE/da at H1 (phase order)
KEEP = _after(DH1, MAPS * N1)         # (192,)         dropout mask: 0 or 1 / (1 - p)
# the current pattern's gradient (AdamW) or d2E/dw2 (SDLM's estimate); AdamW's two moments
# and step count
GRAD = _after(KEEP, MAPS * N2)
EXP_AVG = _after(GRAD, NPARAM)
EXP_AVG_SQ = _after(EXP_AVG, NPARAM)
ADAM_STEP = _after(EXP_AVG_SQ, NPARAM)
SIZE = _after(ADAM_STEP, 16)

# A configuration's options as the kernels take them (fast.py builds it; A, S, pad, target
# are of the engine's dtype). relu: max(a, 0) in place of A tanh(S a) (then A = S = 1);
# ce: softmax cross-entropy in place of NC89's MSE; sum_out: the MSE summed over the outputs
# (train.loss_reduction=sum), not averaged; dropout: H2's output times KEEP;
# step_in_backward: `backward` takes the step itself (SGD, and SDLM with its factors);
# adamw: `run` takes AdamW's; curvature: `backward` propagates SDLM's second derivatives.
Options = namedtuple("Options", "unit_bias squash_out relu ce sum_out dropout step_in_backward "
                                "adamw curvature A S pad target")


# --- tanh without libm --------------------------------------------------------------------
# pip's llvmlite has no SVML: np.tanh is a scalar libm call (a large share of a step:
# BENCHMARKS.md). `vtanh` is plain arithmetic that vectorises: clamp (tanh is +-1 to the
# last bit beyond the clamp), divide by 2^n, Taylor series of sinh r and cosh r - 1, n doublings
# (sinh 2r = 2 sinh r cosh r, cosh 2r - 1 = 2(cosh r - 1) + (cosh r - 1)^2 + sinh^2 r), then
# sinh / cosh. The doublings damp earlier rounding errors (tests: within 5 ulp of np.tanh).

def vtanh(x):
    """tanh(x), vectorisable in numba (float32 and float64)."""
    return np.tanh(x)


def _tanh_impl(dtype, clamp: float, doublings: int, terms: int):
    """A tanh for one dtype, its series long enough for the dtype's precision."""
    f = np.dtype(dtype).type
    lo, hi, scale, one, two = f(-clamp), f(clamp), f(0.5 ** doublings), f(1), f(2)
    s = tuple(f(1 / factorial(2 * i + 1)) for i in range(1, terms + 1))  # 1/3!, 1/5!, ...
    c = tuple(f(1 / factorial(2 * i)) for i in range(1, terms + 1))  # 1/2!, 1/4!, ...

    def impl(x):
        r = max(min(x, hi), lo) * scale  # NaN stays NaN
        r2 = r * r
        sp, cp = s[terms - 1], c[terms - 1]
        for i in range(terms - 2, -1, -1):
            sp = s[i] + r2 * sp
            cp = c[i] + r2 * cp
        sinh, cosh_m1 = r + r * (r2 * sp), r2 * cp
        for _ in range(doublings):
            sinh, cosh_m1 = two * (sinh + sinh * cosh_m1), cosh_m1 * (two + cosh_m1) + sinh * sinh
        return max(min(sinh / (one + cosh_m1), one), -one)  # not 1 ulp beyond +-1

    return impl


_TANH = {types.float64: _tanh_impl(np.float64, 20.0, 6, 7),  # tanh(20) = 1 - 8e-18
         types.float32: _tanh_impl(np.float32, 10.0, 4, 5)}  # tanh(10) = 1 - 4e-9


@overload(vtanh, jit_options=dict(error_model="numpy", fastmath={"contract"}))
def _vtanh(x):
    return _TANH.get(x)


@njit(**JIT)
def tanh_array(x, out):
    """out[i] = vtanh(x[i]) (tests and benchmarks)."""
    for i in range(x.size):
        out[i] = vtanh(x[i])


@intrinsic
def _stack_pointer(typingctx, like, n):
    """A pointer to n (a constant) elements of like's dtype on the kernel's stack."""
    if not isinstance(n, types.IntegerLiteral):
        return None

    def codegen(context, builder, sig, args):
        ptr = cgutils.alloca_once(builder, context.get_value_type(like.dtype),
                                  size=n.literal_value)
        ptr.align = 64  # a cache line: where the stack happens to be must not matter
        return ptr

    return types.CPointer(like.dtype)(like, n), codegen


@njit(inline="always", **JIT)
def local_array(like, n):
    """n uninitialised elements of like's dtype on the stack: accumulators LLVM keeps in
    registers, as it knows they do not overlap `buf` (stores into `buf` itself would be
    written back at every step of a loop that also reads `buf` at a variable offset)."""
    return carray(_stack_pointer(like, n), n)


@njit(**PART)
def h1_map(table, n, ci):
    """The H1 map that H2 map n reads as its ci-th input, clamped to 0..11 (see above)."""
    return min(max(table[n, ci], 0), MAPS - 1)


@njit(inline="always", **JIT)
def activate(buf, at, acc, n, S, relu):
    """buf[at:at+n] = t: tanh(S a) (NC89's A tanh(S a) without A) or max(a, 0), a = acc."""
    if relu:  # the branch outside the loops: each loop vectorises on its own
        zero = type(S)(0)
        for p in range(n):
            buf[at + p] = zero if acc[p] < zero else acc[p]  # NaN stays NaN (torch.relu)
    else:
        for p in range(n):
            buf[at + p] = vtanh(S * acc[p])


# --- forward ------------------------------------------------------------------------------

@njit(**PART)
def load_input(buf, image):
    """F.pad(x, 2, value=pad) (the border is set once, `set_padding`), then im2col."""
    for r in range(16):
        for c in range(16):
            buf[XPAD + (r + 2) * XS + c + 2] = image[r, c]
    for u in range(5):
        for v in range(5):
            for ph in range(4):  # p = 16 ph + 4a + b is unit (y, x) = (2a + ph // 2, 2b + ph % 2)
                for a in range(4):
                    for b in range(4):
                        buf[XCOL + (5 * u + v) * N1 + 16 * ph + 4 * a + b] = buf[
                            XPAD + (4 * a + 2 * (ph // 2) + u) * XS + 4 * b + 2 * (ph % 2) + v]


@njit(**PART)
def h1_forward(buf, o):
    """Mirrors Net1989.layers: h1 = act(F.conv2d(F.pad(x, 2, value=pad), h1_w, stride=2) + h1_b)."""
    for m in range(MAPS):
        a = T1 + m * N1  # the total input (summed in registers, 2 halves), then its tanh
        for h in range(0, N1, 32):
            acc = local_array(buf, 32)
            for p in range(32):
                acc[p] = buf[B1 + m * N1 + h + p] if o.unit_bias else buf[B1 + m]
            for u in range(5):  # loops of 5: LLVM vectorises p (SLP), not these
                for v in range(5):
                    w = buf[W1 + m * TAPS + 5 * u + v]
                    for p in range(32):
                        acc[p] += w * buf[XCOL + (5 * u + v) * N1 + h + p]
            activate(buf, a + h, acc, 32, o.S, o.relu)
        for ph in range(4):
            for i in range(4):
                for j in range(4):
                    y, x = 2 * i + ph // 2, 2 * j + ph % 2
                    buf[H1PAD + m * HS * HS + (y + 2) * HS + x + 2] = o.A * buf[a + 16 * ph
                                                                                + 4 * i + j]


@njit(**PART)
def h2_patches(buf):
    """F.pad(h1, 2, value=pad) cut into the H2 units' 5x5 patches (im2col), patch-major
    (HROW, for the weight gradient) and tap-major (HCOL, for the forward pass); each copy
    loops with its stores' contiguous axis innermost."""
    for c in range(MAPS):
        for i in range(S2):
            for j in range(S2):
                for u in range(5):
                    for v in range(5):
                        buf[HROW + (c * N2 + S2 * i + j) * TP + 5 * u + v] = buf[
                            H1PAD + c * HS * HS + (2 * i + u) * HS + 2 * j + v]
        for u in range(5):
            for v in range(5):
                for i in range(S2):
                    for j in range(S2):
                        buf[HCOL + (c * TAPS + 5 * u + v) * N2 + S2 * i + j] = buf[
                            H1PAD + c * HS * HS + (2 * i + u) * HS + 2 * j + v]


@njit(**PART)
def h2_forward(buf, table, o):
    """Mirrors Net1989.layers: h2 = act(F.conv2d(F.pad(h1, 2, value=pad)[:, table], h2_w,
    stride=2, groups=12) + h2_b): H2 map n sees the k H1 maps table[n].

    Four maps at a time: one map's 16 sums are 2-3 vector registers, and each addition waits
    for the one before (FMA latency); four maps' sums are independent (each map's in the
    same order as alone)."""
    for n0 in range(0, MAPS, 4):
        acc = local_array(buf, 64)  # 4 maps x N2 (a constant: the stack size)
        for g in range(4):
            for q in range(N2):
                acc[g * N2 + q] = (buf[B2 + (n0 + g) * N2 + q] if o.unit_bias
                                   else buf[B2 + n0 + g])
        for ci in range(table.shape[1]):
            c0 = HCOL + h1_map(table, n0, ci) * TAPS * N2  # the four maps' inputs
            c1 = HCOL + h1_map(table, n0 + 1, ci) * TAPS * N2
            c2 = HCOL + h1_map(table, n0 + 2, ci) * TAPS * N2
            c3 = HCOL + h1_map(table, n0 + 3, ci) * TAPS * N2
            w = W2 + (n0 * MAPS + ci) * TP  # map n0 + g's weights at w + g MAPS TP
            for u in range(5):  # loops of 5: LLVM vectorises q (SLP), not these
                for v in range(5):
                    t = 5 * u + v
                    for q in range(N2):
                        acc[q] += buf[w + t] * buf[c0 + t * N2 + q]
                        acc[N2 + q] += buf[w + MAPS * TP + t] * buf[c1 + t * N2 + q]
                        acc[2 * N2 + q] += buf[w + 2 * MAPS * TP + t] * buf[c2 + t * N2 + q]
                        acc[3 * N2 + q] += buf[w + 3 * MAPS * TP + t] * buf[c3 + t * N2 + q]
        activate(buf, T2 + n0 * N2, acc, 4 * N2, o.S, o.relu)
    for i in range(MAPS * N2):
        buf[H2 + i] = o.A * buf[T2 + i]


@njit(inline="always", **JIT)
def dense_forward(buf, w, b, x, n_out, n_in, t, h, o, squash):
    """Mirrors Net1989.layers: h = act(x @ w.T + b) (w at offset w, rows of n_in)."""
    for j0 in range(0, n_out, 2):  # 2 rows at once: independent sums (n_out is even)
        acc = local_array(buf, 2)
        for k in range(2):
            acc[k] = buf[b + j0 + k]
        for i in range(n_in):
            for k in range(2):
                acc[k] += buf[w + (j0 + k) * n_in + i] * buf[x + i]
        if squash:
            activate(buf, t + j0, acc, 2, o.S, o.relu)
        for k in range(2):
            buf[h + j0 + k] = o.A * buf[t + j0 + k] if squash else acc[k]


@njit(**PART)
def dropout(buf, at, n):
    """F.dropout's product with the pattern's keep-mask (KEEP, 0 or 1 / (1 - p))."""
    for i in range(n):
        buf[at + i] *= buf[KEEP + i]


@njit(**PART)
def forward(buf, image, table, o):
    """Mirrors Net1989.forward for one pattern (o.dropout: in training mode, with KEEP): the
    outputs land at Y. Evaluation passes options with dropout=False (fast.py)."""
    load_input(buf, image)
    h1_forward(buf, o)
    h2_patches(buf)
    h2_forward(buf, table, o)
    if o.dropout:  # Net1989.layers: dropout on H2's output, before H3
        dropout(buf, H2, MAPS * N2)
    dense_forward(buf, W3, B3, H2, HP, MAPS * N2, T3, H3, o, True)
    dense_forward(buf, W4, B4, H3, OUT, HP, T4, Y, o, o.squash_out)


# --- backward: gradients, and SDLM's Gauss-Newton second derivatives -----------------------
# `backward` computes autograd's gradients. With o.step_in_backward it takes each parameter's
# SGD (or SDLM) step as soon as the gradient is known and the layers below no longer read the
# parameter: optim.SGD.step's numbers; else it keeps the gradient at GRAD + (the parameter's
# offset), for `adamw_step` or SDLM's estimate (`put_grad`). With o.curvature the same
# functions back-propagate EB98's second derivatives instead (optim/sdlm.py): d2E/dy2 (2/10,
# or p (1 - p)) at the outputs, f'^2 for f', and, set up by `run`, squared weights
# and inputs (`square_inputs`): GRAD then holds the pattern's d2E/dw2.

@njit(**PART)
def output_backward(buf, label, o):
    """Mirrors reference.sample_loss: E = mean_k (y_k - t_k)^2 (or the sum: o.sum_out), t =
    +-target (NC89 §4), or
    E = -log softmax(y)_label (ce). Returns E; D4 = dE/da of the output units (o.curvature:
    d2E/da2, 2/10 f'^2 or p_k (1 - p_k) f'^2)."""
    curvature = o.curvature
    f = type(o.target)
    if o.ce:  # F.cross_entropy: log-sum-exp from the largest output
        top = buf[Y]
        for j in range(1, OUT):
            top = max(top, buf[Y + j])
        z = f(0)
        for j in range(OUT):
            buf[D4 + j] = np.exp(buf[Y + j] - top)
            z += buf[D4 + j]
        loss = top + np.log(z) - buf[Y + label]
        for j in range(OUT):
            p = buf[D4 + j] / z
            buf[D4 + j] = p * (f(1) - p) if curvature else p - (f(1) if j == label else f(0))
    else:
        loss, two_n = f(0), f(2) if o.sum_out else f(2 / OUT)
        for j in range(OUT):
            e = buf[Y + j] - (o.target if j == label else -o.target)
            loss += e * e
            buf[D4 + j] = two_n if curvature else two_n * e
        if not o.sum_out:
            loss /= f(OUT)
    if o.squash_out:
        act_backward(buf, D4, T4, OUT, o)
    return loss


@njit(inline="always", **JIT)
def put_grad(buf, at, g, o):
    """Parameter `at`'s gradient g: o.step_in_backward: its step now, p += STEP g,
    STEP = -lr / (mu + h) (optim.SGD.step: h = 0, mu = 1; sdlm.SDLM.step); else kept in GRAD."""
    if o.step_in_backward:
        buf[at] += buf[STEP + at] * g
    else:
        buf[GRAD + at] = g


@njit(inline="always", **JIT)
def dense_backward(buf, w, x, d, dx, n_out, n_in, o):
    """Autograd of x @ w.T + b: dx = w.T @ d, grad w = outer(d, x), grad b = d (`put_grad`);
    one sweep over w, each weight read for dx before its step."""
    for i in range(n_in):
        buf[dx + i] = 0
    for j in range(n_out):
        dj = buf[d + j]
        put_grad(buf, w + n_out * n_in + j, dj, o)  # b follows w in the layout
        if o.step_in_backward:  # put_grad's branch outside the loop: each loop vectorises
            for i in range(n_in):
                buf[dx + i] += buf[w + j * n_in + i] * dj
                buf[w + j * n_in + i] += buf[STEP + w + j * n_in + i] * (dj * buf[x + i])
        else:
            for i in range(n_in):
                buf[dx + i] += buf[w + j * n_in + i] * dj
                buf[GRAD + w + j * n_in + i] = dj * buf[x + i]


@njit(inline="always", **JIT)
def act_backward(buf, d, t, n, o):
    """Through h = A tanh(S a) (or ReLU): dE/da = dE/dh f'(a), in place, f'(a) = A S (1 -
    t^2) from t = tanh(S a), or ReLU's 1 where t > 0, else 0; o.curvature: times f'(a)^2."""
    one, zero, AS = type(o.A)(1), type(o.A)(0), o.A * o.S
    if o.relu:  # f'^2 = f'; the branches outside the loops (see `activate`)
        for i in range(n):
            buf[d + i] *= one if buf[t + i] > zero else zero
    elif o.curvature:
        for i in range(n):
            f1 = AS * (one - buf[t + i] * buf[t + i])
            buf[d + i] *= f1 * f1
    else:
        for i in range(n):
            buf[d + i] *= AS * (one - buf[t + i] * buf[t + i])


@njit(**PART)
def bias_grad(buf, b, d, n_units, o):
    """grad of a conv layer's biases from dE/da at d: per unit, or summed per map."""
    for m in range(MAPS):
        if o.unit_bias:
            for p in range(n_units):
                put_grad(buf, b + m * n_units + p, buf[d + m * n_units + p], o)
        else:
            s = buf[d + m * n_units]
            for p in range(1, n_units):
                s += buf[d + m * n_units + p]
            put_grad(buf, b + m, s, o)


@njit(**PART)
def h2_backward(buf, table, o):
    """Autograd of the grouped H2 convolution: grad h2_w and grad h2_b (per unit, or summed
    per map) from D2 and the patches HROW."""
    bias_grad(buf, B2, D2, N2, o)
    for n in range(MAPS):
        for ci in range(table.shape[1]):  # grad h2_w[n, ci, t] = sum_q d2[n, q] HROW[c, q, t]
            rows = HROW + h1_map(table, n, ci) * N2 * TP
            acc = local_array(buf, TP)
            for t in range(TP):
                acc[t] = 0
            for i in range(S2):  # loops of 4: LLVM vectorises t (SLP), not these
                for j in range(S2):
                    d = buf[D2 + n * N2 + S2 * i + j]
                    for t in range(TP):
                        acc[t] += d * buf[rows + (S2 * i + j) * TP + t]
            for t in range(TP):
                put_grad(buf, W2 + (n * MAPS + ci) * TP + t, acc[t], o)


@njit(**PART)
def h1_input_grad(buf, table, o):
    """Autograd of the H2 convolution w.r.t. its input, then through H1's tanh: DH1 = dE/da.

    H1 unit (y, x) = (2a + ry, 2b + rx) gets h2_w[n, ci, u, v] d2[n, i, j] from every H2 unit
    (i, j) whose patch has it at tap u = 2(a + 1 - i) + ry, v = 2(b + 1 - j) + rx: for each
    tap, a 4x4 window of d2 (zero outside) shifted by (u // 2, v // 2), added to phase (ry, rx)
    of the map table[n, ci]. Padding gets nothing: only H1's units are targets.
    """
    for n in range(MAPS):
        for i in range(S2):
            for j in range(S2):
                buf[D2PAD + n * 36 + (i + 1) * 6 + j + 1] = buf[D2 + n * N2 + S2 * i + j]
        for du in range(3):
            for dv in range(3):
                for a in range(4):
                    for b in range(4):
                        buf[D2WIN + (n * 9 + 3 * du + dv) * N2 + 4 * a + b] = buf[
                            D2PAD + n * 36 + (a + 2 - du) * 6 + b + 2 - dv]
    for i in range(MAPS * N1):
        buf[DH1 + i] = 0
    for n in range(MAPS):
        for ci in range(table.shape[1]):
            dst = DH1 + h1_map(table, n, ci) * N1
            acc = local_array(buf, 64)  # N1: map c's 4 phases, summed in registers
            for p in range(N1):
                acc[p] = buf[dst + p]
            for du in range(3):  # window (du, dv) feeds tap (2 du + ry, 2 dv + rx) to phase
                for dv in range(3):  # (ry, rx): 4 independent sums at a time
                    win = D2WIN + (n * 9 + 3 * du + dv) * N2
                    for ry in range(2):
                        for rx in range(2):
                            u, v = 2 * du + ry, 2 * dv + rx
                            if u < 5 and v < 5:
                                w = buf[W2 + (n * MAPS + ci) * TP + 5 * u + v]
                                for p in range(N2):
                                    acc[16 * (2 * ry + rx) + p] += w * buf[win + p]
            for p in range(N1):
                buf[dst + p] = acc[p]
    act_backward(buf, DH1, T1, MAPS * N1, o)


@njit(**PART)
def h1_backward(buf, o):
    """Autograd of the H1 convolution: grad h1_w[m, t] = sum_p DH1[m, p] XCOL[t, p]; h1_b."""
    for m in range(MAPS):
        for u in range(5):  # 5 taps at once: 5 independent sums over p (vectorised)
            acc = local_array(buf, 5)
            for v in range(5):
                acc[v] = 0
            for p in range(N1):
                d = buf[DH1 + m * N1 + p]
                for v in range(5):
                    acc[v] += d * buf[XCOL + (5 * u + v) * N1 + p]
            for v in range(5):
                put_grad(buf, W1 + m * TAPS + 5 * u + v, acc[v], o)
    bias_grad(buf, B1, DH1, N1, o)


@njit(**PART)
def backward(buf, label, table, o):
    """Mirrors torch.autograd.grad(loss, params) for one pattern, each gradient through
    `put_grad` (o.step_in_backward: the step right away; else into GRAD); returns the loss.
    o.curvature: the pattern's d2E/dw2 (sdlm.gauss_newton_diagonal) instead, set up by `run`."""
    loss = output_backward(buf, label, o)
    dense_backward(buf, W4, H3, D4, D3, OUT, HP, o)
    act_backward(buf, D3, T3, HP, o)
    dense_backward(buf, W3, H2, D3, D2, HP, MAPS * N2, o)
    if o.dropout:
        dropout(buf, D2, MAPS * N2)  # d(h2 * keep)/dh2 = keep
    act_backward(buf, D2, T2, MAPS * N2, o)
    h1_input_grad(buf, table, o)  # reads h2_w: before its step
    h2_backward(buf, table, o)
    h1_backward(buf, o)
    return loss


@njit(**PART)
def square_inputs(buf):
    """x -> x^2 for every input a weight multiplies (padding included: EB98 via sdlm.py)."""
    for i in range(TAPS * N1):
        buf[XCOL + i] *= buf[XCOL + i]
    for i in range(MAPS * N2 * TP):
        buf[HROW + i] *= buf[HROW + i]
    for i in range(MAPS * N2):
        buf[H2 + i] *= buf[H2 + i]
    for i in range(HP):
        buf[H3 + i] *= buf[H3 + i]


@njit(**PART)
def adamw_step(buf, lr, weight_decay):
    """Mirrors torch.optim.AdamW.step (single-tensor, betas 0.9, 0.999, eps 1e-8) from GRAD:
    the scalars in float64 as Python computes them, then in the engine's dtype."""
    f = type(buf[0])
    buf[ADAM_STEP] += 1
    step = np.float64(buf[ADAM_STEP])
    decay, w1, b2, w2 = f(1 - lr * weight_decay), f(1 - 0.9), f(0.999), f(1 - 0.999)
    step_size, eps = f(-(lr / (1 - 0.9 ** step))), f(1e-8)
    bc2_sqrt = f((1 - 0.999 ** step) ** 0.5)
    for i in range(NPARAM):
        g, m = buf[GRAD + i], buf[EXP_AVG + i]
        m = m + w1 * (g - m)  # exp_avg.lerp_(grad, 1 - beta1)
        v = buf[EXP_AVG_SQ + i] * b2 + w2 * g * g
        buf[EXP_AVG + i], buf[EXP_AVG_SQ + i] = m, v
        buf[i] = buf[i] * decay + step_size * (m / (np.sqrt(v) / bc2_sqrt + eps))


# --- the entry point: training, SDLM's estimate, prediction -----------------------------

TRAIN, ESTIMATE, PREDICT = 0, 1, 2  # what `run` does with each pattern


@njit(**PART)
def set_padding(buf, pad):
    """The constant padding around the input and around H1's output (NC89 §3: -1)."""
    for i in range(XS * XS):
        buf[XPAD + i] = pad
    for i in range(MAPS * HS * HS):
        buf[H1PAD + i] = pad
    for i in range(MAPS * N2 * TP):
        buf[HROW + i] = 0  # the 7 padding taps of each patch stay 0
    for i in range(MAPS * 36):
        buf[D2PAD + i] = 0


@njit(**PART)
def estimate_setup(buf, begin):
    """SDLM's estimate: the squared weights in the weights' place for `backward` (begin), or
    the weights back (fast.py keeps them at WSAVE)."""
    for i in range(NPARAM):
        buf[i] = buf[WSAVE + i] * buf[WSAVE + i] if begin else buf[WSAVE + i]


@njit(**JIT)
def run(buf, table, images, labels, keep, start, stop, job, lr, weight_decay, o, out):
    """The one compiled entry point (one `forward` and one `backward` to compile): for each
    pattern s of images[start:stop], in order, `forward`, then by job

    TRAIN:    `backward` (with o.step_in_backward: and the step) or `backward` then `adamw_step`;
              out[s - start, 0] = the pattern's loss; keep[s]: its dropout mask (o.dropout);
    ESTIMATE: SDLM's begin_pass (o.curvature): HESS += the pattern's d2E/dw2, back-propagated
              with squared weights and inputs (EB98 via sdlm.gauss_newton_diagonal);
              fast.py zeroes HESS and copies the weights to WSAVE before, and averages after;
    PREDICT:  out[s - start] = the outputs (o.dropout False).
    """
    set_padding(buf, o.pad)
    if job == TRAIN:
        for i in range(NPARAM):  # STEP = -lr / (mu + h), from INV = 1 / (mu + h) (sgd: 1)
            buf[STEP + i] = -type(o.A)(lr) * buf[INV + i]
    for s in range(start, stop):
        if o.dropout:
            for i in range(MAPS * N2):
                buf[KEEP + i] = keep[s, i]
        forward(buf, images[s, 0], table, o)
        if job == PREDICT:
            for j in range(OUT):
                out[s - start, j] = buf[Y + j]
            continue
        if job == ESTIMATE:
            square_inputs(buf)
            estimate_setup(buf, True)
        loss = backward(buf, labels[s], table, o)
        if job == ESTIMATE:
            estimate_setup(buf, False)
            for i in range(NPARAM):
                buf[HESS + i] += buf[GRAD + i]
        else:
            out[s - start, 0] = loss
            if o.adamw:  # (sgd, sdlm: `backward` took the step)
                adamw_step(buf, lr, weight_decay)
