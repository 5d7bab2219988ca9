"""numpy references for the programs in tests/programs/*.tc.

REFS maps "file.tc:entry" to a function called with the entry's inputs as
keyword arguments (numpy arrays; bfloat16 inputs arrive as float32 arrays
holding bfloat16 values; scalars as 0-d arrays) and returning the outputs in
the order of the def (a tuple, or one array).  Each returned array has the
dtype tensorc must produce; a bfloat16 output is returned as Bf16(values).

The references follow docs/language.md, not what tensorc happens to do:
floats are computed in float64 and cast at the end (or, where the result
depends on float32 rounding, e.g. before a cast to an integer or a 16-bit
float, in float32 as the language specifies), integers in exact Python
arithmetic and wrapped to their width, with division and remainder rounding
toward negative infinity and giving 0 for a zero divisor.
"""
import math

import numpy as np

REFS = {}

f32, f64, f16 = np.float32, np.float64, np.float16


def ref(key):
    def deco(fn):
        assert key not in REFS, key
        REFS[key] = fn
        return fn
    return deco


# ---- helpers ----

def d(x):
    """float64 copy of x."""
    return np.asarray(x, dtype=np.float64)


def F(x):
    """Cast to float32 (the default output type)."""
    return np.asarray(x).astype(np.float32)


def bf16_round(x):
    """float32 values rounded to bfloat16 (nearest even), as float32."""
    x = np.asarray(x, dtype=np.float32)
    u = np.ascontiguousarray(x).reshape(-1).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).reshape(x.shape)


class Bf16:
    """A bfloat16 output (the CLI writes it as a float32 file)."""

    def __init__(self, values):
        self.a = bf16_round(values)


def py(x):
    """Exact Python integers."""
    return np.asarray(x).astype(object)


def wrap(x, dtype):
    """Integers (any size) to `dtype`, two's complement wrap-around."""
    dt = np.dtype(dtype)
    a = np.asarray(x, dtype=object)
    bits = dt.itemsize * 8

    def w(v):
        v = int(v) % (1 << bits)
        if dt.kind == "i" and v >= 1 << (bits - 1):
            v -= 1 << bits
        return v
    return np.array([w(v) for v in a.reshape(-1)], dtype=dt).reshape(a.shape)


def _ew(fn, *xs):
    return np.frompyfunc(fn, len(xs), 1)(*[py(x) for x in xs])


