"""Plain-torch references the op tests compare with, written from the published formats and algorithms
(../shared/FORMATS.md sections cited), independently of the C++ library."""
import torch


def unpack_bits(words, count, bits):
    """Values (count, C) from words (R, C) int32 packed along dim 0 as one little-endian bit stream per column:
    value j occupies bits [j * bits, (j + 1) * bits) (FORMATS.md 1.2; for 3 bits 1.3 is the same stream, 32 values
    over 3 words with values 10 and 21 straddling two words)."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    w = torch.cat([w, torch.zeros_like(w[:1])])  # a zero word past the end for the straddling read
    pos = torch.arange(count) * bits
    word, shift = pos // 32, (pos % 32)[:, None]
    low = w[word] >> shift
    high = (w[word + 1] << (32 - shift)) & 0xFFFFFFFF
    return ((low | high) & ((1 << bits) - 1)).to(torch.int32)


def pack_bits(values, bits):
    """The inverse of unpack_bits: values (count, C) -> words (count * bits / 32, C) int32."""
    count, cols = values.shape
    rows = count * bits // 32
    out = torch.zeros(rows + 1, cols, dtype=torch.int64)
    v = values.to(torch.int64)
    for j in range(count):
        p = j * bits
        out[p // 32] |= (v[j] << (p % 32)) & 0xFFFFFFFF
        if p % 32 + bits > 32:
            out[p // 32 + 1] |= v[j] >> (32 - p % 32)
    out = out[:rows]
    return torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)


def dequantize(qweight, qzeros, scales, g_idx, bits, v1):
    """W (K, N) = s[g] (q - z[g]) formed in float32, rounded once to scales' dtype; v1 stores z - 1 (1.5)."""
    k, n = qweight.shape[0] * 32 // bits, qweight.shape[1]
    q = unpack_bits(qweight, k, bits).float()
    z = unpack_bits(qzeros.t().contiguous(), n, bits).t().float() + (1 if v1 else 0)
    g = g_idx.long()
    return (scales.float()[g] * (q - z[g])).to(scales.dtype)


def marlin_perms():
    """IST-DASLab marlin _get_perms (FORMATS.md 3.1): the 1024-entry weight permutation with the 8-tuple
    interleave, the 64-entry grouped and 32-entry per-channel scale permutations."""
    perm = []
    for i in range(32):
        col, base = i // 4, 2 * (i % 4)
        perm1 = [16 * row + col + 8 * block for block in (0, 1) for row in (base, base + 1, base + 8, base + 9)]
        for j in range(4):
            perm += [p + 256 * j for p in perm1]
    perm = torch.tensor(perm).reshape(-1, 8)[:, [0, 2, 4, 6, 1, 3, 5, 7]].reshape(-1)
    scale_perm = torch.tensor([i + 8 * j for i in range(8) for j in range(8)])
    single = torch.tensor([2 * i + j for i in range(4) for j in (0, 1, 8, 9, 16, 17, 24, 25)])
    return perm, scale_perm, single


def marlin_pack(codes):
    """Layer.pack steps 4-6 on codes (K, N) in [0, 15]: 16x16 tiles, the weight permutation per 1024-value chunk,
    8 codes per int32 lowest nibble first -> B (K/16, 2N) int32."""
    k, n = codes.shape
    perm, _, _ = marlin_perms()
    res = codes.to(torch.int64).reshape(k // 16, 16, n // 16, 16).permute(0, 2, 1, 3).reshape(k // 16, n * 16)
    res = res.reshape(-1, 1024)[:, perm].reshape(k // 16, 2 * n, 8)
    words = sum(res[..., i] << (4 * i) for i in range(8))
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def marlin_scales(scales, grouped):
    """Scales (groups, N) in Marlin's order: each 64 by scale_perm (grouped) or each 32 by the single one."""
    _, scale_perm, single = marlin_perms()
    p = scale_perm if grouped else single
    return scales.reshape(-1, p.numel())[:, p].reshape(scales.shape).contiguous()


def gptq(weight, hessian, bits, group_size, sym, desc_act, percdamp=0.01, blocksize=128):
    """fasterquant (FORMATS.md 2.2, 2.3; IST-DASLab gptq.py as AutoGPTQ runs it) in float64, with AutoGPTQ's g_idx
    (1.6). Returns codes (N, K), scales and zeros (N, groups), g_idx (K,), the loss sum."""
    W, H = weight.double().clone(), hessian.double().clone()
    n, k = W.shape
    maxq = 2**bits - 1

    def find_params(x):
        xmin = torch.minimum(x.min(1).values, torch.zeros(n, dtype=x.dtype))
        xmax = torch.maximum(x.max(1).values, torch.zeros(n, dtype=x.dtype))
        if sym:
            xmax = torch.maximum(xmin.abs(), xmax)
            xmin = torch.where(xmin < 0, -xmax, xmin)
        both = (xmin == 0) & (xmax == 0)
        xmin, xmax = torch.where(both, -1.0, xmin), torch.where(both, 1.0, xmax)
        scale = (xmax - xmin) / maxq
        zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-xmin / scale)
        return scale, zero

    scale, zero = find_params(W)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.argsort(torch.diag(H), descending=True, stable=True) if desc_act else torch.arange(k)
    W, H = W[:, perm], H[perm][:, perm]
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(k, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    codes, losses = torch.zeros(n, k, dtype=torch.int64), torch.zeros(n, k, dtype=H.dtype)
    scales, zeros = [], []
    g = k if group_size == -1 else group_size
    for i1 in range(0, k, blocksize):
        i2 = min(i1 + blocksize, k)
        W1, Err1 = W[:, i1:i2].clone(), torch.zeros(n, i2 - i1, dtype=W.dtype)
        for i in range(i2 - i1):
            w, d = W1[:, i], Hinv[i1 + i, i1 + i]
            if group_size != -1 and (i1 + i) % g == 0:
                scale, zero = find_params(W[:, i1 + i:i1 + i + g])  # W, not W1: the published quirk
                scales.append(scale)
                zeros.append(zero)
            c = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
            q = scale * (c - zero)
            codes[:, i1 + i] = c.long()
            losses[:, i1 + i] = (w - q) ** 2 / d**2 / 2
            err = (w - q) / d
            W1[:, i:] -= err[:, None] * Hinv[i1 + i, i1 + i:i2][None, :]
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    if group_size == -1:
        scales, zeros = [scale], [zero]
    invperm = torch.argsort(perm)
    g_idx = (torch.arange(k) // g)[invperm].to(torch.int32)
    return codes[:, invperm].to(torch.int32), torch.stack(scales, 1), torch.stack(zeros, 1), g_idx, losses.sum().item()