def tc_div(a, b, dtype):
    """Integer a / b of tensorc: floor, 0 for b == 0, wrapped to dtype."""
    return wrap(_ew(lambda p, q: 0 if q == 0 else p // q, a, b), dtype)


def tc_mod(a, b, dtype):
    return wrap(_ew(lambda p, q: 0 if q == 0 else p % q, a, b), dtype)


def sat_cast(x, dtype):
    """Float to integer: truncate toward zero, saturate, NaN gives 0."""
    info = np.iinfo(dtype)

    def c(v):
        v = float(v)
        if math.isnan(v):
            return 0
        if math.isinf(v):
            return info.max if v > 0 else info.min
        return min(max(math.trunc(v), info.min), info.max)
    return np.array([c(v) for v in np.asarray(x).reshape(-1)],
                    dtype=dtype).reshape(np.shape(x))


def vec(fn):
    return np.vectorize(fn, otypes=[np.float64])


erf, erfc = vec(math.erf), vec(math.erfc)
lgamma, tgamma = vec(math.lgamma), vec(math.gamma)


def round_half_away(x):
    x = d(x)
    return np.where(x >= 0, np.floor(x + 0.5), -np.floor(-x + 0.5))


def reduce_or(op, x, axis, identity):
    """op over axis; `identity` when the axis is empty."""
    x = np.asarray(x)
    if x.shape[axis] == 0:
        shape = x.shape[:axis] + x.shape[axis + 1:]
        return np.full(shape, identity, dtype=x.dtype)
    return op(x, axis=axis)


def conv2d(I, W, stride=(1, 1), dil=(1, 1)):
    """O[n,m,h,w] = sum_{c,kh,kw} I[n,c,sh*h+dh*kh, sw*w+dw*kw] * W[m,c,kh,kw]."""
    I, W = d(I), d(W)
    N, C, H, Wd = I.shape
    M, _, KH, KW = W.shape
    (sh, sw), (dh, dw) = stride, dil
    Ho = (H - dh * (KH - 1) - 1) // sh + 1
    Wo = (Wd - dw * (KW - 1) - 1) // sw + 1
    O = np.zeros((N, M, Ho, Wo))
    for kh in range(KH):
        for kw in range(KW):
            patch = I[:, :, dh * kh:dh * kh + sh * (Ho - 1) + 1:sh,
                      dw * kw:dw * kw + sw * (Wo - 1) + 1:sw]
            O += np.einsum("nchw,mc->nmhw", patch, W[:, :, kh, kw])
    return O


def conv1d(X, W):
    """Y[n,f,t] = sum_{c,k} X[n,c,t+k] * W[f,c,k]."""
    X, W = d(X), d(W)
    T, K = X.shape[2], W.shape[2]
    To = max(T - K + 1, 0)
    Y = np.zeros((X.shape[0], W.shape[0], To))
    for k in range(K):
        Y += np.einsum("nct,fc->nft", X[:, :, k:k + To], W[:, :, k])
    return Y


def pool(I, k, s, op):
    I = d(I)
    H, W = I.shape[2:]
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    taps = [I[:, :, kh:kh + s * (Ho - 1) + 1:s, kw:kw + s * (Wo - 1) + 1:s]
            for kh in range(k) for kw in range(k)]
    return op(np.stack(taps), axis=0)


def softmax_last(x):
    x = d(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logsumexp_last(x):
    x = d(x)
    m = x.max(axis=-1)
    return m + np.log(np.exp(x - m[..., None]).sum(axis=-1))


# ---- products ----

@ref("matmul.tc:matmul")
def _(A, B):
    return F(d(A) @ d(B))


@ref("matmul.tc:matmul_f64")
def _(A, B):
    return A @ B


@ref("matmul.tc:matmul_i32")
def _(A, B):
    return wrap(py(A).dot(py(B)), np.int32)


@ref("transposed.tc:tmm")
def _(A, B):
    return F(d(A) @ d(B).T)


@ref("transposed.tc:atb")
def _(A, B):
    return F(d(A).T @ d(B))


@ref("transposed.tc:atbt")
def _(A, B):
    return F(d(A).T @ d(B).T)


@ref("batch_matmul.tc:tbmm")
def _(X, Y):
    return F(np.einsum("bnm,bkm->bnk", d(X), d(Y)))


@ref("batch_matmul.tc:bmm")
def _(X, Y):
    return F(d(X) @ d(Y))


@ref("batch_matmul.tc:bmm_shared")
def _(X, W):
    return F(d(X) @ d(W))


@ref("matvec.tc:mv")
def _(A, x):
    return F(d(A) @ d(x))


@ref("matvec.tc:vm")
def _(x, A):
    return F(d(x) @ d(A))


@ref("matvec.tc:gemv")
def _(A, x, y, alpha, beta):
    return F(d(alpha) * (d(A) @ d(x)) + d(beta) * d(y))


@ref("outer.tc:outer")
def _(a, b):
    return F(np.outer(d(a), d(b)))


@ref("outer.tc:outer3")
def _(a, b, c):
    return F(np.einsum("i,j,k->ijk", d(a), d(b), d(c)))


@ref("outer.tc:outer_sum_i64")
def _(a, b):
    return a[:, None] + b.astype(np.int64)[None, :]


@ref("tensordot.tc:tensordot")
def _(I0, I1):
    return F(np.einsum("nabhw,nbchw->nachw", d(I0), d(I1)))


@ref("tensordot.tc:KRU3_1")
def _(W2, X):
    return F(np.einsum("mijn,dn->mijd", d(X), d(W2)))


@ref("tensordot.tc:trace")
def _(A):
    return F(np.trace(d(A)))


@ref("tensordot.tc:diag")
def _(A):
    return F(np.diagonal(A).copy())


@ref("tensordot.tc:bilinear")
def _(X, Wb, Y):
    return F(np.einsum("ni,oij,nj->no", d(X), d(Wb), d(Y)))


# ---- convolutions ----

@ref("conv2d.tc:convolution")
def _(I, W1):
    return F(conv2d(I, W1))


@ref("conv2d.tc:conv_bias_relu")
def _(I, W1, B):
    return F(np.maximum(conv2d(I, W1) + d(B)[None, :, None, None], 0))


@ref("conv2d_stride.tc:conv_s2")
def _(I, W1):
    return F(conv2d(I, W1, stride=(2, 2)))


@ref("conv2d_stride.tc:conv_s2x3")
def _(I, W1):
    return F(conv2d(I, W1, stride=(2, 3)))


@ref("conv2d_dilation.tc:conv_dil2")
def _(I, W1):
    return F(conv2d(I, W1, dil=(2, 2)))


@ref("conv2d_dilation.tc:conv_dil_stride")
def _(I, W1):
    return F(conv2d(I, W1, stride=(2, 1), dil=(2, 3)))


@ref("conv2d_groups.tc:group_convolution")
def _(I, W1, B):
    G = I.shape[1]
    outs = [conv2d(I[:, g], W1[g]) for g in range(G)]
    return F(np.stack(outs, axis=1) + d(B)[None, :, :, None, None])


@ref("conv2d_groups.tc:group_conv_flat")
def _(I, W1):
    CI, CO, CG = I.shape[1], W1.shape[0], W1.shape[1]
    G = CI // CG
    FPG = CO // G
    outs = [conv2d(I[:, g * CG:(g + 1) * CG], W1[g * FPG:(g + 1) * FPG]) for g in range(G)]
    return F(np.concatenate(outs, axis=1))


@ref("conv2d_groups.tc:depthwise")
def _(I, W1):
    outs = [conv2d(I[:, c:c + 1], W1[c][None, None]) for c in range(I.shape[1])]
    return F(np.concatenate(outs, axis=1))


@ref("conv1d.tc:conv1d")
def _(X, W1):
    return F(conv1d(X, W1))


@ref("conv1d.tc:correlate")
def _(x, w):
    return F(conv1d(x[None, None], w[None, None])[0, 0])


@ref("conv_same.tc:conv_same")
def _(I, Wt):
    return F(conv2d(np.pad(d(I), ((0, 0), (0, 0), (1, 1), (1, 1))), Wt))


@ref("conv_same.tc:conv_same_s2")
def _(I, Wt):
    return F(conv2d(np.pad(d(I), ((0, 0), (0, 0), (1, 1), (1, 1))), Wt, stride=(2, 2)))


@ref("conv_same.tc:causal_conv1d")
def _(X, W1):
    K = W1.shape[2]
    return F(conv1d(np.pad(d(X), ((0, 0), (0, 0), (K - 1, 0))), W1))


# ---- boundary conditions ----

@ref("blur_clamp.tc:blur3x3")
def _(I):
    P = np.pad(d(I), 1, mode="edge")
    H, W = I.shape
    return F(sum(P[dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)) / 9.0)


@ref("blur_clamp.tc:blur_reduce")
def _(I):
    P = np.pad(d(I), ((0, 0), (1, 1), (1, 1)), mode="edge")
    H, W = I.shape[1:]
    return F(sum(P[:, dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)) / 9.0)


@ref("blur_clamp.tc:pad_edge")
def _(I):
    return np.pad(I, ((2, 3), (1, 1)), mode="edge")


@ref("mirror.tc:pad_mirror")
def _(I):
    return np.pad(I, ((2, 2), (3, 3)), mode="symmetric")


@ref("mirror.tc:smooth_mirror")
def _(X):
    P = np.pad(d(X), 1, mode="symmetric")
    return F(0.25 * P[:-2] + 0.5 * P[1:-1] + 0.25 * P[2:])


@ref("wrap.tc:pad_wrap")
def _(I):
    return np.pad(I, ((3, 0), (1, 4)), mode="wrap")


@ref("wrap.tc:circular_conv")
def _(x, w):
    N, K = len(x), len(w)
    idx = (np.arange(N)[:, None] + np.arange(K)[None, :] - 1) % N
    return F((d(x)[idx] * d(w)[None, :]).sum(axis=1))


@ref("wrap.tc:tile3")
def _(A):
    return np.tile(A, 3)


@ref("constant_pad.tc:pad_const")
def _(I):
    return np.pad(I, ((1, 1), (2, 2)), mode="constant", constant_values=-1)


@ref("constant_pad.tc:pad_cols")
def _(I):
    return np.pad(I, ((0, 0), (1, 0)), mode="constant", constant_values=2.5)


@ref("constant_pad.tc:pad_int")
def _(A):
    return wrap(py(np.pad(A, 2, mode="constant", constant_values=7)) * 2, np.int32)


# ---- pooling ----

@ref("pooling.tc:maxpool2x2")
def _(I):
    return F(pool(I, 2, 2, np.max))


@ref("pooling.tc:avgpool")
def _(input):
    return F(pool(input, 2, 2, np.sum) / 4)


@ref("pooling.tc:avgpool3x3s2")
def _(I):
    return F(pool(I, 3, 2, np.sum) / 9)


@ref("pooling.tc:global_avgpool")
def _(I):
    return F(d(I).mean(axis=(2, 3)))


@ref("pooling.tc:maxpool3x3_same")
def _(I):
    return F(pool(np.pad(I, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge"), 3, 1, np.max))


# ---- normalisations ----

@ref("softmax.tc:softmax_tc")
def _(I):
    x = d(I)
    mx = x.max(axis=1)
    e = np.exp(x - mx[:, None])
    s = e.sum(axis=1)
    return F(e / s[:, None]), F(mx), F(e), F(s)


@ref("softmax.tc:softmax")
def _(X):
    return F(softmax_last(X))


@ref("softmax.tc:softmax3d")
def _(X):
    return F(softmax_last(X))


@ref("log_softmax.tc:log_softmax")
def _(X):
    lse = logsumexp_last(X)
    return F(d(X) - lse[:, None]), F(lse)


@ref("log_softmax.tc:log_softmax_f64")
def _(X):
    return X - logsumexp_last(X)[:, None]


def _layernorm(X, gamma, beta, eps):
    x = d(X)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return F((x - mean) / np.sqrt(var + eps) * d(gamma) + d(beta))


@ref("layernorm.tc:layernorm")
def _(X, gamma, beta):
    return _layernorm(X, gamma, beta, 1e-5)


@ref("layernorm.tc:layernorm3d")
def _(X, gamma, beta):
    return _layernorm(X, gamma, beta, 1e-5)


@ref("moments.tc:moments")
def _(X):
    return F(d(X).mean(axis=1)), F(d(X).var(axis=1))


@ref("moments.tc:moments_axis0")
def _(X):
    return F(d(X).mean(axis=0)), F(d(X).var(axis=0))


@ref("batchnorm.tc:batchnorm_inference")
def _(X, mean, var, gamma, beta):
    c = (slice(None), None, None)
    return F((d(X) - d(mean)[c]) / np.sqrt(d(var)[c] + 1e-5) * d(gamma)[c] + d(beta)[c])


@ref("batchnorm.tc:batchnorm_train")
def _(X, gamma, beta):
    x = d(X)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    c = (slice(None), None, None)
    y = (x - mean[c]) / np.sqrt(var[c] + 1e-5) * d(gamma)[c] + d(beta)[c]
    return F(y), F(mean), F(var)


@ref("attention.tc:attention")
def _(Q, K, V):
    sc = np.einsum("btd,bsd->bts", d(Q), d(K)) / math.sqrt(Q.shape[2])
    return F(softmax_last(sc) @ d(V))


@ref("attention.tc:causal_attention")
def _(X):
    x = d(X)
    T = x.shape[0]
    sc = np.where(np.tril(np.ones((T, T), bool)), x @ x.T, -1e30)
    return F(softmax_last(sc) @ x)


@ref("mlp.tc:fcrelu")
def _(I, W1, B1):
    return F(np.maximum(d(I) @ d(W1).T + d(B1), 0))


@ref("mlp.tc:mlp3")
def _(I, W2, B2, W3, B3, W4, B4):
    o2 = np.maximum(d(I) @ d(W2).T + d(B2), 0)
    o3 = np.maximum(o2 @ d(W3).T + d(B3), 0)
    o4 = np.maximum(o3 @ d(W4).T + d(B4), 0)
    return F(o2), F(o3), F(o4)


# ---- gathers, one-hot, masks ----

@ref("gather.tc:embedding")
def _(E, Idx):
    return E[Idx]


@ref("gather.tc:embedding64")
def _(E, Idx):
    return E[Idx]


@ref("gather.tc:embedding_negative")
def _(E, Idx):
    raise AssertionError("every case of embedding_negative must fail")


@ref("gather.tc:gather_rows")
def _(X, Idx):
    return X[Idx.astype(np.int64)]


@ref("gather.tc:take_along")
def _(X, Idx):
    return np.take_along_axis(X, Idx.astype(np.int64), axis=1)


@ref("gather.tc:gather_offset")
def _(T, Idx):
    i = Idx.astype(np.int64)
    return T[i + 1] - T[i]


@ref("lut.tc:lut2")
def _(LUT1, I1, LUT2, I2):
    return F(d(LUT1)[I1].sum(axis=1)), F(d(LUT2)[I2].sum(axis=1))


@ref("lut.tc:weighted_bag")
def _(E, Idx, Wt):
    return F((d(E)[Idx] * d(Wt)[:, :, None]).sum(axis=1) / Idx.shape[1])


@ref("onehot.tc:onehot10")
def _(L):
    return (L[:, None] == np.arange(10)[None, :]).astype(np.float32)


@ref("onehot.tc:onehot_weighted")
def _(L, Wc):
    return F((L[:, None] == np.arange(len(Wc))[None, :]) * d(Wc)[None, :])


@ref("onehot.tc:nll_loss")
def _(logits, L):
    x = d(logits)
    picked = x[np.arange(len(L)), L]
    return F(np.mean(logsumexp_last(x) - picked))


@ref("masks.tc:masked_fill")
def _(X, Mask):
    return np.where(Mask, X, f32(-1e9))


@ref("masks.tc:logic")
def _(A, B, X):
    xor = (A & ~B) | (~A & B)
    nor = ~(A | B) | (X > 0.5)
    mix = (A | (X <= -0.25)) & ~(B & (X >= 0.0))
    return xor, nor, mix


@ref("masks.tc:bool_cmp")
def _(A, B):
    return A != B, A == B


@ref("masks.tc:count_true")
def _(Mask):
    cnt = Mask.sum(axis=1).astype(np.int32)
    return cnt, F(cnt / Mask.shape[1])


@ref("masks.tc:where_select")
def _(X, Y):
    msk = X > Y
    band = ((X >= -0.5) & (X < 0.5)).astype(np.int32)
    return F(np.where(msk, d(X) - d(Y), 0.0)), msk, band


@ref("masks.tc:causal_softmax")
def _(X):
    n = X.shape[0]
    return F(softmax_last(np.where(np.tril(np.ones((n, n), bool)), d(X), -1e30)))


@ref("triangular.tc:tril")
def _(A):
    return np.tril(A)


@ref("triangular.tc:triu_int")
def _(A):
    return np.triu(A)


@ref("triangular.tc:cumsum")
def _(A):
    return F(np.cumsum(d(A)))


@ref("triangular.tc:shift_guarded")
def _(A):
    return np.concatenate([np.zeros(1, np.float32), A[:-1]])


@ref("triangular.tc:diff_guarded")
def _(A):
    return np.concatenate([A[1:] - A[:-1], np.zeros(1, np.float32)])


# ---- pointwise ----

@ref("activations.tc:relu")
def _(X):
    return np.maximum(X, f32(0))


@ref("activations.tc:gelu")
def _(X):
    x = d(X)
    return F(0.5 * x * (1 + erf(x / math.sqrt(2))))


@ref("activations.tc:gelu_tanh")
def _(X):
    x = d(X)
    return F(0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))))


@ref("activations.tc:sigmoid")
def _(X):
    return F(1 / (1 + np.exp(-d(X))))


@ref("activations.tc:chain")
def _(X, B):
    h = np.maximum(d(X) + d(B), 0)
    t = np.tanh(h * 2 - 1)
    return F(d(X) / (1 + np.exp(-t)))


@ref("activations.tc:leaky_elu")
def _(X, slope):
    x = d(X)
    return F(np.where(x > 0, x, d(slope) * x)), F(np.where(x > 0, x, np.expm1(x)))


@ref("activations.tc:softplus_silu")
def _(X):
    x = d(X)
    return F(np.log1p(np.exp(x))), F(x / (1 + np.exp(-x)))


@ref("math_exp_log.tc:exps")
def _(X):
    x = d(X)
    return F(np.exp(x)), F(np.exp2(x)), F(np.expm1(x))


@ref("math_exp_log.tc:logs")
def _(P):
    p = d(P)
    return F(np.log(p)), F(np.log2(p)), F(np.log10(p)), F(np.log1p(p))


@ref("math_exp_log.tc:roots")
def _(P, X):
    p = d(P)
    return F(np.sqrt(p)), F(1 / np.sqrt(p)), F(np.cbrt(p)), F(np.cbrt(d(X)))


@ref("math_trig.tc:trig")
def _(X):
    x = d(X)
    return F(np.sin(x)), F(np.cos(x)), F(np.tan(x))


@ref("math_trig.tc:inverse_trig")
def _(U, X, Y):
    u = d(U)
    return F(np.arcsin(u)), F(np.arccos(u)), F(np.arctan(d(X))), F(np.arctan2(d(Y), d(X)))


@ref("math_trig.tc:hyperbolic")
def _(X, P, U):
    x = d(X)
    return (F(np.sinh(x)), F(np.cosh(x)), F(np.tanh(x)), F(np.arcsinh(x)),
            F(np.arccosh(d(P))), F(np.arctanh(d(U))))


@ref("math_special.tc:special")
def _(X, P):
    return F(erf(d(X))), F(erfc(d(X))), F(lgamma(d(P))), F(tgamma(d(P)))


@ref("math_special.tc:binary")
def _(X, Y, P):
    x, y, p = d(X), d(Y), d(P)
    return (F(np.power(p, x)), F(np.hypot(x, y)), F(np.copysign(p, y)),
            F(np.fmax(x, y)), F(np.fmin(x, y)), F(np.fmod(x, p)),
            F(np.maximum(x - y, 0)), F(np.abs(x)))


@ref("math_special.tc:fma3")
def _(X, Y, Z):
    return F(d(X) * d(Y) + d(Z))


@ref("math_rounding.tc:rounding")
def _(X):
    x = d(X)
    return F(np.floor(x)), F(np.ceil(x)), F(round_half_away(x)), F(np.trunc(x)), F(np.rint(x))


@ref("math_rounding.tc:ties")
def _(K):
    k = d(K)
    return (F(round_half_away(k + 0.5)), F(np.rint(k + 0.5)), F(np.floor(k - 0.5)),
            F(np.ceil(k - 0.5)), F(np.trunc(k - 0.5)))


@ref("math_f64.tc:f64_math")
def _(X, P):
    a = np.exp(X) + np.log(P) + np.expm1(X) - np.log1p(P)
    b = np.sin(X) * np.cos(X) + np.arctan2(X, P) + np.arcsinh(X)
    c = np.power(P, X) + np.sqrt(P) + erf(X) + erfc(X * 0.5)
    e = lgamma(P) + np.tanh(X) + np.cbrt(X) + np.hypot(X, P) + tgamma(P)
    return a, b, c, e


@ref("math_f64.tc:mixed_args")
def _(D, F, K):
    # (the parameter F shadows the helper F here)
    return (np.power(D, F.astype(np.float64)),
            np.sqrt((K.astype(np.int64) ** 2).astype(np.float64)).astype(np.float32),
            np.fmax(K.astype(np.float32), F).astype(np.float32),
            np.exp(K.astype(np.float64)).astype(np.float32))


@ref("nan_minmax.tc:nan_prop")
def _(X, Y):
    with np.errstate(invalid="ignore", divide="ignore"):
        lg = np.log(d(X))
    y = d(Y)
    return F(np.maximum(lg, y)), F(np.minimum(y, lg)), F(np.fmax(lg, y)), F(np.fmin(y, lg))


@ref("nan_minmax.tc:nan_reduce")
def _(X):
    with np.errstate(invalid="ignore"):
        s = np.sqrt(d(X))
    return F(s.max(axis=1)), F(s.min(axis=1))


# ---- split_reduce.tc: reductions in chains, divisions by a reciprocal ----

@ref("split_reduce.tc:rows")
def _(X):
    x = d(X)
    return (F(x.sum(axis=1)), F(reduce_or(np.max, x, 1, -np.inf)),
            F(reduce_or(np.min, x, 1, np.inf)), F(np.prod(x, axis=1)),
            F((x * x - x).sum(axis=1)))


@ref("split_reduce.tc:nan_rows")
def _(X):
    with np.errstate(invalid="ignore"):
        s = np.sqrt(d(X))
    return F(s.max(axis=1)), F(s.min(axis=1)), F(s.sum(axis=1))


@ref("split_reduce.tc:per_row_divisor")
def _(X, V):
    # float32 arithmetic, as the program's: denormal and huge divisors round there
    x, v = X.astype(f32), V.astype(f32)[:, None]
    tiny, huge = f32(1e-39), f32(3e38)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        return (x / v, x / (v * tiny), (x * tiny) / (v * tiny), x / (v * huge),
                F(d(X).sum(axis=1) / X.shape[1]))


@ref("split_reduce.tc:zero_divisor")
def _(X, V):
    x, v = X.astype(f32), V.astype(f32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / (v - v)


@ref("split_reduce.tc:per_row_divisor64")
def _(X, V):
    return d(X) / d(V)[:, None]


# ---- integers and types ----

@ref("intdiv.tc:divmod_i32")
def _(A, B):
    return tc_div(A, B, np.int32), tc_mod(A, B, np.int32)


@ref("intdiv.tc:divmod_lit")
def _(A):
    return (tc_div(A, 3, np.int32), tc_mod(A, 3, np.int32),
            tc_div(A, -4, np.int32), tc_mod(A, -4, np.int32),
            np.full(A.shape, -39, np.int32))


@ref("intdiv.tc:divmod_i64")
def _(A, B):
    return tc_div(A, B, np.int64), tc_mod(A, B, np.int64)


@ref("intdiv.tc:int_min_div")
def _(A, B):
    return tc_div(A, B, np.int32), tc_mod(A, B, np.int32)


@ref("intdiv.tc:divmod_i8")
def _(A, B):
    return tc_div(A, B, np.int8), tc_mod(A, B, np.int8)


@ref("intdiv.tc:divmod_u32")
def _(A, B):
    return tc_div(A, B, np.uint32), tc_mod(A, B, np.uint32)


@ref("intwrap.tc:wrap_i8")
def _(A, B):
    a, b = py(A), py(B)
    s = wrap(a + b, np.int8)
    return (s, wrap(a - b, np.int8), wrap(a * b, np.int8), wrap(-a, np.int8),
            tc_div(s, 2, np.int32))


@ref("intwrap.tc:wrap_u8")
def _(A, B):
    a, b = py(A), py(B)
    dd = wrap(a - b, np.uint8)
    return (wrap(a + b, np.uint8), dd, wrap(a * b, np.uint8), tc_div(dd, 2, np.int32),
            A > B)


@ref("intwrap.tc:wrap_i32")
def _(A, B):
    a, b = py(A), py(B)
    return wrap(a + b, np.int32), wrap(a - b, np.int32), wrap(a * b, np.int32)


@ref("intwrap.tc:wrap_i64")
def _(A, B):
    a, b = py(A), py(B)
    return wrap(a + b, np.int64), wrap(a - b, np.int64), wrap(a * b, np.int64)


@ref("promotion.tc:mixed_u8_i8")
def _(U, S):
    u = wrap(U, np.int8)
    return (wrap(py(u) + py(S), np.int8), tc_div(u, S, np.int8), u < S)


@ref("promotion.tc:mixed_u32_i64")
def _(U, S):
    return wrap(py(U) + py(S), np.int64), wrap(py(U) * py(S), np.int64)


@ref("promotion.tc:mixed_i16_u32")
def _(A, B):
    b = wrap(B, np.int32)
    return wrap(py(A) + py(b), np.int32), tc_div(b, A, np.int32)


@ref("promotion.tc:mixed_u64_i32")
def _(U, S):
    u = wrap(U, np.int64)
    return wrap(py(u) + py(S), np.int64), tc_div(u, S, np.int64)


@ref("promotion.tc:mixed_unsigned")
def _(A, B):
    return wrap(py(A) + py(B), np.uint16), wrap(py(B) - py(A), np.uint16)


@ref("promotion.tc:mixed_float")
def _(K, H, Bf, D, F):
    # (the parameter F shadows the helper F here)
    k32 = K.astype(np.float32)
    a = (k32 + H.astype(np.float32)).astype(np.float16)
    b = H.astype(np.float32) + Bf
    c = F.astype(np.float64) * D
    e = tc_div(K, 2, np.int32).astype(np.float32) + F
    return a, b, c, e


@ref("casts.tc:f2i")
def _(X):
    return sat_cast(X, np.int8), sat_cast(X, np.uint8), sat_cast(X, np.int16), sat_cast(X, np.int32)


@ref("casts.tc:f2i_big")
def _(X):
    return sat_cast(X, np.int32), sat_cast(X, np.uint32), sat_cast(X, np.int64), sat_cast(X, np.uint16)


@ref("casts.tc:nan_to_int")
def _(X):
    with np.errstate(invalid="ignore", divide="ignore"):
        return sat_cast(np.log(X), np.int32)


@ref("casts.tc:to_bool")
def _(K, X):
    return K != 0, np.floor(X) != 0


@ref("casts.tc:to_half")
def _(X):
    return (X / f32(8)).astype(np.float16), Bf16(X)


@ref("casts.tc:int_narrow")
def _(K):
    return wrap(K, np.int8), wrap(K, np.uint8), wrap(K, np.uint16)


@ref("casts.tc:u8_saturate")
def _(A):
    return sat_cast(A.astype(np.float32) * f32(1.5), np.uint8)


@ref("dtypes.tc:i16")
def _(A, B):
    a, b = py(A), py(B)
    return wrap(a + b, np.int16), wrap(a * b, np.int16), wrap(a.sum(axis=1), np.int16)


@ref("dtypes.tc:u16")
def _(A, B):
    return wrap(py(A) - py(B), np.uint16), tc_div(A, B, np.uint16), tc_mod(A, B, np.uint16)


@ref("dtypes.tc:u32")
def _(A, B):
    a, b = py(A), py(B)
    return wrap(a + b, np.uint32), wrap(a - b, np.uint32), wrap(a * b, np.uint32), A >= B


@ref("dtypes.tc:u64")
def _(A, B):
    a, b = py(A), py(B)
    return (wrap(a + a, np.uint64), wrap(b - a, np.uint64), wrap(a * b, np.uint64),
            tc_div(A, B, np.uint64))


@ref("dtypes.tc:f16")
def _(A, B):
    a, b = A.astype(np.float32), B.astype(np.float32)
    return ((a * b + a).astype(np.float16), (a * b * b - a).astype(np.float16), a + b,
            np.maximum(A, B))


@ref("dtypes.tc:f16_matmul")
def _(A, B):
    return F(d(A) @ d(B))


@ref("dtypes.tc:bf16")
def _(A, B, s):
    w = s.astype(np.float32) * A - B
    return Bf16(A * B + A), w, Bf16(w)


@ref("dtypes.tc:f64")
def _(A, B):
    return A * B.astype(np.float64) + np.float64(f32(1) / f32(3))


@ref("typed_outputs.tc:to_int")
def _(X):
    return sat_cast(X, np.int32)


@ref("typed_outputs.tc:widen")
def _(A):
    return (A * f32(2)).astype(np.float64)


@ref("typed_outputs.tc:int_sum_wide")
def _(A):
    return A.astype(np.int64).sum(axis=1)


@ref("typed_outputs.tc:int_to_float")
def _(K):
    return (K * 3).astype(np.float32)


@ref("typed_outputs.tc:typed_bool")
def _(X):
    return X > 0, (X > 0).astype(np.uint8)


@ref("typed_outputs.tc:overwrite_part")
def _(A, B):
    o = d(A) * 2
    m = min(len(A), len(B))
    o[:m] += d(B)[:m]
    return F(o)


# ---- statements, temporaries, ranges ----

@ref("temporaries.tc:center")
def _(A):
    a = d(A)
    return F(a - a.mean(axis=1)[:, None] - a.mean(axis=0)[None, :] + a.mean())


@ref("temporaries.tc:int_temp")
def _(A):
    return F((A > 0).sum(axis=1) / A.shape[1])


@ref("temporaries.tc:chain_temps")
def _(X):
    t1 = d(X) * 2
    t2 = t1 + 1
    return F(t2 * t1 - t2)


@ref("temporaries.tc:matmul_chain")
def _(A, B, C):
    return F(d(A) @ d(B) @ d(C))


@ref("temporaries.tc:temp_bounds")
def _(X):
    x = d(X)
    return F((x[1:] - x[:-1]) * x[:-1])


@ref("offset_output.tc:shift1")
def _(A):
    return np.concatenate([np.zeros(1, np.float32), A])


@ref("offset_output.tc:shift2d")
def _(A):
    o = np.zeros((A.shape[0] + 2, A.shape[1] + 1), np.float32)
    o[2:, 1:] = A
    return o


@ref("offset_output.tc:shift_reduce")
def _(A):
    a = d(A)
    return (F(np.concatenate([[0.0], a.sum(axis=1)])),
            F(np.concatenate([[0.0] * 3, a.max(axis=1)])))


@ref("offset_output.tc:shift_int")
def _(A):
    return np.concatenate([np.zeros(3, np.int32), A * 2]).astype(np.int32)


@ref("reductions.tc:min_max_prod")
def _(A):
    a = d(A)
    return (F(reduce_or(np.min, a, 1, np.inf)), F(reduce_or(np.max, a, 1, -np.inf)),
            F(np.prod(a, axis=1)))


@ref("reductions.tc:accumulate")
def _(A, B):
    a, b = d(A), d(B)
    return (F(b + a.sum(axis=1)), F(np.maximum(b, a.max(axis=1))), F(a.min(axis=1)),
            F(a.sum(axis=1) + (a * b[:, None]).sum(axis=1)))


@ref("reductions.tc:int_reduce")
def _(K):
    i32 = np.iinfo(np.int32)
    k = py(K)
    return (reduce_or(np.min, K, 1, i32.max), reduce_or(np.max, K, 1, i32.min),
            wrap(k.sum(axis=1) if K.shape[1] else np.zeros(K.shape[0], object), np.int32),
            wrap(np.array([math.prod(r) for r in k], dtype=object).reshape(K.shape[0]),
                 np.int32))


@ref("reductions.tc:u8_reduce")
def _(A):
    return reduce_or(np.min, A, 1, 255), reduce_or(np.max, A, 1, 0)


@ref("reductions.tc:axes")
def _(X):
    x = d(X)
    return F(x.sum(axis=0)), F(x.sum(axis=1)), F(x.sum(axis=2)), F(x.sum(axis=(1, 2)))


@ref("exists.tc:iota")
def _(A):
    return np.arange(len(A), dtype=np.float32)


@ref("exists.tc:bcast")
def _(X, Y):
    return np.repeat(X[:, None], len(Y), axis=1)


@ref("exists.tc:flat_index")
def _(A):
    n, m = A.shape
    return np.arange(n * m, dtype=np.int32).reshape(n, m)


@ref("exists.tc:exists_bound")
def _(A, B):
    return A[:min(len(A), len(B))] * f32(2)


@ref("lets.tc:let_simple")
def _(A, B):
    t = d(A) - d(B)
    return F(t * t + t)


@ref("lets.tc:let_chain")
def _(A):
    a = d(A) + 1
    return F(a * 2 * a)


@ref("lets.tc:let_index")
def _(X, Wk):
    return F(conv1d(X[None, None], Wk[None, None])[0, 0])


@ref("lets.tc:let_with_range")
def _(X):
    return F(d(X) * 0.5 + np.arange(len(X)))


@ref("scalars.tc:axpy")
def _(alpha, X, Y):
    return F(d(alpha) * d(X) + d(Y))


@ref("scalars.tc:scale_int")
def _(k, A):
    return wrap(py(A) * int(k) + int(k), np.int32)


@ref("scalars.tc:scale_f64")
def _(s, X):
    return X.astype(np.float64) * s


@ref("scalars.tc:select_flag")
def _(flag, X):
    return X if bool(flag) else -X


@ref("size_values.tc:normalize_by_n")
def _(A):
    return F(d(A) / len(A))


@ref("size_values.tc:index_values")
def _(A):
    n, m = A.shape
    i = np.arange(n)[:, None]
    j = np.arange(m)[None, :]
    return F(d(A) * (n - i) + j % 3), (n * m - i * m - j).astype(np.int32)


@ref("size_values.tc:mod_size")
def _(K):
    n = len(K)
    return tc_mod(py(K) * 7 + py(np.arange(n)), n, np.int32)


@ref("const_dims.tc:rgb_to_gray")
def _(I):
    x = d(I)
    return F(0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])


@ref("const_dims.tc:pairwise_dist")
def _(P):
    p = d(P)
    return F(((p[:, :, None] - p[:, None, :]) ** 2).sum(axis=0))


@ref("const_dims.tc:affine2")
def _(M, X):
    return F(d(X) @ d(M).T)


@ref("multi_def.tc:add")
def _(A, B):
    return A + B


@ref("multi_def.tc:sub")
def _(A, B):
    return A - B


@ref("multi_def.tc:muladd")
def _(A, B, C):
    dd = d(A) * d(B) + d(C)
    return F(dd), F(dd - d(C))


@ref("multi_def.tc:one_line")
def _(A):
    return F(d(A).sum(axis=1)), F(d(A).T * 2)


@ref("rank0.tc:sum_all")
def _(A):
    return F(d(A).sum())


@ref("rank0.tc:dot")
def _(a, b):
    return F(d(a) @ d(b))


@ref("rank0.tc:l2_normalize")
def _(A):
    nrm = np.sqrt((d(A) ** 2).sum())
    return F(nrm), F(d(A) / nrm)


@ref("rank0.tc:global_max_center")
def _(A):
    return A - A.max()


@ref("rank0.tc:count_pos")
def _(K):
    return np.asarray((K > 0).sum(), dtype=np.int32)


@ref("reverse_transpose.tc:reverse")
def _(A):
    return A[::-1].copy()


@ref("reverse_transpose.tc:flip_rows")
def _(A):
    return A[::-1].copy()


@ref("reverse_transpose.tc:transpose")
def _(A):
    return A.T.copy()


@ref("reverse_transpose.tc:permute")
def _(X):
    return X.transpose(2, 0, 1).copy()


@ref("reverse_transpose.tc:palindrome")
def _(A):
    return A + A[::-1]


@ref("strided.tc:even")
def _(A):
    return A[::2].copy()


@ref("strided.tc:stride3_offset")
def _(A):
    return A[1::3].copy()


@ref("strided.tc:downsample2d")
def _(A):
    return A[::2, ::3].copy()


@ref("strided.tc:pair_sum")
def _(A):
    n = len(A) // 2
    return A[0:2 * n:2] + A[1:2 * n:2]


@ref("upsample.tc:upsample2x")
def _(A):
    return A.repeat(2, axis=0).repeat(2, axis=1)


@ref("upsample.tc:repeat3")
def _(A):
    return A.repeat(3)


@ref("upsample.tc:upsample_oob")
def _(A):
    raise AssertionError("every case of upsample_oob must fail")


@ref("upsample.tc:affine_oob")
def _(A):
    raise AssertionError("every case of affine_oob must fail")


@ref("rank0.tc:sum_big")
def _(A):
    return F(d(A).sum())


# ---- integer min/max, identities ----

@ref("int_minmax.tc:int_select")
def _(K):
    q = np.where(K > 0, np.where(K > 4, 2, 1), 0).astype(np.int32)
    return (np.minimum(K, 3).astype(np.int32), (np.maximum(K, -2) * 2).astype(np.int32), q,
            ~(K < 0) & (K != 5))


@ref("int_minmax.tc:neg_unsigned")
def _(U, V):
    return wrap(-py(U), np.uint8), wrap(-py(V), np.uint32), np.minimum(U.astype(np.uint32), V)


@ref("int_minmax.tc:wide_identities")
def _(A, B, C):
    i64, u64, i16 = np.iinfo(np.int64), np.iinfo(np.uint64), np.iinfo(np.int16)
    return (reduce_or(np.min, A, 1, i64.max), reduce_or(np.max, A, 1, i64.min),
            reduce_or(np.min, B, 1, u64.max), reduce_or(np.max, B, 1, 0),
            reduce_or(np.min, C, 1, i16.max), reduce_or(np.max, C, 1, i16.min))


@ref("int_minmax.tc:half_minmax")
def _(H, Bf):
    return (reduce_or(np.max, H, 1, -np.inf), reduce_or(np.min, H, 1, np.inf),
            Bf16(reduce_or(np.max, Bf, 1, -np.inf)))


# ---- range inference ----

@ref("ranges.tc:shifted_pair")
def _(A, B):
    n = min(len(A), len(B) - 1)
    return A[:n] + B[1:n + 1]


@ref("ranges.tc:second_round")
def _(A, B):
    K, N = len(A), len(B)
    n = N - 2 * (K - 1)
    return F(sum(d(A)[k] * d(B)[2 * k:2 * k + n] for k in range(K)))


@ref("ranges.tc:partial_reduce")
def _(A):
    return F(d(A)[:, 1:3].sum(axis=1)), F(d(A)[:, :-1].sum(axis=1))


@ref("ranges.tc:temp_shift")
def _(A):
    t = d(A) * 2
    return F(t[1:] - t[:-1])


@ref("ranges.tc:bounded_reduce")
def _(A, B):
    k = min(A.shape[1], len(B) - 1)
    return F(d(A)[:, :k] @ d(B)[1:k + 1])


@ref("math_special.tc:float_mod")
def _(X, Y, K):
    return F(np.remainder(d(X), d(Y))), F(np.remainder(d(K), 2.5))


@ref("syntax.tc:syntax_forms")
def _(X, Y):
    return F(d(X) * 0.5 + d(Y)), F(d(X).sum() * d(Y))


@ref("syntax.tc:compact")
def _(A):
    return A + f32(1), F(d(A).sum(axis=0))


# ---- TC's own programs ----

@ref("tc_grads.tc:matmul_grad")
def _(A, B, d_C):
    return F(d(d_C) @ d(B).T), F(d(A).T @ d(d_C))


@ref("tc_grads.tc:convolution_grad")
def _(I, W1, d_O):
    N, C, H, W = I.shape
    M, _, KH, KW = W1.shape
    dO, w1 = d(d_O), d(W1)
    d_I = np.zeros((N, C, H, W))
    for kh in range(KH):
        for kw in range(KW):
            # h in [KH-1, H), w in [KW-1, W): reads d_O at h - kh, w - kw
            src = dO[:, :, KH - 1 - kh:H - kh, KW - 1 - kw:W - kw]
            d_I[:, :, KH - 1:, KW - 1:] += np.einsum("nmhw,mc->nchw", src, w1[:, :, kh, kw])
    d_W1 = np.einsum("nmhw,nchw->mc", dO, d(I))[:, :, None, None]
    return F(d_I), F(d_W1)


@ref("wavenet.tc:wavenet1")
def _(Data, FilterWeight, FilterBias, GateWeight, GateBias, ResWeight, ResBias,
      SkipWeight, SkipBias, Dilation):
    x = d(Data)
    D = len(Dilation)

    def dilated(w, bias):
        out = bias[None, :, None] + np.einsum("brt,dr->bdt", x, w[:, :, 1])
        out[:, :, D:] += np.einsum("brt,dr->bdt", x[:, :, :-D] if D else x, w[:, :, 0])
        return out
    filt = dilated(d(FilterWeight), d(FilterBias))
    gate = dilated(d(GateWeight), d(GateBias))
    nonlin = np.tanh(filt) / (1 + np.exp(-gate))
    res = x + np.einsum("bdt,rd->brt", nonlin, d(ResWeight)) + d(ResBias)[None, :, None]
    skip = np.einsum("bdt,sd->bst", nonlin, d(SkipWeight)) + d(SkipBias)[None, :, None]
    return F(filt), F(gate), F(nonlin), F(res), F(skip)


@ref("tc_batchnorm.tc:spatial_batch_norm")
def _(momentum, eps, I, rMeanIn, rVarIn):
    x, mom = d(I), float(momentum)
    c = (slice(None), None, None)
    mean = x.mean(axis=(0, 2, 3))
    centered = x - mean[c]
    variance = centered ** 2
    ev = (variance + float(eps)).mean(axis=(0, 2, 3))
    o = centered / np.sqrt(ev[c])
    return (F(o), F((1 - mom) * d(rMeanIn) + mom * mean), F((1 - mom) * d(rVarIn) + mom * ev),
            F(mean), F(centered), F(variance), F(ev), F(o))


@ref("tc_batchnorm.tc:indexing")
def _(input, index):
    return input[index]


@ref("tc_batchnorm.tc:cosine_similarity")
def _(I1, I2):
    a, b = d(I1), d(I2)
    s1, s2 = (a * a).sum(axis=1), (b * b).sum(axis=1)
    return F((a * b).sum(axis=1) / np.sqrt(np.maximum(s1 * s2, 1e-12))), F(s1), F(s2)


# ---- corners ----

@ref("odd_corners.tc:rank8")
def _(X):
    x = d(X)
    y = x * 2
    s = np.einsum("abcdefgh,abcdefgr->hgfedcba", x, x)
    return F(y), F(s)


@ref("odd_corners.tc:odd_scalars")
def _(h, b, u, X):
    # float32 * float16 -> float32, + bfloat16 -> float32
    o = X * h.astype(np.float32) + b.astype(np.float32)
    return o, wrap(int(u) + py(np.arange(len(X))), np.uint64)


@ref("odd_corners.tc:mirror_int8")
def _(A):
    return np.pad(A, 3, mode="symmetric")


@ref("odd_corners.tc:int8_prod")
def _(A):
    a = py(A)
    return (wrap(np.array([math.prod(r) for r in a], dtype=object), np.int8),
            wrap(a.sum(axis=1), np.int8))


@ref("odd_corners.tc:narrow_typed")
def _(A):
    # each term is cast to int8; the int8 accumulation wraps
    return wrap(py(sat_cast(A, np.int8)).sum(axis=1), np.int8)


@ref("odd_corners.tc:half_boundary")
def _(I):
    P = np.pad(d(I), ((1, 1), (0, 0)), mode="edge")
    return F(P[:-2] + P[2:])


# ---- tiling.tc: contractions the CPU scheduler tiles ----

@ref("tiling.tc:mm_blocks")
def _(A, B):
    return F(d(A) @ d(B))


@ref("tiling.tc:mm_nt_f64")
def _(A, B):
    return A @ B.T


@ref("tiling.tc:mm_accumulate")
def _(D, A, B):
    return F(d(F(d(D) * 2.0)) + d(A) @ d(B))


@ref("tiling.tc:mm_offset")
def _(A, B):
    C = d(A) @ d(B)
    C[:2, :] = 0
    C[:, :3] = 0
    return F(C)


@ref("tiling.tc:mm_exprs")
def _(A, B):
    Bs = np.concatenate([d(B)[:, :1], d(B)[:, :-1]], axis=1)  # B(k, n-1), clamped
    return F((d(F(d(A) * 0.5))) @ (d(F(Bs + 1.0))))


@ref("tiling.tc:bmm_tt")
def _(A, B):
    return F(np.einsum("bkm,bnk->bmn", d(A), d(B)))


@ref("tiling.tc:conv_pad")
def _(I, Wt):
    P = np.pad(d(I), ((0, 0), (0, 0), (1, 1), (1, 1)))
    return F(conv2d(P, Wt))


@ref("tiling.tc:gconv_stride")
def _(I, Wt):
    N, G = I.shape[:2]
    outs = [conv2d(d(I)[:, g], d(Wt)[g], stride=(2, 2)) for g in range(G)]
    return F(np.stack(outs, axis=1))


@ref("tiling.tc:conv_rows")
def _(I, Wt):
    P = np.pad(d(I), ((0, 0), (0, 0), (1, 1), (1, 1)))
    return F(conv2d(P, Wt))


@ref("tiling.tc:conv_rows_flip_s2")
def _(I, Wt):
    # O reads row H-h-kh: row h+kh-1 of the input flipped along H, padded by 1
    flipped = np.pad(d(I)[:, :, ::-1], ((0, 0), (0, 0), (1, 1), (1, 1)))
    # P reads row 2h+kh-1: stride 2 over the padded input
    padded = np.pad(d(I), ((0, 0), (0, 0), (1, 1), (1, 1)))
    return F(conv2d(flipped, Wt)), F(conv2d(padded, Wt, stride=(2, 1)))


# ---- schedules (the results do not depend on the schedule) ----

@ref("schedule_loops.tc:split2d")
def _(A):
    return F(d(A) * 2.0 + 1.0)


@ref("schedule_loops.tc:tiled")
def _(A):
    return F(d(A) - d(A)[:, :1])


@ref("schedule_loops.tc:vec_unroll")
def _(A):
    return F(np.exp(d(A)) + d(A))


@ref("schedule_loops.tc:inverted")
def _(A):
    n = min(A.shape)
    a = d(A)[:n, :n]
    return F(a.T * a)


@ref("schedule_loops.tc:rowsum")
def _(A):
    return F((d(A) ** 2).sum(axis=1))


@ref("schedule_loops.tc:matmul_ikj")
def _(A, B):
    return F(d(A) @ d(B))


@ref("schedule_loops.tc:int_minmax")
def _(A):
    mx = py(A).max(axis=1)
    return wrap(mx, np.int32), wrap(py(A).sum(axis=1) + mx, np.int32)


@ref("schedule_loops.tc:total")
def _(A):
    return np.asarray(A.sum(), dtype=np.float64)


@ref("schedule_loops.tc:split_twice")
def _(A):
    return F(d(A) + d(A)[:, ::-1, :])


@ref("schedule_loops.tc:offsets")
def _(A):
    a = d(A)
    M, N = a.shape
    O = np.zeros((M, N))
    O[1:, 2:] = a[:-1, 2:] + a[1:, :N - 2]
    return F(O), F(a[:, 1:N - 1].sum(axis=1))


@ref("schedule_loops.tc:fused")
def _(A):
    a = d(A)
    return F(a * 3.0 - a[:, :1, :]), F(a.sum(axis=2))


@ref("schedule_compute.tc:blur")
def _(I):
    i = d(I)
    T = (i[:, :-2] + i[:, 1:-1] + i[:, 2:]) / 3.0
    return F((T[:-2] + T[1:-1] + T[2:]) / 3.0)


@ref("schedule_compute.tc:blur_inner")
def _(I):
    i = d(I)
    T = i[:, :-1] * i[:, 1:]
    return F(T[:-2] + T[1:-1] + T[2:])


@ref("schedule_compute.tc:softmax")
def _(X):
    e = np.exp(d(X) - d(X).max(axis=1, keepdims=True))
    return F(e / e.sum(axis=1, keepdims=True))


@ref("schedule_compute.tc:chain")
def _(A):
    a = d(A)
    return F((a * 3.0 + a) * (a * 3.0))


@ref("schedule_compute.tc:gathered")
def _(A, Idx):
    return F((d(A)[Idx] + 1.0) * 2.0)


@ref("schedule_compute.tc:offset_producer")
def _(I):
    i = d(I)
    H, W = i.shape
    O = np.zeros((H, W))
    T = 2.0 * i[:-1]
    O[1:] = T - T[:, np.maximum(np.arange(W) - 1, 0)]
    return F(O)


@ref("schedule_compute.tc:stack3")
def _(A):
    t = d(A) * d(A)
    return F(t + t[:, ::-1, :])


# ---- 16-bit float products (tensor cores on CUDA) ----

@ref("matmul_bf16.tc:mm_bf16")
def _(A, B):
    return Bf16(d(A) @ d(B))


@ref("matmul_bf16.tc:tmm_bf16")
def _(A, B):
    return F(d(A) @ d(B).T)


@ref("matmul_bf16.tc:atb_f16")
def _(A, B):
    return F(d(A).T @ d(B))


@ref("matmul_bf16.tc:atbt_f16")
def _(A, B):
    return F(d(A).T @ d(B).T)


@ref("matmul_bf16.tc:bmm_bf16")
def _(X, Y):
    return Bf16(d(X) @ d(Y))


@ref("matmul_bf16.tc:linear_relu_bf16")
def _(X, W, Bias):
    h = F(d(X) @ d(W).T)
    return Bf16(np.maximum(h + Bias.astype(np.float32), f32(0)))


@ref("matmul_bf16.tc:shifted_clamp_bf16")
def _(A, B):
    K = A.shape[1]
    shifted = d(A)[:, np.minimum(np.arange(K) + 1, K - 1)]  # A(m, k+1), clamped
    return F(shifted @ d(B))


# ---- tiling.tc: transposed packing, rows split across tasks ----

@ref("tiling.tc:mm_nt_f32")
def _(A, B):
    return F(d(A) @ d(B).T)


@ref("tiling.tc:mm_rows_split")
def _(A, B):
    return F(d(A) @ d(B))


# ---- gpu_rows.tc: the CUDA back end's row kernels and stencils ----

def _blur_sep(I):
    """Separable 3x3 box blur over the last two axes, edges clamped."""
    H, W = I.shape[-2:]
    pad = [(0, 0)] * (I.ndim - 2) + [(1, 1), (1, 1)]
    P = np.pad(d(I), pad, mode="edge")
    return F(sum(P[..., dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3))
             * (0.33333334 * 0.33333334))


@ref("gpu_rows.tc:softmax_rows")
def _(X):
    return F(softmax_last(X))


@ref("gpu_rows.tc:softmax_plus")
def _(X):
    return F(softmax_last(X) + d(X))


@ref("gpu_rows.tc:norm_two")
def _(X, g):
    x = d(X)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return F((x - mean) / np.sqrt(var + 1e-5) * d(g)), F(np.sqrt(np.abs(x - mean) / (var + 1.0)))


@ref("gpu_rows.tc:blur_sep")
def _(I):
    return _blur_sep(I)


@ref("gpu_rows.tc:blur_batch")
def _(I):
    return _blur_sep(I)


# ---- schedule_auto.tc: gemm / compute_with / store_at (results as without) ----

@ref("schedule_auto.tc:mm_small_tiles")
def _(A, B):
    return F(d(A) @ d(B))


@ref("schedule_auto.tc:mm_unit_tiles")
def _(A, B):
    return A @ B


@ref("schedule_auto.tc:bmm_bias")
def _(A, B, bias):
    return F(np.maximum(np.einsum("gmk,gnk->gmn", d(A), d(B)) + d(bias), 0.0))


@ref("schedule_auto.tc:conv")
def _(I, Wt):
    return F(conv2d(I, Wt))


@ref("schedule_auto.tc:softmax_rows")
def _(X):
    return F(softmax_last(X))


@ref("schedule_auto.tc:softmax_e_whole")
def _(X):
    return F(softmax_last(X))


@ref("schedule_auto.tc:layernorm")
def _(X, g, b):
    return _layernorm(X, g, b, 1e-5)


@ref("schedule_auto.tc:rows_outer")
def _(A, B):
    return F(np.einsum("pmk,kn->pmn", d(A), d(B)))


# ---- conv_gemm.tc: convolutions as implicit GEMMs on the GPU ----

def _gather_conv(I, Wt, Ho, Wo, fh, fw):
    """O[n,f,h,w] = sum_{c,kh,kw} I0[n,c,fh(h,kh),fw(w,kw)] * Wt[f,c,kh,kw],
    I0 being I with zeros outside its bounds."""
    I, Wt = d(I), d(Wt)
    N, C, H, W = I.shape
    Fo, _, KH, KW = Wt.shape
    O = np.zeros((N, Fo, Ho, Wo))
    for kh in range(KH):
        for kw in range(KW):
            r = fh(np.arange(Ho), kh)
            c = fw(np.arange(Wo), kw)
            mr = ((r >= 0) & (r < H)).astype(np.float64)
            mc = ((c >= 0) & (c < W)).astype(np.float64)
            P = I[:, :, np.clip(r, 0, H - 1)][:, :, :, np.clip(c, 0, W - 1)]
            P = P * mr[:, None] * mc[None, :]
            O += np.einsum("nchw,fc->nfhw", P, Wt[:, :, kh, kw])
    return O


def _same3(I, Wt):
    return _gather_conv(I, Wt, I.shape[2], I.shape[3], lambda h, k: h + k - 1, lambda w, k: w + k - 1)


@ref("conv_gemm.tc:conv_bias_relu")
def _(I, Wt, B):
    return F(np.maximum(_same3(I, Wt) + d(B)[None, :, None, None], 0.0))


@ref("conv_gemm.tc:conv_strided_dilated")
def _(I, Wt):
    H, W = I.shape[2:]
    KW = Wt.shape[3]
    return F(_gather_conv(I, Wt, (H + 1) // 2, W - 3 * (KW - 1),
                          lambda h, k: 2 * h + 2 * k - 2, lambda w, k: w + 3 * k))


@ref("conv_gemm.tc:group_conv_pad")
def _(I, Wt):
    return F(np.stack([_same3(I[:, g], Wt[g]) for g in range(I.shape[1])], axis=1))


@ref("conv_gemm.tc:conv1d_f64")
def _(X, Wt):
    T, K = X.shape[2], Wt.shape[2]
    return _gather_conv(X[:, :, None, :], Wt[:, :, None, :], 1, T - K + 1,
                        lambda h, k: h + k, lambda t, k: t + k)[:, :, 0, :]


@ref("conv_gemm.tc:conv_nonaffine")
def _(I, Wt):
    return F(_gather_conv(I, Wt, I.shape[2], I.shape[3],
                          lambda h, k: h * k - 1, lambda w, k: (w + k) // 2))
